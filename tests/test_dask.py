"""Dask: ``ddf.ts.classify`` and ``tsbatch classify --engine dask`` on a real two-process LocalCluster."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

pytest.importorskip("dask")  # needs the dask extra
pytest.importorskip("psutil")  # needs the serve extra
pytest.importorskip("torch")  # needs the serve extra

import dask.dataframe as dd
from aiohttp import web
from distributed import Client, LocalCluster

import tsbatch.dask  # registers ddf.ts
from tests.conftest import SESSION_BATCH_SIZE, free_ports
from tests.job_helpers import parts_done, server_config, server_env
from tests.scripted_server import ServerThread, prediction, torchserve_error
from tests.waiting import wait_for
from tsbatch import Auth, ClassifyOptions, ClientConfig
from tsbatch._cli import main
from tsbatch._dask import cluster_workers
from tsbatch._demo.archive import DEFAULT_DATA
from tsbatch._demo.handler import DemoTextHandler
from tsbatch._errors import JobInputError
from tsbatch._job import Job, JobSettings, numbered_inputs, plan_pieces
from tsbatch._job import _dask as job_dask
from tsbatch._job._dask import ClusterSettings, DaskEngine, worker_count
from tsbatch._serve import local
from tsbatch._worker import WorkerSettings

pytestmark = pytest.mark.integration

#: Rows per row group of the test inputs, so that Dask gets several partitions.
ROW_GROUP = 100


@pytest.fixture(scope="module")
def test_split() -> pd.DataFrame:
    return pq.read_table(DEFAULT_DATA, filters=[("split", "=", "test")]).to_pandas()


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Two worker processes, one thread each, as ``--workers 2`` starts."""
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
    ) as local:
        yield local


@pytest.fixture
def dask_client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def config(torchserve: local.LocalServer) -> ClientConfig:
    return server_config(torchserve)


@pytest.fixture
def two_files(test_split: pd.DataFrame, tmp_path: Path) -> Path:
    """The test split in two files of row groups of ``ROW_GROUP`` rows."""
    folder = tmp_path / "input"
    folder.mkdir()
    for index, chunk in enumerate((test_split[:700], test_split[700:])):
        table = pa.Table.from_pandas(chunk, preserve_index=False)
        pq.write_table(table, folder / f"chunk-{index}.parquet", row_group_size=ROW_GROUP)
    return folder


def expected_labels(frame: pd.DataFrame, model: DemoTextHandler) -> dict[str, str]:
    labels = (p["label"] for p in model.predict(frame["text"].tolist()))
    return dict(zip(frame["id"], labels, strict=True))


