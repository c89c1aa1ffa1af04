"""What to classify with and how: one options object for the accessor, the Parquet job and Dask.

:class:`ClassifyOptions` is frozen and checked when made: a bad value raises
:class:`~tsbatch.ConfigError` naming the option, an unknown option a
``TypeError``.  :class:`ClassifyKwargs` types the same options as keyword
arguments (``df.ts.classify("text", mode="list", batch_size=32)``), so that an
IDE and mypy know every choice.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, get_args

from tsbatch._config import EngineConfig
from tsbatch._errors import ConfigError
from tsbatch._mapping import ReplyMapping, ReplyShape

Mode = Literal["auto", "rows", "list"]
Errors = Literal["coerce", "raise"]
LongText = Literal["truncate", "error"]
NonString = Literal["convert", "error"]


@dataclass(frozen=True, kw_only=True)
class ClassifyOptions:
    """How to classify a column.

    - ``model``, ``version``: what to ask (default: ``TORCHSERVE_MODEL``, its default version).
    - ``mode``: ``"rows"`` sends one text per request (TorchServe batches on the
      server), ``"list"`` one request per batch, ``"auto"`` picks ``"list"`` when
      the handler says it takes lists.
    - ``errors``: ``"coerce"`` turns failed rows into ``ts_status="error"`` rows,
      ``"raise"`` raises :class:`~tsbatch.ClassificationError` (the accessor only).
    - ``prefix`` of the prediction columns (``"pred_"``); ``include_scores`` adds
      ``pred_scores`` with every class's score.
    - ``long_text``: what to do with a text longer than the model's limit
      (``"truncate"`` it, or make it an ``"error"``); ``non_string``: what to do
      with numbers and bytes (``"convert"`` them to text, or make them an ``"error"``).
    - ``batch_size``: rows per batch (default ``MAX_BATCH_SIZE``, 64);
      ``concurrency`` pins the requests in flight, ``max_concurrency`` caps the
      adaptive limit (default ``MAX_CONCURRENCY``, the connection pool);
      ``max_text_length`` (default: the model's own limit).
    - ``progress``: show a progress bar (default: in notebooks and terminals, or
      ``TSBATCH_PROGRESS``).
    - ``reply``: the shape of the model's output (``"auto"``: recognised per row;
      see :mod:`tsbatch._mapping`); ``labels``: the class names of a probability
      vector, in order (default: the model's own, when its metadata names them).
    """

    model: str | None = None
    version: str | None = None
    mode: Mode = "auto"
    errors: Errors = "coerce"
    prefix: str = "pred_"
    include_scores: bool = False
    long_text: LongText = "truncate"
    non_string: NonString = "convert"
    batch_size: int | None = None
    concurrency: int | None = None
    max_concurrency: int | None = None
    max_text_length: int | None = None
    progress: bool | None = None
    reply: ReplyShape = "auto"
    labels: Sequence[str] | None = None  # kept as a tuple

    def __post_init__(self) -> None:
        for name, kind in (
            ("mode", Mode),
            ("errors", Errors),
            ("long_text", LongText),
            ("non_string", NonString),
        ):
            allowed = get_args(kind)
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        if not isinstance(self.prefix, str) or not self.prefix:
            raise ConfigError(f"prefix must be a non-empty string; got {self.prefix!r}")
        mapping = ReplyMapping(self.reply, self.labels)  # checks both, naming the option
        object.__setattr__(self, "labels", mapping.labels)
        # The engine's settings check the numbers, naming the option.
        self.engine_config(EngineConfig())

    def engine_config(self, base: EngineConfig | None = None) -> EngineConfig:
        """``base`` (default: :meth:`EngineConfig.from_env`) with these options' numbers applied."""
        base = EngineConfig.from_env() if base is None else base
        try:
            return base.with_options(
                batch_size=self.batch_size,
                concurrency=self.concurrency,
                max_concurrency=self.max_concurrency,
                max_text_length=self.max_text_length,
            )
        except ConfigError as exc:
            message = str(exc).replace("BatchLimits.max_rows", "batch_size").replace("EngineConfig.", "")
            raise ConfigError(message) from None

    def replace(self, **changes: object) -> ClassifyOptions:
        """A copy with ``changes`` applied (and checked)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


class ClassifyKwargs(TypedDict, total=False):
    """:class:`ClassifyOptions` as keyword arguments."""

    model: str | None
    version: str | None
    mode: Mode
    errors: Errors
    prefix: str
    include_scores: bool
    long_text: LongText
    non_string: NonString
    batch_size: int | None
    concurrency: int | None
    max_concurrency: int | None
    max_text_length: int | None
    progress: bool | None
    reply: ReplyShape
    labels: Sequence[str] | None


class ConnectKwargs(TypedDict, total=False):
    """Where the server is, as keyword arguments (see :func:`~tsbatch._config.with_connection`)."""

    url: str
    management_url: str
    inference_token: str
    management_token: str
    key_file: str | os.PathLike[str]


class AccessorKwargs(ClassifyKwargs, ConnectKwargs, total=False):
    """The accessor's keyword arguments: the options and where the server is."""


_OPTION_NAMES = frozenset(ClassifyKwargs.__annotations__)
_CONNECT_NAMES = frozenset(ConnectKwargs.__annotations__)


def read_kwargs(
    method: str, kwargs: Mapping[str, Any], others: Collection[str] = ()
) -> tuple[ClassifyOptions, dict[str, Any]]:
    """Split a public method's ``**kwargs`` into options and connection settings.

    An unknown name is a ``TypeError`` that names ``method`` and the nearest
    valid name (``others``: the method's other keyword arguments).
    """
    for name in kwargs:
        if name not in _OPTION_NAMES and name not in _CONNECT_NAMES:
            valid = sorted(_OPTION_NAMES | _CONNECT_NAMES | set(others))
            near = difflib.get_close_matches(name, valid, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; it takes: {', '.join(valid)}"
            raise TypeError(f"{method}() got an unexpected keyword argument {name!r}{hint}")
    options = ClassifyOptions(**{k: v for k, v in kwargs.items() if k in _OPTION_NAMES})
    return options, {k: v for k, v in kwargs.items() if k in _CONNECT_NAMES and v is not None}
