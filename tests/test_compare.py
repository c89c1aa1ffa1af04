"""``tsbatch.compare``: two model versions' classifications of the same rows, side by side.

The hand-made cases are small enough that every figure is worked out in the
comments; the job cases read OUTPUT folders written by real jobs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import tsbatch
from tests.compare_helpers import BASELINE, CANDIDATE, IDS, classified, golden_set, job_output
from tsbatch import ComparisonReport, ConfigError, InputValidationError, RegressionError, TsbatchError


@pytest.fixture
def report() -> ComparisonReport:
    return tsbatch.compare(classified(BASELINE), classified(CANDIDATE, scores=[0.6] * 6))


def test_a_candidate_identical_to_the_baseline_changes_nothing() -> None:
    same = tsbatch.compare(classified(BASELINE), classified(BASELINE))
    assert same.agreement == 1.0
    assert same.flips == []
    assert same.changed_rows.empty
    assert same.baseline == same.candidate
    for difference in same.differences.values():
        assert (difference.value, difference.low, difference.high) == (0.0, 0.0, 0.0)
    assert (same.per_class["delta_f1"] == 0).all()
    assert same.score_drift_summary == {"rows": 6, "mean": 0.0, "median": 0.0, "p5": 0.0, "p95": 0.0}


def test_accuracy_and_macro_f1_are_those_worked_out_by_hand(report: ComparisonReport) -> None:
    # baseline: r3 wrong. a: 2 right of 2 predicted, 2 true -> F1 1; b: 1 of 1, 2 true -> 2/3;
    # c: 2 of 3, 2 true -> 4/5. Macro-F1 (1 + 2/3 + 4/5) / 3 = 37/45.
    assert report.baseline is not None and report.candidate is not None
    assert report.baseline.accuracy == pytest.approx(5 / 6)
    assert report.baseline.macro_f1 == pytest.approx(37 / 45)
    # candidate: r1 and r5 wrong. a: 1 of 2, 2 true -> 1/2; b: 2 of 3 -> 4/5; c: 1 of 1 -> 2/3.
    assert report.candidate.accuracy == pytest.approx(4 / 6)
    assert report.candidate.macro_f1 == pytest.approx(59 / 90)
    assert report.differences["accuracy"].value == pytest.approx(-1 / 6)
    assert report.differences["macro_f1"].value == pytest.approx(59 / 90 - 37 / 45)
    assert report.agreement == 0.5


def test_the_per_class_table_holds_each_models_precision_recall_and_f1(report: ComparisonReport) -> None:
    table = report.per_class
    assert table is not None
    assert list(table.index) == ["a", "b", "c"]
    assert table["support"].tolist() == [2, 2, 2]
    assert table["baseline_precision"].tolist() == pytest.approx([1, 1, 2 / 3])
    assert table["baseline_recall"].tolist() == pytest.approx([1, 1 / 2, 1])
    assert table["candidate_precision"].tolist() == pytest.approx([1 / 2, 2 / 3, 1])
    assert table["candidate_f1"].tolist() == pytest.approx([1 / 2, 4 / 5, 2 / 3])
    assert table["delta_f1"].tolist() == pytest.approx([-1 / 2, 4 / 5 - 2 / 3, 2 / 3 - 4 / 5])


def test_the_flip_matrix_counts_rows_by_baseline_and_candidate_label(report: ComparisonReport) -> None:
    expected = pd.DataFrame(
        [[1, 1, 0], [0, 1, 0], [1, 1, 1]],
        index=pd.Index(["a", "b", "c"], name="baseline"),
        columns=pd.Index(["a", "b", "c"], name="candidate"),
    )
    pd.testing.assert_frame_equal(report.flip_matrix, expected)
    assert report.flips == [("a", "b", 1), ("c", "a", 1), ("c", "b", 1)]


def test_the_changed_rows_are_exactly_the_flipped_ones_with_their_effect(report: ComparisonReport) -> None:
    changed = report.changed_rows
    assert changed["id"].tolist() == ["r1", "r3", "r5"]
    assert changed["text"].tolist() == ["text of r1", "text of r3", "text of r5"]
    assert changed["truth"].tolist() == ["a", "b", "c"]
    assert changed["baseline_label"].tolist() == ["a", "c", "c"]
    assert changed["candidate_label"].tolist() == ["b", "b", "a"]
    assert changed["baseline_score"].tolist() == [0.5] * 3
    assert changed["candidate_score"].tolist() == [0.6] * 3
    assert changed["change"].tolist() == ["regressed", "fixed", "regressed"]
    assert report.score_drift.round(9).tolist() == [0.1] * 6


def test_a_class_neither_true_nor_predicted_by_a_model_is_left_out_of_its_macro_f1() -> None:
    # The candidate predicts "d", which no row has: it counts (F1 0) in the candidate's macro-F1 only.
    report = tsbatch.compare(classified(BASELINE), classified(["a", "a", "b", "d", "c", "c"]))
    assert report.baseline is not None and report.candidate is not None
    assert report.baseline.macro_f1 == pytest.approx(37 / 45)
    assert report.candidate.macro_f1 == pytest.approx((1 + 2 / 3 + 1 + 0) / 4)
    assert report.per_class is not None
    assert pd.isna(report.per_class.loc["d", "baseline_f1"])
    assert report.per_class.loc["d", "candidate_f1"] == 0.0


def test_rows_on_one_side_only_are_reported_not_dropped_silently() -> None:
    candidate = classified([*CANDIDATE[:5], "a"], ids=[*IDS[:5], "r9"])
    report = tsbatch.compare(classified(BASELINE), candidate)
    assert (report.matched, report.compared) == (5, 5)
    assert report.only_in_baseline == ("r5",)
    assert report.only_in_candidate == ("r9",)
    data = report.to_dict()
    assert data["only_in_baseline"] == {"rows": 1, "ids": ["r5"]}
    assert data["only_in_candidate"] == {"rows": 1, "ids": ["r9"]}
    assert "1 row only in the baseline: 'r5'" in str(report)


def test_rows_not_ok_on_either_side_are_counted_and_left_out_of_the_figures() -> None:
    baseline = classified(
        [*BASELINE[:2], None, *BASELINE[3:]], statuses=["ok", "ok", "skipped", "ok", "ok", "ok"]
    )
    candidate = classified(["a", None, "b", "b", "c", "a"], statuses=["ok", "error", "ok", "ok", "ok", "ok"])
    report = tsbatch.compare(baseline, candidate)
    assert (report.matched, report.compared) == (6, 4)
    assert report.not_ok == {"baseline": {"skipped": 1}, "candidate": {"error": 1}}
    # Over r0, r3, r4, r5: the baseline gets r3 wrong, the candidate r5; they differ on r3 and r5.
    assert report.baseline is not None and report.candidate is not None
    assert report.baseline.accuracy == report.candidate.accuracy == 0.75
    assert report.agreement == 0.5
    assert report.changed_rows["id"].tolist() == ["r3", "r5"]
    assert report.to_dict()["not_ok"] == {"rows": 2, "baseline": {"skipped": 1}, "candidate": {"error": 1}}
    assert "2 rows not ok on a side, left out of every figure" in str(report)


def test_a_repeated_id_is_refused_naming_the_column_and_the_side() -> None:
    candidate = classified(CANDIDATE, ids=["r0", "r1", "r2", "r3", "r4", "r1"])
    with pytest.raises(InputValidationError, match=r"id column 'id' of the candidate .* not unique.*'r1'"):
        tsbatch.compare(classified(BASELINE), candidate)


def test_a_missing_truth_column_is_refused_naming_it() -> None:
    with pytest.raises(InputValidationError, match="truth column 'gold' is in neither"):
        tsbatch.compare(classified(BASELINE), classified(CANDIDATE), truth="gold")


def test_the_sides_must_agree_on_the_truth() -> None:
    candidate = classified(CANDIDATE, truth=["a", "a", "b", "b", "c", "b"])
    with pytest.raises(InputValidationError, match=r"truth column 'label' differs .* 1 matched rows"):
        tsbatch.compare(classified(BASELINE), candidate)


def test_without_truth_the_report_has_agreement_but_no_accuracy() -> None:
    report = tsbatch.compare(classified(BASELINE), classified(CANDIDATE), truth=None)
    assert report.agreement == 0.5
    assert report.baseline is None and report.per_class is None and report.differences == {}
    assert "change" not in report.changed_rows.columns
    data = report.to_dict()
    assert data["baseline"] == data["candidate"] == {"accuracy": None, "macro_f1": None}
    report.check(min_agreement=0.5)
    with pytest.raises(ConfigError, match="max_accuracy_drop needs the true labels"):
        report.check(max_accuracy_drop=0.1)


def test_frames_without_an_id_column_are_matched_on_their_index() -> None:
    baseline = classified(BASELINE).drop(columns="id").set_index(pd.Index(IDS))
    candidate = classified(CANDIDATE).drop(columns="id").set_index(pd.Index(IDS)).iloc[::-1]
    report = tsbatch.compare(baseline, candidate)
    assert report.id_column is None and report.matched == 6
    assert report.changed_rows["id"].tolist() == ["r1", "r3", "r5"]


def test_check_lists_every_broken_threshold_at_once(report: ComparisonReport) -> None:
    with pytest.raises(RegressionError) as raised:
        report.check(max_accuracy_drop=0.1, min_agreement=0.9, max_class_f1_drop=0.2, max_macro_f1_drop=0.5)
    names = [name for name, _, _ in raised.value.broken]
    # accuracy dropped 1/6 > 0.1; agreement 0.5 < 0.9; class a's F1 dropped 1/2 > 0.2 (c's only 2/15);
    # macro-F1 dropped 1/6 < 0.5 holds.
    assert names == ["min_agreement", "max_accuracy_drop", "max_class_f1_drop[a]"]
    message = str(raised.value)
    assert "min_agreement=0.9: agreement is 0.5000" in message
    assert "max_accuracy_drop=0.1: accuracy dropped by 0.1667 (0.8333 -> 0.6667)" in message
    assert "max_class_f1_drop=0.2: F1 of class 'a' dropped by 0.5000" in message
    assert len(message.splitlines()) == 4


def test_check_passes_when_every_threshold_holds(report: ComparisonReport) -> None:
    # A figure equal to its threshold holds: agreement is exactly 0.5, the worst class drop exactly 0.5.
    report.check(max_accuracy_drop=0.2, min_agreement=0.5, max_class_f1_drop=0.5, max_macro_f1_drop=0.2)
    report.check()


def test_a_regression_is_an_assertion_error_so_tests_and_notebooks_fail_on_it(
    report: ComparisonReport,
) -> None:
    assert issubclass(RegressionError, AssertionError) and issubclass(RegressionError, TsbatchError)
    with pytest.raises(AssertionError):
        report.check(min_agreement=1.0)


@pytest.mark.parametrize("threshold", [{"min_agreement": 1.5}, {"max_accuracy_drop": "0.1"}])
def test_a_threshold_out_of_range_is_refused_naming_it(report: ComparisonReport, threshold: dict) -> None:
    with pytest.raises(ConfigError, match=next(iter(threshold))):
        report.check(**threshold)


def test_the_json_form_has_the_figures_flips_and_changed_rows(report: ComparisonReport) -> None:
    data = json.loads(report.to_json())
    assert data["agreement"] == 0.5
    assert data["baseline"]["accuracy"] == pytest.approx(5 / 6)
    assert data["candidate"]["macro_f1"] == pytest.approx(59 / 90)
    assert data["flips"] == [
        {"from": "a", "to": "b", "rows": 1},
        {"from": "c", "to": "a", "rows": 1},
        {"from": "c", "to": "b", "rows": 1},
    ]
    assert [row["id"] for row in data["changed_rows"]] == ["r1", "r3", "r5"]
    assert data["changed"] == {"rows": 3, "fixed": 1, "regressed": 2, "both_wrong": 0}
    assert data["matched"] == data["compared"] == 6
    low, high = data["differences"]["accuracy"]["low"], data["differences"]["accuracy"]["high"]
    assert low <= data["differences"]["accuracy"]["value"] <= high
    assert data["bootstrap"] == {"resamples": 1000, "seed": 0, "confidence": 0.95}
    assert [row["class"] for row in data["per_class"]] == ["a", "b", "c"]
    assert set(data["score_drift"]) == {"rows", "mean", "median", "p5", "p95"}


def test_the_bootstrap_is_seeded() -> None:
    def interval(seed: int) -> tuple[float, float]:
        difference = tsbatch.compare(classified(BASELINE), classified(CANDIDATE), seed=seed, n_boot=200)
        return difference.differences["macro_f1"].low, difference.differences["macro_f1"].high

    assert interval(7) == interval(7)


def test_the_text_form_reads_as_a_summary(report: ComparisonReport) -> None:
    text = str(report)
    assert repr(report) == text
    assert "6 rows matched on id column 'id', 6 compared" in text
    assert "accuracy    0.8333     0.6667     -0.1667" in text
    assert "agreement 0.5000: 3 of 6 rows changed label (1 fixed, 2 regressed, 0 both wrong)" in text
    assert "a -> b  1" in text


def test_the_html_form_has_the_figures_an_embedded_plot_and_escapes_user_text() -> None:
    pytest.importorskip("matplotlib")
    baseline = classified(BASELINE)
    baseline.loc[1, "text"] = "<script>alert(1)</script>"
    report = tsbatch.compare(baseline, classified(CANDIDATE))
    page = report._repr_html_()
    assert "0.8333" in page and "0.6667" in page and "0.5000" in page
    assert "data:image/png;base64," in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_to_html_writes_a_self_contained_page(report: ComparisonReport, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    report.to_html(tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "data:image/png;base64," in page
    assert "<link" not in page and "<script" not in page


def test_plot_returns_a_figure(report: ComparisonReport) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    figure = report.plot()
    assert isinstance(figure, Figure)
    assert [ax.get_title() for ax in figure.axes][:3] == [
        "flips (same label left out)",
        "F1 change per class (candidate - baseline)",
        "score drift (candidate - baseline)",
    ]


def test_job_outputs_are_read_part_by_part_and_matched_on_the_jobs_id_column(tmp_path: Path) -> None:
    source = golden_set(tmp_path / "golden.parquet")  # row-0 ... row-9, label even/odd
    right = job_output(source, tmp_path / "v1", lambda text: "even" if int(text[-1]) % 2 == 0 else "odd")
    # v2 calls 9 even, and refuses text 3 (an error row).
    v2 = {"3": None, "9": "even"}
    candidate = job_output(
        source, tmp_path / "v2", lambda text: v2.get(text[-1], "even" if int(text[-1]) % 2 == 0 else "odd")
    )
    assert len(list(candidate.glob("part-*.parquet"))) == 3
    report = tsbatch.compare(right, str(candidate))
    assert report.sources == (str(right), str(candidate))
    assert (report.id_column, report.text_column) == ("id", "text")
    assert (report.matched, report.compared) == (10, 9)
    assert report.not_ok == {"baseline": {}, "candidate": {"error": 1}}
    assert report.changed_rows[["id", "text", "truth", "change"]].values.tolist() == [
        ["row-9", "text 9", "odd", "regressed"]
    ]
    assert report.baseline is not None and report.candidate is not None
    assert report.baseline.accuracy == 1.0
    assert report.candidate.accuracy == pytest.approx(8 / 9)


def test_a_parquet_file_of_classified_rows_is_a_side(tmp_path: Path) -> None:
    classified(CANDIDATE).to_parquet(tmp_path / "candidate.parquet", index=False)
    report = tsbatch.compare(classified(BASELINE), tmp_path / "candidate.parquet")
    assert report.agreement == 0.5 and report.changed_rows["id"].tolist() == ["r1", "r3", "r5"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "nowhere", "the candidate .*nowhere does not exist"),
        (lambda d: d, "holds no part-\\*.parquet files"),
        (lambda d: d / "notes.txt", "cannot be read as Parquet"),
    ],
)
def test_a_path_that_is_no_classified_output_is_refused_naming_it(tmp_path: Path, make, message: str) -> None:
    (tmp_path / "notes.txt").write_text("not parquet")
    with pytest.raises(InputValidationError, match=message):
        tsbatch.compare(classified(BASELINE), make(tmp_path))


def test_a_frame_without_predictions_is_refused_naming_the_columns() -> None:
    with pytest.raises(
        InputValidationError, match=r"the baseline \(a DataFrame\) has no column\(s\) \['pred_label'"
    ):
        tsbatch.compare(classified(BASELINE).drop(columns="pred_label"), classified(CANDIDATE))
