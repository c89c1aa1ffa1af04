"""The two sides of a comparison, read and matched row by row.

A side is a frame ``df.ts.classify`` returned, a job's OUTPUT folder (its
``part-*.parquet`` files in name order; its ``_manifest.json`` names the id and
text columns) or a Parquet file of classified rows.  Rows are matched on an id
column (``id_column``, else the job's own, else ``id``) or, for two frames, on
the index; an id on one side only is reported, never dropped unseen.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import pandas as pd

from tsbatch._errors import InputValidationError
from tsbatch._frame import run_report

#: What a side can be: a classified frame, or the path of a job's OUTPUT or of a Parquet file.
Source: TypeAlias = pd.DataFrame | str | os.PathLike[str]
ROLES = ("baseline", "candidate")


@dataclass(frozen=True)
class Side:
    """One side, read: its rows, where they came from, and the id and text columns its source names."""

    role: str
    rows: pd.DataFrame
    source: str
    id_hint: str | None
    text_hint: str | None
    is_frame: bool

    def where(self) -> str:
        return f"the {self.role} ({self.source})"

    def columns(self) -> str:
        return ", ".join(map(str, self.rows.columns))


@dataclass(frozen=True)
class Matched:
    """The rows both sides have, in the baseline's order, indexed by id.

    ``rows`` has ``baseline_label``, ``baseline_score``, ``baseline_status``,
    the same for the candidate, and ``truth`` and ``text`` when known.
    ``id_column`` is ``None`` when the rows were matched on the index.
    """

    rows: pd.DataFrame
    id_column: str | None
    only_in_baseline: tuple[Any, ...]
    only_in_candidate: tuple[Any, ...]
    truth: str | None
    text_column: str | None


def examples(values: list[Any], limit: int = 5) -> str:
    """The first ``limit`` values, for a message."""
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (", ..." if len(values) > limit else "")


def _classified_column(frame: pd.DataFrame) -> str | None:
    """The column ``df.ts.classify`` was called on, from the frame's run report."""
    try:
        call = run_report(frame).call or {}
    except InputValidationError:
        return None
    column = call.get("column")
    return column if isinstance(column, str) else None


