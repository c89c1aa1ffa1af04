"""Engines: what classifies a job's parts.  The runner (:mod:`tsbatch._job._runner`) does the rest.

An engine yields a :class:`~tsbatch._job._parts.PartResult` for each part not
yet in the manifest, after the part is written.  :class:`PandasEngine`
classifies in this process; :class:`~tsbatch._job._dask.DaskEngine` on a Dask
cluster.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tsbatch._client import TorchServeClient
from tsbatch._engine import classify_values
from tsbatch._errors import JobOutage, JobStopped, OutageError
from tsbatch._job._manifest import Manifest
from tsbatch._job._parts import PartResult, classified_part, part_name, record_batches

if TYPE_CHECKING:
    from tsbatch._job._runner import Job


class PartEngine(Protocol):
    """Classifies and writes the parts of a job that are not done yet."""

    def parts(
        self, job: Job, client: TorchServeClient, files: list[Path], manifest: Manifest
    ) -> AsyncIterator[PartResult]:
        """A result for each part written, in any order; raises :class:`JobStopped` when asked to stop."""
        ...


class PandasEngine:
    """Reads, classifies and writes one part after another in this process."""

    async def parts(
        self, job: Job, client: TorchServeClient, files: list[Path], manifest: Manifest
    ) -> AsyncIterator[PartResult]:
        settings = job.settings
        offset = 0
        for index, batch in enumerate(record_batches(files, settings)):
            if part_name(index) in manifest.parts:
                offset += batch.num_rows
                continue
            if job.stop.is_set():
                raise JobStopped(job.stopped_message(manifest))
            frame = batch.to_pandas()
            try:
                result = await classify_values(
                    client,
                    frame[settings.column].tolist(),
                    settings.classify,
                    job.progress,
                    job.stop,
                    engine=job.engine_config,
                    checked=job.checked,
                    task=settings.task,
                )
            except OutageError as exc:  # the server stayed down since the last part
                raise JobOutage(job.outage_message(manifest, str(exc))) from None
            except Exception as exc:
                if job.stop.is_set():
                    raise JobStopped(job.stopped_message(manifest)) from exc
                raise
            yield classified_part(settings, index, offset, frame, result)
            offset += batch.num_rows
