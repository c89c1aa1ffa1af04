"""What ``import tsbatch`` offers, no more and no less."""

from __future__ import annotations

import tsbatch

EXPECTED = [
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


def test_public_names_are_exactly_the_expected_ones() -> None:
    assert tsbatch.__all__ == EXPECTED


def test_public_names_are_sorted_and_importable() -> None:
    assert tsbatch.__all__ == sorted(tsbatch.__all__)
    for name in tsbatch.__all__:
        assert hasattr(tsbatch, name), name


def test_nothing_public_leaks_beyond_all() -> None:
    public = {name for name in vars(tsbatch) if not name.startswith("_")}
    assert public <= set(tsbatch.__all__)
