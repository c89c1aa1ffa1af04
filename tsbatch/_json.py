"""JSON for request and reply bodies: orjson when it is installed (the ``fast`` extra), else the
standard library's, with the same results.

orjson is several times faster, which matters in list mode where JSON is a
large share of the client's work per row.  What orjson refuses and the
standard library takes (``NaN`` in a reply, a lone surrogate or a huge integer
in a request) goes through the standard library, so the choice never changes
an outcome.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - exercised by the base install test
    orjson = None  # type: ignore[assignment]


def encode(value: Any) -> bytes:
    """``value`` as UTF-8 JSON."""
    if orjson is not None:
        try:
            return orjson.dumps(value)
        except TypeError:
            pass
    return json.dumps(value).encode("utf-8")


def decode(data: bytes | str) -> Any:
    """The JSON in ``data``; ``ValueError`` when it is not JSON."""
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)
