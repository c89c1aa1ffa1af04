"""The end of a job's run: the run recorded in the manifest, the side files, the summary.

``_failed.parquet`` and ``_batches.parquet`` are rebuilt from the parts on
disk; ``_summary.json`` holds the counts and the figures of the run report
(:mod:`tsbatch._report`) of the whole output, so that the summary and
``tsbatch report`` never disagree.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tsbatch._job._files import write_bytes, write_table
from tsbatch._job._manifest import Manifest
from tsbatch._job._parts import work_batch_metrics
from tsbatch._job._settings import JobSettings, JobSummary
from tsbatch._report import report
from tsbatch._report._figures import Totals


def write_side_files(
    settings: JobSettings,
    manifest: Manifest,
    rows_this_run: int,
    seconds: float,
    model: str | None,
    version: str | None,
    totals: Totals,
) -> JobSummary:
    """Record the run, write ``_failed``, ``_batches`` and ``_summary``; returns the summary."""
    output = settings.output
    manifest.runs.append(
        {
            "ended_at": round(time.time(), 3),
            "seconds": round(seconds, 3),
            "rows": rows_this_run,
            "model": model,
            "version": version,
            "breaker_openings": totals.breaker_openings,
            "paused_s": round(totals.paused_s, 3),
        }
    )
    manifest.save(output)
    parts = sorted(output.glob("part-*.parquet"))
    if settings.task == "predict":
        unify_outputs(parts)
    failed = [pq.read_table(p, filters=[("ts_status", "=", "error")]) for p in parts]
    failed_table = pa.concat_tables(failed, promote_options="default") if failed else pa.table({})
    write_table(output / "_failed.parquet", failed_table)
    write_table(output / "_batches.parquet", work_batch_metrics(output))
    figures = report(output)
    summary = JobSummary(
        output=str(output),
        rows=manifest.rows_done(),
        ok=figures.ok,
        failed=figures.error,
        skipped=figures.skipped,
        parts=len(manifest.parts),
        rows_this_run=rows_this_run,
        seconds=round(seconds, 3),
        rows_per_second=round(rows_this_run / seconds, 1) if seconds > 0 else 0.0,
        model=model,
        version=version,
        failed_by_kind=figures.errors_by_kind,
        batches=figures.batches,
        requests=figures.requests,
        retries=figures.retries,
        latency_p50_ms=figures.latency_p50_ms,
        latency_p95_ms=figures.latency_p95_ms,
        latency_p99_ms=figures.latency_p99_ms,
        breaker_openings=totals.breaker_openings,
        paused_s=round(totals.paused_s, 3),
    )
    write_bytes(output / "_summary.json", (json.dumps(asdict(summary), indent=2) + "\n").encode())
    return summary


def unify_outputs(parts: list[Path], column: str = "pred_output") -> None:
    """Give every part's raw-output column one type, so that the dataset reads as one table.

    A part none of whose rows has an output holds nulls of no type; it is
    rewritten (by rename, as every part) with the type the other parts have.
    """
    types = {part: pq.read_schema(part).field(column).type for part in parts}
    known = next((t for t in types.values() if not pa.types.is_null(t)), None)
    if known is None:
        return
    for part, kind in types.items():
        if pa.types.is_null(kind):
            table = pq.read_table(part)
            where = table.schema.get_field_index(column)
            table = table.set_column(where, pa.field(column, known), pa.nulls(table.num_rows, known))
            write_table(part, table)
