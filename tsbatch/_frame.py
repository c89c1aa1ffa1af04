"""Turn engine results into pandas: the result frame, its batch metrics and its failures."""

from __future__ import annotations

import dataclasses
import json
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from tsbatch._engine import EngineResult
from tsbatch._errors import InputValidationError
from tsbatch._outcomes import RowOutcome, Task

#: Per-row metadata columns and their dtypes.
META_DTYPES: dict[str, str] = {
    "ts_status": "string",
    "ts_error": "string",
    "ts_error_kind": "string",
    "ts_batch_id": "Int64",
    "ts_attempts": "Int64",
    "ts_latency_ms": "Float64",
    "ts_truncated": "boolean",
}
BATCH_DTYPES: dict[str, str] = {
    "batch_id": "int64",
    "rows": "int64",
    "bytes": "int64",
    "started_at": "datetime64[us, UTC]",
    "ended_at": "datetime64[us, UTC]",
    "latency_ms": "float64",
    "attempts": "int64",
    "retries": "int64",
    "status": "string",
    "error": "string",
    "concurrency_limit": "int64",
}
_REPORT_KEY = "tsbatch"


@dataclass(frozen=True)
class RunReport:
    """How a result frame was made.

    ``concurrency`` is the limit of requests in flight the run started with;
    ``adaptive`` says whether it then adapted to the server (each batch records
    the limit when it ended); ``outage`` says why the run ended early, if the
    server stayed unavailable for the whole outage budget.

    ``call`` records how the frame was asked for (the column or inputs, the
    task and the options), so that its failed rows can be sent again.
    ``seconds`` is the run's wall time; ``breaker_openings`` and ``paused_s``
    say how often the circuit breaker opened and how long the run waited for
    the server while it went on (a retry adds its own to each).

    ``result.attrs["tsbatch"]`` holds it as plain JSON-able data, so pandas can
    copy, compare and write it to Parquet metadata; :func:`run_report` reads it.
    """

    model: str
    version: str | None
    mode: str
    concurrency: int
    batches: tuple[BatchMetrics, ...]
    adaptive: bool = False
    outage: str | None = None
    call: dict[str, Any] | None = None
    seconds: float | None = None
    breaker_openings: int = 0
    paused_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunReport:
        batches = tuple(BatchMetrics(**b) for b in data["batches"])
        fields = ("model", "version", "mode", "concurrency", "adaptive", "outage")
        later = {
            name: data[name] for name in ("call", "seconds", "breaker_openings", "paused_s") if name in data
        }
        return cls(batches=batches, **later, **{name: data[name] for name in fields})


@dataclass(frozen=True)
class BatchMetrics:
    """One batch's metrics, as recorded when the run ended."""

    batch_id: int
    rows: int
    bytes: int
    started_at: float
    ended_at: float
    latency_ms: float
    attempts: int
    retries: int
    status: str
    error: str | None
    concurrency_limit: int


def prediction_dtypes(prefix: str, include_scores: bool, task: Task = "classify") -> dict[str, str]:
    """The prediction columns and their dtypes (a raw output's dtype follows the values)."""
    if task == "predict":
        return {f"{prefix}output": "object"}
    dtypes = {f"{prefix}label": "string", f"{prefix}score": "Float64"}
    if include_scores:
        dtypes[f"{prefix}scores"] = "object"
    return dtypes


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def output_column(values: list[Any], index: pd.Index) -> pd.Series:
    """Raw outputs as one column of a type Arrow keeps: numbers as ``Float64`` (``Int64``
    when all are integers), texts as ``string``, lists of numbers as lists of floats, and
    anything else (objects, mixed values) as JSON text; no output at all as nulls."""
    present = [v for v in values if v is not None]
    if not present:  # no type to learn from: Arrow's null type, which casts to any other
        return pd.Series(values, index=index, dtype="object")
    if all(type(v) is int for v in present):
        return pd.Series(values, index=index, dtype="Int64")
    if all(_is_number(v) for v in present):
        return pd.Series(values, index=index, dtype="Float64")
    if all(type(v) is str for v in present):
        return pd.Series(values, index=index, dtype="string")
    if all(type(v) is list and all(_is_number(x) for x in v) for v in present):
        floats = [[float(x) for x in v] if v is not None else None for v in values]
        return pd.Series(floats, index=index, dtype="object")
    texts = [json.dumps(v) if v is not None else None for v in values]
    return pd.Series(texts, index=index, dtype="string")


