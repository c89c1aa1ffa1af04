"""The client against a scripted server: retries, timeouts, bad replies, the breaker, the budget."""

from __future__ import annotations

import asyncio
import email.utils
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.client_helpers import FakeTime, make_client, sample
from tests.scripted_server import ScriptedServer, prediction, reply, reset_mid_body, torchserve_error
from tests.waiting import until
from tsbatch import (
    CircuitOpenError,
    TorchServeConnectionError,
    TorchServeError,
    TorchServeInferenceError,
)

OVERLOADED = torchserve_error(503, "ServiceUnavailableException", 'Model "demo" has no worker to serve')
HANDLER_FAILED = torchserve_error(503, "InternalServerException", "Prediction failed")
WORKER_DIED = torchserve_error(500, "InternalServerException", "Worker died.")


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(scenario())


def test_503_overload_is_retried_then_succeeds(registry: CollectorRegistry, fake_time: FakeTime) -> None:
    async def scenario() -> None:
        async with ScriptedServer([OVERLOADED, prediction("games")]) as server:
            async with make_client(server.url, registry, fake_time) as client:
                result = await client.predict("a game")
        assert result.prediction.label == "games"
        assert result.call.attempts == 2
        assert len(server.requests) == 2

    run(scenario)
    assert sample(registry, "torchserve_retry_total", method="predict", reason="503") == 1
    assert sample(registry, "torchserve_requests_total", method="predict", status="503") == 1
    assert sample(registry, "torchserve_requests_total", method="predict", status="200") == 1
    assert sample(registry, "torchserve_request_duration_seconds_count", method="predict") == 2
    assert sample(registry, "torchserve_connection_status") == 1
    assert len(fake_time.sleeps) == 1


def test_429_waits_as_long_as_retry_after_says(registry: CollectorRegistry, fake_time: FakeTime) -> None:
    async def scenario() -> None:
        steps = [reply(429, {"message": "slow down"}, {"Retry-After": "7"}), prediction()]
        async with ScriptedServer(steps) as server, make_client(server.url, registry, fake_time) as client:
            await client.predict("a game")

    run(scenario)
    assert fake_time.sleeps == [7.0]
    assert sample(registry, "torchserve_retry_total", method="predict", reason="429") == 1


def test_retry_after_as_an_http_date_is_capped(registry: CollectorRegistry, fake_time: FakeTime) -> None:
    far = email.utils.formatdate(usegmt=True, timeval=__import__("time").time() + 3600)

    async def scenario() -> None:
        steps = [reply(503, {"type": "ServiceUnavailableException"}, {"Retry-After": far}), prediction()]
        async with ScriptedServer(steps) as server, make_client(server.url, registry, fake_time) as client:
            await client.predict("a game")

    run(scenario)
    assert fake_time.sleeps == [30.0]


def test_connection_reset_mid_reply_is_retried(registry: CollectorRegistry, fake_time: FakeTime) -> None:
    async def scenario() -> None:
        async with ScriptedServer([reset_mid_body(), prediction("net")]) as server:
            async with make_client(server.url, registry, fake_time) as client:
                result = await client.predict("a mail server")
        assert result.prediction.label == "net"

    run(scenario)
    assert sample(registry, "torchserve_retry_total", method="predict", reason="reset") == 1
    assert sample(registry, "torchserve_requests_total", method="predict", status="error") == 1


def test_a_reply_that_never_comes_times_out(registry: CollectorRegistry, fake_time: FakeTime) -> None:
    async def scenario() -> None:
        async with ScriptedServer([]) as server:
            server.steps.append(server.hold())
            client = make_client(server.url, registry, fake_time, attempts=2, request_timeout=0.2)
            async with client:
                with pytest.raises(TorchServeConnectionError) as caught:
                    await asyncio.wait_for(client.predict("a game"), timeout=10)
        assert caught.value.kind == "timeout"
        assert "no reply within 0.2s" in str(caught.value)
        assert len(server.requests) == 2

    run(scenario)
    assert sample(registry, "torchserve_retry_total", method="predict", reason="timeout") == 1
    assert sample(registry, "torchserve_connection_status") == 0


def test_worker_died_is_retried(registry: CollectorRegistry, fake_time: FakeTime) -> None:
    async def scenario() -> None:
        async with ScriptedServer([WORKER_DIED, prediction()]) as server:
            async with make_client(server.url, registry, fake_time) as client:
                assert (await client.predict("x")).call.attempts == 2

    run(scenario)
    assert sample(registry, "torchserve_retry_total", method="predict", reason="worker_died") == 1


