"""Reply mapping: one row's raw output, as a protocol read it, turned into a prediction.

Classification servers answer in many shapes.  With ``reply="auto"`` the
shape is recognised from each row's output:

=================  ================================================  ==========================
``reply=``         one row's output                                  prediction
=================  ================================================  ==========================
``label``          ``"games"``                                        the label, no score
``label_score``    ``{"label": "games", "score": 0.9[, "scores"]}``   label and score
``class_scores``   ``{"games": 0.9, "net": 0.1}``                     the best class, all scores
``top_k``          ``[{"label": "games", "score": 0.9}, ...]``        the best entry, all scores
``probabilities``  ``[0.9, 0.1]`` with class names from ``labels=``   the best class, all scores
                   or the model's metadata
=================  ================================================  ==========================

A protocol gives a row of several output tensors under their roles: a
``BYTES`` label and a numeric score as ``label_score``, a probability vector
(with or without a label) as ``probabilities``.

An output of the right shape with an impossible value (a score that is NaN,
infinite or outside 0..1, an empty label) is an ``InvalidPrediction``; one of
no shape above a ``MalformedResponse``.  Both become error rows that quote the
output: never a guessed success.  A text that holds JSON (an object, a list, a
quoted string: a ``BYTES`` tensor of JSON, say) is read as that JSON.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

from tsbatch._errors import ConfigError, TorchServeInferenceError
from tsbatch._protocols._base import invalid, is_probability, malformed
from tsbatch._types import Prediction

ReplyShape = Literal["auto", "label", "label_score", "class_scores", "top_k", "probabilities"]


def _is_number(value: Any) -> bool:
    return type(value) in (float, int)


def _is_label(value: Any) -> bool:
    return (type(value) is str and value != "") or type(value) is int


@dataclass(frozen=True)
class ReplyMapping:
    """How one row's output becomes a :class:`~tsbatch.Prediction`.

    ``shape`` forces one of the shapes in the module docstring (default:
    recognised per row); ``labels`` names the classes of a probability vector,
    in order.
    """

    shape: ReplyShape = "auto"
    labels: Sequence[str] | None = None  # kept as a tuple

    def __post_init__(self) -> None:
        if self.shape not in get_args(ReplyShape):
            raise ConfigError(f"reply must be one of {', '.join(get_args(ReplyShape))}; got {self.shape!r}")
        if self.labels is not None:
            given: Any = self.labels
            if isinstance(given, str) or not all(_is_label(x) for x in given):
                raise ConfigError(f"labels must be a list of class names; got {self.labels!r}")
            object.__setattr__(self, "labels", tuple(str(x) for x in self.labels))

    def prediction(self, output: Any, model: str | None, version: str | None) -> Prediction:
        """One row's prediction; raises :class:`~tsbatch.TorchServeInferenceError` (status 200)."""
        if type(output) is str and output[:1] in ("{", "[", '"'):
            with contextlib.suppress(ValueError):
                output = json.loads(output)
        shape = self.shape if self.shape != "auto" else _recognise(output)
        if shape is None:
            raise malformed("output is no prediction tsbatch can read", output, model, version)
        return _READERS[shape](self, output, model, version)

    def predictions(self, outputs: Sequence[Any], model: str | None, version: str | None) -> list[Prediction]:
        """Each row's prediction, as :meth:`prediction` reads it."""
        return [Prediction(*row) for row in self.rows(outputs, model, version)]

    def rows(self, outputs: Sequence[Any], model: str | None, version: str | None) -> list[Scored]:
        """Each row's prediction as (label, score, scores), as :meth:`prediction` reads it; the
        common ``{"label", "score"}`` row is read inline, with no object made for it."""
        if self.shape not in ("auto", "label_score"):
            return [_scored(self.prediction(output, model, version)) for output in outputs]
        read: list[Scored] = []
        append = read.append
        for output in outputs:
            if type(output) is dict and len(output) == 2:
                label: Any = output.get("label")
                score: Any = output.get("score")
                kind = type(score)
                if type(label) is str and label and (kind is float or kind is int) and 0.0 <= score <= 1.0:
                    append((label, float(score), None))
                    continue
            append(_scored(self.prediction(output, model, version)))
        return read


#: One row's prediction as (label, score, scores).
Scored = tuple[str, float | None, dict[str, float] | None]


def _scored(prediction: Prediction) -> Scored:
    return prediction.label, prediction.score, prediction.scores


def _recognise(output: Any) -> ReplyShape | None:
    if _is_label(output):
        return "label"
    if type(output) is dict:
        if "label" in output and "score" in output:
            return "label_score"
        if output and all(_is_number(v) for v in output.values()):
            return "class_scores"
        return "tensors" if _roles(output) is not None else None  # type: ignore[return-value]
    if type(output) is list and output:
        if all(type(x) is dict and "label" in x for x in output):
            return "top_k"
        if all(_is_number(x) for x in output):
            return "probabilities"
    return None


