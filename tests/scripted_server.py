"""An in-process HTTP server that answers from a script, for faults TorchServe cannot produce."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Step = Callable[[web.Request], Any]


def reply(status: int = 200, body: Any = None, headers: dict[str, str] | None = None) -> Step:
    """Answer with ``status`` and ``body`` (JSON-encoded unless bytes)."""

    async def step(request: web.Request) -> web.StreamResponse:
        data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
        return web.Response(status=status, body=data, headers=headers)

    return step


def torchserve_error(status: int, error_type: str, message: str, **headers: str) -> Step:
    """Answer like TorchServe does with an error."""
    return reply(status, {"code": status, "type": error_type, "message": message}, headers)


def prediction(label: str = "games", score: float = 0.9) -> Step:
    return reply(200, {"label": label, "score": score, "scores": {label: score, "other": 1 - score}})


def reset_mid_body() -> Step:
    """Promise a body, send part of it, then drop the connection."""

    async def step(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b'{"label": "ga')
        assert request.transport is not None
        request.transport.close()
        return response

    return step


@dataclass
class ScriptedServer:
    """Serves ``steps`` in order (the last one repeats); records each request."""

    steps: list[Step]
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    ssl_context: ssl.SSLContext | None = None
    _runner: web.AppRunner | None = None

    def hold(self) -> Step:
        """A step that answers only when ``gate`` is set (or never, for timeouts)."""

        async def step(request: web.Request) -> web.StreamResponse:
            await self.gate.wait()
            return await prediction()(request)

        return step

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.headers)))
        step = self.steps[min(len(self.requests), len(self.steps)) - 1]
        return await step(request)  # type: ignore[no-any-return]

    async def __aenter__(self) -> ScriptedServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        scheme = "https" if self.ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.gate.set()
        assert self._runner is not None
        await self._runner.cleanup()


class ServerThread:
    """A :class:`ScriptedServer` on its own loop in a thread, for code that blocks the caller's loop."""

    def __init__(self, steps: list[Step]) -> None:
        self._steps = steps
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="scripted-server", daemon=True)
        self.server: ScriptedServer | None = None

    def __enter__(self) -> ScriptedServer:
        self._thread.start()

        async def start() -> ScriptedServer:
            server = ScriptedServer(self._steps)
            return await server.__aenter__()

        self.server = asyncio.run_coroutine_threadsafe(start(), self._loop).result(timeout=10)
        return self.server

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        asyncio.run_coroutine_threadsafe(self.server.__aexit__(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
