"""A new user's mistakes: each gets one clear answer before rows are sent, and nothing fails silently."""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from tests.conftest import free_ports
from tests.scripted_server import ScriptedServer, torchserve_error
from tsbatch import (
    Auth,
    ClientConfig,
    OutageError,
    OutagePolicy,
    TorchServeAuthError,
    TorchServeConnectionError,
    TorchServeInferenceError,
)


class Server:
    """A TorchServe look-alike: ``/ping``, the management API and ``/predictions``, each replaceable."""

    def __init__(self, models: tuple[str, ...] = ("demo",), key: str | None = None) -> None:
        self.models = models
        self.key = key
        self.seen: Counter[str] = Counter()
        self.tokens: list[str | None] = []

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        route = request.path.split("/")[1]
        self.seen[route] += 1
        self.tokens.append(request.headers.get("Authorization"))
        if self.key is not None and request.headers.get("Authorization") != f"Bearer {self.key}":
            return await torchserve_error(400, "InvalidKeyException", "Token Authorization failed")(request)
        if route == "ping":
            return web.json_response({"status": "Healthy"})
        name = request.path.split("/")[2] if request.path.count("/") >= 2 else ""
        if route == "models" and not name:
            return web.json_response({"models": [{"modelName": m} for m in self.models]})
        if name not in self.models:
            message = f"Model not found: {name}"
            return await torchserve_error(404, "ModelNotFoundException", message)(request)
        if route == "models":
            return web.json_response([{"modelName": name, "modelVersion": "1.0", "batchSize": 1}])
        text = (await request.read()).decode()
        return web.json_response({"label": "long" if len(text) > 5 else "short", "score": 0.9})


def frame_of(count: int) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"text number {i}" for i in range(count)]})


