"""While a run goes on, the garbage collector works less often and leaves aside older objects.

A run makes a few objects per row that live until its end.  With the
collector's defaults, a young collection runs every 700 of them and a full
one whenever the survivors grow by a quarter, and a full collection
traverses every tracked object: once pandas, pyarrow and aiohttp are
imported, hundreds of thousands, 20-40 ms each time, during which the event
loop (and every request in flight) stands still.  For the run,
:func:`gc.freeze` moves the objects that existed before it into a
generation the collector skips, and young collections wait for
:data:`YOUNG_THRESHOLD` new objects; both are given back after it, so
nothing is kept alive for longer than the run and garbage made during it is
still collected.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

#: New objects between two young collections while a run goes on (Python's default: 700).
YOUNG_THRESHOLD = 50_000

_lock = threading.Lock()
_runs = 0
_thresholds = gc.get_threshold()


@contextlib.contextmanager
def collector_tuned_for_run() -> Iterator[None]:
    """Tune the collector for a run until the last of the runs that asked for it ends."""
    global _runs, _thresholds
    with _lock:
        if _runs == 0:
            _thresholds = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(max(YOUNG_THRESHOLD, _thresholds[0]), *_thresholds[1:])
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0:
                gc.set_threshold(*_thresholds)
                gc.unfreeze()
