"""A small HTTP proxy in front of a real TorchServe: it logs every request and can fake ``/ping``.

It runs on its own event loop in a thread, so a test can stop and start the
TorchServe behind it while a job (in another process) keeps talking to the
proxy's fixed address.  While TorchServe is down, the proxy drops each
client connection without a reply, as a server that went away does.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

_HOP_BY_HOP = {"connection", "content-length", "host", "keep-alive", "transfer-encoding"}


@dataclass(frozen=True)
class Seen:
    """One request the proxy received: when, where to, and what it answered (0: no answer)."""

    at: float
    path: str
    status: int


@dataclass
class Proxy:
    """Forwards to ``upstream``; ``ping_status`` set makes ``/ping`` answer that status itself,
    and ``fault`` (given a request's path) may answer in the server's place: ``(status, JSON body,
    headers)``, or ``None`` to forward the request."""

    upstream: str
    ping_status: int | None = None
    fault: Callable[[str], tuple[int, Any, dict[str, str]] | None] | None = None
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxy", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def count(self, prefix: str, since: float = 0.0, until: float = float("inf")) -> int:
        """Requests whose path starts with ``prefix``, received between ``since`` and ``until``."""
        return sum(1 for s in list(self.seen) if s.path.startswith(prefix) and since <= s.at <= until)

    def statuses(self, prefix: str, since: float = 0.0) -> list[int]:
        return [s.status for s in list(self.seen) if s.path.startswith(prefix) and s.at >= since]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/ping" and self.ping_status is not None:
            self.seen.append(Seen(time.monotonic(), path, self.ping_status))
            body = {"code": self.ping_status, "type": "InternalServerException", "message": "Unhealthy"}
            return web.json_response(body, status=self.ping_status)
        faked = self.fault(path) if self.fault is not None else None
        if faked is not None:
            status, body, extra = faked
            self.seen.append(Seen(time.monotonic(), path, status))
            return web.json_response(body, status=status, headers=extra)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            async with self._session.request(
                request.method, self.upstream + request.path_qs, data=await request.read(), headers=headers
            ) as reply:
                body = await reply.read()
                kept = {k: v for k, v in reply.headers.items() if k.lower() not in _HOP_BY_HOP}
                self.seen.append(Seen(time.monotonic(), path, reply.status))
                return web.Response(status=reply.status, reason=reply.reason, body=body, headers=kept)
        except aiohttp.ClientError:
            self.seen.append(Seen(time.monotonic(), path, 0))
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=502)

    def __enter__(self) -> Proxy:
        self._thread.start()

        async def start() -> str:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=150))
            app = web.Application(client_max_size=16 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None, handle_signals=False)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            return f"http://127.0.0.1:{port}"

        self.url = asyncio.run_coroutine_threadsafe(start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._runner is not None and self._session is not None
            await self._runner.cleanup()
            await self._session.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
