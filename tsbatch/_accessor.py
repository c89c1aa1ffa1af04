"""The ``.ts`` accessor on pandas DataFrames and Series; it only delegates.

pandas builds a new accessor object on every attribute access, so it keeps
nothing but the object it wraps.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prometheus_client import CollectorRegistry

from tsbatch._classify import FrameOptions, aclassify_frame
from tsbatch._client import TorchServeClient
from tsbatch._config import ClientConfig
from tsbatch._sync import run_sync

_DOC_OPTIONS = """
        Options: ``model``, ``version``, ``mode`` (``"auto"``, ``"rows"``: one
        text per request, ``"list"``: one request per batch), ``errors``
        (``"coerce"``: failed rows become ``ts_status="error"`` rows;
        ``"raise"``: raise :class:`ClassificationError`), ``prefix`` of the
        prediction columns (``"pred_"``), ``include_scores``, ``long_text``
        (``"truncate"`` or ``"error"``), ``non_string`` (``"convert"`` or
        ``"error"``), ``batch_size``, ``concurrency``, ``max_text_length``
        (default: the model's own limit), ``progress``.
"""


@pd.api.extensions.register_dataframe_accessor("ts")
class FrameAccessor:
    """``df.ts.classify("text")``: classify a text column with TorchServe."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame

    def classify(
        self,
        column: Any,
        *,
        config: ClientConfig | None = None,
        registry: CollectorRegistry | None = None,
        **options: Any,
    ) -> pd.DataFrame:
        """Return the frame plus ``pred_*`` and ``ts_*`` columns; works inside Jupyter."""
        settings = FrameOptions(**options)
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
        **options: Any,
    ) -> pd.DataFrame:
        """The async form of :meth:`classify`; may reuse an open ``client``."""
        settings = FrameOptions(**options)
        return await aclassify_frame(
            self._frame, column, settings, client=client, config=config, registry=registry
        )

    classify.__doc__ = (classify.__doc__ or "") + _DOC_OPTIONS
    aclassify.__doc__ = (aclassify.__doc__ or "") + _DOC_OPTIONS


@pd.api.extensions.register_series_accessor("ts")
class SeriesAccessor:
    """``series.ts.classify()``: the frame form, on a Series of texts."""

    def __init__(self, series: pd.Series) -> None:
        self._series = series

    def _frame(self) -> tuple[pd.DataFrame, Any]:
        name = self._series.name if self._series.name is not None else "text"
        return self._series.to_frame(name), name

    def classify(self, **options: Any) -> pd.DataFrame:
        """Return a frame of the texts plus ``pred_*`` and ``ts_*`` columns."""
        frame, name = self._frame()
        return frame.ts.classify(name, **options)

    async def aclassify(self, **options: Any) -> pd.DataFrame:
        """The async form of :meth:`classify`."""
        frame, name = self._frame()
        return await frame.ts.aclassify(name, **options)
