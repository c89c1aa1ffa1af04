"""The ``.ts`` accessor on pandas DataFrames and Series; it only delegates.

pandas builds a new accessor object on every attribute access, so it keeps
nothing but the object it wraps.
"""

from __future__ import annotations

from typing import Any, Unpack

import pandas as pd
from prometheus_client import CollectorRegistry

from tsbatch._classify import aclassify_frame
from tsbatch._client import TorchServeClient
from tsbatch._config import ClientConfig
from tsbatch._options import ClassifyKwargs, ClassifyOptions
from tsbatch._sync import run_sync


@pd.api.extensions.register_dataframe_accessor("ts")
class FrameAccessor:
    """``df.ts.classify("text")``: classify a text column with a served model."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame

    def classify(
        self,
        column: Any,
        *,
        config: ClientConfig | None = None,
        registry: CollectorRegistry | None = None,
        **options: Unpack[ClassifyKwargs],
    ) -> pd.DataFrame:
        """Return the frame plus ``pred_*`` and ``ts_*`` columns; works inside Jupyter.

        ``config`` says where the server is (default: ``TORCHSERVE_*``
        environment variables), ``registry`` where metrics go; the other
        keyword arguments are the fields of :class:`~tsbatch.ClassifyOptions`
        (``model``, ``version``, ``mode``, ``errors``, ``prefix``,
        ``include_scores``, ``long_text``, ``non_string``, ``batch_size``,
        ``concurrency``, ``max_concurrency``, ``max_text_length``,
        ``progress``); an unknown one is a ``TypeError``.
        """
        settings = ClassifyOptions(**options)
        return run_sync(
            lambda: aclassify_frame(self._frame, column, settings, config=config, registry=registry)
        )

    async def aclassify(
        self,
        column: Any,
        *,
        client: TorchServeClient | None = None,
        config: ClientConfig | None = None,
        registry: CollectorRegistry | None = None,
        **options: Unpack[ClassifyKwargs],
    ) -> pd.DataFrame:
        """The async form of :meth:`classify`; may reuse an open ``client``."""
        settings = ClassifyOptions(**options)
        return await aclassify_frame(
            self._frame, column, settings, client=client, config=config, registry=registry
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
        **options: Unpack[ClassifyKwargs],
    ) -> pd.DataFrame:
        """Return a frame of the texts plus ``pred_*`` and ``ts_*`` columns; as ``DataFrame.ts.classify``."""
        frame, name = self._frame()
        return frame.ts.classify(name, config=config, registry=registry, **options)

    async def aclassify(
        self,
        *,
        client: TorchServeClient | None = None,
        config: ClientConfig | None = None,
        registry: CollectorRegistry | None = None,
        **options: Unpack[ClassifyKwargs],
    ) -> pd.DataFrame:
        """The async form of :meth:`classify`."""
        frame, name = self._frame()
        return await frame.ts.aclassify(name, client=client, config=config, registry=registry, **options)
