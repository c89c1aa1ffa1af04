"""``tsbatch serve start|status|stop`` and ``tsbatch demo``: a local TorchServe (the ``serve`` extra)."""

from __future__ import annotations

import argparse
import json
import shlex
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tsbatch._cli._common import HelpFormatter, add_json_option, print_summary
from tsbatch._demo.archive import DEMO_VERSIONS
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


class _Renamed(argparse.Action):
    """A flag that was renamed: using it is an error that names the new flag and why."""

    def __init__(self, option_strings: list[str], dest: str, new: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        old = self.option_strings[0]
        parser.error(
            f"{old} is now {self.new} here; in tsbatch classify, {old} means something else "
            "(see tsbatch classify --help)"
        )


def _add_serve_options(parser: argparse.ArgumentParser, *, free_ports: bool = False) -> None:
    defaults = ServeSettings()
    ports = {
        "inference": defaults.inference_port,
        "management": defaults.management_port,
        "metrics": defaults.metrics_port,
    }
    for api, port in ports.items():
        parser.add_argument(
            f"--{api}-port",
            type=int,
            default=None if free_ports else port,
            help=f"{api} API port" + (" (default: a free port)" if free_ports else ""),
        )
    parser.add_argument(
        "--model-batch-size",
        type=int,
        default=defaults.batch_size,
        help="the model's server-side batch size (TorchServe's batchSize)",
    )
    parser.add_argument("--batch-size", action=_Renamed, new="--model-batch-size", nargs="?")
    parser.add_argument(
        "--max-batch-delay-ms",
        "--max-batch-delay",
        dest="max_batch_delay_ms",
        type=int,
        default=defaults.max_batch_delay_ms,
        metavar="MS",
        help="longest wait to fill a server-side batch, in ms",
    )
    parser.add_argument(
        "--model-workers", type=int, default=defaults.workers, help="the model's worker processes"
    )
    parser.add_argument("--workers", action=_Renamed, new="--model-workers", nargs="?")
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
        help="serve this .mar instead of the demo model (default: the demo model, trained once and "
        "then taken from the cache folder)",
    )
    parser.add_argument(
        "--demo-versions",
        nargs="+",
        choices=list(DEMO_VERSIONS),
        default=list(defaults.demo_versions),
        metavar="VERSION",
        help=f"versions of the demo model to serve side by side ({', '.join(DEMO_VERSIONS)}); the first "
        f"is the default, the others answer at /predictions/demo/VERSION "
        f"(default: {' '.join(defaults.demo_versions)})",
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


def _free_ports(count: int) -> list[int]:
    """``count`` loopback ports free now (the sockets close before TorchServe binds them)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _settings(args: argparse.Namespace) -> ServeSettings:
    given = [args.inference_port, args.management_port, args.metrics_port]
    free = iter(_free_ports(given.count(None)))
    inference, management, metrics = (port if port is not None else next(free) for port in given)
    return ServeSettings(
        run_dir=args.run_dir,
        inference_port=inference,
        management_port=management,
        metrics_port=metrics,
        batch_size=args.model_batch_size,
        max_batch_delay_ms=args.max_batch_delay_ms,
        workers=args.model_workers,
        job_queue_size=args.job_queue_size,
        token_auth=not args.no_token_auth,
        model_archive=args.model_archive,
        demo_versions=tuple(args.demo_versions),
        training_data=args.training_data,
    )


def _description(server: LocalServer) -> dict[str, Any]:
    key_file = server.key_file.resolve() if server.key_file else None
    return {
        "inference_url": server.inference_url,
        "management_url": server.management_url,
        "metrics_url": server.metrics_url,
        "model": server.model_name,
        "versions": list(server.versions),
        "key_file": str(key_file) if key_file else None,
        "pid": server.pid,
    }


def _describe(server: LocalServer, *, as_json: bool, connect: bool = False) -> None:
    """The server's addresses; with ``connect``, the lines a user pastes to reach it."""
    data = _description(server)
    if as_json:
        print(json.dumps(data))
        return
    print(f"inference:  {server.inference_url}")
    print(f"management: {server.management_url}")
    print(f"metrics:    {server.metrics_url}")
    print(f"model:      {server.model_name}")
    if len(server.versions) > 1:
        print(f"versions:   {', '.join(server.versions)} (the first is the default)")
    print(f"key file:   {data['key_file'] or 'none (token auth disabled)'}")
    print(f"pid:        {server.pid}")
    if not connect:
        return
    exports = {
        "TORCHSERVE_URL": server.inference_url,
        "TORCHSERVE_MANAGEMENT_URL": server.management_url,
        "TORCHSERVE_MODEL": server.model_name,
        **({"TORCHSERVE_KEY_FILE": data["key_file"]} if data["key_file"] else {}),
    }
    print("\nto connect from a shell (tsbatch classify, health, models):")
    for name, value in exports.items():
        print(f"  export {name}={shlex.quote(value)}")
    key = f", key_file={data['key_file']!r}" if data["key_file"] else ""
    print("or from Python:")
    print(
        f'  df.ts.classify("text", url={server.inference_url!r}, '
        f"management_url={server.management_url!r}, model={server.model_name!r}{key})"
    )


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _serve_start(args: argparse.Namespace) -> int:
    server = _local().start(_settings(args), say=_to_stderr if args.json else print)
    _describe(server, as_json=args.json, connect=True)
    return 0


def _serve_status(args: argparse.Namespace) -> int:
    server = _local().status(args.run_dir)
    if server is None:
        print(json.dumps(None) if args.json else f"no TorchServe running from {args.run_dir}")
        return 1
    _describe(server, as_json=args.json)
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
        print(
            f"classifying every row of {args.training_data} through {server.inference_url} into {output} ..."
        )
        result = run_demo_job(server, args.training_data, output)
        for predicted, label, package in result.examples:
            print(f"  {predicted:<10} (label {label:<10}) {package}")
        print_summary(result.summary)
        print(
            f"test split: {result.test.rows} rows, accuracy {result.test.accuracy:.4f}, "
            f"macro-F1 {result.test.macro_f1:.4f}; all rows: accuracy {result.everything.accuracy:.4f}"
        )
    finally:
        if already is None:
            local.stop(args.run_dir)
            print("stopped the TorchServe this demo started")
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
    add_json_option(start, "addresses and the lines to connect")
    start.set_defaults(func=_serve_start)
    for name, func, text in (
        ("status", _serve_status, "show the server running from RUN_DIR (exit 1 if none)"),
        ("stop", _serve_stop, "stop the server started from RUN_DIR and wait until its ports are free"),
    ):
        sub = serve_commands.add_parser(name, formatter_class=HelpFormatter, help=text)
        _add_run_dir(sub)
        if name == "status":
            add_json_option(sub)
        sub.set_defaults(func=func)
    demo = commands.add_parser(
        "demo",
        formatter_class=HelpFormatter,
        help="start TorchServe on free ports, classify every row of the sample data, print the "
        "accuracy on its test split and on all rows, stop it",
    )
    _add_run_dir(demo)
    _add_serve_options(demo, free_ports=True)
    demo.set_defaults(func=_demo)
