"""What a Parquet job reads, how it classifies, where it writes, and what it reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tsbatch._options import ClassifyOptions
from tsbatch._outcomes import Task

DEFAULT_ROWS_PER_PART = 10_000
DEFAULT_STOP_TIMEOUT = 30.0
#: Worker processes of the local cluster a Dask job starts when given no scheduler.
DEFAULT_DASK_WORKERS = 2
#: The column of row numbers a part holds when the input has no id column.
ROW_ID = "_row"
Engine = Literal["pandas", "dask"]


@dataclass(frozen=True, kw_only=True)
class JobSettings:
    """What a job reads (``input``, ``column``, ``id_column``, ``keep_columns``), how it
    classifies (``classify``; ``task="predict"`` keeps raw outputs instead), and where and how
    it writes (``output``, ``rows_per_part``)."""

    input: str
    output: Path
    column: str = "text"
    id_column: str | None = None
    keep_columns: tuple[str, ...] = ()
    classify: ClassifyOptions = field(default_factory=ClassifyOptions)
    rows_per_part: int = DEFAULT_ROWS_PER_PART
    overwrite: bool = False
    job_name: str = "tsbatch"
    engine: Engine = "pandas"
    task: Task = "classify"

    def identity(self) -> dict[str, Any]:
        """The settings that shape the output; a resume must use the same ones."""
        # A classify job's identity is what it was before there were other tasks: it still resumes.
        task = {"task": self.task} if self.task != "classify" else {}
        return {
            **task,
            "column": self.column,
            "id_column": self.id_column,
            "keep_columns": list(self.keep_columns),
            "model": self.classify.model,
            "version": self.classify.version,
            "rows_per_part": self.rows_per_part,
            "engine": self.engine,
        }

    def input_columns(self) -> list[str]:
        """The input columns a job reads: id, kept columns, text; each once."""
        wanted = [*([self.id_column] if self.id_column else []), *self.keep_columns, self.column]
        return list(dict.fromkeys(wanted))


@dataclass(frozen=True)
class JobSummary:
    """What a job did; ``failed_by_kind`` counts the failed rows by ``ts_error_kind``, most first.

    Counts, batches, requests, retries and latency percentiles (per batch) cover the
    whole output; ``rows_per_second``, ``breaker_openings`` and ``paused_s``
    this run.
    """

    output: str
    rows: int
    ok: int
    failed: int
    skipped: int
    parts: int
    rows_this_run: int
    seconds: float
    rows_per_second: float
    model: str | None
    version: str | None
    failed_by_kind: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    requests: int = 0
    retries: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    breaker_openings: int = 0
    paused_s: float = 0.0
