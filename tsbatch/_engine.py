"""The batch engine: validate a column of values, batch it, fan it out, gather results.

Every input position ends in exactly one :class:`RowOutcome`: ``ok`` with a
prediction, ``error`` with a message, or ``skipped`` (missing values are not
sent).  Identical texts are sent once.  Work is pulled by a fixed number of
worker tasks, so memory stays flat however long the column is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tsbatch._client import TorchServeClient
from tsbatch._config import DEFAULT_MAX_TEXT_LENGTH, EngineConfig
from tsbatch._errors import (
    CircuitOpenError,
    ConfigError,
    TorchServeAuthError,
    TorchServeError,
    TorchServeInferenceError,
)
from tsbatch._types import ModelInfo, Prediction

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


@dataclass(frozen=True)
class EngineResult:
    """Outcomes aligned with the input positions, and one record per batch."""

    rows: list[RowOutcome]
    batches: list[BatchRecord]
    model: str
    version: str | None
    mode: Literal["rows", "list"]
    concurrency: int


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
    """Counters a progress display reads; ``on_update`` is called after each item."""

    total: int = 0
    done: int = 0
    errors: int = 0
    retries: int = 0
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


def _bisectable(error: TorchServeError) -> bool:
    """A whole-list failure that one bad input can cause: split the list to find it."""
    if not isinstance(error, TorchServeInferenceError) or isinstance(error, TorchServeAuthError):
        return False
    return error.status == 400 or (error.status == 503 and error.error_type == "InternalServerException")


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
    ) -> None:
        self.client = client
        self.prepared = prepared
        self.batches = batches
        self.options = options
        self.progress = progress
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
        self._requests: dict[int, int] = dict.fromkeys(range(len(batches)), 0)

    def _start(self, batch_id: int) -> None:
        if batch_id not in self._started:
            self._started[batch_id] = time.monotonic()
            self.records[batch_id].started_at = time.time()

    def _settle(self, batch_id: int, indexes: Sequence[int], outcomes: Sequence[RowOutcome]) -> None:
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
        retries = max(0, (outcomes[0].attempts or 1) - 1) if outcomes else 0
        self.progress.advance(rows, errors, retries)
        self._open[batch_id] -= len(indexes)
        if self._open[batch_id] == 0:
            record.ended_at = time.time()
            record.latency_ms = (time.monotonic() - self._started[batch_id]) * 1000
            statuses = {self.results[i].status for i in self.batches[batch_id]}  # type: ignore[union-attr]
            record.status = "ok" if statuses == {"ok"} else ("error" if statuses == {"error"} else "partial")
            record.retries = max(0, record.attempts - self._requests[batch_id])

    async def run(
        self,
        concurrency: int,
        mode: Literal["rows", "list"],
        stop: asyncio.Event | None = None,
        gate: asyncio.Semaphore | None = None,
    ) -> None:
        step: Callable[..., Awaitable[None]]
        if mode == "rows":
            work: Iterator[Any] = ((b, i) for b, batch in enumerate(self.batches) for i in batch)
            step = self._one_row
        else:
            work = iter(enumerate(self.batches))
            step = self._one_list

        held: contextlib.AbstractAsyncContextManager[Any] = gate or contextlib.nullcontext()

        async def worker() -> None:
            for item in work:
                async with held:
                    await step(*item)
                if stop is not None and stop.is_set():
                    return

        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, max(1, len(self.prepared.texts)))):
                group.create_task(worker())

    async def _one_row(self, batch_id: int, index: int) -> None:
        self._start(batch_id)
        self._requests[batch_id] += 1
        started = time.monotonic()
        try:
            result = await self.client.predict(
                self.prepared.texts[index], model=self.options.model, version=self.options.version
            )
        except TorchServeError as exc:
            self.records[batch_id].attempts += _attempts_of(exc)
            latency = (time.monotonic() - started) * 1000
            self._settle(batch_id, [index], [_failed(exc, batch_id, latency)])
            return
        self.records[batch_id].attempts += result.call.attempts
        outcome = RowOutcome(
            "ok",
            result.prediction,
            batch_id=batch_id,
            attempts=result.call.attempts,
            latency_ms=result.call.latency_s * 1000,
        )
        self._settle(batch_id, [index], [outcome])

    async def _one_list(self, batch_id: int, indexes: list[int]) -> None:
        self._start(batch_id)
        self._requests[batch_id] += 1
        started = time.monotonic()
        texts = [self.prepared.texts[i] for i in indexes]
        try:
            result = await self.client.predict_batch(
                texts, model=self.options.model, version=self.options.version
            )
        except TorchServeError as exc:
            self.records[batch_id].attempts += _attempts_of(exc)
            if len(indexes) > 1 and _bisectable(exc):
                middle = len(indexes) // 2
                await self._one_list(batch_id, indexes[:middle])
                await self._one_list(batch_id, indexes[middle:])
                return
            latency = (time.monotonic() - started) * 1000
            self._settle(batch_id, indexes, [_failed(exc, batch_id, latency)] * len(indexes))
            return
        self.records[batch_id].attempts += result.call.attempts
        attempts, latency = result.call.attempts, result.call.latency_s * 1000
        outcomes = [RowOutcome("ok", p, None, batch_id, attempts, latency) for p in result.predictions]
        self._settle(batch_id, indexes, outcomes)


def _attempts_of(error: TorchServeError) -> int:
    return 0 if isinstance(error, CircuitOpenError) else 1


def _failed(error: TorchServeError, batch_id: int, latency_ms: float) -> RowOutcome:
    return RowOutcome(
        "error", error=str(error), batch_id=batch_id, attempts=_attempts_of(error), latency_ms=latency_ms
    )


async def model_info_or_none(
    client: TorchServeClient, model: str | None, version: str | None
) -> ModelInfo | None:
    """The model's info, or ``None`` (logged) when the management API cannot say."""
    try:
        return await client.get_model_info(model, version)
    except TorchServeError as exc:
        logger.info("model info unavailable, using defaults: %s", exc)
        return None


