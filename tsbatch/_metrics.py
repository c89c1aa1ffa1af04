"""Prometheus metrics of the TorchServe client.

Metrics are created against a ``registry`` (default: prometheus_client's
global one).  Creating a second client against the same registry, as a
notebook cell run twice does, reuses the collectors registered by the first.
Label values are few and fixed: methods, status classes, reasons; never texts,
ids, URLs or tokens.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

#: Inference latencies: from milliseconds up to TorchServe's 120 s response timeout.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

#: Values of ``torchserve_circuit_breaker_state``.
BREAKER_STATE_VALUES = {"closed": 0, "open": 1, "half_open": 2}


@dataclass(frozen=True)
class ClientMetrics:
    """The collectors one or more clients update."""

    requests: Counter
    duration: Histogram
    connection_status: Gauge
    retries: Counter
    breaker_state: Gauge
    breaker_trips: Counter
    paused: Gauge
    paused_seconds: Counter
    concurrency_limit: Gauge


_lock = threading.Lock()
_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, ClientMetrics] = weakref.WeakKeyDictionary()


def client_metrics(registry: CollectorRegistry | None = None) -> ClientMetrics:
    """The client's collectors in ``registry``, created on first use."""
    registry = REGISTRY if registry is None else registry
    with _lock:
        found = _by_registry.get(registry)
        if found is None:
            found = _create(registry)
            _by_registry[registry] = found
        return found


def _create(registry: CollectorRegistry) -> ClientMetrics:
    return ClientMetrics(
        requests=Counter(
            "torchserve_requests",
            "HTTP requests sent to TorchServe, by API method and outcome",
            ["method", "status"],
            registry=registry,
        ),
        duration=Histogram(
            "torchserve_request_duration_seconds",
            "Time from sending a request to TorchServe to reading its reply",
            ["method"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        ),
        connection_status=Gauge(
            "torchserve_connection_status",
            "1 when the last exchange with TorchServe succeeded at the network level, else 0",
            registry=registry,
        ),
        retries=Counter(
            "torchserve_retry",
            "Retries of requests to TorchServe, by API method and reason",
            ["method", "reason"],
            registry=registry,
        ),
        breaker_state=Gauge(
            "torchserve_circuit_breaker_state",
            "Circuit breaker state: 0 closed, 1 open, 2 half-open",
            registry=registry,
        ),
        breaker_trips=Counter(
            "torchserve_circuit_breaker_trips",
            "Times the circuit breaker opened",
            registry=registry,
        ),
        paused=Gauge(
            "torchserve_paused",
            "1 while a batch run waits for an unavailable server, else 0",
            registry=registry,
        ),
        paused_seconds=Counter(
            "torchserve_paused_seconds",
            "Seconds batch runs spent waiting for an unavailable server",
            registry=registry,
        ),
        concurrency_limit=Gauge(
            "torchserve_concurrency_limit",
            "Requests a batch run may have in flight now (the adaptive limit, or the fixed one)",
            registry=registry,
        ),
    )
