"""The figures of a comparison: accuracy, macro-F1, per-class precision/recall/F1, the flip matrix,
score drift, and paired bootstrap intervals of the differences.

Labels are coded as integers once; every figure is then counts of those codes
(``numpy.bincount``), which keeps a thousand bootstrap resamples cheap.  A
class enters a model's macro-F1 when it is in the truth or among that model's
predictions (scikit-learn's definition); precision or recall with nothing to
divide by is 0, as scikit-learn's ``zero_division=0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

#: The confidence level of the bootstrap intervals.
CONFIDENCE = 0.95

Codes = npt.NDArray[np.intp]


@dataclass(frozen=True)
class Coded:
    """The compared rows' true and predicted labels as codes into ``classes``."""

    classes: tuple[str, ...]
    truth: Codes
    baseline: Codes
    candidate: Codes


def code(truth: pd.Series, baseline: pd.Series, candidate: pd.Series) -> Coded:
    classes = tuple(sorted(set(truth) | set(baseline) | set(candidate)))

    def codes(values: pd.Series) -> Codes:
        return np.asarray(pd.Categorical(values, categories=classes).codes, dtype=np.intp)

    return Coded(classes, codes(truth), codes(baseline), codes(candidate))


def _counts(truth: Codes, predicted: Codes, k: int) -> tuple[Codes, Codes, Codes]:
    """Per class: rows of it in the truth, rows predicted as it, rows right."""
    right = truth[truth == predicted]
    return (
        np.bincount(truth, minlength=k),
        np.bincount(predicted, minlength=k),
        np.bincount(right, minlength=k),
    )


def _f1(support: Codes, predicted: Codes, right: Codes) -> npt.NDArray[np.float64]:
    """Per class F1 (``2 right / (support + predicted)``); NaN for a class with neither."""
    both = (support + predicted).astype(np.float64)
    f1: npt.NDArray[np.float64] = np.divide(2.0 * right, both, out=np.full(len(both), np.nan), where=both > 0)
    return f1


def macro_f1(truth: Codes, predicted: Codes, k: int) -> float:
    return float(np.nanmean(_f1(*_counts(truth, predicted, k))))


def accuracy(truth: Codes, predicted: Codes) -> float:
    return float(np.mean(truth == predicted))


def per_class(coded: Coded) -> pd.DataFrame:
    """Support, and each model's precision, recall and F1 per class with ``delta_*`` (candidate - baseline);
    NaN where a model neither predicted the class nor had it in the truth."""
    k = len(coded.classes)
    table: dict[str, npt.NDArray[np.float64] | Codes] = {}
    for role, predicted in (("baseline", coded.baseline), ("candidate", coded.candidate)):
        support, guessed, right = _counts(coded.truth, predicted, k)
        f1 = _f1(support, guessed, right)
        absent = np.isnan(f1)
        for name, of in (("precision", guessed), ("recall", support)):
            ratio = np.divide(right, of, out=np.zeros(k), where=of > 0)
            ratio[absent] = np.nan
            table[f"{role}_{name}"] = ratio
        table[f"{role}_f1"] = f1
        table["support"] = support
    for name in ("precision", "recall", "f1"):
        table[f"delta_{name}"] = table[f"candidate_{name}"] - table[f"baseline_{name}"]
    columns = ["support"] + [
        f"{p}_{n}" for p in ("baseline", "candidate", "delta") for n in ("precision", "recall", "f1")
    ]
    frame = pd.DataFrame(table, index=pd.Index(coded.classes, name="class"))[columns]
    return frame.astype({"support": "int64"})


def bootstrap(coded: Coded, *, n_boot: int, seed: int) -> dict[str, tuple[float, float]]:
    """The :data:`CONFIDENCE` interval of each difference (accuracy, macro-F1; candidate - baseline),
    from ``n_boot`` resamples of the rows, each model scored on the same resample."""
    rng = np.random.default_rng(seed)
    n, k = len(coded.truth), len(coded.classes)
    right_b = coded.baseline == coded.truth
    right_c = coded.candidate == coded.truth
    differences = {"accuracy": np.empty(n_boot), "macro_f1": np.empty(n_boot)}
    for i in range(n_boot):
        rows = rng.integers(0, n, size=n)
        truth = coded.truth[rows]
        differences["accuracy"][i] = right_c[rows].mean() - right_b[rows].mean()
        differences["macro_f1"][i] = macro_f1(truth, coded.candidate[rows], k) - macro_f1(
            truth, coded.baseline[rows], k
        )
    tail = (1 - CONFIDENCE) / 2 * 100
    return {
        name: (float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail)))
        for name, values in differences.items()
    }


def flip_matrix(baseline: pd.Series, candidate: pd.Series) -> pd.DataFrame:
    """Rows per (baseline label, candidate label): the diagonal kept its label, the rest flipped."""
    labels = sorted(set(baseline) | set(candidate))
    counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
    b = pd.Categorical(baseline, categories=labels).codes
    c = pd.Categorical(candidate, categories=labels).codes
    np.add.at(counts, (b, c), 1)
    return pd.DataFrame(
        counts, index=pd.Index(labels, name="baseline"), columns=pd.Index(labels, name="candidate")
    )


def drift_summary(drift: pd.Series) -> dict[str, float]:
    """Rows, mean, median, 5th and 95th percentile of the score drift (NaN for no rows)."""
    values = drift.dropna().to_numpy(dtype=np.float64)
    if not len(values):
        return {"rows": 0, "mean": np.nan, "median": np.nan, "p5": np.nan, "p95": np.nan}
    return {
        "rows": len(values),
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "p5": float(np.percentile(values, 5)),
        "p95": float(np.percentile(values, 95)),
    }
