"""The adaptive limit of requests in flight: what latency and overload signals do to it."""

from __future__ import annotations

import asyncio

from tsbatch._limit import ConcurrencyLimit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


async def settle_floor(limit: ConcurrencyLimit, latency: float = 0.01) -> None:
    """Requests answered fast enough to set the latency floor."""
    for _ in range(64):
        limit.release(await limit.acquire(), latency=latency)


def test_rising_latency_shrinks_the_limit_but_never_below_keep() -> None:
    async def scenario() -> list[int]:
        limit = ConcurrencyLimit(64, ceiling=64, keep=32, clock=Clock())
        await settle_floor(limit)
        seen = []
        for _ in range(200):
            limit.release(await limit.acquire(), latency=1.0)
            seen.append(limit.limit)
        return seen

    seen = asyncio.run(scenario())
    assert seen[0] < 64  # the latency did shrink it
    assert min(seen) == 32


def test_overload_signals_take_the_limit_below_keep() -> None:
    async def scenario() -> int:
        limit = ConcurrencyLimit(64, ceiling=64, keep=32, clock=Clock())
        await settle_floor(limit)
        for _ in range(40):
            limit.release(await limit.acquire(), overload=True)
        return limit.limit

    assert asyncio.run(scenario()) == 1


def test_without_keep_latency_alone_can_shrink_the_limit_to_one() -> None:
    async def scenario() -> int:
        limit = ConcurrencyLimit(64, ceiling=64, clock=Clock())
        await settle_floor(limit)
        for _ in range(300):
            limit.release(await limit.acquire(), latency=1.0)
        return limit.limit

    assert asyncio.run(scenario()) == 1
