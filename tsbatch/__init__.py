"""tsbatch: classify large amounts of text with a model served by TorchServe."""

from tsbatch._client import TorchServeClient
from tsbatch._config import Auth, BreakerPolicy, ClientConfig, HealthPolicy, RetryPolicy, Timeouts, TLSConfig
from tsbatch._errors import (
    CircuitOpenError,
    ConfigError,
    InputValidationError,
    LocalServerError,
    TorchServeAuthError,
    TorchServeConnectionError,
    TorchServeError,
    TorchServeInferenceError,
)
from tsbatch._types import BatchResult, CallInfo, HealthStatus, ModelInfo, Prediction, PredictResult

__version__ = "0.1.0.dev0"

__all__ = [
    "Auth",
    "BatchResult",
    "BreakerPolicy",
    "CallInfo",
    "CircuitOpenError",
    "ClientConfig",
    "ConfigError",
    "HealthPolicy",
    "HealthStatus",
    "InputValidationError",
    "LocalServerError",
    "ModelInfo",
    "PredictResult",
    "Prediction",
    "RetryPolicy",
    "TLSConfig",
    "Timeouts",
    "TorchServeAuthError",
    "TorchServeClient",
    "TorchServeConnectionError",
    "TorchServeError",
    "TorchServeInferenceError",
    "__version__",
]
