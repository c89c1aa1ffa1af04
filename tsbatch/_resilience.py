"""Circuit breaker, retries and the retry budget.

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

pybreaker has no asyncio support, so :class:`AsyncCircuitBreaker` drives its
state machine around the awaited call: admission and recording are short
synchronous sections under pybreaker's lock, never held across an ``await``.
"""

from __future__ import annotations

import contextlib
import email.utils
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import pybreaker
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_random_exponential

from tsbatch._config import BreakerPolicy, RetryPolicy
from tsbatch._errors import CircuitOpenError, TorchServeConnectionError, TorchServeInferenceError
from tsbatch._metrics import BREAKER_STATE_VALUES, ClientMetrics

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

_RETRIED_STATUS = {429: "429", 502: "502", 503: "503", 504: "504"}


#: The error type of an answer that is well-formed but cannot be a prediction (a NaN score, ...).
INVALID_PREDICTION = "InvalidPrediction"


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


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or HTTP date);
    ``None`` for a missing or malformed value."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is true, float("²") fails
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class RetryBudget:
    """Caps retries to a share of recent requests, as Finagle's and gRPC's budgets do.

    Within the last ``window`` seconds, retries may number ``ratio`` times the
    requests made plus ``min_per_second`` per second of the window.  A busy run
    therefore retries a burst of hundreds of failures, while a dead server,
    whose callers stop sending new requests, gets at most the small reserve.
    Counts are kept in ten slots of a tenth of the window each.
    """

    _SLOTS = 10

    def __init__(self, policy: RetryPolicy, clock: Clock) -> None:
        self._ratio = policy.budget_ratio
        self._reserve = policy.budget_min_per_second * policy.budget_window
        self._slot_seconds = policy.budget_window / self._SLOTS
        self._requests = [0] * self._SLOTS
        self._retries = [0] * self._SLOTS
        self._clock = clock
        self._slot = self._now_slot()
        self._lock = threading.Lock()

    def _now_slot(self) -> int:
        return int(self._clock() // self._slot_seconds)

    def _advance(self) -> int:
        """Forget the slots that left the window; returns the current slot's index."""
        now = self._now_slot()
        for slot in range(self._slot + 1, min(now, self._slot + self._SLOTS) + 1):
            self._requests[slot % self._SLOTS] = 0
            self._retries[slot % self._SLOTS] = 0
        self._slot = max(self._slot, now)
        return self._slot % self._SLOTS

    def deposit(self) -> None:
        """Record one request."""
        with self._lock:
            self._requests[self._advance()] += 1

    def try_withdraw(self) -> bool:
        """Take one retry; ``False`` when the budget is spent."""
        with self._lock:
            slot = self._advance()
            allowed = self._reserve + self._ratio * sum(self._requests) - sum(self._retries)
            if allowed >= 1.0:
                self._retries[slot] += 1
                return True
            return False


@dataclass
class Permit:
    """Leave to make one call; ``probe`` marks a half-open trial."""

    epoch: int
    probe: bool
    settled: bool = False


class _StateListener(pybreaker.CircuitBreakerListener):
    def __init__(self, owner: AsyncCircuitBreaker) -> None:
        self._owner = owner

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        self._owner._on_state_change(new_state.name)


class _Failure(Exception):
    """Stands in for an awaited call's failure when it is recorded in pybreaker."""


class AsyncCircuitBreaker:
    """pybreaker's state machine, driven around awaited calls.

    ``admit()`` decides synchronously whether a call may go out (at most
    ``half_open_probes`` at a time while half-open); the caller awaits its
    request and then ``record()``s the outcome, or ``release()``s the permit
    when it was cancelled, so a cancelled probe frees its place at once.
    Results of calls admitted before the last state change are ignored.
    ``on_change`` is called (synchronously, briefly) whenever the state
    changes or a probe's place frees up, so that waiters can look again.
    """

    def __init__(self, policy: BreakerPolicy, *, clock: Clock, metrics: ClientMetrics) -> None:
        self._policy = policy
        self._clock = clock
        self._metrics = metrics
        self.on_change: Callable[[], None] | None = None
        self._epoch = 0
        self._opened_at = 0.0
        self._probes = 0
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=policy.failure_threshold,
            reset_timeout=policy.recovery_timeout,
            listeners=[_StateListener(self)],
            throw_new_error_on_trip=False,
        )
        self._lock = self._breaker._lock
        metrics.breaker_state.set(BREAKER_STATE_VALUES["closed"])

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"``."""
        return str(self._breaker.current_state).replace("-", "_")

    @property
    def failure_count(self) -> int:
        return int(self._breaker.fail_counter)

    def _on_state_change(self, name: str) -> None:
        # Called by pybreaker with its lock held.
        self._epoch += 1
        self._probes = 0
        state = name.replace("-", "_")
        if state == "open":
            self._opened_at = self._clock()
            self._metrics.breaker_trips.inc()
        self._metrics.breaker_state.set(BREAKER_STATE_VALUES[state])
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through."""
        with self._lock:
            if self.state != "open":
                return 0.0
            return max(0.0, self._opened_at + self._policy.recovery_timeout - self._clock())

    def admission_wait(self) -> float | None:
        """Seconds until :meth:`admit` would let a call out: ``0.0`` now, ``None``
        when every probe's place is taken (the probes' outcome decides)."""
        with self._lock:
            state = self.state
            if state == "closed":
                return 0.0
            if state == "open":
                return max(0.0, self._opened_at + self._policy.recovery_timeout - self._clock())
            return 0.0 if self._probes < self._policy.half_open_probes else None

    def admit(self) -> Permit:
        """Let a call go out, or raise :class:`CircuitOpenError` without any I/O."""
        with self._lock:
            state = self.state
            if state == "closed":
                return Permit(self._epoch, probe=False)
            if state == "open":
                wait = self._opened_at + self._policy.recovery_timeout - self._clock()
                if wait > 0:
                    raise CircuitOpenError(
                        f"circuit breaker open after {self._policy.failure_threshold} consecutive "
                        f"failures; next probe in {wait:.1f}s",
                        retry_in=wait,
                    )
                self._breaker.half_open()
            if self.state == "half_open":
                if self._probes >= self._policy.half_open_probes:
                    raise CircuitOpenError(
                        "circuit breaker half-open: a probe is already testing the server", retry_in=0.0
                    )
                self._probes += 1
                return Permit(self._epoch, probe=True)
            return Permit(self._epoch, probe=False)

    def record(self, permit: Permit, *, failure: bool) -> None:
        """Record the outcome of an admitted call."""
        with self._lock:
            if permit.settled:
                return
            permit.settled = True
            if permit.epoch != self._epoch:
                return
            if permit.probe:
                self._probes -= 1
            elif not failure and self._breaker.fail_counter == 0:
                return  # a success with no failures to reset changes nothing
            self._feed(failure)
            if permit.probe and self.state == "half_open":
                self._changed()  # the probe's place is free again

    def release(self, permit: Permit) -> None:
        """Give back a permit whose call ended without an outcome (cancelled)."""
        with self._lock:
            if permit.settled:
                return
            permit.settled = True
            if permit.epoch == self._epoch and permit.probe:
                self._probes -= 1
                self._changed()

    def record_neutral(self, permit: Permit) -> None:
        """Record an answer that says nothing of the server's health (a 4xx).

        A probe answered this way proves the server is up, so it closes the breaker.
        """
        if permit.probe:
            self.record(permit, failure=False)
        else:
            self.release(permit)

    def server_answered(self) -> None:
        """A health check got an answer: while open, let a probe out now.

        Health is a hint: a failed check never counts against the breaker,
        since ``/ping`` can fail (another model is unhealthy, it is slow) while
        predictions work.
        """
        with self._lock:
            if self.state == "open":
                self._breaker.half_open()

    def _feed(self, failure: bool) -> None:
        if failure:
            with contextlib.suppress(_Failure, pybreaker.CircuitBreakerError):
                self._breaker.call(_raise_failure)
        else:
            self._breaker.call(_succeed)


def _raise_failure() -> None:
    raise _Failure


def _succeed() -> None:
    return None


def backoff_delay(policy: RetryPolicy, number: int) -> float:
    """Seconds to wait before the ``number``-th repeat of something that failed:
    exponential with full jitter, as between the attempts of a call."""
    state = RetryCallState(cast(Any, None), None, (), {})  # the wait strategy reads attempt_number only
    state.attempt_number = number
    return float(wait_random_exponential(multiplier=policy.backoff_initial, max=policy.backoff_max)(state))


class _BudgetStop(stop_base):
    """Stops retrying once the retry budget is spent; checked last, so a token
    is only taken for a retry that will happen."""

    def __init__(self, budget: RetryBudget) -> None:
        self._budget = budget

    def __call__(self, retry_state: RetryCallState) -> bool:
        return not self._budget.try_withdraw()


class _DeadlineStop(stop_base):
    """Stops when the next sleep would end past the call's deadline."""

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() + retry_state.upcoming_sleep > self._deadline


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    budget: RetryBudget,
    sleep: Sleep,
    on_retry: Callable[[str, float], None],
) -> T:
    """Run ``attempt`` until it succeeds, a non-retried error occurs, or a cap is hit.

    The first attempt runs directly, since most calls need no retry; only a
    retryable failure builds a tenacity controller, which replays that failure
    as its first attempt.  The controller is fresh for every call: tenacity's
    retry state must not be shared between coroutines.
    """
    deadline = time.monotonic() + policy.max_seconds
    try:
        return await attempt()
    except Exception as error:
        if policy.attempts == 1 or assess(error).retry_reason is None:
            raise
        first_failure: Exception | None = error

    async def replay_then_attempt() -> T:
        nonlocal first_failure
        if first_failure is not None:
            failure, first_failure = first_failure, None
            raise failure
        return await attempt()

    backoff = wait_random_exponential(multiplier=policy.backoff_initial, max=policy.backoff_max)

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return float(min(retry_after, policy.retry_after_cap))
        return float(backoff(state))

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        reason = assess(error).retry_reason or "unknown"
        on_retry(reason, state.upcoming_sleep)

    controller = AsyncRetrying(
        stop=(stop_after_attempt(policy.attempts) | _DeadlineStop(deadline) | _BudgetStop(budget)),
        wait=wait,
        retry=retry_if_exception(lambda error: assess(error).retry_reason is not None),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    return await controller(replay_then_attempt)
