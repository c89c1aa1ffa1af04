"""Classify the sample data's test split through a served model and score it."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pyarrow.parquet as pq

from tsbatch._demo.train import Evaluation, evaluate
from tsbatch._errors import TorchServeError
from tsbatch._serve.local import LocalServer

DEFAULT_CONCURRENCY = 64


@dataclass(frozen=True)
class DemoResult:
    """Predictions for the test split and how well they match the labels."""

    texts: list[str]
    labels: list[str]
    predictions: list[str]
    evaluation: Evaluation
    seconds: float


async def _classify(server: LocalServer, texts: list[str], concurrency: int) -> list[str]:
    token = server.inference_token()
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = f"{server.inference_url}/predictions/{server.model_name}"
    limit = asyncio.Semaphore(concurrency)

    async def one(session: aiohttp.ClientSession, text: str) -> str:
        async with limit, session.post(url, data=text.encode("utf-8"), headers=headers) as reply:
            body = await reply.read()
            if reply.status != 200:
                raise TorchServeError(f"{url} answered {reply.status} {reply.reason}")
            return str(json.loads(body)["label"])

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        return list(await asyncio.gather(*(one(session, t) for t in texts)))


def classify_test_split(
    server: LocalServer, data: Path, concurrency: int = DEFAULT_CONCURRENCY
) -> DemoResult:
    """Send every test-split text of ``data`` to ``server`` and score the answers."""
    table = pq.read_table(data, columns=["text", "label", "split"]).to_pydict()
    rows = [i for i, split in enumerate(table["split"]) if split == "test"]
    texts = [table["text"][i] for i in rows]
    labels = [table["label"][i] for i in rows]
    started = time.perf_counter()
    predictions = asyncio.run(_classify(server, texts, concurrency))
    seconds = time.perf_counter() - started
    return DemoResult(texts, labels, predictions, evaluate(labels, predictions), seconds)
