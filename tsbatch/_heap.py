"""While a run goes on, full garbage collections leave aside the objects that existed before it.

A full collection traverses every object the collector tracks: once pandas,
pyarrow and aiohttp are imported, hundreds of thousands, 20-40 ms each time,
during which the event loop (and every request in flight) stands still.
:func:`gc.freeze` moves them into a generation the collector skips, for the
run; :func:`gc.unfreeze` gives them back after it, so nothing is kept alive
for longer than the run.  Objects made during the run are collected as usual.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_runs = 0


@contextlib.contextmanager
def earlier_objects_frozen() -> Iterator[None]:
    """Freeze the objects that exist now until the last of the runs that asked for it ends."""
    global _runs
    with _lock:
        if _runs == 0:
            gc.freeze()
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0:
                gc.unfreeze()
