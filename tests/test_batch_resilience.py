"""A batch run against scripted faults: it pauses, slows down and retries; it does not fail rows.

Faults a real TorchServe cannot be made to produce on cue (resets, chosen
statuses, impossible scores) are scripted here; ``test_outage_torchserve.py``
does the same against real TorchServe processes.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from tests.client_helpers import sample
from tests.scripted_server import ScriptedServer, torchserve_error
from tsbatch import (
    BreakerPolicy,
    ClassificationError,
    ClassifyOptions,
    ClientConfig,
    HealthPolicy,
    MockTransport,
    OutagePolicy,
    Reply,
    Request,
    RetryPolicy,
    Timeouts,
    TorchServeClient,
    TorchServeConnectionError,
    TorchServeInferenceError,
    batch_metrics,
    run_report,
    set_testing,
)
from tsbatch._engine import Progress, classify_values

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def label_of(text: str) -> dict[str, Any]:
    return {"label": f"len{len(text)}", "score": 0.5}


async def answer(request: web.Request) -> web.StreamResponse:
    """Like the demo handler: a label per text, for one text or for a list."""
    body = await request.read()
    if request.content_type == "application/json":
        return web.json_response([label_of(t) for t in json.loads(body)["instances"]])
    return web.json_response(label_of(body.decode()))


async def reset(request: web.Request) -> web.StreamResponse:
    """Drop the connection without a reply."""
    assert request.transport is not None
    request.transport.close()
    return web.Response()


OVERLOADED = torchserve_error(503, "ServiceUnavailableException", "Model demo has no capacity")
WORKER_DIED = torchserve_error(500, "InternalServerException", "Worker died.")


@dataclass
class Server:
    """Routes: ``/ping``, ``/models`` (the management API) and ``/predictions``, each replaceable."""

    predictions: Handler = answer
    ping: Handler | None = None
    models: Handler | None = None
    seen: Counter[str] = field(default_factory=Counter)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        route = request.path.split("/")[1]
        self.seen[route] += 1
        if route == "ping":
            if self.ping is not None:
                return await self.ping(request)
            return web.json_response({"status": "Healthy"})
        if route == "models":
            if self.models is not None:
                return await self.models(request)
            return web.Response(status=404)
        return await self.predictions(request)


def config_for(url: str, **options: Any) -> ClientConfig:
    """Quick settings: short backoff and polls; breaker and outage budget as the test says."""
    defaults: dict[str, Any] = {
        "url": url,
        "management_url": url,
        "retry": RetryPolicy(backoff_initial=0.01, backoff_max=0.05),
        "outage": OutagePolicy(poll_initial=0.05, poll_max=0.2),
        "timeouts": Timeouts(connect=2, request=10),
    }
    return ClientConfig(**{**defaults, **options})


def classify(
    frame: pd.DataFrame, server: Server, registry: CollectorRegistry | None = None, **options: Any
) -> pd.DataFrame:
    async def scenario() -> pd.DataFrame:
        async with ScriptedServer([server]) as scripted:
            config = options.pop("config", None) or config_for(scripted.url, **options.pop("client", {}))
            return await frame.ts.aclassify(
                "text", config=config, registry=registry or CollectorRegistry(), progress=False, **options
            )

    return asyncio.run(scenario())


def texts(count: int) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"text number {i}" for i in range(count)]})


# -- pausing --------------------------------------------------------------------------------


def test_an_open_breaker_pauses_the_run_and_a_ping_resumes_it_long_before_the_recovery_timeout() -> None:
    state = {"down": True, "down_requests": 0, "down_pings": 0}

    async def predictions(request: web.Request) -> web.StreamResponse:
        if state["down"]:
            state["down_requests"] += 1
            return await reset(request)
        return await answer(request)

    async def ping(request: web.Request) -> web.StreamResponse:
        if state["down"] and server.seen["ping"] > 1:  # up when the run starts
            state["down_pings"] += 1
            state["down"] = state["down_pings"] < 3  # back up once three pings went unanswered
            return await reset(request)
        return web.json_response({"status": "Healthy"})

    registry = CollectorRegistry()
    server = Server(predictions=predictions, ping=ping)
    result = classify(
        texts(400),
        server,
        registry,
        mode="rows",
        concurrency=4,
        # The seed's breaker: 5 failures, 60 s. The test's timeout is far below 60 s.
        client={"breaker": BreakerPolicy(failure_threshold=5, recovery_timeout=60)},
    )
    assert (result["ts_status"] == "ok").all()
    assert state["down_pings"] == 3
    # Before the breaker opened: the first failures of the 4 workers and their retries.
    # While it was open: nothing. After the ping: the probe, which closed it.
    assert state["down_requests"] <= 4 * 3
    assert sample(registry, "torchserve_circuit_breaker_trips_total") == 1
    assert sample(registry, "torchserve_paused") == 0
    assert sample(registry, "torchserve_paused_seconds_total") > 0
    assert result["ts_attempts"].sum() == server.seen["predictions"]


def test_while_paused_only_the_probe_goes_out_and_its_failure_keeps_the_run_waiting() -> None:
    state = {"phase": "down", "probes": 0, "sneaked": 0}

    async def predictions(request: web.Request) -> web.StreamResponse:
        if state["phase"] == "down":
            return await WORKER_DIED(request)
        if state["phase"] == "probe failed":
            state["sneaked"] += 1  # nothing may go out until a ping lets the next probe out
        state["probes"] += state["phase"] == "probing"
        if state["phase"] == "probing":
            state["phase"] = "probe failed"
            return await WORKER_DIED(request)
        return await answer(request)

    async def ping(request: web.Request) -> web.StreamResponse:
        if server.seen["ping"] == 1:  # the check before the run
            return web.json_response({"status": "Healthy"})
        state["phase"] = {"down": "probing", "probe failed": "up"}.get(state["phase"], state["phase"])
        return web.json_response({"status": "Healthy"})

    registry = CollectorRegistry()
    server = Server(predictions=predictions, ping=ping)
    result = classify(
        texts(200),
        server,
        registry,
        mode="rows",
        concurrency=8,
        client={"breaker": BreakerPolicy(failure_threshold=3, recovery_timeout=60)},
    )
    assert (result["ts_status"] == "ok").all()
    assert state["probes"] == 1 and state["sneaked"] == 0
    assert sample(registry, "torchserve_circuit_breaker_trips_total") == 2
    assert result["ts_attempts"].sum() == server.seen["predictions"]


def test_a_run_on_a_client_whose_breaker_is_still_open_starts_as_soon_as_the_server_answers() -> None:
    state = {"down": True}

    async def predictions(request: web.Request) -> web.StreamResponse:
        return await (WORKER_DIED(request) if state["down"] else answer(request))

    async def scenario() -> tuple[pd.DataFrame, float]:
        async with ScriptedServer([Server(predictions=predictions)]) as scripted:
            config = config_for(
                scripted.url, retry=RetryPolicy(attempts=1), breaker=BreakerPolicy(recovery_timeout=60)
            )
            async with TorchServeClient(config=config, registry=CollectorRegistry()) as client:
                for _ in range(5):  # an earlier cell in the notebook met the outage
                    with pytest.raises(TorchServeInferenceError):
                        await client.predict("x")
                assert client.breaker_state == "open"
                state["down"] = False  # the server is back two seconds later
                started = time.monotonic()
                result = await texts(100).ts.aclassify("text", client=client, progress=False)
                return result, time.monotonic() - started

    result, seconds = asyncio.run(scenario())
    assert (result["ts_status"] == "ok").all()
    assert seconds < 30  # not the rest of the breaker's 60 s: the first ping lets the probe out


def test_a_spent_outage_budget_ends_the_run_and_says_how_many_rows_were_not_sent() -> None:
    server = Server(predictions=WORKER_DIED, ping=WORKER_DIED)
    result = classify(
        texts(300),
        server,
        mode="rows",
        concurrency=2,
        client={
            "breaker": BreakerPolicy(failure_threshold=2, recovery_timeout=60),
            "outage": OutagePolicy(max_outage=0.5, poll_initial=0.05, poll_max=0.1),
        },
    )
    assert (result["ts_status"] == "error").all()
    errors = result["ts_error"]
    assert errors.str.startswith("server unavailable for").all()
    not_sent = result[result["ts_attempts"] == 0]
    assert len(not_sent) >= 290
    # One message for every such row, so that they group; the kind says why.
    assert result["ts_error"].nunique() == 1 and (result["ts_error_kind"] == "outage").all()
    assert result["ts_attempts"].sum() == server.seen["predictions"]
    assert run_report(result).outage is not None


def test_errors_raise_after_a_spent_outage_budget_raises_one_error_with_the_failures() -> None:
    async def ping(request: web.Request) -> web.StreamResponse:
        if server.seen["ping"] == 1:  # up when the run starts
            return web.json_response({"status": "Healthy"})
        return await reset(request)

    server = Server(predictions=reset, ping=ping)
    with pytest.raises(ClassificationError) as caught:
        classify(
            texts(50),
            server,
            errors="raise",
            client={"outage": OutagePolicy(max_outage=0.3, poll_initial=0.05, poll_max=0.1)},
        )
    assert "50 of 50 rows failed; server unavailable for" in str(caught.value)
    assert len(caught.value.failures) == 50


def test_a_management_api_out_of_reach_of_a_server_that_answers_is_no_outage() -> None:
    server = Server(models=reset)
    result = classify(texts(20), server)
    assert (result["ts_status"] == "ok").all()
    assert server.seen["models"] >= 1 and server.seen["ping"] >= 1


# -- overload: slow down, never fail ----------------------------------------------------------


def json_reply(body: Any, status: int = 200) -> Reply:
    return Reply(status, "", {}, json.dumps(body).encode())


def answer_in_process(request: Request) -> Reply:
    """:func:`answer` for a :class:`MockTransport`: no sockets, no HTTP."""
    path = urlsplit(request.url).path
    if path == "/ping":
        return json_reply({"status": "Healthy"})
    if path.startswith("/models"):
        return Reply(404)
    assert request.body is not None
    if request.headers.get("Content-Type") == "application/json":
        return json_reply([label_of(t) for t in json.loads(request.body)["instances"]])
    return json_reply(label_of(request.body.decode()))


def classify_in_process(
    frame: pd.DataFrame,
    transport: MockTransport,
    registry: CollectorRegistry,
    *,
    fast_backoff: bool = True,
    **options: Any,
) -> pd.DataFrame:
    async def scenario() -> pd.DataFrame:
        config = (
            config_for("http://tsbatch.test") if fast_backoff else ClientConfig(url="http://tsbatch.test")
        )
        async with TorchServeClient(config=config, registry=registry, transport=transport) as client:
            return await frame.ts.aclassify("text", client=client, progress=False, **options)

    return asyncio.run(scenario())


@dataclass
class Queue:
    """A server that holds ``capacity`` requests at a time and answers 503 "queue full" beyond;
    its management API describes the model as ``described`` (a :class:`MockTransport` handler)."""

    capacity: int
    service_s: float
    described: dict[str, Any] | None = None
    in_flight: int = 0
    replies: list[int] = field(default_factory=list)

    async def __call__(self, request: Request) -> Reply:
        if "/models" in request.url:
            return json_reply([self.described]) if self.described else Reply(404)
        if "/predictions" not in request.url:
            return answer_in_process(request)
        if self.in_flight >= self.capacity:
            self.replies.append(503)
            return json_reply({"code": 503, "type": "ServiceUnavailableException", "message": "full"}, 503)
        self.in_flight += 1
        try:
            await asyncio.sleep(self.service_s)
        finally:
            self.in_flight -= 1
        self.replies.append(200)
        return answer_in_process(request)


def description(batch_size: int, workers: int, queue: int) -> dict[str, Any]:
    """A model described by the management API with this batching and queue."""
    return {
        "modelName": "demo",
        "modelVersion": "1.0",
        "batchSize": batch_size,
        "maxBatchDelay": 5,
        "workers": [{"status": "READY"}] * workers,
        "jobQueueStatus": {"remainingCapacity": queue, "pendingRequests": 0},
    }


def describe(batch_size: int, workers: int, queue: int) -> Handler:
    """The management API describing a model with this batching and queue."""

    async def model(request: web.Request) -> web.StreamResponse:
        return web.json_response([description(batch_size, workers, queue)])

    return model


def test_a_run_asking_far_more_than_the_queue_holds_slows_down_without_failing_a_row() -> None:
    # The model's info overstates the server, as a second job on it would: 128 in flight to start.
    queue = Queue(capacity=8, service_s=0.004, described=description(batch_size=64, workers=2, queue=1000))
    registry = CollectorRegistry()
    result = classify_in_process(
        texts(3000), MockTransport(queue), registry, mode="rows", max_concurrency=128
    )
    assert (result["ts_status"] == "ok").all()
    assert sample(registry, "torchserve_circuit_breaker_trips_total") == 0
    assert run_report(result).concurrency == 128 and run_report(result).adaptive
    # Past the first 1,000 replies (about what it takes to come down from 128 by quarters),
    # fewer than 1 in 20 is a 503.
    later = queue.replies[1000:]
    assert later.count(503) / len(later) < 0.05, (later.count(503), len(later))
    assert sample(registry, "torchserve_concurrency_limit") < 128


def test_a_pinned_concurrency_does_not_adapt() -> None:
    queue = Queue(capacity=64, service_s=0.002)
    registry = CollectorRegistry()
    result = classify_in_process(texts(500), MockTransport(queue), registry, mode="rows", concurrency=6)
    assert (result["ts_status"] == "ok").all()
    assert not run_report(result).adaptive
    assert set(batch_metrics(result)["concurrency_limit"]) == {6}
    assert sample(registry, "torchserve_concurrency_limit") == 6


def flaky(seed: int, sent: Counter[str]) -> MockTransport:
    """A fifth of the predictions answered 503 "queue full", a tenth of the connections reset."""
    chance = random.Random(seed)

    def handle(request: Request) -> Reply:
        if "/predictions" in request.url:
            sent["predictions"] += 1
            draw = chance.random()
            if draw < 0.2:
                return json_reply(
                    {"code": 503, "type": "ServiceUnavailableException", "message": "full"}, 503
                )
            if draw < 0.3:
                raise TorchServeConnectionError(f"POST {request.url}: connection reset", kind="reset")
        return answer_in_process(request)

    return MockTransport(handle)


@pytest.fixture
def no_backoff() -> Iterator[None]:
    set_testing(True)
    try:
        yield
    finally:
        set_testing(False)


@pytest.mark.usefixtures("no_backoff")
def test_a_fifth_of_replies_queue_full_and_a_tenth_of_connections_reset_still_give_every_row() -> None:
    sent: Counter[str] = Counter()
    registry = CollectorRegistry()
    frame = texts(3000)
    result = classify_in_process(frame, flaky(7, sent), registry, fast_backoff=False, mode="rows")
    assert (result["ts_status"] == "ok").all()
    assert result["pred_label"].tolist() == [label_of(t)["label"] for t in frame["text"]]
    assert result["ts_attempts"].sum() == sent["predictions"]
    retried = sum(
        sample(registry, "torchserve_retry_total", method="predict", reason=reason)
        for reason in ("503", "reset")
    )
    assert batch_metrics(result)["retries"].sum() == retried


@pytest.mark.usefixtures("no_backoff")
def test_list_mode_with_faults_gives_every_row_too() -> None:
    sent: Counter[str] = Counter()
    result = classify_in_process(
        texts(2000), flaky(11, sent), CollectorRegistry(), mode="list", batch_size=16
    )
    assert (result["ts_status"] == "ok").all()
    assert batch_metrics(result)["attempts"].sum() == sent["predictions"]


# -- truthful accounting --------------------------------------------------------------------


def test_requests_sent_for_failed_rows_are_counted_the_same_everywhere() -> None:
    per_text: Counter[str] = Counter()

    async def predictions(request: web.Request) -> web.StreamResponse:
        text = (await request.read()).decode()
        per_text[text] += 1
        if text == "dies":
            return await WORKER_DIED(request)  # retried, until the row's attempts are spent
        if text == "too big":
            return await torchserve_error(507, "InternalServerException", "out of memory")(request)
        return await answer(request)

    registry = CollectorRegistry()
    frame = pd.DataFrame({"text": ["fine", "dies", "too big", "also fine"]})
    result = classify(
        frame,
        Server(predictions=predictions),
        registry,
        mode="rows",
        concurrency=1,
        client={"breaker": BreakerPolicy(failure_threshold=100)},
    )
    by_text = result.set_index("text")
    assert by_text.loc["dies", "ts_status"] == "error"
    # Calls of 3 attempts until at least TSBATCH_ROW_ATTEMPTS (10) requests failed: 12.
    assert by_text.loc["dies", "ts_attempts"] == per_text["dies"] == 12
    assert by_text.loc["dies", "ts_error"].endswith("(gave up: the row's requests failed 10 times)")
    assert by_text.loc["too big", "ts_attempts"] == per_text["too big"] == 1
    assert by_text.loc["fine", "ts_attempts"] == 1
    sent = sum(per_text.values())
    metrics = batch_metrics(result)
    assert metrics["attempts"].sum() == sent
    assert sample(registry, "torchserve_requests_total", method="predict", status="500") == per_text["dies"]
    assert metrics["retries"].sum() == sample(
        registry, "torchserve_retry_total", method="predict", reason="worker_died"
    )


def test_the_request_timeout_starts_when_the_request_is_sent_not_while_it_waits_for_a_connection() -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.3)
        return await answer(request)

    # 12 in flight on a pool of 2 connections: the last waits about 1.8 s for one.
    result = classify(
        texts(12),
        Server(predictions=slow),
        mode="rows",
        concurrency=12,
        client={"pool_size": 2, "timeouts": Timeouts(connect=2, request=1.0)},
    )
    assert (result["ts_status"] == "ok").all()
    assert (result["ts_attempts"] == 1).all()


# -- never a silent wrong answer, never a crashed run -----------------------------------------


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ({"label": "a", "score": math.nan}, "score is not a probability"),
        ({"label": "a", "score": 1.5}, "score is not a probability"),
        ({"label": "a", "score": -0.1}, "score is not a probability"),
        ({"label": "a", "score": 0.5, "scores": {"a": 0.5, "b": math.inf}}, "scores are not probabilities"),
        ({"a": 0.7, "b": 2.0}, "class scores are not probabilities"),
        ({"label": "a", "score": True}, "no numeric score"),
    ],
)
def test_an_impossible_prediction_is_an_error_row_with_a_snippet(reply: dict[str, Any], reason: str) -> None:
    async def predictions(request: web.Request) -> web.StreamResponse:
        text = (await request.read()).decode()
        body = reply if text == "odd" else label_of(text)
        return web.Response(body=json.dumps(body).encode())  # json.dumps writes NaN and Infinity

    frame = pd.DataFrame({"text": ["fine", "odd", "also fine"]})
    result = classify(frame, Server(predictions=predictions), mode="rows")
    assert result["ts_status"].tolist() == ["ok", "error", "ok"]
    error = result.loc[1, "ts_error"]
    assert reason in error and ('"label"' in error or '"a": 0.7' in error)  # the reason and a snippet


def test_in_list_mode_an_impossible_prediction_is_isolated_to_its_row() -> None:
    async def predictions(request: web.Request) -> web.StreamResponse:
        items = json.loads(await request.read())["instances"]
        body = [{"label": "x", "score": math.nan} if t == "odd" else label_of(t) for t in items]
        return web.Response(body=json.dumps(body).encode())

    frame = pd.DataFrame({"text": [f"t{i}" for i in range(15)] + ["odd"]})
    result = classify(frame, Server(predictions=predictions), mode="list", batch_size=16)
    assert result["ts_status"].tolist() == ["ok"] * 15 + ["error"]
    assert "score is not a probability" in result.loc[15, "ts_error"]


def test_a_label_the_model_does_not_declare_is_an_error_row() -> None:
    async def models(request: web.Request) -> web.StreamResponse:
        entry = await describe(batch_size=8, workers=1, queue=100)(request)
        described = json.loads(entry.body)  # type: ignore[attr-defined]
        described[0]["customizedMetadata"] = json.dumps({"classes": ["len4", "len9"]})
        return web.json_response(described)

    frame = pd.DataFrame({"text": ["four", "seven77", "ninenine9"]})
    result = classify(frame, Server(models=models), mode="rows")
    assert result["ts_status"].tolist() == ["ok", "error", "ok"]
    assert "label 'len7' is not one of the model's classes" in result.loc[1, "ts_error"]


def test_a_413_in_list_mode_splits_the_batch_like_a_400() -> None:
    async def predictions(request: web.Request) -> web.StreamResponse:
        items = json.loads(await request.read())["instances"]
        if len(items) > 4:
            return await torchserve_error(413, "RequestTooLarge", "request too large")(request)
        return web.json_response([label_of(t) for t in items])

    result = classify(texts(32), Server(predictions=predictions), mode="list", batch_size=16)
    assert (result["ts_status"] == "ok").all()


def test_a_malformed_retry_after_header_is_ignored_not_fatal() -> None:
    calls = Counter[str]()

    async def predictions(request: web.Request) -> web.StreamResponse:
        calls["all"] += 1
        if calls["all"] % 3 == 1:
            return await torchserve_error(503, "ServiceUnavailableException", "busy", **{"Retry-After": "²"})(
                request
            )
        return await answer(request)

    result = classify(texts(30), Server(predictions=predictions), mode="rows", concurrency=2)
    assert (result["ts_status"] == "ok").all()


# -- what a run shows -----------------------------------------------------------------------


def test_the_progress_shows_the_pause_and_the_limit() -> None:
    state = {"pings": 0}

    async def predictions(request: web.Request) -> web.StreamResponse:
        return await (reset(request) if 1 <= state["pings"] < 7 else answer(request))

    async def ping(request: web.Request) -> web.StreamResponse:
        state["pings"] += 1
        if 1 < state["pings"] < 7:  # up when the run starts, then down
            return await reset(request)
        return web.json_response({"status": "Healthy"})

    seen: list[tuple[int, float | None]] = []

    def on_update(progress: Progress, rows: int) -> None:
        seen.append((progress.limit, progress.paused_s))

    async def scenario() -> None:
        async with ScriptedServer([Server(predictions=predictions, ping=ping)]) as scripted:
            config = config_for(scripted.url, outage=OutagePolicy(poll_initial=0.5, poll_max=0.5))
            async with TorchServeClient(config=config, registry=CollectorRegistry()) as client:
                progress = Progress(on_update=on_update)
                options = ClassifyOptions(mode="rows")
                result = await classify_values(client, [f"t{i}" for i in range(50)], options, progress)
        assert all(row.status == "ok" for row in result.rows)

    asyncio.run(scenario())
    # Seven pings half a second apart: the pause lasts about 3 s, the display ticks every second.
    assert any(paused is not None and paused > 0 for _, paused in seen)
    assert all(limit >= 1 for limit, _ in seen)


def test_the_management_api_answers_while_the_breaker_is_open() -> None:
    async def scenario() -> None:
        server = Server(predictions=WORKER_DIED, models=describe(batch_size=8, workers=1, queue=100))
        async with ScriptedServer([server]) as scripted:
            config = config_for(
                scripted.url, retry=RetryPolicy(attempts=1), breaker=BreakerPolicy(failure_threshold=1)
            )
            async with TorchServeClient(config=config, registry=CollectorRegistry()) as client:
                with pytest.raises(Exception, match="Worker died"):
                    await client.predict("x")
                assert client.breaker_state == "open"
                info = await client.get_model_info()
                assert info.batch_size == 8

    asyncio.run(scenario())


def test_a_slow_ping_does_not_mark_the_connection_down_while_predictions_work() -> None:
    async def hanging(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.json_response({"status": "Healthy"})

    async def scenario() -> None:
        registry = CollectorRegistry()
        async with ScriptedServer([Server(ping=hanging)]) as scripted:
            config = config_for(scripted.url, health=HealthPolicy(interval=30, timeout=0.2))
            async with TorchServeClient(config=config, registry=registry) as client:
                await client.predict("x")
                health = await client.health()
                assert not health.healthy
                assert sample(registry, "torchserve_connection_status") == 1
                assert client.breaker_state == "closed"

    asyncio.run(scenario())
