"""Exceptions raised by tsbatch.

The tree::

    TsbatchError                        every error tsbatch raises
    ├── TorchServeError                 something about the server
    │   ├── TorchServeConnectionError   it could not be reached or did not answer in time
    │   │   ├── CircuitOpenError        refused at once: the circuit breaker is open
    │   │   └── OutageError             it stayed unavailable for the whole outage budget
    │   └── TorchServeInferenceError    it answered with an error or an unusable reply
    │       └── TorchServeAuthError     it refused the token, even after the key file was read again
    ├── ClassificationError             some rows failed (errors="raise"); carries the failures table
    ├── InputValidationError            bad input from the caller (also a ValueError)
    │   └── JobInputError               a Parquet job cannot start: bad INPUT, OUTPUT or column
    ├── ConfigError                     a bad setting (also a ValueError)
    ├── LocalServerError                a local TorchServe could not be built, started or stopped
    ├── RegressionError                 a candidate model broke a check()'s thresholds (an AssertionError)
    └── JobError                        a Parquet job stopped before it finished
        ├── JobStopped                  asked to stop (a signal); resumable
        ├── JobOutage                   the server stayed unavailable too long; resumable
        └── JobOutputError              OUTPUT could not be written (disk full, no permission)

aiohttp, tenacity and pybreaker exceptions are translated to these at the
transport and resilience layers and never escape the public API.  Messages
say what went wrong and what to do; they never carry tokens or keys.
"""

from __future__ import annotations

from typing import Any


class TsbatchError(Exception):
    """Base class of every error tsbatch raises."""


class TorchServeError(TsbatchError):
    """Something about the server: it could not be reached, or answered with an error.

    ``attempts`` is the number of HTTP requests the failed call sent (0 when
    none went out, as when the circuit breaker refused it).
    """

    attempts: int = 0


class TorchServeConnectionError(TorchServeError):
    """The server could not be reached, reset the connection or timed out.

    ``kind`` is one of ``"connect"``, ``"timeout"``, ``"reset"``, ``"tls"``
    (the server's certificate is not trusted: a setting to fix, never retried),
    ``"circuit_open"`` or ``"outage"``.
    """

    def __init__(self, message: str, *, kind: str, url: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.url = url


class CircuitOpenError(TorchServeConnectionError):
    """The circuit breaker is open: the call was refused without network I/O.

    ``cause`` is the failure that opened it, when known.
    """

    def __init__(self, message: str, *, retry_in: float, cause: TorchServeError | None = None) -> None:
        super().__init__(message, kind="circuit_open")
        self.retry_in = retry_in
        self.cause = cause


class OutageError(TorchServeConnectionError):
    """Predictions failed, or the breaker kept them from going out, for ``max_outage`` seconds in a row.

    ``unavailable_s`` is how long the server had been unavailable; ``cause``
    the last failure seen.
    """

    def __init__(self, message: str, *, unavailable_s: float, cause: str | None = None) -> None:
        super().__init__(message, kind="outage")
        self.unavailable_s = unavailable_s
        self.cause = cause


class TorchServeInferenceError(TorchServeError):
    """TorchServe answered with an error status, or a reply tsbatch cannot use.

    ``status`` is the HTTP status (200 for an unusable successful reply),
    ``error_type`` TorchServe's error type (``ModelNotFoundException``,
    ``ServiceUnavailableException``, ...) or a tsbatch one
    (``MalformedResponse``, ``LengthMismatch``); ``detail`` the server's own
    message, when it gave one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        error_type: str | None = None,
        model: str | None = None,
        version: str | None = None,
        retry_after: float | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.model = model
        self.version = version
        self.retry_after = retry_after
        self.detail = detail


class TorchServeAuthError(TorchServeInferenceError):
    """The server refused the token, also after the key file was read again."""


class LocalServerError(TsbatchError):
    """A local TorchServe could not be built, started or stopped."""


class InputValidationError(TsbatchError, ValueError):
    """The caller's input cannot be sent (empty text, not a string, ...)."""


class ConfigError(TsbatchError, ValueError):
    """A setting is missing or out of range; the message names the setting."""


class RegressionError(TsbatchError, AssertionError):
    """A candidate model broke thresholds of :meth:`ComparisonReport.check`; the message has a line
    per broken threshold.

    ``broken`` holds them as ``(name, threshold, actual)`` tuples.  Being an
    ``AssertionError``, a check in a test or an executed notebook fails it.
    """

    def __init__(self, message: str, *, broken: tuple[tuple[str, float, float], ...]) -> None:
        super().__init__(message)
        self.broken = broken


class ClassificationError(TsbatchError):
    """Some rows could not be classified (raised with ``errors="raise"``).

    ``failures`` holds the failed rows with their ``ts_error``; ``result`` the
    whole result, good rows included.
    """

    def __init__(self, message: str, *, failures: Any, result: Any) -> None:
        super().__init__(message)
        self.failures = failures
        self.result = result


class JobInputError(InputValidationError):
    """A Parquet job cannot start: bad INPUT, OUTPUT, column or id column; nothing was written."""


class JobError(TsbatchError):
    """A Parquet job stopped before it finished; the parts it recorded are kept."""


class JobStopped(JobError):
    """The job was asked to stop (SIGINT, SIGTERM); run it again to resume."""


class JobOutage(JobError):
    """The server stayed unavailable for the whole outage budget; run the job again to resume."""


class JobOutputError(JobError):
    """OUTPUT could not be written (disk full, no permission); the message names the path."""
