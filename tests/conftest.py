"""Session-wide fixtures: the demo model archive and a real TorchServe serving it."""

from __future__ import annotations

import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tsbatch._demo.archive import DEFAULT_DATA, build_demo_archive
from tsbatch._demo.handler import DemoTextHandler
from tsbatch._demo.train import TrainingResult
from tsbatch._serve import local

#: Server-side batching for the session's TorchServe.
SESSION_BATCH_SIZE = 8
SESSION_MAX_BATCH_DELAY_MS = 20


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


def serve_settings(run_dir: Path, archive: Path, **overrides: object) -> local.ServeSettings:
    """Settings for a test server on free loopback ports."""
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
    return local.ServeSettings(**options)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainingResult]:
    """The demo model archive, trained once per session from the bundled data."""
    return build_demo_archive(tmp_path_factory.mktemp("model-store"), DEFAULT_DATA)


@pytest.fixture(scope="session")
def demo_archive(demo_build: tuple[Path, TrainingResult]) -> Path:
    return demo_build[0]


@pytest.fixture(scope="session")
def in_process_model(demo_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> DemoTextHandler:
    """The archived model loaded in this process, to compare served answers with."""
    folder = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(demo_archive) as archive:
        archive.extract("model.pt", folder)
    handler = DemoTextHandler()
    handler.load(str(folder / "model.pt"))
    return handler


@pytest.fixture(scope="session")
def torchserve(demo_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[local.LocalServer]:
    """One real TorchServe for the session: demo model, token auth on, server-side batching."""
    run_dir = tmp_path_factory.mktemp("torchserve")
    settings = serve_settings(
        run_dir,
        demo_archive,
        batch_size=SESSION_BATCH_SIZE,
        max_batch_delay_ms=SESSION_MAX_BATCH_DELAY_MS,
    )
    server = local.start(settings, say=lambda _: None)
    try:
        yield server
    finally:
        local.stop(run_dir)
