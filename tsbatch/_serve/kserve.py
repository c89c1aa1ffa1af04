"""The demo model on KServe's own ModelServer, over KServe v1 and the Open Inference Protocol (v2).

KServe runs on a Python of its own, one that has ``kserve`` and ``torch``
(kserve pins pandas below 3, so it rarely shares tsbatch's environment):
``python=``, else ``TSBATCH_KSERVE_PYTHON``, else ``.venv-kserve/bin/python``
(``scripts/test`` makes it).  It serves ``demo``, ``demo-probabilities`` and
``demo-embedding`` (see ``tsbatch/_demo/kserve_server.py``) on one port.
KServe listens on every interface; the port is chosen free on loopback.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tsbatch._errors import LocalServerError

#: The script KServe runs: the demo model's ``kserve.Model`` classes.
SERVER_SCRIPT = Path(__file__).resolve().parent.parent / "_demo" / "kserve_server.py"
#: Seconds KServe gets to answer its readiness check.
START_TIMEOUT = 120.0


def kserve_python(python: str | Path | None = None) -> Path:
    """The Python that runs KServe, or an error that says how to get one."""
    chosen = Path(
        python or os.environ.get("TSBATCH_KSERVE_PYTHON") or Path(".venv-kserve") / "bin" / "python"
    )
    if not chosen.exists():
        raise LocalServerError(
            f"no Python with kserve at {chosen}: pass python=, set TSBATCH_KSERVE_PYTHON, or make one "
            "(python3 -m venv .venv-kserve && .venv-kserve/bin/pip install kserve==0.21.0 torch==2.13.0)"
        )
    return chosen


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class KServeServer:
    """The demo model on KServe at ``url`` (``protocol="v2"`` or ``"v1"``); :meth:`stop` it when done."""

    archive: Path
    port: int
    log: Path
    python: Path
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        """Whether ``/v2/health/ready`` answers 200 now."""
        try:
            with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=2) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> KServeServer:
        """Start the server (again) and wait until it is ready."""
        with self.log.open("ab") as log:
            self._process = process = subprocess.Popen(
                [str(self.python), str(SERVER_SCRIPT), f"--port={self.port}", f"--archive={self.archive}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ready():
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise LocalServerError(f"KServe did not start; its log, {self.log}, ends: {self._tail()}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 30 s); harmless when it is not running."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-1500:] if self.log.exists() else "(no log)"


def start_kserve(
    archive: str | Path,
    *,
    port: int | None = None,
    python: str | Path | None = None,
    log: str | Path | None = None,
) -> KServeServer:
    """Serve the demo model ``archive`` (a ``demo.mar``) on KServe; returns once it is ready."""
    if not Path(archive).is_file():
        raise LocalServerError(f"model archive {archive} not found")
    where = Path(log) if log is not None else Path(archive).with_name("kserve.log")
    server = KServeServer(Path(archive).resolve(), port or _free_port(), where, kserve_python(python))
    return server.start()
