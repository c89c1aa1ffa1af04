"""What a run report must say, worked out independently from the batch metrics and rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tsbatch import RunSummary


def expected_figures(batches: pd.DataFrame, rows: pd.DataFrame, label: str = "pred_label") -> dict[str, Any]:
    """The figures a report of these batch metrics and rows (``ts_*`` columns) must give."""
    status = rows["ts_status"]
    failed = rows[status == "error"]
    latency = batches["latency_ms"].dropna().to_numpy(dtype=float)
    p50, p95, p99 = (round(float(np.percentile(latency, p)), 3) for p in (50, 95, 99))
    return {
        "rows": len(rows),
        "ok": int((status == "ok").sum()),
        "error": int((status == "error").sum()),
        "skipped": int((status == "skipped").sum()),
        "batches": len(batches),
        "requests": int(batches["attempts"].sum()),
        "retries": int(batches["retries"].sum()),
        "latency_p50_ms": p50,
        "latency_p95_ms": p95,
        "latency_p99_ms": p99,
        "errors_by_kind": failed["ts_error_kind"].value_counts().to_dict(),
        "labels": rows.loc[status == "ok", label].value_counts().to_dict(),
    }


def check_report(
    summary: RunSummary, batches: pd.DataFrame, rows: pd.DataFrame, row_names: pd.Series
) -> None:
    """Every figure of ``summary`` against its sources; each error kind's example is its first row."""
    expected = expected_figures(batches, rows)
    found = summary.to_dict()
    assert {name: found[name] for name in expected} == expected
    assert summary.rows_per_second == round((expected["ok"] + expected["error"]) / summary.seconds, 1)
    failed = rows[rows["ts_status"] == "error"]
    for kind, example in summary.error_examples.items():
        first = failed[failed["ts_error_kind"] == kind].index[0]
        assert example["row"] == row_names[first]
        assert example["error"] == failed.loc[first, "ts_error"]
    assert set(summary.error_examples) == set(expected["errors_by_kind"])
