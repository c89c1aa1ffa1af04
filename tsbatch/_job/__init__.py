"""Parquet-in / Parquet-out batch jobs: streaming, resumable, every row exactly once.

The modules, from the bottom up: ``_settings`` (what a job is), ``_files``
(input discovery, writes by rename), ``_manifest``, ``_parts`` (cutting the
input, writing a part), ``_metrics``, ``_engines`` (pandas) and ``_dask``
(imported only for ``--engine dask``), ``_runner`` (the job), ``_retry``
(``retry-failed``).
"""

from tsbatch._job._files import input_files
from tsbatch._job._manifest import MANIFEST, Manifest
from tsbatch._job._metrics import JobMetrics
from tsbatch._job._parts import Piece, numbered_inputs, part_name, plan_pieces
from tsbatch._job._retry import retry_failed
from tsbatch._job._runner import Job, settings_from_output
from tsbatch._job._settings import (
    DEFAULT_DASK_WORKERS,
    DEFAULT_ROWS_PER_PART,
    DEFAULT_STOP_TIMEOUT,
    ROW_ID,
    JobSettings,
    JobSummary,
)

__all__ = [
    "DEFAULT_DASK_WORKERS",
    "DEFAULT_ROWS_PER_PART",
    "DEFAULT_STOP_TIMEOUT",
    "MANIFEST",
    "ROW_ID",
    "Job",
    "JobMetrics",
    "JobSettings",
    "JobSummary",
    "Manifest",
    "Piece",
    "input_files",
    "numbered_inputs",
    "part_name",
    "plan_pieces",
    "retry_failed",
    "settings_from_output",
]
