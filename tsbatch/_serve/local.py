"""Start, inspect and stop a local TorchServe serving the demo model.

Everything a server needs lives in one run folder: ``config.properties``, the
quiet ``log4j2.xml``, ``logs/``, the model store, TorchServe's
``key_file.json`` and ``server.json`` (the Java process's PID and URLs).  A
server is only ever stopped by the PID recorded there, after checking that the
process is still the TorchServe started from that folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import psutil

from tsbatch._demo.archive import DEMO_MODEL_NAME
from tsbatch._errors import LocalServerError
from tsbatch._serve.models import config_text, model_archives
from tsbatch._serve.settings import (
    DEFAULT_RUN_DIR,
    DEFAULT_STOP_TIMEOUT,
    HOST,
    ServeSettings,
)

_JAVA_MAIN_CLASS = "org.pytorch.serve.ModelServer"


@dataclass(frozen=True)
class LocalServer:
    """A running local TorchServe, as recorded in its run folder."""

    run_dir: Path
    pid: int
    inference_url: str
    management_url: str
    metrics_url: str
    model_name: str
    token_auth: bool
    create_time: float = field(repr=False)
    #: The model's versions, the default first (empty for a model archive of your own).
    versions: tuple[str, ...] = ()

    @property
    def key_file(self) -> Path | None:
        """TorchServe's key file, or ``None`` when token auth is off."""
        return self.run_dir / "key_file.json" if self.token_auth else None

    def _key(self, kind: str) -> str | None:
        if self.key_file is None:
            return None
        return str(json.loads(self.key_file.read_text())[kind]["key"])

    def inference_token(self) -> str | None:
        """The current inference API key (``None`` without token auth)."""
        return self._key("inference")

    def management_token(self) -> str | None:
        """The current management API key (``None`` without token auth)."""
        return self._key("management")

    def is_running(self) -> bool:
        """Whether the recorded process is still this run folder's TorchServe."""
        return _process(self.pid, self.create_time) is not None


def _process(pid: int, create_time: float) -> psutil.Process | None:
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - create_time) > 1 or not process.is_running():
            return None
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process if _JAVA_MAIN_CLASS in process.cmdline() else None
    except psutil.Error:
        return None


def _state_file(run_dir: Path) -> Path:
    return run_dir / "server.json"


def status(run_dir: Path = DEFAULT_RUN_DIR) -> LocalServer | None:
    """The server started from ``run_dir`` if it still runs, else ``None``."""
    try:
        state = json.loads(_state_file(run_dir).read_text())
    except (OSError, ValueError):
        return None
    state["versions"] = tuple(state.get("versions", ()))
    server = LocalServer(run_dir=run_dir.resolve(), **state)
    return server if server.is_running() else None


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        raise LocalServerError(
            "Java not found: TorchServe needs Java 17 "
            "(apt-get install openjdk-17-jre-headless, or set JAVA_HOME)"
        )
    return java


