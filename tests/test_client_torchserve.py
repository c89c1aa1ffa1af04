"""The client against the real TorchServe fixture."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytest.importorskip("psutil")  # needs the serve extra
pytest.importorskip("torch")  # needs the serve extra
from prometheus_client import CollectorRegistry, generate_latest

from tests.client_helpers import FakeTime, sample
from tests.conftest import SESSION_BATCH_SIZE, SESSION_MAX_BATCH_DELAY_MS, serve_settings
from tsbatch import (
    BreakerPolicy,
    CircuitOpenError,
    ClientConfig,
    RetryPolicy,
    TorchServeAuthError,
    TorchServeClient,
    TorchServeConnectionError,
    TorchServeInferenceError,
)
from tsbatch._demo.archive import DEFAULT_DATA
from tsbatch._demo.handler import DemoTextHandler
from tsbatch._serve import local

pytestmark = pytest.mark.integration


def client_for(server: local.LocalServer, registry: CollectorRegistry, **options: object) -> TorchServeClient:
    config = ClientConfig(url=server.inference_url, management_url=server.management_url, model="demo")
    return TorchServeClient(config=config, key_file=server.key_file, registry=registry, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def test_texts() -> list[str]:
    table = pq.read_table(DEFAULT_DATA, filters=[("split", "=", "test")], columns=["text"])
    return table.column("text").to_pylist()[100:140]


def test_predict_matches_the_model_in_process(
    torchserve: local.LocalServer, in_process_model: DemoTextHandler, test_texts: list[str]
) -> None:
    async def scenario() -> list[str]:
        async with client_for(torchserve, CollectorRegistry()) as client:
            results = await asyncio.gather(*(client.predict(t) for t in test_texts))
        assert all(r.call.status == 200 and r.call.attempts == 1 for r in results)
        assert all(r.prediction.scores and len(r.prediction.scores) == 10 for r in results)
        return [r.prediction.label for r in results]

    assert asyncio.run(scenario()) == [p["label"] for p in in_process_model.predict(test_texts)]


def test_predict_batch_keeps_the_order(
    torchserve: local.LocalServer, in_process_model: DemoTextHandler, test_texts: list[str]
) -> None:
    async def scenario() -> list[str]:
        async with client_for(torchserve, CollectorRegistry()) as client:
            result = await client.predict_batch(test_texts)
        return [p.label for p in result.predictions]

    assert asyncio.run(scenario()) == [p["label"] for p in in_process_model.predict(test_texts)]


def test_many_health_callers_share_one_ping(torchserve: local.LocalServer) -> None:
    registry = CollectorRegistry()

    async def scenario() -> None:
        async with client_for(torchserve, registry) as client:
            results = await asyncio.gather(*(client.health() for _ in range(25)))
            assert all(r.healthy and r.status == "Healthy" for r in results)
            assert client.is_healthy()

    asyncio.run(scenario())
    assert sample(registry, "torchserve_requests_total", method="health", status="200") == 1


def test_model_info_reports_batching_workers_queue_and_description(torchserve: local.LocalServer) -> None:
    async def scenario() -> None:
        async with client_for(torchserve, CollectorRegistry()) as client:
            info = await client.get_model_info()
            assert (info.name, info.version, info.versions) == ("demo", "1.0", ["1.0", "2.0"])
            assert info.batch_size == SESSION_BATCH_SIZE
            assert info.max_batch_delay_ms == SESSION_MAX_BATCH_DELAY_MS
            assert info.workers_ready == info.workers_total == 1
            assert info.queue_remaining is not None and info.queue_remaining > 0
            assert info.classes is not None and len(info.classes) == 10
            assert info.max_text_chars == 100_000
            assert await client.list_models() == ["demo"]

    asyncio.run(scenario())


def test_an_unknown_model_is_an_inference_error_and_spares_the_breaker(torchserve: local.LocalServer) -> None:
    async def scenario() -> None:
        async with client_for(torchserve, CollectorRegistry()) as client:
            for _ in range(6):
                with pytest.raises(TorchServeInferenceError) as caught:
                    await client.predict("x", model="no-such-model")
            assert caught.value.status == 404
            assert caught.value.model == "no-such-model"
            assert client.breaker_state == "closed"
            assert client._breaker.failure_count == 0

    asyncio.run(scenario())


def test_a_wrong_token_fails_clearly_and_never_shows_the_token(
    torchserve: local.LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    wrong = "wrong-token-4f9a"
    caplog.set_level(logging.DEBUG)

    async def scenario() -> None:
        config = ClientConfig(url=torchserve.inference_url, management_url=torchserve.management_url)
        async with TorchServeClient(config=config, inference_token=wrong, registry=registry) as client:
            with pytest.raises(TorchServeAuthError) as caught:
                await client.predict("x")
            assert caught.value.status == 400
            assert "refused the token" in str(caught.value)
            texts = [str(caught.value), repr(caught.value), repr(client), repr(client.config)]
            assert not [t for t in texts if wrong in t]
            assert client.breaker_state == "closed"

    asyncio.run(scenario())
    assert wrong not in generate_latest(registry).decode()
    assert wrong not in caplog.text


def test_a_rotated_key_file_is_read_again(torchserve: local.LocalServer, tmp_path: Path) -> None:
    assert torchserve.key_file is not None
    keys = json.loads(torchserve.key_file.read_text())
    stale = json.loads(json.dumps(keys))
    stale["inference"]["key"] = "expired1"
    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps(stale))

    async def scenario() -> None:
        config = ClientConfig(url=torchserve.inference_url, management_url=torchserve.management_url)
        async with TorchServeClient(config=config, key_file=key_file, registry=CollectorRegistry()) as client:
            with pytest.raises(TorchServeAuthError):
                await client.predict("x")
            key_file.write_text(json.dumps(keys))  # what TorchServe does when it rotates keys
            result = await client.predict("a chess game")
            assert result.call.status == 200

    asyncio.run(scenario())


@pytest.mark.slow
def test_breaker_opens_when_torchserve_stops_and_closes_when_it_is_back(
    demo_archive: Path, tmp_path: Path
) -> None:
    settings = serve_settings(tmp_path / "run", demo_archive, token_auth=False)
    fake_time = FakeTime()
    registry = CollectorRegistry()
    config = ClientConfig(
        url=f"http://127.0.0.1:{settings.inference_port}",
        management_url=f"http://127.0.0.1:{settings.management_port}",
        retry=RetryPolicy(attempts=1),
        breaker=BreakerPolicy(failure_threshold=3, recovery_timeout=60),
    )
    local.start(settings, say=lambda _: None)
    try:

        async def scenario() -> None:
            client = TorchServeClient(
                config=config, registry=registry, clock=fake_time.clock, sleep=fake_time.sleep
            )
            async with client:
                assert (await client.predict("a game")).call.status == 200
                local.stop(settings.run_dir)
                for _ in range(3):
                    with pytest.raises(TorchServeConnectionError):
                        await client.predict("a game")
                assert client.breaker_state == "open"
                with pytest.raises(CircuitOpenError):
                    await client.predict("a game")
                local.start(settings, say=lambda _: None)
                fake_time.advance(60)
                assert (await client.predict("a game")).call.status == 200
                assert client.breaker_state == "closed"

        asyncio.run(scenario())
    finally:
        local.stop(settings.run_dir)
    assert sample(registry, "torchserve_circuit_breaker_trips_total") == 1
    assert sample(registry, "torchserve_circuit_breaker_state") == 0
