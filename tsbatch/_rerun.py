"""The failed rows of a result frame, sent again and put back in place.

A frame ``df.ts.classify`` returned records the call that made it (column or
inputs, task, options) in its run report.  :func:`aretry_failed` sends only
its ``error`` rows, and those an interrupt left unfinished, again, with the
same options unless overridden, and returns the whole frame with those rows
replaced; the retried rows' batches get ids after the frame's last, and the
run report lists every batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry

from tsbatch._classify import aclassify_frame
from tsbatch._client import TorchServeClient
from tsbatch._config import ClientConfig
from tsbatch._errors import ClassificationError, InputValidationError
from tsbatch._frame import _REPORT_KEY, META_DTYPES, _Report, failures, output_column, prediction_dtypes
from tsbatch._options import ClassifyOptions
from tsbatch._outcomes import INTERRUPTED

#: Options that shape the result's columns: a retry keeps them.
_FIXED = ("prefix", "include_scores")


async def aretry_failed(
    result: pd.DataFrame,
    overrides: Mapping[str, Any],
    *,
    client: TorchServeClient | None = None,
    config: ClientConfig | None = None,
    registry: CollectorRegistry | None = None,
) -> pd.DataFrame:
    """``result`` with its ``error`` rows sent again (``overrides``: options to change)."""
    report = result.attrs.get(_REPORT_KEY)
    call = report.get("call") if isinstance(report, Mapping) else None
    if call is None:
        raise InputValidationError(
            "this frame carries no record of the call that made it: pass the frame "
            "df.ts.classify (or predict) returned"
        )
    saved = dict(call["options"])
    for name in _FIXED:
        if name in overrides and overrides[name] != saved[name]:
            raise TypeError(f"retry_failed keeps {name}={saved[name]!r}: the result's columns depend on it")
    options = ClassifyOptions(**{**saved, **overrides})
    task = call["task"]
    added = [*prediction_dtypes(options.prefix, options.include_scores, task), *META_DTYPES]
    missing = [name for name in added if name not in result.columns]
    if missing:
        raise InputValidationError(
            f"this frame lacks the result column(s) {missing}: pass it as classify returned it"
        )
    redo = (result["ts_status"] == "error") | (result["ts_error_kind"] == INTERRUPTED)
    failed = np.flatnonzero(redo.to_numpy(dtype=bool, na_value=False))
    if not len(failed):
        return result.copy()
    rows = result.drop(columns=added).iloc[failed].reset_index(drop=True)
    redone = await aclassify_frame(
        rows,
        call["column"],
        options.replace(errors="coerce"),
        client=client,
        config=config,
        registry=registry,
        task=task,
        inputs=call["inputs"],
    )
    old_batches = list(report["batches"])
    offset = 1 + max((b["batch_id"] for b in old_batches), default=-1)
    redone["ts_batch_id"] = redone["ts_batch_id"] + offset
    out = result.copy()
    output = f"{options.prefix}output"
    for name in added:
        out[name] = _put(out[name], redone[name], failed, as_output=name == output)
    new_batches = [{**b, "batch_id": b["batch_id"] + offset} for b in redone.attrs[_REPORT_KEY]["batches"]]
    again = redone.attrs[_REPORT_KEY]
    totals = {name: report.get(name, 0) + again[name] for name in ("seconds", "breaker_openings", "paused_s")}
    merged = {**report, **totals, "batches": old_batches + new_batches}
    out.attrs = {**result.attrs, _REPORT_KEY: _Report(merged)}
    still = failures(out)
    if options.errors == "raise" and len(still):  # the retried rows' own run has warned already
        raise ClassificationError(
            f"{len(still)} of {len(out)} rows still failed; first: {still['ts_error'].iloc[0]}",
            failures=still,
            result=out,
        )
    return out


def _put(column: pd.Series, new: pd.Series, positions: np.ndarray, *, as_output: bool) -> pd.Series:
    """``column`` with the values at ``positions`` replaced by ``new``'s, in order."""
    if column.dtype == new.dtype:
        values = column.array.copy()
        values[positions] = new.array
        return pd.Series(values, index=column.index, name=column.name)
    # Raw outputs take their type from their values: the retried rows may change it.
    merged = [None if v is pd.NA else v for v in column.astype(object)]
    for position, value in zip(positions, new.astype(object), strict=True):
        merged[position] = None if value is pd.NA else value
    if as_output:
        return output_column(merged, column.index).rename(column.name)
    return pd.Series(merged, index=column.index, name=column.name, dtype=column.dtype)
