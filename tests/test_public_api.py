"""What ``import tsbatch`` offers, no more and no less."""

from __future__ import annotations

import inspect
import typing

import tsbatch

EXPECTED = [
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


def test_public_names_are_exactly_the_expected_ones() -> None:
    assert tsbatch.__all__ == EXPECTED


def test_public_names_are_sorted_and_importable() -> None:
    assert tsbatch.__all__ == sorted(tsbatch.__all__)
    for name in tsbatch.__all__:
        assert hasattr(tsbatch, name), name


def test_nothing_public_leaks_beyond_all() -> None:
    public = {name for name in vars(tsbatch) if not name.startswith("_")}
    assert public <= set(tsbatch.__all__)


def test_no_third_party_type_in_a_public_signature() -> None:
    for name in tsbatch.__all__:
        obj = getattr(tsbatch, name)
        functions = (
            [m for _, m in inspect.getmembers(obj, inspect.isfunction)] if inspect.isclass(obj) else [obj]
        )
        for function in functions:
            if not inspect.isfunction(function):
                continue
            hints = str(typing.get_type_hints(function))
            for library in ("aiohttp", "tenacity", "pybreaker"):
                assert library not in hints, f"{name}.{function.__name__} exposes {library}"
