"""Results returned by the client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Prediction:
    """One text's answer: the best label, its score (``None`` when the server gives none)
    and, when given, all scores."""

    label: str
    score: float | None
    scores: dict[str, float] | None = None


@dataclass(frozen=True, slots=True)
class CallInfo:
    """Facts about one client call: wall time over all attempts, requests sent, final
    status, and how many requests were answered with an overload signal (a full
    queue, a 429, a timeout)."""

    latency_s: float
    attempts: int
    status: int
    overloads: int = 0


@dataclass(frozen=True, slots=True)
class PredictResult:
    """The answer to :meth:`TorchServeClient.predict`."""

    prediction: Prediction
    call: CallInfo


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The answer to :meth:`TorchServeClient.predict_batch`, in input order."""

    predictions: list[Prediction]
    call: CallInfo


@dataclass(frozen=True, slots=True)
class InferResult:
    """The answer to :meth:`TorchServeClient.infer_batch`: each text's raw output, in input order."""

    outputs: list[Any]
    call: CallInfo


@dataclass(frozen=True, slots=True)
class HealthStatus:
    """A health check of ``GET /ping``; ``error`` says why it failed."""

    healthy: bool
    status: str
    checked_at: float
    latency_s: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the management API tells about one model version."""

    name: str
    version: str
    versions: list[str]
    batch_size: int
    max_batch_delay_ms: int
    workers_ready: int
    workers_total: int
    queue_remaining: int | None
    queue_pending: int | None
    description: dict[str, Any] | None = field(default=None)

    @property
    def classes(self) -> list[str] | None:
        """The classes the handler says it predicts, if it says."""
        classes = (self.description or {}).get("classes")
        return list(classes) if isinstance(classes, list) else None

    @property
    def max_text_chars(self) -> int | None:
        """The longest text the handler accepts, if it says."""
        limit = (self.description or {}).get("max_text_chars")
        return int(limit) if isinstance(limit, int) else None
