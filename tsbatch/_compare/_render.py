"""A comparison as text (terminals), HTML (Jupyter, a page) and a matplotlib figure.

Every value that comes from the data (labels, ids, texts, paths) goes through
``html.escape`` on its way into HTML.
"""

from __future__ import annotations

import html as _html
import math
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tsbatch._compare._inputs import examples
from tsbatch._compare._metrics import CONFIDENCE
from tsbatch._pages import embedded_figure
from tsbatch._plots import new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from tsbatch._compare._report import ComparisonReport

_TEXT_ROWS = 10
_TEXT_WIDTH = 40
_STYLE = """<style>
.tsbatch-compare table { border-collapse: collapse; margin: 0.4em 0 1em; font-size: 0.9em; }
.tsbatch-compare th, .tsbatch-compare td { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
.tsbatch-compare td.text { text-align: left; max-width: 40em; }
.tsbatch-compare td.same { color: #999; }
.tsbatch-compare img { max-width: 100%; }
</style>"""


def _number(value: Any, *, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _value(value: Any, width: int = _TEXT_WIDTH) -> str:
    """A table cell's value: a number to 4 places, a text on one line cut to ``width``, missing
    as ``-``."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return _number(value)
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _matched_on(report: ComparisonReport) -> str:
    return f"id column {report.id_column!r}" if report.id_column is not None else "the index"


def _notes(report: ComparisonReport) -> list[str]:
    """The rows the figures are over, and those they leave out."""
    notes = [f"{_rows(report.matched)} matched on {_matched_on(report)}, {report.compared} compared"]
    left_out = report.matched - report.compared
    if left_out:
        counts = "; ".join(
            f"{role}: " + ", ".join(f"{status} {n}" for status, n in statuses.items())
            for role, statuses in report.not_ok.items()
            if statuses
        )
        notes.append(f"{_rows(left_out)} not ok on a side, left out of every figure ({counts})")
    for role, ids in (("baseline", report.only_in_baseline), ("candidate", report.only_in_candidate)):
        if ids:
            notes.append(f"{_rows(len(ids))} only in the {role}: {examples(list(ids))}")
    return notes


def _headline(report: ComparisonReport) -> list[list[str]]:
    """Rows of figure, baseline, candidate, difference, interval."""
    rows = [["", "baseline", "candidate", "difference", f"{CONFIDENCE:.0%} CI"]]
    if report.baseline is not None and report.candidate is not None:
        for name, label in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
            d = report.differences[name]
            rows.append(
                [
                    label,
                    _number(getattr(report.baseline, name)),
                    _number(getattr(report.candidate, name)),
                    _number(d.value, signed=True),
                    f"[{_number(d.low, signed=True)}, {_number(d.high, signed=True)}]",
                ]
            )
    return rows


def _changes(report: ComparisonReport) -> str:
    counts = ", ".join(f"{n} {effect}" for effect, n in report.change_counts().items())
    changed = f"{len(report.changed_rows)} of {_rows(report.compared)} changed label"
    return f"agreement {_number(report.agreement)}: {changed}" + (f" ({counts})" if counts else "")


def _drift(report: ComparisonReport) -> str:
    s = report.score_drift_summary
    figures = ", ".join(f"{k} {_number(s[k], signed=True)}" for k in ("mean", "median", "p5", "p95"))
    return f"score drift (candidate - baseline) over {_rows(int(s['rows']))}: {figures}"


def _per_class_rows(report: ComparisonReport, figures: tuple[str, ...]) -> list[list[str]]:
    """Support and each of ``figures`` (``precision``, ``recall``, ``f1``) per class: both models',
    and the change."""
    assert report.per_class is not None
    names = {"precision": "P", "recall": "R", "f1": "F1"}
    pairs = [(who, figure) for who in ("baseline", "candidate", "delta") for figure in figures]
    rows = [["class", "support", *(f"{who} {names[figure]}" for who, figure in pairs)]]
    for label, r in report.per_class.iterrows():
        cells = [_number(r[f"{who}_{figure}"], signed=who == "delta") for who, figure in pairs]
        rows.append([str(label), str(int(r["support"])), *cells])
    return rows


def _is_number(cell: str) -> bool:
    return cell == "-" or re.match(r"[+-]?\d", cell) is not None


def _align(rows: list[list[str]]) -> list[str]:
    """Rows as lines of columns: numbers to the right, texts to the left."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = [i > 0 and all(_is_number(row[i]) for row in rows[1:]) for i in range(len(widths))]
    return [
        "  "
        + "  ".join(
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right, strict=True)
        ).rstrip()
        for row in rows
    ]


def text(report: ComparisonReport) -> str:
    """The report for a terminal."""
    baseline, candidate = report.sources
    lines = [f"baseline:  {baseline}", f"candidate: {candidate}", *_notes(report), ""]
    if report.baseline is not None:
        lines += [*_align(_headline(report)), ""]
    lines += [_changes(report), _drift(report)]
    if report.per_class is not None:
        lines += ["", "per class:", *_align(_per_class_rows(report, ("f1",)))]
    if report.flips:
        flips = [[f"{b} -> {c}", str(n)] for b, c, n in report.flips[:_TEXT_ROWS]]
        lines += ["", "flips (baseline -> candidate):", *_align(flips)]
    if len(report.changed_rows):
        shown = report.changed_rows.head(_TEXT_ROWS)
        rows = [list(map(str, shown.columns))] + [
            [_value(v) for v in row] for row in shown.itertuples(index=False)
        ]
        more = f", first {_TEXT_ROWS}" if len(report.changed_rows) > _TEXT_ROWS else ""
        lines += ["", f"changed rows ({len(report.changed_rows)}{more}):", *_align(rows)]
    return "\n".join(lines)


