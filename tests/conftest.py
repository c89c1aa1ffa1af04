"""Session-wide fixtures: the demo model archives and a real TorchServe serving them.

The archives come from tsbatch's cache of built demo models (``TSBATCH_CACHE_DIR``,
else ``~/.cache/tsbatch``), so a session trains them only when the cache has
not got them yet.

Nothing here imports torch or starts a server unless a test asks for it, so
``pytest -m "not integration"`` runs with the base install plus ``dev``.
"""

from __future__ import annotations

import gc
import logging
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tsbatch._demo.archive import DEFAULT_DATA
from tsbatch._serve.settings import ServeSettings

if TYPE_CHECKING:
    from tsbatch._demo.cache import DemoArchive
    from tsbatch._demo.handler import DemoTextHandler
    from tsbatch._serve.kserve import KServeServer
    from tsbatch._serve.local import LocalServer

#: Server-side batching for the session's TorchServe.
SESSION_BATCH_SIZE = 8
SESSION_MAX_BATCH_DELAY_MS = 20
#: The demo model's versions the session's TorchServe serves; the first is the default.
SESSION_VERSIONS = ("1.0", "2.0")


def free_ports(count: int) -> list[int]:
    """Ports on 127.0.0.1 that were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class _UnclosedSessions(logging.Handler):
    """Collects aiohttp's complaints about sessions and connectors nobody closed."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "Unclosed" in record.getMessage():
            self.seen.append(record.getMessage())


_unclosed = _UnclosedSessions()


def pytest_configure(config: pytest.Config) -> None:
    logging.getLogger("asyncio").addHandler(_unclosed)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any client session was left open (every client must be closed)."""
    gc.collect()
    if _unclosed.seen and exitstatus == 0:
        print(f"\n{len(_unclosed.seen)} unclosed aiohttp sessions or connectors: {_unclosed.seen[:3]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Notebooks start their own TorchServe: they are integration tests."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.integration)


def serve_settings(run_dir: Path, archive: Path | None, **overrides: object) -> ServeSettings:
    """Settings for a test server on free loopback ports (``archive=None``: the cached demo model)."""
    inference, management, metrics = free_ports(3)
    options: dict[str, object] = {
        "run_dir": run_dir,
        "inference_port": inference,
        "management_port": management,
        "metrics_port": metrics,
        "model_archive": archive,
        "startup_timeout": 120.0,
    }
    options.update(overrides)
    return ServeSettings(**options)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def demo_builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DemoArchive]:
    """Every version the session serves, packed from the bundled data (from the cache, else trained)."""
    from tsbatch._demo.cache import demo_archive

    store = tmp_path_factory.mktemp("model-store")
    return {version: demo_archive(store, version, DEFAULT_DATA) for version in SESSION_VERSIONS}


@pytest.fixture(scope="session")
def demo_build(demo_builds: dict[str, DemoArchive]) -> DemoArchive:
    """The demo model's default version, 1.0."""
    return demo_builds["1.0"]


@pytest.fixture(scope="session")
def demo_archive(demo_build: DemoArchive) -> Path:
    return demo_build.path


@pytest.fixture(scope="session")
def in_process_model(demo_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> DemoTextHandler:
    """The archived model loaded in this process, to compare served answers with."""
    from tsbatch._demo.handler import DemoTextHandler

    folder = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(demo_archive) as archive:
        archive.extract("model.pt", folder)
    handler = DemoTextHandler()
    handler.load(str(folder / "model.pt"))
    return handler


@pytest.fixture(scope="session")
def torchserve(
    demo_builds: dict[str, DemoArchive], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalServer]:
    """One real TorchServe for the session: the demo model in versions 1.0 (the default) and 2.0,
    token auth on, server-side batching.  Its archives are the cached ones ``demo_builds`` holds."""
    from tsbatch._serve import local

    run_dir = tmp_path_factory.mktemp("torchserve")
    settings = serve_settings(
        run_dir,
        None,
        demo_versions=SESSION_VERSIONS,
        batch_size=SESSION_BATCH_SIZE,
        max_batch_delay_ms=SESSION_MAX_BATCH_DELAY_MS,
    )
    server = local.start(settings, say=lambda _: None)
    try:
        yield server
    finally:
        local.stop(run_dir)


@pytest.fixture(scope="session")
def kserve(demo_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KServeServer]:
    """KServe's ModelServer serving the demo model over v1 and v2, for the session."""
    from tests.kserve_helpers import kserve_server

    (port,) = free_ports(1)
    server = kserve_server(demo_archive, port, tmp_path_factory.mktemp("kserve") / "kserve.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
