"""``tsbatch compare BASE CANDIDATE``: two model versions' results on the same rows, with thresholds."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tsbatch._cli._common import EXIT_OK, EXIT_ROWS_FAILED, HelpFormatter, add_json_option
from tsbatch._compare import DEFAULT_N_BOOT, compare
from tsbatch._compare._check import checked_threshold
from tsbatch._errors import ConfigError, RegressionError

#: ``--fail-on`` names and the ``check()`` thresholds they set.
FAIL_ON = {
    "accuracy_drop": "max_accuracy_drop",
    "agreement": "min_agreement",
    "class_f1_drop": "max_class_f1_drop",
    "macro_f1_drop": "max_macro_f1_drop",
}


def fail_on(spec: str) -> list[tuple[str, float]]:
    """``NAME=VALUE[,NAME=VALUE...]``: the thresholds one ``--fail-on`` gives, as ``check()`` keywords."""
    thresholds = []
    for item in (part.strip() for part in spec.split(",")):
        name, _, value = item.partition("=")
        if name.strip() not in FAIL_ON:
            raise argparse.ArgumentTypeError(
                f"{item!r}: expected NAME=VALUE with NAME one of {', '.join(FAIL_ON)}"
            )
        keyword = FAIL_ON[name.strip()]
        try:
            thresholds.append((keyword, checked_threshold(keyword, float(value))))
        except ValueError as exc:
            reason = str(exc).split(": ", 1)[-1] if isinstance(exc, ConfigError) else "expected a number"
            raise argparse.ArgumentTypeError(f"{item!r}: {reason}") from None
    return thresholds


def _compare(args: argparse.Namespace) -> int:
    report = compare(
        args.base,
        args.candidate,
        truth=None if args.no_truth else args.truth,
        id_column=args.id_column,
        text_column=args.text_column,
        prefix=args.prefix,
        n_boot=args.n_boot,
        seed=args.seed,
    )
    thresholds: dict[str, Any] = dict(pair for given in args.fail_on or [] for pair in given)
    broken: RegressionError | None = None
    try:
        report.check(**thresholds)
    except RegressionError as exc:
        broken = exc
    print(report.to_json() if args.json else report)
    if args.html is not None:
        report.to_html(args.html)
        print(f"report written to {args.html}", file=sys.stderr)
    if broken is not None:
        print(f"tsbatch: regression: {broken}", file=sys.stderr)
        return EXIT_ROWS_FAILED
    return EXIT_OK


def add_compare_command(commands: Any) -> None:
    """``compare``."""
    sub = commands.add_parser(
        "compare",
        formatter_class=HelpFormatter,
        help="compare a candidate model's results with a baseline's on the same rows "
        "(exit 1 when a --fail-on threshold is broken)",
        description="Compare two classifications of the same rows (job OUTPUT folders or Parquet files): "
        "agreement, accuracy and macro-F1 with bootstrap intervals, per-class F1, flips, score drift "
        "and the rows that changed. Exit 0 when every --fail-on threshold holds, 1 when one is "
        "broken, 2 on bad input.",
    )
    sub.add_argument("base", metavar="BASE", help="the baseline: a job's OUTPUT folder or a Parquet file")
    sub.add_argument("candidate", metavar="CANDIDATE", help="the candidate, as BASE")
    truth = sub.add_mutually_exclusive_group()
    truth.add_argument("--truth", default="label", help="the column of true labels")
    truth.add_argument("--no-truth", action="store_true", help="no true labels: compare the predictions only")
    sub.add_argument(
        "--id-column", help="the column to match rows on (default: the job's id column, else id)"
    )
    sub.add_argument("--text-column", help="texts to show with the changed rows (default: the job's column)")
    sub.add_argument("--prefix", default="pred_", help="the prefix of the prediction columns")
    sub.add_argument(
        "--fail-on",
        action="append",
        type=fail_on,
        metavar="NAME=VALUE[,...]",
        help="exit 1 when a threshold is broken: accuracy_drop, macro_f1_drop and class_f1_drop "
        "(the largest drop allowed from baseline to candidate; class_f1_drop for each class), "
        "agreement (the least fraction of rows with the same label); repeat the flag or separate "
        "with commas; a name given twice keeps its last value",
    )
    sub.add_argument("--html", metavar="FILE", help="also write the report as an HTML page")
    sub.add_argument(
        "--n-boot",
        type=int,
        default=DEFAULT_N_BOOT,
        metavar="N",
        help="bootstrap resamples for the intervals",
    )
    sub.add_argument(
        "--seed", type=int, default=0, help="seed of the bootstrap's random numbers (default: 0)"
    )
    add_json_option(sub, "a report in words")
    sub.set_defaults(func=_compare)
