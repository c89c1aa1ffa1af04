"""The client's one seam to the network.

Every HTTP request of :class:`~tsbatch.TorchServeClient` is a :class:`Request`
given to a transport's ``send``, which returns the whole :class:`Reply` or
raises :class:`~tsbatch.TorchServeConnectionError`; no aiohttp exception gets
past it.  :class:`AiohttpTransport` talks to the network; :class:`MockTransport`
answers in-process, from a function, for tests (as httpx's ``MockTransport``).

:class:`AiohttpTransport` belongs to one event loop at a time.  It opens its
session on the loop it is first used on, and closes it when that loop shuts
down (``asyncio.run`` finalizes async generators before it closes the loop),
so a client can serve one ``asyncio.run`` after another.  Using it from a
second loop while the first still runs is refused with a clear error.

A request first waits for one of the pool's connections, then gets its
timeout: time spent queued behind other requests of this client is not the
server's fault, and must not turn into a timeout that counts against it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from tsbatch._errors import TorchServeConnectionError
from tsbatch._policies import Timeouts, TLSConfig


@dataclass(frozen=True)
class Request:
    """One HTTP request; ``timeout`` (seconds) overrides the transport's request timeout."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    timeout: float | None = None


@dataclass(frozen=True)
class Reply:
    """A complete HTTP reply."""

    status: int
    reason: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


class Transport(Protocol):
    """What sends the client's requests."""

    async def send(self, request: Request) -> Reply:
        """Send ``request`` and read the whole reply, or raise :class:`TorchServeConnectionError`."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class MockTransport:
    """Answers every request with ``handler(request)``, in-process, for tests.

    The handler returns a :class:`Reply` (or an awaitable of one), or raises
    :class:`~tsbatch.TorchServeConnectionError` to act out a network failure.
    """

    def __init__(self, handler: Callable[[Request], Reply | Awaitable[Reply]]) -> None:
        self._handler = handler

    async def send(self, request: Request) -> Reply:
        reply = self._handler(request)
        return await reply if inspect.isawaitable(reply) else reply

    async def aclose(self) -> None:
        return None


#: Parsed URLs kept (a run uses a handful; paging through models, more).
_URLS_KEPT = 256
#: A URL parsed once: a run sends many requests to a few URLs.
_parsed_url = functools.lru_cache(maxsize=_URLS_KEPT)(URL)


def _where(request: Request) -> str:
    parts = urlsplit(request.url)
    return f"{request.method} {parts.scheme}://{parts.netloc}{parts.path}"


class AiohttpTransport:
    """One pooled aiohttp session on the event loop in use."""

    def __init__(self, *, pool_size: int, timeouts: Timeouts, tls: TLSConfig) -> None:
        self._pool_size = pool_size
        self._timeouts = timeouts
        self._tls = tls
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._closer: AsyncGenerator[None, None] | None = None

    def _ssl(self) -> ssl.SSLContext | bool:
        if self._tls.ca_bundle is not None:
            return ssl.create_default_context(cafile=str(self._tls.ca_bundle))
        return self._tls.verify

    async def _open(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        session, slots = self._session, self._slots
        if session is not None and slots is not None and not session.closed and self._loop is loop:
            return session, slots
        if (
            session is not None
            and not session.closed
            and self._loop is not None
            and not self._loop.is_closed()
        ):
            raise RuntimeError(
                "this TorchServeClient is in use on another event loop; make one client per loop"
            )
        connector = aiohttp.TCPConnector(
            limit=self._pool_size, limit_per_host=self._pool_size, ssl=self._ssl()
        )
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._timeouts.request, sock_connect=self._timeouts.connect),
            cookie_jar=aiohttp.DummyCookieJar(),  # model servers set no cookies: none to look up per request
        )
        self._session, self._loop = session, loop
        self._slots = slots = asyncio.Semaphore(self._pool_size)
        self._closer = self._close_with_the_loop(session)
        await anext(self._closer)  # registered with the loop: closed when it shuts down
        return session, slots

    @staticmethod
    async def _close_with_the_loop(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await session.close()

    async def send(self, request: Request) -> Reply:
        """Send one request and read the whole reply."""
        session, slots = await self._open()
        timeout = request.timeout
        limits = session.timeout if timeout is None else aiohttp.ClientTimeout(total=timeout)
        url = _parsed_url(request.url)
        try:
            async with (
                slots,
                session.request(
                    request.method, url, data=request.body, headers=request.headers, timeout=limits
                ) as reply,
            ):
                body = await reply.read()
                return Reply(reply.status, reply.reason or "", reply.headers, body)
        except TimeoutError as exc:
            limit = timeout if timeout is not None else self._timeouts.request
            raise TorchServeConnectionError(
                f"{_where(request)}: no reply within {limit:g}s", kind="timeout", url=request.url
            ) from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            raise TorchServeConnectionError(
                f"{_where(request)}: cannot connect, the server's certificate is not trusted "
                "(pass a CA bundle: TORCHSERVE_CA_BUNDLE or TLSConfig(ca_bundle=...))",
                kind="tls",
                url=request.url,
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise TorchServeConnectionError(
                f"{_where(request)}: cannot connect ({exc.os_error.strerror or type(exc).__name__})",
                kind="connect",
                url=request.url,
            ) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError) as exc:
            raise TorchServeConnectionError(
                f"{_where(request)}: connection lost before the reply was complete ({type(exc).__name__})",
                kind="reset",
                url=request.url,
            ) from exc
        except aiohttp.ClientError as exc:
            raise TorchServeConnectionError(
                f"{_where(request)}: {type(exc).__name__}", kind="connect", url=request.url
            ) from exc

    @property
    def closed(self) -> bool:
        """Whether no session is open."""
        return self._session is None or self._session.closed

    async def aclose(self) -> None:
        """Close the session and its connections."""
        if self._session is not None and self._loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = None
        closer, self._closer = self._closer, None
        if closer is not None and self._loop is asyncio.get_running_loop():
            await closer.aclose()
