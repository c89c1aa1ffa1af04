"""During a run the collector skips older objects and collects young ones less often; after it, as before."""

from __future__ import annotations

import gc
import threading

from tsbatch._heap import YOUNG_THRESHOLD, collector_tuned_for_run


def test_objects_made_before_a_run_are_frozen_during_it_and_given_back_after() -> None:
    assert gc.get_freeze_count() == 0
    before = gc.get_threshold()
    with collector_tuned_for_run():
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_overlapping_runs_keep_the_freeze_until_the_last_ends() -> None:
    first_in = threading.Event()
    release = threading.Event()

    def other_run() -> None:
        with collector_tuned_for_run():
            first_in.set()
            release.wait(10)

    other = threading.Thread(target=other_run)
    other.start()
    assert first_in.wait(10)
    with collector_tuned_for_run():
        pass
    assert gc.get_freeze_count() > 0  # the other run still goes on
    release.set()
    other.join()
    assert gc.get_freeze_count() == 0


def test_garbage_made_during_a_run_is_still_collected() -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    with collector_tuned_for_run():
        made = [Cycle() for _ in range(100)]
        del made
        assert gc.collect() >= 100
