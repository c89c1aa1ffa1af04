"""Classify a pandas column: validation, the engine run, the result frame."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry

from tsbatch._client import TorchServeClient
from tsbatch._config import ClientConfig
from tsbatch._engine import classify_values
from tsbatch._errors import ClassificationError, InputValidationError
from tsbatch._frame import check_no_collision, failures, result_frame
from tsbatch._heap import collector_tuned_for_run
from tsbatch._options import ClassifyOptions
from tsbatch._outcomes import Task, kept_result
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


def check_call(
    frame: pd.DataFrame,
    column: Any,
    options: ClassifyOptions,
    task: Task = "classify",
    inputs: Mapping[str, Any] | None = None,
) -> None:
    """What can be checked before a run starts: the column (or the columns of ``inputs``), and
    room for the result columns."""
    if inputs is None:
        if column is None:
            raise TypeError("pass the column of texts, or inputs={input name: column, ...}")
        check_column(list(frame.columns), column)
    else:
        if column is not None:
            raise TypeError("pass the column of texts or inputs=, not both")
        if not isinstance(inputs, Mapping) or not inputs:
            raise TypeError(
                "inputs must map the model's input names to columns, for example "
                "inputs={'title': 'title', 'text': 'body'}"
            )
        for name, each in inputs.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"an input name must be a non-empty string; got {name!r}")
            check_column(list(frame.columns), each)
    check_no_collision(list(frame.columns), options.prefix, options.include_scores, task)


def _values(frame: pd.DataFrame, column: Any, inputs: Mapping[str, Any] | None) -> list[Any]:
    """The column's values, or for ``inputs`` one record of the input columns' values per row."""
    if inputs is None:
        return list(frame[column].tolist())
    columns = {name: frame[each].tolist() for name, each in inputs.items()}
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


async def aclassify_frame(
    frame: pd.DataFrame,
    column: Any,
    options: ClassifyOptions,
    *,
    client: TorchServeClient | None = None,
    config: ClientConfig | None = None,
    registry: CollectorRegistry | None = None,
    task: Task = "classify",
    inputs: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Classify ``frame[column]`` (or, ``task="predict"``, keep each row's raw output); returns
    ``frame`` plus prediction and ``ts_*`` columns.  ``inputs`` sends several columns to the
    model's named inputs instead of one column."""
    check_call(frame, column, options, task, inputs)
    owned = client is None
    active = client or TorchServeClient(config=config, registry=registry, model=options.model)
    try:
        enabled = progress_enabled(options.progress)
        what = column if inputs is None else ", ".join(map(str, inputs.values()))
        with (
            collector_tuned_for_run(),
            progress_bar(enabled, f"{task} {what}", lambda: active.breaker_state) as progress,
        ):
            values = _values(frame, column, inputs)
            call = {
                "column": column,
                "inputs": dict(inputs) if inputs is not None else None,
                "task": task,
                "options": {
                    **dataclasses.asdict(options),
                    "labels": list(options.labels) if options.labels is not None else None,
                },
            }
            try:
                result = await classify_values(active, values, options, progress, task=task)
            except asyncio.CancelledError as cancelled:
                # The rows done so far travel with the cancellation as ``partial`` (see tsbatch._sync).
                done = kept_result(cancelled)
                if done is not None:
                    cancelled.partial = result_frame(  # type: ignore[attr-defined]
                        frame, done, prefix=options.prefix, include_scores=options.include_scores, call=call
                    )
                raise
            out = result_frame(
                frame, result, prefix=options.prefix, include_scores=options.include_scores, call=call
            )
    finally:
        if owned:
            await active.aclose()
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
