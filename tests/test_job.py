"""Parquet jobs against the real TorchServe: round trips, resume after kills, stops, retries, refusals."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

pytest.importorskip("psutil")  # needs the serve extra
pytest.importorskip("torch")  # needs the serve extra

from tests.conftest import free_ports, serve_settings
from tests.job_helpers import parts_done, port_open, server_config, server_env
from tests.waiting import wait_for
from tsbatch import ClientConfig
from tsbatch._cli import main
from tsbatch._demo.archive import DEFAULT_DATA
from tsbatch._demo.handler import DemoTextHandler
from tsbatch._errors import JobInputError
from tsbatch._job import Job, JobSettings
from tsbatch._serve import local

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def test_split() -> pd.DataFrame:
    return pq.read_table(DEFAULT_DATA, filters=[("split", "=", "test")]).to_pandas()


@pytest.fixture
def three_files(test_split: pd.DataFrame, tmp_path: Path) -> Path:
    """The test split as a folder of three Parquet files."""
    folder = tmp_path / "input"
    folder.mkdir()
    for index, chunk in enumerate((test_split[:500], test_split[500:1000], test_split[1000:])):
        chunk.to_parquet(folder / f"chunk-{index}.parquet", index=False)
    return folder


def output_ids(output: Path) -> list[str]:
    return ds.dataset(output, format="parquet").to_table(columns=["id"]).column("id").to_pylist()


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tsbatch", *args]


def test_a_multi_file_dataset_round_trips(
    torchserve: local.LocalServer,
    three_files: Path,
    test_split: pd.DataFrame,
    in_process_model: DemoTextHandler,
) -> None:
    output = three_files.parent / "out"
    settings = JobSettings(
        input=str(three_files), output=output, id_column="id", keep_columns=("label",), rows_per_part=400
    )
    summary = asyncio.run(Job(settings, server_config(torchserve)).run())
    assert (summary.rows, summary.ok, summary.failed) == (len(test_split), len(test_split), 0)
    table = ds.dataset(output, format="parquet").to_table().to_pandas()
    assert sorted(table["id"]) == sorted(test_split["id"])
    assert table["id"].is_unique
    expected = dict(
        zip(
            test_split["id"],
            (p["label"] for p in in_process_model.predict(test_split["text"].tolist())),
            strict=True,
        )
    )
    assert table.set_index("id")["pred_label"].to_dict() == expected
    metadata = json.loads(pq.read_schema(next(output.glob("part-*.parquet"))).metadata[b"tsbatch"])
    assert metadata["model"] == "demo" and metadata["model_version"] == "1.0" and metadata["tsbatch_version"]
    assert pd.read_parquet(output / "_batches.parquet")["rows"].sum() == len(test_split)
    assert len(pd.read_parquet(output / "_failed.parquet")) == 0
    assert json.loads((output / "_summary.json").read_text())["ok"] == len(test_split)


def test_sigterm_stops_with_a_nonzero_exit_and_the_job_resumes(
    torchserve: local.LocalServer, three_files: Path, test_split: pd.DataFrame
) -> None:
    output = three_files.parent / "out"
    command = cli(
        "classify",
        str(three_files),
        str(output),
        "--id-column=id",
        "--rows-per-part=50",
        "--mode=rows",
        "--concurrency=2",
    )
    env = server_env(torchserve)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: parts_done(output) >= 1, "a part recorded")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    assert "SIGTERM: finishing requests in flight" in err
    assert "resume with:" in err
    assert parts_done(output) < -(-len(test_split) // 50)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ids = output_ids(output)
    assert len(ids) == len(set(ids)) == len(test_split)


@pytest.mark.slow
def test_retry_failed_recovers_rows_failed_by_a_server_stopped_mid_job(
    demo_archive: Path, three_files: Path, test_split: pd.DataFrame, tmp_path: Path
) -> None:
    settings = serve_settings(tmp_path / "server", demo_archive, token_auth=False)
    server = local.start(settings, say=lambda _: None)
    output = three_files.parent / "out"
    # Without an outage budget the rows fail while the server is down, as they did before pausing.
    env = {
        **server_env(server),
        "RETRY_ATTEMPTS": "1",
        "CIRCUIT_BREAKER_FAILURE_THRESHOLD": "2",
        "TSBATCH_MAX_OUTAGE_S": "0",
    }
    command = cli(
        "classify",
        str(three_files),
        str(output),
        "--id-column=id",
        "--rows-per-part=100",
        "--mode=rows",
        "--concurrency=2",
    )
    try:
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        wait_for(lambda: parts_done(output) >= 2, "two parts recorded")
        local.stop(settings.run_dir)
        _, err = process.communicate(timeout=120)
        assert process.returncode == 1, err
        failed = pd.read_parquet(output / "_failed.parquet")
        assert len(failed) > 0
        local.start(settings, say=lambda _: None)
        done = subprocess.run(
            [sys.executable, "-m", "tsbatch", "retry-failed", str(output)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
    finally:
        local.stop(settings.run_dir)
    table = ds.dataset(output, format="parquet").to_table().to_pandas()
    assert len(table) == len(test_split) and table["id"].is_unique
    assert (table["ts_status"] == "ok").all()
    assert len(pd.read_parquet(output / "_failed.parquet")) == 0
    summary = json.loads((output / "_summary.json").read_text())
    assert summary["failed"] == 0 and summary["ok"] == len(test_split)


def refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(args) == 2
    return capsys.readouterr().err


def test_bad_input_is_refused_with_exit_2_and_nothing_written(
    torchserve: local.LocalServer,
    three_files: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in server_env(torchserve).items():
        monkeypatch.setenv(key, value)
    output = tmp_path / "never"
    assert "INPUT /no/such.parquet does not exist" in refused(
        ["classify", "/no/such.parquet", str(output)], capsys
    )
    not_parquet = tmp_path / "notes.parquet"
    not_parquet.write_text("hello")
    assert "is not a Parquet file" in refused(["classify", str(not_parquet), str(output)], capsys)
    err = refused(["classify", str(three_files), str(output), "--column=body"], capsys)
    assert "column(s) ['body'] not in INPUT; it has: id, text, label, split" in err
    err = refused(["classify", str(three_files), str(output), "--id-column=label"], capsys)
    assert "id column 'label' is not unique" in err
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert "exists and is not a folder" in refused(["classify", str(three_files), str(a_file)], capsys)
    (port,) = free_ports(1)
    # A job that may not wait (no outage budget) refuses a server it cannot reach.
    unreachable = ["classify", str(three_files), str(output), f"--url=http://127.0.0.1:{port}"]
    err = refused([*unreachable, "--max-outage=0"], capsys)
    assert f"cannot reach the server at http://127.0.0.1:{port} (" in err and "is it running?" in err
    assert f"GET http://127.0.0.1:{port}/ping" in err
    assert not output.exists()
    assert a_file.read_text() == "x"


def test_an_output_from_other_settings_is_refused_unless_overwritten(
    torchserve: local.LocalServer,
    three_files: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in server_env(torchserve).items():
        monkeypatch.setenv(key, value)
    output = three_files.parent / "out"
    first = ["classify", str(three_files), str(output), "--id-column=id", "--no-progress"]
    assert main(first) == 0
    err = refused([*first[:-1], "--rows-per-part=77"], capsys)
    assert "rows_per_part was 10000, now 77" in err and "(--rows-per-part 10000)" in err
    assert "--overwrite" in err
    assert main([*first, "--rows-per-part=500", "--overwrite"]) == 0
    assert len(list(output.glob("part-*.parquet"))) == 4
    assert len(output_ids(output)) == 1535


def test_final_metrics_are_pushed_to_a_real_pushgateway(
    torchserve: local.LocalServer, three_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = shutil.which("prometheus-pushgateway") or "/usr/bin/prometheus-pushgateway"
    (port,) = free_ports(1)
    gateway = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}", f"--persistence.file={tmp_path / 'pgw'}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: port_open(port), "the job's /metrics port to open", timeout=30)
        for key, value in server_env(torchserve).items():
            monkeypatch.setenv(key, value)
        url = f"http://127.0.0.1:{port}"
        args = ["classify", str(three_files), str(tmp_path / "out"), "--id-column=id", "--no-progress"]
        assert main([*args, f"--pushgateway={url}", "--job-name=nightly"]) == 0
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as reply:
            text = reply.read().decode()
    finally:
        gateway.terminate()
        gateway.wait(timeout=10)
    assert 'tsbatch_job_rows_total{instance="",job="nightly",status="ok"} 1535' in text
    assert 'tsbatch_job_last_success_timestamp_seconds{instance="",job="nightly"}' in text
    assert 'tsbatch_job_duration_seconds{instance="",job="nightly"}' in text


def test_json_model_info_health_and_models(
    torchserve: local.LocalServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in server_env(torchserve).items():
        monkeypatch.setenv(key, value)
    assert main(["health", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["healthy"] is True
    assert main(["models", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == ["demo"]
    assert main(["model-info", "demo", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "demo" and info["workers_ready"] == 1
    assert main(["model-info", "demo"]) == 0
    assert "batch_size" in capsys.readouterr().out


def test_a_job_refuses_to_start_without_input(tmp_path: Path) -> None:
    settings = JobSettings(input=str(tmp_path / "none-*.parquet"), output=tmp_path / "out")
    with pytest.raises(JobInputError, match="matches no files"):
        Job(settings, ClientConfig()).prepare()


def test_metrics_are_served_while_the_job_runs(
    torchserve: local.LocalServer, three_files: Path, test_split: pd.DataFrame
) -> None:
    output = three_files.parent / "out"
    (port,) = free_ports(1)
    command = cli(
        "classify",
        str(three_files),
        str(output),
        "--id-column=id",
        "--rows-per-part=50",
        "--mode=rows",
        "--concurrency=2",
        f"--metrics-port={port}",
    )
    process = subprocess.Popen(
        command, env=server_env(torchserve), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    scraped: list[str] = []

    def scrape() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            scraped.append(reply.read().decode())
        return 'tsbatch_job_rows_total{status="ok"}' in scraped[-1]

    try:
        wait_for(lambda: parts_done(output) >= 1, "a part recorded")
        # A part's rows are counted just after its manifest entry is written.
        wait_for(scrape, "the part's rows in the served metrics", timeout=30)
        text = scraped[-1]
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert 'torchserve_requests_total{method="predict",status="200"}' in text
    assert 'tsbatch_job_rows_total{status="ok"}' in text
