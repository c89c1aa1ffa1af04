"""The event loop of the synchronous API: uvloop when installed, asyncio's when asked."""

from __future__ import annotations

import asyncio
import gc
import importlib.util

import pytest

from tsbatch import ConfigError
from tsbatch._loop import loop_name, run
from tsbatch._sync import run_sync

needs_uvloop = pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="uvloop not installed")


async def running_loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


@needs_uvloop
def test_auto_chooses_uvloop_when_it_is_installed() -> None:
    assert loop_name({}) == "uvloop"
    assert loop_name({"TSBATCH_EVENT_LOOP": "auto"}) == "uvloop"


def test_asyncio_can_be_asked_for() -> None:
    assert loop_name({"TSBATCH_EVENT_LOOP": "asyncio"}) == "asyncio"


def test_an_unknown_loop_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="TSBATCH_EVENT_LOOP='tokio' is not one of auto, uvloop, asyncio"):
        loop_name({"TSBATCH_EVENT_LOOP": "tokio"})


@needs_uvloop
@pytest.mark.parametrize("inside_a_loop", [False, True], ids=["script", "notebook"])
def test_sync_calls_run_on_uvloop(inside_a_loop: bool) -> None:
    if inside_a_loop:  # as in Jupyter: the call runs on a private loop in a thread

        async def notebook_cell() -> str:
            return run_sync(running_loop_module)

        assert asyncio.run(notebook_cell()).startswith("uvloop")
    else:
        assert run_sync(running_loop_module).startswith("uvloop")


@pytest.mark.parametrize("inside_a_loop", [False, True], ids=["script", "notebook"])
def test_sync_calls_run_on_asyncio_when_asked(monkeypatch: pytest.MonkeyPatch, inside_a_loop: bool) -> None:
    monkeypatch.setenv("TSBATCH_EVENT_LOOP", "asyncio")
    if inside_a_loop:

        async def notebook_cell() -> str:
            return run_sync(running_loop_module)

        assert asyncio.run(notebook_cell()) == "asyncio.unix_events"
    else:
        assert run_sync(running_loop_module) == "asyncio.unix_events"


def test_a_refused_loop_leaves_no_coroutine_unawaited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TSBATCH_EVENT_LOOP", "tokio")
    with pytest.raises(ConfigError, match="TSBATCH_EVENT_LOOP"):
        run(running_loop_module())
    gc.collect()  # an unawaited coroutine would warn here, and warnings are errors
