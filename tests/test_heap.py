"""During a run, full garbage collections skip the objects made before it; after it, nothing stays frozen."""

from __future__ import annotations

import gc
import threading

from tsbatch._heap import earlier_objects_frozen


def test_objects_made_before_a_run_are_frozen_during_it_and_given_back_after() -> None:
    assert gc.get_freeze_count() == 0
    with earlier_objects_frozen():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


def test_overlapping_runs_keep_the_freeze_until_the_last_ends() -> None:
    first_in = threading.Event()
    release = threading.Event()

    def other_run() -> None:
        with earlier_objects_frozen():
            first_in.set()
            release.wait(10)

    other = threading.Thread(target=other_run)
    other.start()
    assert first_in.wait(10)
    with earlier_objects_frozen():
        pass
    assert gc.get_freeze_count() > 0  # the other run still goes on
    release.set()
    other.join()
    assert gc.get_freeze_count() == 0


def test_garbage_made_during_a_run_is_still_collected() -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    with earlier_objects_frozen():
        made = [Cycle() for _ in range(100)]
        del made
        assert gc.collect() >= 100
