"""Shared helpers for client tests: a controllable clock and a recorded sleep."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from tsbatch import BreakerPolicy, ClientConfig, HealthPolicy, RetryPolicy, Timeouts, TorchServeClient


@dataclass
class FakeTime:
    """A clock that moves only when told, and a sleep that records instead of waiting."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_client(
    url: str,
    registry: CollectorRegistry,
    time: FakeTime,
    *,
    attempts: int = 3,
    failure_threshold: int = 5,
    recovery_timeout: float = 60.0,
    request_timeout: float = 5.0,
    health_interval: float = 30.0,
    budget_per_second: float = 1.0,
    **client_options: Any,
) -> TorchServeClient:
    config = ClientConfig(
        url=url,
        management_url=url,
        model="demo",
        timeouts=Timeouts(connect=2.0, request=request_timeout),
        retry=RetryPolicy(attempts=attempts, budget_min_per_second=budget_per_second),
        breaker=BreakerPolicy(failure_threshold=failure_threshold, recovery_timeout=recovery_timeout),
        health=HealthPolicy(interval=health_interval, timeout=2.0),
    )
    return TorchServeClient(
        config=config, registry=registry, clock=time.clock, sleep=time.sleep, **client_options
    )


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A metric's value, 0 when it was never touched."""
    return registry.get_sample_value(name, labels) or 0.0
