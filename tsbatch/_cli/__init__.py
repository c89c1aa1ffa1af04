"""The ``tsbatch`` command line.

Exit codes, so that a scheduler can act on them:

====  =====================================================================
0     done, every row classified
1     done, but some rows failed (see ``_failed.parquet``); or, for
      ``health``, the server is unhealthy; or, for ``compare``, the
      candidate broke a ``--fail-on`` threshold
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
import difflib
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
from tsbatch._cli._compare import add_compare_command
from tsbatch._cli._info import add_info_commands
from tsbatch._cli._jobs import add_job_commands
from tsbatch._cli._report import add_report_command
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
    add_report_command(commands)
    add_info_commands(commands)
    add_compare_command(commands)
    _remember_parsers(parser)
    return parser


def _remember_parsers(parser: argparse.ArgumentParser) -> None:
    """Each command's parser records itself in the arguments, to report unknown flags."""
    parser.set_defaults(parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _remember_parsers(sub)


def _refuse_unknown(parser: argparse.ArgumentParser, unknown: list[str]) -> None:
    """Exit 2 naming the unknown arguments, with the nearest flag the command has."""
    flags = [
        flag
        for action in parser._actions
        if action.help is not argparse.SUPPRESS
        for flag in action.option_strings
        if flag.startswith("--")
    ]
    message = f"unrecognized arguments: {' '.join(unknown)}"
    for given in unknown:
        near = difflib.get_close_matches(given.split("=", 1)[0], flags, n=1) if given.startswith("-") else []
        if near:
            message += f"; did you mean {near[0]}?"
            break
    parser.error(message)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tsbatch`` command; returns its exit code."""
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:
        _refuse_unknown(args.parser, unknown)
    try:
        return int(args.func(args))
    except JobOutputError as exc:
        print(f"tsbatch: error: {exc}", file=sys.stderr)
        return EXIT_CANNOT_WRITE
    except TsbatchError as exc:
        print(f"tsbatch: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
