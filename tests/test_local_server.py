"""A real TorchServe, started by tsbatch, serving the demo model."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pyarrow.parquet as pq
import pytest

pytest.importorskip("psutil")  # needs the serve extra
pytest.importorskip("torch")  # needs the serve extra

from tests.conftest import SESSION_BATCH_SIZE, SESSION_MAX_BATCH_DELAY_MS, serve_settings
from tsbatch import LocalServerError
from tsbatch._demo.archive import DEFAULT_DATA
from tsbatch._demo.handler import DemoTextHandler
from tsbatch._serve import local

pytestmark = pytest.mark.integration


async def _request(
    method: str, url: str, token: str | None, body: Any = None, content_type: str | None = None
) -> tuple[int, str, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if content_type:
        headers["Content-Type"] = content_type
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=body, headers=headers) as reply,
    ):
        return reply.status, reply.reason or "", await reply.read()


def request(method: str, url: str, token: str | None, body: Any = None, content_type: str | None = None):
    return asyncio.run(_request(method, url, token, body, content_type))


def predict(server: local.LocalServer, body: Any, content_type: str = "application/json"):
    url = f"{server.inference_url}/predictions/{server.model_name}"
    return request("POST", url, server.inference_token(), body, content_type)


def test_served_labels_match_the_model_run_in_process(
    torchserve: local.LocalServer, in_process_model: DemoTextHandler
) -> None:
    table = pq.read_table(DEFAULT_DATA, filters=[("split", "=", "test")], columns=["text"])
    texts = table.column("text").to_pylist()[:48]
    url = f"{torchserve.inference_url}/predictions/{torchserve.model_name}"
    headers = {"Authorization": f"Bearer {torchserve.inference_token()}", "Content-Type": "text/plain"}

    async def classify_all() -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session:

            async def one(text: str) -> dict[str, Any]:
                async with session.post(url, data=text.encode(), headers=headers) as reply:
                    assert reply.status == 200, reply.reason
                    return json.loads(await reply.read())

            return await asyncio.gather(*(one(t) for t in texts))

    served = asyncio.run(classify_all())
    expected = in_process_model.predict(texts)
    assert [s["label"] for s in served] == [e["label"] for e in expected]
    assert [s["score"] for s in served] == pytest.approx([e["score"] for e in expected], abs=1e-5)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"a real-time strategy game", "text/plain"),
        (json.dumps("a real-time strategy game"), "application/json"),
        (json.dumps({"text": "a real-time strategy game"}), "application/json"),
    ],
)
def test_one_text_per_request(torchserve: local.LocalServer, body: Any, content_type: str) -> None:
    status, _, reply = predict(torchserve, body, content_type)
    assert status == 200
    assert set(json.loads(reply)) == {"label", "score", "scores"}


@pytest.mark.parametrize("wrap", [lambda texts: texts, lambda texts: {"instances": texts}])
def test_a_list_gets_answers_in_the_same_order(
    torchserve: local.LocalServer, in_process_model: DemoTextHandler, wrap: Any
) -> None:
    texts = ["an email client", "a font family", "a chess engine", "an email client"]
    status, _, reply = predict(torchserve, json.dumps(wrap(texts)))
    assert status == 200
    assert [a["label"] for a in json.loads(reply)] == [a["label"] for a in in_process_model.predict(texts)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (json.dumps({"instances": ["ok", 3]}), "item 1 must be a string, got int"),
        (json.dumps("  "), "text is empty"),
        (json.dumps({"text": None}), '"text" must be a string, got NoneType'),
    ],
)
def test_bad_input_is_a_400_that_says_why_and_keeps_the_worker(
    torchserve: local.LocalServer, body: str, message: str
) -> None:
    status, reason, _ = predict(torchserve, body)
    assert (status, reason) == (400, f"Bad input: {message}")
    assert predict(torchserve, b"still serving", "text/plain")[0] == 200


def test_describe_exposes_classes_and_limits(torchserve: local.LocalServer) -> None:
    url = f"{torchserve.management_url}/models/{torchserve.model_name}?customized=true"
    status, _, body = request("GET", url, torchserve.management_token())
    assert status == 200
    (model,) = json.loads(body)
    assert model["batchSize"] == SESSION_BATCH_SIZE
    assert model["maxBatchDelay"] == SESSION_MAX_BATCH_DELAY_MS
    described = model["customizedMetadata"]
    if isinstance(described, str):
        described = json.loads(described)
    assert len(described["classes"]) == 10
    assert described["max_text_chars"] > 0


def test_token_auth_is_on_by_default(torchserve: local.LocalServer) -> None:
    assert request("GET", f"{torchserve.inference_url}/ping", None)[0] == 400
    assert request("GET", f"{torchserve.inference_url}/ping", "not-the-key")[0] == 400
    assert request("GET", f"{torchserve.inference_url}/ping", torchserve.inference_token())[0] == 200


def test_the_server_listens_on_loopback_only(torchserve: local.LocalServer) -> None:
    config = (torchserve.run_dir / "config.properties").read_text()
    addresses = [line.split("=", 1)[1] for line in config.splitlines() if "_address=" in line]
    assert len(addresses) == 5
    assert all(address.removeprefix("http://").startswith("127.0.0.1") for address in addresses)


def test_starting_twice_returns_the_running_server(torchserve: local.LocalServer) -> None:
    said: list[str] = []
    again = local.start(local.ServeSettings(run_dir=torchserve.run_dir), say=said.append)
    assert again.pid == torchserve.pid
    assert "already running" in said[0]


def test_status_finds_the_running_server(torchserve: local.LocalServer) -> None:
    found = local.status(torchserve.run_dir)
    assert found is not None and found.pid == torchserve.pid


def test_repr_carries_no_token(torchserve: local.LocalServer) -> None:
    token = torchserve.inference_token()
    assert token and token not in repr(torchserve)


@pytest.mark.slow
def test_start_and_stop_without_token_auth(demo_archive: Path, tmp_path: Path) -> None:
    settings = serve_settings(tmp_path / "run", demo_archive, token_auth=False)
    server = local.start(settings, say=lambda _: None)
    try:
        assert server.key_file is None
        assert request("GET", f"{server.inference_url}/ping", None)[0] == 200
        pid = server.pid
    finally:
        assert local.stop(settings.run_dir)
    assert not server.is_running()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    for port in (settings.inference_port, settings.management_port, settings.metrics_port):
        assert local._port_is_free(port)
    assert local.status(settings.run_dir) is None
    assert not local.stop(settings.run_dir)


@pytest.mark.parametrize("content", ["", '{"inference": {'])
def test_a_key_file_still_being_written_means_not_ready_yet(tmp_path: Path, content: str) -> None:
    (tmp_path / "key_file.json").write_text(content)
    server = local.LocalServer(
        run_dir=tmp_path,
        pid=0,
        inference_url="http://127.0.0.1:9",
        management_url="http://127.0.0.1:9",
        metrics_url="http://127.0.0.1:9",
        model_name="demo",
        token_auth=True,
        create_time=0.0,
    )
    assert local._ready(server) is False


def test_a_busy_port_is_refused_with_what_to_do(demo_archive: Path, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        settings = serve_settings(tmp_path, demo_archive, metrics_port=busy)
        with pytest.raises(
            LocalServerError, match=f"metrics port {busy} on 127.0.0.1 is in use.*--metrics-port"
        ):
            local.start(settings, say=lambda _: None)


def test_missing_java_is_refused_with_what_to_do(
    demo_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(LocalServerError, match=r"Java not found.*openjdk-17"):
        local.start(serve_settings(tmp_path, demo_archive), say=lambda _: None)


def test_a_missing_model_archive_is_refused(tmp_path: Path) -> None:
    settings = serve_settings(tmp_path, tmp_path / "nope.mar")
    with pytest.raises(LocalServerError, match=r"model archive .*nope\.mar not found"):
        local.start(settings, say=lambda _: None)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"inference_port": 0}, "inference_port must be within 1..65535"),
        ({"metrics_port": 8080}, "the three ports must differ"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"max_batch_delay_ms": -1}, "max_batch_delay_ms must be >= 0"),
    ],
)
def test_settings_are_checked(overrides: dict[str, int], message: str) -> None:
    with pytest.raises(LocalServerError, match=message):
        local.ServeSettings(**overrides)  # type: ignore[arg-type]


def test_serve_start_ends_with_the_lines_that_connect_and_they_work(
    torchserve: local.LocalServer, tmp_path: Path
) -> None:
    started = subprocess.run(
        [sys.executable, "-m", "tsbatch", "serve", "start", f"--run-dir={torchserve.run_dir}"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = started.stdout.splitlines()
    exports = [line.strip() for line in lines if line.strip().startswith("export ")]
    assert [e.split("=")[0] for e in exports] == [
        "export TORCHSERVE_URL",
        "export TORCHSERVE_MANAGEMENT_URL",
        "export TORCHSERVE_MODEL",
        "export TORCHSERVE_KEY_FILE",
    ]
    # The shell lines, pasted as printed, reach the server.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TORCHSERVE_")} | {
        "TSBATCH_PROGRESS": "0"
    }
    script = "; ".join([*exports, f"{sys.executable} -m tsbatch models --json"])
    models = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=clean, cwd=tmp_path)
    assert models.returncode == 0, models.stderr
    assert json.loads(models.stdout) == ["demo"]
    # So does the Python line, in a directory other than the one the server started from.
    python = lines[lines.index("or from Python:") + 1].strip()
    program = "\n".join(
        [
            "import pandas as pd, tsbatch",
            "df = pd.DataFrame({'text': ['a chess engine', 'a web server']})",
            f"print(({python})['ts_status'].eq('ok').all())",
        ]
    )
    ran = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=clean, cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "True"


@pytest.mark.slow
def test_the_demo_runs_while_8080_is_taken_and_prints_its_results_before_stopping(
    demo_archive: Path, tmp_path: Path
) -> None:
    with contextlib.ExitStack() as stack:
        holder = stack.enter_context(socket.socket())
        with contextlib.suppress(OSError):  # already taken: just as good
            holder.bind(("127.0.0.1", 8080))
            holder.listen()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "tsbatch",
                "demo",
                f"--run-dir={tmp_path}",
                f"--model-archive={demo_archive}",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "TSBATCH_PROGRESS": "0"},
            timeout=600,
        )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    (started,) = [line for line in lines if line.startswith("classifying every row of ")]
    assert started.startswith(f"classifying every row of {DEFAULT_DATA} through http://127.0.0.1:")
    assert ":8080 " not in started
    assert lines[-2].startswith("test split: ") and lines[-1] == "stopped the TorchServe this demo started"
    rows = pq.read_metadata(DEFAULT_DATA).num_rows
    assert any(line.startswith(f"{rows} rows in ") for line in lines)


def test_a_failed_start_quotes_the_log_and_the_console_where_java_says_why(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "ts_log.log").write_text("line 1\n[WARN ] ConfigManager - any URL\n")
    (logs / "console.log").write_text("starting\njava.net.BindException: Address already in use\n")
    tail = local._log_tail(tmp_path)
    assert "[WARN ] ConfigManager - any URL" in tail
    assert "java.net.BindException: Address already in use" in tail
