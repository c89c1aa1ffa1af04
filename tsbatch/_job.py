"""Parquet-in / Parquet-out batch jobs: streaming, resumable, every row exactly once.

OUTPUT is a Parquet dataset::

    part-00000.parquet ...   predictions, kept input columns and ts_* metadata
    _manifest.json           input fingerprint, settings, finished parts
    _batches.parquet         per-batch metrics of every part
    _failed.parquet          rows that ended in error, with the reason
    _summary.json            counts, duration, throughput
    _work/                   per-part batch metrics while the job runs

The pandas engine reads the input in record batches of ``rows_per_part``
rows, so memory depends on that setting, not on the input's size; the Dask
engine's parts are whole row groups (:func:`plan_pieces`).  Each part is written to a
temporary name and renamed, then recorded in the manifest (also written by
rename).  A part in the manifest is never redone; a part file not in it is
redone and replaced.  Either way each input row ends in exactly one part.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from prometheus_client import CollectorRegistry, Counter, Gauge

from tsbatch._client import TorchServeClient
from tsbatch._config import ClientConfig, EngineConfig
from tsbatch._engine import ClassifyOptions, EngineResult, Mode, Progress, classify_values
from tsbatch._errors import InputValidationError, TorchServeError
from tsbatch._frame import BATCH_DTYPES, batch_metrics, result_frame

logger = logging.getLogger("tsbatch")

DEFAULT_ROWS_PER_PART = 10_000
DEFAULT_STOP_TIMEOUT = 30.0
#: Worker processes of the local cluster a Dask job starts when given no scheduler.
DEFAULT_DASK_WORKERS = 2
ROW_ID = "_row"
Engine = Literal["pandas", "dask"]
MANIFEST = "_manifest.json"
_FORMAT = 1


class JobInputError(InputValidationError):
    """The job cannot start: bad INPUT, OUTPUT, column, id column or server."""


class JobStopped(TorchServeError):
    """The job was asked to stop; finished parts are kept for a resume."""


class JobOutage(TorchServeError):
    """The server stayed unavailable for the whole outage budget; finished parts are kept for a resume."""


class JobOutputError(TorchServeError):
    """OUTPUT could not be written (disk full, no permission); the message names the path."""


@dataclass(frozen=True, kw_only=True)
class JobSettings:
    """What a job reads, how it classifies, and where it writes."""

    input: str
    output: Path
    column: str = "text"
    id_column: str | None = None
    keep_columns: tuple[str, ...] = ()
    model: str | None = None
    version: str | None = None
    mode: Mode = "auto"
    batch_size: int | None = None
    concurrency: int | None = None
    max_concurrency: int | None = None
    rows_per_part: int = DEFAULT_ROWS_PER_PART
    overwrite: bool = False
    job_name: str = "tsbatch"
    engine: Engine = "pandas"

    def identity(self) -> dict[str, Any]:
        """The settings that shape the output; a resume must use the same ones."""
        return {
            "column": self.column,
            "id_column": self.id_column,
            "keep_columns": list(self.keep_columns),
            "model": self.model,
            "version": self.version,
            "rows_per_part": self.rows_per_part,
            "engine": self.engine,
        }


@dataclass
class Manifest:
    """What OUTPUT holds; rewritten by rename after every part."""

    fingerprint: str
    input: str
    settings: dict[str, Any]
    total_rows: int
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    format: int = _FORMAT

    @classmethod
    def load(cls, output: Path) -> Manifest | None:
        try:
            data = json.loads((output / MANIFEST).read_text())
            return cls(**data)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise JobInputError(
                f"{output / MANIFEST} is damaged ({exc}); pass --overwrite to start over"
            ) from None

    def save(self, output: Path) -> None:
        _write_atomically(output / MANIFEST, (json.dumps(asdict(self), indent=2) + "\n").encode())


@dataclass(frozen=True)
class JobSummary:
    """What a job did."""

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


def _temporary(path: Path) -> Path:
    """A hidden name next to ``path``, unique to this writer (two attempts at one part may overlap)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a failure to write ``path`` into a :class:`JobOutputError` naming it and the cause."""
    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        errno = exc.errno if isinstance(exc, OSError) else None
        cause = os.strerror(errno) if errno else str(exc)  # pyarrow wraps the cause in its own words
        raise JobOutputError(f"cannot write {path}: {cause}") from None


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary name to write, renamed to ``path`` on success and removed on failure."""
    temporary = _temporary(path)
    with writing(path):
        try:
            yield temporary
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)


