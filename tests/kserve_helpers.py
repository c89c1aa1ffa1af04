"""KServe's own ModelServer serving the demo model, for the tests of the v1 and v2 protocols.

It runs on the Python of ``.venv-kserve`` (``scripts/test`` makes it), or of
``TSBATCH_KSERVE_PYTHON``; without one the tests that need it are skipped,
saying how to get one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tsbatch._errors import LocalServerError
from tsbatch._serve.kserve import KServeServer, kserve_python

ROOT = Path(__file__).resolve().parent.parent


def kserve_server(archive: Path, port: int, log: Path) -> KServeServer:
    """A server not started yet; a skip when there is no Python with kserve."""
    try:
        python = kserve_python(
            os.environ.get("TSBATCH_KSERVE_PYTHON") or ROOT / ".venv-kserve" / "bin" / "python"
        )
    except LocalServerError as exc:
        pytest.skip(str(exc))
    return KServeServer(archive, port, log, python)