def run(server: Server, frame: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
    async def scenario() -> pd.DataFrame:
        async with ScriptedServer([server]) as scripted:
            config = kwargs.pop("config", None) or ClientConfig(url=scripted.url, management_url=scripted.url)
            return await frame.ts.aclassify(
                "text", config=config, registry=CollectorRegistry(), progress=False, **kwargs
            )

    return asyncio.run(scenario())


# -- nothing fails silently ---------------------------------------------------------------------


def test_a_server_down_from_the_start_is_one_outage_error_naming_the_url() -> None:
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    config = ClientConfig(
        url=url, management_url=url, outage=OutagePolicy(max_outage=0.3, poll_initial=0.05, poll_max=0.1)
    )
    with pytest.raises(OutageError, match=rf"cannot reach the server at {url} for longer than max_outage"):
        frame_of(20).ts.classify("text", config=config, registry=CollectorRegistry(), progress=False)


def test_without_an_outage_budget_a_server_down_says_to_start_one() -> None:
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    config = ClientConfig(url=url, management_url=url, outage=OutagePolicy(max_outage=0))
    with pytest.raises(TorchServeConnectionError, match=r"is it running\? \(tsbatch serve start\)"):
        frame_of(20).ts.classify("text", config=config, registry=CollectorRegistry(), progress=False)


def test_a_wrong_model_name_lists_the_models_the_server_has_and_sends_no_row() -> None:
    server = Server(models=("demo", "sentiment"))
    with pytest.raises(TorchServeInferenceError) as caught:
        run(server, frame_of(500), model="dmeo")
    assert "model 'dmeo' is not on the server" in str(caught.value)
    assert "it has: demo, sentiment" in str(caught.value)
    assert server.seen["predictions"] == 0


def test_a_model_missing_where_no_management_api_answers_ends_the_run_at_the_first_404() -> None:
    server = Server()

    async def no_management(request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/models"):
            return web.Response(status=404)  # a proxy that only passes the inference API
        return await server(request)

    with pytest.raises(TorchServeInferenceError, match="Model not found: dmeo"):
        run(no_management, frame_of(500), model="dmeo", concurrency=4, mode="rows")  # type: ignore[arg-type]
    assert 1 <= server.seen["predictions"] <= 4 + 4  # not 500 rows, each retried


def test_a_refused_token_is_one_auth_error_that_says_where_tokens_come_from(tmp_path: Path) -> None:
    server = Server(key="the-right-key")
    with pytest.raises(TorchServeAuthError) as caught:
        run(server, frame_of(100))
    assert "refused the inference token" in str(caught.value)
    assert "TORCHSERVE_KEY_FILE" in str(caught.value)
    assert server.seen["predictions"] == 0


def test_a_run_with_failed_rows_warns_once_with_counts_by_kind(caplog: pytest.LogCaptureFixture) -> None:
    frame = pd.DataFrame({"text": ["a long text", "", "   ", "x" * 50, None]})
    with caplog.at_level(logging.WARNING, logger="tsbatch"):
        result = run(Server(), frame, max_text_length=20, long_text="error")
    assert result["ts_error_kind"].fillna("").tolist() == ["", "bad_input", "bad_input", "bad_input", ""]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["3 of 5 rows failed (bad_input: 3); their ts_error_kind and ts_error columns say why"]


def test_a_run_where_every_row_succeeds_warns_of_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tsbatch"):
        result = run(Server(), frame_of(10))
    assert (result["ts_status"] == "ok").all()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_missing_values_of_the_nullable_string_dtype_are_skipped() -> None:
    frame = pd.DataFrame({"text": pd.Series(["a long text", pd.NA, None], dtype="string")})
    result = run(Server(), frame)
    assert result["ts_status"].tolist() == ["ok", "skipped", "skipped"]


# -- connecting is easy -------------------------------------------------------------------------


def key_file(tmp_path: Path, key: str) -> Path:
    path = tmp_path / "key_file.json"
    path.write_text(json.dumps({"inference": {"key": key}, "management": {"key": key}}))
    return path


def test_the_accessor_takes_url_and_key_file_without_a_config(tmp_path: Path) -> None:
    server = Server(key="k-123")
    keys = key_file(tmp_path, "k-123")

    async def scenario() -> pd.DataFrame:
        async with ScriptedServer([server]) as scripted:
            return await frame_of(3).ts.aclassify(
                "text", url=scripted.url, key_file=str(keys), registry=CollectorRegistry(), progress=False
            )

    result = asyncio.run(scenario())
    assert (result["ts_status"] == "ok").all()
    assert set(server.tokens) == {"Bearer k-123"}
    # url= alone moved the management API to the next port, where nothing listens: no model info, no harm.
    assert server.seen["models"] == 0


def test_client_config_and_auth_take_a_key_file_as_a_string(tmp_path: Path) -> None:
    keys = key_file(tmp_path, "k")
    assert ClientConfig(key_file=str(keys)).auth.key_file == keys
    assert Auth(key_file=str(keys)).key_file == keys
    assert ClientConfig(auth=Auth(key_file=keys), key_file=keys).auth.key_file == keys


# -- mistakes get a helpful message -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "call"),
    [
        ("DataFrame.ts.classify", lambda f: f.ts.classify("text", batchsize=8)),
        ("Series.ts.classify", lambda f: f["text"].ts.classify(batchsize=8)),
    ],
)
def test_an_unknown_keyword_names_the_public_method_and_the_nearest_name(method: str, call: Any) -> None:
    with pytest.raises(TypeError) as caught:
        call(frame_of(2))
    assert (
        str(caught.value)
        == f"{method}() got an unexpected keyword argument 'batchsize'; did you mean 'batch_size'?"
    )


@pytest.mark.parametrize("given", [lambda f: f["text"], lambda f: f["text"].tolist()])
def test_data_passed_where_a_column_name_goes_says_to_pass_the_name(given: Any) -> None:
    frame = frame_of(2)
    with pytest.raises(TypeError, match=r"pass the column's name, for example df\.ts\.classify\('text'\)"):
        frame.ts.classify(given(frame), progress=False)


def test_arguments_are_checked_before_the_run_starts_so_the_traceback_is_short() -> None:
    async def in_a_notebook() -> None:  # Jupyter's loop is running: the run would go to a thread
        frame_of(2).ts.classify("text", concurency=4, progress=False)  # type: ignore[call-arg]

    with pytest.raises(TypeError) as caught:
        asyncio.run(in_a_notebook())
    frames = traceback.extract_tb(caught.value.__traceback__)
    below_the_cell = frames[[f.name for f in frames].index("in_a_notebook") + 1 :]
    assert "did you mean" in str(caught.value)
    assert [f.name for f in below_the_cell] == ["classify", "_classify", "read_kwargs"]
