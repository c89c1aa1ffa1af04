"""Run a coroutine to completion from synchronous code, also inside Jupyter.

Jupyter already runs an event loop in the main thread, so ``asyncio.run``
cannot be used there; the coroutine then runs on a private loop in a
background thread while the main thread waits, interruptible.  A Ctrl-C or a
kernel interrupt cancels the coroutine, waits for its clean-up (connections
closed) and re-raises ``KeyboardInterrupt``: nothing half-done is returned.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from tsbatch import _loop

T = TypeVar("T")


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine ``make()`` returns and give back its result."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _loop.run(make())
    return _run_in_thread(make)


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
    except KeyboardInterrupt:
        started.wait()
        if "task" in state:
            state["loop"].call_soon_threadsafe(state["task"].cancel)
        finished.wait()
        thread.join()
        raise
    thread.join()
    return outcome.result()
