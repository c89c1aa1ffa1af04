"""A run's figures, computed from its batch metrics and its rows.

Both sources of a report (a result frame, a job's output folder) are first
brought to the same two tables, then :func:`compute` makes the figures:

``batches``
    the batch metrics (:data:`~tsbatch._frame.BATCH_DTYPES`) plus ``part``
    (0 for a frame);
``rows``
    one row per input row: ``status``, ``kind`` (the error kind), ``error``,
    ``label``, ``part``, ``batch_id``, ``row`` (its id or index) and
    ``text`` (``None`` where the text is not at hand).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tsbatch._outcomes import INTERRUPTED

#: The latency percentiles a report gives.
PERCENTILES = (50, 95, 99)
#: Characters of an example row's text a report shows.
EXAMPLE_CHARS = 200


@dataclass(frozen=True)
class Totals:
    """What the batch metrics cannot say: the wall time, and what the breaker did."""

    seconds: float | None = None
    breaker_openings: int = 0
    paused_s: float = 0.0


@dataclass(frozen=True)
class Figures:
    """A run's figures.  ``requests`` counts every request sent (retries included); latencies
    are per batch, in milliseconds (``None`` without batches): in ``list`` mode a batch is
    one request, in ``rows`` mode a group of single-row requests."""

    rows: int
    ok: int
    error: int
    skipped: int
    interrupted: int
    seconds: float
    rows_per_second: float
    batches: int
    requests: int
    retries: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    breaker_openings: int
    paused_s: float
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    error_examples: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)


def latency_percentiles(latency_ms: Any) -> dict[int, float | None]:
    """The :data:`PERCENTILES` of the finite latencies given (linear interpolation)."""
    values = np.asarray(latency_ms, dtype="float64")
    values = values[np.isfinite(values)]
    if not len(values):
        return dict.fromkeys(PERCENTILES)
    found = np.percentile(values, PERCENTILES)
    return {p: round(float(v), 3) for p, v in zip(PERCENTILES, found, strict=True)}


def batch_span(batches: pd.DataFrame) -> float:
    """Seconds from the first batch's start to the last batch's end (0 without batches)."""
    if batches.empty:
        return 0.0
    start = batches["started_at"].min()
    end = batches["ended_at"].max()
    if pd.isna(start) or pd.isna(end):
        return 0.0
    return max(0.0, float((end - start).total_seconds()))


def compute(batches: pd.DataFrame, rows: pd.DataFrame, totals: Totals) -> Figures:
    """The figures of a run (see the module docstring for the two tables)."""
    status = rows["status"].astype("string")
    counts = status.value_counts()
    ok, error, skipped = (int(counts.get(s, 0)) for s in ("ok", "error", "skipped"))
    seconds = round(totals.seconds if totals.seconds is not None else batch_span(batches), 3)
    failed = rows[status == "error"]
    kinds = failed["kind"].astype("string").fillna("unknown")
    examples = {}
    for _, first in failed.assign(_kind=kinds).drop_duplicates("_kind").iterrows():
        text = _plain(first["text"])
        examples[str(first["_kind"])] = {
            "row": _plain(first["row"]),
            "text": text[:EXAMPLE_CHARS] if isinstance(text, str) else text,
            "error": _plain(first["error"]),
        }
    percentiles = latency_percentiles(batches["latency_ms"])
    labels = rows.loc[status == "ok", "label"].dropna().astype(str).value_counts()
    return Figures(
        rows=len(rows),
        ok=ok,
        error=error,
        skipped=skipped,
        interrupted=int((rows["kind"].astype("string") == INTERRUPTED).sum()),
        seconds=seconds,
        rows_per_second=round((ok + error) / seconds, 1) if seconds > 0 else 0.0,
        batches=len(batches),
        requests=int(batches["attempts"].sum()),
        retries=int(batches["retries"].sum()),
        latency_p50_ms=percentiles[50],
        latency_p95_ms=percentiles[95],
        latency_p99_ms=percentiles[99],
        breaker_openings=totals.breaker_openings,
        paused_s=round(totals.paused_s, 3),
        errors_by_kind={str(k): int(v) for k, v in kinds.value_counts().items()},
        error_examples=examples,
        labels={str(k): int(v) for k, v in labels.items()},
    )


def errors_per_batch(batches: pd.DataFrame, rows: pd.DataFrame) -> pd.Series:
    """Error rows per batch, aligned with ``batches`` (rows failed before sending have no batch)."""
    failed = rows[rows["status"].astype("string") == "error"].dropna(subset=["batch_id"])
    found = Counter(zip(failed["part"].astype("int64"), failed["batch_id"].astype("int64"), strict=True))
    keys = zip(batches["part"].astype("int64"), batches["batch_id"].astype("int64"), strict=True)
    return pd.Series([found.get(key, 0) for key in keys], index=batches.index, dtype="int64")


def _plain(value: Any) -> Any:
    """A value as JSON-able data (pandas' missing values become ``None``)."""
    if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, (int, float, str, bool)) else str(value)
