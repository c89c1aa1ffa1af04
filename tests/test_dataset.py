"""The bundled data set is the documented one and is shaped for training."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tsbatch._demo.archive import DEFAULT_DATA

README = Path(__file__).resolve().parents[1] / "data_samples" / "README.md"
LABELS = {"devel", "utils", "net", "science", "admin", "games", "desktop", "text", "multimedia", "fonts"}


@pytest.fixture(scope="module")
def table() -> dict[str, list[str]]:
    return pq.read_table(DEFAULT_DATA).to_pydict()


def test_file_matches_the_recorded_sha256() -> None:
    recorded = re.search(r"sha256[^0-9a-f]*([0-9a-f]{64})", README.read_text())
    assert recorded, f"{README} records no sha256"
    assert hashlib.sha256(DEFAULT_DATA.read_bytes()).hexdigest() == recorded.group(1)


def test_row_count_matches_the_recorded_one(table: dict[str, list[str]]) -> None:
    recorded = re.search(r"([\d,]+) rows", README.read_text())
    assert recorded, f"{README} records no row count"
    assert len(table["id"]) == int(recorded.group(1).replace(",", ""))


def test_has_text_label_and_split_columns(table: dict[str, list[str]]) -> None:
    assert {"id", "text", "label", "split"} <= set(table)


def test_labels_are_the_ten_topic_classes(table: dict[str, list[str]]) -> None:
    assert set(table["label"]) == LABELS


def test_splits_are_roughly_eight_one_one(table: dict[str, list[str]]) -> None:
    total = len(table["split"])
    shares = {s: table["split"].count(s) / total for s in ("train", "val", "test")}
    assert shares["train"] == pytest.approx(0.8, abs=0.03)
    assert shares["val"] == pytest.approx(0.1, abs=0.02)
    assert shares["test"] == pytest.approx(0.1, abs=0.02)


def test_no_source_package_crosses_splits(table: dict[str, list[str]]) -> None:
    split_of: dict[str, str] = {}
    for source, split in zip(table["source"], table["split"], strict=True):
        assert split_of.setdefault(source, split) == split, f"source {source} is in two splits"


def test_ids_and_texts_are_unique_and_non_empty(table: dict[str, list[str]]) -> None:
    assert len(set(table["id"])) == len(table["id"])
    assert len(set(table["text"])) == len(table["text"])
    assert all(text.strip() for text in table["text"])


def test_no_transitional_or_debug_packages(table: dict[str, list[str]]) -> None:
    summaries = [text.splitlines()[0].lower() for text in table["text"]]
    assert not [s for s in summaries if "transitional" in s.split() or "dummy" in s.split()]
    assert not [i for i in table["id"] if i.endswith("-dbg")]
