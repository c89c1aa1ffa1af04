"""Inputs for comparison tests: classified frames built by hand, and job outputs made by real jobs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
from aiohttp import web

from tests.scripted_server import ServerThread
from tsbatch import ClientConfig, RetryPolicy
from tsbatch._job import Job, JobSettings

#: The golden set of the hand-made cases: six rows, two of each class.
IDS = [f"r{i}" for i in range(6)]
TRUTH = ["a", "a", "b", "b", "c", "c"]
#: The baseline gets r3 wrong; the candidate changes r1 (now wrong), r3 (now right) and r5 (now wrong).
BASELINE = ["a", "a", "b", "c", "c", "c"]
CANDIDATE = ["a", "b", "b", "b", "c", "a"]


def classified(
    labels: Sequence[str | None],
    *,
    truth: Sequence[str] = TRUTH,
    ids: Sequence[str] = IDS,
    statuses: Sequence[str] | None = None,
    scores: Sequence[float | None] | None = None,
) -> pd.DataFrame:
    """A frame shaped like ``df.ts.classify``'s result: the input columns, predictions, ``ts_status``."""
    return pd.DataFrame(
        {
            "id": list(ids),
            "text": [f"text of {i}" for i in ids],
            "label": list(truth),
            "pred_label": pd.array(labels, dtype="string"),
            "pred_score": pd.array(scores if scores is not None else [0.5] * len(labels), dtype="Float64"),
            "ts_status": pd.array(statuses or ["ok"] * len(labels), dtype="string"),
        }
    )


def golden_set(path: Path, rows: int = 10) -> Path:
    """A job's INPUT: ``id``, ``text`` and the true ``label`` (the text's last digit, even or odd)."""
    frame = pd.DataFrame(
        {
            "id": [f"row-{i}" for i in range(rows)],
            "text": [f"text {i}" for i in range(rows)],
            "label": ["even" if i % 2 == 0 else "odd" for i in range(rows)],
        }
    )
    frame.to_parquet(path, index=False)
    return path


def job_output(source: Path, output: Path, label_of: Callable[[str], str | None]) -> Path:
    """OUTPUT of a real job over ``source`` against a scripted server that labels each text with
    ``label_of(text)`` (score 0.5 + its length / 100) and refuses a text it gives ``None`` (400)."""

    def answer(text: str) -> dict[str, object] | None:
        label = label_of(text)
        return None if label is None else {"label": label, "score": 0.5 + len(text) / 100}

    async def server(request: web.Request) -> web.StreamResponse:
        if request.path == "/ping":
            return web.json_response({"status": "Healthy"})
        if not request.path.startswith("/predictions"):
            return web.Response(status=404)
        body = await request.read()
        batch = request.content_type == "application/json"
        answers = [answer(t) for t in (json.loads(body)["instances"] if batch else [body.decode()])]
        if None in answers:
            return web.json_response({"code": 400, "type": "BadRequest", "message": "refused"}, status=400)
        return web.json_response(answers if batch else answers[0])

    settings = JobSettings(
        input=str(source), output=output, id_column="id", keep_columns=("text", "label"), rows_per_part=4
    )
    with ServerThread([server]) as running:
        config = ClientConfig(url=running.url, management_url=running.url, retry=RetryPolicy(attempts=1))
        asyncio.run(Job(settings, config).run())
    return output
