"""The sending loop of a batch run: worker tasks, the concurrency limit, pauses and second tries.

Worker tasks take the next row (or batch, in list mode), then a place of the
concurrency limit (:mod:`tsbatch._limit`), and send it until it has an
outcome.  A failure that a retry may fix sends it again after a backoff; an
open breaker pauses the worker (:mod:`tsbatch._outage`); a list failed by one
of its texts is split in halves until the text is found.  A row becomes an
error only for what no retry can fix, after ``row_attempts`` failed requests,
or when the outage budget is spent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tsbatch._client import TorchServeClient
from tsbatch._errors import (
    CircuitOpenError,
    OutageError,
    TorchServeError,
    TorchServeInferenceError,
)
from tsbatch._limit import ConcurrencyLimit
from tsbatch._mapping import ReplyMapping
from tsbatch._options import ClassifyOptions
from tsbatch._outcomes import BatchRecord, Progress, RowOutcome, Task
from tsbatch._prepare import Plan
from tsbatch._protocols._base import Input, snippet
from tsbatch._resilience import assess, bisectable, error_kind, fatal
from tsbatch._retry import backoff_delay
from tsbatch._types import CallInfo

logger = logging.getLogger("tsbatch")


def _as_error(exc: Exception) -> TorchServeError:
    """``exc`` as a tsbatch error: anything unexpected becomes that request's error."""
    if isinstance(exc, TorchServeError):
        return exc
    logger.warning("unexpected error while classifying: %r", exc, exc_info=exc)
    return TorchServeInferenceError(f"unexpected error: {type(exc).__name__}: {exc}", status=0)


@dataclass(slots=True)
class _Tried:
    """What was sent for one unit of work (a row, or a list of rows) so far."""

    attempts: int = 0
    retries: int = 0
    calls: int = 0
    failed: int = 0  # requests that failed for reasons other than overload

    def count(self, attempts: int, record: BatchRecord) -> None:
        """Count one call's requests here and in its batch's record."""
        retries = max(0, attempts - 1)
        self.attempts += attempts
        self.retries += retries
        self.calls += int(attempts > 0)
        record.attempts += attempts
        record.retries += retries


