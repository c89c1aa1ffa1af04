"""The resilient exchange: a protocol's calls sent through the transport.

Each call gets the token of its API, retries with backoff within the retry
budget, and, on the inference API, the circuit breaker's leave for every
attempt; its outcome feeds the breaker, the outage clock
(:mod:`tsbatch._outage`) and the metrics.  The management API has no breaker:
model info stays available while predictions are paused.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tsbatch._auth import Tokens
from tsbatch._breaker import AsyncCircuitBreaker
from tsbatch._errors import (
    CircuitOpenError,
    TorchServeConnectionError,
    TorchServeError,
    TorchServeInferenceError,
)
from tsbatch._metrics import ClientMetrics
from tsbatch._outage import Availability
from tsbatch._policies import RetryPolicy
from tsbatch._protocols import Call, InferenceProtocol
from tsbatch._resilience import Clock, assess
from tsbatch._retry import RetryBudget, call_with_retries
from tsbatch._transport import Reply, Request, Transport

T = TypeVar("T")


class Sender:
    """Sends calls, resiliently, and counts them."""

    def __init__(
        self,
        *,
        bases: dict[str, str],
        protocol: InferenceProtocol,
        transport: Transport,
        tokens: Tokens,
        breaker: AsyncCircuitBreaker,
        availability: Availability,
        retry: RetryPolicy,
        metrics: ClientMetrics,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._bases = bases
        self._protocol = protocol
        self._transport = transport
        self._tokens = tokens
        self._breaker = breaker
        self._availability = availability
        self._retry = retry
        self._budget = RetryBudget(retry, clock)
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}
        #: When a prediction request last got through to the server or failed to.
        self.predicted_at = -math.inf
        self._shown_up: bool | None = None

    def request(self, call: Call, timeout: float | None = None) -> Request:
        """The HTTP request for ``call``: the API's base URL, the token, the content type."""
        headers = self._tokens.header(call.api)
        if call.content_type:
            headers["Content-Type"] = call.content_type
        return Request(call.method, self._bases[call.api] + call.path, headers, call.body, timeout)

    async def send(
        self,
        method: str,
        call: Call,
        *,
        model: str | None = None,
        version: str | None = None,
        parse: Callable[[Reply], T],
    ) -> tuple[T, Reply, int, int]:
        """One call: retries around attempts, each guarded by the breaker on the inference API.

        ``parse`` turns a 200 reply into the result inside the attempt, so an
        unusable reply counts for the breaker.  Returns the result, the last
        reply, the requests sent and how many of them were answered with an
        overload signal.  A failed call's error carries the requests sent in
        ``attempts``.  The management API has no breaker: model info stays
        available while predictions are paused.
        """
        attempts = overloads = 0
        retrying: str | None = None  # the reason for the next attempt, counted once it is sent
        self._budget.deposit()
        guarded = call.api == "inference"
        availability = self._availability

        async def attempt() -> tuple[T, Reply]:
            nonlocal attempts, overloads, retrying
            permit = self._breaker.admit() if guarded else None
            attempts += 1
            if retrying is not None:
                self._metrics.retries.labels(method, retrying).inc()
                retrying = None
            error: TorchServeError | None = None
            try:
                reply = await self._exchange(method, call)
                if reply.status != 200:
                    error = self._protocol.read_error(reply, model, version)
                else:
                    try:
                        result = parse(reply)
                    except TorchServeInferenceError as exc:
                        error = exc
            except TorchServeConnectionError as exc:
                if permit is not None:
                    if assess(exc).breaker_failure:
                        self._breaker.record(permit, failure=True, cause=exc)
                        availability.failed(str(exc))
                    else:  # a certificate not trusted: a setting to fix, the server is fine
                        self._breaker.release(permit)
                raise
            except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                if permit is not None:
                    self._breaker.release(permit)
                raise
            except Exception as exc:  # a fault of this request alone must not abort the caller's run
                error = TorchServeInferenceError(
                    f"{method} failed unexpectedly: {type(exc).__name__}: {exc}",
                    status=0,
                    error_type="ClientError",
                    model=model,
                    version=version,
                )
            verdict = assess(error)
            overloads += verdict.overload
            if permit is not None:
                if verdict.breaker_failure:
                    self._breaker.record(permit, failure=True, cause=error)
                elif error is None:
                    self._breaker.record(permit, failure=False)
                else:
                    self._breaker.record_neutral(permit)
                if verdict.breaker_failure or verdict.overload:
                    availability.failed(str(error))
                else:
                    availability.succeeded()
            if error is not None:
                raise error
            return result, reply

        def on_retry(reason: str, _delay: float) -> None:
            nonlocal retrying
            retrying = reason

        try:
            result, reply = await call_with_retries(
                attempt, policy=self._retry, budget=self._budget, sleep=self._sleep, on_retry=on_retry
            )
        except TorchServeError as exc:
            exc.attempts = attempts
            if isinstance(exc, CircuitOpenError):
                self._metrics.requests.labels(method, "circuit_open").inc()
            raise
        return result, reply, attempts, overloads

    def _observe(self, method: str, api: str, status: str, seconds: float, *, connected: bool) -> None:
        """Count one request; label children are looked up once per (method, status)."""
        key = (method, status)
        children = self._children.get(key)
        if children is None:
            metrics = self._metrics
            children = (metrics.requests.labels(method, status), metrics.duration.labels(method))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if api == "inference":
            self.show_connection(connected)
            self.predicted_at = self._clock()

    def show_connection(self, up: bool) -> None:
        """Set ``torchserve_connection_status``; the gauge is only touched when it changes."""
        if up is not self._shown_up:
            self._shown_up = up
            self._metrics.connection_status.set(1 if up else 0)

    async def _exchange(self, method: str, call: Call) -> Reply:
        """Send once, reading the key file again once if the server refuses the key."""
        for first in (True, False):
            request = self.request(call)
            started = self._clock()
            try:
                reply = await self._transport.send(request)
            except TorchServeConnectionError:
                self._observe(method, call.api, "error", self._clock() - started, connected=False)
                raise
            self._observe(method, call.api, str(reply.status), self._clock() - started, connected=True)
            if first and self._protocol.key_refused(reply):
                self._tokens.reload()
                if self.request(call).headers.get("Authorization") != request.headers.get("Authorization"):
                    continue
            return reply
        return reply