async def classify_values(
    client: TorchServeClient,
    values: Sequence[Any],
    options: ClassifyOptions,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
    gate: asyncio.Semaphore | None = None,
) -> EngineResult:
    """Classify ``values`` (any objects; see the module docstring for what happens to each).

    Setting ``stop`` makes the workers finish their current request and take
    no more; the run then raises :class:`Stopped` instead of returning.  A
    ``gate`` shared by several runs caps their requests in flight together.
    """
    progress = progress or Progress()
    info = await model_info_or_none(client, options.model, options.version) if len(values) else None
    engine = options.engine
    max_length = engine.max_text_length or (info.max_text_chars if info else None) or DEFAULT_MAX_TEXT_LENGTH
    prepared = prepare(values, max_length=max_length, options=options)
    batches, sizes, too_large = plan_batches(
        prepared.texts, engine, len(info.classes or []) if info else None
    )
    mode = choose_mode(options.mode, info)
    concurrency = choose_concurrency(mode, engine.concurrency, info)
    progress.total = len(values)
    run = _Run(client, prepared, batches, sizes, options, progress)
    for index in too_large:
        run.results[index] = RowOutcome(
            "error", error=f"text is larger than the batch limit of {engine.limits.max_bytes} bytes"
        )
    decided = len(prepared.fixed) + sum(len(prepared.positions[i]) for i in too_large)
    progress.advance(decided, decided - sum(o.status == "skipped" for o in prepared.fixed.values()))
    await run.run(concurrency, mode, stop, gate)
    if stop is not None and stop.is_set() and any(r is None for r in run.results):
        raise Stopped(f"stopped with {sum(r is None for r in run.results)} texts not sent")

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
        concurrency=concurrency,
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
