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
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from tsbatch._client import TorchServeClient
from tsbatch._config import ClientConfig, TLSConfig
from tsbatch._demo.archive import DEFAULT_DATA
from tsbatch._demo.run import run_demo_job
from tsbatch._errors import ConfigError, TorchServeError
from tsbatch._job import (
    DEFAULT_DASK_WORKERS,
    DEFAULT_ROWS_PER_PART,
    DEFAULT_STOP_TIMEOUT,
    Job,
    JobOutage,
    JobOutputError,
    JobSettings,
    JobStopped,
    JobSummary,
    retry_failed,
    settings_from_output,
)
from tsbatch._progress import progress_bar, progress_enabled
from tsbatch._serve import local

#: Exit codes (sysexits.h names where one fits).
EXIT_OK = 0
EXIT_ROWS_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_CANNOT_WRITE = 74  # EX_IOERR
EXIT_OUTAGE = 75  # EX_TEMPFAIL: try again later


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
        "--job-queue-size",
        type=int,
        default=defaults.job_queue_size,
        help="requests TorchServe queues before it answers 503 (default: %(default)s)",
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
        job_queue_size=args.job_queue_size,
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
    output = args.run_dir / "demo-output"
    try:
        print(f"classifying {args.data} through {server.inference_url} into {output} ...")
        result = run_demo_job(server, args.data, output)
    finally:
        if already is None:
            local.stop(args.run_dir)
            print("stopped the TorchServe this demo started")
    for predicted, label, package in result.examples:
        print(f"  {predicted:<10} (label {label:<10}) {package}")
    _print_summary(result.summary)
    print(
        f"test split: {result.test.rows} rows, accuracy {result.test.accuracy:.4f}, "
        f"macro-F1 {result.test.macro_f1:.4f}; all rows: accuracy {result.everything.accuracy:.4f}"
    )
    return 0 if result.summary.failed == 0 else 1


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server (defaults from TORCHSERVE_* environment variables)")
    group.add_argument("--url", help="inference API URL (default: TORCHSERVE_URL or http://127.0.0.1:8080)")
    group.add_argument(
        "--management-url",
        help="management API URL (default: TORCHSERVE_MANAGEMENT_URL or http://127.0.0.1:8081)",
    )
    group.add_argument(
        "--key-file",
        type=Path,
        help="TorchServe key_file.json with the tokens (default: TORCHSERVE_KEY_FILE)",
    )
    group.add_argument("--ca-bundle", type=Path, help="CA bundle for https URLs (default: system CAs)")
    group.add_argument(
        "--insecure", action="store_true", help="do not verify https certificates (default: verify)"
    )


def _client_config(args: argparse.Namespace) -> ClientConfig:
    config = ClientConfig.from_env()
    if getattr(args, "max_outage", None) is not None:
        config = dataclasses.replace(
            config, outage=dataclasses.replace(config.outage, max_outage=args.max_outage)
        )
    auth = config.auth
    if args.key_file is not None:
        auth = dataclasses.replace(auth, key_file=args.key_file)
    tls = config.tls
    if args.ca_bundle is not None or args.insecure:
        tls = TLSConfig(ca_bundle=args.ca_bundle, verify=not args.insecure)
    return dataclasses.replace(
        config,
        url=args.url or config.url,
        management_url=args.management_url or config.management_url,
        model=getattr(args, "model", None) or config.model,
        auth=auth,
        tls=tls,
    )


def _run_stoppable(job: Job, work: Callable[[], Awaitable[JobSummary]], timeout: float) -> JobSummary:
    """Run ``work`` with SIGINT/SIGTERM asking the job to stop, and a hard stop after ``timeout``."""

    async def main() -> JobSummary:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_signal(signum: int) -> None:
            if job.stop.is_set():
                return
            job.received_signal = signum
            print(
                f"\n{signal.Signals(signum).name}: finishing requests in flight "
                f"(at most {timeout:g}s), then stopping",
                file=sys.stderr,
            )
            job.stop.set()
            loop.call_later(timeout, task.cancel)

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        return await work()

    return asyncio.run(main())


def _print_summary(summary: JobSummary) -> None:
    print(
        f"{summary.rows} rows in {summary.parts} parts: {summary.ok} ok, {summary.failed} failed, "
        f"{summary.skipped} skipped; {summary.rows_this_run} rows this run in {summary.seconds:.1f}s "
        f"({summary.rows_per_second:.0f} rows/s)"
    )
    print(
        f"output: {summary.output} "
        "(predictions in part-*.parquet; _batches.parquet, _failed.parquet, _summary.json)"
    )