def _label(mapping: ReplyMapping, output: Any, model: str | None, version: str | None) -> Prediction:
    if not _is_label(output):
        raise malformed("output is not a label", output, model, version)
    return Prediction(str(output), None)


def _label_score(mapping: ReplyMapping, output: Any, model: str | None, version: str | None) -> Prediction:
    if type(output) is not dict or "label" not in output:
        raise malformed("output has no label and score", output, model, version)
    label, score, scores = output["label"], output.get("score"), output.get("scores")
    score = cast(float, score)
    if not _is_number(score):
        raise invalid("prediction has no numeric score", output, model, version)
    if not is_probability(score):
        raise invalid("prediction score is not a probability", output, model, version)
    if not _is_label(label):
        raise invalid("prediction label is not a class name", output, model, version)
    if scores is None:
        return Prediction(str(label), float(score))
    if type(scores) is not dict or not all(is_probability(v) for v in scores.values()):
        raise invalid("prediction scores are not probabilities", output, model, version)
    return Prediction(str(label), float(score), {str(k): float(v) for k, v in scores.items()})


def _class_scores(mapping: ReplyMapping, output: Any, model: str | None, version: str | None) -> Prediction:
    if type(output) is not dict or not output or not all(_is_number(v) for v in output.values()):
        raise malformed("output is not a mapping of classes to scores", output, model, version)
    if not all(is_probability(v) for v in output.values()):
        raise invalid("class scores are not probabilities", output, model, version)
    return _best({str(k): float(v) for k, v in output.items()})


def _top_k(mapping: ReplyMapping, output: Any, model: str | None, version: str | None) -> Prediction:
    if type(output) is not list or not output:
        raise malformed("output is not a list of labels and scores", output, model, version)
    scores: dict[str, float] = {}
    for entry in output:
        scored = _label_score(mapping, entry, model, version)
        if scored.score is None:
            raise invalid("a top-k entry has no score", output, model, version)
        scores[scored.label] = scored.score
    return _best(scores)


def _probabilities(mapping: ReplyMapping, output: Any, model: str | None, version: str | None) -> Prediction:
    if type(output) is not list or not output or not all(_is_number(x) for x in output):
        raise malformed("output is not a probability vector", output, model, version)
    if mapping.labels is None:
        raise TorchServeInferenceError(
            f"output is a probability vector of {len(output)} classes but their names are unknown: "
            "pass labels=[...] (the model's metadata names none)",
            status=200,
            error_type="MalformedResponse",
            model=model,
            version=version,
        )
    if len(output) != len(mapping.labels):
        raise malformed(
            f"output has {len(output)} probabilities for {len(mapping.labels)} labels", output, model, version
        )
    if not all(is_probability(x) and math.isfinite(x) for x in output):
        raise invalid("output is not a vector of probabilities", output, model, version)
    return _best(dict(zip(mapping.labels, (float(x) for x in output), strict=True)))


def _roles(output: dict[Any, Any]) -> tuple[Any, Any, Any] | None:
    """A row of named outputs as (label, score, probabilities), each ``None`` when absent;
    ``None`` when the roles are not clear (two labels, say)."""
    labels: list[Any] = [v for v in output.values() if _is_label(v) and type(v) is str]
    scores: list[Any] = [v for v in output.values() if _is_number(v)]
    vectors: list[Any] = [
        v for v in output.values() if type(v) is list and v and all(_is_number(x) for x in v)
    ]
    if (
        len(labels) > 1
        or len(scores) > 1
        or len(vectors) > 1
        or len(labels) + len(scores) + len(vectors) == 0
    ):
        return None
    if len(output) < 2 or len(labels) + len(scores) + len(vectors) != len(output):
        return None  # one named value is no row of output tensors: never guess
    return (labels or [None])[0], (scores or [None])[0], (vectors or [None])[0]


def _tensors(mapping: ReplyMapping, output: Any, model: str | None, version: str | None) -> Prediction:
    roles = _roles(output)
    if roles is None:
        raise malformed("outputs have no clear label, score or probabilities", output, model, version)
    label, score, vector = roles
    if vector is not None:
        return _probabilities(mapping, vector, model, version)
    if label is not None and score is not None:
        return _label_score(mapping, {"label": label, "score": score}, model, version)
    if label is not None:
        return _label(mapping, label, model, version)
    raise malformed("outputs have a score but no label", output, model, version)


def _best(scores: dict[str, float]) -> Prediction:
    label = max(scores, key=scores.__getitem__)
    return Prediction(label, scores[label], scores)


_READERS = {
    "label": _label,
    "label_score": _label_score,
    "class_scores": _class_scores,
    "top_k": _top_k,
    "probabilities": _probabilities,
    "tensors": _tensors,
}