@pytest.mark.parametrize(
    ("step", "status", "error_type"),
    [
        (reply(200, b"{not json"), 200, "MalformedResponse"),
        (reply(200, {"nothing": "useful"}), 200, "MalformedResponse"),
        (
            torchserve_error(404, "ModelNotFoundException", "Model not found: demo"),
            404,
            "ModelNotFoundException",
        ),
        (torchserve_error(400, "BadRequestException", "Bad input"), 400, "BadRequestException"),
        (torchserve_error(413, "RequestTooLarge", "too large"), 413, "RequestTooLarge"),
        (HANDLER_FAILED, 503, "InternalServerException"),
    ],
)
def test_errors_that_are_not_retried(
    registry: CollectorRegistry, fake_time: FakeTime, step: Any, status: int, error_type: str
) -> None:
    async def scenario() -> None:
        async with ScriptedServer([step, prediction()]) as server:
            async with make_client(server.url, registry, fake_time) as client:
                with pytest.raises(TorchServeInferenceError) as caught:
                    await client.predict("x")
        assert (caught.value.status, caught.value.error_type) == (status, error_type)
        assert caught.value.model == "demo"
        assert len(server.requests) == 1

    run(scenario)
    assert fake_time.sleeps == []


def test_4xx_and_handler_failures_leave_the_breaker_alone(
    registry: CollectorRegistry, fake_time: FakeTime
) -> None:
    async def scenario() -> None:
        steps = [torchserve_error(404, "ModelNotFoundException", "no"), HANDLER_FAILED]
        async with ScriptedServer(steps) as server:
            async with make_client(server.url, registry, fake_time, failure_threshold=2) as client:
                for _ in range(4):
                    with pytest.raises(TorchServeInferenceError):
                        await client.predict("x")
                assert client.breaker_state == "closed"
                assert client._breaker.failure_count == 0

    run(scenario)


def test_malformed_replies_count_as_breaker_failures(
    registry: CollectorRegistry, fake_time: FakeTime
) -> None:
    async def scenario() -> None:
        async with ScriptedServer([reply(200, b"garbage")]) as server:
            async with make_client(server.url, registry, fake_time, failure_threshold=2) as client:
                for _ in range(2):
                    with pytest.raises(TorchServeInferenceError):
                        await client.predict("x")
                assert client.breaker_state == "open"

    run(scenario)


def test_a_wrong_length_prediction_list_is_an_error(registry: CollectorRegistry, fake_time: FakeTime) -> None:
    answer = {"label": "games", "score": 0.9}

    async def scenario() -> None:
        async with ScriptedServer([reply(200, [answer, answer])]) as server:
            async with make_client(server.url, registry, fake_time) as client:
                with pytest.raises(
                    TorchServeInferenceError, match="answered 3 texts with 2 predictions"
                ) as caught:
                    await client.predict_batch(["a", "b", "c"])
        assert caught.value.error_type == "LengthMismatch"

    run(scenario)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_dead_server_gets_no_retry_storm(registry: CollectorRegistry, fake_time: FakeTime) -> None:
    calls, attempts_each, reserve = 100, 5, 10  # the reserve: 1 per second of the 10 s window

    async def scenario() -> None:
        url = f"http://127.0.0.1:{_closed_port()}"
        client = make_client(
            url, registry, fake_time, attempts=attempts_each, failure_threshold=10_000, budget_per_second=1
        )
        async with client:
            for _ in range(calls):
                with pytest.raises(TorchServeConnectionError):
                    await client.predict("x")

    run(scenario)
    sent = sample(registry, "torchserve_requests_total", method="predict", status="error")
    retries = sample(registry, "torchserve_retry_total", method="predict", reason="connect")
    assert sent == calls + retries
    # Without a budget: calls * (attempts_each - 1) = 400 retries.
    assert retries <= reserve + 0.2 * calls + 1
    assert retries >= reserve


def test_breaker_opens_after_consecutive_failures_and_refuses_without_io(
    registry: CollectorRegistry, fake_time: FakeTime
) -> None:
    async def scenario() -> None:
        async with ScriptedServer([WORKER_DIED]) as server:
            client = make_client(server.url, registry, fake_time, attempts=1, failure_threshold=3)
            async with client:
                for _ in range(3):
                    with pytest.raises(TorchServeInferenceError):
                        await client.predict("x")
                assert client.breaker_state == "open"
                with pytest.raises(CircuitOpenError) as caught:
                    await client.predict("x")
                assert caught.value.retry_in == pytest.approx(60.0)
                assert len(server.requests) == 3

    run(scenario)
    assert sample(registry, "torchserve_circuit_breaker_state") == 1
    assert sample(registry, "torchserve_circuit_breaker_trips_total") == 1
    assert sample(registry, "torchserve_requests_total", method="predict", status="circuit_open") == 1


