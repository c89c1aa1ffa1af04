"""Classify a pandas column: validation, the engine run, the result frame."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

import pandas as pd
from prometheus_client import CollectorRegistry

from tsbatch._client import TorchServeClient
from tsbatch._config import ClientConfig, EngineConfig
from tsbatch._engine import ClassifyOptions, LongText, Mode, NonString, classify_values
from tsbatch._errors import ClassificationError, ConfigError, InputValidationError
from tsbatch._frame import check_no_collision, failures, result_frame
from tsbatch._progress import progress_bar, progress_enabled

Errors = Literal["coerce", "raise"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class FrameOptions:
    """Everything ``classify`` takes besides the frame and the column."""

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

    def __post_init__(self) -> None:
        if self.errors not in ("coerce", "raise"):
            raise ConfigError(f"errors must be 'coerce' or 'raise'; got {self.errors!r}")
        if not self.prefix:
            raise ConfigError("prefix must not be empty")

    def classify_options(self) -> ClassifyOptions:
        engine = EngineConfig.from_env().with_options(
            batch_size=self.batch_size,
            concurrency=self.concurrency,
            max_concurrency=self.max_concurrency,
            max_text_length=self.max_text_length,
        )
        return ClassifyOptions(
            model=self.model,
            version=self.version,
            mode=self.mode,
            long_text=self.long_text,
            non_string=self.non_string,
            engine=engine,
        )


def check_column(columns: Sequence[Any], column: Any) -> None:
    """Refuse a ``column`` the frame does not have, listing those it has."""
    if column not in columns:
        available = ", ".join(repr(c) for c in columns) or "none"
        raise InputValidationError(f"column {column!r} not found; the frame has: {available}")


async def aclassify_frame(
    frame: pd.DataFrame,
    column: Any,
    options: FrameOptions,
    *,
    client: TorchServeClient | None = None,
    config: ClientConfig | None = None,
    registry: CollectorRegistry | None = None,
) -> pd.DataFrame:
    """Classify ``frame[column]``; returns ``frame`` plus prediction and ``ts_*`` columns."""
    check_column(list(frame.columns), column)
    check_no_collision(list(frame.columns), options.prefix, options.include_scores)
    engine_options = options.classify_options()
    owned = client is None
    active = client or TorchServeClient(config=config, registry=registry, model=options.model)
    try:
        enabled = progress_enabled(options.progress)
        with progress_bar(enabled, f"classify {column}", lambda: active.breaker_state) as progress:
            result = await classify_values(active, frame[column].tolist(), engine_options, progress)
    finally:
        if owned:
            await active.aclose()
    out = result_frame(frame, result, prefix=options.prefix, include_scores=options.include_scores)
    failed = failures(out)
    if options.errors == "raise" and len(failed):
        cause = result.outage or f"first: {failed['ts_error'].iloc[0]}"
        raise ClassificationError(
            f"{len(failed)} of {len(out)} rows failed; {cause}", failures=failed, result=out
        )
    return out
