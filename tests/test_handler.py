"""The demo handler's input parsing, run in-process."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")  # needs the serve extra

from tsbatch._demo.handler import MAX_TEXT_CHARS, BadInput, DemoTextHandler, feature_ids, parse_request


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("plain text body", (["plain text body"], False)),
        (b"raw bytes body", (["raw bytes body"], False)),
        (b'"a json string"', (["a json string"], False)),
        ({"text": "an object"}, (["an object"], False)),
        (["one", "two"], (["one", "two"], True)),
        ({"instances": ["one", "two"]}, (["one", "two"], True)),
        (bytearray(b'{"instances": ["x"]}'), (["x"], True)),
        (b"42", (["42"], False)),
    ],
)
def test_accepted_request_forms(body: object, expected: tuple[list[str], bool]) -> None:
    assert parse_request(body) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("   ", "text is empty"),
        ({"text": 7}, '"text" must be a string, got int'),
        (["ok", None], "item 1 must be a string, got NoneType"),
        ([], "list of texts is empty"),
        ({"instances": "x"}, '"instances" must be a list'),
        ({"other": "x"}, 'needs a "text" or an "instances" field'),
        (b"\xff\xfe", "not UTF-8"),
        ("x" * (MAX_TEXT_CHARS + 1), f"more than {MAX_TEXT_CHARS}"),
    ],
)
def test_bad_input_names_the_problem(body: object, message: str) -> None:
    with pytest.raises(BadInput, match=message.replace("(", r"\(")):
        parse_request(body)


def test_features_ignore_case_and_include_bigrams() -> None:
    assert feature_ids("Hello World") == feature_ids("hello world")
    assert len(feature_ids("hello world")) == 3


class FakeContext:
    """The two context methods the handler uses, recording statuses."""

    def __init__(self) -> None:
        self.statuses: dict[int, tuple[int, str]] = {}

    def get_request_header(self, idx: int, key: str) -> str | None:
        return None

    def set_response_status(self, code: int, phrase: str, idx: int) -> None:
        self.statuses[idx] = (code, phrase)


def test_a_bad_request_does_not_spoil_its_batch(in_process_model: DemoTextHandler) -> None:
    context = FakeContext()
    replies = in_process_model.handle(
        [{"body": "a game"}, {"body": ["ok", 3]}, {"data": ["x", "y"]}], context
    )
    assert context.statuses == {1: (400, "Bad input: item 1 must be a string, got int")}
    assert json.loads(replies[0])["label"] in in_process_model.classes
    assert len(json.loads(replies[2])) == 2


def test_answers_carry_label_score_and_all_scores(in_process_model: DemoTextHandler) -> None:
    (answer,) = in_process_model.predict(["a real-time strategy game"])
    assert set(answer) == {"label", "score", "scores"}
    assert set(answer["scores"]) == set(in_process_model.classes)
    assert answer["score"] == max(answer["scores"].values())
    assert sum(answer["scores"].values()) == pytest.approx(1.0, abs=1e-4)