def test_half_open_lets_exactly_one_probe_out_of_64_callers(
    registry: CollectorRegistry, fake_time: FakeTime
) -> None:
    async def scenario() -> None:
        async with ScriptedServer([WORKER_DIED, WORKER_DIED]) as server:
            client = make_client(server.url, registry, fake_time, attempts=1, failure_threshold=2)
            async with client:
                for _ in range(2):
                    with pytest.raises(TorchServeInferenceError):
                        await client.predict("x")
                server.steps.append(server.hold())
                fake_time.advance(61)
                tasks = [asyncio.create_task(client.predict("x")) for _ in range(64)]
                await until(lambda: len(server.requests) >= 3, "the probe to reach the server")
                refused = [t for t in tasks if t.done()]
                assert len(refused) == 63
                assert all(isinstance(t.exception(), CircuitOpenError) for t in refused)
                assert client.breaker_state == "half_open"
                server.gate.set()
                results = await asyncio.gather(*tasks, return_exceptions=True)
                assert sum(not isinstance(r, BaseException) for r in results) == 1
                assert client.breaker_state == "closed"
                assert len(server.requests) == 3

    run(scenario)
    assert sample(registry, "torchserve_circuit_breaker_state") == 0


def test_a_cancelled_probe_does_not_leave_the_breaker_stuck(
    registry: CollectorRegistry, fake_time: FakeTime
) -> None:
    async def scenario() -> None:
        async with ScriptedServer([WORKER_DIED]) as server:
            client = make_client(server.url, registry, fake_time, attempts=1, failure_threshold=1)
            async with client:
                with pytest.raises(TorchServeInferenceError):
                    await client.predict("x")
                server.steps.append(server.hold())
                fake_time.advance(61)
                probe = asyncio.create_task(client.predict("x"))
                await until(lambda: len(server.requests) >= 2, "the probe to reach the server")
                probe.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await probe
                server.steps.append(prediction())
                result = await client.predict("x")
                assert result.prediction.label == "games"
                assert client.breaker_state == "closed"

    run(scenario)


def test_a_failing_ping_never_opens_the_breaker(registry: CollectorRegistry, fake_time: FakeTime) -> None:
    async def scenario() -> None:
        steps = [torchserve_error(500, "InternalServerException", "Unhealthy")]
        async with ScriptedServer(steps) as server:
            client = make_client(server.url, registry, fake_time, failure_threshold=1, health_interval=0)
            async with client:
                for _ in range(5):
                    assert not (await client.health()).healthy
                assert client.breaker_state == "closed"
                server.steps.append(prediction("games"))
                assert (await client.predict("x")).prediction.label == "games"

    run(scenario)


def test_a_healthy_ping_lets_the_probe_out_before_the_recovery_timeout(
    registry: CollectorRegistry, fake_time: FakeTime
) -> None:
    async def scenario() -> None:
        async with ScriptedServer([WORKER_DIED]) as server:
            client = make_client(server.url, registry, fake_time, attempts=1, failure_threshold=1)
            async with client:
                with pytest.raises(TorchServeInferenceError):
                    await client.predict("x")
                assert client.breaker_state == "open"
                with pytest.raises(CircuitOpenError):
                    await client.predict("x")
                server.steps.append(reply(200, {"status": "Healthy"}))
                assert (await client.health()).healthy
                assert client.breaker_state == "half_open"
                server.steps.append(prediction())
                await client.predict("x")
                assert client.breaker_state == "closed"

    run(scenario)


def test_health_is_cached_and_shared_by_concurrent_callers(
    registry: CollectorRegistry, fake_time: FakeTime
) -> None:
    async def scenario() -> None:
        async with ScriptedServer([reply(200, {"status": "Healthy"})]) as server:
            async with make_client(server.url, registry, fake_time, health_interval=30) as client:
                assert not client.is_healthy()
                results = await asyncio.gather(*(client.health() for _ in range(20)))
                assert all(r.healthy for r in results)
                assert len(server.requests) == 1
                fake_time.advance(29)
                await client.health()
                assert len(server.requests) == 1
                fake_time.advance(2)
                await client.health()
                assert len(server.requests) == 2

    run(scenario)
    assert sample(registry, "torchserve_requests_total", method="health", status="200") == 2


FAULTS = {
    "refused": None,
    "reset": reset_mid_body(),
    "timeout": "hold",
    "garbage": reply(200, b"\x00\xff"),
    "overloaded": OVERLOADED,
    "not found": torchserve_error(404, "ModelNotFoundException", "no"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_only_tsbatch_errors_escape(registry: CollectorRegistry, fake_time: FakeTime, fault: str) -> None:
    async def scenario() -> BaseException:
        async with ScriptedServer([]) as server:
            step = FAULTS[fault]
            server.steps.append(server.hold() if step == "hold" else step)  # type: ignore[arg-type]
            url = f"http://127.0.0.1:{_closed_port()}" if step is None else server.url
            client = make_client(url, registry, fake_time, attempts=2, request_timeout=0.2)
            async with client:
                for call in (client.predict("x"), client.predict_batch(["x"]), client.get_model_info()):
                    try:
                        await call
                    except BaseException as exc:
                        error = exc
                    else:
                        raise AssertionError("no error")
                    assert isinstance(error, TorchServeError), repr(error)
                    assert type(error).__module__.startswith("tsbatch"), repr(error)
        return error

    run(scenario)
