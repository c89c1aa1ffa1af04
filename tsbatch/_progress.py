"""The progress bar: rows, rows/s, errors, retries, the breaker's state, the limit of
requests in flight, and the pause while the server is unavailable.

In a notebook with ipywidgets (the ``notebook`` extra) the bar is tqdm's
widget; anywhere else, and in a notebook without ipywidgets, it is text.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tqdm.std import tqdm

from tsbatch._engine import Progress

PROGRESS_VARIABLE = "TSBATCH_PROGRESS"


def progress_enabled(requested: bool | None) -> bool:
    """``requested`` if given, else ``TSBATCH_PROGRESS``, else on in notebooks and terminals."""
    if requested is not None:
        return requested
    setting = os.environ.get(PROGRESS_VARIABLE)
    if setting is not None and setting.strip():
        return setting.strip().lower() not in ("0", "false", "no", "off")
    return "ipykernel" in sys.modules or sys.stderr.isatty()


def bar_class() -> type[Any]:
    """tqdm's widget bar in a notebook that has ipywidgets, its text bar otherwise (never a
    warning that widgets are missing)."""
    if "ipykernel" in sys.modules and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm as widget

        return widget  # type: ignore[no-any-return]
    return tqdm  # type: ignore[no-any-return]


@contextmanager
def progress_bar(
    enabled: bool, description: str, breaker_state: Callable[[], str] | None = None
) -> Iterator[Progress]:
    """A :class:`Progress` that drives a tqdm bar while the block runs."""
    progress = Progress()
    if not enabled:
        yield progress
        return
    bar = bar_class()(total=0, unit="rows", desc=description, dynamic_ncols=True)

    def update(state: Progress, rows: int) -> None:
        if bar.total != state.total:
            bar.total = state.total
        postfix: dict[str, object] = {"errors": state.errors, "retries": state.retries}
        if breaker_state is not None:
            postfix["breaker"] = breaker_state()
        if state.limit:
            postfix["in flight"] = state.limit
        if state.paused_s is not None:
            postfix["paused"] = f"server unavailable {state.paused_s:.0f} s"
        bar.set_postfix(postfix, refresh=rows == 0)
        bar.update(rows)

    progress.on_update = update
    try:
        yield progress
    finally:
        bar.close()
