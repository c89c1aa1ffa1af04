"""The Open Inference Protocol (KServe v2) over REST: KServe, Triton, MLServer and others.

Texts go as one ``BYTES`` input tensor of shape ``[n]`` (records of several
named inputs as one tensor per input) to
``POST /v2/models/{model}[/versions/{version}]/infer``, always with
``Content-Type: application/json`` (KServe's server reads a body without it as
the binary extension and refuses it).  The input's name is the model's first
``BYTES`` input when its metadata declares one, else ``Tensors.input``.

A reply's output tensors are cut into rows along their first dimension.  A
row of one output is that tensor's row (a label, a score, a vector); a row of
several is ``{name: row}``, and :mod:`tsbatch._mapping` finds the label,
score and probabilities among them by their types (``Tensors`` names them
when the types do not tell).

Health is ``/v2/health/ready``; model info is ``GET /v2/models/{model}``
(its metadata: inputs, outputs, versions; class names under
``parameters.classes`` when the server gives them).  There is no management
API and no paged model list: ``list_models`` reads the repository index
extension (``POST /v2/repository/index``), which KServe lacks.

Errors are ``{"error": "..."}`` with the HTTP status; KServe answers 404 for
an unknown model, 400/422 for a request it cannot read, 500 when the model
raised (and then drops the connection without saying so), 503 when the model
is not ready.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from tsbatch import _json
from tsbatch._errors import TorchServeInferenceError
from tsbatch._policies import Tensors
from tsbatch._protocols._base import (
    Call,
    Input,
    error_reply,
    length_mismatch,
    malformed,
    read_json,
)
from tsbatch._transport import Reply
from tsbatch._types import ModelInfo


def _model_path(model: str, version: str | None) -> str:
    path = f"/v2/models/{quote(model, safe='')}"
    return f"{path}/versions/{quote(version, safe='')}" if version else path


def _rows(output: dict[str, Any], count: int, model: str, version: str | None) -> list[Any]:
    """One output tensor cut into ``count`` rows along its first dimension."""
    shape, data = output.get("shape"), output.get("data")
    if not isinstance(shape, list) or not shape or not all(type(d) is int for d in shape):
        raise malformed(f"output {output.get('name')!r} has no valid shape", output, model, version)
    if shape[0] != count:
        raise TorchServeInferenceError(
            f"model {model!r} answered {count} texts with an output {output.get('name')!r} of shape {shape}",
            status=200,
            error_type="LengthMismatch",
            model=model,
            version=version,
        )
    flat = _flatten(data)
    size = math.prod(shape)
    if flat is None or len(flat) != size:
        raise malformed(
            f"output {output.get('name')!r} does not hold {size} values of shape {shape}",
            output,
            model,
            version,
        )
    width = size // count if count else 0
    if len(shape) == 1:
        return flat
    rows = [flat[i * width : (i + 1) * width] for i in range(count)]
    return [_nest(row, shape[2:]) for row in rows] if len(shape) > 2 else rows


def _flatten(data: Any) -> list[Any] | None:
    if not isinstance(data, list):
        return None
    if all(not isinstance(x, list) for x in data):
        return data
    flat: list[Any] = []
    for item in data:
        inner = _flatten(item) if isinstance(item, list) else [item]
        if inner is None:
            return None
        flat.extend(inner)
    return flat


def _nest(flat: list[Any], inner: list[int]) -> list[Any]:
    """A row of ``prod(inner) * k`` values as nested lists of the inner shape."""
    if not inner:
        return flat
    step = math.prod(inner)
    return [_nest(flat[i : i + step], inner[1:]) for i in range(0, len(flat), step)]


class V2Protocol:
    """The Open Inference Protocol's REST API."""

    def __init__(self, tensors: Tensors | None = None) -> None:
        self.tensors = tensors or Tensors()
        self._inputs: dict[tuple[str, str | None], str] = {}

    def _infer(self, texts: Sequence[Input], model: str, version: str | None) -> Call:
        columns: dict[str, list[str]] = {}
        for text in texts:
            if isinstance(text, str):
                columns.setdefault(self._inputs.get((model, version), self.tensors.input), []).append(text)
            else:  # a record: one BYTES tensor per named input
                for name, value in text.items():
                    columns.setdefault(name, []).append(value)
        inputs = [
            {"name": name, "shape": [len(data)], "datatype": "BYTES", "data": data}
            for name, data in columns.items()
        ]
        body: dict[str, Any] = {"inputs": inputs}
        if self.tensors.outputs:
            body["outputs"] = [{"name": n} for n in self.tensors.outputs]
        return Call(
            "inference",
            "POST",
            f"{_model_path(model, version)}/infer",
            _json.encode(body),
            "application/json",
        )

    def predict(self, text: Input, model: str, version: str | None) -> Call:
        return self._infer([text], model, version)

    def predict_list(self, texts: Sequence[Input], model: str, version: str | None) -> Call:
        return self._infer(texts, model, version)

    def read_output(self, reply: Reply, model: str, version: str | None) -> Any:
        return self.read_outputs(reply, 1, model, version)[0]

    def read_outputs(self, reply: Reply, count: int, model: str, version: str | None) -> list[Any]:
        body = read_json(reply, model, version)
        outputs = body.get("outputs") if isinstance(body, dict) else None
        if not isinstance(outputs, list) or not outputs or not all(isinstance(o, dict) for o in outputs):
            if isinstance(outputs, list) and not outputs:
                raise length_mismatch(reply, count, "no outputs", model, version)
            raise malformed("reply has no output tensors", body, model, version)
        wanted = self.tensors.outputs
        if wanted:
            outputs = [o for o in outputs if o.get("name") in wanted] or outputs
        columns = {str(o.get("name")): _rows(o, count, model, version) for o in outputs}
        if len(columns) == 1:
            return next(iter(columns.values()))
        return [{name: rows[i] for name, rows in columns.items()} for i in range(count)]

    def read_error(self, reply: Reply, model: str | None, version: str | None) -> TorchServeInferenceError:
        return error_reply(reply, model, version)

    def key_refused(self, reply: Reply) -> bool:
        return False  # tokens are the gateway's business: a refusal is final

    def health(self) -> Call:
        return Call("inference", "GET", "/v2/health/ready")

    def read_health(self, reply: Reply) -> str:
        try:
            body = json.loads(reply.body) if reply.body else {}
        except ValueError:
            body = {}
        ready = body.get("ready", True) if isinstance(body, dict) else True  # MLServer: an empty body
        return "Healthy" if ready else "Not ready"

    def model_info(self, model: str, version: str | None) -> list[Call]:
        return [Call("inference", "GET", _model_path(model, version))]

    def read_model_info(self, replies: list[Reply], model: str, version: str | None) -> ModelInfo:
        metadata = read_json(replies[0], model, version)
        if not isinstance(metadata, dict):
            raise malformed(
                f"model {model!r} answered its metadata with an unexpected body", metadata, model, version
            )
        inputs = [i for i in metadata.get("inputs") or [] if isinstance(i, dict)]
        text_inputs = [str(i["name"]) for i in inputs if i.get("datatype") == "BYTES" and "name" in i]
        if text_inputs:
            self._inputs[(model, version)] = text_inputs[0]
        versions = [str(v) for v in metadata.get("versions") or []]
        given = metadata.get("parameters")
        parameters: dict[str, Any] = given if isinstance(given, dict) else {}
        description: dict[str, Any] = {
            "inputs": inputs,
            "outputs": [o for o in metadata.get("outputs") or [] if isinstance(o, dict)],
            "lists": True,
        }
        if isinstance(parameters.get("classes"), list):
            description["classes"] = [str(c) for c in parameters["classes"]]
        return ModelInfo(
            name=str(metadata.get("name", model)),
            version=version or (versions[0] if versions else ""),
            versions=versions,
            batch_size=1,
            max_batch_delay_ms=0,
            workers_ready=1,
            workers_total=1,
            queue_remaining=None,
            queue_pending=None,
            description=description,
        )

    def list_models(self, page: str | None) -> Call:
        return Call("inference", "POST", "/v2/repository/index", b"{}", "application/json")

    def read_models(self, reply: Reply) -> tuple[list[str], str | None]:
        body = read_json(reply, None, None)
        if not isinstance(body, list):
            raise malformed("the repository index has an unexpected body", body, None, None)
        return [str(m["name"]) for m in body if isinstance(m, dict) and "name" in m], None
