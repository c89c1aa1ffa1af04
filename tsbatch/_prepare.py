"""Before anything is sent: values turned into texts, de-duplicated, and planned into batches.

Every input position ends in exactly one outcome: missing values are
``skipped``, values that cannot be sent (not text, empty, too long, not
encodable as UTF-8) are ``error`` rows decided here, the rest are sent, each
distinct text once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from tsbatch._config import EngineConfig
from tsbatch._errors import InputValidationError
from tsbatch._options import ClassifyOptions, NonString
from tsbatch._outcomes import RowOutcome

#: JSON overhead of one text inside ``{"instances": [...]}`` besides its own bytes.
_LIST_ITEM_OVERHEAD = 8
#: Estimated reply bytes per row: label, score and one entry per class.
_REPLY_BASE_BYTES = 64
_REPLY_BYTES_PER_CLASS = 32
_UNKNOWN_CLASS_COUNT = 100


def _is_missing(value: Any) -> bool:
    """``None``, NaN, NaT and pandas' ``NA``: nothing to classify."""
    if value is None or value is pd.NA:
        return True
    try:
        return bool(value != value)  # NaN and NaT compare unequal to themselves
    except (TypeError, ValueError):
        return False


def _to_text(value: Any, policy: NonString) -> str:
    """The text to send for ``value``, or ``ValueError`` saying why there is none."""
    if isinstance(value, str):
        return value
    if policy == "error":
        raise ValueError(f"value is {type(value).__name__}, not text (non_string='error')")
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("bytes value is not UTF-8 text") from None
    if isinstance(value, bool | int | float) or type(value).__module__ == "numpy":
        try:
            return str(value)
        except Exception as exc:  # a value that cannot be shown is that row's error, never the run's
            raise ValueError(
                f"value is {type(value).__name__}, which cannot be turned into text ({exc})"
            ) from None
    raise ValueError(f"value is {type(value).__name__}, which cannot be turned into text")


#: One row's inputs, for a model that takes several: input name -> text.
Record = dict[str, str]


@dataclass
class Prepared:
    texts: list[str | Record]  # unique texts (or records), in order of first appearance
    codes: list[int]  # per input position: the index of its text, or -1 when decided before sending
    counts: list[int]  # per unique text: how many input positions hold it
    fixed: dict[int, RowOutcome]  # positions decided before sending
    truncated: set[int]


def _bad_input(message: str) -> RowOutcome:
    return RowOutcome("error", error=message, error_kind="bad_input")


def _text(value: Any, options: ClassifyOptions, max_length: int) -> tuple[str, bool] | RowOutcome:
    """The text to send for one value and whether it was truncated, or the row's outcome."""
    if type(value) is str:  # the common case first
        text = value
    elif _is_missing(value):
        return RowOutcome("skipped")
    else:
        try:
            text = _to_text(value, options.non_string)
        except ValueError as exc:
            return _bad_input(str(exc))
    if not text or text.isspace():
        return _bad_input("text is empty")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # pandas holds lone surrogates; UTF-8 and JSON cannot
            return _bad_input("text cannot be encoded as UTF-8 (it holds a lone surrogate)")
    if len(text) <= max_length:
        return text, False
    if options.long_text == "error":
        return _bad_input(f"text is longer than the limit of {max_length} characters")
    return text[:max_length], True


def _record(
    value: dict[str, Any], options: ClassifyOptions, max_length: int
) -> tuple[Record, bool] | RowOutcome:
    """Each input of a record checked as a text; the first that fails decides, naming its input."""
    record: Record = {}
    truncated = False
    for name, field in value.items():
        checked = _text(field, options, max_length)
        if isinstance(checked, RowOutcome):
            if checked.error is None:
                return checked
            return _bad_input(f"input {name!r}: {checked.error}")
        record[name], cut = checked
        truncated = truncated or cut
    return record, truncated


