"""Finding a job's INPUT files: a file, a folder, a glob."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tsbatch._errors import JobInputError
from tsbatch._job import input_files


def write(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"text": ["a"]}).to_parquet(path)
    return path


@pytest.mark.parametrize("hidden_parent", [".cache", "_runs", ".tsbatch/run"])
def test_a_folder_below_a_hidden_or_underscored_folder_is_read(tmp_path: Path, hidden_parent: str) -> None:
    folder = tmp_path / hidden_parent / "data"
    expected = [write(folder / "a.parquet"), write(folder / "sub" / "b.parquet")]
    assert input_files(str(folder)) == expected


def test_files_and_folders_below_input_named_with_a_dot_or_underscore_are_left_out(tmp_path: Path) -> None:
    kept = write(tmp_path / "in" / "part-0.parquet")
    write(tmp_path / "in" / "_temporary" / "part-1.parquet")
    write(tmp_path / "in" / ".hidden.parquet")
    write(tmp_path / "in" / "_metadata.parquet")
    (tmp_path / "in" / "_SUCCESS").write_text("")
    (tmp_path / "in" / "README.md").write_text("not data")
    assert input_files(str(tmp_path / "in")) == [kept]


def test_a_folder_without_parquet_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    with pytest.raises(JobInputError, match=r"holds no \.parquet files"):
        input_files(str(tmp_path / "in"))
