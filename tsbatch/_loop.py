"""The event loop tsbatch's synchronous calls run on: uvloop when it is installed, else asyncio's.

uvloop (the ``fast`` extra) cuts the loop's own cost per request, which is
most of a client's CPU time after aiohttp's.  ``TSBATCH_EVENT_LOOP`` chooses:
``auto`` (the default: uvloop if installed), ``uvloop`` (an error if it is
not installed) or ``asyncio``.  The async API (``aclassify``, the client) runs
on whatever loop its caller runs.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Literal, TypeVar

from tsbatch._errors import ConfigError

T = TypeVar("T")

LoopName = Literal["uvloop", "asyncio"]
_CHOICES = ("auto", "uvloop", "asyncio")


def loop_name(env: Mapping[str, str] | None = None) -> LoopName:
    """The event loop ``TSBATCH_EVENT_LOOP`` asks for, with ``auto`` resolved."""
    env = os.environ if env is None else env
    wanted = (env.get("TSBATCH_EVENT_LOOP") or "auto").strip().lower()
    if wanted not in _CHOICES:
        raise ConfigError(f"TSBATCH_EVENT_LOOP={wanted!r} is not one of {', '.join(_CHOICES)}")
    installed = importlib.util.find_spec("uvloop") is not None
    if wanted == "uvloop" and not installed:
        raise ConfigError(
            "TSBATCH_EVENT_LOOP=uvloop but uvloop is not installed: pip install 'tsbatch[fast]'"
        )
    if wanted == "asyncio" or not installed:
        return "asyncio"
    return "uvloop"


def _factory() -> Callable[[], asyncio.AbstractEventLoop]:
    if loop_name() == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop of the kind :func:`loop_name` chooses."""
    return _factory()()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a loop of the kind :func:`loop_name` chooses."""
    try:
        factory = _factory()
    except ConfigError:
        coroutine.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coroutine)
