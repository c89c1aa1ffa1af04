"""Exit codes a scheduler can act on, for faults a real TorchServe cannot be made to produce on cue."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from aiohttp import web

from tests.conftest import free_ports
from tests.scripted_server import ServerThread
from tsbatch._cli import EXIT_CANNOT_WRITE, EXIT_OUTAGE


async def labels(request: web.Request) -> web.StreamResponse:
    if not request.path.startswith("/predictions"):
        return web.Response(status=404)
    body = await request.read()
    if request.content_type == "application/json":
        return web.json_response([{"label": "x", "score": 0.5} for _ in json.loads(body)["instances"]])
    return web.json_response({"label": "x", "score": 0.5})


@pytest.fixture
def input_file(tmp_path: Path) -> Path:
    path = tmp_path / "input.parquet"
    frame = pd.DataFrame({"id": [f"row-{i}" for i in range(600)], "text": [f"text {i}" for i in range(600)]})
    frame.to_parquet(path, index=False)
    return path


def run_job(
    input_file: Path, output: Path, url: str, *options: str, file_size_limit: int | None = None
) -> subprocess.CompletedProcess[str]:
    def limit_file_size() -> None:  # a full disk, as far as the job can tell: writes fail with EFBIG
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    env = {"TORCHSERVE_URL": url, "TORCHSERVE_MANAGEMENT_URL": url, "TSBATCH_PROGRESS": "0"}
    command = [
        sys.executable,
        "-m",
        "tsbatch._cli",
        "classify",
        str(input_file),
        str(output),
        "--id-column=id",
    ]
    return subprocess.run(
        [*command, *options],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit_file_size,
    )


def test_an_output_that_cannot_be_written_exits_74_with_one_line_and_records_nothing_unwritten(
    input_file: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    with ServerThread([labels]) as server:
        done = run_job(input_file, output, server.url, "--rows-per-part=200", file_size_limit=8192)
    assert done.returncode == EXIT_CANNOT_WRITE, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(
        f"tsbatch: error: cannot write {output / 'part-00000.parquet'}: File too large"
    )
    assert "Traceback" not in done.stderr
    assert json.loads((output / "_manifest.json").read_text())["parts"] == {}
    assert not list(output.glob("part-*")) and not list(output.glob(".*.tmp"))


def test_a_server_that_never_answers_stops_the_job_with_exit_75_once_the_budget_is_spent(
    input_file: Path, tmp_path: Path
) -> None:
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    done = run_job(input_file, tmp_path / "out", url, "--max-outage=1")
    assert done.returncode == EXIT_OUTAGE, done.stderr
    assert "server unavailable for" in done.stderr and f"127.0.0.1:{port}" in done.stderr
    assert "resume with:" in done.stderr
    assert json.loads((tmp_path / "out" / "_manifest.json").read_text())["parts"] == {}
