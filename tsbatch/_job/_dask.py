"""The Dask engine: a job's parts classified and written by the workers of a Dask cluster.

The driver plans the parts from the Parquet metadata, so part ``i`` holds the
same rows on every run; each worker reads, classifies (through its process's
client, :mod:`tsbatch._worker`) and writes its parts by rename under their
numbers, and sends back counts and per-batch metrics, never rows.  A part
Dask runs twice (its worker died) replaces its file instead of adding rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from distributed import Client, LocalCluster, as_completed

from tsbatch._client import TorchServeClient
from tsbatch._errors import ConfigError, JobStopped, OutageError
from tsbatch._job._manifest import Manifest
from tsbatch._job._parts import PartResult, Piece, classified_part, part_name, plan_pieces, read_piece
from tsbatch._job._settings import DEFAULT_DASK_WORKERS, JobSettings
from tsbatch._worker import WorkerSettings, classify_partition, warn_of_tokens_that_stay_behind

if TYPE_CHECKING:
    from tsbatch._job._runner import Job

logger = logging.getLogger("tsbatch")


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


def classify_piece(piece: Piece, settings: JobSettings, worker: WorkerSettings) -> PartResult:
    """Read, classify and write one part on a worker."""
    frame = read_piece(piece, settings.input_columns()).to_pandas()
    try:
        result = classify_partition(frame, settings.column, worker)
    except OutageError as exc:  # the part is not written; the job stops as after any outage
        model = settings.classify.model or worker.config.model
        return PartResult(piece.index, piece.offset, {}, None, model, None, str(exc))
    return classified_part(settings, piece.index, piece.offset, frame, result)


@contextlib.asynccontextmanager
async def dask_client(cluster: ClusterSettings) -> AsyncIterator[Client]:
    """A client of the scheduler at ``cluster.scheduler``, or of a local cluster started for the job."""
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


class DaskEngine:
    """Classifies and writes the parts on a Dask cluster."""

    def __init__(self, cluster: ClusterSettings) -> None:
        self.cluster = cluster

    async def parts(
        self, job: Job, client: TorchServeClient, files: list[Path], manifest: Manifest
    ) -> AsyncGenerator[PartResult, None]:
        pieces = plan_pieces(files, job.settings.rows_per_part)
        todo = [p for p in pieces if part_name(p.index) not in manifest.parts]
        if not todo:
            return
        warn_of_tokens_that_stay_behind(job.config)
        async with dask_client(self.cluster) as dask:
            workers = await worker_count(dask)
            if len(pieces) < workers:
                logger.warning(
                    "INPUT makes %d partitions for %d workers: write it with smaller row groups "
                    "(about --rows-per-part rows) to use them all",
                    len(pieces),
                    workers,
                )
            worker = WorkerSettings(
                config=job.config,
                options=job.settings.classify,
                engine=job.engine_config,
                workers=workers,
                metrics_port=self.cluster.metrics_port,
                metrics_address=self.cluster.metrics_address,
                task=job.settings.task,
            )
            async for result in self._results(dask, todo, job, worker, manifest):
                if result.outage is None:
                    job.progress.advance(sum(result.counts.values()), result.counts["error"])
                yield result

    async def _results(
        self, dask: Client, pieces: list[Piece], job: Job, worker: WorkerSettings, manifest: Manifest
    ) -> AsyncGenerator[PartResult, None]:
        """Results as parts finish; a stop request cancels what is left and raises :class:`JobStopped`."""
        futures = dask.map(
            classify_piece,
            pieces,
            settings=job.settings,
            worker=worker,
            key=[f"tsbatch-{manifest.fingerprint[:16]}-{p.index}" for p in pieces],
        )
        stopping = asyncio.ensure_future(job.stop.wait())
        finished = as_completed(futures)
        try:
            while True:
                following = asyncio.ensure_future(anext(finished))
                await asyncio.wait({following, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if stopping.done():
                    following.cancel()
                    raise JobStopped(job.stopped_message(manifest))
                try:
                    future = following.result()
                except StopAsyncIteration:
                    return
                yield await future
                future.release()
        finally:
            stopping.cancel()
            await dask.cancel(futures)
