"""Exceptions raised by tsbatch.

The tree::

    TorchServeError
    └── LocalServerError        a local TorchServe could not be built, started or stopped

Messages say what went wrong and what to do; they never carry tokens or keys.
"""

from __future__ import annotations


class TorchServeError(Exception):
    """Base class of every error tsbatch raises."""


class LocalServerError(TorchServeError):
    """A local TorchServe could not be built, started or stopped."""