class Run:
    """The state of one engine run."""

    def __init__(
        self,
        client: TorchServeClient,
        plan: Plan,
        options: ClassifyOptions,
        row_attempts: int,
        progress: Progress,
        limit: ConcurrencyLimit,
        classes: list[str] | None,
        stop: asyncio.Event | None,
        task: Task = "classify",
        all_sent: asyncio.Event | None = None,
    ) -> None:
        self.client = client
        self.task = task
        self.prepared = prepared = plan.prepared
        self.batches = batches = plan.batches
        sizes = plan.sizes
        self.options = options
        self.row_attempts = row_attempts
        self.progress = progress
        self.limit = limit
        self.classes = set(classes) if classes else None
        # A probability vector's class names: the options', else the model's own, in order.
        named = classes if classes and all(isinstance(c, str) for c in classes) else None
        self.mapping = ReplyMapping(options.reply, options.labels or named)
        self.availability = client.availability
        self.retry_policy = client.config.retry
        self.outage: OutageError | None = None
        self.fatal: TorchServeError | None = None
        self.stop = stop or asyncio.Event()
        self.all_sent = all_sent or asyncio.Event()
        self.results: list[RowOutcome | None] = [None] * len(prepared.texts)
        self.records = [
            BatchRecord(
                batch_id=b,
                rows=sum(prepared.counts[i] for i in batch),
                bytes=size,
            )
            for b, (batch, size) in enumerate(zip(batches, sizes, strict=True))
        ]
        self._open: dict[int, int] = {b: len(batch) for b, batch in enumerate(batches)}
        self._started: dict[int, float] = {}

    @property
    def finished(self) -> bool:
        """Asked to stop, or the outage budget is spent: take no more work."""
        return self.outage is not None or self.fatal is not None or self.stop.is_set()

    def _start(self, batch_id: int) -> None:
        if batch_id not in self._started:
            self._started[batch_id] = time.monotonic()
            self.records[batch_id].started_at = time.time()

    def settle(
        self, batch_id: int, indexes: Sequence[int], outcomes: Sequence[RowOutcome], retries: int
    ) -> None:
        record = self.records[batch_id]
        rows = errors = 0
        counts = self.prepared.counts
        for index, outcome in zip(indexes, outcomes, strict=True):
            self.results[index] = outcome
            count = counts[index]
            rows += count
            if outcome.status == "error":
                errors += count
                record.error = record.error or outcome.error
        self.progress.advance(rows, errors, retries)
        self._open[batch_id] -= len(indexes)
        if self._open[batch_id] == 0:
            record.ended_at = time.time()
            record.latency_ms = (time.monotonic() - self._started.get(batch_id, time.monotonic())) * 1000
            record.concurrency_limit = self.limit.limit
            statuses = {self.results[i].status for i in self.batches[batch_id]}  # type: ignore[union-attr]
            record.status = "ok" if statuses == {"ok"} else ("error" if statuses == {"error"} else "partial")

    async def run(self, mode: Literal["rows", "list"]) -> None:
        items: Iterator[tuple[int, list[int]]]
        if mode == "rows":
            items = ((b, [i]) for b, batch in enumerate(self.batches) for i in batch)
        else:
            items = iter(enumerate(self.batches))
        single = mode == "rows"

        async def worker() -> None:
            # The item is taken before a place in flight: once every item is taken, no worker
            # waits for a place any more, so runs that share the limit never wait on each other.
            while not self.finished:
                item = next(items, None)
                if item is None:
                    break
                await self._send(item[0], item[1], None, single=single)
            self.all_sent.set()

        units = len(self.prepared.texts) if single else len(self.batches)
        reporter = asyncio.ensure_future(self._report()) if self.progress.on_update else None
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.limit.ceiling, max(1, units))):
                    group.create_task(worker())
        finally:
            if reporter is not None:
                reporter.cancel()

    async def _report(self) -> None:
        """Refresh the progress display once a second: the limit, and the pause while paused."""
        progress = self.progress
        while True:
            await asyncio.sleep(1.0)
            progress.limit = self.limit.limit
            progress.paused_s = self.availability.unavailable_for() if self.availability.paused else None
            if progress.on_update is not None:
                progress.on_update(progress, 0)

    async def _send(
        self, batch_id: int, indexes: list[int], sent_at: float | None, *, single: bool, carried: int = 0
    ) -> None:
        """Send the texts at ``indexes`` (one request; one text in rows mode) until each has an outcome.

        ``sent_at`` is the slot already taken for the first request, if any;
        ``carried`` the requests that already carried these texts (a list split in two).
        """
        self._start(batch_id)
        texts: list[Input] = [self.prepared.texts[i] for i in indexes]
        record = self.records[batch_id]
        tried = _Tried(attempts=carried)
        while True:
            if sent_at is None:
                sent_at = await self.limit.acquire()
                if self.finished:
                    self.limit.release(sent_at)
                    self._abandon(batch_id, indexes, tried)
                    return
            try:
                predictions, call = await self._call(texts, single)
            except Exception as exc:
                error = _as_error(exc)
                self.limit.release(sent_at, overload=assess(error).overload)
                sent_at = None
                tried.count(error.attempts, record)
                if len(indexes) > 1 and bisectable(error):
                    middle = len(indexes) // 2
                    self.progress.retries += tried.retries
                    await self._send(batch_id, indexes[:middle], None, single=single, carried=tried.attempts)
                    await self._send(batch_id, indexes[middle:], None, single=single, carried=tried.attempts)
                    return
                if fatal(error):
                    self.fatal = self.fatal or error
                    return
                try:
                    again = await self._recover(error, tried)
                except OutageError as outage:
                    self.outage = self.outage or outage
                    self._fail(batch_id, indexes, self.outage, tried, str(self.outage))
                    return
                if again is None:  # asked to stop while waiting
                    return
                if not again:
                    self._fail(batch_id, indexes, error, tried, self._reason(error, tried))
                    return
                continue
            self.limit.release(
                sent_at,
                overload=call.overloads > 0,
                latency=call.latency_s if call.attempts == 1 else None,
            )
            tried.count(call.attempts, record)
            outcomes = self._outcomes(predictions, batch_id, tried.attempts, call.latency_s * 1000)
            self.settle(batch_id, indexes, outcomes, tried.retries)
            return

    async def _call(self, texts: list[Input], single: bool) -> tuple[list[Any], CallInfo]:
        """One request for ``texts`` (already checked by :mod:`tsbatch._prepare`): their
        predictions, or their raw outputs for the ``predict`` task."""
        options = self.options
        outputs, name, call = await self.client._send(
            texts, single=single, model=options.model, version=options.version
        )
        if self.task == "predict":
            return outputs, call
        return self.mapping.rows(outputs, name, options.version), call

    def _outcomes(
        self, predictions: list[Any], batch_id: int, attempts: int, latency_ms: float
    ) -> list[RowOutcome]:
        if self.task == "predict":
            return [
                RowOutcome("ok", batch_id=batch_id, attempts=attempts, latency_ms=latency_ms, output=p)
                for p in predictions
            ]
        classes = self.classes
        return [
            RowOutcome("ok", label, score, scores, None, batch_id, attempts, latency_ms)
            if classes is None or label in classes
            else RowOutcome(
                "error",
                error=f"label {label!r} is not one of the model's classes: "
                f"{snippet({'label': label, 'score': score})}",
                batch_id=batch_id,
                attempts=attempts,
                latency_ms=latency_ms,
                error_kind="bad_reply",
            )
            for label, score, scores in predictions
        ]

    def _reason(self, error: TorchServeError, tried: _Tried) -> str:
        """An error row's message: the error, and that the row's attempts ran out when they did."""
        if tried.failed >= self.row_attempts:
            return f"{error} (gave up: the row's requests failed {self.row_attempts} times)"
        return str(error)

    async def _recover(self, error: TorchServeError, tried: _Tried) -> bool | None:
        """Wait until ``error``'s texts may be sent again: ``True`` to send them again,
        ``False`` to give up, ``None`` when asked to stop meanwhile.

        Raises :class:`OutageError` when the outage budget is spent.
        """
        availability = self.availability
        if not availability.patient:
            return False
        if isinstance(error, CircuitOpenError):
            return await self._unless_stopped(availability.wait())
        verdict = assess(error)
        if verdict.retry_reason is None:
            return False
        if not verdict.overload:
            tried.failed += error.attempts
            if tried.failed >= self.row_attempts:
                return False
        availability.check()
        delay = backoff_delay(self.retry_policy, max(1, tried.calls))
        return await self._unless_stopped(availability.sleep(delay))

    async def _unless_stopped(self, wait: Awaitable[None]) -> bool | None:
        """Await ``wait``; ``None`` if the run is asked to stop first."""
        if self.stop.is_set():
            return None
        waiting = asyncio.ensure_future(wait)
        stopping = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait((waiting, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not waiting.done():
                waiting.cancel()
        if waiting.done() and not waiting.cancelled():
            waiting.result()  # raises OutageError
            return True
        return None

    def _fail(
        self, batch_id: int, indexes: list[int], error: TorchServeError, tried: _Tried, message: str
    ) -> None:
        outcome = RowOutcome(
            "error", error=message, batch_id=batch_id, attempts=tried.attempts, error_kind=error_kind(error)
        )
        self.settle(batch_id, indexes, [outcome] * len(indexes), tried.retries)

    def _abandon(self, batch_id: int, indexes: list[int], tried: _Tried) -> None:
        """The run ended while these texts waited: after an outage, texts already sent say so."""
        if self.outage is not None and tried.attempts:
            self._fail(batch_id, indexes, self.outage, tried, str(self.outage))

    def settle_unsent(self) -> int:
        """After an outage: every text not yet done becomes an error row; returns how many rows."""
        assert self.outage is not None
        unsent = [i for i, result in enumerate(self.results) if result is None]
        outcome = RowOutcome("error", error=str(self.outage), attempts=0, error_kind="outage")
        for batch_id, batch in enumerate(self.batches):
            waiting = [i for i in batch if self.results[i] is None]
            if waiting:
                self.settle(
                    batch_id, waiting, [dataclasses.replace(outcome, batch_id=batch_id)] * len(waiting), 0
                )
        return sum(self.prepared.counts[i] for i in unsent)