def _write_atomically(path: Path, data: bytes) -> None:
    with _replacing(path) as temporary, open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _write_table_atomically(path: Path, table: pa.Table) -> None:
    with _replacing(path) as temporary:
        pq.write_table(table, temporary, compression="zstd")
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())


# -- input ----------------------------------------------------------------------------


def input_files(spec: str) -> list[Path]:
    """The Parquet files of INPUT: a file, a folder (searched recursively) or a glob."""
    if any(ch in spec for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not files:
            raise JobInputError(f"INPUT {spec!r} matches no files")
    elif Path(spec).is_dir():
        files = sorted(
            p for p in Path(spec).rglob("*.parquet") if not any(s.startswith(("_", ".")) for s in p.parts)
        )
        if not files:
            raise JobInputError(f"INPUT folder {spec} holds no .parquet files")
    elif Path(spec).is_file():
        files = [Path(spec)]
    else:
        raise JobInputError(f"INPUT {spec} does not exist")
    for path in files:
        try:
            pq.ParquetFile(path).close()
        except (pa.ArrowInvalid, OSError) as exc:
            raise JobInputError(f"INPUT file {path} is not a Parquet file ({exc})") from None
    return files


def fingerprint(files: list[Path], schema: pa.Schema, settings: JobSettings) -> str:
    """A digest of the input files (path, size, modification time), schema and output settings."""
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    digest.update(schema.to_string().encode())
    digest.update(json.dumps(settings.identity(), sort_keys=True).encode())
    return digest.hexdigest()


def _check_columns(dataset: ds.Dataset, settings: JobSettings) -> None:
    names = dataset.schema.names
    wanted = [settings.column, *settings.keep_columns] + ([settings.id_column] if settings.id_column else [])
    missing = [c for c in wanted if c not in names]
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


def _check_output(output: Path, manifest: Manifest | None, overwrite: bool) -> None:
    parent = output if output.exists() else output.parent
    if not os.access(parent if parent.exists() else Path("."), os.W_OK):
        raise JobInputError(f"OUTPUT {output} is not writable")
    if manifest is None and not overwrite and output.exists() and any(output.iterdir()):
        raise JobInputError(
            f"OUTPUT {output} is not empty and is no tsbatch output; pass --overwrite or choose another"
        )


def remove_temporary_files(output: Path) -> None:
    """Remove the temporary files of writers that did not finish (killed processes)."""
    for stale in output.glob(".*.tmp"):
        stale.unlink(missing_ok=True)


def _clear_output(output: Path) -> None:
    """Remove what a job writes, and nothing else."""
    if not output.exists():
        return
    for pattern in ("part-*.parquet", "_*.parquet", "_*.json", ".*.tmp", "_work/*"):
        for path in output.glob(pattern):
            path.unlink()
    if (output / "_work").exists():
        (output / "_work").rmdir()


# -- metrics --------------------------------------------------------------------------


@dataclass(frozen=True)
class JobMetrics:
    """Job-level metrics, next to the client's in one registry.

    The last-success timestamp is only created by a run that succeeds, so a
    failed run pushed with ``pushadd`` leaves the previous success in place.
    """

    registry: CollectorRegistry
    rows: Counter
    duration: Gauge

    @classmethod
    def create(cls) -> JobMetrics:
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            rows=Counter(
                "tsbatch_job_rows", "Rows a batch job finished, by outcome", ["status"], registry=registry
            ),
            duration=Gauge(
                "tsbatch_job_duration_seconds", "Wall time of the last job run", registry=registry
            ),
        )

    def mark_success(self) -> None:
        """Record that the job finished with every row classified."""
        Gauge(
            "tsbatch_job_last_success_timestamp_seconds",
            "Unix time at which the job last finished with every row classified",
            registry=self.registry,
        ).set_to_current_time()


# -- the job --------------------------------------------------------------------------


def status_counts(part: pd.DataFrame) -> dict[str, int]:
    counts = part["ts_status"].value_counts().to_dict()
    return {status: int(counts.get(status, 0)) for status in ("ok", "error", "skipped")}


def part_batch_metrics(result: pd.DataFrame, index: int) -> pd.DataFrame:
    """The per-batch metrics of one part, with the part's number."""
    batches = batch_metrics(result)
    batches.insert(0, "part", index)
    return batches


def _write_batch_metrics(path: Path, batches: pd.DataFrame) -> None:
    _write_table_atomically(path, pa.Table.from_pandas(batches, preserve_index=False))


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def part_frame(frame: pd.DataFrame, result: EngineResult, settings: JobSettings, offset: int) -> pd.DataFrame:
    """One part's output: the kept input columns, ``_row`` when there is no id column, predictions."""
    kept = frame.drop(columns=[settings.column]) if settings.column not in settings.keep_columns else frame
    if not settings.id_column:
        kept.insert(0, ROW_ID, range(offset, offset + len(frame)))
    return result_frame(kept, result, prefix="pred_", include_scores=False)


