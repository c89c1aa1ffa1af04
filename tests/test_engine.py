"""The batch engine's planning and validation, without a server."""

from __future__ import annotations

import math

import pytest

from tsbatch import BatchLimits, ClassifyOptions, ConfigError, EngineConfig, ModelInfo
from tsbatch._engine import choose_concurrency, choose_mode
from tsbatch._prepare import plan_batches, prepare


def info(batch_size: int = 8, workers: int = 1, queue: int | None = 100, lists: bool = True) -> ModelInfo:
    description = {"classes": ["a", "b"], "max_list_length": 100} if lists else None
    return ModelInfo("demo", "1.0", ["1.0"], batch_size, 10, workers, workers, queue, 0, description)


def test_batches_are_capped_by_rows() -> None:
    batches, _, too_large = plan_batches(["t"] * 10, EngineConfig(limits=BatchLimits(max_rows=4)), 2)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert too_large == []


def test_batches_are_capped_by_request_bytes() -> None:
    texts = ["x" * 92] * 5  # 100 bytes each with the JSON overhead
    batches, _, _ = plan_batches(texts, EngineConfig(limits=BatchLimits(max_rows=100, max_bytes=250)), 2)
    assert [len(b) for b in batches] == [2, 2, 1]


def test_batches_are_capped_by_estimated_reply_bytes() -> None:
    limits = BatchLimits(max_rows=1000, max_reply_bytes=10_000)
    batches, _, _ = plan_batches(["t"] * 300, EngineConfig(limits=limits), 10)
    per_row = 64 + 32 * 10
    assert max(len(b) for b in batches) == 10_000 // per_row


def test_a_text_larger_than_a_batch_is_set_aside() -> None:
    batches, _, too_large = plan_batches(
        ["ok", "x" * 500], EngineConfig(limits=BatchLimits(max_bytes=100)), 2
    )
    assert batches == [[0]] and too_large == [1]


@pytest.mark.parametrize("max_bytes", [10_000, 120], ids=["rows decide", "bytes decide"])
def test_batches_hold_whole_texts_and_say_their_utf8_size(max_bytes: int) -> None:
    texts = [("é" if i % 3 else "a") * (1 + i % 7) for i in range(50)]
    batches, sizes, too_large = plan_batches(
        texts, EngineConfig(limits=BatchLimits(max_rows=8, max_bytes=max_bytes)), 2
    )
    assert [i for batch in batches for i in batch] == list(range(50)) and not too_large
    assert sizes == [sum(len(texts[i].encode()) for i in batch) for batch in batches]
    assert all(len(batch) <= 8 for batch in batches)
    assert all(size + 8 * len(batch) <= max_bytes for size, batch in zip(sizes, batches, strict=True))


def test_every_text_lands_in_exactly_one_batch() -> None:
    texts = [f"text {i} " + "y" * (i % 37) for i in range(1000)]
    batches, _, too_large = plan_batches(
        texts, EngineConfig(limits=BatchLimits(max_rows=33, max_bytes=900)), 5
    )
    flat = sorted(i for b in batches for i in b) + too_large
    assert flat == list(range(1000))


def test_prepare_skips_missing_values_and_dedups() -> None:
    values = ["a", None, math.nan, "b", "a", float("nan"), "a"]
    prepared = prepare(values, max_length=100, options=ClassifyOptions())
    assert prepared.texts == ["a", "b"]
    assert prepared.codes == [0, -1, -1, 1, 0, -1, 0]
    assert prepared.counts == [3, 1]
    assert {p: o.status for p, o in prepared.fixed.items()} == {1: "skipped", 2: "skipped", 5: "skipped"}


@pytest.mark.parametrize(
    ("value", "policy", "text", "error"),
    [
        (3, "convert", "3", None),
        (2.5, "convert", "2.5", None),
        (b"bytes text", "convert", "bytes text", None),
        (b"\xff", "convert", None, "bytes value is not UTF-8 text"),
        (["a", "list"], "convert", None, "value is list, which cannot be turned into text"),
        (3, "error", None, "value is int, not text (non_string='error')"),
        ("   ", "convert", None, "text is empty"),
    ],
)
def test_non_string_policy(value: object, policy: str, text: str | None, error: str | None) -> None:
    prepared = prepare([value], max_length=100, options=ClassifyOptions(non_string=policy))  # type: ignore[arg-type]
    if text is None:
        assert prepared.fixed[0].status == "error" and prepared.fixed[0].error == error
    else:
        assert prepared.texts == [text]


def test_long_text_is_truncated_or_refused() -> None:
    truncated = prepare(["x" * 20], max_length=8, options=ClassifyOptions(long_text="truncate"))
    assert truncated.texts == ["x" * 8] and truncated.truncated == {0}
    refused = prepare(["x" * 20], max_length=8, options=ClassifyOptions(long_text="error"))
    assert refused.fixed[0].error == "text is longer than the limit of 8 characters"


def test_mode_auto_uses_lists_when_the_handler_takes_them() -> None:
    assert choose_mode("auto", info(lists=True)) == "list"
    assert choose_mode("auto", info(lists=False)) == "rows"
    assert choose_mode("auto", None) == "rows"
    assert choose_mode("rows", info(lists=True)) == "rows"


def test_concurrency_keeps_server_batches_full_without_filling_the_queue() -> None:
    assert choose_concurrency("rows", None, info(batch_size=8, workers=2)) == 32
    assert choose_concurrency("rows", None, info(batch_size=32, workers=4, queue=100)) == 80
    assert choose_concurrency("list", None, info(workers=3)) == 6
    assert choose_concurrency("rows", 5, info()) == 5
    assert choose_concurrency("rows", None, None) == 32


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="mode must be one of auto, rows, list"):
        ClassifyOptions(mode="fast")  # type: ignore[arg-type]


def test_engine_settings_come_from_the_environment() -> None:
    config = EngineConfig.from_env({"MAX_BATCH_SIZE": "16", "MAX_CONCURRENCY": "8", "MAX_TEXT_LENGTH": "500"})
    assert (config.limits.max_rows, config.max_concurrency, config.max_text_length) == (16, 8, 500)
    assert config.concurrency is None  # MAX_CONCURRENCY is a ceiling: the limit adapts below it
    with pytest.raises(ConfigError, match="MAX_BATCH_SIZE must be >= 1"):
        EngineConfig.from_env({"MAX_BATCH_SIZE": "0"})


def test_batch_sizes_are_utf8_bytes() -> None:
    _, sizes, _ = plan_batches(["abc", "é" * 10, "ok"], EngineConfig(limits=BatchLimits(max_rows=2)), 2)
    assert sizes == [3 + 20, 2]