def _cell(value: Any, tag: str = "td", css: str | None = None) -> str:
    attribute = f' class="{css}"' if css else ""
    return f"<{tag}{attribute}>{_html.escape(str(value))}</{tag}>"


def _table(rows: list[list[str]], *, text_columns: tuple[int, ...] = (0,)) -> str:
    head = "".join(_cell(v, "th") for v in rows[0])
    body = "".join(
        "<tr>"
        + "".join(_cell(v, css="text" if i in text_columns else None) for i, v in enumerate(row))
        + "</tr>"
        for row in rows[1:]
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _flip_table(matrix: pd.DataFrame) -> str:
    labels = list(map(str, matrix.index))
    head = _cell("baseline \u2193 candidate \u2192", "th") + "".join(_cell(v, "th") for v in labels)
    body = "".join(
        "<tr>"
        + _cell(label, "th")
        + "".join(_cell(n, css="same" if i == j else None) for j, n in enumerate(matrix.to_numpy()[i]))
        + "</tr>"
        for i, label in enumerate(labels)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html(report: ComparisonReport, *, max_rows: int) -> str:
    """The report as an HTML fragment: figures, tables, the first ``max_rows`` changed rows, plots."""
    baseline, candidate = report.sources
    parts = [
        '<div class="tsbatch-compare">',
        _STYLE,
        "<h3>Model comparison: baseline vs candidate</h3>",
        f"<p>baseline: <code>{_html.escape(baseline)}</code><br>"
        f"candidate: <code>{_html.escape(candidate)}</code></p>",
        "<ul>" + "".join(f"<li>{_html.escape(n)}</li>" for n in _notes(report)) + "</ul>",
        _table(_headline(report)) if report.baseline is not None else "",
        f"<p>{_html.escape(_changes(report))}<br>{_html.escape(_drift(report))}</p>",
    ]
    if report.per_class is not None:
        per_class = _per_class_rows(report, ("precision", "recall", "f1"))
        parts += ["<h4>Per class (precision, recall, F1)</h4>", _table(per_class)]
    parts += ["<h4>Flips (baseline label by candidate label)</h4>", _flip_table(report.flip_matrix)]
    changed = report.changed_rows
    if len(changed):
        shown = changed.head(max_rows)
        more = f", the first {max_rows}" if len(changed) > max_rows else ""
        rows = [list(map(str, shown.columns))] + [
            [_value(v, 160) for v in row] for row in shown.itertuples(index=False)
        ]
        texts = tuple(
            i for i, c in enumerate(shown.columns) if c not in ("baseline_score", "candidate_score")
        )
        parts += [f"<h4>Changed rows ({len(changed)}{more})</h4>", _table(rows, text_columns=texts)]
    parts.append(embedded_figure(lambda: figure(report), "flips, F1 change per class, score drift"))
    parts.append("</div>")
    return "\n".join(parts)


def _flip_heatmap(ax: Axes, matrix: pd.DataFrame) -> None:
    counts = matrix.to_numpy()
    flips = np.ma.masked_where(np.eye(len(counts), dtype=bool), counts)
    ax.imshow(flips, cmap="Reds", vmin=0)
    labels = list(map(str, matrix.index))
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    if len(labels) <= 15:
        most = flips.max() if flips.count() else 0
        for (i, j), n in np.ndenumerate(counts):
            if i != j and n:
                color = "white" if n > most / 2 else "black"
                ax.text(j, i, str(n), ha="center", va="center", fontsize=8, color=color)
    ax.set_xlabel("candidate")
    ax.set_ylabel("baseline")
    ax.set_title("flips (same label left out)")


def _f1_bars(ax: Axes, per_class: pd.DataFrame | None) -> None:
    ax.set_title("F1 change per class (candidate - baseline)")
    deltas = per_class["delta_f1"].dropna() if per_class is not None else None
    if deltas is None or not len(deltas):
        ax.text(0.5, 0.5, "no true labels" if per_class is None else "no class", ha="center", va="center")
        ax.set_axis_off()
        return
    colors = ["#b00" if d < 0 else "#070" for d in deltas]
    ax.barh(list(map(str, deltas.index)), deltas.to_numpy(dtype=float), color=colors)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.invert_yaxis()


def _drift_histogram(ax: Axes, drift: pd.Series) -> None:
    ax.set_title("score drift (candidate - baseline)")
    values = drift.dropna().to_numpy(dtype=float)
    if not len(values):
        ax.text(0.5, 0.5, "no scores", ha="center", va="center")
        ax.set_axis_off()
        return
    ax.hist(values, bins=30, color="#4477aa")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_ylabel("rows")


def figure(report: ComparisonReport) -> Figure:
    """Flips, F1 change per class and score drift, side by side."""
    fig, axes = new_figure(1, 3, width=15.0, height=4.5)
    flips, bars, drift = axes[0]
    _flip_heatmap(flips, report.flip_matrix)
    _f1_bars(bars, report.per_class)
    _drift_histogram(drift, report.score_drift)
    return fig
