"""Dask: ``ddf.ts.classify`` and the Parquet job on a Dask cluster.

Partitions are classified on the workers, each worker process through its own
client (:mod:`tsbatch._worker`); Dask schedules, retries partitions of lost
workers and moves the data.  The job plans its partitions from the Parquet
metadata, so part ``i`` holds the same rows on every run, and writes each part
by rename under its number: a partition Dask runs twice (its worker died)
replaces its part instead of adding rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import dask.dataframe as dd
import pandas as pd
from distributed import Client, LocalCluster, as_completed

from tsbatch._classify import FrameOptions, check_column
from tsbatch._client import TorchServeClient
from tsbatch._config import ClientConfig
from tsbatch._engine import EngineResult, Progress
from tsbatch._errors import ClassificationError, ConfigError
from tsbatch._frame import check_no_collision, failures, result_frame
from tsbatch._job import (
    DEFAULT_DASK_WORKERS,
    Job,
    JobMetrics,
    JobOutage,
    JobSettings,
    JobStopped,
    JobSummary,
    Manifest,
    Piece,
    input_columns,
    part_batch_metrics,
    part_frame,
    part_name,
    plan_pieces,
    read_piece,
    remove_temporary_files,
    status_counts,
    write_part,
)
from tsbatch._worker import WorkerSettings, classify_partition

logger = logging.getLogger("tsbatch")


# -- ddf.ts.classify ------------------------------------------------------------------


def _cluster_workers() -> int:
    """Worker processes of the current distributed client; 1 without one (threads share a process)."""
    try:
        from distributed import default_client

        client = default_client()
    except ValueError:
        return 1
    # Asked of the scheduler, not of the client's cached scheduler_info(), which can lag.
    return max(1, len(client.nthreads()))


def _classify_frame_partition(
    frame: pd.DataFrame, column: Any, worker: WorkerSettings, options: FrameOptions
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


def _empty_result(frame: pd.DataFrame, options: FrameOptions) -> pd.DataFrame:
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
        **options: Any,
    ) -> dd.DataFrame:
        """Classify ``column`` partition by partition on the workers; nothing runs until computed.

        Takes the options of ``DataFrame.ts.classify``.  ``concurrency`` is the
        total of requests in flight for the whole computation, shared equally
        by ``workers`` processes (default: the workers of the current
        distributed client, else 1).  With ``metrics_port`` each worker
        process serves its client metrics on the first free port from it on.
        """
        settings = FrameOptions(**options)
        check_column(list(self._frame.columns), column)
        check_no_collision(list(self._frame.columns), settings.prefix, settings.include_scores)
        worker = WorkerSettings(
            config=config or ClientConfig.from_env(),
            options=settings.classify_options(),
            workers=workers or _cluster_workers(),
            metrics_port=metrics_port,
            metrics_address=metrics_address,
        )
        meta = _empty_result(self._frame._meta, settings)
        result: dd.DataFrame = self._frame.map_partitions(
            _classify_frame_partition, column, worker, settings, meta=meta
        )
        return result


# -- the Parquet job ------------------------------------------------------------------


@dataclass(frozen=True)
class PieceResult:
    """What a worker sends back for a written part: counts and per-batch metrics, not rows;
    or, for a part the outage budget left unwritten, why."""

    index: int
    offset: int
    counts: dict[str, int]
    batches: pd.DataFrame | None
    model: str
    version: str | None
    outage: str | None = None


def classify_piece(piece: Piece, settings: JobSettings, worker: WorkerSettings) -> PieceResult:
    """Read, classify and write one part on a worker."""
    frame = read_piece(piece, input_columns(settings)).to_pandas()
    result = classify_partition(frame, settings.column, worker)
    if result.outage is not None:  # not written: a resume classifies the part again
        return PieceResult(piece.index, piece.offset, {}, None, result.model, result.version, result.outage)
    out = part_frame(frame, result, settings, piece.offset)
    write_part(settings, piece.index, out, result)
    return PieceResult(
        piece.index,
        piece.offset,
        status_counts(out),
        part_batch_metrics(out, piece.index),
        result.model,
        result.version,
    )


@dataclass(frozen=True)
class ClusterSettings:
    """Where a Dask job runs: a scheduler's address, or a local cluster of ``workers`` processes."""

    scheduler: str | None = None
    workers: int = DEFAULT_DASK_WORKERS
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1; got {self.workers}")


