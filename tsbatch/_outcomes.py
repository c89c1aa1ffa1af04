"""What a batch run produces: an outcome per input position, a record per batch, the result."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from tsbatch._types import Prediction

#: What a run asks of the model: a class per text, or its raw output.
Task = Literal["classify", "predict"]


class Stopped(Exception):
    """The run was asked to stop before every text was sent."""


def keep_result(cancelled: asyncio.CancelledError, result: EngineResult) -> None:
    """Attach what a cancelled run did to its cancellation (the same exception, so that
    ``asyncio.timeout`` and task cancellation keep their meaning): every row, those not
    finished marked ``skipped`` with the error kind ``interrupted``."""
    cancelled._tsbatch_result = result  # type: ignore[attr-defined]


def kept_result(cancelled: BaseException) -> EngineResult | None:
    """What :func:`keep_result` attached, if anything."""
    return getattr(cancelled, "_tsbatch_result", None)


#: The outcome of a row an interrupted run did not finish.
INTERRUPTED = "interrupted"


@dataclass(slots=True)
class RowOutcome:
    """What happened to one input position (one object may stand for several; never changed
    once made)."""

    status: Literal["ok", "error", "skipped"]
    label: str | None = None
    score: float | None = None
    scores: dict[str, float] | None = None
    error: str | None = None
    batch_id: int | None = None
    attempts: int | None = None
    latency_ms: float | None = None
    truncated: bool = False
    error_kind: str | None = None  # one of tsbatch._resilience.ERROR_KINDS
    output: Any = None  # the raw output, for the "predict" task

    @property
    def prediction(self) -> Prediction | None:
        """The row's prediction, if it has one."""
        return Prediction(self.label, self.score, self.scores) if self.label is not None else None


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
    outage budget; ``task`` what the rows hold (predictions or raw outputs);
    ``seconds`` the run's wall time, and ``breaker_openings`` and ``paused_s``
    what the client's breaker did while it went on.
    """

    rows: list[RowOutcome]
    batches: list[BatchRecord]
    model: str
    version: str | None
    mode: Literal["rows", "list"]
    concurrency: int
    adaptive: bool = False
    outage: str | None = None
    task: Task = "classify"
    seconds: float = 0.0
    breaker_openings: int = 0
    paused_s: float = 0.0


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
