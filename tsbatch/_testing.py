"""A testing mode in which nothing waits between retries, as stamina's does.

``tsbatch.set_testing(True)`` makes retries, and a batch run's second tries
of a row, go out at once instead of after an exponential backoff or a
``Retry-After``: a test suite that scripts failures then runs in milliseconds.
Attempt caps, the retry budget and the circuit breaker work as usual.
"""

from __future__ import annotations

_testing = False


def set_testing(testing: bool = True) -> None:
    """Turn the testing mode on (no backoff sleeps) or off."""
    global _testing
    _testing = testing


def is_testing() -> bool:
    """Whether the testing mode is on."""
    return _testing
