"""HTML pages of reports: a figure embedded as an image, a fragment made a self-contained page."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tsbatch._plots import has_matplotlib, png_data_uri

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def embedded_figure(make: Callable[[], Figure], alt: str) -> str:
    """``make()``'s figure as an ``<img>`` with the PNG inside, or, without matplotlib, a line
    saying which extra draws it."""
    if not has_matplotlib():
        return "<p>plots need matplotlib: <code>pip install 'tsbatch[plot]'</code></p>"
    return f'<img alt="{html.escape(alt)}" src="{png_data_uri(make())}">'


def write_page(path: str | Path, title: str, body: str) -> Path:
    """Write ``body`` (an HTML fragment) to ``path`` as a self-contained page; returns the path."""
    target = Path(path)
    target.write_text(
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n</head>\n<body>\n{body}\n</body>\n</html>\n",
        encoding="utf-8",
    )
    return target
