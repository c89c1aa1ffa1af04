"""Dask: ``ddf.ts.classify``, a lazy Dask DataFrame with the pandas accessor's columns.

Partitions are classified on the workers, each worker process through its own
client (:mod:`tsbatch._worker`); Dask schedules, retries partitions of lost
workers and moves the data.  The Parquet job on Dask is :mod:`tsbatch._job._dask`.
"""

from __future__ import annotations

import logging
from typing import Any, Unpack

import dask.dataframe as dd
import pandas as pd

from tsbatch._classify import check_column
from tsbatch._config import ClientConfig
from tsbatch._connection import with_connection
from tsbatch._errors import ClassificationError
from tsbatch._frame import check_no_collision, failures, result_frame
from tsbatch._options import AccessorKwargs, ClassifyOptions, read_kwargs
from tsbatch._outcomes import EngineResult
from tsbatch._worker import WorkerSettings, classify_partition, warn_of_tokens_that_stay_behind

logger = logging.getLogger("tsbatch")


def cluster_workers() -> int:
    """Worker processes of the current distributed client; 1 without one (threads share a process)."""
    try:
        from distributed import default_client

        client = default_client()
    except ValueError:
        return 1
    # Asked of the scheduler, not of the client's cached scheduler_info(), which can lag.
    return max(1, len(client.nthreads()))


def _classify_frame_partition(
    frame: pd.DataFrame, column: Any, worker: WorkerSettings, options: ClassifyOptions
) -> pd.DataFrame:
    result = classify_partition(frame, column, worker)
    out = result_frame(frame, result, prefix=options.prefix, include_scores=options.include_scores)
    out.attrs = {}  # the run report is per partition; Dask concatenates partitions
    failed = failures(out)
    if options.errors == "raise" and len(failed):
        raise ClassificationError(
            f"{len(failed)} of {len(out)} rows of a partition failed; first: {failed['ts_error'].iloc[0]}",
            failures=failed,
            result=out,
        )
    return out


def _empty_result(frame: pd.DataFrame, options: ClassifyOptions) -> pd.DataFrame:
    empty = EngineResult(rows=[], batches=[], model="", version=None, mode="rows", concurrency=0)
    meta = result_frame(frame, empty, prefix=options.prefix, include_scores=options.include_scores)
    meta.attrs = {}
    return meta


@dd.extensions.register_dataframe_accessor("ts")
class DaskFrameAccessor:
    """``ddf.ts.classify("text")``: a lazy Dask DataFrame with the pandas accessor's columns."""

    def __init__(self, frame: dd.DataFrame) -> None:
        self._frame = frame

    def classify(
        self,
        column: Any,
        *,
        config: ClientConfig | None = None,
        workers: int | None = None,
        metrics_port: int | None = None,
        metrics_address: str = "127.0.0.1",
        **kwargs: Unpack[AccessorKwargs],
    ) -> dd.DataFrame:
        """Classify ``column`` partition by partition on the workers; nothing runs until computed.

        Takes the options of ``DataFrame.ts.classify``.  ``concurrency`` and
        ``max_concurrency`` are totals for the whole computation, shared
        equally by ``workers`` processes (default: the workers of the current
        distributed client, else 1).  With ``metrics_port`` each worker
        process serves its client metrics on the first free port from it on.
        """
        settings, connection = read_kwargs(
            "dask DataFrame.ts.classify", kwargs, ("config", "workers", "metrics_port", "metrics_address")
        )
        check_column(list(self._frame.columns), column)
        check_no_collision(list(self._frame.columns), settings.prefix, settings.include_scores)
        config = with_connection(config, **connection)
        warn_of_tokens_that_stay_behind(config)
        worker = WorkerSettings(
            config=config,
            options=settings,
            engine=settings.engine_config(),
            workers=workers or cluster_workers(),
            metrics_port=metrics_port,
            metrics_address=metrics_address,
        )
        meta = _empty_result(self._frame._meta, settings)
        result: dd.DataFrame = self._frame.map_partitions(
            _classify_frame_partition, column, worker, settings, meta=meta
        )
        return result
