"""Pausing a batch run while the server is unavailable, within an outage budget.

A batch run must not turn rows into errors because the server restarted.  When
the circuit breaker opens, the run's workers wait in :meth:`Availability.wait`
instead of failing: it returns as soon as the breaker would let a call out
again, and raises :class:`~tsbatch.OutageError` once predictions have been
unavailable for ``max_outage`` seconds in a row.  While anyone waits, ``/ping``
is polled with backoff; a ``/ping`` that answers lets the breaker's probe out
at once (instead of after the whole recovery timeout), and only the probe's
success resumes the run.

Unavailability is measured from the first failed prediction request after the
last one that succeeded; overload replies count as failures here, so a server
that answers nothing but "queue full" for the whole budget ends the run too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from tsbatch._breaker import AsyncCircuitBreaker
from tsbatch._errors import OutageError
from tsbatch._metrics import ClientMetrics
from tsbatch._policies import OutagePolicy
from tsbatch._resilience import Clock, Sleep

logger = logging.getLogger("tsbatch")


class Availability:
    """How long predictions have been failing, and the pause that waits it out."""

    def __init__(
        self,
        policy: OutagePolicy,
        breaker: AsyncCircuitBreaker,
        *,
        clock: Clock,
        sleep: Sleep,
        metrics: ClientMetrics,
        ping: Callable[[], Awaitable[object]],
    ) -> None:
        self.policy = policy
        self._breaker = breaker
        self._clock = clock
        self.sleep = sleep
        self._metrics = metrics
        self._ping = ping
        self._failing_since: float | None = None
        self._cause: str | None = None
        self._changed: asyncio.Event | None = None
        self._waiters = 0
        self._paused_at = 0.0
        self._paused_total = 0.0
        self._poller: asyncio.Task[None] | None = None
        breaker.on_change = self._wake

    @property
    def patient(self) -> bool:
        """Whether runs wait out an outage at all (``max_outage`` > 0)."""
        return self.policy.max_outage > 0

    @property
    def paused(self) -> bool:
        """Whether some caller is waiting for the server now."""
        return self._waiters > 0

    def paused_seconds(self) -> float:
        """Seconds callers have waited for the server since this was made, the pause now included."""
        now = max(0.0, self._clock() - self._paused_at) if self._waiters else 0.0
        return self._paused_total + now

    def unavailable_for(self) -> float:
        """Seconds since predictions started failing; 0 while they work."""
        return 0.0 if self._failing_since is None else self._clock() - self._failing_since

    def succeeded(self) -> None:
        """A prediction request got a usable answer: any outage is over."""
        self._failing_since = None

    def failed(self, cause: str) -> None:
        """A prediction request failed for a reason a retry may fix."""
        if self._failing_since is None:
            self._failing_since = self._clock()
        self._cause = cause

    def check(self) -> None:
        """Raise :class:`OutageError` when the outage budget is spent."""
        unavailable = self.unavailable_for()
        if self._failing_since is not None and unavailable >= self.policy.max_outage:
            raise OutageError(
                f"server unavailable for longer than max_outage ({self.policy.max_outage:g} s); "
                f"last failure: {self._cause}",
                unavailable_s=unavailable,
                cause=self._cause,
            )

    async def wait(self) -> None:
        """Return when the breaker would let a call out; raise :class:`OutageError`
        when the outage budget is spent first."""
        if self._failing_since is None:
            self._failing_since = self._clock()  # refused by the breaker: unavailable from now on
        self._enter()
        try:
            while True:
                changed = self._event()
                wait = self._breaker.admission_wait()
                if wait == 0.0:
                    return
                self.check()
                remaining = self.policy.max_outage - self.unavailable_for()
                await self._until(changed, remaining if wait is None else min(wait, remaining))
        finally:
            self._leave()

    def rebind(self) -> None:
        """Forget the event and the poller of an earlier event loop."""
        self._changed = None
        self._poller = None

    async def aclose(self) -> None:
        """Stop polling ``/ping``."""
        if self._poller is not None and not self._poller.done():
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _until(self, changed: asyncio.Event, seconds: float) -> None:
        """Wait for ``changed`` or for ``seconds``, whichever comes first."""
        sleeping = asyncio.ensure_future(self.sleep(max(0.0, seconds)))
        waking = asyncio.ensure_future(changed.wait())
        try:
            await asyncio.wait((sleeping, waking), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeping, waking):
                task.cancel()

    def _enter(self) -> None:
        self._waiters += 1
        if self._waiters == 1:
            self._paused_at = self._clock()
            self._metrics.paused.set(1)
            logger.warning(
                "server unavailable (%s): pausing, for at most %g s in all",
                self._cause,
                self.policy.max_outage,
            )
        if self._poller is None or self._poller.done():
            self._poller = asyncio.ensure_future(self._poll())

    def _leave(self) -> None:
        self._waiters -= 1
        if self._waiters == 0:
            paused = max(0.0, self._clock() - self._paused_at)
            self._paused_total += paused
            self._metrics.paused.set(0)
            self._metrics.paused_seconds.inc(paused)
            logger.warning("pause over after %.1f s", paused)

    async def _poll(self) -> None:
        """While callers wait on an open breaker, check health with backoff.

        A check the server answers lets the breaker's probe out at once
        (:meth:`AsyncCircuitBreaker.server_answered`).
        """
        interval = self.policy.poll_initial
        while self._waiters:
            await self.sleep(interval)
            if not self._waiters:
                return
            if self._breaker.state == "open":
                await self._ping()
            interval = min(interval * 2, self.policy.poll_max)
