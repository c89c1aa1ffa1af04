"""The interface every inference protocol implements, and helpers to read replies."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from tsbatch import _json
from tsbatch._errors import TorchServeInferenceError
from tsbatch._transport import Reply
from tsbatch._types import ModelInfo

Api = Literal["inference", "management"]
#: What one row sends: a text, or the texts of several named inputs.
Input = str | Mapping[str, str]

#: Where a user finds the tokens a server wants, for the message of a refused one.
TOKEN_HINT = (
    "pass key_file= (the server's key_file.json; tsbatch serve start prints its path) or "
    "inference_token=, or set TORCHSERVE_KEY_FILE or TORCHSERVE_INFERENCE_TOKEN"
)

#: Characters of an unusable reply quoted in its error message.
SNIPPET_CHARACTERS = 120
#: The error type of an answer that is well-formed but cannot be a prediction (a NaN score, ...).
INVALID_PREDICTION = "InvalidPrediction"
#: The error type of an answer tsbatch cannot read at all.
MALFORMED_RESPONSE = "MalformedResponse"


@dataclass(frozen=True)
class Call:
    """A request to make, relative to the base URL of ``api``."""

    api: Api
    method: str
    path: str
    body: bytes | None = None
    content_type: str | None = None


class InferenceProtocol(Protocol):
    """What the client needs to know about a kind of server."""

    def predict(self, text: Input, model: str, version: str | None) -> Call:
        """The request that classifies one text (or record of named inputs)."""
        ...

    def predict_list(self, texts: Sequence[Input], model: str, version: str | None) -> Call:
        """The request that classifies a list of texts (or records)."""
        ...

    def read_output(self, reply: Reply, model: str, version: str | None) -> Any:
        """One text's raw output from a 200 reply (see :mod:`tsbatch._mapping` for what follows)."""
        ...

    def read_outputs(self, reply: Reply, count: int, model: str, version: str | None) -> list[Any]:
        """``count`` raw outputs, in order, from a 200 reply; raises :class:`TorchServeInferenceError`."""
        ...

    def read_error(self, reply: Reply, model: str | None, version: str | None) -> TorchServeInferenceError:
        """The error an unsuccessful reply stands for."""
        ...

    def key_refused(self, reply: Reply) -> bool:
        """Whether the reply says the token was refused (the key file may have changed)."""
        ...

    def health(self) -> Call:
        """The server's health check."""
        ...

    def read_health(self, reply: Reply) -> str:
        """The status a 200 health reply gives (``"Healthy"`` when it is)."""
        ...

    def model_info(self, model: str, version: str | None) -> list[Call]:
        """The requests whose replies :meth:`read_model_info` reads, in order."""
        ...

    def read_model_info(self, replies: list[Reply], model: str, version: str | None) -> ModelInfo:
        """The model's info from the replies to :meth:`model_info`'s requests."""
        ...

    def list_models(self, page: str | None) -> Call:
        """One page of the registered models."""
        ...

    def read_models(self, reply: Reply) -> tuple[list[str], str | None]:
        """The models on a page, and the next page's token (``None`` on the last page)."""
        ...


def snippet(value: Any) -> str:
    """A short, printable excerpt of a reply or of one of its items, for error messages."""
    if isinstance(value, bytes):
        text = value.decode("utf-8", errors="replace")
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=True)
        except (TypeError, ValueError):
            text = repr(value)
    return repr(text if len(text) <= SNIPPET_CHARACTERS else text[:SNIPPET_CHARACTERS] + "...")


def instances_body(texts: Sequence[Input]) -> bytes:
    """``{"instances": [...]}``, the list body of TorchServe's API and of KServe v1."""
    return _json.encode({"instances": [t if isinstance(t, str) else dict(t) for t in texts]})


def read_json(reply: Reply, model: str | None, version: str | None) -> Any:
    """The reply body as JSON, or a ``MalformedResponse`` quoting it."""
    try:
        return _json.decode(reply.body)
    except ValueError:
        raise TorchServeInferenceError(
            f"reply is not JSON ({len(reply.body)} bytes): {snippet(reply.body)}",
            status=reply.status,
            error_type=MALFORMED_RESPONSE,
            model=model,
            version=version,
        ) from None


def length_mismatch(
    reply: Reply, count: int, got: str, model: str, version: str | None
) -> TorchServeInferenceError:
    """A reply that answers ``count`` texts with another number of outputs."""
    return TorchServeInferenceError(
        f"model {model!r} answered {count} texts with {got}: {snippet(reply.body)}",
        status=reply.status,
        error_type="LengthMismatch",
        model=model,
        version=version,
    )


def is_probability(value: Any) -> bool:
    """A number in 0..1 (not a bool, not NaN)."""
    kind = type(value)
    return (kind is float or kind is int) and 0.0 <= value <= 1.0  # NaN fails both comparisons


def invalid(reason: str, item: Any, model: str | None, version: str | None) -> TorchServeInferenceError:
    """An ``InvalidPrediction``: the reply has the right shape but cannot be a prediction."""
    return TorchServeInferenceError(
        f"{reason}: {snippet(item)}", status=200, error_type=INVALID_PREDICTION, model=model, version=version
    )


def malformed(reason: str, item: Any, model: str | None, version: str | None) -> TorchServeInferenceError:
    """A ``MalformedResponse``: the reply has a shape tsbatch cannot read."""
    return TorchServeInferenceError(
        f"{reason}: {snippet(item)}", status=200, error_type=MALFORMED_RESPONSE, model=model, version=version
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or HTTP date);
    ``None`` for a missing or malformed value."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is true, float("²") fails
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_reply(reply: Reply, model: str | None, version: str | None) -> TorchServeInferenceError:
    """The error of a KServe-style reply: ``{"error": "..."}`` (or FastAPI's ``{"detail": ...}``,
    or plain text), and the HTTP status."""
    message = reply.reason
    try:
        body = json.loads(reply.body) if reply.body else None
    except ValueError:
        body = reply.body.decode("utf-8", errors="replace").strip().splitlines()[-1:] or None
        body = body[0][:200] if body else None
    if isinstance(body, dict) and (body.get("error") or body.get("detail")):
        message = str(body.get("error") or body.get("detail"))
    elif isinstance(body, str):
        message = body
    where = f"model {model!r}" + (f" version {version!r}" if version else "") if model else "the server"
    return TorchServeInferenceError(
        f"{where} answered {reply.status}: {message}",
        status=reply.status,
        model=model,
        version=version,
        retry_after=parse_retry_after(reply.headers.get("Retry-After")),
        detail=message,
    )
