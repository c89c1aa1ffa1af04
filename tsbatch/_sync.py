"""Run a coroutine to completion from synchronous code, also inside Jupyter.

Jupyter already runs an event loop in the main thread, so ``asyncio.run``
cannot be used there; the coroutine then runs on a private loop in a
background thread while the main thread waits, interruptible.  A Ctrl-C or a
kernel interrupt cancels the coroutine, waits for its clean-up (connections
closed) and re-raises ``KeyboardInterrupt``.  A classify call keeps the rows
it finished: the ``KeyboardInterrupt`` carries the partial frame as
``partial`` (see :func:`_keep_partial`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from tsbatch import _loop
from tsbatch._outcomes import INTERRUPTED

T = TypeVar("T")


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine ``make()`` returns and give back its result."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        try:
            return _loop.run(make())
        except KeyboardInterrupt as interrupt:
            # asyncio.Runner cancelled the coroutine and raised this in the cancellation's place.
            _keep_partial(interrupt, interrupt.__context__)
            raise
    return _run_in_thread(make)


def _keep_partial(interrupt: KeyboardInterrupt, cancelled: BaseException | None) -> None:
    """Hand what an interrupted run finished to the user: ``interrupt.partial``, the result
    frame with the unfinished rows ``skipped`` (error kind ``interrupted``)."""
    partial = getattr(cancelled, "partial", None)
    if partial is None:
        return
    interrupt.partial = partial  # type: ignore[attr-defined]
    left = int((partial["ts_error_kind"] == INTERRUPTED).sum())
    interrupt.add_note(
        f"tsbatch kept the rows it finished: {len(partial) - left} done, {left} interrupted. "
        "Get the frame with `except KeyboardInterrupt as exc: result = exc.partial` (in Jupyter: "
        "`result = sys.last_value.partial`); `result.ts.retry_failed()` classifies the rest."
    )


def _run_in_thread(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    outcome: concurrent.futures.Future[T] = concurrent.futures.Future()
    started = threading.Event()
    finished = threading.Event()
    state: dict[str, Any] = {}

    def target() -> None:
        loop = _loop.new_event_loop()
        try:
            task = loop.create_task(make())
            state["loop"], state["task"] = loop, task
            started.set()
            try:
                outcome.set_result(loop.run_until_complete(task))
            except BaseException as exc:
                outcome.set_exception(exc)
        finally:
            started.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            finished.set()

    thread = threading.Thread(target=target, name="tsbatch-run", daemon=True)
    thread.start()
    # Short waits on an Event keep the main thread responsive to interrupts; an
    # interrupted Thread.join() can return early on later calls, an Event cannot.
    try:
        while not finished.wait(0.05):
            pass
    except KeyboardInterrupt as interrupt:
        started.wait()
        if "task" in state:
            state["loop"].call_soon_threadsafe(state["task"].cancel)
        finished.wait()
        thread.join()
        _keep_partial(interrupt, outcome.exception() if outcome.done() else None)
        raise
    thread.join()
    return outcome.result()
