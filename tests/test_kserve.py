"""The v1 and v2 protocols against a real KServe ModelServer serving the demo model.

The same rows give the same labels as through TorchServe; the Parquet job
runs over v2; overload, failures and an outage slow a run down and cost no
row, over both protocols.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

pytest.importorskip("psutil")  # needs the serve extra
pytest.importorskip("torch")  # needs the serve extra

from prometheus_client import CollectorRegistry

from tests.client_helpers import sample
from tests.conftest import free_ports
from tests.job_helpers import server_config
from tests.kserve_helpers import kserve_server
from tests.proxy import Proxy
from tests.waiting import wait_for
from tsbatch import (
    BreakerPolicy,
    ClientConfig,
    OutagePolicy,
    RetryPolicy,
    TorchServeInferenceError,
    batch_metrics,
)
from tsbatch._demo.archive import DEFAULT_DATA
from tsbatch._demo.handler import DemoTextHandler
from tsbatch._serve import local
from tsbatch._serve.kserve import KServeServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def test_split() -> pd.DataFrame:
    return pq.read_table(DEFAULT_DATA, filters=[("split", "=", "test")]).to_pandas()


@pytest.fixture(scope="module")
def torchserve_labels(torchserve: local.LocalServer, test_split: pd.DataFrame) -> list[str]:
    result = test_split.ts.classify("text", config=server_config(torchserve), progress=False)
    assert (result["ts_status"] == "ok").all()
    return list(result["pred_label"])


@pytest.mark.parametrize(
    ("protocol", "mode"), [("v2", "list"), ("v2", "rows"), ("v1", "list"), ("v1", "rows")]
)
def test_kserve_gives_the_labels_torchserve_gives(
    kserve: KServeServer, test_split: pd.DataFrame, torchserve_labels: list[str], protocol: str, mode: str
) -> None:
    config = ClientConfig(url=kserve.url, protocol=protocol)
    result = test_split.ts.classify(
        "text", config=config, mode=mode, progress=False, registry=CollectorRegistry()
    )
    assert (result["ts_status"] == "ok").all(), result["ts_error"].dropna().head().tolist()
    assert list(result["pred_label"]) == torchserve_labels


def test_a_probability_tensor_takes_the_class_names_given(
    kserve: KServeServer,
    test_split: pd.DataFrame,
    torchserve_labels: list[str],
    in_process_model: DemoTextHandler,
) -> None:
    config = ClientConfig(url=kserve.url, protocol="v2", model="demo-probabilities")
    result = test_split.ts.classify(
        "text", config=config, labels=in_process_model.classes, include_scores=True, progress=False
    )
    assert list(result["pred_label"]) == torchserve_labels
    assert set(result["pred_scores"].iloc[0]) == set(in_process_model.classes)


def test_the_parquet_job_runs_over_v2(
    kserve: KServeServer, tmp_path: Path, test_split: pd.DataFrame, torchserve_labels: list[str]
) -> None:
    source = tmp_path / "test.parquet"
    test_split[["id", "text"]].to_parquet(source, index=False)
    output = tmp_path / "out"
    command = [sys.executable, "-m", "tsbatch", "classify", str(source), str(output), "--id-column=id"]
    done = subprocess.run(
        [*command, "--protocol=v2", f"--url={kserve.url}", "--rows-per-part=500", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    table = ds.dataset(output, format="parquet").to_table().to_pandas().set_index("id")
    assert table.loc[list(test_split["id"]), "pred_label"].tolist() == torchserve_labels


def test_a_wrong_model_name_is_one_error_before_any_row(
    kserve: KServeServer, test_split: pd.DataFrame
) -> None:
    config = ClientConfig(url=kserve.url, protocol="v2", model="dmeo")
    with pytest.raises(TorchServeInferenceError, match="dmeo"):
        test_split.ts.classify("text", config=config, progress=False)


# -- faults, through a proxy in front of the real server ----------------------------------------


def quick(url: str, protocol: str, **overrides: object) -> ClientConfig:
    settings: dict[str, object] = {
        "url": url,
        "protocol": protocol,
        "retry": RetryPolicy(backoff_initial=0.01, backoff_max=0.1),
        "outage": OutagePolicy(poll_initial=0.1, poll_max=0.5),
        **overrides,
    }
    return ClientConfig(**settings)  # type: ignore[arg-type]


def infer_path(protocol: str) -> str:
    return "/v2/models/demo/infer" if protocol == "v2" else "/v1/models/demo:predict"


@pytest.mark.parametrize("protocol", ["v2", "v1"])
@pytest.mark.parametrize(
    ("status", "body", "headers"),
    [
        (503, {"error": "Model with name demo is not ready."}, {}),
        (429, {"error": "too many requests"}, {"Retry-After": "0"}),
    ],
    ids=["503", "429"],
)
def test_a_burst_of_503s_or_429s_costs_no_row(
    kserve: KServeServer,
    test_split: pd.DataFrame,
    protocol: str,
    status: int,
    body: dict[str, str],
    headers: dict[str, str],
) -> None:
    failed = {"count": 0}
    lock = threading.Lock()

    def fault(path: str) -> tuple[int, object, dict[str, str]] | None:
        with lock:
            if path == infer_path(protocol) and failed["count"] < 20:
                failed["count"] += 1
                return status, body, headers
        return None

    registry = CollectorRegistry()
    with Proxy(kserve.url, fault=fault) as proxy:
        config = quick(proxy.url, protocol, breaker=BreakerPolicy(failure_threshold=100))
        result = test_split.ts.classify(
            "text", config=config, batch_size=32, progress=False, registry=registry
        )
        sent = proxy.count(infer_path(protocol))
    assert (result["ts_status"] == "ok").all()
    assert failed["count"] == 20
    # Every request is accounted for: the 20 refused ones were sent again.
    batches = batch_metrics(result)
    assert batches["attempts"].sum() == sent == len(batches) + 20
    assert sample(registry, "torchserve_retry_total", method="predict_batch", reason=str(status)) >= 10


@pytest.mark.parametrize("protocol", ["v2", "v1"])
def test_model_failures_open_the_breaker_the_run_pauses_and_then_finishes(
    kserve: KServeServer, test_split: pd.DataFrame, protocol: str
) -> None:
    state = {"failing": 30}
    lock = threading.Lock()

    def fault(path: str) -> tuple[int, object, dict[str, str]] | None:
        with lock:
            if path == infer_path(protocol) and state["failing"] > 0:
                state["failing"] -= 1
                return 502, {"error": "upstream gone"}, {}
        return None

    registry = CollectorRegistry()
    with Proxy(kserve.url, fault=fault) as proxy:
        config = quick(proxy.url, protocol, breaker=BreakerPolicy(failure_threshold=3, recovery_timeout=60))
        result = test_split.ts.classify(
            "text", config=config, batch_size=64, progress=False, registry=registry
        )
    assert (result["ts_status"] == "ok").all()
    assert sample(registry, "torchserve_circuit_breaker_trips_total") >= 1
    assert sample(registry, "torchserve_paused_seconds_total") > 0


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["v2", "v1"])
def test_an_outage_mid_run_costs_no_row(
    demo_archive: Path, tmp_path: Path, test_split: pd.DataFrame, torchserve_labels: list[str], protocol: str
) -> None:
    (port,) = free_ports(1)
    server = kserve_server(demo_archive, port, tmp_path / "kserve.log").start()
    down = threading.Event()

    def stop_at_the_third_request(path: str) -> tuple[int, object, dict[str, str]] | None:
        # Runs in the proxy's thread: the third request waits while the server stops, then meets it down.
        if path == infer_path(protocol) and not down.is_set() and proxy.count(path) >= 2:
            server.stop()
            down.set()
        return None

    try:
        with Proxy(server.url, fault=stop_at_the_third_request) as proxy:

            def restart_after_failures() -> None:
                try:
                    wait_for(down.is_set, "the outage")
                    # Requests and, once the breaker opens, health checks meet the server down.
                    wait_for(lambda: [s.status for s in proxy.seen].count(0) >= 3, "requests meeting it")
                finally:
                    server.start()

            restarter = threading.Thread(target=restart_after_failures)
            restarter.start()
            registry = CollectorRegistry()
            config = quick(proxy.url, protocol, breaker=BreakerPolicy(failure_threshold=3))
            result = test_split.ts.classify(
                "text", config=config, batch_size=16, concurrency=2, progress=False, registry=registry
            )
            restarter.join(timeout=120)
    finally:
        server.stop()
    assert down.is_set()
    assert (result["ts_status"] == "ok").all()
    assert list(result["pred_label"]) == torchserve_labels
    assert sample(registry, "torchserve_paused_seconds_total") > 0


# -- raw outputs: df.ts.predict and tsbatch predict -------------------------------------------


def expected_embeddings(model: DemoTextHandler, texts: list[str]) -> list[list[float]]:
    import torch

    from tsbatch._demo.handler import pack

    assert model.model is not None
    with torch.inference_mode():
        return model.model.embedding(*pack(texts)).tolist()  # type: ignore[no-any-return]


def test_predict_writes_each_embedding_as_a_list_of_floats(
    kserve: KServeServer, test_split: pd.DataFrame, in_process_model: DemoTextHandler
) -> None:
    frame = test_split.head(200)
    config = ClientConfig(url=kserve.url, protocol="v2", model="demo-embedding")
    result = frame.ts.predict("text", config=config, progress=False)
    assert (result["ts_status"] == "ok").all()
    assert "pred_label" not in result.columns
    expected = expected_embeddings(in_process_model, list(frame["text"]))
    for got, want in zip(result["pred_output"], expected, strict=True):
        assert len(got) == 16 and all(isinstance(x, float) for x in got)
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_tsbatch_predict_writes_a_list_column_and_resumes_after_a_stop(
    kserve: KServeServer, tmp_path: Path, test_split: pd.DataFrame
) -> None:
    import signal

    from tests.job_helpers import parts_done

    source = tmp_path / "test.parquet"
    test_split[["id", "text"]].to_parquet(source, index=False)
    output = tmp_path / "out"
    command = [
        *(sys.executable, "-m", "tsbatch", "predict", str(source), str(output), "--id-column=id"),
        *("--protocol=v2", f"--url={kserve.url}", "--model=demo-embedding", "--no-progress"),
        *("--rows-per-part=100", "--batch-size=4", "--concurrency=1"),
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as first:
        wait_for(lambda: parts_done(output) >= 2, "two parts recorded", timeout=120)
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    assert parts_done(output) < 16
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    table = ds.dataset(output, format="parquet").to_table()
    output_type = table.schema.field("pred_output").type
    assert pa.types.is_list(output_type) and pa.types.is_float64(output_type.value_type)
    ids = table.column("id").to_pylist()
    assert sorted(ids) == sorted(test_split["id"]) and len(set(ids)) == len(ids)
    assert all(len(v) == 16 for v in table.column("pred_output").to_pylist())


@pytest.mark.parametrize("protocol", ["v2", "v1"])
def test_several_columns_go_to_a_model_with_several_inputs(
    kserve: KServeServer, test_split: pd.DataFrame, protocol: str
) -> None:
    frame = test_split.head(300).assign(
        title=lambda f: f["text"].str.split(" ", n=1).str[0],
        body=lambda f: f["text"].str.split(" ", n=1).str[1],
    )
    frame = frame[frame["body"].notna() & frame["body"].str.strip().ne("")]
    joined = frame["title"] + " " + frame["body"]
    expected = joined.ts.classify(config=ClientConfig(url=kserve.url, protocol=protocol), progress=False)
    config = ClientConfig(url=kserve.url, protocol=protocol, model="demo-pair")
    result = frame.ts.classify(inputs={"title": "title", "body": "body"}, config=config, progress=False)
    assert (result["ts_status"] == "ok").all(), result["ts_error"].dropna().head().tolist()
    assert list(result["pred_label"]) == list(expected["pred_label"])