def write_part(settings: JobSettings, index: int, out: pd.DataFrame, result: EngineResult) -> None:
    """Write part ``index`` by rename, with the model, versions and settings in its metadata."""
    from tsbatch import __version__

    metadata = {
        "model": result.model,
        "model_version": result.version,
        "tsbatch_version": __version__,
        # The limit of requests in flight the part started with (a Dask worker's share of the total).
        "in_flight": result.concurrency,
        "adaptive": result.adaptive,
        "settings": {
            **settings.identity(),
            "mode": settings.mode,
            "batch_size": settings.batch_size,
            "concurrency": settings.concurrency,
            "max_concurrency": settings.max_concurrency,
        },
    }
    table = pa.Table.from_pandas(out, preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), b"tsbatch": json.dumps(metadata).encode()}
    )
    _write_table_atomically(settings.output / part_name(index), table)


def input_columns(settings: JobSettings) -> list[str]:
    """The input columns a job reads: id, kept columns, text; each once."""
    wanted = [*([settings.id_column] if settings.id_column else []), *settings.keep_columns, settings.column]
    return list(dict.fromkeys(wanted))


def _batches(files: list[Path], settings: JobSettings) -> Iterator[pa.RecordBatch]:
    """The input in record batches of at most ``rows_per_part`` rows, file by file.

    Reading one row group at a time keeps memory bounded by the row group and
    the part size, whatever the number and size of the files.
    """
    columns = input_columns(settings)
    for path in files:
        with pq.ParquetFile(path) as parquet:
            for batch in parquet.iter_batches(batch_size=settings.rows_per_part, columns=columns):
                if batch.num_rows:
                    yield batch


@dataclass(frozen=True)
class Piece:
    """One part of a Dask job: whole row groups of one input file."""

    index: int
    path: str
    row_groups: tuple[int, ...]
    offset: int
    rows: int


def plan_pieces(files: list[Path], rows_per_part: int) -> list[Piece]:
    """Consecutive row groups of each file, up to ``rows_per_part`` rows a piece.

    Workers read whole row groups (Parquet cannot read part of one without
    decoding all of it), so a row group larger than ``rows_per_part`` is a
    piece alone.  The plan comes from the metadata: the same on every run.
    """
    pieces: list[Piece] = []
    offset = 0

    def close(path: Path, groups: list[int], rows: int) -> None:
        nonlocal offset
        if rows:
            pieces.append(Piece(len(pieces), str(path), tuple(groups), offset, rows))
            offset += rows

    for path in files:
        metadata = pq.read_metadata(path)
        groups: list[int] = []
        rows = 0
        for group in range(metadata.num_row_groups):
            size = metadata.row_group(group).num_rows
            if groups and rows + size > rows_per_part:
                close(path, groups, rows)
                groups, rows = [], 0
            groups.append(group)
            rows += size
        close(path, groups, rows)
    return pieces


def read_piece(piece: Piece, columns: list[str]) -> pa.Table:
    """The input columns of one piece."""
    with pq.ParquetFile(piece.path) as parquet:
        return parquet.read_row_groups(list(piece.row_groups), columns=columns)


def _parts(files: list[Path], settings: JobSettings) -> Iterator[tuple[int, pa.Table | pa.RecordBatch]]:
    """The input of each part, numbered as the job's engine numbers its parts."""
    if settings.engine == "dask":
        for piece in plan_pieces(files, settings.rows_per_part):
            yield piece.index, read_piece(piece, input_columns(settings))
    else:
        yield from enumerate(_batches(files, settings))


