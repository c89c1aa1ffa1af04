"""A client used from one event loop, then another: a script that calls ``asyncio.run`` twice."""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from tests.scripted_server import ServerThread
from tsbatch import Classifier, ClientConfig, TorchServeClient


async def answer(request: web.Request) -> web.StreamResponse:
    if request.path.startswith("/models"):
        return web.Response(status=404)
    return web.json_response({"label": "games", "score": 0.9})


def test_the_seed_classifier_works_from_two_asyncio_runs() -> None:
    with ServerThread([answer]) as server, warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        classifier = Classifier(ClientConfig(url=server.url, management_url=server.url))
        first = asyncio.run(classifier.classify("a chess engine"))
        second = asyncio.run(classifier.batch_classify(["a font", "a mail client"]))
        third = asyncio.run(classifier.classify("a compiler"))
        gc.collect()
    assert first["label"] == third["label"] == "games"
    assert [item["status"] for item in second] == ["ok", "ok"]


def test_a_client_reused_from_a_second_loop_keeps_its_state() -> None:
    registry = CollectorRegistry()
    with ServerThread([answer]) as server, warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        client = TorchServeClient(
            config=ClientConfig(url=server.url, management_url=server.url), registry=registry
        )
        asyncio.run(client.predict("one"))
        asyncio.run(client.predict("two"))
        asyncio.run(client.aclose())
        gc.collect()
    assert registry.get_sample_value("torchserve_requests_total", {"method": "predict", "status": "200"}) == 2


def test_a_client_used_from_two_running_loops_at_once_says_it_cannot() -> None:
    async def scenario(client: TorchServeClient, other: asyncio.AbstractEventLoop) -> None:
        await client.predict("here")
        with pytest.raises(RuntimeError, match="another event loop"):
            asyncio.run_coroutine_threadsafe(client.predict("there"), other).result(timeout=10)

    with ServerThread([answer]) as server:
        client = TorchServeClient(
            config=ClientConfig(url=server.url, management_url=server.url), registry=CollectorRegistry()
        )
        other = asyncio.new_event_loop()
        import threading

        thread = threading.Thread(target=other.run_forever, daemon=True)
        thread.start()
        try:
            asyncio.run(scenario(client, other))
        finally:
            other.call_soon_threadsafe(other.stop)
            thread.join(timeout=10)
            other.close()
