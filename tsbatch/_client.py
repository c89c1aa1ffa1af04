"""The asynchronous client: transport, tokens, breaker, retries and metrics around a protocol.

What goes on the wire, and what a reply means, is the protocol's business
(:mod:`tsbatch._protocols`); the network is the transport's
(:mod:`tsbatch._transport`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry

from tsbatch._auth import Tokens
from tsbatch._breaker import AsyncCircuitBreaker
from tsbatch._config import ClientConfig
from tsbatch._connection import with_connection
from tsbatch._errors import (
    TorchServeConnectionError,
    TorchServeError,
    TorchServeInferenceError,
)
from tsbatch._limit import ConcurrencyLimit
from tsbatch._mapping import ReplyMapping, ReplyShape
from tsbatch._metrics import client_metrics
from tsbatch._outage import Availability
from tsbatch._prepare import check_text, check_texts
from tsbatch._protocols import get_protocol
from tsbatch._protocols._base import Input
from tsbatch._sender import Sender
from tsbatch._transport import AiohttpTransport, Transport
from tsbatch._types import BatchResult, CallInfo, HealthStatus, InferResult, ModelInfo, PredictResult


class TorchServeClient:
    """An asyncio client for a model server's inference and management APIs.

    Use it as ``async with TorchServeClient() as client:``, or call
    :meth:`aclose` when done.  Settings come from ``config`` (default:
    :meth:`ClientConfig.from_env`), with the keyword arguments on top.
    ``transport`` replaces the network (:class:`~tsbatch.MockTransport` in
    tests); ``clock`` and ``sleep`` replace time.  A client serves one event
    loop at a time, and one ``asyncio.run`` after another.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        management_url: str | None = None,
        model: str | None = None,
        inference_token: str | None = None,
        management_token: str | None = None,
        key_file: str | Path | None = None,
        config: ClientConfig | None = None,
        registry: CollectorRegistry | None = None,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config = with_connection(
            config,
            url=url,
            management_url=management_url,
            model=model,
            inference_token=inference_token,
            management_token=management_token,
            key_file=key_file,
        )
        self._bases = {"inference": config.url.rstrip("/"), "management": config.management_url.rstrip("/")}
        self._protocol = get_protocol(config.protocol, config.model, config.tensors)
        self._tokens = Tokens(config.auth)
        self._clock = clock
        self._metrics = client_metrics(registry)
        self._transport = transport or AiohttpTransport(
            pool_size=config.pool_size, timeouts=config.timeouts, tls=config.tls
        )
        self._breaker = AsyncCircuitBreaker(config.breaker, clock=clock, metrics=self._metrics)
        self.availability = Availability(
            config.outage,
            self._breaker,
            clock=clock,
            sleep=sleep,
            metrics=self._metrics,
            ping=self._check_health,
        )
        self._sender = Sender(
            bases=self._bases,
            protocol=self._protocol,
            transport=self._transport,
            tokens=self._tokens,
            breaker=self._breaker,
            availability=self.availability,
            retry=config.retry,
            metrics=self._metrics,
            clock=clock,
            sleep=sleep,
        )
        self._limits: dict[tuple[str, str, str], ConcurrencyLimit] = {}
        self._health: HealthStatus | None = None
        self._health_check: asyncio.Future[HealthStatus] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        inference, management = self._bases["inference"], self._bases["management"]
        return (
            f"TorchServeClient(url={inference!r}, management_url={management!r}, "
            f"model={self.config.model!r}, breaker={self._breaker.state!r})"
        )

    async def __aenter__(self) -> TorchServeClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.availability.aclose()
        await self._transport.aclose()

    @property
    def breaker_state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"``."""
        return self._breaker.state

    def resilience_totals(self) -> tuple[int, float]:
        """Times the breaker opened, and seconds runs paused for the server, since the client was made."""
        return self._breaker.openings, self.availability.paused_seconds()

    def _bind_loop(self) -> None:
        """Forget what belonged to an earlier event loop (a script's earlier ``asyncio.run``)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._loop is not None and self._loop.is_running():
                raise RuntimeError(
                    "this TorchServeClient is in use on another event loop; make one client per loop"
                )
            self._loop = loop
            self._health_check = None
            self.availability.rebind()

    # -- limits of requests in flight, for batch runs ------------------------

    def adaptive_limit(
        self, key: tuple[str, str, str], initial: int, ceiling: int, *, keep: int = 1
    ) -> ConcurrencyLimit:
        """The adaptive limit of requests in flight shared by runs on this client for ``key``
        (model, version, mode): made from ``initial`` on first use; later runs keep what it
        has learned of the server and take the new ``ceiling`` and ``keep``."""
        limit = self._limits.get(key)
        if limit is None:
            limit = self._limits[key] = ConcurrencyLimit(
                initial, ceiling=ceiling, keep=keep, clock=self._clock, gauge=self._metrics.concurrency_limit
            )
        else:
            limit.ceiling, limit.keep = ceiling, keep
        return limit

    def fixed_limit(self, concurrency: int) -> ConcurrencyLimit:
        """A fixed limit of ``concurrency`` requests in flight, shown by the limit gauge."""
        return ConcurrencyLimit(concurrency, adaptive=False, gauge=self._metrics.concurrency_limit)

    # -- inference ------------------------------------------------------------

    async def predict(
        self,
        text: Input,
        *,
        model: str | None = None,
        version: str | None = None,
        reply: ReplyShape = "auto",
        labels: Sequence[str] | None = None,
    ) -> PredictResult:
        """Classify one text in its own request (the server batches requests itself).

        ``reply`` names the shape of the model's output (default: recognised),
        ``labels`` the classes of a probability vector; see :mod:`tsbatch._mapping`.
        """
        check_text(text, "text")
        mapping = ReplyMapping(reply, labels)
        outputs, name, info = await self._send([text], single=True, model=model, version=version)
        return PredictResult(mapping.prediction(outputs[0], name, version), info)

    async def predict_batch(
        self,
        texts: Sequence[Input],
        *,
        model: str | None = None,
        version: str | None = None,
        reply: ReplyShape = "auto",
        labels: Sequence[str] | None = None,
    ) -> BatchResult:
        """Classify a list of texts in one request, for handlers that accept lists (as :meth:`predict`)."""
        check_texts(texts)
        mapping = ReplyMapping(reply, labels)
        outputs, name, info = await self._send(list(texts), single=False, model=model, version=version)
        return BatchResult(mapping.predictions(outputs, name, version), info)

    async def infer(
        self, text: Input, *, model: str | None = None, version: str | None = None
    ) -> InferResult:
        """One text's raw output (a number, a list, an object: whatever the model returns), in its
        own request, for models that are not classifiers."""
        check_text(text, "text")
        outputs, _, info = await self._send([text], single=True, model=model, version=version)
        return InferResult(outputs, info)

    async def infer_batch(
        self, texts: Sequence[Input], *, model: str | None = None, version: str | None = None
    ) -> InferResult:
        """Each text's raw output, in one request (as :meth:`infer`)."""
        check_texts(texts)
        outputs, _, info = await self._send(list(texts), single=False, model=model, version=version)
        return InferResult(outputs, info)

    async def _send(
        self, texts: list[Input], *, single: bool, model: str | None, version: str | None
    ) -> tuple[list[Any], str, CallInfo]:
        """The texts' raw outputs, the model asked, and the call's facts."""
        self._bind_loop()
        name = model or self.config.model
        protocol, count = self._protocol, len(texts)
        started = self._clock()
        outputs, answered, attempts, overloads = await self._sender.send(
            "predict" if single else "predict_batch",
            protocol.predict(texts[0], name, version)
            if single
            else protocol.predict_list(texts, name, version),
            model=name,
            version=version,
            parse=(lambda answer: [protocol.read_output(answer, name, version)])
            if single
            else (lambda answer: protocol.read_outputs(answer, count, name, version)),
        )
        return outputs, name, CallInfo(self._clock() - started, attempts, answered.status, overloads)

    # -- health ----------------------------------------------------------------

    def is_healthy(self) -> bool:
        """The last known health, without I/O (``False`` before the first check)."""
        return self._health is not None and self._health.healthy

    async def health(self) -> HealthStatus:
        """The server's health check, cached for ``HEALTH_CHECK_INTERVAL``; concurrent callers share one."""
        self._bind_loop()
        cached = self._health
        if cached is not None and self._clock() - cached.checked_at < self.config.health.interval:
            return cached
        if self._health_check is None:
            self._health_check = asyncio.ensure_future(self._check_health())
        check = self._health_check
        try:
            return await asyncio.shield(check)
        finally:
            if check.done() and self._health_check is check:
                self._health_check = None

    async def _check_health(self) -> HealthStatus:
        return (await self.check())[0]

    async def check(self) -> tuple[HealthStatus, TorchServeError | None]:
        """A fresh health check (not cached), and the error behind a failed one.

        A refused token is tried once more after the key file is read again,
        as predictions are.
        """
        started = self._clock()
        status, code = "Unhealthy", "error"
        error: TorchServeError | None = None
        call = self._protocol.health()
        try:
            request = self._sender.request(call, self.config.health.timeout)
            reply = await self._transport.send(request)
            if self._protocol.key_refused(reply):
                self._tokens.reload()
                retried = self._sender.request(call, self.config.health.timeout)
                if retried.headers.get("Authorization") != request.headers.get("Authorization"):
                    reply = await self._transport.send(retried)
            code = str(reply.status)
            if reply.status == 200:
                status = self._protocol.read_health(reply)
            else:
                error = self._protocol.read_error(reply, None, None)
                status = error.error_type or f"HTTP {reply.status}"
        except (TorchServeConnectionError, TorchServeInferenceError) as exc:
            error = exc
            status = "Unreachable" if isinstance(exc, TorchServeConnectionError) else status
        latency = self._clock() - started
        self._metrics.requests.labels("health", code).inc()
        self._metrics.duration.labels("health").observe(latency)
        # Predictions speak for the connection: a health check only does while none were sent lately.
        if self._clock() - self._sender.predicted_at > self.config.health.interval:
            self._sender.show_connection(status != "Unreachable")
        healthy = error is None and status == "Healthy"
        # The server answered (an auth problem is not ill health): a probe may go out now.
        # A failed check never counts against the breaker: health is a hint, predictions decide.
        if healthy or (isinstance(error, TorchServeInferenceError) and error.status in (400, 401, 403)):
            self._breaker.server_answered()
        result = HealthStatus(healthy, status, self._clock(), latency, str(error) if error else None)
        self._health = result
        return result, error

    # -- management ------------------------------------------------------------

    async def get_model_info(self, model: str | None = None, version: str | None = None) -> ModelInfo:
        """Versions, batching, workers, queue and the handler's own description."""
        self._bind_loop()
        name = model or self.config.model
        replies = []
        for call in self._protocol.model_info(name, version):
            reply, *_ = await self._sender.send(
                "model_info", call, model=name, version=version, parse=lambda r: r
            )
            replies.append(reply)
        try:
            return self._protocol.read_model_info(replies, name, version)
        except (TypeError, ValueError, AttributeError) as exc:  # a description of an unexpected shape
            raise TorchServeInferenceError(
                f"management API described model {name!r} in a way tsbatch cannot read ({exc})",
                status=200,
                error_type="MalformedResponse",
                model=name,
                version=version,
            ) from None

    async def list_models(self) -> list[str]:
        """Names of every registered model, following the API's pages."""
        self._bind_loop()
        names: list[str] = []
        page: str | None = None
        while True:
            (found, page), *_ = await self._sender.send(
                "list_models", self._protocol.list_models(page), parse=self._protocol.read_models
            )
            names += found
            if page is None:
                return names
