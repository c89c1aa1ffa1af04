"""What ``import tsbatch`` offers, no more and no less."""

from __future__ import annotations

import inspect
import typing

import pytest

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


def test_public_names_are_exactly_the_expected_ones() -> None:
    assert tsbatch.__all__ == EXPECTED


def test_public_names_are_sorted_and_importable() -> None:
    assert tsbatch.__all__ == sorted(tsbatch.__all__)
    for name in tsbatch.__all__:
        assert hasattr(tsbatch, name), name


def test_nothing_public_leaks_beyond_all() -> None:
    # tsbatch.dask and tsbatch.serve are submodules for the extras, imported on demand.
    public = {name for name, value in vars(tsbatch).items() if not name.startswith("_")}
    assert public - {"dask", "serve"} <= set(tsbatch.__all__)


def test_no_third_party_type_in_a_public_signature() -> None:
    # Plots are matplotlib figures (the plot extra), named only for type checkers.
    from matplotlib.figure import Figure

    for name in tsbatch.__all__:
        obj = getattr(tsbatch, name)
        functions = (
            [m for _, m in inspect.getmembers(obj, inspect.isfunction)] if inspect.isclass(obj) else [obj]
        )
        for function in functions:
            if not inspect.isfunction(function):
                continue
            hints = str(typing.get_type_hints(function, localns={"Figure": Figure}))
            for library in ("aiohttp", "tenacity", "pybreaker"):
                assert library not in hints, f"{name}.{function.__name__} exposes {library}"


def test_every_error_tsbatch_raises_is_a_tsbatch_error() -> None:
    errors = [getattr(tsbatch, n) for n in tsbatch.__all__ if n.endswith("Error")]
    assert errors and all(issubclass(error, tsbatch.TsbatchError) for error in errors)
    # The seed's names keep their meaning: everything about the server is a TorchServeError.
    for server_error in (
        "TorchServeConnectionError",
        "TorchServeInferenceError",
        "CircuitOpenError",
        "OutageError",
    ):
        assert issubclass(getattr(tsbatch, server_error), tsbatch.TorchServeError)


def test_the_options_object_and_its_keyword_form_name_the_same_options() -> None:
    fields = typing.get_type_hints(tsbatch.ClassifyOptions)
    assert typing.get_type_hints(tsbatch.ClassifyKwargs) == fields


def test_a_misspelt_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="modle"):
        tsbatch.ClassifyOptions(modle="demo")  # type: ignore[call-arg]
