"""Engines: what classifies a job's parts.  The runner (:mod:`tsbatch._job._runner`) does the rest.

An engine yields a :class:`~tsbatch._job._parts.PartResult` for each part not
yet in the manifest, after the part is written.  :class:`PandasEngine`
classifies in this process; :class:`~tsbatch._job._dask.DaskEngine` on a Dask
cluster.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from tsbatch._client import TorchServeClient
from tsbatch._engine import choose_limit, choose_mode, classify_values
from tsbatch._errors import JobOutage, JobStopped, OutageError
from tsbatch._job._manifest import Manifest
from tsbatch._job._parts import PartResult, classified_part, part_name, record_batches
from tsbatch._job._settings import JobSettings
from tsbatch._outcomes import EngineResult

if TYPE_CHECKING:
    from tsbatch._job._runner import Job


class PartEngine(Protocol):
    """Classifies and writes the parts of a job that are not done yet."""

    def parts(
        self, job: Job, client: TorchServeClient, files: list[Path], manifest: Manifest
    ) -> AsyncGenerator[PartResult, None]:
        """A result for each part written, in any order; raises :class:`JobStopped` when asked to stop."""
        ...


#: Parts classified at once by :class:`PandasEngine`.
PARTS_AHEAD = 2


@dataclass
class _Part:
    """One part read from the input, and its run once started."""

    index: int
    offset: int
    frame: pd.DataFrame
    values: list[Any]
    all_sent: asyncio.Event = field(default_factory=asyncio.Event)
    run: asyncio.Task[EngineResult] | None = None


class PandasEngine:
    """Classifies the parts in this process, pipelined.

    The next part is read and converted in a thread while earlier parts are
    classified, and starts sending as soon as every text of the part before has
    gone out: its rows take the places in flight the last part's tail frees, so
    the limit stays full across part boundaries, and the parts share one limit.
    Each finished part is built and written in a thread while the loop keeps
    sending.  Parts are written and yielded in order.
    """

    async def parts(
        self, job: Job, client: TorchServeClient, files: list[Path], manifest: Manifest
    ) -> AsyncGenerator[PartResult, None]:
        settings = job.settings
        info = job.checked.info if job.checked is not None else None
        limit = choose_limit(client, choose_mode(settings.classify.mode, info), job.engine_config, info)
        inputs = _read_parts(files, settings, manifest)
        reading: asyncio.Future[_Part | None] | None = _read_next(inputs)
        running: deque[_Part] = deque()

        def start(part: _Part) -> None:
            part.run = asyncio.ensure_future(
                classify_values(
                    client,
                    part.values,
                    settings.classify,
                    job.progress,
                    job.stop,
                    limit=limit,
                    engine=job.engine_config,
                    checked=job.checked,
                    task=settings.task,
                    all_sent=part.all_sent,
                )
            )
            running.append(part)

        try:
            while True:
                # Start the next part once the newest has sent everything.
                while (
                    reading is not None
                    and len(running) < PARTS_AHEAD
                    and not job.stop.is_set()
                    and (not running or running[-1].all_sent.is_set())
                ):
                    part = await reading
                    reading = None
                    if part is not None:
                        start(part)
                        reading = _read_next(inputs)
                if not running:
                    if reading is not None and await reading is not None:  # asked to stop
                        raise JobStopped(job.stopped_message(manifest))
                    return
                oldest = running[0]
                assert oldest.run is not None
                if reading is not None and len(running) < PARTS_AHEAD and not job.stop.is_set():
                    # Wake when the oldest part ends or the newest has sent everything.
                    sent = asyncio.ensure_future(running[-1].all_sent.wait())
                    await asyncio.wait((oldest.run, sent), return_when=asyncio.FIRST_COMPLETED)
                    sent.cancel()
                    if not oldest.run.done():
                        continue
                running.popleft()
                try:
                    result = await oldest.run
                except OutageError as exc:  # the server stayed down since the last part
                    raise JobOutage(job.outage_message(manifest, str(exc))) from None
                except Exception as exc:
                    if job.stop.is_set():
                        raise JobStopped(job.stopped_message(manifest)) from exc
                    raise
                yield await asyncio.to_thread(
                    classified_part, settings, oldest.index, oldest.offset, oldest.frame, result
                )
        finally:
            runs = [part.run for part in running if part.run is not None]
            for run in runs:
                run.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
            if reading is not None:
                reading.cancel()


def _read_next(inputs: Iterator[_Part]) -> asyncio.Future[_Part | None]:
    """The next part, read in a thread; ``None`` after the last."""
    return asyncio.ensure_future(asyncio.to_thread(next, inputs, None))


def _read_parts(files: list[Path], settings: JobSettings, manifest: Manifest) -> Iterator[_Part]:
    """The parts not yet in the manifest, read and converted to pandas (run in a thread)."""
    offset = 0
    for index, batch in enumerate(record_batches(files, settings)):
        if part_name(index) not in manifest.parts:
            frame = batch.to_pandas()
            yield _Part(index, offset, frame, frame[settings.column].tolist())
        offset += batch.num_rows
