"""Inference protocols: how requests to one kind of server are built and its replies read.

A protocol knows nothing of connections, tokens, retries or metrics (the
client's business); it turns a text, a list of texts or a question about a
model into a :class:`Call`, and a :class:`~tsbatch._transport.Reply` into
predictions, model info or a typed error.  Adding a server means adding one
module here and naming it in :data:`PROTOCOLS`.
"""

from __future__ import annotations

from tsbatch._errors import ConfigError
from tsbatch._protocols._base import Call, InferenceProtocol
from tsbatch._protocols.torchserve import TorchServeProtocol

PROTOCOLS: dict[str, type[InferenceProtocol]] = {"torchserve": TorchServeProtocol}

__all__ = ["PROTOCOLS", "Call", "InferenceProtocol", "get_protocol"]


def get_protocol(name: str) -> InferenceProtocol:
    """The protocol called ``name``."""
    try:
        return PROTOCOLS[name]()
    except KeyError:
        raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {name!r}") from None
