"""Every reply shape a classification server gives, over each protocol; an unmappable one is an error row."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from tsbatch import (
    ClientConfig,
    ConfigError,
    MockTransport,
    Prediction,
    Reply,
    Request,
    TorchServeClient,
    TorchServeInferenceError,
)
from tsbatch._mapping import ReplyMapping

TEXTS = ["a chess engine", "a web server"]
CLASSES = ["games", "net", "admin"]


def served(protocol: str, per_text: list[Any], metadata: dict[str, Any] | None = None) -> MockTransport:
    """A server of ``protocol`` that answers each text with the next of ``per_text`` (raw outputs)."""

    def handler(request: Request) -> Reply:
        path = request.url.split("://", 1)[1].split("/", 1)[1]
        if request.method == "GET":
            if "health" in path or path in ("ping", "v1/models/demo"):
                return Reply(
                    200, body=json.dumps({"status": "Healthy", "ready": True, "name": "demo"}).encode()
                )
            if protocol == "v2" and path == "v2/models/demo":
                return Reply(200, body=json.dumps(metadata or {"name": "demo"}).encode())
            return Reply(404, body=b'{"error": "no management API here"}')
        body = json.loads(request.body or b"null") if request.body and request.body[:1] in b"[{" else None
        if protocol == "v2":
            return Reply(200, body=json.dumps(per_text[0](len(body["inputs"][0]["data"]))).encode())
        if protocol == "v1":
            return Reply(200, body=json.dumps({"predictions": per_text[: len(body["instances"])]}).encode())
        count = len(body["instances"]) if body else 1
        return Reply(200, body=json.dumps(per_text[:count] if body else per_text[0]).encode())

    return MockTransport(handler)


def classify(protocol: str, per_text: list[Any], metadata: dict[str, Any] | None = None, **options: Any):
    async def run() -> pd.DataFrame:
        config = ClientConfig(url="http://server:1", management_url="http://server:2", protocol=protocol)
        client = TorchServeClient(
            config=config, transport=served(protocol, per_text, metadata), registry=CollectorRegistry()
        )
        async with client:
            frame = pd.DataFrame({"text": TEXTS})
            return await frame.ts.aclassify("text", client=client, progress=False, mode="list", **options)

    import asyncio

    return asyncio.run(run())


@pytest.mark.parametrize("protocol", ["torchserve", "v1"])
@pytest.mark.parametrize(
    ("outputs", "labels", "scores"),
    [
        (["games", "net"], ["games", "net"], [None, None]),  # a bare label
        ([{"label": "games", "score": 0.9}, {"label": "net", "score": 0.7}], ["games", "net"], [0.9, 0.7]),
        (
            [{"games": 0.8, "net": 0.2}, {"games": 0.1, "net": 0.9}],
            ["games", "net"],
            [0.8, 0.9],
        ),  # class scores
        (
            [
                [{"label": "net", "score": 0.3}, {"label": "games", "score": 0.6}],
                [{"label": "net", "score": 0.95}],
            ],
            ["games", "net"],
            [0.6, 0.95],
        ),  # top-k: the best of each list
        ([json.dumps({"label": "games", "score": 0.9}), json.dumps("net")], ["games", "net"], [0.9, None]),
    ],
    ids=["label", "label_score", "class_scores", "top_k", "json_text"],
)
def test_a_reply_shape_is_recognised(
    protocol: str, outputs: list[Any], labels: list[str], scores: list[Any]
) -> None:
    result = classify(protocol, outputs)
    assert (result["ts_status"] == "ok").all(), result["ts_error"].tolist()
    assert result["pred_label"].tolist() == labels
    assert [None if pd.isna(s) else round(s, 6) for s in result["pred_score"]] == scores


def test_a_top_k_list_keeps_every_entry_in_the_scores() -> None:
    outputs = [
        [{"label": "net", "score": 0.3}, {"label": "games", "score": 0.6}],
        [{"label": "net", "score": 0.9}],
    ]
    result = classify("v1", outputs, include_scores=True)
    assert result["pred_scores"].tolist()[0] == {"games": 0.6, "net": 0.3}


def test_a_probability_vector_takes_its_class_names_from_labels() -> None:
    result = classify("v1", [[0.1, 0.7, 0.2], [0.8, 0.1, 0.1]], labels=CLASSES, include_scores=True)
    assert result["pred_label"].tolist() == ["net", "games"]
    assert result["pred_score"].round(6).tolist() == [0.7, 0.8]
    assert result["pred_scores"].tolist()[1] == {"games": 0.8, "net": 0.1, "admin": 0.1}


def test_a_probability_vector_without_class_names_is_an_error_row_that_says_what_to_pass() -> None:
    result = classify("v1", [[0.1, 0.9], [0.8, 0.2]])
    assert (result["ts_status"] == "error").all()
    assert result["ts_error"].str.contains("pass labels=").all()
    assert (result["ts_error_kind"] == "bad_reply").all()


def v2_reply(*outputs: dict[str, Any]) -> Any:
    return lambda n: {
        "model_name": "demo",
        "outputs": [dict(o, data=o["data"][: n * o.get("width", 1)]) for o in outputs],
    }


def tensor(name: str, datatype: str, data: list[Any], width: int | None = None) -> dict[str, Any]:
    rows = len(data) // (width or 1)
    return {
        "name": name,
        "datatype": datatype,
        "shape": [rows, width] if width else [rows],
        "data": data,
        "width": width or 1,
    }


@pytest.mark.parametrize(
    ("outputs", "labels", "scores"),
    [
        (
            (tensor("label", "BYTES", ["games", "net"]), tensor("score", "FP32", [0.9, 0.7])),
            ["games", "net"],
            [0.9, 0.7],
        ),
        (
            (tensor("predicted", "BYTES", ["games", "net"]), tensor("confidence", "FP64", [0.9, 0.7])),
            ["games", "net"],
            [0.9, 0.7],
        ),
        ((tensor("label", "BYTES", ["games", "net"]),), ["games", "net"], [None, None]),
        (
            (tensor("probabilities", "FP32", [0.1, 0.7, 0.2, 0.8, 0.1, 0.1], width=3),),
            ["net", "games"],
            [0.7, 0.8],
        ),
    ],
    ids=["label_and_score", "other_names", "label_only", "probabilities"],
)
def test_v2_output_tensors_are_read_by_their_types(
    outputs: Any, labels: list[str], scores: list[Any]
) -> None:
    metadata = {"name": "demo", "parameters": {"classes": CLASSES}}
    result = classify("v2", [v2_reply(*outputs)], metadata)
    assert (result["ts_status"] == "ok").all(), result["ts_error"].tolist()
    assert result["pred_label"].tolist() == labels
    assert [None if pd.isna(s) else round(s, 6) for s in result["pred_score"]] == scores


@pytest.mark.parametrize(
    ("protocol", "outputs", "quoted"),
    [
        ("v1", [{"nothing": "useful"}, {"nothing": "useful"}], "nothing"),
        ("v1", [{"label": "games", "score": 1.7}, {"label": "net", "score": 0.2}], "1.7"),
        ("torchserve", [["games", "net"], ["games", "net"]], "games"),
        ("v2", [v2_reply(tensor("a", "BYTES", ["x", "y"]), tensor("b", "BYTES", ["x", "y"]))], "x"),
    ],
    ids=["no_label", "impossible_score", "list_of_labels", "two_label_tensors"],
)
def test_an_unmappable_reply_is_an_error_row_quoting_it(protocol: str, outputs: Any, quoted: str) -> None:
    result = classify(protocol, outputs)
    assert result.loc[0, "ts_status"] == "error"
    assert quoted in result.loc[0, "ts_error"]
    assert result.loc[0, "ts_error_kind"] == "bad_reply"


def test_a_forced_shape_refuses_another() -> None:
    result = classify("v1", [{"games": 0.8, "net": 0.2}] * 2, reply="label_score")
    assert (result["ts_status"] == "error").all()
    with pytest.raises(ConfigError, match="reply must be one of"):
        classify("v1", ["games"] * 2, reply="best_guess")


def test_the_v2_request_names_the_input_from_the_metadata_and_sends_json() -> None:
    seen: list[Request] = []

    def handler(request: Request) -> Reply:
        if request.method == "GET":
            metadata = {"name": "demo", "inputs": [{"name": "sentence", "datatype": "BYTES", "shape": [-1]}]}
            return Reply(200, body=json.dumps(metadata).encode())
        seen.append(request)
        n = len(json.loads(request.body or b"")["inputs"][0]["data"])
        return Reply(200, body=json.dumps(v2_reply(tensor("label", "BYTES", ["games"] * n))(n)).encode())

    async def run() -> Prediction:
        config = ClientConfig(url="http://server:1", protocol="v2")
        async with TorchServeClient(
            config=config, transport=MockTransport(handler), registry=CollectorRegistry()
        ) as client:
            await client.get_model_info("demo")
            return (await client.predict("a chess engine")).prediction

    import asyncio

    assert asyncio.run(run()).label == "games"
    (request,) = seen
    assert request.url == "http://server:1/v2/models/demo/infer"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body or b"")["inputs"] == [
        {"name": "sentence", "shape": [1], "datatype": "BYTES", "data": ["a chess engine"]}
    ]


# -- several inputs -----------------------------------------------------------------------------


def test_several_columns_go_to_the_model_s_named_inputs_each_checked_like_a_text() -> None:
    seen: list[Any] = []

    def handler(request: Request) -> Reply:
        if request.method == "GET":
            return Reply(200, body=json.dumps({"name": "demo", "ready": True}).encode())
        body = json.loads(request.body or b"")
        seen.append(body)
        n = len(body["inputs"][0]["data"])
        return Reply(200, body=json.dumps(v2_reply(tensor("label", "BYTES", ["games"] * n))(n)).encode())

    frame = pd.DataFrame(
        {
            "title": ["chess", "chess", "web", None, "tar"],
            "body": ["an engine", "an engine", "a server", "x", ""],
        }
    )

    async def run() -> pd.DataFrame:
        config = ClientConfig(url="http://server:1", protocol="v2")
        async with TorchServeClient(
            config=config, transport=MockTransport(handler), registry=CollectorRegistry()
        ) as client:
            return await frame.ts.aclassify(
                inputs={"title": "title", "text": "body"}, client=client, progress=False
            )

    import asyncio

    result = asyncio.run(run())
    assert result["ts_status"].tolist() == ["ok", "ok", "ok", "skipped", "error"]
    assert result.loc[4, "ts_error"] == "input 'text': text is empty"
    ((request),) = seen  # identical rows are sent once, in one list
    assert request["inputs"] == [
        {"name": "title", "shape": [2], "datatype": "BYTES", "data": ["chess", "web"]},
        {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["an engine", "a server"]},
    ]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda f: f.ts.classify("title", inputs={"a": "title"}), TypeError, "not both"),
        (lambda f: f.ts.classify(inputs={"a": "nope"}), Exception, "column 'nope' not found"),
        (lambda f: f.ts.classify(inputs=["title"]), TypeError, "inputs must map"),
        (lambda f: f.ts.classify(), TypeError, "pass the column of texts"),
    ],
)
def test_inputs_that_cannot_work_are_refused_before_anything_is_sent(
    call: Any, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        call(pd.DataFrame({"title": ["a"], "body": ["b"]}))


@pytest.mark.parametrize(
    "output",
    [
        {"label": "games", "score": 0.9},
        {"label": "games", "score": 1},
        {"label": "games", "score": 1.5},
        {"label": "games", "score": math.nan},
        {"label": "", "score": 0.5},
        {"label": 7, "score": 0.5},
        {"label": "games", "score": True},
        {"label": "games", "score": "0.9"},
        {"label": "games", "other": 0.9},
        {"games": 0.9, "net": 0.1},
        '{"label": "games", "score": 0.9}',
        "games",
    ],
)
@pytest.mark.parametrize("reply", ["auto", "label_score"])
def test_a_list_s_rows_are_read_as_one_row_is(output: Any, reply: Any) -> None:
    mapping = ReplyMapping(reply)
    try:
        expected: Any = mapping.prediction(output, "demo", None)
    except TorchServeInferenceError as exc:
        expected = str(exc)
    try:
        got: Any = mapping.predictions([output], "demo", None)[0]
    except TorchServeInferenceError as exc:
        got = str(exc)
    assert got == expected
