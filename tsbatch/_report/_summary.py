""":class:`RunSummary`: a run's figures, as text, as HTML, as plots, as JSON."""

from __future__ import annotations

import dataclasses
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tsbatch._pages import embedded_figure, write_page
from tsbatch._report._figures import PERCENTILES, Figures, compute
from tsbatch._report._sources import Source, source_of

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_STYLE = (
    "<style>.tsbatch-report table{border-collapse:collapse;margin:0.5em 0}"
    ".tsbatch-report td,.tsbatch-report th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
    ".tsbatch-report td.n{text-align:right}.tsbatch-report img{max-width:100%}</style>"
)


@dataclass(frozen=True)
class RunSummary(Figures):
    """What a run did, at a glance: rows ok / error / skipped, rows/s, latency percentiles,
    retries, what the circuit breaker did, errors by kind with an example each, labels.

    Made by ``result.ts.report()`` or :func:`tsbatch.report` (from a frame or a
    job's output folder).  Jupyter shows it as HTML with its plots; ``print``
    gives text; :meth:`to_dict` the JSON form; :meth:`plot` the figure
    (needs the ``plot`` extra); :meth:`to_html` a self-contained page.
    """

    source: str = ""
    model: str | None = None
    version: str | None = None
    outage: str | None = None
    _batches: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False, compare=False)
    _rows: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False, compare=False)

    @classmethod
    def of(cls, source: Source) -> RunSummary:
        figures = compute(source.batches, source.rows, source.totals)
        about = source.about
        return cls(
            **{f.name: getattr(figures, f.name) for f in dataclasses.fields(Figures)},
            source=str(about["source"]),
            model=about.get("model"),
            version=about.get("version"),
            outage=about.get("outage"),
            _batches=source.batches,
            _rows=source.rows,
        )

    def to_dict(self) -> dict[str, Any]:
        """The figures as JSON-able data."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}

    def plot(self) -> Figure:
        """The run's plots as one matplotlib figure (no display needed)."""
        from tsbatch._report._charts import draw

        return draw(self, self._batches, self._rows, f"tsbatch run: {self._title()}")

    def to_html(self, path: str | Path) -> Path:
        """Write a self-contained page (plots embedded) to ``path``; returns the path."""
        return write_page(path, f"tsbatch run: {self._title()}", self._repr_html_())

    def _title(self) -> str:
        model = f"{self.model} {self.version}" if self.version else str(self.model)
        return f"{model} ({self.source})"

    def _lines(self) -> list[tuple[str, str]]:
        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:,.1f} ms"

        lines = [
            ("rows", f"{self.rows:,}: {self.ok:,} ok, {self.error:,} error, {self.skipped:,} skipped"),
            ("wall time", f"{self.seconds:,.1f} s, {self.rows_per_second:,.1f} rows/s"),
            ("requests", f"{self.requests:,} in {self.batches:,} batches"),
            (
                "batch latency",
                ", ".join(f"p{p} {ms(getattr(self, f'latency_p{p}_ms'))}" for p in PERCENTILES),
            ),
            ("retries", f"{self.retries:,}"),
            ("circuit breaker", f"opened {self.breaker_openings} times, paused {self.paused_s:,.1f} s"),
        ]
        if self.interrupted:
            lines.append(
                ("interrupted", f"{self.interrupted:,} rows not classified (retry_failed finishes them)")
            )
        if self.outage:
            lines.append(("ended early", self.outage))
        return lines

    def __str__(self) -> str:
        out = [f"tsbatch run report: {self._title()}"]
        out += [f"  {name:<16}{value}" for name, value in self._lines()]
        for kind, rows in self.errors_by_kind.items():
            example = self.error_examples.get(kind, {})
            out.append(
                f"  error {kind:<10}{rows:,} rows; e.g. row {example.get('row')}: {example.get('error')}"
            )
        if self.labels:
            top = ", ".join(f"{label} {rows:,}" for label, rows in list(self.labels.items())[:8])
            out.append(f"  {'labels':<16}{top}{', ...' if len(self.labels) > 8 else ''}")
        return "\n".join(out)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        e = html.escape
        head = "".join(f"<tr><th>{e(name)}</th><td>{e(value)}</td></tr>" for name, value in self._lines())
        parts = [_STYLE, "<div class='tsbatch-report'>", f"<h3>tsbatch run report: {e(self._title())}</h3>"]
        parts.append(f"<table>{head}</table>")
        if self.errors_by_kind:
            rows = []
            for kind, count in self.errors_by_kind.items():
                ex = self.error_examples.get(kind, {})
                cells = [str(ex.get("row")), str(ex.get("text") or ""), str(ex.get("error") or "")]
                rows.append(
                    f"<tr><td>{e(kind)}</td><td class='n'>{count:,}</td>"
                    + "".join(f"<td>{e(c)}</td>" for c in cells)
                    + "</tr>"
                )
            parts.append(
                "<h4>errors by kind</h4><table><tr><th>kind</th><th>rows</th><th>example row</th>"
                f"<th>text</th><th>error</th></tr>{''.join(rows)}</table>"
            )
        parts.append(embedded_figure(self.plot, "run plots"))
        parts.append("</div>")
        return "".join(parts)


def report(result: pd.DataFrame | str | Path) -> RunSummary:
    """The :class:`RunSummary` of a result frame, or of a job's output folder."""
    return RunSummary.of(source_of(result))