def _job_exit(job: Job, work: Callable[[], Awaitable[JobSummary]], args: argparse.Namespace) -> int:
    from prometheus_client import pushadd_to_gateway, start_http_server

    server = None
    if args.metrics_port:
        server, _ = start_http_server(
            args.metrics_port, addr=args.metrics_address, registry=job.metrics.registry
        )
    resume = f"resume with: {shlex.join(sys.argv) if sys.argv else 'the same command'}"
    try:
        with progress_bar(progress_enabled(False if args.no_progress else None), "classify") as progress:
            job.progress = progress
            summary = _run_stoppable(job, work, args.stop_timeout)
    except (JobStopped, asyncio.CancelledError):
        signum = job.received_signal or signal.SIGTERM
        print(f"stopped: finished parts are kept in {job.settings.output}", file=sys.stderr)
        print(resume, file=sys.stderr)
        return 128 + int(signum)
    except JobOutage as exc:
        print(f"tsbatch: stopped: {exc}", file=sys.stderr)
        print(resume, file=sys.stderr)
        return EXIT_OUTAGE
    except JobOutputError as exc:
        print(f"tsbatch: error: {exc}", file=sys.stderr)
        return EXIT_CANNOT_WRITE
    finally:
        if server is not None:
            server.shutdown()
    _print_summary(summary)
    if args.pushgateway:
        pushadd_to_gateway(args.pushgateway, job=job.settings.job_name, registry=job.metrics.registry)
        print(f"metrics pushed to {args.pushgateway} (job={job.settings.job_name})")
    return EXIT_ROWS_FAILED if summary.failed else EXIT_OK


def _add_job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="serve /metrics on METRICS_ADDRESS:PORT while the job runs; with --engine dask each worker "
        "process serves its client metrics on the first free port above it (default: off)",
    )
    parser.add_argument(
        "--metrics-address",
        default="127.0.0.1",
        help="address /metrics listens on; 0.0.0.0 lets Prometheus reach it in a pod (default: %(default)s)",
    )
    parser.add_argument(
        "--pushgateway", metavar="URL", help="push the job's final metrics to this Pushgateway (default: off)"
    )
    parser.add_argument(
        "--job-name", default="tsbatch", help="the Pushgateway job label (default: %(default)s)"
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=DEFAULT_STOP_TIMEOUT,
        help="seconds in-flight requests get after SIGINT/SIGTERM (default: %(default)s)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default: on in terminals)"
    )
    parser.add_argument(
        "--mode", choices=["auto", "rows", "list"], default="auto", help="request mode (default: %(default)s)"
    )
    parser.add_argument("--batch-size", type=int, help="rows per batch (default: MAX_BATCH_SIZE or 64)")
    parser.add_argument(
        "--concurrency",
        type=int,
        help="pin the requests in flight to this number (default: adapt to the server, starting from "
        "an estimate made from the model's info)",
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        help="never more requests in flight than this (default: MAX_CONCURRENCY or the connection pool, 100)",
    )
    parser.add_argument(
        "--max-outage",
        type=float,
        metavar="SECONDS",
        help="wait this long for an unavailable server before stopping with exit 75; 0 fails the rows "
        "at once instead (default: TSBATCH_MAX_OUTAGE_S or 600)",
    )


def _classify(args: argparse.Namespace) -> int:
    settings = JobSettings(
        input=args.input,
        output=args.output,
        column=args.column,
        id_column=args.id_column,
        keep_columns=tuple(c for c in (args.keep_columns or "").split(",") if c),
        model=args.model,
        version=args.model_version,
        mode=args.mode,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        max_concurrency=args.max_concurrency,
        rows_per_part=args.rows_per_part,
        overwrite=args.overwrite,
        job_name=args.job_name,
        engine=args.engine,
    )
    job = _job(settings, args)
    job.prepare()  # bad input is refused before anything else happens
    return _job_exit(job, job.run, args)


def _job(settings: JobSettings, args: argparse.Namespace) -> Job:
    if settings.engine == "pandas":
        if args.scheduler or args.workers is not None:
            raise ConfigError("--scheduler and --workers need --engine dask")
        return Job(settings, _client_config(args))
    if args.scheduler and args.workers is not None:
        raise ConfigError("pass --scheduler (an existing cluster) or --workers (a local one), not both")
    try:
        from tsbatch._dask import ClusterSettings, DaskJob
    except ImportError as exc:
        raise ConfigError(f"--engine dask needs Dask: pip install 'tsbatch[dask]' ({exc})") from None
    cluster = ClusterSettings(
        scheduler=args.scheduler,
        workers=DEFAULT_DASK_WORKERS if args.workers is None else args.workers,
        metrics_port=args.metrics_port + 1 if args.metrics_port else None,
        metrics_address=args.metrics_address,
    )
    return DaskJob(settings, _client_config(args), cluster)


