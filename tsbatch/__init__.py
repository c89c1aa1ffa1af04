"""tsbatch: classify large amounts of text with a model served by TorchServe.

Importing tsbatch registers the ``.ts`` accessor on pandas objects.
"""

from typing import Any as _Any

from tsbatch import _accessor as _accessor
from tsbatch._client import TorchServeClient
from tsbatch._compare import ComparisonReport, compare
from tsbatch._config import ClientConfig, EngineConfig
from tsbatch._errors import (
    CircuitOpenError,
    ClassificationError,
    ConfigError,
    InputValidationError,
    LocalServerError,
    OutageError,
    RegressionError,
    TorchServeAuthError,
    TorchServeConnectionError,
    TorchServeError,
    TorchServeInferenceError,
    TsbatchError,
)
from tsbatch._frame import RunReport, batch_metrics, failures, run_report
from tsbatch._options import ClassifyKwargs, ClassifyOptions
from tsbatch._policies import (
    Auth,
    BatchLimits,
    BreakerPolicy,
    HealthPolicy,
    OutagePolicy,
    RetryPolicy,
    Tensors,
    Timeouts,
    TLSConfig,
)
from tsbatch._report import RunSummary, report
from tsbatch._seed import Classifier
from tsbatch._testing import is_testing, set_testing
from tsbatch._transport import MockTransport, Reply, Request, Transport
from tsbatch._types import (
    BatchResult,
    CallInfo,
    HealthStatus,
    InferResult,
    ModelInfo,
    Prediction,
    PredictResult,
)
from tsbatch._version import __version__

__all__ = [
    "Auth",
    "BatchLimits",
    "BatchResult",
    "BreakerPolicy",
    "CallInfo",
    "CircuitOpenError",
    "ClassificationError",
    "Classifier",
    "ClassifyKwargs",
    "ClassifyOptions",
    "ClientConfig",
    "ComparisonReport",
    "ConfigError",
    "EngineConfig",
    "HealthPolicy",
    "HealthStatus",
    "InferResult",
    "InputValidationError",
    "LocalServerError",
    "MockTransport",
    "ModelInfo",
    "OutageError",
    "OutagePolicy",
    "PredictResult",
    "Prediction",
    "RegressionError",
    "Reply",
    "Request",
    "RetryPolicy",
    "RunReport",
    "RunSummary",
    "TLSConfig",
    "Tensors",
    "Timeouts",
    "TorchServeAuthError",
    "TorchServeClient",
    "TorchServeConnectionError",
    "TorchServeError",
    "TorchServeInferenceError",
    "Transport",
    "TsbatchError",
    "__version__",
    "batch_metrics",
    "classifier",
    "compare",
    "failures",
    "is_testing",
    "report",
    "run_report",
    "set_testing",
]

_classifier: Classifier | None = None


def __getattr__(name: str) -> _Any:
    """``tsbatch.classifier``, built from the environment on first use; ``tsbatch.serve`` and ``.dask``.

    ``serve`` and ``dask`` are imported on demand, each needing its extra;
    without it they are no attributes (``hasattr`` is false) and the error says
    which extra to install.
    """
    global _classifier
    if name in ("dask", "serve"):
        import importlib

        try:
            return importlib.import_module(f"tsbatch.{name}")
        except ImportError as exc:
            raise AttributeError(
                f"tsbatch.{name} needs the {name} extra: pip install 'tsbatch[{name}]' (missing {exc.name})"
            ) from None
    if name == "classifier":
        if _classifier is None:
            _classifier = Classifier()
        return _classifier
    raise AttributeError(f"module 'tsbatch' has no attribute {name!r}")