def prepare(values: Sequence[Any], *, max_length: int, options: ClassifyOptions) -> Prepared:
    """Validate and de-duplicate ``values`` (texts, or records of several inputs); nothing is sent."""
    index_of: dict[Any, int] = {}
    known = index_of.setdefault
    texts: list[str | Record] = []
    codes: list[int] = []
    fixed: dict[int, RowOutcome] = {}
    truncated: set[int] = set()
    for position, value in enumerate(values):
        # The common case, a short non-blank ASCII text, is checked inline.
        if (
            type(value) is str
            and len(value) <= max_length
            and value.isascii()
            and value
            and not value.isspace()
        ):
            key: Any = value
        else:
            checked = (
                _record(value, options, max_length)
                if type(value) is dict
                else _text(value, options, max_length)
            )
            if isinstance(checked, RowOutcome):
                fixed[position] = checked
                codes.append(-1)
                continue
            value, cut = checked
            if cut:
                truncated.add(position)
            key = tuple(value.items()) if type(value) is dict else value
        unique = known(key, len(texts))
        if unique == len(texts):  # a text not seen before
            texts.append(value)
        codes.append(unique)
    if len(texts) == len(codes) - len(fixed):  # every text distinct
        counts = [1] * len(texts)
    else:
        counted = Counter(codes)
        counts = [counted[unique] for unique in range(len(texts))]
    return Prepared(texts, codes, counts, fixed, truncated)


def _size(text: str | Record) -> int:
    if isinstance(text, dict):
        return sum(_size(t) + len(name) for name, t in text.items())
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def plan_batches(
    texts: Sequence[str | Record], engine: EngineConfig, class_count: int | None
) -> tuple[list[list[int]], list[int], list[int]]:
    """Split unique texts into batches capped by rows, request bytes and reply bytes.

    Returns the batches (lists of unique indexes), each batch's UTF-8 size in
    bytes, and the indexes too large to send even alone.
    """
    limits = engine.limits
    per_reply = _REPLY_BASE_BYTES + _REPLY_BYTES_PER_CLASS * (class_count or _UNKNOWN_CLASS_COUNT)
    max_rows = max(1, min(limits.max_rows, limits.max_reply_bytes // per_reply))
    text_sizes = [len(t) if type(t) is str and t.isascii() else _size(t) for t in texts]
    if text_sizes and max_rows * (max(text_sizes) + _LIST_ITEM_OVERHEAD) <= limits.max_bytes:
        # Not even max_rows of the largest text reach the byte limit: cut by rows alone.
        starts = range(0, len(texts), max_rows)
        return (
            [list(range(start, min(start + max_rows, len(texts)))) for start in starts],
            [sum(text_sizes[start : start + max_rows]) for start in starts],
            [],
        )
    batches: list[list[int]] = []
    sizes: list[int] = []
    too_large: list[int] = []
    current: list[int] = []
    size = 0
    for index, text_size in enumerate(text_sizes):
        item = text_size + _LIST_ITEM_OVERHEAD
        if item > limits.max_bytes:
            too_large.append(index)
            continue
        if current and (len(current) >= max_rows or size + item > limits.max_bytes):
            batches.append(current)
            sizes.append(size - _LIST_ITEM_OVERHEAD * len(current))
            current, size = [], 0
        current.append(index)
        size += item
    if current:
        batches.append(current)
        sizes.append(size - _LIST_ITEM_OVERHEAD * len(current))
    return batches, sizes, too_large


@dataclass
class Plan:
    """The prepared texts and their batches (lists of indexes into ``prepared.texts``)."""

    prepared: Prepared
    batches: list[list[int]]
    sizes: list[int]  # each batch's UTF-8 size in bytes
    too_large: list[int]  # texts too large to send even alone


def plan(
    values: Sequence[Any],
    options: ClassifyOptions,
    engine: EngineConfig,
    *,
    max_length: int,
    class_count: int | None,
) -> Plan:
    """Prepare ``values`` and split the texts into batches; nothing is sent."""
    prepared = prepare(values, max_length=max_length, options=options)
    batches, sizes, too_large = plan_batches(prepared.texts, engine, class_count)
    return Plan(prepared, batches, sizes, too_large)


def check_texts(texts: object) -> None:
    """Refuse what a client call cannot send: no list, an empty one, or a bad text in it."""
    if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts:
        raise InputValidationError(f"texts must be a non-empty list of strings, got {texts!r:.60}")
    for index, text in enumerate(texts):
        check_text(text, f"texts[{index}]")


def check_text(text: object, where: str) -> None:
    """Refuse a text (or a record of named texts) that is not text or is empty, naming ``where``."""
    if isinstance(text, Mapping) and text:  # a record of named inputs
        for name, value in text.items():
            check_text(value, f"{where}[{name!r}]")
        return
    if not isinstance(text, str):
        raise InputValidationError(f"{where} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise InputValidationError(f"{where} is empty")
