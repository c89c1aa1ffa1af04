"""Outages and overload with real TorchServe processes: stopped and started again, or given a tiny queue.

A proxy in front of TorchServe logs every request the job sends, so a test
can count what went out while the server was down.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

pytest.importorskip("psutil")  # needs the serve extra
pytest.importorskip("torch")  # needs the serve extra
from prometheus_client import CollectorRegistry

from tests.client_helpers import sample
from tests.conftest import free_ports, serve_settings
from tests.job_helpers import parts_done, server_env
from tests.proxy import Proxy
from tests.waiting import wait_for
from tsbatch import Auth, ClientConfig, run_report
from tsbatch._demo.archive import DEFAULT_DATA
from tsbatch._serve import local

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: The seed's breaker settings, which the tests keep.
FAILURE_THRESHOLD, RECOVERY_TIMEOUT = 5, 60
ATTEMPTS = 3


@pytest.fixture(scope="module")
def settings(demo_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[local.ServeSettings]:
    """A TorchServe of these tests' own (they stop and start it), running when each test begins."""
    serve = serve_settings(tmp_path_factory.mktemp("outage-server"), demo_archive, batch_size=8)
    try:
        yield serve
    finally:
        local.stop(serve.run_dir)


@pytest.fixture
def server(settings: local.ServeSettings) -> local.LocalServer:
    return local.status(settings.run_dir) or local.start(settings, say=lambda _: None)


@pytest.fixture
def proxy(server: local.LocalServer) -> Iterator[Proxy]:
    with Proxy(server.inference_url) as running:
        yield running


def job_env(server: local.LocalServer, proxy: Proxy, **extra: str) -> dict[str, str]:
    return {**server_env(server), "TORCHSERVE_URL": proxy.url, **extra}


def classify_command(input_path: Path, output: Path, *options: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tsbatch",
        "classify",
        str(input_path),
        str(output),
        "--id-column=id",
        *options,
    ]


