"""TorchServe's REST APIs: ``/predictions``, ``/ping`` and the management API's ``/models``.

One text goes as a ``text/plain`` body, a list as ``{"instances": [...]}``;
a list's reply is a JSON list with one output per text, whatever the handler
returns for one (:mod:`tsbatch._mapping` reads it).  An error reply is
``{"code", "type", "message"}``; a 200 reply has no Content-Type.  The
management API describes a model as a list of entries with its batching,
workers, queue and (``?customized=true``) the handler's own description.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from tsbatch import _json
from tsbatch._errors import TorchServeAuthError, TorchServeInferenceError
from tsbatch._protocols._base import (
    TOKEN_HINT,
    Call,
    Input,
    instances_body,
    length_mismatch,
    malformed,
    parse_retry_after,
    read_json,
)
from tsbatch._transport import Reply
from tsbatch._types import ModelInfo

#: Models asked for per page of ``GET /models``.
PAGE_SIZE = 100


def _error_type(reply: Reply) -> str | None:
    try:
        body = json.loads(reply.body)
    except ValueError:
        return None
    return str(body["type"]) if isinstance(body, dict) and "type" in body else None


def _description(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The handler's own description (``customizedMetadata``), if it gives one."""
    description = entry.get("customizedMetadata")
    if isinstance(description, str):
        try:
            description = json.loads(description)
        except ValueError:
            description = {"text": description}
    return description if isinstance(description, dict) else None


class TorchServeProtocol:
    """TorchServe's inference and management APIs."""

    @staticmethod
    @functools.lru_cache(maxsize=64)  # quoted once per model and version, not per request
    def _predictions(model: str, version: str | None) -> str:
        path = f"/predictions/{quote(model, safe='')}"
        return f"{path}/{quote(version, safe='')}" if version else path

    def predict(self, text: Input, model: str, version: str | None) -> Call:
        if not isinstance(text, str):  # a record of named inputs: a JSON object
            body = _json.encode(dict(text))
            return Call("inference", "POST", self._predictions(model, version), body, "application/json")
        return Call(
            "inference",
            "POST",
            self._predictions(model, version),
            text.encode("utf-8"),
            "text/plain; charset=utf-8",
        )

    def predict_list(self, texts: Sequence[Input], model: str, version: str | None) -> Call:
        body = instances_body(texts)
        return Call("inference", "POST", self._predictions(model, version), body, "application/json")

    def read_output(self, reply: Reply, model: str, version: str | None) -> Any:
        return read_json(reply, model, version)

    def read_outputs(self, reply: Reply, count: int, model: str, version: str | None) -> list[Any]:
        body = read_json(reply, model, version)
        if not isinstance(body, list) or len(body) != count:
            got = f"{len(body)} predictions" if isinstance(body, list) else type(body).__name__
            raise length_mismatch(reply, count, got, model, version)
        return body

    def read_error(self, reply: Reply, model: str | None, version: str | None) -> TorchServeInferenceError:
        """TorchServe's error type and message, or the reason phrase when the body has none."""
        error_type, message = None, reply.reason
        try:
            body = json.loads(reply.body) if reply.body else None
        except ValueError:
            body = None
        if isinstance(body, dict):
            error_type = str(body.get("type")) if body.get("type") else None
            message = str(body.get("message") or message)
        where = f"model {model!r}" + (f" version {version!r}" if version else "") if model else "TorchServe"
        if error_type == "InvalidKeyException":
            return TorchServeAuthError(
                f"{where}: the server refused the token ({message.rstrip('.')}); {TOKEN_HINT}",
                status=reply.status,
                error_type=error_type,
                model=model,
                version=version,
                detail=message,
            )
        return TorchServeInferenceError(
            f"{where} answered {reply.status}" + (f" {error_type}" if error_type else "") + f": {message}",
            status=reply.status,
            error_type=error_type,
            model=model,
            version=version,
            retry_after=parse_retry_after(reply.headers.get("Retry-After")),
            detail=message,
        )

    def key_refused(self, reply: Reply) -> bool:
        return reply.status == 400 and _error_type(reply) == "InvalidKeyException"

    def health(self) -> Call:
        return Call("inference", "GET", "/ping")

    def read_health(self, reply: Reply) -> str:
        body = read_json(reply, None, None)
        return str(body.get("status", "Unknown")) if isinstance(body, dict) else "Unknown"

    def model_info(self, model: str, version: str | None) -> list[Call]:
        base = f"/models/{quote(model, safe='')}"
        entry = f"{base}/{quote(version, safe='')}" if version else base
        return [
            Call("management", "GET", f"{entry}?customized=true"),
            Call("management", "GET", f"{base}/all"),
        ]

    def read_model_info(self, replies: list[Reply], model: str, version: str | None) -> ModelInfo:
        entries, versions = (read_json(reply, model, version) for reply in replies)
        if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
            raise malformed(
                f"management API answered model {model!r} with an unexpected body", entries, model, version
            )
        entry = entries[0]
        workers = entry.get("workers") or []
        queue = entry.get("jobQueueStatus") or {}
        return ModelInfo(
            name=str(entry.get("modelName", model)),
            version=str(entry.get("modelVersion", version or "")),
            versions=[str(e.get("modelVersion")) for e in versions if isinstance(e, dict)]
            if isinstance(versions, list)
            else [],
            batch_size=int(entry.get("batchSize", 1)),
            max_batch_delay_ms=int(entry.get("maxBatchDelay", 0)),
            workers_ready=sum(1 for w in workers if w.get("status") == "READY"),
            workers_total=len(workers),
            queue_remaining=queue.get("remainingCapacity"),
            queue_pending=queue.get("pendingRequests"),
            description=_description(entry),
        )

    def list_models(self, page: str | None) -> Call:
        query = f"limit={PAGE_SIZE}" + (f"&next_page_token={quote(page)}" if page else "")
        return Call("management", "GET", f"/models?{query}")

    def read_models(self, reply: Reply) -> tuple[list[str], str | None]:
        body = read_json(reply, None, None)
        if not isinstance(body, dict):
            raise malformed(
                "management API answered the model list with an unexpected body", body, None, None
            )
        names = [
            str(m["modelName"]) for m in body.get("models", []) if isinstance(m, dict) and "modelName" in m
        ]
        token = body.get("nextPageToken")
        return names, str(token) if token else None
