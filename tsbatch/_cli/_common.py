"""What the commands share: exit codes, the help format, server options, running a job."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import get_args

from tsbatch import _loop
from tsbatch._config import ClientConfig
from tsbatch._errors import JobOutage, JobOutputError, JobStopped
from tsbatch._job import DEFAULT_STOP_TIMEOUT, Job, JobSummary
from tsbatch._mapping import ReplyShape
from tsbatch._options import ClassifyOptions
from tsbatch._policies import TLSConfig
from tsbatch._progress import progress_bar, progress_enabled
from tsbatch._protocols import PROTOCOLS

#: Exit codes (sysexits.h names where one fits).
EXIT_OK = 0
EXIT_ROWS_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_CANNOT_WRITE = 74  # EX_IOERR
EXIT_OUTAGE = 75  # EX_TEMPFAIL: try again later


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or (action.help and "default" in action.help):
            return action.help
        return super()._get_help_string(action)


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """Where the server is and how to trust it; unset options come from ``TORCHSERVE_*`` variables."""
    group = parser.add_argument_group("server (defaults from TORCHSERVE_* environment variables)")
    group.add_argument("--url", help="inference API URL (default: TORCHSERVE_URL or http://127.0.0.1:8080)")
    group.add_argument(
        "--protocol",
        choices=sorted(PROTOCOLS),
        help="the server's protocol: torchserve, v2 (the Open Inference Protocol: KServe, Triton, "
        "MLServer) or v1 (KServe v1) (default: TSBATCH_PROTOCOL or torchserve)",
    )
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
        "--no-verify-tls",
        "--insecure",
        dest="no_verify_tls",
        action="store_true",
        help="do not verify https certificates (default: verify)",
    )


def client_config(args: argparse.Namespace) -> ClientConfig:
    """The environment's client settings with the command's options on top."""
    config = ClientConfig.from_env()
    if getattr(args, "max_outage", None) is not None:
        config = dataclasses.replace(
            config, outage=dataclasses.replace(config.outage, max_outage=args.max_outage)
        )
    auth = config.auth
    if args.key_file is not None:
        auth = dataclasses.replace(auth, key_file=args.key_file)
    tls = config.tls
    if args.ca_bundle is not None or args.no_verify_tls:
        tls = TLSConfig(ca_bundle=args.ca_bundle, verify=not args.no_verify_tls)
    return dataclasses.replace(
        config,
        url=args.url or config.url,
        management_url=args.management_url or config.management_url,
        model=getattr(args, "model", None) or config.model,
        auth=auth,
        tls=tls,
        protocol=args.protocol or config.protocol,
    )


def add_json_option(parser: argparse._ActionsContainer, instead: str = "text") -> None:
    """``--json``: print the command's report as one JSON object on stdout."""
    parser.add_argument("--json", action="store_true", help=f"print JSON (default: {instead})")


def add_job_options(parser: argparse.ArgumentParser, *, dask: bool, labels: bool = True) -> None:
    """How a job sends its rows, stops, and reports (``dask``: the command takes ``--engine dask``;
    ``labels``: it reads predictions, so ``--reply`` and ``--labels`` apply)."""
    sending = parser.add_argument_group("sending")
    sending.add_argument("--mode", choices=["auto", "rows", "list"], default="auto", help="request mode")
    sending.add_argument("--batch-size", type=int, help="rows per batch (default: MAX_BATCH_SIZE or 64)")
    if labels:
        sending.add_argument(
            "--reply",
            choices=list(get_args(ReplyShape)),
            default="auto",
            help="the shape of the model's output per text",
        )
        sending.add_argument(
            "--labels",
            help="comma-separated class names of a probability vector, in order (default: the model's own)",
        )
    sending.add_argument(
        "--concurrency",
        type=int,
        help="pin the requests in flight to this number (default: adapt to the server, starting from "
        "an estimate made from the model's info)",
    )
    sending.add_argument(
        "--max-concurrency",
        type=int,
        help="never more requests in flight than this (default: MAX_CONCURRENCY or the connection pool, 100)",
    )
    sending.add_argument(
        "--max-outage",
        type=float,
        metavar="SECONDS",
        help="wait this long for an unavailable server before stopping with exit 75; 0 fails the rows "
        "at once instead (default: TSBATCH_MAX_OUTAGE_S or 600)",
    )
    running = parser.add_argument_group("running")
    running.add_argument(
        "--stop-timeout",
        type=float,
        default=DEFAULT_STOP_TIMEOUT,
        help="seconds in-flight requests get after SIGINT/SIGTERM",
    )
    running.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default: on in terminals)"
    )
    per_worker = (
        "; with --engine dask each worker process serves its client metrics on the first free port above it"
        if dask
        else ""
    )
    running.add_argument(
        "--metrics-port",
        type=int,
        help=f"serve /metrics on METRICS_ADDRESS:PORT while the job runs{per_worker} (default: off)",
    )
    running.add_argument(
        "--metrics-address",
        default="127.0.0.1",
        help="address /metrics listens on; 0.0.0.0 lets Prometheus reach it in a pod",
    )
    running.add_argument(
        "--pushgateway", metavar="URL", help="push the job's final metrics to this Pushgateway (default: off)"
    )
    running.add_argument("--job-name", default="tsbatch", help="the Pushgateway job label")
    add_json_option(running, "a summary in words")


