"""The v2 protocol against a real MLServer serving the demo model (``tsbatch/_demo/mlserver_model.py``).

MLServer runs on the Python of ``.venv-mlserver`` (``scripts/test`` makes it:
its fastapi pin cannot share a venv with kserve's, nor its pandas with
tsbatch's), or of ``TSBATCH_MLSERVER_PYTHON``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

pytest.importorskip("psutil")  # needs the serve extra
pytest.importorskip("torch")  # needs the serve extra

from tests.conftest import free_ports
from tests.job_helpers import server_config
from tests.waiting import wait_for
from tsbatch import ClientConfig, TorchServeInferenceError
from tsbatch._demo.archive import DEFAULT_DATA
from tsbatch._serve import local

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "tsbatch" / "_demo"


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/models/demo/ready", timeout=2) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def mlserver(demo_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    python = Path(os.environ.get("TSBATCH_MLSERVER_PYTHON") or ROOT / ".venv-mlserver" / "bin" / "python")
    if not python.exists():
        pytest.skip(f"no MLServer Python at {python}: scripts/test makes .venv-mlserver")
    folder = tmp_path_factory.mktemp("mlserver")
    model = folder / "demo"
    model.mkdir()
    for name in ("mlserver_model.py", "handler.py"):
        (model / name).symlink_to(DEMO / name)
    settings = {
        "name": "demo",
        "implementation": "mlserver_model.DemoModel",
        "parameters": {"uri": str(demo_archive)},
    }
    (model / "model-settings.json").write_text(json.dumps(settings))
    http, grpc, metrics = free_ports(3)
    server = {
        "parallel_workers": 0,
        "host": "127.0.0.1",
        "http_port": http,
        "grpc_port": grpc,
        "metrics_port": metrics,
    }
    (folder / "settings.json").write_text(json.dumps(server))
    url = f"http://127.0.0.1:{http}"
    log = (folder / "mlserver.log").open("wb")
    process = subprocess.Popen(
        [str(python.parent / "mlserver"), "start", str(folder)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=folder,
    )
    try:
        wait_for(lambda: ready(url) or process.poll() is not None, "MLServer ready", timeout=120)
        assert process.poll() is None, (folder / "mlserver.log").read_text()[-3000:]
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def test_split() -> pd.DataFrame:
    return pq.read_table(DEFAULT_DATA, filters=[("split", "=", "test")]).to_pandas()


@pytest.mark.parametrize("mode", ["list", "rows"])
def test_mlserver_gives_the_labels_torchserve_gives(
    mlserver: str, torchserve: local.LocalServer, test_split: pd.DataFrame, mode: str
) -> None:
    expected = test_split.ts.classify("text", config=server_config(torchserve), progress=False)
    result = test_split.ts.classify(
        "text", config=ClientConfig(url=mlserver, protocol="v2"), mode=mode, progress=False
    )
    assert (result["ts_status"] == "ok").all(), result["ts_error"].dropna().head().tolist()
    assert list(result["pred_label"]) == list(expected["pred_label"])


def test_a_bad_text_is_its_row_error_and_the_rest_succeed(mlserver: str) -> None:
    frame = pd.DataFrame({"text": ["a chess engine", "x" * 100_001, "a web server"]})
    config = ClientConfig(url=mlserver, protocol="v2")
    result = frame.ts.classify("text", config=config, mode="list", max_text_length=200_000, progress=False)
    assert result["ts_status"].tolist() == ["ok", "error", "ok"]
    assert "more than 100000" in result.loc[1, "ts_error"]


def test_a_wrong_model_name_is_one_error_before_any_row(mlserver: str) -> None:
    with pytest.raises(TorchServeInferenceError, match="dmeo"):
        pd.DataFrame({"text": ["a"]}).ts.classify(
            "text", config=ClientConfig(url=mlserver, protocol="v2", model="dmeo"), progress=False
        )
