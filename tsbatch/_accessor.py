"""The ``.ts`` accessor on pandas DataFrames and Series; it only delegates.

pandas builds a new accessor object on every attribute access, so it keeps
nothing but the object it wraps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Unpack

import pandas as pd
from prometheus_client import CollectorRegistry

from tsbatch._classify import aclassify_frame, check_call
from tsbatch._client import TorchServeClient
from tsbatch._config import ClientConfig
from tsbatch._connection import with_connection
from tsbatch._options import AccessorKwargs, ClassifyOptions, read_kwargs
from tsbatch._outcomes import Task
from tsbatch._report import RunSummary, report
from tsbatch._rerun import aretry_failed
from tsbatch._sync import run_sync

_FRAME_ARGS = ("inputs", "config", "registry")
_OPTION_FIELDS = frozenset(field.name for field in dataclasses.fields(ClassifyOptions))
_ASYNC_ARGS = ("inputs", "client", "config", "registry")


def _connected(
    config: ClientConfig | None, connection: dict[str, Any], client: TorchServeClient | None = None
) -> ClientConfig | None:
    if not connection:
        return config
    if client is not None:
        raise TypeError(f"pass either client= or {', '.join(f'{k}=' for k in connection)}, not both")
    return with_connection(config, **connection)


def _retry_args(
    method: str,
    kwargs: Mapping[str, Any],
    others: tuple[str, ...],
    config: ClientConfig | None,
    client: TorchServeClient | None = None,
) -> tuple[dict[str, Any], ClientConfig | None]:
    """The options a retry changes (only those given) and where the server is."""
    _, connection = read_kwargs(method, kwargs, others)
    overrides = {k: v for k, v in kwargs.items() if k in _OPTION_FIELDS}
    return overrides, _connected(config, connection, client)


@pd.api.extensions.register_dataframe_accessor("ts")
class FrameAccessor:
    """``df.ts.classify("text")``: classify a text column with a served model."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame

    def classify(
        self,
        column: Any = None,
        *,
        inputs: Mapping[str, Any] | None = None,
        config: ClientConfig | None = None,
        registry: CollectorRegistry | None = None,
        **kwargs: Unpack[AccessorKwargs],
    ) -> pd.DataFrame:
        """Return the frame plus ``pred_*`` and ``ts_*`` columns; works inside Jupyter.

        Where the server is: ``url``, ``key_file`` (TorchServe's
        ``key_file.json``), ``inference_token``, ``management_url``,
        ``management_token``, on top of ``config`` (default: ``TORCHSERVE_*``
        environment variables).  ``registry`` says where metrics go.  The other
        keyword arguments are the fields of :class:`~tsbatch.ClassifyOptions`
        (``model``, ``version``, ``mode``, ``errors``, ``prefix``,
        ``include_scores``, ``long_text``, ``non_string``, ``batch_size``,
        ``concurrency``, ``max_concurrency``, ``max_text_length``,
        ``progress``); an unknown one is a ``TypeError``.  For a model that takes several
        named inputs, ``inputs={input name: column, ...}`` replaces ``column``.
        """
        return _classify(self._frame, column, inputs, "DataFrame.ts.classify", config, registry, kwargs)

    def predict(
        self,
        column: Any = None,
        *,
        inputs: Mapping[str, Any] | None = None,
        config: ClientConfig | None = None,
        registry: CollectorRegistry | None = None,
        **kwargs: Unpack[AccessorKwargs],
    ) -> pd.DataFrame:
        """For a model that is no classifier: the frame plus ``pred_output``, each row's raw output
        (a number, a list such as an embedding, or an object as JSON text), and the ``ts_*``
        columns; takes what :meth:`classify` takes."""
        return _classify(
            self._frame, column, inputs, "DataFrame.ts.predict", config, registry, kwargs, "predict"
        )

    async def aclassify(
        self,
        column: Any = None,
        *,
        inputs: Mapping[str, Any] | None = None,
        client: TorchServeClient | None = None,
        config: ClientConfig | None = None,
        registry: CollectorRegistry | None = None,
        **kwargs: Unpack[AccessorKwargs],
    ) -> pd.DataFrame:
        """The async form of :meth:`classify`; may reuse an open ``client``."""
        return await _aclassify(
            self._frame, column, inputs, "DataFrame.ts.aclassify", client, config, registry, kwargs
        )

    def retry_failed(
        self,
        *,
        config: ClientConfig | None = None,
        registry: CollectorRegistry | None = None,
        **kwargs: Unpack[AccessorKwargs],
    ) -> pd.DataFrame:
        """On a frame :meth:`classify` or :meth:`predict` returned: send its ``error`` rows (and
        those an interrupt left unfinished) again, with the same options unless given here
        (``prefix`` and ``include_scores`` stay), and return the whole frame with those rows
        replaced; their batches get new ids after the frame's last, and
        :func:`~tsbatch.batch_metrics` lists every batch."""
        overrides, config = _retry_args("DataFrame.ts.retry_failed", kwargs, _FRAME_ARGS, config)
        frame = self._frame
        return run_sync(lambda: aretry_failed(frame, overrides, config=config, registry=registry))

    async def aretry_failed(
        self,
        *,
        client: TorchServeClient | None = None,
        config: ClientConfig | None = None,
        registry: CollectorRegistry | None = None,
        **kwargs: Unpack[AccessorKwargs],
    ) -> pd.DataFrame:
        """The async form of :meth:`retry_failed`; may reuse an open ``client``."""
        overrides, config = _retry_args("DataFrame.ts.aretry_failed", kwargs, _ASYNC_ARGS, config, client)
        return await aretry_failed(self._frame, overrides, client=client, config=config, registry=registry)

    def report(self) -> RunSummary:
        """On a frame :meth:`classify` returned: what its run did (rows, rows/s, latency,
        retries, pauses, errors by kind), shown as HTML with plots in Jupyter, as text by ``print``."""
        return report(self._frame)

    async def apredict(
        self,
        column: Any = None,
        *,
        inputs: Mapping[str, Any] | None = None,
        client: TorchServeClient | None = None,
        config: ClientConfig | None = None,
        registry: CollectorRegistry | None = None,
        **kwargs: Unpack[AccessorKwargs],
    ) -> pd.DataFrame:
        """The async form of :meth:`predict`."""
        return await _aclassify(
            self._frame, column, inputs, "DataFrame.ts.apredict", client, config, registry, kwargs, "predict"
        )


