"""Parts: how a job cuts its input, and what it writes for each part.

The pandas engine reads the input in record batches of ``rows_per_part``
rows, file by file (:func:`record_batches`); the Dask engine plans whole row
groups from the Parquet metadata (:func:`plan_pieces`), so part ``i`` holds the
same rows on every run.  Each part is written by rename, with the model, the
versions and the settings in its metadata.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tsbatch._frame import BATCH_DTYPES, batch_metrics, result_frame
from tsbatch._job._files import write_table
from tsbatch._job._settings import ROW_ID, JobSettings
from tsbatch._outcomes import EngineResult
from tsbatch._version import __version__


@dataclass(frozen=True)
class PartResult:
    """What classifying one part gave: its counts and per-batch metrics (its rows are on disk),
    or, for a part the outage budget left unwritten, why."""

    index: int
    offset: int
    counts: dict[str, int]
    batches: pd.DataFrame | None
    model: str
    version: str | None
    outage: str | None = None


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def status_counts(part: pd.DataFrame) -> dict[str, int]:
    """Rows ``ok``, ``error`` and ``skipped`` in a part."""
    counts = part["ts_status"].value_counts().to_dict()
    return {status: int(counts.get(status, 0)) for status in ("ok", "error", "skipped")}


def part_batch_metrics(result: pd.DataFrame, index: int) -> pd.DataFrame:
    """The per-batch metrics of one part, with the part's number."""
    batches = batch_metrics(result)
    batches.insert(0, "part", index)
    return batches


def write_batch_metrics(path: Path, batches: pd.DataFrame) -> None:
    write_table(path, pa.Table.from_pandas(batches, preserve_index=False))


def work_batch_metrics(output: Path) -> pa.Table:
    """The batch metrics of every part recorded so far (``_work/batches-*.parquet``), as one
    table; with none, an empty table of the full schema."""
    tables = [pq.read_table(p) for p in sorted((output / "_work").glob("batches-*.parquet"))]
    if tables:
        return pa.concat_tables(tables, promote_options="default")
    empty = pd.DataFrame({"part": pd.Series([], dtype="int64")}).join(
        pd.DataFrame({c: pd.Series([], dtype=t) for c, t in BATCH_DTYPES.items()})
    )
    return pa.Table.from_pandas(empty, preserve_index=False)


def part_frame(frame: pd.DataFrame, result: EngineResult, settings: JobSettings, offset: int) -> pd.DataFrame:
    """One part's output: the kept input columns, ``_row`` when there is no id column, predictions."""
    kept = frame.drop(columns=[settings.column]) if settings.column not in settings.keep_columns else frame
    if not settings.id_column:
        kept.insert(0, ROW_ID, range(offset, offset + len(frame)))
    return result_frame(kept, result, prefix="pred_", include_scores=False)


def write_part(settings: JobSettings, index: int, out: pd.DataFrame, result: EngineResult) -> None:
    """Write part ``index`` by rename, with the model, versions and settings in its metadata."""
    classify = settings.classify
    metadata = {
        "model": result.model,
        "model_version": result.version,
        "tsbatch_version": __version__,
        # The limit of requests in flight the part started with (a Dask worker's share of the total).
        "in_flight": result.concurrency,
        "adaptive": result.adaptive,
        "settings": {
            **settings.identity(),
            "mode": classify.mode,
            "batch_size": classify.batch_size,
            "concurrency": classify.concurrency,
            "max_concurrency": classify.max_concurrency,
        },
    }
    table = pa.Table.from_pandas(out, preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), b"tsbatch": json.dumps(metadata).encode()}
    )
    write_table(settings.output / part_name(index), table)


def classified_part(
    settings: JobSettings, index: int, offset: int, frame: pd.DataFrame, result: EngineResult
) -> PartResult:
    """Write one classified part and say what it holds; a part cut short by an outage is not written."""
    if result.outage is not None:
        return PartResult(index, offset, {}, None, result.model, result.version, result.outage)
    out = part_frame(frame, result, settings, offset)
    write_part(settings, index, out, result)
    return PartResult(
        index, offset, status_counts(out), part_batch_metrics(out, index), result.model, result.version
    )


def record_batches(files: list[Path], settings: JobSettings) -> Iterator[pa.RecordBatch]:
    """The input in record batches of at most ``rows_per_part`` rows, file by file.

    Reading one row group at a time keeps memory bounded by the row group and
    the part size, whatever the number and size of the files.
    """
    columns = settings.input_columns()
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


def numbered_inputs(
    files: list[Path], settings: JobSettings
) -> Iterator[tuple[int, pa.Table | pa.RecordBatch]]:
    """The input of each part, numbered as the job's engine numbers its parts."""
    if settings.engine == "dask":
        for piece in plan_pieces(files, settings.rows_per_part):
            yield piece.index, read_piece(piece, settings.input_columns())
    else:
        yield from enumerate(record_batches(files, settings))
