"""The ``tsbatch`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tsbatch._demo.archive import DEFAULT_DATA
from tsbatch._demo.run import classify_test_split
from tsbatch._errors import TorchServeError
from tsbatch._serve import local


def _add_serve_options(parser: argparse.ArgumentParser) -> None:
    defaults = local.ServeSettings()
    parser.add_argument(
        "--inference-port",
        type=int,
        default=defaults.inference_port,
        help="inference API port (default: %(default)s)",
    )
    parser.add_argument(
        "--management-port",
        type=int,
        default=defaults.management_port,
        help="management API port (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=defaults.metrics_port,
        help="metrics API port (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help="server-side batch size (default: %(default)s)",
    )
    parser.add_argument(
        "--max-batch-delay",
        type=int,
        default=defaults.max_batch_delay_ms,
        metavar="MS",
        help="longest wait to fill a server-side batch, in ms (default: %(default)s)",
    )
    parser.add_argument(
        "--workers", type=int, default=defaults.workers, help="model worker processes (default: %(default)s)"
    )
    parser.add_argument(
        "--disable-token-auth",
        action="store_true",
        help="serve without TorchServe's token authorization (default: auth on)",
    )
    parser.add_argument(
        "--model-archive",
        type=Path,
        default=None,
        help="serve this .mar instead of the demo model (default: build the demo model in RUN_DIR)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=defaults.training_data,
        help="training data for the demo model (default: %(default)s)",
    )


def _add_run_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=local.DEFAULT_RUN_DIR,
        help="folder for config, logs, key file and pid (default: %(default)s)",
    )


def _settings(args: argparse.Namespace) -> local.ServeSettings:
    return local.ServeSettings(
        run_dir=args.run_dir,
        inference_port=args.inference_port,
        management_port=args.management_port,
        metrics_port=args.metrics_port,
        batch_size=args.batch_size,
        max_batch_delay_ms=args.max_batch_delay,
        workers=args.workers,
        token_auth=not args.disable_token_auth,
        model_archive=args.model_archive,
        training_data=args.data,
    )


def _describe(server: local.LocalServer) -> None:
    print(f"inference:  {server.inference_url}")
    print(f"management: {server.management_url}")
    print(f"metrics:    {server.metrics_url}")
    print(f"model:      {server.model_name}")
    print(f"key file:   {server.key_file if server.key_file else 'none (token auth disabled)'}")
    print(f"pid:        {server.pid}")


def _serve_start(args: argparse.Namespace) -> int:
    server = local.start(_settings(args))
    _describe(server)
    return 0


def _serve_status(args: argparse.Namespace) -> int:
    server = local.status(args.run_dir)
    if server is None:
        print(f"no TorchServe running from {args.run_dir}")
        return 1
    _describe(server)
    return 0


def _serve_stop(args: argparse.Namespace) -> int:
    stopped = local.stop(args.run_dir)
    where = args.run_dir
    print(
        f"stopped the TorchServe running from {where}" if stopped else f"no TorchServe running from {where}"
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    already = local.status(args.run_dir)
    server = already or local.start(_settings(args))
    try:
        print(f"classifying the test split of {args.data} through {server.inference_url} ...")
        result = classify_test_split(server, args.data)
    finally:
        if already is None:
            local.stop(args.run_dir)
            print("stopped the TorchServe this demo started")
    for text, label, predicted in list(zip(result.texts, result.labels, result.predictions, strict=True))[:5]:
        summary = text.splitlines()[0][:60]
        print(f"  {predicted:<10} (label {label:<10}) {summary}")
    score = result.evaluation
    print(
        f"{score.rows} rows in {result.seconds:.1f}s ({score.rows / result.seconds:.0f} rows/s): "
        f"accuracy {score.accuracy:.4f}, macro-F1 {score.macro_f1:.4f}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``tsbatch`` command."""
    parser = argparse.ArgumentParser(prog="tsbatch", description="Classify text at scale with TorchServe.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run a local TorchServe with the demo model")
    serve_commands = serve.add_subparsers(dest="serve_command", required=True)
    start = serve_commands.add_parser("start", help="start TorchServe and wait until the model is ready")
    _add_run_dir(start)
    _add_serve_options(start)
    start.set_defaults(func=_serve_start)
    for name, func, text in (
        ("status", _serve_status, "show the server running from RUN_DIR (exit 1 if none)"),
        ("stop", _serve_stop, "stop the server started from RUN_DIR and wait until its ports are free"),
    ):
        sub = serve_commands.add_parser(name, help=text)
        _add_run_dir(sub)
        sub.set_defaults(func=func)

    demo = commands.add_parser(
        "demo", help="start TorchServe, classify the sample test split, print accuracy, stop it"
    )
    _add_run_dir(demo)
    _add_serve_options(demo)
    demo.set_defaults(func=_demo, data=DEFAULT_DATA)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tsbatch`` command; returns its exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except TorchServeError as exc:
        print(f"tsbatch: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
