"""Request and reply bodies read and written alike with orjson and with the standard library."""

from __future__ import annotations

import json
import math

import pytest

from tsbatch import _json


@pytest.mark.parametrize(
    "value",
    [
        {"instances": ["a chess engine", "un éditeur", "emoji 🎲", 'quote " and \\ and \n']},
        [{"label": "games", "score": 0.93}, {"label": "net", "score": 1}],
        {"big": 2**70},
        {"lone surrogate": "\ud800"},
    ],
    ids=["texts", "predictions", "huge int", "lone surrogate"],
)
def test_encoding_reads_back_as_the_standard_library_reads_it(value: object) -> None:
    assert json.loads(_json.encode(value)) == value


def test_a_reply_with_nan_is_read_as_the_standard_library_reads_it() -> None:
    (reply,) = _json.decode(b'[{"label": "games", "score": NaN}]')
    assert reply["label"] == "games" and math.isnan(reply["score"])


def test_text_that_is_not_json_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        _json.decode(b"<html>oops</html>")
