"""The demo model trains reproducibly and reaches the accuracy the README states."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("torch")  # needs the serve extra

from tsbatch._demo import train as training
from tsbatch._demo.archive import DEFAULT_DATA, DEMO_MODEL_VERSION, DEMO_VERSIONS, Recipe
from tsbatch._demo.cache import DemoArchive
from tsbatch._demo.scoring import evaluate
from tsbatch._demo.train import train

README = Path(__file__).resolve().parents[1] / "README.md"


def test_evaluate_computes_accuracy_and_macro_f1() -> None:
    score = evaluate(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert score.accuracy == 0.75
    # F1(a) = 2*1/(2+0+1) = 2/3, F1(b) = 2*2/(4+1+0) = 4/5
    assert score.macro_f1 == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_evaluate_refuses_unequal_lengths() -> None:
    with pytest.raises(ValueError, match="2 labels but 1 predictions"):
        evaluate(["a", "b"], ["a"])


@pytest.mark.slow
def test_training_is_bit_for_bit_reproducible(demo_build: DemoArchive, tmp_path: Path) -> None:
    again = train(DEFAULT_DATA, tmp_path / "model.pt")
    assert again.sha256 == demo_build.sha256


def test_version_1_0_is_trained_with_the_defaults() -> None:
    assert DEMO_VERSIONS[DEMO_MODEL_VERSION] == Recipe(seed=training.SEED, epochs=training.EPOCHS)


def test_version_2_0_scores_a_little_below_1_0(demo_builds: dict[str, DemoArchive]) -> None:
    first, candidate = demo_builds["1.0"].test, demo_builds["2.0"].test
    assert candidate.rows == first.rows
    assert (candidate.accuracy, candidate.macro_f1) == pytest.approx((0.6866, 0.7053), abs=5e-5)
    assert candidate.accuracy < first.accuracy and candidate.macro_f1 < first.macro_f1


def test_readme_states_the_test_split_scores(demo_build: DemoArchive) -> None:
    text = README.read_text()
    accuracy = re.search(r"test-split accuracy\s*\|?\s*([0-9.]+)", text)
    macro_f1 = re.search(r"macro-F1\s*\|?\s*([0-9.]+)", text)
    assert accuracy and macro_f1, "README does not state the demo model's scores"
    result = demo_build.test
    assert float(accuracy.group(1)) == pytest.approx(result.accuracy, abs=5e-5)
    assert float(macro_f1.group(1)) == pytest.approx(result.macro_f1, abs=5e-5)
