"""How to run a local TorchServe: the settings of ``tsbatch serve``, with their defaults.

Kept apart from :mod:`tsbatch._serve.local` (which needs the ``serve``
extra), so that the command line can describe them without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tsbatch._demo.archive import DEFAULT_DATA, DEMO_MODEL_VERSION, DEMO_VERSIONS
from tsbatch._errors import LocalServerError

DEFAULT_RUN_DIR = Path(".tsbatch") / "server"
DEFAULT_INFERENCE_PORT = 8080
DEFAULT_MANAGEMENT_PORT = 8081
DEFAULT_METRICS_PORT = 8082
DEFAULT_BATCH_SIZE = 32
DEFAULT_MAX_BATCH_DELAY_MS = 10
DEFAULT_WORKERS = 1
DEFAULT_JOB_QUEUE_SIZE = 100
DEFAULT_STARTUP_TIMEOUT = 180.0
DEFAULT_STOP_TIMEOUT = 60.0
HOST = "127.0.0.1"


@dataclass(frozen=True, kw_only=True)
class ServeSettings:
    """How to run a local TorchServe."""

    run_dir: Path = DEFAULT_RUN_DIR
    inference_port: int = DEFAULT_INFERENCE_PORT
    management_port: int = DEFAULT_MANAGEMENT_PORT
    metrics_port: int = DEFAULT_METRICS_PORT
    batch_size: int = DEFAULT_BATCH_SIZE
    max_batch_delay_ms: int = DEFAULT_MAX_BATCH_DELAY_MS
    workers: int = DEFAULT_WORKERS
    job_queue_size: int = DEFAULT_JOB_QUEUE_SIZE
    token_auth: bool = True
    model_archive: Path | None = None
    #: The demo model's versions to serve side by side; the first is the default one.
    demo_versions: tuple[str, ...] = (DEMO_MODEL_VERSION,)
    training_data: Path = DEFAULT_DATA
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT

    def __post_init__(self) -> None:
        ports = {
            "inference_port": self.inference_port,
            "management_port": self.management_port,
            "metrics_port": self.metrics_port,
        }
        for name, port in ports.items():
            if not 1 <= port <= 65_535:
                raise LocalServerError(f"{name} must be within 1..65535, got {port}")
        if len(set(ports.values())) != len(ports):
            raise LocalServerError(f"the three ports must differ, got {ports}")
        for name in ("batch_size", "workers", "job_queue_size"):
            if getattr(self, name) < 1:
                raise LocalServerError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_batch_delay_ms < 0:
            raise LocalServerError(f"max_batch_delay_ms must be >= 0, got {self.max_batch_delay_ms}")
        # A single version, or a list, is as good as a tuple.
        given: object = self.demo_versions
        versions = (given,) if isinstance(given, str) else tuple(self.demo_versions)
        object.__setattr__(self, "demo_versions", versions)
        if not versions or any(v not in DEMO_VERSIONS for v in versions):
            raise LocalServerError(
                f"demo_versions must name versions of the demo model ({', '.join(DEMO_VERSIONS)}), "
                f"got {list(versions)}"
            )
        if len(set(self.demo_versions)) != len(self.demo_versions):
            raise LocalServerError(f"demo_versions names a version twice: {list(self.demo_versions)}")
        if self.model_archive is not None and self.demo_versions != (DEMO_MODEL_VERSION,):
            raise LocalServerError(
                "demo_versions is for the demo model: leave it out to serve a model archive of your own"
            )
