"""One TorchServe client per process for partition tasks, such as Dask's.

A Dask worker runs tasks in plain threads, and an aiohttp session belongs to
the event loop it was made on.  Each process therefore keeps one long-lived
loop in a thread of its own and, on it, one client per :class:`WorkerSettings`,
built on first use: its connection pool, circuit breaker, retry budget and
in-flight gate serve every partition the process runs.  Only settings travel
between processes; loops, clients and sessions never leave the one that made
them.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pandas as pd
from prometheus_client import CollectorRegistry, start_http_server

from tsbatch import _loop
from tsbatch._client import TorchServeClient
from tsbatch._config import ClientConfig, EngineConfig
from tsbatch._engine import (
    EngineResult,
    choose_concurrency,
    choose_mode,
    classify_values,
)
from tsbatch._heap import collector_tuned_for_run
from tsbatch._limit import ConcurrencyLimit
from tsbatch._options import ClassifyOptions
from tsbatch._outcomes import Task
from tsbatch._policies import Auth
from tsbatch._preflight import Checked, preflight
from tsbatch._types import ModelInfo

logger = logging.getLogger("tsbatch")

T = TypeVar("T")

#: Ports tried, upwards from the one given, for a worker's /metrics.
METRICS_PORT_RANGE = 64


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    """What a partition task needs to classify; small, picklable and hashable.

    ``options.concurrency`` pins the job's total of requests in flight,
    ``options.max_concurrency`` caps it; each of ``workers`` processes gets an
    equal share, so adding workers does not add load.  Left unpinned, each
    process starts from its share of the estimate made from the model's info
    and then adapts to the server, as one process does.  ``engine`` holds the
    engine's settings as the driver read them.

    Tokens never travel: pickled settings carry none, and each worker reads
    its own from ``TORCHSERVE_INFERENCE_TOKEN`` / ``TORCHSERVE_MANAGEMENT_TOKEN``
    or the key file, so that no task graph, dashboard or spill file shows one.
    """

    config: ClientConfig
    options: ClassifyOptions
    engine: EngineConfig = field(default_factory=EngineConfig)
    workers: int = 1
    task: Task = "classify"
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"

    def __reduce__(self) -> tuple[Any, ...]:
        auth = Auth(key_file=self.config.auth.key_file)
        shipped = dataclasses.replace(self, config=dataclasses.replace(self.config, auth=auth))
        return (_rebuild, (tuple((f.name, getattr(shipped, f.name)) for f in dataclasses.fields(self)),))

    def client_config(self) -> ClientConfig:
        """The settings with this process's own tokens (from its environment) filled in."""
        auth = self.config.auth
        return dataclasses.replace(
            self.config,
            auth=dataclasses.replace(
                auth,
                inference_token=auth.inference_token or os.environ.get("TORCHSERVE_INFERENCE_TOKEN") or None,
                management_token=auth.management_token
                or os.environ.get("TORCHSERVE_MANAGEMENT_TOKEN")
                or None,
            ),
        )


def warn_of_tokens_that_stay_behind(config: ClientConfig) -> None:
    """Tokens given as strings are not sent to workers; say so when the workers may lack them."""
    auth = config.auth
    for token, variable in (
        (auth.inference_token, "TORCHSERVE_INFERENCE_TOKEN"),
        (auth.management_token, "TORCHSERVE_MANAGEMENT_TOKEN"),
    ):
        if token and token != os.environ.get(variable):
            logger.warning(
                "a token given as a string is not sent to Dask workers: set %s in the workers' environment "
                "or give a key file they can read",
                variable,
            )


def _rebuild(fields: tuple[tuple[str, Any], ...]) -> WorkerSettings:
    return WorkerSettings(**dict(fields))


class WorkerRuntime:
    """The loop thread, the client and the concurrency limit of one process."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.metrics_port: int | None = None
        self._loop = _loop.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tsbatch-worker", daemon=True)
        self._thread.start()
        self._client: TorchServeClient | None = None
        self._limit: ConcurrencyLimit | None = None
        self._checked: Checked | None = None
        if settings.metrics_port is not None:
            self.metrics_port = _serve_metrics(self.registry, settings.metrics_address, settings.metrics_port)

    def run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``make()`` on this process's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(make(), self._loop).result()

    async def classify(self, values: list[Any]) -> EngineResult:
        """Classify ``values`` through this process's client, within its share of requests in flight."""
        client, limit, checked = await self._ready()
        settings = self.settings
        with collector_tuned_for_run():
            return await classify_values(
                client,
                values,
                settings.options,
                limit=limit,
                engine=settings.engine,
                checked=checked,
                task=settings.task,
            )

    async def _ready(self) -> tuple[TorchServeClient, ConcurrencyLimit, Checked]:
        # Runs on the loop thread only: the client is built before any await, and
        # a caller that resumes after another has checked the server or set the
        # limit keeps what that caller found.  The server is checked once per process.
        if self._client is None:
            self._client = TorchServeClient(config=self.settings.client_config(), registry=self.registry)
        client = self._client
        if self._checked is None:
            options = self.settings.options
            checked = await preflight(client, options.model, options.version)
            if self._checked is None:
                self._checked = checked
        if self._limit is None:
            self._limit = self._share(client, self._checked.info)
        return client, self._limit, self._checked

    def _share(self, client: TorchServeClient, info: ModelInfo | None) -> ConcurrencyLimit:
        """This process's share of the job's requests in flight."""
        options, workers = self.settings.options, max(1, self.settings.workers)
        engine = self.settings.engine
        if engine.concurrency is not None:
            return client.fixed_limit(max(1, engine.concurrency // workers))
        mode = choose_mode(options.mode, info)
        ceiling = (
            max(1, engine.max_concurrency // workers) if engine.max_concurrency else client.config.pool_size
        )
        initial = min(max(1, choose_concurrency(mode, None, info) // workers), ceiling)
        key = (info.name if info else "", info.version if info else "", mode)
        return client.adaptive_limit(key, initial, ceiling)

    def close(self) -> None:
        """Close the client, stop the loop thread and close the loop."""
        if self._client is not None and self._loop.is_running():
            self.run(self._client.aclose)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()


def _serve_metrics(registry: CollectorRegistry, address: str, first: int) -> int:
    """Serve ``registry`` on the first free port from ``first`` on; returns the port."""
    for port in range(first, first + METRICS_PORT_RANGE):
        try:
            start_http_server(port, addr=address, registry=registry)
        except OSError:
            continue
        logger.info("worker %d serves /metrics on %s:%d", os.getpid(), address, port)
        return port
    raise OSError(f"no free port for /metrics in {first}-{first + METRICS_PORT_RANGE - 1} on {address}")


_lock = threading.Lock()
_runtimes: dict[tuple[int, WorkerSettings], WorkerRuntime] = {}


def worker_runtime(settings: WorkerSettings) -> WorkerRuntime:
    """This process's runtime for ``settings``, built on first use."""
    key = (os.getpid(), settings)
    with _lock:
        runtime = _runtimes.get(key)
        if runtime is None:
            runtime = _runtimes[key] = WorkerRuntime(settings)
        return runtime


@atexit.register
def _close_runtimes() -> None:
    with _lock:
        mine = [r for (pid, _), r in _runtimes.items() if pid == os.getpid()]
        _runtimes.clear()
    for runtime in mine:
        runtime.close()


def classify_partition(frame: pd.DataFrame, column: Any, settings: WorkerSettings) -> EngineResult:
    """Classify one partition's ``column`` on this process's client."""
    values = frame[column].tolist()
    runtime = worker_runtime(settings)
    return runtime.run(lambda: runtime.classify(values))