def _retry_failed(args: argparse.Namespace) -> int:
    settings = settings_from_output(
        args.output,
        mode=args.mode,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        max_concurrency=args.max_concurrency,
        job_name=args.job_name,
    )
    job = Job(settings, _client_config(args))
    return _job_exit(job, lambda: retry_failed(job), args)


def _with_client(args: argparse.Namespace, use: Callable[[TorchServeClient], Awaitable[int]]) -> int:
    async def main() -> int:
        async with TorchServeClient(config=_client_config(args)) as client:
            return await use(client)

    return asyncio.run(main())


def _health(args: argparse.Namespace) -> int:
    async def use(client: TorchServeClient) -> int:
        health = await client.health()
        data = {
            "healthy": health.healthy,
            "status": health.status,
            "url": client.config.url,
            "error": health.error,
        }
        print(
            json.dumps(data)
            if args.json
            else f"{client.config.url}: {health.status}" + (f" ({health.error})" if health.error else "")
        )
        return 0 if health.healthy else 1

    return _with_client(args, use)


def _models(args: argparse.Namespace) -> int:
    async def use(client: TorchServeClient) -> int:
        names = await client.list_models()
        print(json.dumps(names) if args.json else "\n".join(names))
        return 0

    return _with_client(args, use)


def _model_info(args: argparse.Namespace) -> int:
    async def use(client: TorchServeClient) -> int:
        info = await client.get_model_info(args.name, args.model_version)
        data = dataclasses.asdict(info)
        if args.json:
            print(json.dumps(data))
        else:
            width = max(len(k) for k in data)
            for key, value in data.items():
                print(f"{key:<{width}}  {json.dumps(value) if isinstance(value, dict | list) else value}")
        return 0

    return _with_client(args, use)


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

    classify = commands.add_parser(
        "classify",
        help="classify a text column of a Parquet file, folder or glob into a Parquet dataset",
        description="Stream INPUT in parts, classify, write OUTPUT; rerun the same command to resume.",
    )
    classify.add_argument("input", metavar="INPUT", help="a Parquet file, a folder of them, or a glob")
    classify.add_argument("output", metavar="OUTPUT", type=Path, help="the output folder")
    classify.add_argument("--column", default="text", help="the text column (default: %(default)s)")
    classify.add_argument("--model", help="model name (default: TORCHSERVE_MODEL or demo)")
    classify.add_argument("--model-version", help="model version (default: the model's default)")
    classify.add_argument(
        "--id-column", help="a unique id column kept in the output (default: row numbers in _row)"
    )
    classify.add_argument(
        "--keep-columns", help="comma-separated input columns kept in the output (default: none)"
    )
    classify.add_argument(
        "--rows-per-part",
        type=int,
        default=DEFAULT_ROWS_PER_PART,
        help="rows read, classified and written at a time; bounds memory (default: %(default)s)",
    )
    classify.add_argument(
        "--overwrite", action="store_true", help="replace an existing OUTPUT (default: resume it)"
    )
    cluster = classify.add_argument_group("Dask (needs the dask extra)")
    cluster.add_argument(
        "--engine",
        choices=["pandas", "dask"],
        default="pandas",
        help="pandas: this process classifies; dask: Dask workers classify and write the parts "
        "(default: %(default)s)",
    )
    cluster.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler, tcp://host:8786")
    cluster.add_argument(
        "--workers",
        type=int,
        help=f"worker processes of a local Dask cluster (default: {DEFAULT_DASK_WORKERS}); "
        "--concurrency stays the total for all of them",
    )
    _add_job_options(classify)
    _add_client_options(classify)
    classify.set_defaults(func=_classify)

    retry = commands.add_parser("retry-failed", help="send the failed rows of a finished OUTPUT again")
    retry.add_argument("output", metavar="OUTPUT", type=Path, help="the output folder of a classify job")
    _add_job_options(retry)
    _add_client_options(retry)
    retry.set_defaults(func=_retry_failed)

    for name, func, text in (
        ("health", _health, "check GET /ping (exit 1 when unhealthy)"),
        ("models", _models, "list the registered models"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--json", action="store_true", help="print JSON (default: text)")
        _add_client_options(sub)
        sub.set_defaults(func=func)
    info = commands.add_parser("model-info", help="show a model's batching, workers, queue and description")
    info.add_argument("name", help="model name")
    info.add_argument("--model-version", help="model version (default: the model's default)")
    info.add_argument("--json", action="store_true", help="print JSON (default: a table)")
    _add_client_options(info)
    info.set_defaults(func=_model_info)

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
    except JobOutputError as exc:
        print(f"tsbatch: error: {exc}", file=sys.stderr)
        return EXIT_CANNOT_WRITE
    except (TorchServeError, ConfigError) as exc:
        print(f"tsbatch: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
