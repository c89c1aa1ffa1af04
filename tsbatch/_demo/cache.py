"""Built demo model archives, kept so that the demo model is trained once, not once per run.

The cache folder is ``TSBATCH_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/tsbatch``,
else ``~/.cache/tsbatch``.  Archives live in its ``demo-models/`` folder, named
by version and by a digest of everything that shapes them (:func:`archive_key`):
``demo-2.0-<digest>.mar``, and next to it a ``.json`` with the training scores
and the SHA-256 of the checkpoint inside.  Each file is written under a
temporary name and renamed into place, so two processes building at once never
see half a file.  An entry that cannot be read, or whose archive does not hold
the checkpoint its JSON names, counts as missing: the model is trained again
and the entry replaced.  A cache folder that cannot be written only means the
model is not kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path

from tsbatch._demo.archive import (
    DEFAULT_DATA,
    DEMO_MODEL_NAME,
    DEMO_MODEL_VERSION,
    archive_stem,
    build_demo_archive,
    recipe,
    require_data,
)
from tsbatch._demo.scoring import Evaluation

CACHE_DIR_ENV = "TSBATCH_CACHE_DIR"
#: Raised whenever the layout of an entry changes, so that older entries are not read.
_FORMAT = b"1"
_HERE = Path(__file__).resolve().parent
#: The modules whose source shapes an archive: training, scoring, the packed handler, the packing.
_SOURCES = ("train.py", "scoring.py", "handler.py", "archive.py")
#: The libraries whose version shapes an archive: the training arithmetic and the packing.
_LIBRARIES = ("torch", "torch-model-archiver")

Builder = Callable[[Path, Path, str], Path]
"""``build(folder, data, version)``: train ``version`` on ``data``, pack it into ``folder``, return
the ``.mar``; a ``.json`` of the same name next to it holds the scores (as :func:`build_demo_archive`)."""


@dataclass(frozen=True)
class DemoArchive:
    """One version of the demo model, packed, and how it scored on the held-out splits."""

    path: Path
    version: str
    #: SHA-256 of the checkpoint inside the archive.
    sha256: str
    val: Evaluation
    test: Evaluation
    #: How long training took, when the archive was built.
    seconds: float
    #: Whether the archive came from the cache rather than from training just now.
    cached: bool


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The cache folder: ``TSBATCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/tsbatch``, else ``~/.cache/tsbatch``.

    Read from ``environ`` (default: ``os.environ``).
    """
    env = os.environ if environ is None else environ
    if env.get(CACHE_DIR_ENV):
        return Path(env[CACHE_DIR_ENV]).expanduser()
    xdg = env.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():  # the XDG spec ignores a relative one
        return Path(xdg) / "tsbatch"
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".cache" / "tsbatch"


def _installed(library: str) -> str:
    try:
        return metadata.version(library)
    except metadata.PackageNotFoundError:
        return "not installed"


def archive_key(data: Path, version: str) -> str:
    """A digest of everything that shapes ``version``'s archive trained on ``data``.

    The training data's bytes, the version and its recipe (seed, epochs), the
    source of the modules that train, score and pack the model, and the
    versions of torch and torch-model-archiver.
    """
    how = recipe(version)
    require_data(data)
    digest = hashlib.sha256()

    def add(label: str, payload: bytes) -> None:
        digest.update(f"{label}:{len(payload)}:".encode())
        digest.update(payload)

    add("format", _FORMAT)
    add("version", version.encode())
    add("recipe", json.dumps(asdict(how), sort_keys=True).encode())
    add("data", data.read_bytes())
    for name in _SOURCES:
        add(name, (_HERE / name).read_bytes())
    for library in _LIBRARIES:
        add(library, _installed(library).encode())
    return digest.hexdigest()


def entry_path(cache: Path, data: Path, version: str) -> Path:
    """Where the cache keeps ``version``'s archive trained on ``data``."""
    return cache / "demo-models" / f"{DEMO_MODEL_NAME}-{version}-{archive_key(data, version)[:32]}.mar"


def _scores(mar: Path, version: str, *, cached: bool) -> DemoArchive:
    scores = json.loads(mar.with_suffix(".json").read_text())
    return DemoArchive(
        path=mar,
        version=version,
        sha256=str(scores["sha256"]),
        val=Evaluation(**scores["val"]),
        test=Evaluation(**scores["test"]),
        seconds=float(scores["seconds"]),
        cached=cached,
    )


def read_entry(mar: Path, version: str) -> DemoArchive | None:
    """The cached archive at ``mar``, or ``None`` when it is missing, unreadable or damaged."""
    try:
        found = _scores(mar, version, cached=True)
        with zipfile.ZipFile(mar) as archive:
            checkpoint = archive.read("model.pt")  # checks the CRC too
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error):
        return None
    return found if hashlib.sha256(checkpoint).hexdigest() == found.sha256 else None


def _replace(source: Path, target: Path) -> None:
    """Put ``source`` at ``target`` in one rename: a hard link where the file system allows, else a copy."""
    if target.exists() and os.path.samefile(source, target):
        return
    temporary = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        try:
            os.link(source, temporary)
        except OSError:
            shutil.copyfile(source, temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_entry(built: Path, mar: Path) -> None:
    """Publish the archive ``built`` (and its ``.json``) as the cache entry ``mar``, the JSON first."""
    _replace(built.with_suffix(".json"), mar.with_suffix(".json"))
    _replace(built, mar)


def _place(mar: Path, target: Path) -> None:
    _replace(mar.with_suffix(".json"), target.with_suffix(".json"))
    _replace(mar, target)


def _build(folder: Path, data: Path, version: str) -> Path:
    return build_demo_archive(folder, data, version)[0]


def _quiet(_: str) -> None:
    pass


def _summary(found: DemoArchive) -> str:
    return f"test accuracy {found.test.accuracy:.4f}, macro-F1 {found.test.macro_f1:.4f}"


def demo_archive(
    model_store: Path,
    version: str = DEMO_MODEL_VERSION,
    data: Path = DEFAULT_DATA,
    *,
    cache: Path | None = None,
    build: Builder = _build,
    say: Callable[[str], None] = _quiet,
) -> DemoArchive:
    """Put ``version`` of the demo model into ``model_store``: from the cache, else trained and cached.

    The archive is hard-linked from the cache when both share a file system,
    else copied; ``cache`` defaults to :func:`cache_dir`.
    """
    entry = entry_path(cache or cache_dir(), data, version)
    target = model_store / f"{archive_stem(version)}.mar"
    model_store.mkdir(parents=True, exist_ok=True)
    found = read_entry(entry, version)
    if found is not None:
        say(f"demo model {version}: using the cached archive {entry} ({_summary(found)})")
        _place(entry, target)
        return replace(found, path=target)

    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=".building-", dir=entry.parent))
        keep = True
        say(f"demo model {version}: training from {data}, then caching it in {entry.parent} ...")
    except OSError as exc:
        building = Path(tempfile.mkdtemp(prefix="tsbatch-demo-"))
        keep = False
        say(f"demo model {version}: training from {data}; the cache folder is not writable ({exc}) ...")
    try:
        built = build(building, data, version)
        source = built
        if keep:
            try:
                write_entry(built, entry)
                source = entry
            except OSError as exc:
                say(f"demo model {version}: not cached ({exc})")
        _place(source, target)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    trained = _scores(target, version, cached=False)
    say(f"demo model {version}: trained in {trained.seconds:.1f}s, {_summary(trained)}")
    return trained
