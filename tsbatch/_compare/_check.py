"""The thresholds a candidate must hold: :meth:`ComparisonReport.check`.

Each threshold is checked, and every one broken gets a line of the one
:class:`~tsbatch.RegressionError`.  A figure equal to its threshold holds.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tsbatch._errors import ConfigError, RegressionError

if TYPE_CHECKING:
    from tsbatch._compare._report import ComparisonReport

#: Each threshold: the lowest and highest value it takes, and whether it needs the truth.
THRESHOLDS: dict[str, tuple[float, float, bool]] = {
    "max_accuracy_drop": (-1.0, 1.0, True),
    "min_agreement": (0.0, 1.0, False),
    "max_class_f1_drop": (-1.0, 1.0, True),
    "max_macro_f1_drop": (-1.0, 1.0, True),
}
#: How far past its threshold a figure must be to break it: rounding is no regression.
_TOLERANCE = 1e-12

Broken = tuple[str, float, float]


def checked_threshold(name: str, value: float) -> float:
    """``value`` for threshold ``name``, or a :class:`ConfigError` naming it and its range."""
    low, high, _ = THRESHOLDS[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"{name}={value!r}: expected a number from {low:g} to {high:g}")
    return float(value)


def _drop(
    name: str, threshold: float, what: str, baseline: float, candidate: float
) -> tuple[Broken, str] | None:
    """The breach when ``what`` dropped by more than ``threshold``; ``name[...]`` names a class."""
    drop = baseline - candidate
    if math.isnan(drop) or drop <= threshold + _TOLERANCE:
        return None
    keyword = name.split("[")[0]
    line = f"{keyword}={threshold:g}: {what} dropped by {drop:.4f} ({baseline:.4f} -> {candidate:.4f})"
    return (name, threshold, float(drop)), line


def check(report: ComparisonReport, thresholds: dict[str, float | None]) -> None:
    """Raise one :class:`RegressionError` listing every threshold ``report`` breaks."""
    given = {name: checked_threshold(name, v) for name, v in thresholds.items() if v is not None}
    for name in given:
        if THRESHOLDS[name][2] and report.truth is None:
            raise ConfigError(
                f"{name} needs the true labels, but this comparison was made without them (truth=None); "
                "compare again with truth= naming the column of true labels"
            )
    found: list[tuple[Broken, str] | None] = []
    least = given.get("min_agreement")
    if least is not None and report.agreement < least - _TOLERANCE:
        line = f"min_agreement={least:g}: agreement is {report.agreement:.4f}"
        found.append((("min_agreement", least, report.agreement), line))
    for name, what, figure in (
        ("max_accuracy_drop", "accuracy", "accuracy"),
        ("max_macro_f1_drop", "macro-F1", "macro_f1"),
    ):
        if name in given and report.baseline is not None and report.candidate is not None:
            before, after = getattr(report.baseline, figure), getattr(report.candidate, figure)
            found.append(_drop(name, given[name], what, before, after))
    if "max_class_f1_drop" in given and report.per_class is not None:
        for label, row in report.per_class.iterrows():
            what = f"F1 of class {label!r}"
            before, after = float(row["baseline_f1"]), float(row["candidate_f1"])
            found.append(
                _drop(f"max_class_f1_drop[{label}]", given["max_class_f1_drop"], what, before, after)
            )
    broken = [item for item in found if item is not None]
    if broken:
        lines = "\n".join(f"  {line}" for _, line in broken)
        raise RegressionError(
            f"the candidate broke {len(broken)} threshold(s):\n{lines}",
            broken=tuple(b for b, _ in broken),
        )
