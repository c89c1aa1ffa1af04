"""The circuit breaker: pybreaker's state machine, driven around awaited calls.

pybreaker has no asyncio support: decorating a coroutine records a success
when the coroutine is made, not when it ends.  :class:`AsyncCircuitBreaker`
therefore drives pybreaker's state machine itself: admission and recording
are short synchronous sections under a lock of its own, never held across an
``await``, and the awaited call happens in between.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pybreaker

from tsbatch._errors import CircuitOpenError, TorchServeError
from tsbatch._metrics import BREAKER_STATE_VALUES, ClientMetrics
from tsbatch._policies import BreakerPolicy
from tsbatch._resilience import Clock


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
        self._last_failure: TorchServeError | None = None
        self._epoch = 0
        self._opened_at = 0.0
        self._probes = 0
        #: Times the breaker opened since it was made (a run reports its own share).
        self.openings = 0
        self._state = "closed"  # pybreaker's, as its listener last told it
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=policy.failure_threshold,
            reset_timeout=policy.recovery_timeout,
            listeners=[_StateListener(self)],
            throw_new_error_on_trip=False,
        )
        # Every use of pybreaker below happens under this lock, so that admission, the
        # state and the count of probes out change together.
        self._lock = threading.RLock()
        metrics.breaker_state.set(BREAKER_STATE_VALUES["closed"])

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"``."""
        return self._state

    @property
    def failure_count(self) -> int:
        return int(self._breaker.fail_counter)

    def _on_state_change(self, name: str) -> None:
        # Called by pybreaker with its lock held.
        self._epoch += 1
        self._probes = 0
        self._state = state = name.replace("-", "_")
        if state == "open":
            self._opened_at = self._clock()
            self.openings += 1
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
                        f"circuit breaker open after {self._policy.failure_threshold} failures in a row; "
                        f"the last: {self._last_failure}",
                        retry_in=wait,
                        cause=self._last_failure,
                    )
                self._breaker.half_open()
            if self.state == "half_open":
                if self._probes >= self._policy.half_open_probes:
                    raise CircuitOpenError(
                        f"circuit breaker half-open: a probe is testing the server; "
                        f"the last failure: {self._last_failure}",
                        retry_in=0.0,
                        cause=self._last_failure,
                    )
                self._probes += 1
                return Permit(self._epoch, probe=True)
            return Permit(self._epoch, probe=False)

    def record(self, permit: Permit, *, failure: bool, cause: TorchServeError | None = None) -> None:
        """Record the outcome of an admitted call (``cause``: the failure, for the breaker's message)."""
        with self._lock:
            if failure and cause is not None:
                self._last_failure = cause
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
