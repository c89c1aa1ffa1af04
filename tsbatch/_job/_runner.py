"""The job runner, the same for every engine: check, open OUTPUT, record each part, finish.

OUTPUT is a Parquet dataset::

    part-00000.parquet ...   predictions, kept input columns and ts_* metadata
    _manifest.json           input fingerprint, settings, finished parts
    _batches.parquet         per-batch metrics of every part
    _failed.parquet          rows that ended in error, with the reason
    _summary.json            counts, duration, throughput, latency, retries, pauses
    _work/                   per-part batch metrics while the job runs

Each part is written by rename, then recorded in the manifest (also written
by rename); a part in the manifest is never redone, a part file not in it is
redone and replaced.  Either way each input row ends in exactly one part.  An
empty input gives one empty part with the full schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tsbatch._client import TorchServeClient
from tsbatch._config import ClientConfig
from tsbatch._errors import JobInputError, JobOutage, OutageError
from tsbatch._heap import collector_tuned_for_run
from tsbatch._job._engines import PandasEngine, PartEngine
from tsbatch._job._files import (
    check_output,
    clear_output,
    input_files,
    remove_temporary_files,
    writing,
)
from tsbatch._job._finish import write_side_files
from tsbatch._job._manifest import MANIFEST, Manifest, fingerprint
from tsbatch._job._metrics import JobMetrics
from tsbatch._job._parts import PartResult, classified_part, part_name, write_batch_metrics
from tsbatch._job._settings import JobSettings, JobSummary
from tsbatch._options import ClassifyOptions
from tsbatch._outcomes import EngineResult, Progress
from tsbatch._preflight import Checked, preflight
from tsbatch._report._figures import Totals

logger = logging.getLogger("tsbatch")


def _check_columns(dataset: ds.Dataset, settings: JobSettings) -> None:
    names = dataset.schema.names
    missing = [c for c in settings.input_columns() if c not in names]
    if missing:
        raise JobInputError(f"column(s) {missing} not in INPUT; it has: {', '.join(names)}")
    if settings.id_column:
        ids = dataset.to_table(columns=[settings.id_column]).column(0)
        if ids.null_count:
            raise JobInputError(f"id column {settings.id_column!r} has {ids.null_count} missing values")
        distinct = len(ids.unique())
        if distinct != len(ids):
            raise JobInputError(
                f"id column {settings.id_column!r} is not unique: {len(ids) - distinct} duplicate values"
            )


#: The command-line flag of each setting that shapes OUTPUT.
_FLAGS = {
    "column": "--column",
    "id_column": "--id-column",
    "keep_columns": "--keep-columns",
    "model": "--model",
    "version": "--model-version",
    "rows_per_part": "--rows-per-part",
    "engine": "--engine",
}


def _refusal(settings: JobSettings, existing: Manifest) -> str:
    """Why OUTPUT cannot be resumed: each setting that changed, with both values, and what to do."""
    now = settings.identity()
    then = {"task": "classify", **existing.settings}  # outputs of classify jobs name no task
    changed = [name for name in now if name in then and then[name] != now[name]]
    if "task" not in now and then["task"] != "classify":
        changed.insert(0, "task")
        now = {"task": "classify", **now}
    where = f"OUTPUT {settings.output}"
    if not changed:
        return (
            f"{where} was written from INPUT {existing.input} as it was then; its files, sizes or "
            "modification times have changed since. Pass --overwrite to start over"
        )
    was = "; ".join(f"{name} was {then[name]!r}, now {now[name]!r}" for name in changed)
    flags = ", ".join(_flag(name, then[name]) for name in changed)
    return (
        f"{where} was written with other settings: {was}. To resume it, run with the settings "
        f"it was written with ({flags}); or pass --overwrite to start over"
    )


def _flag(name: str, value: Any) -> str:
    if name == "task":
        return f"tsbatch {value}"
    if name == "keep_columns":
        value = ",".join(value)
    if value is None or value == "":
        return f"without {_FLAGS[name]}"
    return f"{_FLAGS[name]} {value}"


class Job:
    """A classify job: a fresh start or a resume, on the pandas engine (this process) or another."""

    def __init__(
        self,
        settings: JobSettings,
        config: ClientConfig,
        *,
        engine: PartEngine | None = None,
        metrics: JobMetrics | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.engine = engine or PandasEngine()
        self.engine_config = settings.classify.engine_config()  # the environment, read once per job
        self.metrics = metrics or JobMetrics()
        self.progress = progress or Progress()
        self.stop = asyncio.Event()
        self.received_signal: int | None = None
        self._stop_requested = False
        self._done_before = 0
        self._prepared: tuple[list[Path], Manifest] | None = None
        self.checked: Checked | None = None  # the server's check, made once per run

    def request_stop(self, signum: int | None = None) -> None:
        """Ask the run to stop: no new requests; requests in flight finish."""
        self.received_signal = signum
        self._stop_requested = True
        self.stop.set()

    def prepare(self) -> tuple[list[Path], Manifest]:
        """Validate everything that can be checked without the server; writes nothing.

        The result is kept, so checking early and then running reads the input once.
        """
        if self._prepared is None:
            self._prepared = self._check_and_load()
        return self._prepared

    def _check_and_load(self) -> tuple[list[Path], Manifest]:
        settings = self.settings
        files = input_files(settings.input)
        dataset = ds.dataset(files, format="parquet")
        _check_columns(dataset, settings)
        existing = (
            Manifest.load(settings.output) if settings.output.is_dir() and not settings.overwrite else None
        )
        check_output(settings.output, existing is not None, settings.overwrite)
        digest = fingerprint(files, dataset.schema, settings)
        if existing is not None and existing.fingerprint != digest:
            raise JobInputError(_refusal(settings, existing))
        manifest = existing or Manifest(
            fingerprint=digest,
            input=settings.input,
            settings={**settings.identity(), "url": self.config.url},
            total_rows=dataset.count_rows(),
        )
        return files, manifest

    async def run(self) -> JobSummary:
        """Classify every part not yet written, then write the side files."""
        with collector_tuned_for_run():
            return await self._run()

    async def _run(self) -> JobSummary:
        files, manifest = self.prepare()
        self._prepared = None  # a later run checks again
        self.stop = asyncio.Event()  # of this run's event loop
        if self._stop_requested:
            self.stop.set()
        started = time.monotonic()
        model, version = self.settings.classify.model or self.config.model, self.settings.classify.version
        async with TorchServeClient(config=self.config, registry=self.metrics.registry) as client:
            await self.open_output(client, manifest)
            # Closed on the way out, so that no part's run outlives the client.
            async with contextlib.aclosing(self.engine.parts(self, client, files, manifest)) as parts:
                async for part in parts:
                    if part.outage is not None:
                        raise JobOutage(self.outage_message(manifest, part.outage))
                    # Files written and fsynced in a thread: the loop keeps sending meanwhile.
                    await asyncio.to_thread(self.record_part, manifest, part)
                    model, version = part.model, part.version
            openings, paused = client.resilience_totals()  # this run's: the client is its own
        if manifest.total_rows == 0 and not manifest.parts:
            self.record_part(manifest, self._empty_part(files, model or self.config.model))
        remove_temporary_files(self.settings.output)
        totals = Totals(time.monotonic() - started, openings, paused)
        return await asyncio.to_thread(self.finish, manifest, totals.seconds or 0.0, model, version, totals)

    async def open_output(self, client: TorchServeClient, manifest: Manifest) -> None:
        """Check the server, then make OUTPUT ready: cleared or resumed, manifest written.

        :func:`~tsbatch._preflight.preflight` finds what no wait can fix (a
        wrong model, a refused token) before any part; a server that cannot
        be reached is waited for within the outage budget, then the job stops
        as after any outage.
        """
        settings = self.settings
        try:
            self.checked = await preflight(client, settings.classify.model, settings.classify.version)
        except OutageError as exc:
            raise JobOutage(self.outage_message(manifest, str(exc))) from None
        with writing(settings.output):
            if settings.overwrite:
                clear_output(settings.output)
            (settings.output / "_work").mkdir(parents=True, exist_ok=True)
            remove_temporary_files(settings.output)
        manifest.save(settings.output)
        self.progress.total = manifest.total_rows
        self.progress.advance(manifest.rows_done(), 0)
        self._done_before = self.progress.done

    def _empty_part(self, files: list[Path], model: str) -> PartResult:
        """Part 0 of an empty input: no rows, every column."""
        schema = pq.read_schema(files[0])
        frame = schema.empty_table().select(self.settings.input_columns()).to_pandas()
        empty = EngineResult(rows=[], batches=[], model=model, version=None, mode="rows", concurrency=0)
        return classified_part(self.settings, 0, 0, frame, empty)

    def record_part(self, manifest: Manifest, part: PartResult) -> None:
        """Record a written part: its batch metrics, then its entry in the manifest, then the metrics."""
        assert part.batches is not None
        write_batch_metrics(
            self.settings.output / "_work" / f"batches-{part.index:05d}.parquet", part.batches
        )
        counts = part.counts
        manifest.parts[part_name(part.index)] = {
            "rows": sum(counts.values()),
            "offset": part.offset,
            **counts,
        }
        manifest.save(self.settings.output)
        for status, rows in counts.items():
            self.metrics.rows.labels(status).inc(rows)

    def stopped_message(self, manifest: Manifest) -> str:
        return f"stopped with {len(manifest.parts)} parts written to {self.settings.output}"

    def outage_message(self, manifest: Manifest, outage: str) -> str:
        return f"{outage}; stopped with {len(manifest.parts)} parts written to {self.settings.output}"

    def finish(
        self, manifest: Manifest, seconds: float, model: str | None, version: str | None, totals: Totals
    ) -> JobSummary:
        """Record this run in the manifest, write the side files, and sum the job up."""
        this_run = self.progress.done - self._done_before
        summary = write_side_files(self.settings, manifest, this_run, seconds, model, version, totals)
        self.metrics.duration.set(seconds)
        if summary.failed == 0:
            self.metrics.mark_success()
        return summary


def settings_from_output(output: Path, **overrides: Any) -> JobSettings:
    """The settings a finished OUTPUT was written with (for ``retry-failed``).

    ``overrides`` may hold ``classify`` options (mode, batch size, concurrency)
    and ``job_name``; the settings that shape the output stay as they were.
    """
    manifest = Manifest.load(output)
    if manifest is None:
        raise JobInputError(f"{output} holds no {MANIFEST}: it is not a tsbatch output")
    saved = manifest.settings
    classify: ClassifyOptions = overrides.pop("classify", ClassifyOptions())
    return JobSettings(
        input=manifest.input,
        output=output,
        column=saved["column"],
        id_column=saved["id_column"],
        keep_columns=tuple(saved["keep_columns"]),
        classify=classify.replace(model=saved["model"], version=saved["version"]),
        rows_per_part=saved["rows_per_part"],
        engine=saved.get("engine", "pandas"),  # outputs from before the Dask engine
        task=saved.get("task", "classify"),
        **overrides,
    )
