"""KServe's own ModelServer serving the demo model (``tsbatch/_demo/kserve_server.py``), in a process.

It runs on the Python of ``.venv-kserve`` (``scripts/test`` makes it; kserve
pins pandas below 3, so it cannot share tsbatch's venv), or of
``TSBATCH_KSERVE_PYTHON``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "tsbatch" / "_demo" / "kserve_server.py"


def kserve_python() -> Path:
    """The Python that has kserve, or a skip that says how to get one."""
    python = Path(os.environ.get("TSBATCH_KSERVE_PYTHON") or ROOT / ".venv-kserve" / "bin" / "python")
    if not python.exists():
        pytest.skip(f"no KServe Python at {python}: scripts/test makes .venv-kserve")
    return python


class KServe:
    """The demo model on KServe's ModelServer at ``url``; :meth:`stop` and :meth:`start` it at will."""

    def __init__(self, archive: Path, port: int, log: Path) -> None:
        self.archive, self.port, self.log = archive, port, log
        self.url = f"http://127.0.0.1:{port}"
        self._process: subprocess.Popen[bytes] | None = None

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=2) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> KServe:
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [str(kserve_python()), str(SERVER), f"--port={self.port}", f"--archive={self.archive}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.log.parent,
            )
        process = self._process
        wait_for(lambda: self.ready() or process.poll() is not None, "KServe ready", timeout=120)
        if process.poll() is not None:
            raise RuntimeError(f"KServe exited with {process.returncode}: {self.log.read_text()[-3000:]}")
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None