def _read_parquet(role: str, path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise InputValidationError(f"the {role} {path} cannot be read as Parquet: {exc}") from None


def _read_output(role: str, path: Path) -> Side:
    """A job's OUTPUT folder: its parts, with the id and text columns of its manifest."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tsbatch._job import MANIFEST, ROW_ID

    parts = sorted(path.glob("part-*.parquet"))
    if not parts:
        raise InputValidationError(
            f"the {role} folder {path} holds no part-*.parquet files: pass a tsbatch job's OUTPUT "
            "folder or a Parquet file"
        )
    settings: dict[str, Any] = {}
    if (path / MANIFEST).is_file():
        try:
            settings = json.loads((path / MANIFEST).read_text())["settings"]
        except (ValueError, KeyError, TypeError) as exc:
            raise InputValidationError(f"{path / MANIFEST} is damaged ({exc})") from None
    try:
        table = pa.concat_tables([pq.read_table(p) for p in parts], promote_options="default")
    except (OSError, ValueError) as exc:
        raise InputValidationError(f"the parts of the {role} {path} cannot be read: {exc}") from None
    id_hint = settings.get("id_column") or ROW_ID
    return Side(role, table.to_pandas(), str(path), id_hint, settings.get("column"), is_frame=False)


def read_side(role: str, source: Source, prefix: str) -> Side:
    """One side, checked to hold classify results (``{prefix}label``, ``{prefix}score``, ``ts_status``)."""
    if isinstance(source, pd.DataFrame):
        side = Side(role, source, "a DataFrame", None, _classified_column(source), is_frame=True)
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.is_dir():
            side = _read_output(role, path)
        elif path.is_file():
            rows = _read_parquet(role, path)
            side = Side(role, rows, str(path), None, _classified_column(rows), is_frame=False)
        else:
            raise InputValidationError(
                f"the {role} {path} does not exist: pass a tsbatch job's OUTPUT folder or a Parquet file"
            )
    else:
        raise InputValidationError(
            f"the {role} is a {type(source).__name__}: pass the frame df.ts.classify returned, "
            "a tsbatch job's OUTPUT folder or a Parquet file"
        )
    needed = [f"{prefix}label", f"{prefix}score", "ts_status"]
    missing = [c for c in needed if c not in side.rows.columns]
    if missing:
        raise InputValidationError(
            f"{side.where()} has no column(s) {missing}: compare needs classify results "
            f"(pass prefix= if the predictions are named otherwise); its columns are: {side.columns()}"
        )
    return side


def _id_column(baseline: Side, candidate: Side, given: str | None) -> str | None:
    """The column to match rows on; ``None``: the index (two frames with no id column in common)."""
    if given is not None:
        for side in (baseline, candidate):
            if given not in side.rows.columns:
                raise InputValidationError(
                    f"id column {given!r} is not in {side.where()}; its columns are: {side.columns()}"
                )
        return given
    for name in dict.fromkeys(n for n in (baseline.id_hint, candidate.id_hint, "id") if n):
        if name in baseline.rows.columns and name in candidate.rows.columns:
            return name
    if baseline.is_frame and candidate.is_frame:
        return None
    raise InputValidationError(
        "cannot tell which rows match: the baseline and the candidate have no 'id' column in common; "
        "pass id_column= (--id-column) naming a column of row ids both have"
    )


def _by_id(side: Side, key: str | None) -> pd.DataFrame:
    """The side's rows indexed by their ids, refused when an id is missing or repeated."""
    ids = side.rows[key] if key is not None else side.rows.index.to_series()
    what = f"id column {key!r}" if key is not None else "index"
    if ids.isna().any():
        raise InputValidationError(f"the {what} of {side.where()} has {int(ids.isna().sum())} missing values")
    repeated = ids[ids.duplicated()].tolist()
    if repeated:
        hint = "; pass id_column= naming a column of unique row ids" if key is None else ""
        raise InputValidationError(
            f"the {what} of {side.where()} is not unique: {len(repeated)} repeated values "
            f"({examples(repeated)}); each row needs an id of its own{hint}"
        )
    return side.rows.set_index(key) if key is not None else side.rows


def _column_from(sides: list[tuple[Side, pd.DataFrame]], column: str, ids: pd.Index) -> pd.Series | None:
    """``column`` of the first side that has it, for the matched ``ids``."""
    for _, rows in sides:
        if column in rows.columns:
            return rows.loc[ids, column]
    return None


def _text_column(sides: list[tuple[Side, pd.DataFrame]], given: str | None) -> str | None:
    if given is not None:
        if not any(given in rows.columns for _, rows in sides):
            raise InputValidationError(f"text column {given!r} is in neither the baseline nor the candidate")
        return given
    hints = [side.text_hint for side, _ in sides] + ["text"]
    return next((h for h in hints if h and any(h in rows.columns for _, rows in sides)), None)


def _truth(sides: list[tuple[Side, pd.DataFrame]], truth: str, ids: pd.Index) -> pd.Series:
    """The true labels, as text; refused when absent, or when the two sides disagree on them."""
    found = [rows.loc[ids, truth].astype("string") for _, rows in sides if truth in rows.columns]
    if not found:
        columns = "; ".join(f"{side.role}: {side.columns()}" for side, _ in sides)
        raise InputValidationError(
            f"truth column {truth!r} is in neither the baseline nor the candidate ({columns}); "
            "name the column of true labels, or compare without one (truth=None, --no-truth)"
        )
    if len(found) == 2:
        first, second = found
        same = (first == second).fillna(False) | (first.isna() & second.isna())
        if not same.all():
            differing = first.index[~same.to_numpy(dtype=bool)].tolist()
            raise InputValidationError(
                f"truth column {truth!r} differs between the baseline and the candidate on "
                f"{len(differing)} matched rows ({examples(differing)}): are the rows matched on the "
                "right id? pass id_column="
            )
    return found[0]


def match(
    baseline: Side,
    candidate: Side,
    *,
    truth: str | None,
    id_column: str | None,
    text_column: str | None,
    prefix: str,
) -> Matched:
    """The rows both sides have, matched on their ids, with each side's predictions and status."""
    key = _id_column(baseline, candidate, id_column)
    sides = [(baseline, _by_id(baseline, key)), (candidate, _by_id(candidate, key))]
    (_, base), (_, cand) = sides
    in_both = base.index.isin(cand.index)
    ids = base.index[in_both]
    if not len(ids) and len(base) and len(cand):
        what = f"id column {key!r}" if key is not None else "index"
        raise InputValidationError(
            f"the baseline and the candidate have no value of their {what} in common (baseline: "
            f"{examples(base.index.tolist())}; candidate: {examples(cand.index.tolist())}): are they "
            "classifications of the same rows?"
        )
    wanted = (("label", f"{prefix}label", "string"), ("score", f"{prefix}score", "Float64"))
    columns = {
        f"{side.role}_{name}": rows.loc[ids, column].astype(dtype)
        for side, rows in sides
        for name, column, dtype in (*wanted, ("status", "ts_status", "string"))
    }
    rows = pd.DataFrame(columns, index=ids)
    if truth is not None:
        rows["truth"] = _truth(sides, truth, ids)
    text = _text_column(sides, text_column)
    if text is not None:
        rows["text"] = _column_from(sides, text, ids)
    return Matched(
        rows=rows,
        id_column=key,
        only_in_baseline=tuple(base.index[~in_both].tolist()),
        only_in_candidate=tuple(cand.index[~cand.index.isin(base.index)].tolist()),
        truth=truth,
        text_column=text,
    )
