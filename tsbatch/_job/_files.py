"""The files of a job: INPUT found with pyarrow's dataset discovery, OUTPUT written whole or not at all.

Every file of OUTPUT is written under a temporary name next to it and renamed
when complete, so a reader (or a resume after a kill) never sees half of one.
A failure to write becomes a :class:`~tsbatch._errors.JobOutputError` that
names the path and the cause.
"""

from __future__ import annotations

import contextlib
import glob
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tsbatch._errors import JobInputError, JobOutputError

#: What a job writes into OUTPUT, and nothing else: what ``--overwrite`` removes.
_OWN_FILES = ("part-*.parquet", "_*.parquet", "_*.json", ".*.tmp", "_work/*")


def input_files(spec: str) -> list[Path]:
    """The Parquet files of INPUT: a file, a folder (searched recursively) or a glob.

    In a folder, pyarrow's own discovery leaves out what lies below it under a
    name starting with ``.`` or ``_`` (``_SUCCESS``, ``_temporary/``, ``.crc``
    files), wherever the folder itself is.
    """
    if any(ch in spec for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not files:
            raise JobInputError(f"INPUT {spec!r} matches no files")
    elif Path(spec).is_dir():
        found = ds.dataset(spec, format="parquet", schema=pa.schema([])).files  # listed, not read
        files = sorted(Path(f) for f in found if f.endswith(".parquet"))
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
    """A temporary name to write, renamed to ``path`` on success and removed on failure.

    The name is hidden and unique to this writer: two attempts at one part may overlap.
    """
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    with writing(path):
        try:
            yield temporary
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole, synced to disk."""
    with _replacing(path) as temporary, open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_table(path: Path, table: pa.Table) -> None:
    """Write ``table`` to ``path`` as Parquet (zstd) whole, synced to disk."""
    with _replacing(path) as temporary:
        pq.write_table(table, temporary, compression="zstd")
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())


def remove_temporary_files(output: Path) -> None:
    """Remove the temporary files of writers that did not finish (killed processes)."""
    for stale in output.glob(".*.tmp"):
        stale.unlink(missing_ok=True)


def clear_output(output: Path) -> None:
    """Remove what a job writes, and nothing else."""
    if not output.exists():
        return
    for pattern in _OWN_FILES:
        for path in output.glob(pattern):
            path.unlink()
    if (output / "_work").exists():
        (output / "_work").rmdir()


def check_output(output: Path, resuming: bool, overwrite: bool) -> None:
    """Refuse an OUTPUT that cannot be written, or that holds something other than a job's output."""
    if output.exists() and not output.is_dir():
        raise JobInputError(f"OUTPUT {output} exists and is not a folder")
    parent = output if output.exists() else output.parent
    if not os.access(parent if parent.exists() else Path("."), os.W_OK):
        raise JobInputError(f"OUTPUT {output} is not writable")
    if not resuming and not overwrite and output.exists() and any(output.iterdir()):
        raise JobInputError(
            f"OUTPUT {output} is not empty and is no tsbatch output; pass --overwrite or choose another"
        )
