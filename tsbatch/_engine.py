"""The batch engine: classify a column of values through a client.

:func:`classify_values` prepares the values (:mod:`tsbatch._prepare`), asks
the model's info, chooses the mode and the limit of requests in flight, and
runs the sending loop (:mod:`tsbatch._run`).

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
import dataclasses
import functools
import logging
import time
from collections.abc import Sequence
from typing import Any, Literal

from tsbatch._client import TorchServeClient
from tsbatch._config import DEFAULT_MAX_TEXT_LENGTH, EngineConfig
from tsbatch._limit import ConcurrencyLimit
from tsbatch._options import ClassifyOptions, Mode
from tsbatch._outcomes import (
    INTERRUPTED,
    EngineResult,
    Progress,
    RowOutcome,
    Stopped,
    Task,
    keep_result,
)
from tsbatch._preflight import Checked, preflight
from tsbatch._prepare import Prepared, plan
from tsbatch._run import Run
from tsbatch._types import ModelInfo

logger = logging.getLogger("tsbatch")

__all__ = ["EngineResult", "Progress", "Stopped", "classify_values"]

#: Requests in flight when the model's info cannot be read.
FALLBACK_CONCURRENCY = 32
#: Values from which the plan is made in a thread, not on the event loop.
PLAN_IN_THREAD = 4096


def choose_mode(requested: Mode, info: ModelInfo | None) -> Literal["rows", "list"]:
    """``auto`` picks ``list`` when the handler says it takes lists (a v1 or v2 server always
    does), else ``rows``."""
    if requested != "auto":
        return requested
    description = (info.description if info is not None else None) or {}
    if "max_list_length" in description or description.get("lists"):
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
    # The estimate keeps the server's batches full and its queue short: latency, which rises
    # by design when the next batch waits queued, never takes the limit below it.
    return client.adaptive_limit(key, initial, ceiling, keep=initial)


async def classify_values(
    client: TorchServeClient,
    values: Sequence[Any],
    options: ClassifyOptions,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
    limit: ConcurrencyLimit | None = None,
    engine: EngineConfig | None = None,
    checked: Checked | None = None,
    task: Task = "classify",
    all_sent: asyncio.Event | None = None,
) -> EngineResult:
    """Classify ``values`` (any objects; see the module docstring for what happens to each).

    Before any row is sent, :func:`~tsbatch._preflight.preflight` checks the
    server, the token and the model, and raises what no wait can fix; a run
    that is a part of a larger one passes the check made for that as ``checked``.
    ``task="predict"`` keeps each row's raw output instead of a prediction.

    Setting ``stop`` makes the workers finish their current request and take
    no more; the run then raises :class:`Stopped` instead of returning.  A
    ``limit`` shared by several runs caps their requests in flight together.
    ``engine`` defaults to ``options.engine_config()`` (the environment's
    settings with the options' numbers on top).  ``all_sent`` is set once
    every text has gone out for the first time (the run's tail is in flight).
    """
    progress = progress or Progress()
    if checked is None and len(values):
        checked = await preflight(client, options.model, options.version)
    info = checked.info if checked is not None else None
    engine = engine or options.engine_config()
    max_length = engine.max_text_length or (info.max_text_chars if info else None) or DEFAULT_MAX_TEXT_LENGTH
    planning = functools.partial(
        plan,
        values,
        options,
        engine,
        max_length=max_length,
        class_count=len(info.classes or []) if info else None,
    )
    # A large plan is made in a thread: requests of other runs (a job's last part) keep flowing.
    work = await asyncio.to_thread(planning) if len(values) >= PLAN_IN_THREAD else planning()
    prepared = work.prepared
    mode = choose_mode(options.mode, info)
    limit = limit or choose_limit(client, mode, engine, info)
    started_with = limit.limit
    # A job's progress counts the whole job: its total is set before the first part.
    progress.total = max(progress.total, progress.done + len(values))
    progress.limit = started_with
    classes = info.classes if info is not None else None
    run = Run(client, work, options, engine.row_attempts, progress, limit, classes, stop, task, all_sent)
    since = (time.monotonic(), *client.resilience_totals())
    for index in work.too_large:
        run.results[index] = RowOutcome(
            "error",
            error=f"text is larger than the batch limit of {engine.limits.max_bytes} bytes",
            error_kind="bad_input",
        )
    decided = len(prepared.fixed) + sum(prepared.counts[i] for i in work.too_large)
    progress.advance(decided, decided - sum(o.status == "skipped" for o in prepared.fixed.values()))
    try:
        await run.run(mode)
    except asyncio.CancelledError as cancelled:
        # Cancelled (a Ctrl-C): the rows done are kept, the others say they were interrupted.
        unfinished = RowOutcome(
            "skipped", error="interrupted before it was classified", error_kind=INTERRUPTED
        )
        run.results = [unfinished if r is None else r for r in run.results]
        try:
            keep_result(
                cancelled, _result(run, prepared, info, options, limit, mode, task, started_with, since)
            )
        except Exception:  # the rows done are a bonus: the cancellation itself must go on
            logger.exception("could not keep the rows of a cancelled run")
        raise
    if run.fatal is not None:
        raise run.fatal
    if run.stop.is_set() and any(r is None for r in run.results):
        raise Stopped(f"stopped with {sum(r is None for r in run.results)} texts not sent")
    if run.outage is not None:
        unsent = run.settle_unsent()
        logger.warning("the run ended early: %s; %d rows not sent", run.outage, unsent)

    return _result(run, prepared, info, options, limit, mode, task, started_with, since)


def _result(
    run: Run,
    prepared: Prepared,
    info: ModelInfo | None,
    options: ClassifyOptions,
    limit: ConcurrencyLimit,
    mode: Literal["rows", "list"],
    task: Task,
    started_with: int,
    since: tuple[float, int, float],
) -> EngineResult:
    """The run's outcomes in input order, its batch records, and what its breaker did
    ``since`` (its start: the time, the breaker's openings and the client's seconds paused)."""
    results = run.results
    assert all(sent is not None for sent in results), "every sent text has an outcome"
    # Every position holds a sent text (code >= 0) or was decided before sending (in fixed).
    rows = [
        results[code] if code >= 0 else prepared.fixed[position]
        for position, code in enumerate(prepared.codes)
    ]
    for position in prepared.truncated:
        rows[position] = _with_truncated(rows[position])  # type: ignore[arg-type]
    started_at, openings_before, paused_before = since
    openings, paused = run.client.resilience_totals()
    return EngineResult(
        rows=rows,  # type: ignore[arg-type]
        batches=run.records,
        model=info.name if info else (options.model or run.client.config.model),
        version=info.version if info else options.version,
        mode=mode,
        concurrency=started_with,
        adaptive=limit.adaptive,
        outage=str(run.outage) if run.outage is not None else None,
        task=task,
        seconds=time.monotonic() - started_at,
        breaker_openings=openings - openings_before,
        paused_s=max(0.0, paused - paused_before),
    )


def _with_truncated(outcome: RowOutcome) -> RowOutcome:
    return dataclasses.replace(outcome, truncated=True)