def classify_options(args: argparse.Namespace) -> ClassifyOptions:
    """The classify options a job command was given."""
    return ClassifyOptions(
        model=getattr(args, "model", None),
        version=getattr(args, "model_version", None),
        mode=args.mode,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        max_concurrency=args.max_concurrency,
        reply=getattr(args, "reply", "auto"),
        labels=[label.strip() for label in args.labels.split(",")] if getattr(args, "labels", None) else None,
    )


def _run_stoppable(job: Job, work: Callable[[], Awaitable[JobSummary]], timeout: float) -> JobSummary:
    """Run ``work`` with SIGINT/SIGTERM asking the job to stop, and a hard stop after ``timeout``."""

    async def main() -> JobSummary:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_signal(signum: int) -> None:
            if job.received_signal is not None:
                return
            print(
                f"\n{signal.Signals(signum).name}: finishing requests in flight "
                f"(at most {timeout:g}s), then stopping",
                file=sys.stderr,
            )
            job.request_stop(signum)
            loop.call_later(timeout, task.cancel)

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        return await work()

    return _loop.run(main())


def print_summary(summary: JobSummary, *, as_json: bool = False) -> None:
    """The job's summary: in words, or as the JSON of ``_summary.json``."""
    if as_json:
        print(json.dumps(dataclasses.asdict(summary)))
        return
    kinds = ", ".join(f"{kind}: {rows}" for kind, rows in summary.failed_by_kind.items())
    print(
        f"{summary.rows} rows in {summary.parts} parts: {summary.ok} ok, {summary.failed} failed"
        + (f" ({kinds})" if kinds else "")
        + f", {summary.skipped} skipped; {summary.rows_this_run} rows this run in {summary.seconds:.1f}s "
        f"({summary.rows_per_second:.0f} rows/s)"
    )
    latency = ", ".join(
        f"p{p} {'-' if ms is None else f'{ms:.0f} ms'}"
        for p, ms in (
            (50, summary.latency_p50_ms),
            (95, summary.latency_p95_ms),
            (99, summary.latency_p99_ms),
        )
    )
    print(
        f"{summary.requests} requests in {summary.batches} batches: batch latency {latency}; "
        f"{summary.retries} retries; circuit breaker "
        f"opened {summary.breaker_openings} times, paused {summary.paused_s:.1f}s this run"
    )
    print(
        f"output: {summary.output} "
        "(predictions in part-*.parquet; _batches.parquet, _failed.parquet, _summary.json; "
        f"tsbatch report {summary.output} for more)"
    )


def run_job(job: Job, work: Callable[[], Awaitable[JobSummary]], args: argparse.Namespace) -> int:
    """Run a job command: metrics served and pushed, progress shown, stops and failures as exit codes."""
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
    if args.pushgateway:
        pushadd_to_gateway(args.pushgateway, job=job.settings.job_name, registry=job.metrics.registry)
        print(f"metrics pushed to {args.pushgateway} (job={job.settings.job_name})", file=sys.stderr)
    print_summary(summary, as_json=args.json)
    return EXIT_ROWS_FAILED if summary.failed else EXIT_OK