@contextlib.contextmanager
def running(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """A job in a process of its own, killed (and its pipes closed) when the block ends."""
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as job:
        try:
            yield job
        finally:
            job.kill()


def output_table(output: Path) -> pd.DataFrame:
    return ds.dataset(output, format="parquet").to_table().to_pandas()


def input_ids(path: Path) -> set[str]:
    return set(pq.read_table(path, columns=["id"]).column("id").to_pylist())


def test_a_30_s_outage_mid_job_costs_no_row_and_the_job_carries_on_by_itself(
    settings: local.ServeSettings, server: local.LocalServer, proxy: Proxy, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    command = classify_command(DEFAULT_DATA, output, "--rows-per-part=1000", "--mode=rows")
    with running(command, job_env(server, proxy)) as job:
        wait_for(lambda: parts_done(output) >= 3, "three parts recorded", timeout=120)
        local.stop(settings.run_dir)
        down_at = time.monotonic()
        assert job.poll() is None, "the job ended before the outage"
        time.sleep(30)  # the outage
        up_at = time.monotonic()
        local.start(settings, say=lambda _: None)
        _, err = job.communicate(timeout=240)
    assert job.returncode == 0, err
    table = output_table(output)
    assert table["id"].is_unique and set(table["id"]) == input_ids(DEFAULT_DATA)
    assert (table["ts_status"] == "ok").all()
    # While the server was down: the requests in flight when it went, their retries, then
    # nothing but the breaker's probe once per recovery period (pings aside).
    in_flight = int(pd.read_parquet(output / "_batches.parquet")["concurrency_limit"].max())
    assert proxy.count("/predictions", down_at, up_at) <= in_flight * ATTEMPTS + 1
    assert proxy.count("/predictions", down_at + 5, up_at) <= 1
    assert proxy.count("/ping", down_at, up_at) >= 3  # the pause polls the server


def test_an_outage_longer_than_the_budget_stops_the_job_with_exit_75_and_it_resumes(
    settings: local.ServeSettings, server: local.LocalServer, proxy: Proxy, tmp_path: Path
) -> None:
    input_path = tmp_path / "input.parquet"
    pq.write_table(pq.read_table(DEFAULT_DATA).slice(0, 4000), input_path)
    output = tmp_path / "out"
    command = classify_command(input_path, output, "--rows-per-part=500", "--mode=rows", "--concurrency=4")
    env = job_env(server, proxy, TSBATCH_MAX_OUTAGE_S="5")
    with running(command, env) as job:
        wait_for(lambda: parts_done(output) >= 2, "two parts recorded", timeout=120)
        local.stop(settings.run_dir)
        stopped_at = time.monotonic()
        _, err = job.communicate(timeout=120)
    assert job.returncode == 75, err
    assert "server unavailable for" in err and "resume with:" in err
    assert time.monotonic() - stopped_at < 60
    recorded = json.loads((output / "_manifest.json").read_text())["parts"]
    assert 2 <= len(recorded) < 8
    assert sorted(p.name for p in output.glob("part-*.parquet")) == sorted(recorded)
    local.start(settings, say=lambda _: None)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    table = output_table(output)
    assert table["id"].is_unique and set(table["id"]) == input_ids(input_path)
    assert (table["ts_status"] == "ok").all()


@pytest.fixture(scope="module")
def test_split_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("split") / "test.parquet"
    pq.write_table(pq.read_table(DEFAULT_DATA, filters=[("split", "=", "test")]), path)
    return path


def test_a_job_started_while_ping_answers_500_finishes_every_row(
    server: local.LocalServer, proxy: Proxy, test_split_file: Path, tmp_path: Path
) -> None:
    proxy.ping_status = 500  # TorchServe's answer when any model on it is unhealthy
    output = tmp_path / "out"
    done = subprocess.run(
        classify_command(test_split_file, output),
        env=job_env(server, proxy),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "not healthy" in done.stderr
    table = output_table(output)
    assert len(table) == len(input_ids(test_split_file)) and (table["ts_status"] == "ok").all()


def test_a_job_started_while_the_server_is_down_waits_for_it(
    settings: local.ServeSettings,
    server: local.LocalServer,
    proxy: Proxy,
    test_split_file: Path,
    tmp_path: Path,
) -> None:
    local.stop(settings.run_dir)
    output = tmp_path / "out"
    with running(classify_command(test_split_file, output), job_env(server, proxy)) as job:
        wait_for(
            lambda: proxy.count("/ping") >= 2 or job.poll() is not None,
            "the job to poll the server",
            timeout=60,
        )
        assert job.poll() is None, job.communicate()[1]  # it started, and waits
        local.start(settings, say=lambda _: None)
        _, err = job.communicate(timeout=240)
    assert job.returncode == 0, err
    table = output_table(output)
    assert len(table) == len(input_ids(test_split_file)) and (table["ts_status"] == "ok").all()


def test_a_client_asking_far_more_than_a_small_queue_holds_slows_down_and_fails_no_row(
    demo_archive: Path, tmp_path: Path
) -> None:
    small = serve_settings(
        tmp_path / "small-queue", demo_archive, batch_size=8, max_batch_delay_ms=5, job_queue_size=8
    )
    server = local.start(small, say=lambda _: None)
    try:
        with Proxy(server.inference_url) as proxy:
            (closed,) = free_ports(1)
            # The management API is out of reach, so the run starts from the fallback of 32 in flight:
            # four times what the queue holds.
            config = ClientConfig(
                url=proxy.url,
                management_url=f"http://127.0.0.1:{closed}",
                auth=Auth(key_file=server.key_file),
            )
            frame = pq.read_table(DEFAULT_DATA, columns=["id", "text"]).slice(0, 8000).to_pandas()
            registry = CollectorRegistry()
            started = time.monotonic()
            result = frame.ts.classify(
                "text", config=config, registry=registry, mode="rows", max_concurrency=128, progress=False
            )
    finally:
        local.stop(small.run_dir)
    assert (result["ts_status"] == "ok").all()
    assert sample(registry, "torchserve_circuit_breaker_trips_total") == 0
    report = run_report(result)
    assert report.adaptive and report.concurrency == 32
    statuses = proxy.statuses("/predictions", since=started + 3)
    assert statuses.count(503) / len(statuses) < 0.05, (statuses.count(503), len(statuses))
    assert statuses.count(200) > 3000
