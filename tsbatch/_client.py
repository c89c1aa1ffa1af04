"""The asynchronous TorchServe client."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast
from urllib.parse import quote

from prometheus_client import CollectorRegistry

from tsbatch._auth import Tokens
from tsbatch._config import ClientConfig
from tsbatch._errors import (
    CircuitOpenError,
    InputValidationError,
    TorchServeAuthError,
    TorchServeConnectionError,
    TorchServeError,
    TorchServeInferenceError,
)
from tsbatch._limit import ConcurrencyLimit
from tsbatch._metrics import client_metrics
from tsbatch._outage import Availability
from tsbatch._resilience import (
    INVALID_PREDICTION,
    AsyncCircuitBreaker,
    RetryBudget,
    assess,
    call_with_retries,
    parse_retry_after,
)
from tsbatch._transport import Reply, Transport
from tsbatch._types import BatchResult, CallInfo, HealthStatus, ModelInfo, Prediction, PredictResult

_PAGE_SIZE = 100
#: Characters of an unusable reply quoted in its error message.
_SNIPPET = 120
T = TypeVar("T")


class TorchServeClient:
    """An asyncio client for TorchServe's inference and management APIs.

    Use it as ``async with TorchServeClient() as client:``, or call
    :meth:`aclose` when done.  Settings come from ``config`` (default:
    :meth:`ClientConfig.from_env`), with the keyword arguments on top.
    ``clock`` and ``sleep`` replace time for tests.
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
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        config = config or ClientConfig.from_env()
        auth = dataclasses.replace(
            config.auth,
            inference_token=inference_token or config.auth.inference_token,
            management_token=management_token or config.auth.management_token,
            key_file=Path(key_file) if key_file is not None else config.auth.key_file,
        )
        self.config = dataclasses.replace(
            config,
            url=url or config.url,
            management_url=management_url or config.management_url,
            model=model or config.model,
            auth=auth,
        )
        config = self.config
        self._url = config.url.rstrip("/")
        self._management_url = config.management_url.rstrip("/")
        self._tokens = Tokens(config.auth)
        self._clock = clock
        self._sleep = sleep
        self._metrics = client_metrics(registry)
        self._transport = Transport(pool_size=config.pool_size, timeouts=config.timeouts, tls=config.tls)
        self._breaker = AsyncCircuitBreaker(config.breaker, clock=clock, metrics=self._metrics)
        self._budget = RetryBudget(config.retry, clock)
        self.availability = Availability(
            config.outage,
            self._breaker,
            clock=clock,
            sleep=sleep,
            metrics=self._metrics,
            ping=self._check_health,
        )
        self._limits: dict[tuple[str, str, str], ConcurrencyLimit] = {}
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._health: HealthStatus | None = None
        self._health_check: asyncio.Future[HealthStatus] | None = None
        self._predicted_at = -math.inf

    def __repr__(self) -> str:
        return (
            f"TorchServeClient(url={self._url!r}, management_url={self._management_url!r}, "
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

    def adaptive_limit(self, key: tuple[str, str, str], initial: int, ceiling: int) -> ConcurrencyLimit:
        """The adaptive limit of requests in flight shared by runs on this client for ``key``
        (model, version, mode).

        Made on first use from ``initial``; later runs keep what it has learned
        of the server and take the new ``ceiling``.
        """
        limit = self._limits.get(key)
        if limit is None:
            limit = self._limits[key] = ConcurrencyLimit(
                initial, ceiling=ceiling, clock=self._clock, gauge=self._metrics.concurrency_limit
            )
        else:
            limit.ceiling = ceiling
        return limit

    def fixed_limit(self, concurrency: int) -> ConcurrencyLimit:
        """A fixed limit of ``concurrency`` requests in flight, shown by the limit gauge."""
        return ConcurrencyLimit(concurrency, adaptive=False, gauge=self._metrics.concurrency_limit)

    # -- inference -------------------------------------------------------

    def _predictions_url(self, model: str | None, version: str | None) -> str:
        path = f"{self._url}/predictions/{quote(model or self.config.model, safe='')}"
        return f"{path}/{quote(version, safe='')}" if version else path

    async def predict(
        self, text: str, *, model: str | None = None, version: str | None = None
    ) -> PredictResult:
        """Classify one text in its own request (TorchServe batches on the server)."""
        _check_text(text, "text")
        name = model or self.config.model
        started = self._clock()
        prediction, reply, attempts, overloads = await self._send(
            "predict",
            "POST",
            self._predictions_url(model, version),
            api="inference",
            data=text.encode("utf-8"),
            content_type="text/plain; charset=utf-8",
            model=model,
            version=version,
            parse=lambda reply: _parse_prediction(_json(reply, name, version), name, version),
        )
        return PredictResult(prediction, CallInfo(self._clock() - started, attempts, reply.status, overloads))

    async def predict_batch(
        self, texts: Sequence[str], *, model: str | None = None, version: str | None = None
    ) -> BatchResult:
        """Classify a list of texts in one request, for handlers that accept lists."""
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise InputValidationError(f"texts must be a list of strings, got {type(texts).__name__}")
        if not texts:
            raise InputValidationError("texts is empty")
        for index, text in enumerate(texts):
            _check_text(text, f"texts[{index}]")
        name = model or self.config.model

        def parse(reply: Reply) -> list[Prediction]:
            body = _json(reply, name, version)
            if not isinstance(body, list) or len(body) != len(texts):
                got = f"{len(body)} predictions" if isinstance(body, list) else type(body).__name__
                raise TorchServeInferenceError(
                    f"model {name!r} answered {len(texts)} texts with {got}: {snippet(reply.body)}",
                    status=reply.status,
                    error_type="LengthMismatch",
                    model=name,
                    version=version,
                )
            return [_parse_prediction(item, name, version) for item in body]

        started = self._clock()
        predictions, reply, attempts, overloads = await self._send(
            "predict_batch",
            "POST",
            self._predictions_url(model, version),
            api="inference",
            data=json.dumps({"instances": list(texts)}).encode("utf-8"),
            content_type="application/json",
            model=model,
            version=version,
            parse=parse,
        )
        return BatchResult(predictions, CallInfo(self._clock() - started, attempts, reply.status, overloads))

    # -- health ----------------------------------------------------------

    def is_healthy(self) -> bool:
        """The last known health, without I/O (``False`` before the first check)."""
        return self._health is not None and self._health.healthy

    async def health(self) -> HealthStatus:
        """``GET /ping``, cached for ``HEALTH_CHECK_INTERVAL``; concurrent callers share one check."""
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

    async def reachable(self) -> bool:
        """Whether the inference API answers ``/ping`` at all now (healthy or not); not cached."""
        return (await self._check_health()).status != "Unreachable"

    async def _check_health(self) -> HealthStatus:
        started = self._clock()
        status, code = "Unhealthy", "error"
        error: TorchServeError | None = None
        connected = True
        try:
            reply = await self._transport.request(
                "GET",
                f"{self._url}/ping",
                headers=self._tokens.header("inference"),
                timeout=self.config.health.timeout,
            )
            code = str(reply.status)
            if reply.status == 200:
                body = _json(reply, None, None)
                status = str(body.get("status", "Unknown")) if isinstance(body, dict) else "Unknown"
            else:
                error = _error_from_reply(reply, None, None)
                status = error.error_type or f"HTTP {reply.status}"
        except (TorchServeConnectionError, TorchServeInferenceError) as exc:
            error = exc
            if isinstance(exc, TorchServeConnectionError):
                connected = False
                status = "Unreachable"
        latency = self._clock() - started
        self._metrics.requests.labels("health", code).inc()
        self._metrics.duration.labels("health").observe(latency)
        # Predictions speak for the connection: a ping only does while none were sent lately.
        if self._clock() - self._predicted_at > self.config.health.interval:
            self._metrics.connection_status.set(1 if connected else 0)
        healthy = error is None and status == "Healthy"
        # The server answered (an auth problem is not ill health): a probe may go out now.
        # A failed check never counts against the breaker: /ping is a hint, predictions decide.
        if healthy or (isinstance(error, TorchServeInferenceError) and error.status in (400, 401, 403)):
            self._breaker.server_answered()
        result = HealthStatus(healthy, status, self._clock(), latency, str(error) if error else None)
        self._health = result
        return result

    # -- management ------------------------------------------------------

    async def get_model_info(self, model: str | None = None, version: str | None = None) -> ModelInfo:
        """Versions, batching, workers, queue and the handler's own description."""
        name = model or self.config.model
        base = f"{self._management_url}/models/{quote(name, safe='')}"
        url = f"{base}/{quote(version, safe='')}" if version else base

        def first_entry(reply: Reply) -> dict[str, Any]:
            entries = _json(reply, name, version)
            if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
                raise TorchServeInferenceError(
                    f"management API answered model {name!r} with an unexpected body",
                    status=reply.status,
                    error_type="MalformedResponse",
                    model=name,
                    version=version,
                )
            return entries[0]

        def version_list(reply: Reply) -> list[str]:
            entries = _json(reply, name, None)
            return [str(e.get("modelVersion")) for e in entries if isinstance(e, dict)]

        entry, *_ = await self._send(
            "model_info",
            "GET",
            f"{url}?customized=true",
            api="management",
            model=name,
            version=version,
            parse=first_entry,
        )
        versions, *_ = await self._send(
            "model_info", "GET", f"{base}/all", api="management", model=name, parse=version_list
        )
        workers = entry.get("workers") or []
        queue = entry.get("jobQueueStatus") or {}
        description = entry.get("customizedMetadata")
        if isinstance(description, str):
            try:
                description = json.loads(description)
            except ValueError:
                description = {"text": description}
        return ModelInfo(
            name=str(entry.get("modelName", name)),
            version=str(entry.get("modelVersion", version or "")),
            versions=versions,
            batch_size=int(entry.get("batchSize", 1)),
            max_batch_delay_ms=int(entry.get("maxBatchDelay", 0)),
            workers_ready=sum(1 for w in workers if w.get("status") == "READY"),
            workers_total=len(workers),
            queue_remaining=queue.get("remainingCapacity"),
            queue_pending=queue.get("pendingRequests"),
            description=description if isinstance(description, dict) else None,
        )

    async def list_models(self) -> list[str]:
        """Names of every registered model, following the API's pages."""
        names: list[str] = []
        token: str | None = None
        while True:
            query = f"limit={_PAGE_SIZE}" + (f"&next_page_token={quote(token)}" if token else "")
            body, *_ = await self._send(
                "list_models",
                "GET",
                f"{self._management_url}/models?{query}",
                api="management",
                parse=lambda reply: _json(reply, None, None),
            )
            names += [str(m["modelName"]) for m in body.get("models", [])]
            token = body.get("nextPageToken")
            if not token:
                return names

    # -- the resilient exchange -------------------------------------------

    async def _send(
        self,
        method: str,
        http_method: str,
        url: str,
        *,
        api: str,
        data: bytes | None = None,
        content_type: str | None = None,
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
        name = model or self.config.model
        guarded = api == "inference"
        availability = self.availability

        async def attempt() -> tuple[T, Reply]:
            nonlocal attempts, overloads, retrying
            permit = self._breaker.admit() if guarded else None
            attempts += 1
            if retrying is not None:
                self._metrics.retries.labels(method, retrying).inc()
                retrying = None
            error: TorchServeError | None = None
            try:
                reply = await self._exchange(method, http_method, url, api, data, content_type)
                if reply.status != 200:
                    error = _error_from_reply(reply, name, version)
                else:
                    try:
                        result = parse(reply)
                    except TorchServeInferenceError as exc:
                        error = exc
            except TorchServeConnectionError as exc:
                if permit is not None:
                    self._breaker.record(permit, failure=True)
                    availability.failed(str(exc))
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
                    model=name,
                    version=version,
                )
            verdict = assess(error)
            overloads += verdict.overload
            if permit is not None:
                if verdict.breaker_failure:
                    self._breaker.record(permit, failure=True)
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
                attempt, policy=self.config.retry, budget=self._budget, sleep=self._sleep, on_retry=on_retry
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
            self._metrics.connection_status.set(1 if connected else 0)
            self._predicted_at = self._clock()

    async def _exchange(
        self, method: str, http_method: str, url: str, api: str, data: bytes | None, content_type: str | None
    ) -> Reply:
        """Send once, re-reading the key file once if the server refuses the key."""
        for first in (True, False):
            headers = self._tokens.header(api)
            if content_type:
                headers["Content-Type"] = content_type
            started = self._clock()
            try:
                reply = await self._transport.request(http_method, url, data=data, headers=headers)
            except TorchServeConnectionError:
                self._observe(method, api, "error", self._clock() - started, connected=False)
                raise
            self._observe(method, api, str(reply.status), self._clock() - started, connected=True)
            if first and reply.status == 400 and _error_type(reply) == "InvalidKeyException":
                self._tokens.reload()
                if self._tokens.header(api).get("Authorization") != headers.get("Authorization"):
                    continue
            return reply
        return reply


def _check_text(text: object, where: str) -> None:
    if not isinstance(text, str):
        raise InputValidationError(f"{where} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise InputValidationError(f"{where} is empty")


def _json(reply: Reply, model: str | None, version: str | None) -> Any:
    """The reply body as JSON; TorchServe sends 200 replies without a Content-Type."""
    try:
        return json.loads(reply.body)
    except ValueError:
        raise TorchServeInferenceError(
            f"reply is not JSON ({len(reply.body)} bytes): {snippet(reply.body)}",
            status=reply.status,
            error_type="MalformedResponse",
            model=model,
            version=version,
        ) from None


def _error_type(reply: Reply) -> str | None:
    try:
        body = json.loads(reply.body)
    except ValueError:
        return None
    return str(body["type"]) if isinstance(body, dict) and "type" in body else None


def _error_from_reply(reply: Reply, model: str | None, version: str | None) -> TorchServeInferenceError:
    """Turn an error reply into an exception with TorchServe's type and message."""
    error_type, message = None, reply.reason
    try:
        body = json.loads(reply.body) if reply.body else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        error_type = str(body.get("type")) if body.get("type") else None
        message = str(body.get("message") or message)
    where = f"model {model!r}" + (f" version {version!r}" if version else "") if model else "TorchServe"
    retry_after = parse_retry_after(reply.headers.get("Retry-After"))
    text = f"{where} answered {reply.status}" + (f" {error_type}" if error_type else "") + f": {message}"
    if error_type == "InvalidKeyException":
        return TorchServeAuthError(
            f"{where}: TorchServe refused the token ({message.rstrip('.')}); set the right token or key file",
            status=reply.status,
            error_type=error_type,
            model=model,
            version=version,
        )
    return TorchServeInferenceError(
        text,
        status=reply.status,
        error_type=error_type,
        model=model,
        version=version,
        retry_after=retry_after,
    )


def snippet(value: Any) -> str:
    """A short, printable excerpt of a reply or of one of its items, for error messages."""
    if isinstance(value, bytes):
        text = value.decode("utf-8", errors="replace")
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=True)
        except (TypeError, ValueError):
            text = repr(value)
    return repr(text if len(text) <= _SNIPPET else text[:_SNIPPET] + "...")


def _is_probability(value: Any) -> bool:
    kind = type(value)  # exact types: bool is not a score
    return (kind is float or kind is int) and 0.0 <= value <= 1.0  # NaN fails both comparisons


def _invalid(reason: str, item: Any, model: str | None, version: str | None) -> TorchServeInferenceError:
    return TorchServeInferenceError(
        f"{reason}: {snippet(item)}", status=200, error_type=INVALID_PREDICTION, model=model, version=version
    )


def _parse_prediction(item: Any, model: str | None, version: str | None) -> Prediction:
    """Read ``{"label", "score", "scores"}`` or a ``{class: probability}`` mapping.

    A reply of the right shape with an impossible value (a score that is NaN,
    infinite or outside 0..1, a label that is not text) is an ``InvalidPrediction``;
    a reply of another shape is a ``MalformedResponse``.
    """
    if type(item) is dict and "label" in item:
        label, score, scores = item["label"], item.get("score"), item.get("scores")
        if type(score) not in (float, int):
            raise _invalid("prediction has no numeric score", item, model, version)
        if not _is_probability(score):
            raise _invalid("prediction score is not a probability", item, model, version)
        if type(label) not in (str, int) or label == "":
            raise _invalid("prediction label is not a class name", item, model, version)
        if scores is None:
            return Prediction(str(label), float(cast(float, score)))
        if type(scores) is not dict or not all(_is_probability(v) for v in scores.values()):
            raise _invalid("prediction scores are not probabilities", item, model, version)
        return Prediction(
            str(label), float(cast(float, score)), {str(k): float(v) for k, v in scores.items()}
        )
    if isinstance(item, dict) and item and all(type(v) in (float, int) for v in item.values()):
        if not all(_is_probability(v) for v in item.values()):
            raise _invalid("class scores are not probabilities", item, model, version)
        scores = {str(k): float(v) for k, v in item.items()}
        best = max(scores, key=scores.__getitem__)
        return Prediction(best, scores[best], scores)
    raise TorchServeInferenceError(
        f"prediction has no label and score: {snippet(item)}",
        status=200,
        error_type="MalformedResponse",
        model=model,
        version=version,
    )
