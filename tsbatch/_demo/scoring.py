"""Accuracy and macro-F1, without torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Evaluation:
    """Accuracy and macro-averaged F1 of predictions against labels."""

    rows: int
    accuracy: float
    macro_f1: float


def evaluate(labels: list[str], predictions: list[str]) -> Evaluation:
    """Score ``predictions`` against ``labels`` (equal lengths)."""
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    correct = sum(a == b for a, b in zip(labels, predictions, strict=True))
    f1s = []
    for cls in sorted(set(labels) | set(predictions)):
        tp = sum(a == cls and b == cls for a, b in zip(labels, predictions, strict=True))
        fp = sum(a != cls and b == cls for a, b in zip(labels, predictions, strict=True))
        fn = sum(a == cls and b != cls for a, b in zip(labels, predictions, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    n = len(labels)
    return Evaluation(n, correct / n if n else 0.0, sum(f1s) / len(f1s) if f1s else 0.0)
