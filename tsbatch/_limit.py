"""How many requests a batch run keeps in flight: a fixed number, or a limit that adapts.

The adaptive limit follows TCP's congestion window and the AIMD limit of
Netflix's concurrency-limits:

- it grows additively, by one for each limit's worth of successful requests
  (about one per round trip), while the run keeps at least half of it busy;
- it shrinks multiplicatively, by :data:`DECREASE`, on an overload signal: a
  503 "queue full", a 429, a timeout, or a recent latency (a moving average)
  above :data:`LATENCY_TOLERANCE` times its floor plus :data:`LATENCY_SLACK`.
  The floor is a low percentile of the latencies seen lately, which for a
  batching server is about one batch's time: the latency rises well above it
  only when requests queue up.  Latency alone never takes it below ``keep``
  (the estimate from the model's batching, which keeps one batch queued
  behind the one running, so its latency is high by design);
- it shrinks at most once per round trip: a signal from a request sent before
  the last decrease describes the old limit and is ignored;
- near the limit at which the server last said "overloaded" it grows
  :data:`PROBE_SLOWDOWN` times slower, as TCP CUBIC plateaus near its last
  window, so that a server with a small queue sees few 503s; well past it, the
  old limit is forgotten and growth is normal again.

It stays between 1 and a ceiling.  Waiters are served first come, first
served, so runs sharing one limit (a Dask worker's partitions) share it fairly.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from statistics import quantiles

from prometheus_client import Gauge

from tsbatch._resilience import Clock

#: Factor applied to the limit on an overload signal.
DECREASE = 0.75
#: A recent latency above this many times the floor (plus the slack) signals a queue building up.
LATENCY_TOLERANCE = 2.5
#: Seconds added to the tolerated latency, so that jitter on very fast replies is no signal.
LATENCY_SLACK = 0.01
#: Latency samples the floor is taken from, and the percentile taken (as a fraction).
LATENCY_WINDOW = 512
LATENCY_FLOOR_QUANTILE = 0.1
#: Weight of a new sample in the moving average of recent latency.
LATENCY_SMOOTHING = 0.05
_FLOOR_EVERY = 64
#: How much slower the limit grows between 0.9 and 1.25 times the limit that last overloaded the server.
PROBE_SLOWDOWN = 16
_PLATEAU = (0.9, 1.25)


class ConcurrencyLimit:
    """Slots for requests in flight; ``adaptive=False`` keeps the limit at ``initial``."""

    def __init__(
        self,
        initial: int,
        *,
        ceiling: int | None = None,
        keep: int = 1,
        adaptive: bool = True,
        clock: Clock = time.monotonic,
        gauge: Gauge | None = None,
    ) -> None:
        self.ceiling = max(1, initial if ceiling is None else ceiling)
        self.adaptive = adaptive
        self.keep = keep
        self._value = float(min(max(1, initial), self.ceiling))
        self._clock = clock
        self._gauge = gauge
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._decreased_at = -math.inf
        self._overloaded_at_limit = math.inf
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._floor = math.inf
        self._noted = 0
        self._recent: float | None = None
        self._publish()

    def __repr__(self) -> str:
        kind = "adaptive" if self.adaptive else "fixed"
        return (
            f"ConcurrencyLimit({kind}, limit={self.limit}, ceiling={self.ceiling}, "
            f"in_flight={self._in_flight})"
        )

    @property
    def limit(self) -> int:
        """Requests allowed in flight now."""
        return int(self._value)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def acquire(self) -> float:
        """Wait for a slot; returns the time the request goes out (give it to :meth:`release`)."""
        if self._in_flight < self.limit and not self._waiters:
            self._in_flight += 1
            return self._clock()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed a slot while being cancelled
                self._in_flight -= 1
                self._wake()
            else:
                self._waiters.remove(waiter)
            raise
        return self._clock()

    def release(self, sent_at: float, *, overload: bool = False, latency: float | None = None) -> None:
        """Free a slot, with what the request's outcome says about the server.

        ``overload`` for a queue-full reply, a 429 or a timeout; ``latency`` (seconds)
        for a success; neither for an outcome that says nothing of the load.
        """
        self._in_flight -= 1
        if self.adaptive:
            before = self.limit
            if latency is not None:
                self._note(latency)
            slow = not overload and self._too_slow()
            # Latency alone never takes the limit below keep; an overload signal can.
            lowest = float(min(self.keep, self.ceiling)) if slow else 1.0
            if overload or slow:
                if sent_at >= self._decreased_at and self._value > lowest:
                    self._overloaded_at_limit = self._value
                    self._value = max(lowest, self._value * DECREASE)
                    self._decreased_at = self._clock()
                    self._recent = None  # judge the new limit by its own latencies
            elif latency is not None and 2 * (self._in_flight + 1) >= self._value:
                self._grow()
            if self.limit != before:
                self._publish()
        self._wake()

    def _grow(self) -> None:
        step = 1.0 / self._value
        low, high = _PLATEAU
        if self._value > high * self._overloaded_at_limit:
            self._overloaded_at_limit = math.inf  # well past the old trouble: grow as usual
        elif self._value >= low * self._overloaded_at_limit:
            step /= PROBE_SLOWDOWN
        self._value = min(float(self.ceiling), self._value + step)

    def _too_slow(self) -> bool:
        return self._recent is not None and self._recent > self._floor * LATENCY_TOLERANCE + LATENCY_SLACK

    def _note(self, latency: float) -> None:
        window = self._latencies
        window.append(latency)
        self._noted += 1
        if self._noted % _FLOOR_EVERY == 0:
            self._floor = quantiles(window, n=100)[round(LATENCY_FLOOR_QUANTILE * 100) - 1]
        recent = self._recent
        self._recent = latency if recent is None else recent + LATENCY_SMOOTHING * (latency - recent)

    def _wake(self) -> None:
        while self._waiters and self._in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_flight += 1
                waiter.set_result(None)

    def _publish(self) -> None:
        if self._gauge is not None:
            self._gauge.set(self.limit)
