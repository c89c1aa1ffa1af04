"""Client settings: frozen objects with named defaults, built from the environment in one place.

Environment variables (each overridable by keyword argument):

=====================================  ==========================  ==============================
variable                               setting                     default
=====================================  ==========================  ==============================
``TORCHSERVE_URL``                     inference API URL           ``http://127.0.0.1:8080``
``TORCHSERVE_MANAGEMENT_URL``          management API URL          ``http://127.0.0.1:8081``
``TORCHSERVE_MODEL``                   default model name          ``demo``
``TSBATCH_PROTOCOL``                   the server's protocol       ``torchserve`` (``v2``, ``v1``)
``TSBATCH_INPUT_TENSOR``               v2 input for the texts      the metadata's, else ``text``
``TSBATCH_OUTPUT_TENSORS``             v2 outputs to read          all (comma-separated names)
``TORCHSERVE_CONNECT_TIMEOUT``         seconds to connect          5
``TORCHSERVE_REQUEST_TIMEOUT``         seconds for one request     120
``TORCHSERVE_POOL_SIZE``               connections in the pool     100
``RETRY_ATTEMPTS``                     attempts per call           3
``RETRY_MAX_SECONDS``                  total time per call         60
``CIRCUIT_BREAKER_FAILURE_THRESHOLD``  failures that open it       5
``CIRCUIT_BREAKER_RECOVERY_TIMEOUT``   seconds before a probe      60
``HEALTH_CHECK_INTERVAL``              seconds a result is cached  30
``HEALTH_CHECK_TIMEOUT``               seconds for one check       5
``TSBATCH_MAX_OUTAGE_S``               seconds a run waits out an  600 (0: fail at once)
                                       unavailable server
``TORCHSERVE_INFERENCE_TOKEN``         inference Bearer token      none
``TORCHSERVE_MANAGEMENT_TOKEN``        management Bearer token     none
``TORCHSERVE_KEY_FILE``                TorchServe key_file.json    none
``TORCHSERVE_CA_BUNDLE``               CA bundle for https         system CAs
``TORCHSERVE_VERIFY_TLS``              verify certificates         true
``MAX_BATCH_SIZE``                     rows in one batch           64
``MAX_BATCH_BYTES``                    request bytes in a batch    4 MiB (TorchServe takes 6.5 MB)
``MAX_CONCURRENCY``                    ceiling of requests in      the connection pool's size
                                       flight (the limit adapts)
``TSBATCH_ROW_ATTEMPTS``               requests a row may fail     10
                                       before it is an error
``MAX_TEXT_LENGTH``                    longest text, characters    the model's own, else 100,000
``TSBATCH_EVENT_LOOP``                 loop of the sync API, jobs  ``auto``: uvloop if installed
                                       and Dask workers            (``uvloop``, ``asyncio``)
=====================================  ==========================  ==============================

``TSBATCH_EVENT_LOOP`` is read where a loop is made (:mod:`tsbatch._loop`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tsbatch._errors import ConfigError
from tsbatch._policies import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_HEALTH_INTERVAL,
    DEFAULT_HEALTH_TIMEOUT,
    DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_OUTAGE,
    DEFAULT_RECOVERY_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_RETRY_ATTEMPTS,
    DEFAULT_RETRY_MAX_SECONDS,
    Auth,
    BatchLimits,
    BreakerPolicy,
    HealthPolicy,
    OutagePolicy,
    RetryPolicy,
    Tensors,
    Timeouts,
    TLSConfig,
    check,
    check_url,
)
from tsbatch._protocols import PROTOCOLS

DEFAULT_PROTOCOL = "torchserve"
DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_MANAGEMENT_URL = "http://127.0.0.1:8081"
DEFAULT_MODEL = "demo"
DEFAULT_POOL_SIZE = 100
DEFAULT_MAX_TEXT_LENGTH = 100_000
DEFAULT_ROW_ATTEMPTS = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientConfig:
    """Everything a :class:`TorchServeClient` needs to know."""

    url: str = DEFAULT_URL
    management_url: str = DEFAULT_MANAGEMENT_URL
    model: str = DEFAULT_MODEL
    pool_size: int = DEFAULT_POOL_SIZE
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    health: HealthPolicy = field(default_factory=HealthPolicy)
    outage: OutagePolicy = field(default_factory=OutagePolicy)
    auth: Auth = field(default_factory=Auth)
    tls: TLSConfig = field(default_factory=TLSConfig)
    protocol: str = DEFAULT_PROTOCOL
    tensors: Tensors = field(default_factory=Tensors)
    #: A shortcut for ``auth=Auth(key_file=...)``: TorchServe's ``key_file.json``.
    key_file: dataclasses.InitVar[Path | str | None] = None

    def __post_init__(self, key_file: Path | str | None) -> None:
        if key_file is not None:
            if self.auth.key_file is not None and Path(self.auth.key_file) != Path(key_file).expanduser():
                raise ConfigError("ClientConfig.key_file and ClientConfig.auth.key_file differ: pass one")
            object.__setattr__(self, "auth", dataclasses.replace(self.auth, key_file=key_file))
        if self.protocol not in PROTOCOLS:
            raise ConfigError(
                f"ClientConfig.protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}"
            )
        check_url("ClientConfig.url", self.url)
        check_url("ClientConfig.management_url", self.management_url)
        if not self.model:
            raise ConfigError("ClientConfig.model must not be empty")
        check("ClientConfig.pool_size", self.pool_size, minimum=1, integer=True)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ClientConfig:
        """Build settings from environment variables, then apply ``overrides``.

        ``overrides`` are top-level fields (``url``, ``model``, ``retry``, ...).
        """
        return dataclasses.replace(_from_env(os.environ if env is None else env), **overrides)


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """How the batch engine splits and sends a column of texts.

    Requests in flight adapt between 1 and ``max_concurrency`` (default: the
    client's connection pool), starting from an estimate made from the
    model's info; ``concurrency`` pins them instead.  ``max_text_length`` left
    at ``None`` is the model's own limit, else :data:`DEFAULT_MAX_TEXT_LENGTH`.
    A row whose requests fail ``row_attempts`` times for reasons that a retry
    may fix (resets, timeouts, dead workers) becomes an error row; overload
    replies and the breaker's refusals do not count, since they only slow a
    run down.
    """

    limits: BatchLimits = field(default_factory=BatchLimits)
    concurrency: int | None = None
    max_concurrency: int | None = None
    max_text_length: int | None = None
    row_attempts: int = DEFAULT_ROW_ATTEMPTS

    def __post_init__(self) -> None:
        for name in ("concurrency", "max_concurrency", "max_text_length"):
            if getattr(self, name) is not None:
                check(f"EngineConfig.{name}", getattr(self, name), minimum=1, integer=True)
        check("EngineConfig.row_attempts", self.row_attempts, minimum=1, integer=True)

    def with_options(
        self,
        *,
        batch_size: int | None = None,
        concurrency: int | None = None,
        max_concurrency: int | None = None,
        max_text_length: int | None = None,
    ) -> EngineConfig:
        """A copy with the options that are not ``None`` applied."""
        limits = self.limits if batch_size is None else dataclasses.replace(self.limits, max_rows=batch_size)
        given = {
            "concurrency": concurrency,
            "max_concurrency": max_concurrency,
            "max_text_length": max_text_length,
        }
        return dataclasses.replace(
            self, limits=limits, **{name: value for name, value in given.items() if value is not None}
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> EngineConfig:
        """Read ``MAX_BATCH_SIZE``, ``MAX_BATCH_BYTES``, ``MAX_CONCURRENCY``, ``MAX_TEXT_LENGTH``,
        ``TSBATCH_ROW_ATTEMPTS``."""
        env = os.environ if env is None else env
        limits = _build(
            BatchLimits,
            {"max_rows": "MAX_BATCH_SIZE", "max_bytes": "MAX_BATCH_BYTES"},
            max_rows=_env_number(env, "MAX_BATCH_SIZE", DEFAULT_MAX_BATCH_SIZE, integer=True),
            max_bytes=_env_number(env, "MAX_BATCH_BYTES", DEFAULT_MAX_BATCH_BYTES, integer=True),
        )
        config: EngineConfig = _build(
            cls,
            {
                "max_concurrency": "MAX_CONCURRENCY",
                "max_text_length": "MAX_TEXT_LENGTH",
                "row_attempts": "TSBATCH_ROW_ATTEMPTS",
            },
            limits=limits,
            max_concurrency=_env_number(env, "MAX_CONCURRENCY", None, integer=True),
            max_text_length=_env_number(env, "MAX_TEXT_LENGTH", None, integer=True),
            row_attempts=_env_number(env, "TSBATCH_ROW_ATTEMPTS", DEFAULT_ROW_ATTEMPTS, integer=True),
        )
        return dataclasses.replace(config, **overrides)


def _env_number(env: Mapping[str, str], name: str, default: float | None, *, integer: bool = False) -> Any:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value: float = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name}={raw!r} is not {kind}") from None
    return value


def _env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (true/false)")


def _env_path(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name)
    return Path(raw) if raw else None


def _build(factory: Any, variables: dict[str, str], **values: Any) -> Any:
    """Construct ``factory(**values)``; an error names the variable, not the field."""
    try:
        return factory(**values)
    except ConfigError as exc:
        message = str(exc)
        for field_name, variable in variables.items():
            message = message.replace(f"{factory.__name__}.{field_name} ", f"{variable} ")
        raise ConfigError(message) from None


def _from_env(env: Mapping[str, str]) -> ClientConfig:
    """Read every variable; a bad value names the variable."""
    timeouts = _build(
        Timeouts,
        {"connect": "TORCHSERVE_CONNECT_TIMEOUT", "request": "TORCHSERVE_REQUEST_TIMEOUT"},
        connect=_env_number(env, "TORCHSERVE_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT),
        request=_env_number(env, "TORCHSERVE_REQUEST_TIMEOUT", DEFAULT_REQUEST_TIMEOUT),
    )
    retry = _build(
        RetryPolicy,
        {"attempts": "RETRY_ATTEMPTS", "max_seconds": "RETRY_MAX_SECONDS"},
        attempts=_env_number(env, "RETRY_ATTEMPTS", DEFAULT_RETRY_ATTEMPTS, integer=True),
        max_seconds=_env_number(env, "RETRY_MAX_SECONDS", DEFAULT_RETRY_MAX_SECONDS),
    )
    breaker = _build(
        BreakerPolicy,
        {
            "failure_threshold": "CIRCUIT_BREAKER_FAILURE_THRESHOLD",
            "recovery_timeout": "CIRCUIT_BREAKER_RECOVERY_TIMEOUT",
        },
        failure_threshold=_env_number(
            env, "CIRCUIT_BREAKER_FAILURE_THRESHOLD", DEFAULT_FAILURE_THRESHOLD, integer=True
        ),
        recovery_timeout=_env_number(env, "CIRCUIT_BREAKER_RECOVERY_TIMEOUT", DEFAULT_RECOVERY_TIMEOUT),
    )
    health = _build(
        HealthPolicy,
        {"interval": "HEALTH_CHECK_INTERVAL", "timeout": "HEALTH_CHECK_TIMEOUT"},
        interval=_env_number(env, "HEALTH_CHECK_INTERVAL", DEFAULT_HEALTH_INTERVAL),
        timeout=_env_number(env, "HEALTH_CHECK_TIMEOUT", DEFAULT_HEALTH_TIMEOUT),
    )
    outage = _build(
        OutagePolicy,
        {"max_outage": "TSBATCH_MAX_OUTAGE_S"},
        max_outage=_env_number(env, "TSBATCH_MAX_OUTAGE_S", DEFAULT_MAX_OUTAGE),
    )
    tls = _build(
        TLSConfig,
        {"ca_bundle": "TORCHSERVE_CA_BUNDLE", "verify": "TORCHSERVE_VERIFY_TLS"},
        ca_bundle=_env_path(env, "TORCHSERVE_CA_BUNDLE"),
        verify=_env_bool(env, "TORCHSERVE_VERIFY_TLS", True),
    )
    auth = Auth(
        inference_token=env.get("TORCHSERVE_INFERENCE_TOKEN") or None,
        management_token=env.get("TORCHSERVE_MANAGEMENT_TOKEN") or None,
        key_file=_env_path(env, "TORCHSERVE_KEY_FILE"),
    )
    config: ClientConfig = _build(
        ClientConfig,
        {
            "url": "TORCHSERVE_URL",
            "management_url": "TORCHSERVE_MANAGEMENT_URL",
            "model": "TORCHSERVE_MODEL",
            "pool_size": "TORCHSERVE_POOL_SIZE",
            "protocol": "TSBATCH_PROTOCOL",
        },
        url=env.get("TORCHSERVE_URL") or DEFAULT_URL,
        management_url=env.get("TORCHSERVE_MANAGEMENT_URL") or DEFAULT_MANAGEMENT_URL,
        model=env.get("TORCHSERVE_MODEL") or DEFAULT_MODEL,
        pool_size=_env_number(env, "TORCHSERVE_POOL_SIZE", DEFAULT_POOL_SIZE, integer=True),
        timeouts=timeouts,
        retry=retry,
        breaker=breaker,
        health=health,
        outage=outage,
        auth=auth,
        tls=tls,
        protocol=env.get("TSBATCH_PROTOCOL") or DEFAULT_PROTOCOL,
        tensors=_build(
            Tensors,
            {"input": "TSBATCH_INPUT_TENSOR", "outputs": "TSBATCH_OUTPUT_TENSORS"},
            input=env.get("TSBATCH_INPUT_TENSOR") or "text",
            outputs=tuple(n.strip() for n in env["TSBATCH_OUTPUT_TENSORS"].split(",") if n.strip())
            if env.get("TSBATCH_OUTPUT_TENSORS")
            else None,
        ),
    )
    return config
