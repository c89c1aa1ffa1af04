"""``tsbatch.compare``: read both sides, match their rows, compute the figures."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tsbatch._compare._inputs import ROLES, Matched, Source, examples, match, read_side
from tsbatch._compare._metrics import accuracy, bootstrap, code, flip_matrix, macro_f1, per_class
from tsbatch._compare._report import ComparisonReport, Difference, Scores
from tsbatch._errors import ConfigError, InputValidationError

DEFAULT_N_BOOT = 1000


def compare(
    baseline: Source,
    candidate: Source,
    *,
    truth: str | None = "label",
    id_column: str | None = None,
    text_column: str | None = None,
    prefix: str = "pred_",
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
) -> ComparisonReport:
    """Compare a candidate model's classifications of a set of rows with a baseline's.

    ``baseline`` and ``candidate`` are each a frame ``df.ts.classify`` returned,
    a tsbatch job's OUTPUT folder or a Parquet file of classified rows.  Rows
    are matched on ``id_column`` (default: the job's id column, else ``id``;
    for two frames without one, the index).  ``truth`` names the column of
    true labels (``None``: compare the predictions only); ``text_column`` the
    texts to show with the changed rows (default: the classified column).
    The intervals come from ``n_boot`` paired bootstrap resamples drawn with
    ``numpy.random.default_rng(seed)``.
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ConfigError(f"n_boot={n_boot!r}: expected a whole number of resamples, at least 1")
    sides = [read_side("baseline", baseline, prefix), read_side("candidate", candidate, prefix)]
    matched = match(*sides, truth=truth, id_column=id_column, text_column=text_column, prefix=prefix)
    rows = matched.rows
    usable = {
        role: (rows[f"{role}_status"] == "ok").fillna(False) & rows[f"{role}_label"].notna() for role in ROLES
    }
    both = (usable["baseline"] & usable["candidate"]).to_numpy(dtype=bool)
    not_ok = {
        role: _left_out(rows.loc[~usable[role].to_numpy(dtype=bool), f"{role}_status"]) for role in ROLES
    }
    if not both.any():
        raise InputValidationError(
            f"no matched row is ok on both sides ({len(rows)} matched; not ok: {not_ok}): nothing to compare"
        )
    compared = rows[both]
    same = (compared["baseline_label"] == compared["candidate_label"]).to_numpy(dtype=bool)
    scores: dict[str, Scores] = {}
    differences: dict[str, Difference] = {}
    table = None
    if truth is not None:
        _refuse_missing_truth(compared, truth)
        coded = code(compared["truth"], compared["baseline_label"], compared["candidate_label"])
        k = len(coded.classes)
        for role, predicted in (("baseline", coded.baseline), ("candidate", coded.candidate)):
            scores[role] = Scores(accuracy(coded.truth, predicted), macro_f1(coded.truth, predicted, k))
        intervals = bootstrap(coded, n_boot=n_boot, seed=seed)
        for name, (low, high) in intervals.items():
            value = getattr(scores["candidate"], name) - getattr(scores["baseline"], name)
            differences[name] = Difference(value, low, high)
        table = per_class(coded)
    drift = (compared["candidate_score"] - compared["baseline_score"]).rename("score_drift")
    return ComparisonReport(
        sources=(sides[0].source, sides[1].source),
        id_column=matched.id_column,
        truth=truth,
        text_column=matched.text_column,
        matched=len(rows),
        compared=len(compared),
        only_in_baseline=matched.only_in_baseline,
        only_in_candidate=matched.only_in_candidate,
        not_ok=not_ok,
        agreement=float(same.mean()),
        baseline=scores.get("baseline"),
        candidate=scores.get("candidate"),
        differences=differences,
        per_class=table,
        flip_matrix=flip_matrix(compared["baseline_label"], compared["candidate_label"]),
        score_drift=drift,
        changed_rows=_changed_rows(compared[~same], matched),
        n_boot=n_boot,
        seed=seed,
    )


def _left_out(statuses: pd.Series) -> dict[str, int]:
    """Rows left out by status (``no label``: ``ok`` with no label; ``missing``: no status)."""
    named = statuses.astype("object").where(statuses.notna(), "missing")
    named = named.where(named != "ok", "no label")
    return {str(status): int(n) for status, n in named.value_counts().items()}


def _refuse_missing_truth(compared: pd.DataFrame, truth: str) -> None:
    missing = compared.index[compared["truth"].isna().to_numpy(dtype=bool)].tolist()
    if missing:
        raise InputValidationError(
            f"truth column {truth!r} has no value on {len(missing)} compared rows ({examples(missing)}): "
            "give them their true label, or leave them out of both sides"
        )


def _changed_rows(changed: pd.DataFrame, matched: Matched) -> pd.DataFrame:
    """The rows whose label changed: id, text and truth when known, both predictions, and, with the
    truth, the change's effect (``fixed``, ``regressed`` or ``both wrong``)."""
    out = pd.DataFrame({"id": changed.index.to_numpy()})
    values = {name: changed[name].to_numpy() for name in changed.columns}
    for name in ("text", "truth"):
        if name in values:
            out[name] = pd.array(values[name], dtype="string")
    for role in ROLES:
        out[f"{role}_label"] = pd.array(values[f"{role}_label"], dtype="string")
        out[f"{role}_score"] = pd.array(values[f"{role}_score"], dtype="Float64")
    if matched.truth is not None:
        fixed = (changed["candidate_label"] == changed["truth"]).to_numpy(dtype=bool)
        regressed = (changed["baseline_label"] == changed["truth"]).to_numpy(dtype=bool)
        effect = np.where(fixed, "fixed", np.where(regressed, "regressed", "both wrong"))
        out["change"] = pd.array(effect, dtype="string")
    return out
