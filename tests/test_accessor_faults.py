"""``df.ts.classify`` against a scripted server: dedup, bisection, interrupts, progress."""

from __future__ import annotations

import _thread
import asyncio
import json
import signal
import threading
from pathlib import Path

import pandas as pd
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

import tsbatch
from tests.client_helpers import sample
from tests.scripted_server import ScriptedServer, ServerThread, torchserve_error
from tests.waiting import wait_for
from tsbatch import BreakerPolicy, ClientConfig, OutagePolicy, RetryPolicy, Timeouts, batch_metrics
from tsbatch._progress import progress_enabled

POISON = "poison"


async def answer_each(request: web.Request) -> web.StreamResponse:
    """A handler that labels each text by its length; fails a whole list holding a poison text."""
    if request.path.startswith("/models"):
        return web.Response(status=404)
    body = await request.read()
    if request.content_type == "application/json":
        texts = json.loads(body)["instances"]
        if POISON in texts:
            return await torchserve_error(503, "InternalServerException", "Prediction failed")(request)
        return web.json_response([{"label": f"len{len(t)}", "score": 0.5} for t in texts])
    return web.json_response({"label": f"len{len(body)}", "score": 0.5})


def config_for(url: str, **options: object) -> ClientConfig:
    return ClientConfig(url=url, management_url=url, retry=RetryPolicy(attempts=1), **options)  # type: ignore[arg-type]


def classify(frame: pd.DataFrame, steps: list, **options: object) -> tuple[pd.DataFrame, ScriptedServer]:
    async def scenario() -> tuple[pd.DataFrame, ScriptedServer]:
        async with ScriptedServer(steps) as server:
            config = options.pop("config", None) or config_for(server.url)
            result = await frame.ts.aclassify(
                "text",
                config=config,
                registry=options.pop("registry", CollectorRegistry()),
                progress=False,
                **options,
            )
        return result, server

    return asyncio.run(scenario())


def test_identical_texts_are_sent_once() -> None:
    frame = pd.DataFrame({"text": ["a", "bb", "a", "a", "bb", "ccc"]})
    result, server = classify(frame, [answer_each], mode="rows")
    predictions = [r for r in server.requests if r[1].startswith("/predictions")]
    assert len(predictions) == 3
    assert result["pred_label"].tolist() == ["len1", "len2", "len1", "len1", "len2", "len3"]


def test_the_run_report_survives_pandas_operations_and_parquet_without_being_copied(tmp_path: Path) -> None:
    frame = pd.DataFrame({"text": [f"text {i}" for i in range(40)]})
    result, _ = classify(frame, [answer_each], mode="list", batch_size=4)
    report = result.attrs["tsbatch"]
    derived = result[result["ts_status"] == "ok"].assign(upper=lambda f: f["pred_label"].str.upper())
    assert derived.attrs["tsbatch"] is report  # pandas' deep copy of attrs costs nothing
    assert len(tsbatch.run_report(derived).batches) == 10
    result.to_parquet(tmp_path / "result.parquet")
    assert tsbatch.run_report(pd.read_parquet(tmp_path / "result.parquet")) == tsbatch.run_report(result)


def test_bisection_isolates_a_poison_text_that_fails_the_whole_list() -> None:
    texts = [f"text {i}" for i in range(16)]
    texts[11] = POISON
    result, server = classify(pd.DataFrame({"text": texts}), [answer_each], mode="list", batch_size=16)
    assert result["ts_status"].tolist() == ["ok"] * 11 + ["error"] + ["ok"] * 4
    assert "Prediction failed" in result.loc[11, "ts_error"]
    predictions = [r for r in server.requests if r[1].startswith("/predictions")]
    assert len(predictions) <= 2 * 4 + 1  # one failing request per level of the bisection, plus the halves
    assert batch_metrics(result)["status"].tolist() == ["partial"]


