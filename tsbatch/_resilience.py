"""Circuit breaker, retries and the retry budget.

What counts, in one table (see :func:`assess`):

=====================================================  =========  =================
outcome                                                retried    breaker failure
=====================================================  =========  =================
cannot connect, connection reset, timeout              yes        yes
429 Too Many Requests                                  yes        no
502, 503 ``ServiceUnavailableException``, 504          yes        yes
500 "Worker died."                                     yes        yes
other 5xx (507 out of resources, 500)                  no         yes
503 ``InternalServerException`` (handler failed)       no         no
200 with a body tsbatch cannot use                     no         yes
4xx (bad input, unknown model, bad token)              no         no
=====================================================  =========  =================

A handler failure is about the input, not the server's health, so it neither
retries nor trips the breaker; the engine isolates such inputs instead.

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
from typing import Any, TypeVar

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


@dataclass(frozen=True)
class Assessment:
    """How an outcome is treated: the retry reason (``None``: no retry) and breaker effect."""

    retry_reason: str | None
    breaker_failure: bool


def assess(error: BaseException | None) -> Assessment:
    """Classify an outcome; ``None`` is a success."""
    if error is None:
        return Assessment(None, False)
    if isinstance(error, CircuitOpenError):
        return Assessment(None, False)
    if isinstance(error, TorchServeConnectionError):
        return Assessment(error.kind, True)
    if isinstance(error, TorchServeInferenceError):
        status, kind = error.status, error.error_type
        if status == 503 and kind == "InternalServerException":
            return Assessment(None, False)
        if status == 500 and "worker died" in str(error).lower():
            return Assessment("worker_died", True)
        if status in _RETRIED_STATUS:
            return Assessment(_RETRIED_STATUS[status], status != 429)
        if status >= 500 or status == 200:
            return Assessment(None, True)
    return Assessment(None, False)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class RetryBudget:
    """A token bucket that caps retries to a share of requests.

    Every request deposits ``ratio`` tokens, time deposits ``min_per_second``,
    and a retry withdraws one; the balance starts at ``reserve`` and never
    exceeds it plus what the last second's requests earned, so a dead or
    overloaded server gets at most about ``ratio`` extra load.
    """

    def __init__(self, policy: RetryPolicy, clock: Clock) -> None:
        self._ratio = policy.budget_ratio
        self._per_second = policy.budget_min_per_second
        self._cap = max(policy.budget_reserve, 1.0)
        self._balance = policy.budget_reserve
        self._clock = clock
        self._updated = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._balance = min(self._cap, self._balance + (now - self._updated) * self._per_second)
        self._updated = now

    def deposit(self) -> None:
        """Record one request."""
        with self._lock:
            self._refill()
            self._balance = min(self._cap + self._ratio, self._balance + self._ratio)

    def try_withdraw(self) -> bool:
        """Take one retry token; ``False`` when the budget is spent."""
        with self._lock:
            self._refill()
            if self._balance >= 1.0:
                self._balance -= 1.0
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
    """

    def __init__(self, policy: BreakerPolicy, *, clock: Clock, metrics: ClientMetrics) -> None:
        self._policy = policy
        self._clock = clock
        self._metrics = metrics
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

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through."""
        with self._lock:
            if self.state != "open":
                return 0.0
            return max(0.0, self._opened_at + self._policy.recovery_timeout - self._clock())

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

    def release(self, permit: Permit) -> None:
        """Give back a permit whose call ended without an outcome (cancelled)."""
        with self._lock:
            if permit.settled:
                return
            permit.settled = True
            if permit.epoch == self._epoch and permit.probe:
                self._probes -= 1

    def record_neutral(self, permit: Permit) -> None:
        """Record an answer that says nothing of the server's health (a 4xx).

        A probe answered this way proves the server is up, so it closes the breaker.
        """
        if permit.probe:
            self.record(permit, failure=False)
        else:
            self.release(permit)

    def health_result(self, healthy: bool) -> None:
        """Feed a health check: a failure counts; a success while open allows a probe now."""
        with self._lock:
            if not healthy:
                if self.state == "closed":
                    self._feed(True)
            elif self.state == "open":
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
