"""``tsbatch compare BASE CANDIDATE``: the report, its JSON, and exit codes a CI job can gate on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.compare_helpers import BASELINE, CANDIDATE, classified, golden_set, job_output
from tsbatch._cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_ROWS_FAILED, main


@pytest.fixture
def sides(tmp_path: Path) -> tuple[str, str]:
    """The hand-made baseline and candidate as Parquet files: agreement 0.5, accuracy 5/6 -> 4/6."""
    classified(BASELINE).to_parquet(tmp_path / "baseline.parquet", index=False)
    classified(CANDIDATE).to_parquet(tmp_path / "candidate.parquet", index=False)
    return str(tmp_path / "baseline.parquet"), str(tmp_path / "candidate.parquet")


def test_the_report_is_printed_and_holding_thresholds_exit_0(
    sides: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["compare", *sides, "--fail-on", "accuracy_drop=0.2,agreement=0.5", "--fail-on", "macro_f1_drop=0.2"]
    )
    out = capsys.readouterr()
    assert code == EXIT_OK, out.err
    assert "agreement 0.5000: 3 of 6 rows changed label" in out.out
    assert out.err == ""


def test_broken_thresholds_exit_1_and_are_each_listed_on_stderr(
    sides: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "compare",
            *sides,
            "--fail-on",
            "accuracy_drop=0.1,agreement=0.9,class_f1_drop=0.2,macro_f1_drop=0.5",
        ]
    )
    err = capsys.readouterr().err
    assert code == EXIT_ROWS_FAILED
    assert "min_agreement=0.9: agreement is 0.5000" in err
    assert "max_accuracy_drop=0.1: accuracy dropped by 0.1667" in err
    assert "max_class_f1_drop=0.2: F1 of class 'a' dropped by 0.5000" in err
    assert "macro_f1_drop" not in err


def test_json_output_parses_with_the_figures(
    sides: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", *sides, "--json", "--n-boot", "50"]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert {"agreement", "baseline", "candidate", "flips", "changed_rows", "differences"} <= set(data)
    assert data["agreement"] == 0.5
    assert data["bootstrap"]["resamples"] == 50
    assert [row["id"] for row in data["changed_rows"]] == ["r1", "r3", "r5"]


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("accuracy=0.1", "'accuracy=0.1'"),
        ("agreement", "'agreement'"),
        ("agreement=high", "'agreement=high'"),
        ("agreement=1.5", "from 0 to 1"),
    ],
)
def test_a_bad_fail_on_spec_exits_2_naming_it(
    sides: tuple[str, str], spec: str, named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["compare", *sides, "--fail-on", spec])
    assert exited.value.code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "argument --fail-on" in err and named in err


def test_bad_input_exits_2_naming_the_problem(
    sides: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", sides[0], str(tmp_path / "missing")]) == EXIT_BAD_INPUT
    assert f"the candidate {tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    assert main(["compare", *sides, "--truth", "gold"]) == EXIT_BAD_INPUT
    assert "truth column 'gold'" in capsys.readouterr().err
    assert main(["compare", *sides, "--no-truth", "--fail-on", "accuracy_drop=0.1"]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert "max_accuracy_drop needs the true labels" in captured.err
    assert captured.out == ""  # refused before anything is reported


def test_without_truth_only_agreement_is_checked(
    sides: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", *sides, "--no-truth", "--fail-on", "agreement=0.6"]) == EXIT_ROWS_FAILED
    assert "accuracy" not in capsys.readouterr().out


def test_html_writes_the_page(
    sides: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    assert main(["compare", *sides, "--html", str(tmp_path / "report.html")]) == EXIT_OK
    assert "data:image/png;base64," in (tmp_path / "report.html").read_text()
    assert f"report written to {tmp_path / 'report.html'}" in capsys.readouterr().err


def test_two_job_outputs_compare_on_their_id_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = golden_set(tmp_path / "golden.parquet")
    parity = job_output(source, tmp_path / "v1", lambda text: "even" if int(text[-1]) % 2 == 0 else "odd")
    always_even = job_output(source, tmp_path / "v2", lambda text: "even")
    assert main(["compare", str(parity), str(parity), "--fail-on", "agreement=1,accuracy_drop=0"]) == EXIT_OK
    capsys.readouterr()
    assert (
        main(["compare", str(parity), str(always_even), "--json", "--fail-on", "accuracy_drop=0.4"])
        == EXIT_ROWS_FAILED
    )
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["id_column"] == "id"
    assert data["candidate"]["accuracy"] == 0.5
    assert data["flips"] == [{"from": "odd", "to": "even", "rows": 5}]
    assert "max_accuracy_drop=0.4: accuracy dropped by 0.5000 (1.0000 -> 0.5000)" in captured.err