@contextlib.asynccontextmanager
async def _dask_client(cluster: ClusterSettings) -> AsyncIterator[Client]:
    if cluster.scheduler is not None:
        async with Client(cluster.scheduler, asynchronous=True) as client:
            await client.wait_for_workers(1)
            yield client
        return
    async with (
        LocalCluster(
            n_workers=cluster.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address="127.0.0.1:0",
            asynchronous=True,
        ) as local,
        Client(local, asynchronous=True) as client,
    ):
        await client.wait_for_workers(cluster.workers)
        yield client


async def worker_count(dask: Client) -> int:
    """Worker processes connected now, asked of the scheduler (an async client's cached info lags)."""
    return len(await dask.nthreads())


class DaskJob(Job):
    """A classify job whose parts are classified and written by Dask workers.

    The driver checks the input and the server, plans the parts, records each
    part in the manifest as its worker reports it, and writes the side files.
    Workers need INPUT and OUTPUT at the same paths (a shared file system).
    """

    def __init__(
        self,
        settings: JobSettings,
        config: ClientConfig,
        cluster: ClusterSettings,
        *,
        metrics: JobMetrics | None = None,
        progress: Progress | None = None,
    ) -> None:
        super().__init__(settings, config, metrics=metrics, progress=progress)
        self.cluster = cluster

    async def run(self) -> JobSummary:
        """Classify every part not yet written on the cluster, then write the side files."""
        settings = self.settings
        files, manifest = self.prepare()
        started = time.monotonic()
        async with TorchServeClient(config=self.config, registry=self.metrics.registry) as client:
            await self.open_output(client, manifest)
        pieces = plan_pieces(files, settings.rows_per_part)
        todo = [p for p in pieces if part_name(p.index) not in manifest.parts]
        model, version = settings.model, settings.version
        if todo:
            async with _dask_client(self.cluster) as dask:
                workers = await worker_count(dask)
                if len(pieces) < workers:
                    logger.warning(
                        "INPUT makes %d partitions for %d workers: write it with smaller row groups "
                        "(about --rows-per-part rows) to use them all",
                        len(pieces),
                        workers,
                    )
                worker = WorkerSettings(
                    config=self.config,
                    options=self._options(),
                    workers=workers,
                    metrics_port=self.cluster.metrics_port,
                    metrics_address=self.cluster.metrics_address,
                )
                async for result in self._results(dask, todo, worker, manifest):
                    if result.outage is not None:
                        raise JobOutage(self._outage_message(manifest, result.outage))
                    assert result.batches is not None
                    self.record_part(manifest, result.index, result.offset, result.counts, result.batches)
                    self.progress.advance(sum(result.counts.values()), result.counts["error"])
                    model, version = result.model, result.version
        remove_temporary_files(settings.output)
        return self.finish(manifest, time.monotonic() - started, model, version)

    async def _results(
        self, dask: Client, pieces: list[Piece], worker: WorkerSettings, manifest: Manifest
    ) -> AsyncIterator[PieceResult]:
        """Results as parts finish; a stop request cancels what is left and raises :class:`JobStopped`."""
        futures = dask.map(
            classify_piece,
            pieces,
            settings=self.settings,
            worker=worker,
            key=[f"tsbatch-{manifest.fingerprint[:16]}-{p.index}" for p in pieces],
        )
        stopping = asyncio.ensure_future(self.stop.wait())
        finished = as_completed(futures)
        try:
            while True:
                following = asyncio.ensure_future(anext(finished))
                await asyncio.wait({following, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if stopping.done():
                    following.cancel()
                    raise JobStopped(self._stopped_message(manifest))
                try:
                    future = following.result()
                except StopAsyncIteration:
                    return
                yield await future
                future.release()
        finally:
            stopping.cancel()
            await dask.cancel(futures)
