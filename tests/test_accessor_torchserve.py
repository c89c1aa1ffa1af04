"""``df.ts.classify`` against the real TorchServe fixture."""

from __future__ import annotations

import asyncio

import pandas as pd
import pyarrow.parquet as pq
import pytest

pytest.importorskip("psutil")  # needs the serve extra
pytest.importorskip("torch")  # needs the serve extra
from prometheus_client import CollectorRegistry

import tsbatch
from tests.job_helpers import server_config
from tsbatch import ClassificationError, ClientConfig, InputValidationError, batch_metrics, run_report
from tsbatch._demo.archive import DEFAULT_DATA
from tsbatch._demo.handler import MAX_TEXT_CHARS, DemoTextHandler
from tsbatch._serve import local

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def config(torchserve: local.LocalServer) -> ClientConfig:
    return server_config(torchserve)


@pytest.fixture(scope="module")
def test_split() -> pd.DataFrame:
    """The test split, shuffled, with a non-default index."""
    frame = pq.read_table(DEFAULT_DATA, filters=[("split", "=", "test")]).to_pandas()
    frame = frame.sample(frac=1.0, random_state=7)
    frame.index = pd.Index([f"row-{i}" for i in range(len(frame))][::-1], name="key")
    return frame


@pytest.mark.parametrize("mode", ["rows", "list"])
def test_the_test_split_matches_the_model_in_process(
    mode: str, config: ClientConfig, test_split: pd.DataFrame, in_process_model: DemoTextHandler
) -> None:
    result = test_split.ts.classify(
        "text", mode=mode, config=config, registry=CollectorRegistry(), progress=False
    )
    expected = [p["label"] for p in in_process_model.predict(test_split["text"].tolist())]
    assert result.index.equals(test_split.index)
    assert result[test_split.columns].equals(test_split)
    assert (result["ts_status"] == "ok").all()
    assert result["pred_label"].tolist() == expected
    report = run_report(result)
    assert report.mode == mode
    metrics = batch_metrics(result)
    assert metrics["rows"].sum() == len(test_split)
    assert set(metrics["status"]) == {"ok"}
    assert (metrics["ended_at"] >= metrics["started_at"]).all()


def test_the_sync_form_works_inside_a_running_event_loop(config: ClientConfig) -> None:
    frame = pd.DataFrame({"text": ["a chess engine", "an email client"]})

    async def notebook_cell() -> pd.DataFrame:
        asyncio.get_running_loop()  # as in Jupyter: a loop runs in this thread
        return frame.ts.classify("text", config=config, registry=CollectorRegistry(), progress=False)

    result = asyncio.run(notebook_cell())
    assert result["ts_status"].tolist() == ["ok", "ok"]


def test_the_async_form_reuses_an_open_client(config: ClientConfig) -> None:
    frame = pd.DataFrame({"text": ["a chess engine", "a font"]})

    async def scenario() -> pd.DataFrame:
        async with tsbatch.TorchServeClient(config=config, registry=CollectorRegistry()) as client:
            first = await frame.ts.aclassify("text", client=client, progress=False)
            second = await frame["text"].ts.aclassify(client=client, progress=False)
            assert not client._transport.closed
        assert first["pred_label"].tolist() == second["pred_label"].tolist()
        return first

    assert asyncio.run(scenario())["ts_status"].tolist() == ["ok", "ok"]


