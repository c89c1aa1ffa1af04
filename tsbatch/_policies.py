"""The policies a client and a batch run follow: frozen objects with named defaults, checked when made.

Each bad value raises :class:`~tsbatch.ConfigError` naming the setting and the
accepted range; :mod:`tsbatch._config` builds them from environment variables.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tsbatch._errors import ConfigError

DEFAULT_CONNECT_TIMEOUT = 5.0
#: TorchServe's own default response timeout is 120 s.
DEFAULT_REQUEST_TIMEOUT = 120.0
DEFAULT_RETRY_ATTEMPTS = 3
DEFAULT_RETRY_MAX_SECONDS = 60.0
DEFAULT_BACKOFF_INITIAL = 0.1
DEFAULT_BACKOFF_MAX = 10.0
DEFAULT_RETRY_AFTER_CAP = 30.0
DEFAULT_BUDGET_RATIO = 0.2
DEFAULT_BUDGET_MIN_PER_SECOND = 1.0
DEFAULT_BUDGET_WINDOW = 10.0
DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_RECOVERY_TIMEOUT = 60.0
DEFAULT_HALF_OPEN_PROBES = 1
DEFAULT_HEALTH_INTERVAL = 30.0
DEFAULT_HEALTH_TIMEOUT = 5.0
DEFAULT_MAX_OUTAGE = 600.0
DEFAULT_OUTAGE_POLL_INITIAL = 0.5
DEFAULT_OUTAGE_POLL_MAX = 5.0
DEFAULT_MAX_BATCH_SIZE = 64
#: TorchServe refuses requests over 6.5 MB and its worker dies on replies over
#: 6.5 MB: both are kept well below.
DEFAULT_MAX_BATCH_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_REPLY_BYTES = 4 * 1024 * 1024


def check(name: str, value: float, *, minimum: float, integer: bool = False, above: bool = False) -> None:
    kind = "an integer" if integer else "a number"
    bad_type = isinstance(value, bool) or not isinstance(value, int | float)
    if bad_type or (integer and not isinstance(value, int)) or math.isnan(value):
        raise ConfigError(f"{name} must be {kind}, got {value!r}")
    if value < minimum or (above and value == minimum):
        relation = ">" if above else ">="
        raise ConfigError(f"{name} must be {relation} {minimum}, got {value!r}")


def check_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http:// or https:// URL with a host, got {url!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Seconds allowed to connect and to complete one request."""

    connect: float = DEFAULT_CONNECT_TIMEOUT
    request: float = DEFAULT_REQUEST_TIMEOUT

    def __post_init__(self) -> None:
        check("Timeouts.connect", self.connect, minimum=0, above=True)
        check("Timeouts.request", self.request, minimum=0, above=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped by attempts and by total time.

    The retry budget lets the retries of the last ``budget_window`` seconds be
    at most ``budget_ratio`` of that window's requests, plus
    ``budget_min_per_second`` for each second of the window: a burst of
    failures in a busy run is retried, a dead server gets no retry storm.
    """

    attempts: int = DEFAULT_RETRY_ATTEMPTS
    max_seconds: float = DEFAULT_RETRY_MAX_SECONDS
    backoff_initial: float = DEFAULT_BACKOFF_INITIAL
    backoff_max: float = DEFAULT_BACKOFF_MAX
    retry_after_cap: float = DEFAULT_RETRY_AFTER_CAP
    budget_ratio: float = DEFAULT_BUDGET_RATIO
    budget_min_per_second: float = DEFAULT_BUDGET_MIN_PER_SECOND
    budget_window: float = DEFAULT_BUDGET_WINDOW

    def __post_init__(self) -> None:
        check("RetryPolicy.attempts", self.attempts, minimum=1, integer=True)
        for name in (
            "max_seconds",
            "backoff_initial",
            "backoff_max",
            "retry_after_cap",
            "budget_ratio",
            "budget_min_per_second",
        ):
            check(f"RetryPolicy.{name}", getattr(self, name), minimum=0)
        check("RetryPolicy.budget_window", self.budget_window, minimum=0, above=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerPolicy:
    """When the circuit breaker opens and how it probes for recovery."""

    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    recovery_timeout: float = DEFAULT_RECOVERY_TIMEOUT
    half_open_probes: int = DEFAULT_HALF_OPEN_PROBES

    def __post_init__(self) -> None:
        check("BreakerPolicy.failure_threshold", self.failure_threshold, minimum=1, integer=True)
        check("BreakerPolicy.recovery_timeout", self.recovery_timeout, minimum=0)
        check("BreakerPolicy.half_open_probes", self.half_open_probes, minimum=1, integer=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthPolicy:
    """How long a health result is cached, and how long one check may take."""

    interval: float = DEFAULT_HEALTH_INTERVAL
    timeout: float = DEFAULT_HEALTH_TIMEOUT

    def __post_init__(self) -> None:
        check("HealthPolicy.interval", self.interval, minimum=0)
        check("HealthPolicy.timeout", self.timeout, minimum=0, above=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutagePolicy:
    """How long a batch run waits out an unavailable server before it gives up.

    ``max_outage`` is the longest stretch of continuous unavailability (every
    prediction failing, or held back by the open breaker) that a run waits
    through; ``0`` fails the rows at once instead.  While it waits, ``/ping``
    is polled every ``poll_initial`` seconds, doubling up to ``poll_max``, so
    that the breaker's probe goes out as soon as the server answers.
    """

    max_outage: float = DEFAULT_MAX_OUTAGE
    poll_initial: float = DEFAULT_OUTAGE_POLL_INITIAL
    poll_max: float = DEFAULT_OUTAGE_POLL_MAX

    def __post_init__(self) -> None:
        check("OutagePolicy.max_outage", self.max_outage, minimum=0)
        check("OutagePolicy.poll_initial", self.poll_initial, minimum=0, above=True)
        check("OutagePolicy.poll_max", self.poll_max, minimum=self.poll_initial)


def _path(name: str, value: object) -> Path:
    """``value`` (a ``str`` or a path) as a ``Path``, ``~`` expanded."""
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{name} must be a path, got {type(value).__name__}")
    return Path(value).expanduser()


@dataclass(frozen=True, slots=True, kw_only=True)
class Tensors:
    """Tensor names for the Open Inference Protocol, where a model's metadata does not give them.

    ``input``: the ``BYTES`` input the texts go to (the metadata's first
    ``BYTES`` input wins); ``outputs``: the outputs to ask for and read
    (default: all the model returns).
    """

    input: str = "text"
    outputs: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.input, str) or not self.input:
            raise ConfigError(f"Tensors.input must be a non-empty name; got {self.input!r}")
        if self.outputs is not None:
            outputs: Any = self.outputs
            if isinstance(outputs, str) or not all(isinstance(o, str) and o for o in outputs):
                raise ConfigError(f"Tensors.outputs must be a list of names; got {self.outputs!r}")
            object.__setattr__(self, "outputs", tuple(self.outputs))


@dataclass(frozen=True, slots=True, kw_only=True)
class Auth:
    """Bearer tokens, given directly or read from TorchServe's key file."""

    inference_token: str | None = field(default=None, repr=False)
    management_token: str | None = field(default=None, repr=False)
    key_file: Path | str | None = None  # a str is made a Path

    def __post_init__(self) -> None:
        if self.key_file is not None:
            object.__setattr__(self, "key_file", _path("Auth.key_file", self.key_file))

    def __repr__(self) -> str:
        given = [n for n in ("inference_token", "management_token") if getattr(self, n)]
        return f"Auth(tokens_given={given}, key_file={self.key_file!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSConfig:
    """Certificate checks for ``https://`` URLs."""

    ca_bundle: Path | str | None = None  # a str is made a Path
    verify: bool = True

    def __post_init__(self) -> None:
        if self.ca_bundle is not None:
            object.__setattr__(self, "ca_bundle", _path("TLSConfig.ca_bundle", self.ca_bundle))
        if self.ca_bundle is not None and not Path(self.ca_bundle).is_file():
            raise ConfigError(f"TLSConfig.ca_bundle {self.ca_bundle} is not a file")
        if self.ca_bundle is not None and not self.verify:
            raise ConfigError("TLSConfig.ca_bundle is set but TLSConfig.verify is off: choose one")


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchLimits:
    """Caps on one batch: rows, request bytes, and estimated reply bytes."""

    max_rows: int = DEFAULT_MAX_BATCH_SIZE
    max_bytes: int = DEFAULT_MAX_BATCH_BYTES
    max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES

    def __post_init__(self) -> None:
        check("BatchLimits.max_rows", self.max_rows, minimum=1, integer=True)
        check("BatchLimits.max_bytes", self.max_bytes, minimum=1, integer=True)
        check("BatchLimits.max_reply_bytes", self.max_reply_bytes, minimum=1, integer=True)
