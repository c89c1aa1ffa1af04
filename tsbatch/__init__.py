"""tsbatch: classify large amounts of text with a model served by TorchServe.

Importing tsbatch registers the ``.ts`` accessor on pandas objects.
"""

from typing import Any as _Any

from tsbatch import _accessor as _accessor
from tsbatch._client import TorchServeClient
from tsbatch._config import (
    Auth,
    BatchLimits,
    BreakerPolicy,
    ClientConfig,
    EngineConfig,
    HealthPolicy,
    OutagePolicy,
    RetryPolicy,
    Timeouts,
    TLSConfig,
)
from tsbatch._errors import (
    CircuitOpenError,
    ClassificationError,
    ConfigError,
    InputValidationError,
    LocalServerError,
    OutageError,
    TorchServeAuthError,
    TorchServeConnectionError,
    TorchServeError,
    TorchServeInferenceError,
)
from tsbatch._frame import RunReport, batch_metrics, failures, run_report
from tsbatch._seed import Classifier
from tsbatch._types import BatchResult, CallInfo, HealthStatus, ModelInfo, Prediction, PredictResult

__version__ = "0.1.0.dev0"

__all__ = [
    "Auth",
    "BatchLimits",
    "BatchResult",
    "BreakerPolicy",
    "CallInfo",
    "CircuitOpenError",
    "ClassificationError",
    "Classifier",
    "ClientConfig",
    "ConfigError",
    "EngineConfig",
    "HealthPolicy",
    "HealthStatus",
    "InputValidationError",
    "LocalServerError",
    "ModelInfo",
    "OutageError",
    "OutagePolicy",
    "PredictResult",
    "Prediction",
    "RetryPolicy",
    "RunReport",
    "TLSConfig",
    "Timeouts",
    "TorchServeAuthError",
    "TorchServeClient",
    "TorchServeConnectionError",
    "TorchServeError",
    "TorchServeInferenceError",
    "__version__",
    "batch_metrics",
    "classifier",
    "dask",
    "failures",
    "run_report",
    "serve",
]

_classifier: Classifier | None = None


def __getattr__(name: str) -> _Any:
    """``tsbatch.classifier``, built from the environment on first use; ``tsbatch.serve`` and ``.dask``."""
    global _classifier
    if name in ("dask", "serve"):  # imported on demand: each needs its extra
        import importlib

        return importlib.import_module(f"tsbatch.{name}")
    if name == "classifier":
        if _classifier is None:
            _classifier = Classifier()
        return _classifier
    raise AttributeError(f"module 'tsbatch' has no attribute {name!r}")