def test_a_poison_row_in_a_list_batch_fails_alone(config: ClientConfig) -> None:
    texts = [f"a game number {i}" for i in range(16)]
    texts[5] = "x " * (MAX_TEXT_CHARS // 2 + 10)  # longer than the handler takes
    frame = pd.DataFrame({"text": texts})
    options = {"mode": "list", "config": config, "progress": False, "batch_size": 16}
    result = frame.ts.classify("text", registry=CollectorRegistry(), **options)
    assert (result["ts_status"] == "ok").all()  # by default the model's own limit truncates it
    assert result["ts_truncated"].tolist() == [False] * 5 + [True] + [False] * 10
    result = frame.ts.classify(
        "text", max_text_length=10 * MAX_TEXT_CHARS, registry=CollectorRegistry(), **options
    )
    assert result["ts_status"].tolist() == ["ok"] * 5 + ["error"] + ["ok"] * 10
    assert "more than 100000" in result.loc[5, "ts_error"]  # the handler's 400
    assert result.loc[5, "ts_error_kind"] == "bad_input"
    assert batch_metrics(result)["status"].tolist() == ["partial"]


def test_missing_values_are_skipped_and_errors_are_rows(config: ClientConfig) -> None:
    frame = pd.DataFrame({"text": ["a chess engine", None, float("nan"), "", ["not", "text"]], "n": range(5)})
    result = frame.ts.classify("text", config=config, registry=CollectorRegistry(), progress=False)
    assert result["ts_status"].tolist() == ["ok", "skipped", "skipped", "error", "error"]
    assert result["ts_error"].tolist()[3:] == [
        "text is empty",
        "value is list, which cannot be turned into text",
    ]
    assert result["pred_label"].isna().tolist() == [False, True, True, True, True]


def test_errors_raise_carries_the_failures_table(config: ClientConfig) -> None:
    frame = pd.DataFrame({"text": ["a chess engine", ""]})
    with pytest.raises(ClassificationError, match="1 of 2 rows failed; first: text is empty") as caught:
        frame.ts.classify("text", errors="raise", config=config, registry=CollectorRegistry(), progress=False)
    assert caught.value.failures.index.tolist() == [1]
    assert caught.value.result["ts_status"].tolist() == ["ok", "error"]


def test_a_missing_column_names_it_and_lists_the_others() -> None:
    frame = pd.DataFrame({"body": ["x"], "label": ["y"]})
    with pytest.raises(InputValidationError, match="column 'text' not found; the frame has: 'body', 'label'"):
        frame.ts.classify("text", progress=False)


def test_an_empty_frame_gives_the_full_schema(config: ClientConfig) -> None:
    frame = pd.DataFrame({"text": pd.Series([], dtype="string"), "id": pd.Series([], dtype="int64")})
    result = frame.ts.classify(
        "text", config=config, include_scores=True, registry=CollectorRegistry(), progress=False
    )
    assert len(result) == 0
    assert list(result.columns) == [
        "text",
        "id",
        "pred_label",
        "pred_score",
        "pred_scores",
        "ts_status",
        "ts_error",
        "ts_error_kind",
        "ts_batch_id",
        "ts_attempts",
        "ts_latency_ms",
        "ts_truncated",
    ]
    assert str(result["ts_batch_id"].dtype) == "Int64"
    assert batch_metrics(result).empty


def test_a_prefix_keeps_an_existing_label_column(config: ClientConfig) -> None:
    frame = pd.DataFrame({"text": ["a chess engine"], "pred_label": ["mine"]})
    with pytest.raises(InputValidationError, match=r"already has column\(s\) \['pred_label'\]"):
        frame.ts.classify("text", config=config, progress=False)
    result = frame.ts.classify(
        "text", prefix="model_", config=config, registry=CollectorRegistry(), progress=False
    )
    assert result["pred_label"].tolist() == ["mine"]
    assert result["model_label"].tolist() == ["games"]


def test_include_scores_adds_every_class(config: ClientConfig) -> None:
    frame = pd.DataFrame({"text": ["a chess engine"]})
    result = frame.ts.classify(
        "text", include_scores=True, config=config, registry=CollectorRegistry(), progress=False
    )
    assert len(result.loc[0, "pred_scores"]) == 10


def test_the_seed_api(config: ClientConfig) -> None:
    async def scenario() -> None:
        classifier = tsbatch.Classifier(config)
        try:
            one = await classifier.classify("How do I implement a REST API?")
            assert one["status"] == "ok" and one["label"] and one["attempts"] == 1
            many = await classifier.batch_classify(["a chess engine", "", "an email client"])
            assert [m["status"] for m in many] == ["ok", "error", "ok"]
            assert many[1]["error"] == "text is empty"
            assert many[0]["batch_id"] is not None
            await classifier.torchserve_client.health()
            assert classifier.torchserve_client.is_healthy()
        finally:
            await classifier.aclose()

    asyncio.run(scenario())


def test_tsbatch_classifier_is_built_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tsbatch, "_classifier", None)
    monkeypatch.setenv("TORCHSERVE_MODEL", "from-env")
    from tsbatch import classifier

    assert classifier.torchserve_client.config.model == "from-env"
