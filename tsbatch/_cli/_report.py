"""``tsbatch report OUTPUT``: what a job did, from its output folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tsbatch._cli._common import HelpFormatter


def _report(args: argparse.Namespace) -> int:
    from tsbatch._report import report

    summary = report(args.output)
    print(json.dumps(summary.to_dict()) if args.json else summary)
    if args.html is not None:
        summary.to_html(args.html)
        if not args.json:
            print(f"page written to {args.html}")
    return 0


def add_report_command(commands: Any) -> None:
    """``report``."""
    sub = commands.add_parser(
        "report",
        formatter_class=HelpFormatter,
        help="sum up what a job did: rows, rows/s, latency, retries, pauses, errors by kind",
        description=(
            "Sum up what the job that wrote OUTPUT did, from its parts, _batches.parquet and "
            "_manifest.json: rows ok / error / skipped, rows/s, latency percentiles per request, "
            "retries, circuit breaker openings and time paused, errors by kind with an example each, "
            "and the predicted labels. --html also writes a page with the plots (needs the plot extra)."
        ),
    )
    sub.add_argument("output", type=Path, help="the job's output folder")
    sub.add_argument("--html", type=Path, metavar="FILE", help="also write a self-contained HTML page")
    sub.add_argument("--json", action="store_true", help="print JSON (default: text)")
    sub.set_defaults(func=_report)
