"""The two sources of a run report, brought to the tables :mod:`tsbatch._report._figures` reads.

A result frame carries its run report and batch metrics in ``attrs``; a job's
output folder has its rows in ``part-*.parquet``, its batch metrics in
``_batches.parquet`` (``_work/`` while it runs) and its runs in the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from tsbatch._errors import InputValidationError, JobInputError
from tsbatch._frame import BATCH_DTYPES, batch_metrics, run_report
from tsbatch._report._figures import Totals


@dataclass(frozen=True)
class Source:
    """A run's tables, its totals, and what it was (model, version, mode, limit, outage)."""

    batches: pd.DataFrame
    rows: pd.DataFrame
    totals: Totals
    about: dict[str, Any]


def from_frame(result: pd.DataFrame) -> Source:
    """The run a frame ``classify`` (or ``retry_failed``) returned describes."""
    report = run_report(result)
    options = (report.call or {}).get("options") or {}
    label = f"{options.get('prefix', 'pred_')}label"
    column = (report.call or {}).get("column")
    texts = result[column] if column is not None and column in result.columns else None
    rows = pd.DataFrame(
        {
            "status": result["ts_status"],
            "kind": result["ts_error_kind"],
            "error": result["ts_error"],
            "label": result[label] if label in result.columns else None,
            "part": 0,
            "batch_id": result["ts_batch_id"],
            "row": result.index,
            "text": texts if texts is not None else None,
        },
        index=result.index,
    )
    batches = batch_metrics(result)
    batches.insert(0, "part", 0)
    totals = Totals(report.seconds, report.breaker_openings, report.paused_s)
    about = {
        "source": "result frame",
        "model": report.model,
        "version": report.version,
        "mode": report.mode,
        "concurrency": report.concurrency,
        "adaptive": report.adaptive,
        "outage": report.outage,
    }
    return Source(batches, rows, totals, about)


def from_output(output: Path) -> Source:
    """The runs of the job that wrote ``output`` (finished parts only)."""
    # Imported here: a job's end makes its summary from this report.
    from tsbatch._job._manifest import MANIFEST, Manifest

    manifest = Manifest.load(output)
    if manifest is None:
        raise JobInputError(f"{output} holds no {MANIFEST}: it is not a tsbatch output folder")
    settings = manifest.settings
    id_column, column = settings.get("id_column"), settings["column"]
    frames = []
    for name in sorted(manifest.parts):
        path = output / name
        if not path.is_file():
            raise JobInputError(f"{path} is listed in {output / MANIFEST} but missing")
        frames.append(_part_rows(path, int(name.split("-")[1].split(".")[0]), id_column, column))
    rows = pd.concat(frames, ignore_index=True) if frames else _part_rows(None, 0, id_column, column)
    runs = manifest.runs
    totals = Totals(
        seconds=sum(float(r["seconds"]) for r in runs) if runs else None,
        breaker_openings=sum(int(r.get("breaker_openings", 0)) for r in runs),
        paused_s=sum(float(r.get("paused_s", 0.0)) for r in runs),
    )
    last = runs[-1] if runs else {}
    about = {
        "source": str(output),
        "model": last.get("model") or settings.get("model"),
        "version": last.get("version") or settings.get("version"),
        "parts": len(manifest.parts),
        "runs": len(runs),
    }
    return Source(_job_batches(output), rows, totals, about)


def _part_rows(path: Path | None, part: int, id_column: str | None, column: str) -> pd.DataFrame:
    names = {
        "ts_status": "status",
        "ts_error_kind": "kind",
        "ts_error": "error",
        "pred_label": "label",
        "ts_batch_id": "batch_id",
        id_column or "_row": "row",
        column: "text",
    }
    if path is None:
        return pd.DataFrame({name: pd.Series([], dtype="object") for name in [*names.values(), "part"]})
    present = set(pq.read_schema(path).names)
    if "ts_status" not in present:
        raise JobInputError(f"{path} has no ts_status column: it is not a part a tsbatch job wrote")
    table = pq.read_table(path, columns=[c for c in names if c in present])
    frame = table.rename_columns([names[c] for c in table.column_names]).to_pandas()
    for name in names.values():
        if name not in frame.columns:
            frame[name] = None
    frame["part"] = part
    return frame


def _job_batches(output: Path) -> pd.DataFrame:
    """``_batches.parquet``, or while the job runs (or after a stop) the per-part files in ``_work/``;
    a column older outputs lack is filled with nulls."""
    from tsbatch._job._parts import work_batch_metrics

    final = output / "_batches.parquet"
    frame = (pq.read_table(final) if final.is_file() else work_batch_metrics(output)).to_pandas()
    for name in BATCH_DTYPES:
        if name not in frame.columns:
            frame[name] = None
    return frame


def source_of(result: Any) -> Source:
    """A frame ``classify`` returned, or a job's output folder (a path)."""
    if isinstance(result, pd.DataFrame):
        return from_frame(result)
    if isinstance(result, str | Path):
        output = Path(result)
        if not output.is_dir():
            raise JobInputError(f"{output} is no folder: pass a job's output folder or a result frame")
        return from_output(output)
    raise InputValidationError(
        f"a report is made from a result frame or a job's output folder, not {type(result).__name__}"
    )
