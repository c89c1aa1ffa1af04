"""Classify a pandas column: validation, the engine run, the result frame."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry

from tsbatch._client import TorchServeClient
from tsbatch._config import ClientConfig
from tsbatch._engine import classify_values
from tsbatch._errors import ClassificationError, InputValidationError
from tsbatch._frame import check_no_collision, failures, result_frame
from tsbatch._options import ClassifyOptions
from tsbatch._outcomes import Task
from tsbatch._progress import progress_bar, progress_enabled

logger = logging.getLogger("tsbatch")


def check_column(columns: Sequence[Any], column: Any) -> None:
    """Refuse a ``column`` the frame does not have, listing those it has, and data passed as a name."""
    if isinstance(column, (pd.Series, pd.Index, list, np.ndarray)):
        name = column.name if isinstance(column, pd.Series) and column.name is not None else "text"
        raise TypeError(
            f"the column argument takes a column's name, not a {type(column).__name__}: pass the "
            f"column's name, for example df.ts.classify({name!r}), or call df[{name!r}].ts.classify()"
        )
    if column not in columns:
        available = ", ".join(repr(c) for c in columns) or "none"
        raise InputValidationError(f"column {column!r} not found; the frame has: {available}")


def check_call(frame: pd.DataFrame, column: Any, options: ClassifyOptions, task: Task = "classify") -> None:
    """What can be checked before a run starts: the column, and room for the result columns."""
    check_column(list(frame.columns), column)
    check_no_collision(list(frame.columns), options.prefix, options.include_scores, task)


async def aclassify_frame(
    frame: pd.DataFrame,
    column: Any,
    options: ClassifyOptions,
    *,
    client: TorchServeClient | None = None,
    config: ClientConfig | None = None,
    registry: CollectorRegistry | None = None,
    task: Task = "classify",
) -> pd.DataFrame:
    """Classify ``frame[column]`` (or, ``task="predict"``, keep each row's raw output); returns
    ``frame`` plus prediction and ``ts_*`` columns."""
    check_call(frame, column, options, task)
    owned = client is None
    active = client or TorchServeClient(config=config, registry=registry, model=options.model)
    try:
        enabled = progress_enabled(options.progress)
        with progress_bar(enabled, f"{task} {column}", lambda: active.breaker_state) as progress:
            result = await classify_values(active, frame[column].tolist(), options, progress, task=task)
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
    if len(failed):
        warn_of_failures(failed["ts_error_kind"], len(out))
    return out


def warn_of_failures(kinds: pd.Series, rows: int) -> None:
    """One warning for a run whose rows failed: how many, of what kind."""
    counts = kinds.fillna("internal").value_counts()
    logger.warning(
        "%d of %d rows failed (%s); their ts_error_kind and ts_error columns say why",
        len(kinds),
        rows,
        ", ".join(f"{kind}: {count}" for kind, count in counts.items()),
    )