def _get(url: str, token: str | None, timeout: float = 2.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def _ready(server: LocalServer) -> bool:
    if server.key_file is not None and not server.key_file.is_file():
        return False
    try:
        inference, management = server.inference_token(), server.management_token()
    except (ValueError, KeyError):  # TorchServe is still writing the key file
        return False
    status_code, _ = _get(f"{server.inference_url}/ping", inference)
    if status_code != 200:
        return False
    status_code, body = _get(f"{server.management_url}/models/{server.model_name}/all", management)
    if status_code != 200:
        return False
    ready = {
        str(entry.get("modelVersion"))
        for entry in json.loads(body)
        if any(worker.get("status") == "READY" for worker in entry.get("workers", []))
    }
    return bool(ready) and ready >= set(server.versions)


def _log_tail(run_dir: Path, lines: int = 5) -> str:
    """The last lines of TorchServe's log and of its console (where Java prints why it stopped)."""
    tails = []
    for name in ("logs/ts_log.log", "logs/console.log"):
        path = run_dir / name
        if path.is_file() and path.stat().st_size:
            tail = path.read_text(errors="replace").strip().splitlines()[-lines:]
            tails.append(f"; last lines of {path}:\n" + "\n".join(tail))
    return "".join(tails)


def start(settings: ServeSettings | None = None, say: Callable[[str], None] = print) -> LocalServer:
    """Start TorchServe with the demo model and wait until it can answer.

    Returns the server already running from ``settings.run_dir`` when there
    is one, so calling this twice never starts a second server.
    """
    settings = settings or ServeSettings()
    running = status(settings.run_dir)
    if running is not None:
        say(f"TorchServe already running from {running.run_dir} (pid {running.pid})")
        return running
    java = _java()
    ports = {
        "inference": settings.inference_port,
        "management": settings.management_port,
        "metrics": settings.metrics_port,
    }
    for role, port in ports.items():
        if not _port_is_free(port):
            raise LocalServerError(
                f"{role} port {port} on {HOST} is in use: stop what holds it or pass --{role}-port"
            )
    run_dir = settings.run_dir.resolve()
    for sub in ("logs", "tmp"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    archives = model_archives(settings, say)
    model_store = next(iter(archives.values())).parent
    config = run_dir / "config.properties"
    config.write_text(config_text(settings, archives))
    log_config = run_dir / "log4j2.xml"
    log_config.write_text(resources.files("tsbatch._serve").joinpath("log4j2.xml").read_text())
    pid_file = run_dir / "tmp" / ".model_server.pid"
    pid_file.unlink(missing_ok=True)
    (run_dir / "key_file.json").unlink(missing_ok=True)

    env = {
        **os.environ,
        "JAVA_HOME": str(Path(java).resolve().parents[1]),
        "TMPDIR": str(run_dir / "tmp"),  # the launcher keeps its PID file there
        "TEMP": str(run_dir / "tmp"),
        "LOG_LOCATION": str(run_dir / "logs"),
        "METRICS_LOCATION": str(run_dir / "logs"),
    }
    command = [
        sys.executable,
        "-m",
        "ts.model_server",
        "--start",
        "--ncs",
        f"--ts-config={config}",
        f"--model-store={model_store}",
        f"--log-config={log_config}",
    ]
    if not settings.token_auth:
        command.append("--disable-token-auth")
    with open(run_dir / "logs" / "console.log", "ab") as console:
        launcher = subprocess.run(
            command,
            cwd=run_dir,  # TorchServe writes key_file.json to its working folder
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            timeout=60,
        )
    if launcher.returncode != 0 or not pid_file.is_file():
        raise LocalServerError(f"TorchServe did not start (exit {launcher.returncode}){_log_tail(run_dir)}")
    pid = int(pid_file.read_text().split()[0])
    server = LocalServer(
        run_dir=run_dir,
        pid=pid,
        inference_url=f"http://{HOST}:{settings.inference_port}",
        management_url=f"http://{HOST}:{settings.management_port}",
        metrics_url=f"http://{HOST}:{settings.metrics_port}",
        model_name=DEMO_MODEL_NAME,
        token_auth=settings.token_auth,
        create_time=psutil.Process(pid).create_time(),
        versions=() if settings.model_archive else settings.demo_versions,
    )
    state = {k: v for k, v in server.__dict__.items() if k != "run_dir"}
    _state_file(run_dir).write_text(json.dumps(state, indent=2) + "\n")

    deadline = time.monotonic() + settings.startup_timeout
    try:
        while not _ready(server):
            if not server.is_running():
                raise LocalServerError(f"TorchServe exited while starting{_log_tail(run_dir)}")
            if time.monotonic() > deadline:
                raise LocalServerError(
                    f"TorchServe was not ready within {settings.startup_timeout:.0f}s{_log_tail(run_dir)}"
                )
            time.sleep(0.25)
    except BaseException:
        stop(run_dir)  # whatever went wrong, no half-started server is left behind
        raise
    return server


def stop(run_dir: Path = DEFAULT_RUN_DIR, timeout: float = DEFAULT_STOP_TIMEOUT) -> bool:
    """Stop the server started from ``run_dir``; ``False`` if none was running.

    Waits until the process, its model workers and its ports are gone.
    """
    server = status(run_dir)
    _state_file(run_dir).unlink(missing_ok=True)
    if server is None:
        return False
    process = _process(server.pid, server.create_time)
    if process is None:
        return False
    workers = process.children(recursive=True)
    process.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs([process, *workers], timeout=timeout)
    for leftover in alive:
        leftover.kill()
    psutil.wait_procs(alive, timeout=10)
    urls = (server.inference_url, server.management_url, server.metrics_url)
    ports = [int(url.rsplit(":", 1)[1]) for url in urls]
    deadline = time.monotonic() + timeout
    while not all(_port_is_free(port) for port in ports):
        if time.monotonic() > deadline:
            raise LocalServerError(f"ports {ports} still busy {timeout:.0f}s after TorchServe stopped")
        time.sleep(0.1)
    (run_dir / "key_file.json").unlink(missing_ok=True)
    return True