def _classify(
    frame: pd.DataFrame,
    column: Any,
    inputs: Mapping[str, Any] | None,
    method: str,
    config: ClientConfig | None,
    registry: CollectorRegistry | None,
    kwargs: Mapping[str, Any],
    task: Task = "classify",
) -> pd.DataFrame:
    # Everything that can be checked is, before the run's thread starts: a short traceback.
    options, connection = read_kwargs(method, kwargs, _FRAME_ARGS)
    check_call(frame, column, options, task, inputs)
    config = _connected(config, connection)
    return run_sync(
        lambda: aclassify_frame(
            frame, column, options, config=config, registry=registry, task=task, inputs=inputs
        )
    )


async def _aclassify(
    frame: pd.DataFrame,
    column: Any,
    inputs: Mapping[str, Any] | None,
    method: str,
    client: TorchServeClient | None,
    config: ClientConfig | None,
    registry: CollectorRegistry | None,
    kwargs: Mapping[str, Any],
    task: Task = "classify",
) -> pd.DataFrame:
    options, connection = read_kwargs(method, kwargs, _ASYNC_ARGS)
    config = _connected(config, connection, client)
    return await aclassify_frame(
        frame, column, options, client=client, config=config, registry=registry, task=task, inputs=inputs
    )


@pd.api.extensions.register_series_accessor("ts")
class SeriesAccessor:
    """``series.ts.classify()``: the frame form, on a Series of texts."""

    def __init__(self, series: pd.Series) -> None:
        self._series = series

    def _frame(self) -> tuple[pd.DataFrame, Any]:
        name = self._series.name if self._series.name is not None else "text"
        return self._series.to_frame(name), name

    def classify(
        self,
        *,
        config: ClientConfig | None = None,
        registry: CollectorRegistry | None = None,
        **kwargs: Unpack[AccessorKwargs],
    ) -> pd.DataFrame:
        """Return a frame of the texts plus ``pred_*`` and ``ts_*`` columns; as ``DataFrame.ts.classify``."""
        frame, name = self._frame()
        return _classify(frame, name, None, "Series.ts.classify", config, registry, kwargs)

    def predict(
        self,
        *,
        config: ClientConfig | None = None,
        registry: CollectorRegistry | None = None,
        **kwargs: Unpack[AccessorKwargs],
    ) -> pd.DataFrame:
        """Each text's raw output; as ``DataFrame.ts.predict``."""
        frame, name = self._frame()
        return _classify(frame, name, None, "Series.ts.predict", config, registry, kwargs, "predict")

    async def aclassify(
        self,
        *,
        client: TorchServeClient | None = None,
        config: ClientConfig | None = None,
        registry: CollectorRegistry | None = None,
        **kwargs: Unpack[AccessorKwargs],
    ) -> pd.DataFrame:
        """The async form of :meth:`classify`."""
        frame, name = self._frame()
        return await _aclassify(frame, name, None, "Series.ts.aclassify", client, config, registry, kwargs)
