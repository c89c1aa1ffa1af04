"""Build the demo model archive (``demo.mar``) with torch-model-archiver."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from tsbatch._errors import LocalServerError

if TYPE_CHECKING:
    from tsbatch._demo.train import TrainingResult

DEMO_MODEL_NAME = "demo"
DEMO_MODEL_VERSION = "1.0"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "data_samples" / "debian_descriptions.parquet"


def build_demo_archive(model_store: Path, data: Path = DEFAULT_DATA) -> tuple[Path, TrainingResult]:
    """Train the demo model on ``data`` and pack it into ``model_store/demo.mar``.

    Returns the archive's path and the training result (checkpoint digest and
    scores).  The checkpoint's scores are kept next to the archive as
    ``demo.json``.
    """
    from tsbatch._demo.train import train  # torch is only needed to build the archive

    if not data.is_file():
        raise LocalServerError(
            f"training data {data} not found: run from a tsbatch checkout or pass --data PATH"
        )
    model_store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tsbatch-archive-") as tmp:
        result = train(data, Path(tmp) / "model.pt")
        # The archiver stages files in $TMPDIR/<model-name> and wipes that
        # folder first, so it gets a private one.
        staging = Path(tmp) / "staging"
        staging.mkdir()
        command = [
            sys.executable,
            "-m",
            "model_archiver.model_packaging",
            f"--model-name={DEMO_MODEL_NAME}",
            f"--version={DEMO_MODEL_VERSION}",
            f"--serialized-file={result.checkpoint}",
            f"--handler={Path(__file__).with_name('handler.py')}",
            f"--export-path={model_store}",
            "--force",
        ]
        env = {**os.environ, "TMPDIR": str(staging)}
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise LocalServerError(
                "torch-model-archiver failed (install it with: pip install 'tsbatch[serve]'): "
                + (done.stderr.strip().splitlines() or ["no output"])[-1]
            )
        shutil.copyfile(result.checkpoint.with_suffix(".json"), model_store / f"{DEMO_MODEL_NAME}.json")
    return model_store / f"{DEMO_MODEL_NAME}.mar", result
