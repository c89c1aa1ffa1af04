"""``tsbatch serve start|status|stop`` and ``tsbatch demo``: a local TorchServe (the ``serve`` extra)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tsbatch._cli._common import HelpFormatter, print_summary
from tsbatch._errors import ConfigError
from tsbatch._serve.settings import DEFAULT_RUN_DIR, ServeSettings

if TYPE_CHECKING:
    from tsbatch._serve.local import LocalServer


def _local() -> Any:
    """The local-server module, or a clear error naming the extra it needs."""
    try:
        from tsbatch._serve import local
    except ImportError as exc:
        raise ConfigError(
            f"tsbatch serve needs the serve extra: pip install 'tsbatch[serve]' (missing {exc.name})"
        ) from None
    return local


def _add_serve_options(parser: argparse.ArgumentParser) -> None:
    defaults = ServeSettings()
    parser.add_argument(
        "--inference-port", type=int, default=defaults.inference_port, help="inference API port"
    )
    parser.add_argument(
        "--management-port", type=int, default=defaults.management_port, help="management API port"
    )
    parser.add_argument("--metrics-port", type=int, default=defaults.metrics_port, help="metrics API port")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="server-side batch size")
    parser.add_argument(
        "--max-batch-delay-ms",
        "--max-batch-delay",
        dest="max_batch_delay_ms",
        type=int,
        default=defaults.max_batch_delay_ms,
        metavar="MS",
        help="longest wait to fill a server-side batch, in ms",
    )
    parser.add_argument("--workers", type=int, default=defaults.workers, help="model worker processes")
    parser.add_argument(
        "--job-queue-size",
        type=int,
        default=defaults.job_queue_size,
        help="requests TorchServe queues before it answers 503",
    )
    parser.add_argument(
        "--no-token-auth",
        "--disable-token-auth",
        dest="no_token_auth",
        action="store_true",
        help="serve without TorchServe's token authorization (default: auth on)",
    )
    parser.add_argument(
        "--model-archive",
        type=Path,
        help="serve this .mar instead of the demo model (default: build the demo model in RUN_DIR)",
    )
    parser.add_argument(
        "--training-data",
        "--data",
        dest="training_data",
        type=Path,
        default=defaults.training_data,
        help="training data for the demo model",
    )


def _add_run_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="folder for config, logs, key file and pid"
    )


def _settings(args: argparse.Namespace) -> ServeSettings:
    return ServeSettings(
        run_dir=args.run_dir,
        inference_port=args.inference_port,
        management_port=args.management_port,
        metrics_port=args.metrics_port,
        batch_size=args.batch_size,
        max_batch_delay_ms=args.max_batch_delay_ms,
        workers=args.workers,
        job_queue_size=args.job_queue_size,
        token_auth=not args.no_token_auth,
        model_archive=args.model_archive,
        training_data=args.training_data,
    )


def _describe(server: LocalServer) -> None:
    print(f"inference:  {server.inference_url}")
    print(f"management: {server.management_url}")
    print(f"metrics:    {server.metrics_url}")
    print(f"model:      {server.model_name}")
    print(f"key file:   {server.key_file if server.key_file else 'none (token auth disabled)'}")
    print(f"pid:        {server.pid}")


def _serve_start(args: argparse.Namespace) -> int:
    _describe(_local().start(_settings(args)))
    return 0


def _serve_status(args: argparse.Namespace) -> int:
    server = _local().status(args.run_dir)
    if server is None:
        print(f"no TorchServe running from {args.run_dir}")
        return 1
    _describe(server)
    return 0


def _serve_stop(args: argparse.Namespace) -> int:
    stopped = _local().stop(args.run_dir)
    where = args.run_dir
    print(
        f"stopped the TorchServe running from {where}" if stopped else f"no TorchServe running from {where}"
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    local = _local()
    from tsbatch._demo.run import run_demo_job

    already = local.status(args.run_dir)
    server = already or local.start(_settings(args))
    output = args.run_dir / "demo-output"
    try:
        print(f"classifying {args.training_data} through {server.inference_url} into {output} ...")
        result = run_demo_job(server, args.training_data, output)
    finally:
        if already is None:
            local.stop(args.run_dir)
            print("stopped the TorchServe this demo started")
    for predicted, label, package in result.examples:
        print(f"  {predicted:<10} (label {label:<10}) {package}")
    print_summary(result.summary)
    print(
        f"test split: {result.test.rows} rows, accuracy {result.test.accuracy:.4f}, "
        f"macro-F1 {result.test.macro_f1:.4f}; all rows: accuracy {result.everything.accuracy:.4f}"
    )
    return 0 if result.summary.failed == 0 else 1


def add_serve_commands(commands: Any) -> None:
    """``serve start|status|stop`` and ``demo``."""
    serve = commands.add_parser(
        "serve", formatter_class=HelpFormatter, help="run a local TorchServe with the demo model"
    )
    serve_commands = serve.add_subparsers(dest="serve_command", required=True)
    start = serve_commands.add_parser(
        "start", formatter_class=HelpFormatter, help="start TorchServe and wait until the model is ready"
    )
    _add_run_dir(start)
    _add_serve_options(start)
    start.set_defaults(func=_serve_start)
    for name, func, text in (
        ("status", _serve_status, "show the server running from RUN_DIR (exit 1 if none)"),
        ("stop", _serve_stop, "stop the server started from RUN_DIR and wait until its ports are free"),
    ):
        sub = serve_commands.add_parser(name, formatter_class=HelpFormatter, help=text)
        _add_run_dir(sub)
        sub.set_defaults(func=func)
    demo = commands.add_parser(
        "demo",
        formatter_class=HelpFormatter,
        help="start TorchServe, classify the sample data, print the test split's accuracy, stop it",
    )
    _add_run_dir(demo)
    _add_serve_options(demo)
    demo.set_defaults(func=_demo)
