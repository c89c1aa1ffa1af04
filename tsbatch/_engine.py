"""The batch engine: validate a column of values, batch it, fan it out, gather results.

Every input position ends in exactly one :class:`RowOutcome`: ``ok`` with a
prediction, ``error`` with a message, or ``skipped`` (missing values are not
sent).  Identical texts are sent once.  Worker tasks pull work as the
concurrency limit (:mod:`tsbatch._limit`) lets them, so memory stays flat
however long the column is.

A batch run is patient (unless ``max_outage`` is 0): a transient failure
never ends a row by itself.  While the circuit breaker is open the workers
wait (:mod:`tsbatch._outage`); a request that failed for a reason a retry may
fix is sent again after a backoff; a full queue shrinks the limit.  A row
becomes an error only for what no retry can fix (bad input, a refused
token), when its own requests failed ``row_attempts`` times, or when the
server stayed unavailable for the whole outage budget: then the run ends and
every row not yet done says so.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tsbatch._client import TorchServeClient, snippet
from tsbatch._config import DEFAULT_MAX_TEXT_LENGTH, EngineConfig
from tsbatch._errors import (
    CircuitOpenError,
    ConfigError,
    OutageError,
    TorchServeAuthError,
    TorchServeError,
    TorchServeInferenceError,
)
from tsbatch._limit import ConcurrencyLimit
from tsbatch._resilience import assess, backoff_delay
from tsbatch._types import CallInfo, ModelInfo, Prediction

logger = logging.getLogger("tsbatch")

Mode = Literal["auto", "rows", "list"]
LongText = Literal["truncate", "error"]
NonString = Literal["convert", "error"]

#: Requests in flight when the model's info cannot be read.
FALLBACK_CONCURRENCY = 32
#: JSON overhead of one text inside ``{"instances": [...]}`` besides its own bytes.
_LIST_ITEM_OVERHEAD = 8
#: Estimated reply bytes per row: label, score and one entry per class.
_REPLY_BASE_BYTES = 64
_REPLY_BYTES_PER_CLASS = 32
_UNKNOWN_CLASS_COUNT = 100


class Stopped(Exception):
    """The run was asked to stop before every text was sent."""


@dataclass(frozen=True, slots=True)
class RowOutcome:
    """What happened to one input position."""

    status: Literal["ok", "error", "skipped"]
    prediction: Prediction | None = None
    error: str | None = None
    batch_id: int | None = None
    attempts: int | None = None
    latency_ms: float | None = None
    truncated: bool = False


@dataclass(slots=True)
class BatchRecord:
    """Metrics of one batch."""

    batch_id: int
    rows: int
    bytes: int
    started_at: float = math.nan
    ended_at: float = math.nan
    latency_ms: float = math.nan
    attempts: int = 0
    retries: int = 0
    status: str = "pending"
    error: str | None = None
    concurrency_limit: int = 0


@dataclass(frozen=True)
class EngineResult:
    """Outcomes aligned with the input positions, and one record per batch.

    ``concurrency`` is the limit of requests in flight the run started with
    (``adaptive``: it then moved with the server's load); ``outage`` says why
    the run ended early when the server stayed unavailable for the whole
    outage budget.
    """

    rows: list[RowOutcome]
    batches: list[BatchRecord]
    model: str
    version: str | None
    mode: Literal["rows", "list"]
    concurrency: int
    adaptive: bool = False
    outage: str | None = None


@dataclass(frozen=True, kw_only=True)
class ClassifyOptions:
    """What to classify with, and what to do with awkward input."""

    model: str | None = None
    version: str | None = None
    mode: Mode = "auto"
    long_text: LongText = "truncate"
    non_string: NonString = "convert"
    engine: EngineConfig = field(default_factory=EngineConfig.from_env)

    def __post_init__(self) -> None:
        for name, allowed in (
            ("mode", ("auto", "rows", "list")),
            ("long_text", ("truncate", "error")),
            ("non_string", ("convert", "error")),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")


@dataclass
class Progress:
    """Counters a progress display reads; ``on_update`` is called after each item,
    and about once a second while a run goes on (with 0 rows)."""

    total: int = 0
    done: int = 0
    errors: int = 0
    retries: int = 0
    limit: int = 0
    paused_s: float | None = None
    on_update: Callable[[Progress, int], None] | None = None

    def advance(self, rows: int, errors: int, retries: int = 0) -> None:
        self.done += rows
        self.errors += errors
        self.retries += retries
        if self.on_update is not None:
            self.on_update(self, rows)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, pd.NA and NaT compare unequal to themselves
    except (TypeError, ValueError):
        return False


def _to_text(value: Any, policy: NonString) -> str:
    """The text to send for ``value``, or ``ValueError`` saying why there is none."""
    if isinstance(value, str):
        return value
    if policy == "error":
        raise ValueError(f"value is {type(value).__name__}, not text (non_string='error')")
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("bytes value is not UTF-8 text") from None
    if isinstance(value, bool | int | float) or type(value).__module__ == "numpy":
        return str(value)
    raise ValueError(f"value is {type(value).__name__}, which cannot be turned into text")


@dataclass
class _Prepared:
    texts: list[str]  # unique texts, in order of first appearance
    positions: list[list[int]]  # input positions of each unique text
    fixed: dict[int, RowOutcome]  # positions decided before sending
    truncated: set[int]


def prepare(values: Sequence[Any], *, max_length: int, options: ClassifyOptions) -> _Prepared:
    """Validate and de-duplicate ``values``; nothing is sent."""
    index_of: dict[str, int] = {}
    prepared = _Prepared([], [], {}, set())
    for position, value in enumerate(values):
        if type(value) is str:  # the common case first
            text = value
        elif _is_missing(value):
            prepared.fixed[position] = RowOutcome("skipped")
            continue
        else:
            try:
                text = _to_text(value, options.non_string)
            except ValueError as exc:
                prepared.fixed[position] = RowOutcome("error", error=str(exc))
                continue
        if not text or text.isspace():
            prepared.fixed[position] = RowOutcome("error", error="text is empty")
            continue
        if len(text) > max_length:
            if options.long_text == "error":
                prepared.fixed[position] = RowOutcome(
                    "error", error=f"text has {len(text)} characters, more than {max_length}"
                )
                continue
            text = text[:max_length]
            prepared.truncated.add(position)
        unique = index_of.get(text)
        if unique is None:
            index_of[text] = len(prepared.texts)
            prepared.texts.append(text)
            prepared.positions.append([position])
        else:
            prepared.positions[unique].append(position)
    return prepared


def plan_batches(
    texts: Sequence[str], engine: EngineConfig, class_count: int | None
) -> tuple[list[list[int]], list[int], list[int]]:
    """Split unique texts into batches capped by rows, request bytes and reply bytes.

    Returns the batches (lists of unique indexes), each batch's UTF-8 size in
    bytes, and the indexes too large to send even alone.
    """
    limits = engine.limits
    per_reply = _REPLY_BASE_BYTES + _REPLY_BYTES_PER_CLASS * (class_count or _UNKNOWN_CLASS_COUNT)
    max_rows = max(1, min(limits.max_rows, limits.max_reply_bytes // per_reply))
    batches: list[list[int]] = []
    sizes: list[int] = []
    too_large: list[int] = []
    current: list[int] = []
    size = 0
    for index, text in enumerate(texts):
        item = (len(text) if text.isascii() else len(text.encode("utf-8"))) + _LIST_ITEM_OVERHEAD
        if item > limits.max_bytes:
            too_large.append(index)
            continue
        if current and (len(current) >= max_rows or size + item > limits.max_bytes):
            batches.append(current)
            sizes.append(size - _LIST_ITEM_OVERHEAD * len(current))
            current, size = [], 0
        current.append(index)
        size += item
    if current:
        batches.append(current)
        sizes.append(size - _LIST_ITEM_OVERHEAD * len(current))
    return batches, sizes, too_large


def choose_mode(requested: Mode, info: ModelInfo | None) -> Literal["rows", "list"]:
    """``auto`` picks ``list`` when the handler says it takes lists, else ``rows``."""
    if requested != "auto":
        return requested
    if info is not None and info.description and "max_list_length" in info.description:
        return "list"
    return "rows"


def choose_concurrency(mode: Literal["rows", "list"], given: int | None, info: ModelInfo | None) -> int:
    """Requests in flight: enough to keep server batches full, never enough to fill the queue.

    In ``rows`` mode, fewer requests in flight than ``batchSize`` x ready workers
    leaves every server batch waiting ``maxBatchDelay``; twice that keeps the
    next batch queued.  TorchServe answers 503 once its job queue is full, so
    at most 80% of the queue's free capacity is used.
    """
    if given is not None:
        return given
    if info is None:
        return FALLBACK_CONCURRENCY
    workers = max(1, info.workers_ready)
    wanted = 2 * info.batch_size * workers if mode == "rows" else 2 * workers
    if info.queue_remaining:
        wanted = min(wanted, max(1, int(0.8 * info.queue_remaining)))
    return max(1, wanted)


def choose_limit(
    client: TorchServeClient, mode: Literal["rows", "list"], engine: EngineConfig, info: ModelInfo | None
) -> ConcurrencyLimit:
    """The limit of requests in flight: pinned by ``concurrency``, else adaptive.

    An adaptive limit starts from :func:`choose_concurrency`'s estimate, stays
    under ``max_concurrency`` (default: the connection pool) and is shared by
    the runs of one client for the same model and mode, so a job's next part
    starts from what the last one learned.
    """
    if engine.concurrency is not None:
        return client.fixed_limit(engine.concurrency)
    ceiling = engine.max_concurrency or client.config.pool_size
    initial = min(choose_concurrency(mode, None, info), ceiling)
    key = (info.name if info else "", info.version if info else "", mode)
    return client.adaptive_limit(key, initial, ceiling)


def _bisectable(error: TorchServeError) -> bool:
    """A whole-list failure that one input can cause: split the list to find it."""
    if not isinstance(error, TorchServeInferenceError) or isinstance(error, TorchServeAuthError):
        return False
    if error.status in (400, 413):
        return True
    if error.status == 503:
        return error.error_type == "InternalServerException"
    return error.status == 200 and error.error_type == "InvalidPrediction"


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


class _Run:
    """The state of one engine run."""

    def __init__(
        self,
        client: TorchServeClient,
        prepared: _Prepared,
        batches: list[list[int]],
        sizes: list[int],
        options: ClassifyOptions,
        progress: Progress,
        limit: ConcurrencyLimit,
        classes: set[str] | None,
        stop: asyncio.Event | None,
    ) -> None:
        self.client = client
        self.prepared = prepared
        self.batches = batches
        self.options = options
        self.progress = progress
        self.limit = limit
        self.classes = classes
        self.availability = client.availability
        self.retry_policy = client.config.retry
        self.outage: OutageError | None = None
        self.stop = stop or asyncio.Event()
        self.results: list[RowOutcome | None] = [None] * len(prepared.texts)
        self.records = [
            BatchRecord(
                batch_id=b,
                rows=sum(len(prepared.positions[i]) for i in batch),
                bytes=size,
            )
            for b, (batch, size) in enumerate(zip(batches, sizes, strict=True))
        ]
        self._open: dict[int, int] = {b: len(batch) for b, batch in enumerate(batches)}
        self._started: dict[int, float] = {}

    @property
    def finished(self) -> bool:
        """Asked to stop, or the outage budget is spent: take no more work."""
        return self.outage is not None or self.stop.is_set()

    def _start(self, batch_id: int) -> None:
        if batch_id not in self._started:
            self._started[batch_id] = time.monotonic()
            self.records[batch_id].started_at = time.time()

    def settle(
        self, batch_id: int, indexes: Sequence[int], outcomes: Sequence[RowOutcome], retries: int
    ) -> None:
        record = self.records[batch_id]
        rows = errors = 0
        positions = self.prepared.positions
        for index, outcome in zip(indexes, outcomes, strict=True):
            self.results[index] = outcome
            count = len(positions[index])
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
            while True:
                sent_at = await self.limit.acquire()
                item = None if self.finished else next(items, None)
                if item is None:
                    self.limit.release(sent_at)
                    return
                await self._send(item[0], item[1], sent_at, single=single)

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
        texts = [self.prepared.texts[i] for i in indexes]
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
                if len(indexes) > 1 and _bisectable(error):
                    middle = len(indexes) // 2
                    self.progress.retries += tried.retries
                    await self._send(batch_id, indexes[:middle], None, single=single, carried=tried.attempts)
                    await self._send(batch_id, indexes[middle:], None, single=single, carried=tried.attempts)
                    return
                try:
                    again = await self._recover(error, tried)
                except OutageError as outage:
                    self.outage = self.outage or outage
                    self._fail(batch_id, indexes, str(self.outage), tried)
                    return
                if again is None:  # asked to stop while waiting
                    return
                if not again:
                    self._fail(batch_id, indexes, _reason(error, tried), tried)
                    return
                continue
            self.limit.release(
                sent_at,
                overload=call.overloads > 0,
                latency=call.latency_s if call.attempts == 1 else None,
            )
            tried.count(call.attempts, record)
            latency = call.latency_s * 1000
            outcomes = [self._outcome(p, batch_id, tried.attempts, latency) for p in predictions]
            self.settle(batch_id, indexes, outcomes, tried.retries)
            return

    async def _call(self, texts: list[str], single: bool) -> tuple[list[Prediction], CallInfo]:
        options = self.options
        if single:
            one = await self.client.predict(texts[0], model=options.model, version=options.version)
            return [one.prediction], one.call
        many = await self.client.predict_batch(texts, model=options.model, version=options.version)
        return many.predictions, many.call

    def _outcome(self, prediction: Prediction, batch_id: int, attempts: int, latency_ms: float) -> RowOutcome:
        if self.classes is not None and prediction.label not in self.classes:
            return RowOutcome(
                "error",
                error=f"label {prediction.label!r} is not one of the model's classes: "
                f"{snippet({'label': prediction.label, 'score': prediction.score})}",
                batch_id=batch_id,
                attempts=attempts,
                latency_ms=latency_ms,
            )
        return RowOutcome("ok", prediction, None, batch_id, attempts, latency_ms)

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
            if tried.failed >= self.options.engine.row_attempts:
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

    def _fail(self, batch_id: int, indexes: list[int], message: str, tried: _Tried) -> None:
        outcome = RowOutcome("error", error=message, batch_id=batch_id, attempts=tried.attempts)
        self.settle(batch_id, indexes, [outcome] * len(indexes), tried.retries)

    def _abandon(self, batch_id: int, indexes: list[int], tried: _Tried) -> None:
        """The run ended while these texts waited: after an outage, texts already sent say so."""
        if self.outage is not None and tried.attempts:
            self._fail(batch_id, indexes, str(self.outage), tried)

    def settle_unsent(self) -> int:
        """After an outage: every text not yet done becomes an error row; returns how many rows."""
        assert self.outage is not None
        unsent = [i for i, result in enumerate(self.results) if result is None]
        rows = sum(len(self.prepared.positions[i]) for i in unsent)
        outcome_of = f"{self.outage}; {rows} rows not sent"
        for batch_id, batch in enumerate(self.batches):
            waiting = [i for i in batch if self.results[i] is None]
            if waiting:
                outcome = RowOutcome("error", error=outcome_of, batch_id=batch_id, attempts=0)
                self.settle(batch_id, waiting, [outcome] * len(waiting), 0)
        return rows


def _reason(error: TorchServeError, tried: _Tried) -> str:
    """An error row's message: the error, and how often it was tried when that was more than once."""
    if tried.attempts > 1:
        return f"{error} (gave up after {tried.attempts} requests)"
    return str(error)


async def model_info(client: TorchServeClient, model: str | None, version: str | None) -> ModelInfo | None:
    """The model's info, or ``None`` (logged) when the management API cannot say.

    A management API that cannot be reached is waited for within the outage
    budget, like predictions are: a run started while the server is down
    learns the model's batching once it is up.  Raises :class:`OutageError`
    when the budget is spent.
    """
    availability = client.availability
    calls = 0
    while True:
        try:
            return await client.get_model_info(model, version)
        except TorchServeError as exc:
            # A management API out of reach of a server that answers (a firewalled port) is no outage.
            transient = availability.patient and assess(exc).retry_reason is not None
            if not transient or await client.reachable():
                logger.info("model info unavailable, using defaults: %s", exc)
                return None
            availability.failed(f"model info: {exc}")
            availability.check()
            calls += 1
            await availability.sleep(backoff_delay(client.config.retry, calls))


async def classify_values(
    client: TorchServeClient,
    values: Sequence[Any],
    options: ClassifyOptions,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
    limit: ConcurrencyLimit | None = None,
) -> EngineResult:
    """Classify ``values`` (any objects; see the module docstring for what happens to each).

    Setting ``stop`` makes the workers finish their current request and take
    no more; the run then raises :class:`Stopped` instead of returning.  A
    ``limit`` shared by several runs caps their requests in flight together.
    """
    progress = progress or Progress()
    outage: OutageError | None = None
    info: ModelInfo | None = None
    if len(values):
        try:
            info = await model_info(client, options.model, options.version)
        except OutageError as exc:
            outage = exc
    engine = options.engine
    max_length = engine.max_text_length or (info.max_text_chars if info else None) or DEFAULT_MAX_TEXT_LENGTH
    prepared = prepare(values, max_length=max_length, options=options)
    batches, sizes, too_large = plan_batches(
        prepared.texts, engine, len(info.classes or []) if info else None
    )
    mode = choose_mode(options.mode, info)
    limit = limit or choose_limit(client, mode, engine, info)
    started_with = limit.limit
    progress.total = len(values)
    progress.limit = started_with
    classes = set(info.classes) if info is not None and info.classes else None
    run = _Run(client, prepared, batches, sizes, options, progress, limit, classes, stop)
    for index in too_large:
        run.results[index] = RowOutcome(
            "error", error=f"text is larger than the batch limit of {engine.limits.max_bytes} bytes"
        )
    decided = len(prepared.fixed) + sum(len(prepared.positions[i]) for i in too_large)
    progress.advance(decided, decided - sum(o.status == "skipped" for o in prepared.fixed.values()))
    run.outage = outage
    if outage is None:
        await run.run(mode)
    if run.stop.is_set() and any(r is None for r in run.results):
        raise Stopped(f"stopped with {sum(r is None for r in run.results)} texts not sent")
    if run.outage is not None:
        unsent = run.settle_unsent()
        logger.warning("the run ended early: %s; %d rows not sent", run.outage, unsent)

    rows: list[RowOutcome | None] = [None] * len(values)
    for position, outcome in prepared.fixed.items():
        rows[position] = outcome
    for index, sent in enumerate(run.results):
        assert sent is not None, "every sent text has an outcome"
        for position in prepared.positions[index]:
            rows[position] = _with_truncated(sent) if position in prepared.truncated else sent
    assert all(row is not None for row in rows), "every input position has an outcome"
    return EngineResult(
        rows=rows,  # type: ignore[arg-type]
        batches=run.records,
        model=info.name if info else (options.model or client.config.model),
        version=info.version if info else options.version,
        mode=mode,
        concurrency=started_with,
        adaptive=limit.adaptive,
        outage=str(run.outage) if run.outage is not None else None,
    )


def _with_truncated(outcome: RowOutcome) -> RowOutcome:
    return RowOutcome(
        outcome.status,
        outcome.prediction,
        outcome.error,
        outcome.batch_id,
        outcome.attempts,
        outcome.latency_ms,
        truncated=True,
    )
