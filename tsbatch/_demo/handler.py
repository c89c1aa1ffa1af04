"""TorchServe handler for the demo text classifier.

This file is packed into the model archive on its own, so it depends only on
the standard library and torch.  Training imports the featurizer and the model
from here, which keeps the served features identical to the trained ones.

Accepted inputs, per request:

* one text: a raw ``text/plain`` body, a JSON string, or ``{"text": "..."}``;
  TorchServe's server-side batching groups such requests;
* a list of texts: ``{"instances": [...]}`` or a JSON list; the answer is a
  list of the same length, in the same order.

Each text is answered with ``{"label": ..., "score": ..., "scores": {...}}``.
Bad input is answered with a 400 whose message says what was wrong; the other
requests of the same server batch are unaffected.
"""

from __future__ import annotations

import itertools
import json
import re
import zlib
from typing import Any

import torch
from torch import nn

NUM_BUCKETS = 65_536
EMBEDDING_DIM = 16
#: Texts are truncated to this many word tokens before hashing.
MAX_TOKENS = 512
#: Longer texts are refused: they are far outside what the model was trained on.
MAX_TEXT_CHARS = 100_000
#: At most this many texts in one list request.
MAX_LIST_LENGTH = 10_000

_WORD = re.compile(r"\w+")


def feature_ids(text: str) -> list[int]:
    """Hash word unigrams and bigrams of ``text`` into bucket ids."""
    words = _WORD.findall(text.lower())[:MAX_TOKENS]
    grams = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
    ids = [zlib.crc32(g.encode("utf-8")) % NUM_BUCKETS for g in grams]
    return ids or [0]


def pack(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten the feature ids of ``texts`` into ``EmbeddingBag`` inputs."""
    ids: list[int] = []
    offsets: list[int] = []
    for text in texts:
        offsets.append(len(ids))
        ids.extend(feature_ids(text))
    return torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)


class TextClassifier(nn.Module):
    """Mean of hashed n-gram embeddings followed by a linear layer."""

    def __init__(self, num_classes: int, num_buckets: int = NUM_BUCKETS, dim: int = EMBEDDING_DIM):
        super().__init__()
        self.embedding = nn.EmbeddingBag(num_buckets, dim, mode="mean")
        self.output = nn.Linear(dim, num_classes)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.output(self.embedding(ids, offsets))
        return logits


class BadInput(ValueError):
    """A request whose body is not a text or a list of texts."""


def _decode(body: Any) -> Any:
    """Bodies arrive parsed for JSON, as ``str`` for ``text/*`` and as bytes otherwise."""
    if isinstance(body, (bytes, bytearray)):
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInput("body is not UTF-8 text") from exc
        try:
            parsed = json.loads(text)
        except ValueError:
            return text
        return parsed if isinstance(parsed, (str, list, dict)) else text
    return body


def _check_text(text: Any, where: str) -> str:
    if not isinstance(text, str):
        raise BadInput(f"{where} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise BadInput(f"{where} is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise BadInput(f"{where} has {len(text)} characters, more than {MAX_TEXT_CHARS}")
    return text


def parse_request(body: Any) -> tuple[list[str], bool]:
    """Return the texts of one request and whether it was a list request."""
    body = _decode(body)
    if isinstance(body, dict):
        if "instances" in body:
            body = body["instances"]
            if not isinstance(body, list):
                raise BadInput('"instances" must be a list of strings')
        elif "text" in body:
            return [_check_text(body["text"], '"text"')], False
        else:
            raise BadInput('JSON object needs a "text" or an "instances" field')
    if isinstance(body, list):
        if not body:
            raise BadInput("list of texts is empty")
        if len(body) > MAX_LIST_LENGTH:
            raise BadInput(f"list has {len(body)} texts, more than {MAX_LIST_LENGTH}")
        return [_check_text(t, f"item {i}") for i, t in enumerate(body)], True
    return [_check_text(body, "text")], False


class DemoTextHandler:
    """Loads the checkpoint and answers batches of requests."""

    def __init__(self) -> None:
        self.model: TextClassifier | None = None
        self.classes: list[str] = []

    def initialize(self, context: Any) -> None:
        model_dir = context.system_properties["model_dir"]
        self.load(f"{model_dir}/{context.manifest['model']['serializedFile']}")

    def load(self, path: str) -> None:
        """Load the checkpoint written by training."""
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        self.classes = list(checkpoint["classes"])
        model = TextClassifier(len(self.classes), checkpoint["num_buckets"], checkpoint["dim"])
        model.load_state_dict(checkpoint["state_dict"])
        self.model = model.eval()

    def describe(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "max_text_chars": MAX_TEXT_CHARS,
            "max_tokens": MAX_TOKENS,
            "max_list_length": MAX_LIST_LENGTH,
            "input": 'text/plain body, JSON string, {"text": ...}, JSON list or {"instances": [...]}',
        }

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        assert self.model is not None, "handler not initialized"
        with torch.inference_mode():
            probabilities = torch.softmax(self.model(*pack(texts)), dim=1)
        answers = []
        for row in probabilities.tolist():
            best = max(range(len(row)), key=row.__getitem__)
            answers.append(
                {
                    "label": self.classes[best],
                    "score": round(row[best], 6),
                    "scores": {c: round(p, 6) for c, p in zip(self.classes, row, strict=True)},
                }
            )
        return answers

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        if context.get_request_header(0, "describe") == "True":
            return [json.dumps(self.describe())]
        parsed: list[tuple[list[str], bool] | None] = []
        for idx, request in enumerate(data):
            body = request.get("data", request.get("body"))
            try:
                parsed.append(parse_request(body))
            except BadInput as exc:
                context.set_response_status(400, f"Bad input: {exc}", idx)
                parsed.append(None)
        texts = [text for entry in parsed if entry for text in entry[0]]
        answers = iter(self.predict(texts) if texts else [])
        replies: list[Any] = []
        for entry in parsed:
            if entry is None:
                replies.append("")
                continue
            request_texts, is_list = entry
            chunk = [next(answers) for _ in request_texts]
            replies.append(json.dumps(chunk if is_list else chunk[0]))
        return replies


_handler = DemoTextHandler()


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[Any] | None:
    """TorchServe entry point; called with ``data=None`` once to initialize."""
    if data is None:
        _handler.initialize(context)
        return None
    return _handler.handle(data, context)
