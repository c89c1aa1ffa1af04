"""The README's Python examples run as written, against the session's real TorchServe.

Each block runs in its own process, from a folder laid out like a checkout
after ``tsbatch serve start``: ``data_samples/``, and the server's key file
and model archive in ``.tsbatch/server``.  ``TORCHSERVE_URL`` and ``TORCHSERVE_MANAGEMENT_URL``
point at the session's server, as the lines ``tsbatch serve start`` prints set
them.  A block with a top-level ``await`` runs as in a notebook.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("psutil")  # needs the serve extra
pytest.importorskip("torch")  # needs the serve extra

from tsbatch._serve import local

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), flags=re.S | re.M)

# Runs a file as a notebook cell would: a top-level ``await`` is allowed.
NOTEBOOK_CELL = (
    "import ast, asyncio, sys; "
    "code = compile(open(sys.argv[1]).read(), sys.argv[1], 'exec', flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT); "
    "result = eval(code, {'__name__': '__main__'}); "
    "asyncio.run(result) if asyncio.iscoroutine(result) else None"
)


def test_the_readme_has_the_examples_this_test_runs() -> None:
    assert len(BLOCKS) >= 4
    assert any("df.ts.classify(" in block for block in BLOCKS)
    assert any("ddf.ts.classify(" in block for block in BLOCKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=lambda i: f"block{i + 1}")
def test_a_readme_example_runs_as_written(
    index: int, torchserve: local.LocalServer, demo_archive: Path, tmp_path: Path
) -> None:
    (tmp_path / "data_samples").symlink_to(ROOT / "data_samples")
    server = tmp_path / ".tsbatch" / "server"
    (server / "model-store").mkdir(parents=True)
    (server / "key_file.json").symlink_to(torchserve.run_dir / "key_file.json")
    (server / "model-store" / "demo.mar").symlink_to(demo_archive)
    example = tmp_path / "example.py"
    example.write_text(BLOCKS[index])
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHSERVE_")}
    env |= {
        "TORCHSERVE_URL": torchserve.inference_url,
        "TORCHSERVE_MANAGEMENT_URL": torchserve.management_url,
        "TSBATCH_PROGRESS": "0",
        "TSBATCH_KSERVE_PYTHON": str(ROOT / ".venv-kserve" / "bin" / "python"),
    }
    done = subprocess.run(
        [sys.executable, "-c", NOTEBOOK_CELL, str(example)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