def test_without_an_outage_budget_an_open_breaker_fails_the_remaining_rows_at_once() -> None:
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(50)]})
    registry = CollectorRegistry()
    dying = torchserve_error(500, "InternalServerException", "Worker died.")

    async def scenario() -> tuple[pd.DataFrame, int]:
        async with ScriptedServer([dying]) as server:
            config = config_for(
                server.url, breaker=BreakerPolicy(failure_threshold=3), outage=OutagePolicy(max_outage=0)
            )
            result = await frame.ts.aclassify(
                "text", config=config, registry=registry, mode="rows", concurrency=1, progress=False
            )
            return result, sum(path.startswith("/predictions") for _, path, _ in server.requests)

    result, predictions = asyncio.run(scenario())
    assert (result["ts_status"] == "error").all()
    # The health check and the model-info lookup fail too, but open no breaker: three rows open it.
    assert predictions == 3
    opened = result["ts_error"].str.startswith("circuit breaker open after 3 failures in a row; the last: ")
    assert opened.sum() == 47 and result["ts_error"][opened].str.endswith("Worker died.").all()
    assert (result["ts_error_kind"] == "server").all()
    assert result["ts_attempts"].tolist() == [1, 1, 1] + [0] * 47
    assert sample(registry, "torchserve_circuit_breaker_trips_total") == 1


def test_interrupting_the_sync_form_in_a_notebook_stops_cleanly() -> None:
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(20)]})
    stopped: dict[str, object] = {}

    with ServerThread([]) as server:
        held = server.hold()

        async def no_info_then_hold(request: web.Request) -> web.StreamResponse:
            return web.Response(status=404) if request.path.startswith("/models") else await held(request)

        server.steps.append(no_info_then_hold)

        def interrupt_when_busy() -> None:
            wait_for(lambda: len(server.requests) >= 3, "three requests held by the server", timeout=20)
            _thread.interrupt_main()  # what Ctrl-C or a kernel interrupt does

        async def notebook_cell() -> None:
            threading.Thread(target=interrupt_when_busy, daemon=True).start()
            # Held requests time out well before pytest would, should the interrupt never come.
            config = config_for(server.url, timeouts=Timeouts(request=20))
            try:
                result = frame.ts.classify(
                    "text", config=config, registry=CollectorRegistry(), progress=False
                )
                # Not expected: what came back, so that a failure says what happened.
                stopped["returned"] = result["ts_error"].fillna(result["ts_status"]).value_counts().to_dict()
                stopped["requests"] = len(server.requests)
            except KeyboardInterrupt:
                stopped["interrupted"] = True
            stopped["runner threads"] = [t.name for t in threading.enumerate() if t.name == "tsbatch-run"]

        # Like ipykernel, and unlike asyncio.run, the loop leaves SIGINT to Python's default handler.
        # That handler must be installed: a process started in the background inherits SIGINT
        # ignored, and then interrupt_main() does nothing.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(asyncio.wait_for(notebook_cell(), timeout=30))
        finally:
            loop.close()
            signal.signal(signal.SIGINT, previous)
    assert stopped == {"interrupted": True, "runner threads": []}


@pytest.mark.parametrize(
    ("requested", "variable", "expected"),
    [(True, "0", True), (False, "1", False), (None, "0", False), (None, "1", True), (None, None, False)],
)
def test_progress_switch(
    requested: bool | None, variable: str | None, expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if variable is None:
        monkeypatch.delenv("TSBATCH_PROGRESS", raising=False)
    else:
        monkeypatch.setenv("TSBATCH_PROGRESS", variable)
    assert progress_enabled(requested) is expected  # pytest's stderr is not a terminal


def test_the_progress_bar_reports_rows(capsys: pytest.CaptureFixture[str]) -> None:
    frame = pd.DataFrame({"text": ["a", "bb", None]})

    async def scenario() -> None:
        async with ScriptedServer([answer_each]) as server:
            await frame.ts.aclassify(
                "text", config=config_for(server.url), registry=CollectorRegistry(), progress=True
            )

    asyncio.run(scenario())
    err = capsys.readouterr().err
    assert "classify text" in err and "3/3" in err


@pytest.mark.parametrize("mode", ["rows", "list"])
def test_a_text_that_cannot_be_encoded_is_that_rows_error(mode: str) -> None:
    # pandas holds lone surrogates; UTF-8 and JSON cannot carry them.
    frame = pd.DataFrame({"text": ["fine", "broken \ud800 text", "also fine", b"\xff\xfe bytes"]})
    result, _ = classify(frame, [answer_each], mode=mode)
    assert result["ts_status"].tolist() == ["ok", "error", "ok", "error"]
    assert "cannot be encoded as UTF-8" in result.loc[1, "ts_error"]
    assert "not UTF-8" in result.loc[3, "ts_error"]


def test_a_value_whose_text_conversion_fails_is_that_rows_error() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text for you")

    frame = pd.DataFrame({"text": ["fine", 3.5, Unprintable()]})
    result, _ = classify(frame, [answer_each], mode="rows")
    assert result["ts_status"].tolist() == ["ok", "ok", "error"]