class Job:
    """One run of a classify job (a fresh start or a resume)."""

    def __init__(
        self,
        settings: JobSettings,
        config: ClientConfig,
        *,
        metrics: JobMetrics | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.metrics = metrics or JobMetrics.create()
        self.progress = progress or Progress()
        self.stop = asyncio.Event()
        self.received_signal: int | None = None
        self._done_before = 0
        self._prepared: tuple[list[Path], Manifest] | None = None

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
        if settings.output.exists() and not settings.output.is_dir():
            raise JobInputError(f"OUTPUT {settings.output} exists and is not a folder")
        existing = Manifest.load(settings.output) if not settings.overwrite else None
        _check_output(settings.output, existing, settings.overwrite)
        digest = fingerprint(files, dataset.schema, settings)
        if existing is not None and existing.fingerprint != digest:
            raise JobInputError(
                f"OUTPUT {settings.output} was written from a different input or settings "
                f"({existing.input}, {existing.settings}); pass --overwrite to replace it"
            )
        manifest = existing or Manifest(
            fingerprint=digest,
            input=settings.input,
            settings={**settings.identity(), "url": self.config.url},
            total_rows=dataset.count_rows(),
        )
        return files, manifest

    async def run(self) -> JobSummary:
        """Classify every part not yet written, then write the side files."""
        settings = self.settings
        files, manifest = self.prepare()
        started = time.monotonic()
        async with TorchServeClient(config=self.config, registry=self.metrics.registry) as client:
            await self.open_output(client, manifest)
            options = self._options()
            model, version = settings.model, settings.version
            offset = 0
            for index, batch in enumerate(_batches(files, settings)):
                name = part_name(index)
                if name in manifest.parts:
                    offset += batch.num_rows
                    continue
                if self.stop.is_set():
                    raise JobStopped(self._stopped_message(manifest))
                frame = batch.to_pandas()
                try:
                    result = await classify_values(
                        client, frame[settings.column].tolist(), options, self.progress, self.stop
                    )
                except Exception as exc:
                    if self.stop.is_set():
                        raise JobStopped(self._stopped_message(manifest)) from exc
                    raise
                if result.outage is not None:
                    raise JobOutage(self._outage_message(manifest, result.outage))
                model, version = result.model, result.version
                out = part_frame(frame, result, settings, offset)
                write_part(settings, index, out, result)
                self.record_part(manifest, index, offset, status_counts(out), part_batch_metrics(out, index))
                offset += batch.num_rows
        return self.finish(manifest, time.monotonic() - started, model, version)

    async def open_output(self, client: TorchServeClient, manifest: Manifest) -> None:
        """Check the server, then make OUTPUT ready: cleared or resumed, manifest written.

        Health is a hint: an unhealthy or unreachable server is waited for, like
        any outage, within the outage budget; only a job that may not wait
        (``max_outage`` 0) refuses to start when ``/ping`` cannot be reached.
        """
        settings = self.settings
        health = await client.health()
        if not health.healthy:
            tried = f"GET {self.config.url}/ping: {health.error or health.status}"
            if not client.availability.patient and health.status == "Unreachable":
                raise JobInputError(f"TorchServe at {self.config.url} is not reachable (tried {tried})")
            logger.warning(
                "TorchServe at %s is not healthy (%s); the job waits for predictions to answer, "
                "for at most %g s",
                self.config.url,
                tried,
                client.availability.policy.max_outage,
            )
        with writing(settings.output):
            if settings.overwrite:
                _clear_output(settings.output)
            (settings.output / "_work").mkdir(parents=True, exist_ok=True)
            remove_temporary_files(settings.output)
        manifest.save(settings.output)
        self.progress.total = manifest.total_rows
        self.progress.advance(sum(p["rows"] for p in manifest.parts.values()), 0)
        self._done_before = self.progress.done

    def record_part(
        self, manifest: Manifest, index: int, offset: int, counts: dict[str, int], batches: pd.DataFrame
    ) -> None:
        """Record a written part: its batch metrics, then its entry in the manifest, then the metrics."""
        _write_batch_metrics(self.settings.output / "_work" / f"batches-{index:05d}.parquet", batches)
        manifest.parts[part_name(index)] = {"rows": sum(counts.values()), "offset": offset, **counts}
        manifest.save(self.settings.output)
        for status, rows in counts.items():
            self.metrics.rows.labels(status).inc(rows)

    def _options(self) -> ClassifyOptions:
        engine = EngineConfig.from_env().with_options(
            batch_size=self.settings.batch_size,
            concurrency=self.settings.concurrency,
            max_concurrency=self.settings.max_concurrency,
        )
        return ClassifyOptions(
            model=self.settings.model, version=self.settings.version, mode=self.settings.mode, engine=engine
        )

    def _stopped_message(self, manifest: Manifest) -> str:
        return f"stopped with {len(manifest.parts)} parts written to {self.settings.output}"

    def _outage_message(self, manifest: Manifest, outage: str) -> str:
        return f"{outage}; stopped with {len(manifest.parts)} parts written to {self.settings.output}"

    def finish(
        self, manifest: Manifest, seconds: float, model: str | None, version: str | None
    ) -> JobSummary:
        """Write ``_batches``, ``_failed`` and ``_summary`` from the parts on disk."""
        output = self.settings.output
        parts = sorted(output.glob("part-*.parquet"))
        failed = [pq.read_table(p, filters=[("ts_status", "=", "error")]) for p in parts]
        failed_table = pa.concat_tables(failed, promote_options="default") if failed else pa.table({})
        _write_table_atomically(output / "_failed.parquet", failed_table)
        metrics = [pq.read_table(p) for p in sorted((output / "_work").glob("batches-*.parquet"))]
        if metrics:
            batches_table = pa.concat_tables(metrics, promote_options="default")
        else:
            empty = pd.DataFrame({"part": pd.Series([], dtype="int64")}).join(
                pd.DataFrame({c: pd.Series([], dtype=t) for c, t in BATCH_DTYPES.items()})
            )
            batches_table = pa.Table.from_pandas(empty, preserve_index=False)
        _write_table_atomically(output / "_batches.parquet", batches_table)
        totals = {s: sum(p[s] for p in manifest.parts.values()) for s in ("ok", "error", "skipped")}
        rows = sum(p["rows"] for p in manifest.parts.values())
        this_run = self.progress.done - self._done_before
        summary = JobSummary(
            output=str(output),
            rows=rows,
            ok=totals["ok"],
            failed=totals["error"],
            skipped=totals["skipped"],
            parts=len(manifest.parts),
            rows_this_run=this_run,
            seconds=round(seconds, 3),
            rows_per_second=round(this_run / seconds, 1) if seconds > 0 else 0.0,
            model=model,
            version=version,
        )
        _write_atomically(output / "_summary.json", (json.dumps(asdict(summary), indent=2) + "\n").encode())
        self.metrics.duration.set(seconds)
        if totals["error"] == 0:
            self.metrics.mark_success()
        return summary


def settings_from_output(output: Path, **overrides: Any) -> JobSettings:
    """The settings a finished OUTPUT was written with (for ``retry-failed``)."""
    manifest = Manifest.load(output)
    if manifest is None:
        raise JobInputError(f"{output} holds no {MANIFEST}: it is not a tsbatch output")
    saved = manifest.settings
    return JobSettings(
        input=manifest.input,
        output=output,
        column=saved["column"],
        id_column=saved["id_column"],
        keep_columns=tuple(saved["keep_columns"]),
        model=saved["model"],
        version=saved["version"],
        rows_per_part=saved["rows_per_part"],
        engine=saved.get("engine", "pandas"),  # outputs from before the Dask engine
        **overrides,
    )


async def retry_failed(job: Job) -> JobSummary:
    """Send the failed rows of a finished OUTPUT again and merge the successes in place."""
    settings = job.settings
    files, manifest = job.prepare()
    if sum(p["rows"] for p in manifest.parts.values()) != manifest.total_rows:
        raise JobInputError(
            f"the job writing {settings.output} has not finished: run classify again to resume it"
        )
    started = time.monotonic()
    model, version = settings.model, settings.version
    async with TorchServeClient(config=job.config, registry=job.metrics.registry) as client:
        options = job._options()
        job.progress.total = sum(p["error"] for p in manifest.parts.values())
        job._done_before = job.progress.done
        for index, batch in _parts(files, settings):
            name = part_name(index)
            if not manifest.parts[name]["error"]:
                continue
            path = settings.output / name
            table = pq.read_table(path)
            part = table.to_pandas()
            failed = part.index[part["ts_status"] == "error"]
            texts = batch.column(settings.column).take(pa.array(failed, type=pa.int64())).to_pylist()
            result = await classify_values(client, texts, options, job.progress, job.stop)
            if job.stop.is_set():
                raise JobStopped(job._stopped_message(manifest))
            if result.outage is not None:
                raise JobOutage(job._outage_message(manifest, result.outage))
            model, version = result.model, result.version
            redone = result_frame(part.loc[failed, []], result, prefix="pred_", include_scores=False)
            for column in redone.columns:
                part[column] = part[column].astype(redone[column].dtype)
                part.loc[failed, column] = redone[column]
            retried = pa.Table.from_pandas(part, preserve_index=False).replace_schema_metadata(
                table.schema.metadata
            )
            work = settings.output / "_work"
            round_ = len(list(work.glob(f"batches-{index:05d}-retry*.parquet"))) + 1
            _write_batch_metrics(
                work / f"batches-{index:05d}-retry{round_}.parquet", part_batch_metrics(redone, index)
            )
            _write_table_atomically(path, retried)
            manifest.parts[name].update(status_counts(part))
            manifest.save(settings.output)
    return job.finish(manifest, time.monotonic() - started, model, version)
