"""Figures for reports: matplotlib (the ``plot`` extra) without pyplot, so no display is needed.

Figures are made as :class:`matplotlib.figure.Figure` objects, never through
``pyplot``'s global state: they build on a machine with no display, and
Jupyter shows them as images (they render themselves as PNG, with or without
pyplot's inline backend).  :func:`png_data_uri` embeds one in a page.
"""

from __future__ import annotations

import base64
import functools
import io
from typing import TYPE_CHECKING, Any

from tsbatch._errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(rows: int, cols: int, *, width: float = 11.0, height: float = 3.2) -> tuple[Figure, Any]:
    """A figure of ``rows`` x ``cols`` axes (``height`` per row), or a :class:`ConfigError`
    naming the extra to install."""
    figure = _figure_class()(figsize=(width, height * rows), layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False)
    return figure, axes


@functools.cache
def _figure_class() -> type[Figure]:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install 'tsbatch[plot]'") from None

    class ShownFigure(Figure):
        """A figure that Jupyter shows as a PNG image."""

        def _repr_png_(self) -> bytes:
            return _png(self)

    return ShownFigure


def _png(figure: Figure, dpi: int = 96) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def has_matplotlib() -> bool:
    """Whether figures can be made (the ``plot`` extra is installed)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def png_data_uri(figure: Figure, *, dpi: int = 96) -> str:
    """``figure`` as a ``data:image/png;base64,...`` URI, for a self-contained page."""
    return "data:image/png;base64," + base64.b64encode(_png(figure, dpi)).decode("ascii")
