"""Retries with backoff (tenacity), capped by attempts, total time and a retry budget.

A fresh tenacity controller serves each call: its retry state must not be
shared between coroutines.  In the testing mode (:func:`tsbatch.set_testing`)
nothing waits between attempts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_before_delay
from tenacity.stop import stop_base
from tenacity.wait import wait_random_exponential

from tsbatch._policies import RetryPolicy
from tsbatch._resilience import Clock, Sleep, assess
from tsbatch._testing import is_testing

T = TypeVar("T")


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


def backoff_delay(policy: RetryPolicy, number: int) -> float:
    """Seconds to wait before the ``number``-th repeat of something that failed:
    exponential with full jitter, as between the attempts of a call (0 when testing)."""
    if is_testing():
        return 0.0
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
    started = time.monotonic()
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
        if is_testing():
            return 0.0
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
        stop=(
            stop_after_attempt(policy.attempts)
            | stop_before_delay(max(0.0, policy.max_seconds - (time.monotonic() - started)))
            | _BudgetStop(budget)  # last: a token is only taken for a retry that will happen
        ),
        wait=wait,
        retry=retry_if_exception(lambda error: assess(error).retry_reason is not None),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    return await controller(replay_then_attempt)
