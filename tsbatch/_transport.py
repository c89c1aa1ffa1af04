"""The client's one seam to the network: an aiohttp session, errors translated.

Every HTTP request of :class:`~tsbatch.TorchServeClient` goes through
:meth:`Transport.request`, which returns the whole reply or raises
:class:`~tsbatch.TorchServeConnectionError`; no aiohttp exception gets past it.

A request first waits for one of the pool's connections, then gets its
timeout: time spent queued behind other requests of this client is not the
server's fault, and must not turn into a timeout that counts against it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from tsbatch._config import Timeouts, TLSConfig
from tsbatch._errors import TorchServeConnectionError


@dataclass(frozen=True)
class Reply:
    """A complete HTTP reply."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes


def _where(method: str, url: str) -> str:
    parts = urlsplit(url)
    return f"{method} {parts.scheme}://{parts.netloc}{parts.path}"


class Transport:
    """One pooled aiohttp session, created on first use inside the running loop."""

    def __init__(self, *, pool_size: int, timeouts: Timeouts, tls: TLSConfig) -> None:
        self._pool_size = pool_size
        self._timeouts = timeouts
        self._tls = tls
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(pool_size)  # made again with each session, on its loop

    def _ssl(self) -> ssl.SSLContext | bool:
        if self._tls.ca_bundle is not None:
            return ssl.create_default_context(cafile=str(self._tls.ca_bundle))
        return self._tls.verify

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._pool_size, limit_per_host=self._pool_size, ssl=self._ssl()
            )
            self._slots = asyncio.Semaphore(self._pool_size)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=self._timeouts.request, sock_connect=self._timeouts.connect
                ),
            )
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Reply:
        """Send one request and read the whole reply."""
        session = self._open()
        limits = session.timeout if timeout is None else aiohttp.ClientTimeout(total=timeout)
        where = _where(method, url)
        try:
            async with (
                self._slots,
                session.request(method, url, data=data, headers=headers, timeout=limits) as reply,
            ):
                body = await reply.read()
                return Reply(reply.status, reply.reason or "", dict(reply.headers), body)
        except TimeoutError as exc:
            limit = timeout if timeout is not None else self._timeouts.request
            raise TorchServeConnectionError(
                f"{where}: no reply within {limit:g}s", kind="timeout", url=url
            ) from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            raise TorchServeConnectionError(
                f"{where}: cannot connect, the server's certificate is not trusted "
                "(pass a CA bundle: TORCHSERVE_CA_BUNDLE or TLSConfig(ca_bundle=...))",
                kind="connect",
                url=url,
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise TorchServeConnectionError(
                f"{where}: cannot connect ({exc.os_error.strerror or type(exc).__name__})",
                kind="connect",
                url=url,
            ) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError) as exc:
            raise TorchServeConnectionError(
                f"{where}: connection lost before the reply was complete ({type(exc).__name__})",
                kind="reset",
                url=url,
            ) from exc
        except aiohttp.ClientError as exc:
            raise TorchServeConnectionError(
                f"{where}: {type(exc).__name__}", kind="connect", url=url
            ) from exc

    async def aclose(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def closed(self) -> bool:
        return self._session is None or self._session.closed