def busy_worker(client: Client, timeout: float = 60) -> str:
    """The address of a worker that holds a task right now."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for address, keys in client.processing().items():
            if keys:
                return str(address)
        time.sleep(0.02)
    raise AssertionError("no worker got a task in time")


def read_output(output: Path) -> pd.DataFrame:
    return ds.dataset(output, format="parquet").to_table().to_pandas()


def dask_job(inputs: Path, output: Path, scheduler: str, concurrency: int) -> list[str]:
    """``tsbatch classify --engine dask`` on ``scheduler``, one part per row group, in rows mode."""
    return [
        *(sys.executable, "-m", "tsbatch", "classify", str(inputs), str(output)),
        "--engine=dask",
        f"--scheduler={scheduler}",
        "--id-column=id",
        f"--rows-per-part={ROW_GROUP}",
        "--mode=rows",
        f"--concurrency={concurrency}",
    ]


# -- planning -------------------------------------------------------------------------


def test_pieces_group_whole_row_groups_and_cover_every_row_once(tmp_path: Path) -> None:
    sizes = {"a.parquet": (250, 100), "b.parquet": (0, 0), "c.parquet": (1000, 400)}
    files = []
    for name, (rows, group) in sizes.items():
        pq.write_table(pa.table({"x": list(range(rows))}), tmp_path / name, row_group_size=group or None)
        files.append(tmp_path / name)
    pieces = plan_pieces(files, rows_per_part=220)
    assert [(Path(p.path).name, p.row_groups, p.offset, p.rows) for p in pieces] == [
        ("a.parquet", (0, 1), 0, 200),
        ("a.parquet", (2,), 200, 50),
        ("c.parquet", (0,), 250, 400),  # a row group larger than a part is a part alone
        ("c.parquet", (1,), 650, 400),
        ("c.parquet", (2,), 1050, 200),
    ]
    assert [p.index for p in pieces] == list(range(5))


def test_retry_failed_reads_a_dask_output_part_by_part_as_its_job_wrote_it(two_files: Path) -> None:
    settings = JobSettings(input=str(two_files), output=two_files / "out", engine="dask", rows_per_part=250)
    files = sorted(two_files.glob("*.parquet"))
    parts = list(numbered_inputs(files, settings))
    assert [len(batch) for _, batch in parts] == [p.rows for p in plan_pieces(files, 250)]
    assert [index for index, _ in parts] == list(range(len(parts)))


# -- ddf.ts.classify ------------------------------------------------------------------


def test_a_dask_frame_gives_the_pandas_columns_dtypes_and_predictions(
    dask_client: Client, config: ClientConfig, test_split: pd.DataFrame
) -> None:
    frame = test_split[["id", "text"]].reset_index(drop=True)
    expected = frame.ts.classify("text", config=config, include_scores=True)
    lazy = dd.from_pandas(frame, npartitions=6).ts.classify("text", config=config, include_scores=True)
    added = [c for c in expected.columns if c not in frame.columns]
    assert list(lazy.columns) == list(expected.columns)
    assert dict(lazy.dtypes[added]) == dict(expected.dtypes[added])  # Dask converts input strings itself
    result = lazy.compute().sort_index()
    assert list(result.columns) == list(expected.columns)
    assert result["id"].is_unique and len(result) == len(frame)
    pd.testing.assert_series_equal(result["pred_label"], expected["pred_label"])
    assert (result["ts_status"] == "ok").all()


def test_each_worker_process_serves_its_client_metrics(
    dask_client: Client, config: ClientConfig, test_split: pd.DataFrame
) -> None:
    port = free_ports(1)[0]
    frame = dd.from_pandas(test_split[["id", "text"]], npartitions=8)
    frame.ts.classify("text", config=config, metrics_port=port).compute()
    served = [w for w in dask_client.run(_serves_metrics, port).values() if w is not None]
    assert sorted(served) == [port, port + 1]
    for metrics_port in served:
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        requests = [line for line in body.splitlines() if line.startswith("torchserve_requests_total{")]
        assert any('status="200"' in line and not line.endswith(" 0.0") for line in requests), body


def _serves_metrics(port: int) -> int | None:
    """On a worker: the /metrics port of the runtime built for ``port``, if it has one."""
    from tsbatch._worker import _runtimes

    ports = [r.metrics_port for r in _runtimes.values() if r.settings.metrics_port == port]
    return ports[0] if ports else None


#: A model description: rows mode sizes the total in flight to 2 x batchSize x workers = 8.
MODEL_INFO = [
    {"modelName": "demo", "modelVersion": "1", "batchSize": 2, "workers": [{"status": "READY"}] * 2}
]


def _rows_step(server_state: dict[str, int]) -> object:
    """Answer predictions slowly, counting them in flight; the management API describes the model."""

    async def step(request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/models"):
            return web.json_response(MODEL_INFO)
        if not request.path.startswith("/predictions"):
            return web.json_response({"status": "Healthy"})
        server_state["now"] += 1
        server_state["most"] = max(server_state["most"], server_state["now"])
        try:
            await asyncio.sleep(0.02)
            return await prediction()(request)
        finally:
            server_state["now"] -= 1

    return step


@pytest.mark.parametrize(
    ("limit", "workers", "share"),
    [
        ({"concurrency": 6}, 1, 6),
        ({"concurrency": 6}, 3, 2),
        ({"max_concurrency": 8}, 1, 8),
        ({"max_concurrency": 8}, 4, 2),
    ],
)
def test_the_total_in_flight_limit_is_shared_among_workers(
    limit: dict[str, int], workers: int, share: int
) -> None:
    state = {"now": 0, "most": 0}
    frame = dd.from_pandas(pd.DataFrame({"text": [f"text {i}" for i in range(96)]}), npartitions=4)
    with ServerThread([_rows_step(state)]) as server:  # type: ignore[list-item]
        config = ClientConfig(url=server.url, management_url=server.url)
        options = {"mode": "rows", "workers": workers, **limit}
        result = frame.ts.classify("text", config=config, **options).compute(
            scheduler="threads", num_workers=4
        )
    assert (result["ts_status"] == "ok").all()
    # Four partitions run at once in this one process; together they stay within its share
    # of the total: pinned, they use all of it; adapting, they never go above it.
    if "concurrency" in limit:
        assert state["most"] == share
    else:
        assert state["most"] <= share


def test_the_share_divides_by_the_workers_of_the_current_client(dask_client: Client) -> None:
    assert cluster_workers() == 2


def test_without_a_distributed_client_one_process_holds_the_whole_share() -> None:
    assert cluster_workers() == 1


def test_a_job_counts_the_workers_of_the_local_cluster_it_starts() -> None:
    async def count() -> int:
        async with job_dask.dask_client(ClusterSettings(workers=2)) as client:
            return await worker_count(client)

    assert asyncio.run(count()) == 2


def test_errors_raise_fails_the_computation_with_the_partition_failures() -> None:
    frame = dd.from_pandas(pd.DataFrame({"text": ["a", "b", "c", "d"]}), npartitions=2)
    refused = torchserve_error(400, "BadRequestException", "not a text")
    with ServerThread([refused]) as server:
        config = ClientConfig(url=server.url, management_url=server.url)
        lazy = frame.ts.classify("text", config=config, mode="rows", errors="raise")
        with pytest.raises(tsbatch.ClassificationError, match="2 of 2 rows of a partition failed") as raised:
            lazy.compute(scheduler="threads")
    assert list(raised.value.failures["ts_status"]) == ["error", "error"]


def test_a_missing_column_is_named_before_anything_runs() -> None:
    frame = dd.from_pandas(pd.DataFrame({"body": ["a"]}), npartitions=1)
    with pytest.raises(tsbatch.InputValidationError, match=r"column 'text' not found.*'body'"):
        frame.ts.classify("text")


# -- the Parquet job ------------------------------------------------------------------


def test_the_dask_job_writes_what_the_pandas_job_writes(
    cluster: LocalCluster,
    config: ClientConfig,
    two_files: Path,
    test_split: pd.DataFrame,
    in_process_model: DemoTextHandler,
) -> None:
    common = {"input": str(two_files), "id_column": "id", "keep_columns": ("label",), "rows_per_part": 300}
    dask_out, pandas_out = two_files.parent / "dask", two_files.parent / "pandas"
    settings = JobSettings(output=dask_out, engine="dask", **common)  # type: ignore[arg-type]
    cluster_settings = ClusterSettings(scheduler=cluster.scheduler_address)
    summary = asyncio.run(Job(settings, config, engine=DaskEngine(cluster_settings)).run())
    asyncio.run(Job(JobSettings(output=pandas_out, **common), config).run())  # type: ignore[arg-type]

    assert (summary.rows, summary.ok, summary.failed) == (len(test_split), len(test_split), 0)
    assert summary.parts == len(plan_pieces(sorted(two_files.glob("*.parquet")), 300))
    table = read_output(dask_out)
    assert table["id"].is_unique and set(table["id"]) == set(test_split["id"])
    assert table.set_index("id")["pred_label"].to_dict() == expected_labels(test_split, in_process_model)
    baseline = read_output(pandas_out)
    assert dict(table.dtypes) == dict(baseline.dtypes)
    for side in ("_batches.parquet", "_failed.parquet", "_summary.json", "_manifest.json"):
        assert (dask_out / side).exists()
    batches = pd.read_parquet(dask_out / "_batches.parquet")
    assert batches["rows"].sum() == len(test_split)
    assert sorted(batches["part"].unique()) == list(range(summary.parts))
    assert not list(dask_out.glob(".*.tmp"))


def test_the_command_starts_its_own_cluster_and_shares_the_load_between_its_workers(
    torchserve: local.LocalServer, two_files: Path, test_split: pd.DataFrame
) -> None:
    env = server_env(torchserve)
    runs = {}
    for engine in ("pandas", "dask"):
        output = two_files.parent / engine
        command = [sys.executable, "-m", "tsbatch", "classify", str(two_files), str(output)]
        options = ["--id-column=id", "--mode=rows", f"--rows-per-part={4 * ROW_GROUP}", f"--engine={engine}"]
        if engine == "dask":
            options.append("--workers=2")
        done = subprocess.run([*command, *options], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        metadata = [json.loads(pq.read_schema(p).metadata[b"tsbatch"]) for p in output.glob("part-*.parquet")]
        runs[engine] = [m["in_flight"] for m in metadata]
        ids = read_output(output)["id"]
        assert ids.is_unique and set(ids) == set(test_split["id"])
    # rows mode starts the total from the model (2 x batch size x workers), and the limit then
    # adapts; each of 2 workers starts from half of it, with the first part it runs.
    first = json.loads(
        pq.read_schema(two_files.parent / "pandas" / "part-00000.parquet").metadata[b"tsbatch"]
    )
    total = first["in_flight"]
    assert total == 2 * SESSION_BATCH_SIZE and first["adaptive"]
    assert runs["dask"].count(total // 2) >= 2


def test_a_pandas_output_is_not_resumed_by_the_dask_engine(
    cluster: LocalCluster, config: ClientConfig, two_files: Path
) -> None:
    output = two_files.parent / "out"
    asyncio.run(Job(JobSettings(input=str(two_files), output=output, rows_per_part=500), config).run())
    settings = JobSettings(input=str(two_files), output=output, rows_per_part=500, engine="dask")
    job = Job(settings, config, engine=DaskEngine(ClusterSettings(scheduler=cluster.scheduler_address)))
    with pytest.raises(JobInputError, match=r"engine was 'pandas', now 'dask'\. .*\(--engine pandas\)"):
        job.prepare()


def test_a_worker_killed_mid_job_still_gives_every_id_once(
    torchserve: local.LocalServer, two_files: Path, test_split: pd.DataFrame
) -> None:
    # A cluster of its own: the nanny restarts the killed worker, but the shared one stays untouched.
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        ) as own,
        Client(own) as client,
    ):
        output = two_files.parent / "out"
        command = dask_job(two_files, output, own.scheduler_address, concurrency=4)
        job = subprocess.Popen(
            command, env=server_env(torchserve), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            pids = client.run(os.getpid)
            wait_for(lambda: parts_done(output) >= 2, "two parts recorded", timeout=120)
            victim = busy_worker(client)
            recorded_at_kill = parts_done(output)
            os.kill(pids[victim], signal.SIGKILL)
            _, stderr = job.communicate(timeout=300)
        finally:
            job.kill()
        assert job.returncode == 0, stderr
        total = len(plan_pieces(sorted(two_files.glob("*.parquet")), ROW_GROUP))
        assert recorded_at_kill < total, "the worker was killed after the job ended"
        assert parts_done(output) == total
    ids = read_output(output)["id"]
    assert ids.is_unique and set(ids) == set(test_split["id"])


def test_a_killed_dask_job_resumes_without_redoing_written_parts(
    cluster: LocalCluster, torchserve: local.LocalServer, two_files: Path, test_split: pd.DataFrame
) -> None:
    output = two_files.parent / "out"
    command = dask_job(two_files, output, cluster.scheduler_address, concurrency=2)
    env = server_env(torchserve)
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: parts_done(output) >= 3, "three parts recorded", timeout=120)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    recorded = json.loads((output / "_manifest.json").read_text())["parts"]
    total = len(plan_pieces(sorted(two_files.glob("*.parquet")), ROW_GROUP))
    assert 3 <= len(recorded) < total, "the job was killed after it ended"
    written = {name: (output / name).stat().st_mtime_ns for name in recorded}

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert {name: (output / name).stat().st_mtime_ns for name in recorded} == written
    ids = read_output(output)["id"]
    assert ids.is_unique and set(ids) == set(test_split["id"])
    summary = json.loads((output / "_summary.json").read_text())
    assert summary["rows_this_run"] == len(test_split) - sum(p["rows"] for p in recorded.values())


def test_sigterm_stops_a_dask_job_at_once_and_it_resumes(
    cluster: LocalCluster, torchserve: local.LocalServer, two_files: Path, test_split: pd.DataFrame
) -> None:
    output = two_files.parent / "out"
    command = dask_job(two_files, output, cluster.scheduler_address, concurrency=2)
    env = server_env(torchserve)
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: parts_done(output) >= 1, "a part recorded", timeout=120)
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 128 + signal.SIGTERM, stderr
    assert "resume with:" in stderr
    assert parts_done(output) < len(plan_pieces(sorted(two_files.glob("*.parquet")), ROW_GROUP))

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ids = read_output(output)["id"]
    assert ids.is_unique and set(ids) == set(test_split["id"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--workers=2"], "need --engine dask"),
        (["--engine=dask", "--workers=2", "--scheduler=tcp://127.0.0.1:1"], "not both"),
        (["--engine=dask", "--workers=0"], "workers must be at least 1"),
    ],
)
def test_cluster_options_that_do_not_fit_are_refused(
    extra: list[str], message: str, two_files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["classify", str(two_files), str(two_files.parent / "out"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_settings_sent_to_workers_carry_no_token() -> None:
    auth = Auth(inference_token="tok-inference-123", management_token="tok-management-456")
    settings = WorkerSettings(config=ClientConfig(auth=auth), options=ClassifyOptions(), workers=2)
    shipped = pickle.dumps(settings)
    assert b"tok-inference-123" not in shipped and b"tok-management-456" not in shipped
    assert pickle.loads(shipped).config.auth.inference_token is None


WORKERS_CLOSE = """
import pandas as pd
import dask.dataframe as dd
from aiohttp import web
from distributed import Client, LocalCluster

import tsbatch
import tsbatch.dask
from tests.scripted_server import ServerThread


async def answer(request):
    if request.path.startswith("/models"):
        return web.Response(status=404)
    return web.json_response({"label": "x", "score": 0.5})


if __name__ == "__main__":
    with ServerThread([answer]) as server:
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        )
        with cluster, Client(cluster):
            config = tsbatch.ClientConfig(url=server.url, management_url=server.url)
            frame = dd.from_pandas(pd.DataFrame({"text": [f"t{i}" for i in range(200)]}), npartitions=4)
            statuses = frame.ts.classify("text", config=config, mode="rows").compute()["ts_status"]
            print(statuses.value_counts().to_dict())
"""


def test_worker_processes_close_their_clients_and_loops(tmp_path: Path) -> None:
    script = tmp_path / "workers_close.py"
    script.write_text(WORKERS_CLOSE)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONWARNINGS": "always::ResourceWarning"}
    done = subprocess.run(
        [sys.executable, "-X", "dev", str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "{'ok': 200}" in done.stdout
    assert "unclosed" not in done.stderr.lower(), done.stderr
