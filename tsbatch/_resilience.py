"""What a failed request means: is it retried, does it count against the breaker, does it
say the server is overloaded.

What counts, in one table (see :func:`assess`):

=====================================================  =========  ===============  ========
outcome                                                retried    breaker failure  overload
=====================================================  =========  ===============  ========
cannot connect, connection reset                       yes        yes              no
timeout                                                yes        yes              yes
429 Too Many Requests                                  yes        no               yes
503 ``ServiceUnavailableException`` (queue full)       yes        no               yes
502, 504, 503 without an error type (v1, v2)           yes        yes              no
500 "Worker died."                                     yes        yes              no
other 5xx (507 out of resources, 500)                  no         yes              no
503 ``InternalServerException`` (handler failed)       no         no               no
200 with a body tsbatch cannot use                     no         yes              no
200 with an impossible prediction (NaN score, ...)     no         no               no
4xx (bad input, unknown model, bad token)              no         no               no
=====================================================  =========  ===============  ========

The v1 and v2 protocols (KServe, Triton, MLServer) answer errors as
``{"error": "..."}`` without TorchServe's error types, so their statuses fall
into the same rows by number: a 503 (KServe: the model is not ready) is
retried and counts against the breaker, as a 502 does; a 500 (the model
raised) is not retried but counts; 400, 404 and 422 are about the request.
KServe drops the connection after a 500 without saying so, and the next
request on it is reset: that reset is retried like any other.

A full queue means "slow down", not "the server is down": it is retried and
shrinks the adaptive concurrency limit (:mod:`tsbatch._limit`), but never
opens the breaker.  A handler failure or an impossible prediction is about the
input, not the server's health, so it neither retries nor trips the breaker;
the engine isolates such inputs instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tsbatch._errors import (
    CircuitOpenError,
    OutageError,
    TorchServeAuthError,
    TorchServeConnectionError,
    TorchServeInferenceError,
)
from tsbatch._protocols._base import INVALID_PREDICTION

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

_RETRIED_STATUS = {429: "429", 502: "502", 503: "503", 504: "504"}


@dataclass(frozen=True)
class Assessment:
    """How an outcome is treated: the retry reason (``None``: no retry), whether it
    counts as a breaker failure, and whether it says the server is overloaded."""

    retry_reason: str | None
    breaker_failure: bool
    overload: bool = False


_SUCCESS = Assessment(None, False)
_OVERLOADED = Assessment("503", False, overload=True)


#: The values of ``ts_error_kind``: what kind of failure made a row an error.
ERROR_KINDS = (
    "bad_input",  # the text cannot be sent, or the model refused it (400, 413, a handler failure)
    "bad_reply",  # the server's answer cannot be used (not JSON, an impossible score, an unknown label)
    "auth",  # the token was refused
    "not_found",  # the model or version does not exist
    "overload",  # the server's queue stayed full (503, 429)
    "timeout",  # no reply in time
    "connection",  # the server could not be reached, or dropped the connection
    "tls",  # the server's certificate is not trusted
    "server",  # the server failed (5xx, a worker that died)
    "outage",  # the server stayed unavailable for the whole outage budget
    "internal",  # an unexpected fault in tsbatch
)


def error_kind(error: BaseException) -> str:
    """The :data:`ERROR_KINDS` value for ``error``: stable, for grouping failed rows."""
    if isinstance(error, OutageError):
        return "outage"
    if isinstance(error, CircuitOpenError):
        return error_kind(error.cause) if error.cause is not None else "connection"
    if isinstance(error, TorchServeConnectionError):
        return {"timeout": "timeout", "tls": "tls"}.get(error.kind, "connection")
    if isinstance(error, TorchServeAuthError):
        return "auth"
    if not isinstance(error, TorchServeInferenceError):
        return "internal"
    status = error.status
    if status == 0:
        return "internal"
    if status == 200:
        return "bad_reply"
    if status == 404:
        return "not_found"
    if status in (401, 403):
        return "auth"
    if assess(error).overload:
        return "overload"
    if status < 500 or (error.error_type == "InternalServerException" and status == 503):
        return "bad_input"  # 503 InternalServerException: the handler failed on this input
    return "server"


def assess(error: BaseException | None) -> Assessment:
    """Classify an outcome; ``None`` is a success."""
    if error is None or isinstance(error, CircuitOpenError):
        return _SUCCESS
    if isinstance(error, TorchServeConnectionError):
        if error.kind == "tls":  # a setting to fix: no retry helps, and the server is fine
            return _SUCCESS
        return Assessment(error.kind, True, overload=error.kind == "timeout")
    if isinstance(error, TorchServeInferenceError):
        status, kind = error.status, error.error_type
        if status == 503:
            if kind == "InternalServerException":
                return _SUCCESS
            if kind == "ServiceUnavailableException":
                return _OVERLOADED
        if status == 500 and "worker died" in str(error).lower():
            return Assessment("worker_died", True)
        if status == 429:
            return Assessment("429", False, overload=True)
        if status in _RETRIED_STATUS:
            return Assessment(_RETRIED_STATUS[status], True)
        if status == 200 and kind == INVALID_PREDICTION:
            return _SUCCESS
        if status >= 500 or status == 200:
            return Assessment(None, True)
    return _SUCCESS


def bisectable(error: BaseException) -> bool:
    """A whole-list failure that one input can cause: split the list to find it."""
    if not isinstance(error, TorchServeInferenceError) or isinstance(error, TorchServeAuthError):
        return False
    if error.status in (400, 413):
        return True
    if error.status == 503:
        return error.error_type == "InternalServerException"
    return error.status == 200 and error.error_type == "InvalidPrediction"


def fatal(error: BaseException) -> bool:
    """A failure no row can get past: the model does not exist, or the token is refused."""
    return error_kind(error) in ("not_found", "auth", "tls")