def _batch_row(record: Any) -> dict[str, Any]:
    """A batch's record (or metrics) as a dict of its fields: numbers and strings, so no deep
    copy (``dataclasses.asdict``'s) is needed."""
    return {name: getattr(record, name) for name in BATCH_DTYPES}


def _field(rows: list[RowOutcome], name: str) -> list[Any]:
    return list(map(operator.attrgetter(name), rows))


def _column(values: list[Any], index: pd.Index, dtype: str) -> pd.Series:
    """``values`` as a column of ``dtype``; one value on every row (``ok``, no error) is
    broadcast, which pandas does without looking at each row."""
    if dtype != "object" and values and values.count(values[0]) == len(values):
        return pd.Series(pd.NA if values[0] is None else values[0], index=index, dtype=dtype)
    return pd.Series(values, index=index, dtype=dtype)


def check_no_collision(
    columns: Sequence[Any], prefix: str, include_scores: bool, task: Task = "classify"
) -> None:
    """Refuse to overwrite input columns with output columns."""
    names = [*prediction_dtypes(prefix, include_scores, task), *META_DTYPES]
    taken = [c for c in names if c in set(columns)]
    if taken:
        raise InputValidationError(
            f"the input already has column(s) {taken}: pass another prefix= for the predictions "
            "or rename the ts_* columns"
        )


def result_frame(
    frame: pd.DataFrame,
    result: EngineResult,
    *,
    prefix: str,
    include_scores: bool,
    call: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """``frame`` (same index and columns) plus predictions and per-row metadata; ``call``
    (see :class:`RunReport`) goes into the run report."""
    rows = result.rows
    if result.task == "predict":
        columns: dict[str, Any] = {f"{prefix}output": [r.output for r in rows]}
    else:
        columns = {f"{prefix}label": _field(rows, "label"), f"{prefix}score": _field(rows, "score")}
        if include_scores:
            columns[f"{prefix}scores"] = _field(rows, "scores")
    columns.update(
        {
            "ts_status": _field(rows, "status"),
            "ts_error": _field(rows, "error"),
            "ts_error_kind": _field(rows, "error_kind"),
            "ts_batch_id": _field(rows, "batch_id"),
            "ts_attempts": _field(rows, "attempts"),
            "ts_latency_ms": _field(rows, "latency_ms"),
            "ts_truncated": _field(rows, "truncated"),
        }
    )
    dtypes = {**prediction_dtypes(prefix, include_scores, result.task), **META_DTYPES}
    added = pd.DataFrame(
        {
            name: output_column(values, frame.index)
            if name == f"{prefix}output"
            else _column(values, frame.index, dtypes[name])
            for name, values in columns.items()
        },
        index=frame.index,
    )
    out = pd.concat([frame, added], axis=1)
    out.attrs = {
        **frame.attrs,
        _REPORT_KEY: _Report(
            model=result.model,
            version=result.version,
            mode=result.mode,
            concurrency=result.concurrency,
            adaptive=result.adaptive,
            outage=result.outage,
            batches=[_batch_row(record) for record in result.batches],
            call=call,
            seconds=result.seconds,
            breaker_openings=result.breaker_openings,
            paused_s=result.paused_s,
        ),
    }
    return out


class _Report(dict[str, Any]):
    """The run report in ``attrs``: plain JSON data, never changed once made.

    pandas deep-copies ``attrs`` in almost every operation on a frame; copying
    this report (a record per batch) would cost more than the operation, so a
    copy is the report itself.
    """

    def __copy__(self) -> _Report:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _Report:
        return self


def run_report(result: pd.DataFrame | pd.Series) -> RunReport:
    """The :class:`RunReport` of a frame returned by ``classify``."""
    report = result.attrs.get(_REPORT_KEY)
    try:
        return RunReport.from_dict(report)
    except (TypeError, KeyError):
        raise InputValidationError(
            "this frame carries no tsbatch run report: pass the frame classify returned"
        ) from None


def batch_metrics(result: pd.DataFrame) -> pd.DataFrame:
    """Per-batch metrics of a classify result, one row per batch (write it next to the predictions)."""
    records = [_batch_row(r) for r in run_report(result).batches]
    frame = pd.DataFrame(records, columns=list(BATCH_DTYPES))
    for name in ("started_at", "ended_at"):
        frame[name] = pd.to_datetime(frame[name], unit="s", utc=True)
    return frame.astype(BATCH_DTYPES)


def failures(result: pd.DataFrame) -> pd.DataFrame:
    """The rows of a classify result that ended in error, with the reason."""
    if "ts_status" not in result.columns:
        raise InputValidationError("this frame has no ts_status column: pass the frame classify returned")
    return result[result["ts_status"] == "error"]
