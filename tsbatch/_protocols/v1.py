"""KServe's v1 REST protocol (the TensorFlow Serving shape).

Texts go as ``{"instances": [...]}`` to ``POST /v1/models/{model}:predict``
with ``Content-Type: application/json`` exactly (KServe hands a body of any
other type, ``; charset=utf-8`` included, to the model as raw bytes); the
reply is ``{"predictions": [...]}``, one output per text, read by
:mod:`tsbatch._mapping`.  ``GET /v1/models/{model}`` is the model's health and
info (``{"name", "ready"}``), ``GET /v1/models`` the model list.  v1 has no
versions in the path: a version is refused.  Errors are ``{"error": "..."}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from tsbatch._errors import ConfigError, TorchServeInferenceError
from tsbatch._protocols._base import (
    Call,
    Input,
    error_reply,
    instances_body,
    length_mismatch,
    malformed,
    read_json,
)
from tsbatch._transport import Reply
from tsbatch._types import ModelInfo


def _model_path(model: str, version: str | None) -> str:
    if version:
        raise ConfigError(
            f"the v1 protocol has no model versions; got version {version!r} (use protocol='v2')"
        )
    return f"/v1/models/{quote(model, safe='')}"


class V1Protocol:
    """KServe's v1 REST API."""

    def __init__(self, model: str) -> None:
        self.model = model  # the model whose readiness is the server's health

    def predict(self, text: Input, model: str, version: str | None) -> Call:
        return self.predict_list([text], model, version)

    def predict_list(self, texts: Sequence[Input], model: str, version: str | None) -> Call:
        body = instances_body(texts)
        return Call("inference", "POST", f"{_model_path(model, version)}:predict", body, "application/json")

    def read_output(self, reply: Reply, model: str, version: str | None) -> Any:
        return self.read_outputs(reply, 1, model, version)[0]

    def read_outputs(self, reply: Reply, count: int, model: str, version: str | None) -> list[Any]:
        body = read_json(reply, model, version)
        predictions = body.get("predictions") if isinstance(body, dict) else None
        if not isinstance(predictions, list):
            raise malformed("reply has no predictions", body, model, version)
        if len(predictions) != count:
            raise length_mismatch(reply, count, f"{len(predictions)} predictions", model, version)
        return predictions

    def read_error(self, reply: Reply, model: str | None, version: str | None) -> TorchServeInferenceError:
        return error_reply(reply, model, version)

    def key_refused(self, reply: Reply) -> bool:
        return False

    def health(self) -> Call:
        return Call("inference", "GET", _model_path(self.model, None))

    def read_health(self, reply: Reply) -> str:
        body = read_json(reply, None, None)
        return "Healthy" if isinstance(body, dict) and body.get("ready") else "Not ready"

    def model_info(self, model: str, version: str | None) -> list[Call]:
        return [Call("inference", "GET", _model_path(model, version))]

    def read_model_info(self, replies: list[Reply], model: str, version: str | None) -> ModelInfo:
        body = read_json(replies[0], model, version)
        if not isinstance(body, dict):
            raise malformed(f"model {model!r} answered with an unexpected body", body, model, version)
        return ModelInfo(
            name=str(body.get("name", model)),
            version="",
            versions=[],
            batch_size=1,
            max_batch_delay_ms=0,
            workers_ready=1 if body.get("ready", True) else 0,
            workers_total=1,
            queue_remaining=None,
            queue_pending=None,
            description={"lists": True},
        )

    def list_models(self, page: str | None) -> Call:
        return Call("inference", "GET", "/v1/models")

    def read_models(self, reply: Reply) -> tuple[list[str], str | None]:
        body = read_json(reply, None, None)
        models = body.get("models") if isinstance(body, dict) else None
        if not isinstance(models, list):
            raise malformed("the model list has an unexpected body", body, None, None)
        return [str(m) for m in models], None
