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
502, 504                                               yes        yes              no
500 "Worker died."                                     yes        yes              no
other 5xx (507 out of resources, 500)                  no         yes              no
503 ``InternalServerException`` (handler failed)       no         no               no
200 with a body tsbatch cannot use                     no         yes              no
200 with an impossible prediction (NaN score, ...)     no         no               no
4xx (bad input, unknown model, bad token)              no         no               no
=====================================================  =========  ===============  ========

A full queue means "slow down", not "the server is down": it is retried and
shrinks the adaptive concurrency limit (:mod:`tsbatch._limit`), but never
opens the breaker.  A handler failure or an impossible prediction is about the
input, not the server's health, so it neither retries nor trips the breaker;
the engine isolates such inputs instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tsbatch._errors import CircuitOpenError, TorchServeConnectionError, TorchServeInferenceError
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


def assess(error: BaseException | None) -> Assessment:
    """Classify an outcome; ``None`` is a success."""
    if error is None or isinstance(error, CircuitOpenError):
        return _SUCCESS
    if isinstance(error, TorchServeConnectionError):
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
