"""The ``tsbatch`` command line.

Exit codes, so that a scheduler can act on them:

====  =====================================================================
0     done, every row classified
1     done, but some rows failed (see ``_failed.parquet``); or, for
      ``health``, the server is unhealthy
2     bad input or settings; nothing written
74    OUTPUT could not be written (disk full, no permission); parts already
      recorded are kept, nothing unwritten is recorded
75    stopped: the server stayed unavailable for the whole outage budget
      (``--max-outage``); resume by running the same command again
128+n stopped by signal n (SIGINT, SIGTERM); resume by running the same
      command again
====  =====================================================================

Options are named after the settings they set, dashed (``--rows-per-part``
sets ``rows_per_part``); switches that turn a default off read ``--no-...``.
One module per group of commands imports only what its commands need: every
command but ``serve`` and ``demo`` works without the ``serve`` extra.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tsbatch._cli._common import (
    EXIT_BAD_INPUT,
    EXIT_CANNOT_WRITE,
    EXIT_OK,
    EXIT_OUTAGE,
    EXIT_ROWS_FAILED,
    HelpFormatter,
)
from tsbatch._cli._info import add_info_commands
from tsbatch._cli._jobs import add_job_commands
from tsbatch._cli._serve import add_serve_commands
from tsbatch._errors import JobOutputError, TsbatchError

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CANNOT_WRITE",
    "EXIT_OK",
    "EXIT_OUTAGE",
    "EXIT_ROWS_FAILED",
    "build_parser",
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``tsbatch`` command."""
    parser = argparse.ArgumentParser(
        prog="tsbatch",
        description="Classify text at scale with a served model.",
        formatter_class=HelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_serve_commands(commands)
    add_job_commands(commands)
    add_info_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tsbatch`` command; returns its exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except JobOutputError as exc:
        print(f"tsbatch: error: {exc}", file=sys.stderr)
        return EXIT_CANNOT_WRITE
    except TsbatchError as exc:
        print(f"tsbatch: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
