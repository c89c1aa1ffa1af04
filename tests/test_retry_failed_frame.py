"""``result.ts.retry_failed()``: a result frame's failed rows sent again and put back in place."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from tests.scripted_server import ServerThread
from tsbatch import ClientConfig, InputValidationError, RetryPolicy, batch_metrics, run_report

TEXTS = [f"text {i}" if i % 3 else f"flaky {i}" for i in range(10)]


class Server:
    """Labels each text by its length; refuses texts starting with "flaky" (400) while broken."""

    def __init__(self) -> None:
        self.broken = True
        self.sent: list[str] = []
        self.lists = 0

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/ping":
            return web.json_response({"status": "Healthy"})
        if request.path.startswith("/models"):
            return web.Response(status=404)
        body = await request.read()
        if request.content_type == "application/json":
            self.lists += 1
            texts = json.loads(body)["instances"]
        else:
            texts = [body.decode()]
        self.sent += texts
        if self.broken and any(t.startswith("flaky") for t in texts):
            return web.json_response({"code": 400, "type": "BadRequest", "message": "not today"}, status=400)
        answers = [{"label": f"len{len(t)}", "score": 0.5} for t in texts]
        return web.json_response(answers if request.content_type == "application/json" else answers[0])


def classify(server_url: str, **options: Any) -> pd.DataFrame:
    frame = pd.DataFrame({"text": TEXTS, "other": range(10)}, index=[f"r{i}" for i in range(10)])
    return frame.ts.classify(
        "text", config=config(server_url), registry=CollectorRegistry(), progress=False, **options
    )


def config(url: str) -> ClientConfig:
    return ClientConfig(url=url, management_url=url, retry=RetryPolicy(attempts=1))


def test_failed_rows_are_sent_again_and_replaced_in_place() -> None:
    handler = Server()
    with ServerThread([handler]) as server:
        first = classify(server.url, mode="rows", batch_size=4)
        assert (first["ts_status"] == "error").sum() == 4
        handler.broken, handler.sent = False, []
        retried = first.ts.retry_failed(config=config(server.url), registry=CollectorRegistry())
    failed = first["ts_status"] == "error"
    assert sorted(handler.sent) == sorted(first.loc[failed, "text"])  # only the failed rows went again
    assert retried.index.equals(first.index) and list(retried.columns) == list(first.columns)
    assert (retried["ts_status"] == "ok").all()
    assert retried["pred_label"].tolist() == [f"len{len(t)}" for t in TEXTS]
    pd.testing.assert_frame_equal(retried[~failed], first[~failed])  # the good rows are untouched
    assert retried["other"].tolist() == list(range(10))
    old_ids = set(first["ts_batch_id"])
    assert retried.loc[failed, "ts_batch_id"].min() > max(old_ids)
    metrics = batch_metrics(retried)
    assert len(metrics) == len(batch_metrics(first)) + retried.loc[failed, "ts_batch_id"].nunique()
    assert metrics["batch_id"].is_unique
    assert retried.dtypes.equals(first.dtypes)


def test_options_can_change_for_the_retry_but_not_the_columns() -> None:
    handler = Server()
    with ServerThread([handler]) as server:
        first = classify(server.url, mode="rows")
        handler.broken = False
        retried = first.ts.retry_failed(config=config(server.url), mode="list", registry=CollectorRegistry())
        with pytest.raises(TypeError, match="retry_failed keeps prefix='pred_'"):
            first.ts.retry_failed(config=config(server.url), prefix="p_")
        with pytest.raises(TypeError, match="did you mean 'mode'"):
            first.ts.retry_failed(config=config(server.url), mdoe="list")
    assert handler.lists == 1
    assert (retried["ts_status"] == "ok").all()


def test_a_frame_without_failures_comes_back_as_it_was_and_nothing_is_sent() -> None:
    handler = Server()
    handler.broken = False
    with ServerThread([handler]) as server:
        first = classify(server.url)
        handler.sent = []
        again = first.ts.retry_failed(config=config(server.url))
    assert handler.sent == []
    pd.testing.assert_frame_equal(again, first)


def test_rows_that_fail_again_stay_error_rows_and_errors_raise_still_raises() -> None:
    handler = Server()
    with ServerThread([handler]) as server:
        first = classify(server.url, mode="rows")
        again = first.ts.retry_failed(config=config(server.url))
        assert (again["ts_status"] == "error").sum() == 4
        assert run_report(again).batches[-1].batch_id > run_report(first).batches[-1].batch_id
        with pytest.raises(Exception, match="4 of 10 rows still failed") as raised:
            first.ts.retry_failed(config=config(server.url), errors="raise")
    assert len(raised.value.failures) == 4  # type: ignore[attr-defined]


def test_a_frame_that_classify_did_not_return_is_refused_with_what_to_pass() -> None:
    with pytest.raises(InputValidationError, match=r"pass the frame df\.ts\.classify"):
        pd.DataFrame({"text": ["a"]}).ts.retry_failed()


def test_raw_outputs_take_the_type_of_the_retried_rows_when_no_row_had_one() -> None:
    handler = Server()
    frame = pd.DataFrame({"text": ["flaky a", "flaky bb"]})
    with ServerThread([handler]) as server:
        first = frame.ts.predict("text", config=config(server.url), registry=CollectorRegistry(), mode="rows")
        handler.broken = False
        retried = first.ts.retry_failed(config=config(server.url), registry=CollectorRegistry())
    assert first["pred_output"].isna().all() and first["pred_output"].dtype == object
    assert str(retried["pred_output"].dtype) == "string"
    assert [json.loads(v)["label"] for v in retried["pred_output"]] == ["len7", "len8"]
