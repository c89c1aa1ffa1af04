"""Inference protocols: how requests to one kind of server are built and its replies read.

A protocol knows nothing of connections, tokens, retries or metrics (the
client's business); it turns a text, a list of texts or a question about a
model into a :class:`Call`, and a :class:`~tsbatch._transport.Reply` into
predictions, model info or a typed error.  Adding a server means adding one
module here and naming it in :data:`PROTOCOLS`: ``torchserve`` (TorchServe's
own REST APIs), ``v2`` (the Open Inference Protocol: KServe, Triton,
MLServer) and ``v1`` (KServe's v1).
"""

from __future__ import annotations

from collections.abc import Callable

from tsbatch._errors import ConfigError
from tsbatch._policies import Tensors
from tsbatch._protocols._base import Call, InferenceProtocol
from tsbatch._protocols.torchserve import TorchServeProtocol
from tsbatch._protocols.v1 import V1Protocol
from tsbatch._protocols.v2 import V2Protocol

#: Each protocol, made from the client's default model and tensor names.
PROTOCOLS: dict[str, Callable[[str, Tensors], InferenceProtocol]] = {
    "torchserve": lambda model, tensors: TorchServeProtocol(),
    "v2": lambda model, tensors: V2Protocol(tensors),
    "v1": lambda model, tensors: V1Protocol(model),
}

__all__ = ["PROTOCOLS", "Call", "InferenceProtocol", "get_protocol"]


def get_protocol(name: str, model: str, tensors: Tensors | None = None) -> InferenceProtocol:
    """The protocol called ``name``, for a client whose default model is ``model``."""
    try:
        make = PROTOCOLS[name]
    except KeyError:
        raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {name!r}") from None
    return make(model, tensors or Tensors())
