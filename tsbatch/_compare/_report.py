"""The result of :func:`tsbatch.compare`: figures, tables, and their text, JSON, HTML and plot forms."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tsbatch._compare._check import check as check_thresholds
from tsbatch._compare._metrics import CONFIDENCE, drift_summary
from tsbatch._compare._render import figure, html, text
from tsbatch._pages import write_page

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Scores:
    """One model's figures on the true labels."""

    accuracy: float
    macro_f1: float


@dataclass(frozen=True)
class Difference:
    """``candidate - baseline``, and the bounds of its paired bootstrap confidence interval."""

    value: float
    low: float
    high: float


@dataclass(frozen=True, eq=False, repr=False)
class ComparisonReport:
    """How a candidate model's classifications differ from a baseline's on the same rows.

    ``matched`` rows have an id on both sides; ``only_in_baseline`` and
    ``only_in_candidate`` hold the ids of the others.  Of the matched rows,
    those whose ``ts_status`` is not ``ok`` on a side are counted in
    ``not_ok`` (per side, by status) and left out of every figure: the
    figures are over the ``compared`` rows.

    ``agreement`` is the fraction of compared rows given the same label.
    With true labels (``truth``), ``baseline`` and ``candidate`` hold each
    model's accuracy and macro-F1, ``differences`` their differences with a
    paired bootstrap interval (``n_boot`` resamples, ``seed``) and
    ``per_class`` each class's precision, recall and F1.  ``flip_matrix``
    counts rows by baseline label (rows) and candidate label (columns);
    ``score_drift`` is the candidate's score minus the baseline's, per row;
    ``changed_rows`` the rows whose label changed.

    ``check()`` turns thresholds into a :class:`~tsbatch.RegressionError`;
    ``to_dict()``, ``to_json()``, ``to_html()`` and ``plot()`` give other
    forms, and Jupyter shows the HTML one.
    """

    sources: tuple[str, str]
    id_column: str | None
    truth: str | None
    text_column: str | None
    matched: int
    compared: int
    only_in_baseline: tuple[Any, ...]
    only_in_candidate: tuple[Any, ...]
    not_ok: dict[str, dict[str, int]]
    agreement: float
    baseline: Scores | None
    candidate: Scores | None
    differences: dict[str, Difference]
    per_class: pd.DataFrame | None
    flip_matrix: pd.DataFrame
    score_drift: pd.Series
    changed_rows: pd.DataFrame
    n_boot: int
    seed: int

    @property
    def flips(self) -> list[tuple[str, str, int]]:
        """``(baseline label, candidate label, rows)`` for each pair of different labels, most rows first."""
        labels, counts = list(map(str, self.flip_matrix.index)), self.flip_matrix.to_numpy()
        pairs = [
            (labels[i], labels[j], int(counts[i, j]))
            for i in range(len(labels))
            for j in range(len(labels))
            if i != j and counts[i, j]
        ]
        return sorted(pairs, key=lambda pair: (-pair[2], pair[0], pair[1]))

    @property
    def score_drift_summary(self) -> dict[str, float]:
        """Rows, mean, median, 5th and 95th percentile of :attr:`score_drift`."""
        return drift_summary(self.score_drift)

    def change_counts(self) -> dict[str, int]:
        """Changed rows by effect (``fixed``, ``regressed``, ``both wrong``); empty without the truth."""
        if "change" not in self.changed_rows.columns:
            return {}
        counts = self.changed_rows["change"].value_counts()
        return {effect: int(counts.get(effect, 0)) for effect in ("fixed", "regressed", "both wrong")}

    def check(
        self,
        *,
        max_accuracy_drop: float | None = None,
        min_agreement: float | None = None,
        max_class_f1_drop: float | None = None,
        max_macro_f1_drop: float | None = None,
    ) -> None:
        """Raise a :class:`~tsbatch.RegressionError` listing every threshold the candidate breaks.

        A drop is the baseline's figure minus the candidate's (``max_class_f1_drop``
        applies to each class); a figure equal to its threshold holds.  The
        accuracy and F1 thresholds need the true labels.
        """
        check_thresholds(
            self,
            {
                "max_accuracy_drop": max_accuracy_drop,
                "min_agreement": min_agreement,
                "max_class_f1_drop": max_class_f1_drop,
                "max_macro_f1_drop": max_macro_f1_drop,
            },
        )

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-able data (NaN as ``None``)."""
        scores = {
            role: {"accuracy": s.accuracy, "macro_f1": s.macro_f1}
            if s is not None
            else {"accuracy": None, "macro_f1": None}
            for role, s in (("baseline", self.baseline), ("candidate", self.candidate))
        }
        data = {
            "sources": dict(zip(("baseline", "candidate"), self.sources, strict=True)),
            "id_column": self.id_column,
            "truth": self.truth,
            "text_column": self.text_column,
            "matched": self.matched,
            "compared": self.compared,
            "only_in_baseline": {"rows": len(self.only_in_baseline), "ids": list(self.only_in_baseline)},
            "only_in_candidate": {"rows": len(self.only_in_candidate), "ids": list(self.only_in_candidate)},
            "not_ok": {"rows": self.matched - self.compared, **self.not_ok},
            "agreement": self.agreement,
            "changed": {
                "rows": len(self.changed_rows),
                **{effect.replace(" ", "_"): n for effect, n in self.change_counts().items()},
            },
            **scores,
            "differences": {
                name: {"value": d.value, "low": d.low, "high": d.high} for name, d in self.differences.items()
            },
            "bootstrap": {"resamples": self.n_boot, "seed": self.seed, "confidence": CONFIDENCE},
            "per_class": _records(self.per_class.reset_index()) if self.per_class is not None else None,
            "flips": [{"from": b, "to": c, "rows": n} for b, c, n in self.flips],
            "score_drift": self.score_drift_summary,
            "changed_rows": _records(self.changed_rows),
        }
        plain: dict[str, Any] = _plain(data)
        return plain

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False, default=str)

    def plot(self) -> Figure:
        """Flips (heatmap), F1 change per class (bars) and score drift (histogram), as one figure;
        needs matplotlib (the ``plot`` extra)."""
        return figure(self)

    def to_html(self, path: str | Path, *, max_rows: int = 100) -> None:
        """Write the report as a self-contained HTML page (plots embedded), with at most ``max_rows``
        changed rows."""
        write_page(path, "tsbatch model comparison", html(self, max_rows=max_rows))

    def _repr_html_(self) -> str:
        return html(self, max_rows=20)

    def __str__(self) -> str:
        return text(self)

    __repr__ = __str__


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [dict(zip(map(str, frame.columns), row, strict=True)) for row in frame.itertuples(index=False)]


def _plain(value: Any) -> Any:
    """``value`` with NumPy scalars as Python ones and NaN or NA as ``None``."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # a NumPy scalar
        return _plain(value.item())
    return value
