"""The original tsbatch interface: ``from tsbatch import classifier``.

``await classifier.classify(text)`` and ``await classifier.batch_classify(texts)``
return plain dicts enriched with per-item metadata; settings come from the
environment.  Batches go through the same engine as ``df.ts.classify``, so
long lists are split into capped batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tsbatch._client import TorchServeClient
from tsbatch._config import ClientConfig
from tsbatch._engine import classify_values
from tsbatch._errors import InputValidationError
from tsbatch._options import ClassifyOptions
from tsbatch._outcomes import RowOutcome


class Classifier:
    """Classify texts with the model named by ``TORCHSERVE_MODEL``."""

    def __init__(self, config: ClientConfig | None = None) -> None:
        self._config = config
        self._client: TorchServeClient | None = None

    @property
    def torchserve_client(self) -> TorchServeClient:
        """The client, created on first use from the environment."""
        if self._client is None:
            self._client = TorchServeClient(config=self._config)
        return self._client

    async def classify(self, text: str) -> dict[str, Any]:
        """Classify one text; raises on failure."""
        result = await self.torchserve_client.predict(text)
        return {
            "text": text,
            "label": result.prediction.label,
            "score": result.prediction.score,
            "scores": result.prediction.scores,
            "status": "ok",
            "error": None,
            "attempts": result.call.attempts,
            "latency_ms": result.call.latency_s * 1000,
            "model": self.torchserve_client.config.model,
        }

    async def batch_classify(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """Classify many texts; a failed item carries ``status="error"`` and the reason."""
        if isinstance(texts, str):
            raise InputValidationError("batch_classify takes a list of texts, not one string")
        result = await classify_values(self.torchserve_client, list(texts), ClassifyOptions())
        return [_item(text, row, result.model) for text, row in zip(texts, result.rows, strict=True)]

    async def aclose(self) -> None:
        """Close the client's connections."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _item(text: str, row: RowOutcome, model: str) -> dict[str, Any]:
    prediction = row.prediction
    return {
        "text": text,
        "label": prediction.label if prediction else None,
        "score": prediction.score if prediction else None,
        "scores": prediction.scores if prediction else None,
        "status": row.status,
        "error": row.error,
        "attempts": row.attempts,
        "latency_ms": row.latency_ms,
        "batch_id": row.batch_id,
        "model": model,
    }
