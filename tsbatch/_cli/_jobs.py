"""``tsbatch classify`` and ``tsbatch retry-failed``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tsbatch._cli._common import (
    HelpFormatter,
    add_client_options,
    add_job_options,
    classify_options,
    client_config,
    run_job,
)
from tsbatch._errors import ConfigError
from tsbatch._job import (
    DEFAULT_DASK_WORKERS,
    DEFAULT_ROWS_PER_PART,
    Job,
    JobSettings,
    retry_failed,
    settings_from_output,
)


def _classify(args: argparse.Namespace) -> int:
    settings = JobSettings(
        input=args.input,
        output=args.output,
        column=args.column,
        id_column=args.id_column,
        keep_columns=tuple(c for c in (args.keep_columns or "").split(",") if c),
        classify=classify_options(args),
        rows_per_part=args.rows_per_part,
        overwrite=args.overwrite,
        job_name=args.job_name,
        engine=args.engine,
        task=args.task,
    )
    job = _job(settings, args)
    job.prepare()  # bad input is refused before anything else happens
    return run_job(job, job.run, args)


def _job(settings: JobSettings, args: argparse.Namespace) -> Job:
    if settings.engine == "pandas":
        if args.scheduler or args.workers is not None:
            raise ConfigError("--scheduler and --workers need --engine dask")
        return Job(settings, client_config(args))
    if args.scheduler and args.workers is not None:
        raise ConfigError("pass --scheduler (an existing cluster) or --workers (a local one), not both")
    try:
        from tsbatch._job._dask import ClusterSettings, DaskEngine
    except ImportError as exc:
        raise ConfigError(f"--engine dask needs Dask: pip install 'tsbatch[dask]' ({exc})") from None
    cluster = ClusterSettings(
        scheduler=args.scheduler,
        workers=DEFAULT_DASK_WORKERS if args.workers is None else args.workers,
        metrics_port=args.metrics_port + 1 if args.metrics_port else None,
        metrics_address=args.metrics_address,
    )
    return Job(settings, client_config(args), engine=DaskEngine(cluster))


def _retry_failed(args: argparse.Namespace) -> int:
    settings = settings_from_output(args.output, classify=classify_options(args), job_name=args.job_name)
    job = Job(settings, client_config(args))
    return run_job(job, lambda: retry_failed(job), args)


_JOBS = {
    "classify": (
        "classify a text column of a Parquet file, folder or glob into a Parquet dataset",
        "Stream INPUT in parts, classify, write OUTPUT; rerun the same command to resume.",
    ),
    "predict": (
        "write each text's raw model output (a number, a vector, an object) into a Parquet dataset",
        "For models that are not classifiers: stream INPUT in parts, write each row's output in "
        "pred_output; rerun the same command to resume.",
    ),
}


def add_job_commands(commands: Any) -> None:
    """``classify``, ``predict`` and ``retry-failed``."""
    for task, (summary, description) in _JOBS.items():
        _add_job_command(commands, task, summary, description)
    retry = commands.add_parser(
        "retry-failed", formatter_class=HelpFormatter, help="send the failed rows of a finished OUTPUT again"
    )
    retry.add_argument("output", metavar="OUTPUT", type=Path, help="the output folder of a job")
    add_job_options(retry, dask=False)
    add_client_options(retry)
    retry.set_defaults(func=_retry_failed)


def _add_job_command(commands: Any, task: str, summary: str, description: str) -> None:
    classify = commands.add_parser(task, formatter_class=HelpFormatter, help=summary, description=description)
    classify.add_argument("input", metavar="INPUT", help="a Parquet file, a folder of them, or a glob")
    classify.add_argument("output", metavar="OUTPUT", type=Path, help="the output folder")
    classify.add_argument("--column", default="text", help="the text column")
    classify.add_argument("--model", help="model name (default: TORCHSERVE_MODEL or demo)")
    classify.add_argument(
        "--model-version",
        help="model version (default: the model's default; --version would read as tsbatch's)",
    )
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
        help="rows read, classified and written at a time; bounds memory",
    )
    classify.add_argument(
        "--overwrite", action="store_true", help="replace an existing OUTPUT (default: resume it)"
    )
    cluster = classify.add_argument_group("Dask (needs the dask extra)")
    cluster.add_argument(
        "--engine",
        choices=["pandas", "dask"],
        default="pandas",
        help="pandas: this process classifies; dask: Dask workers classify and write the parts",
    )
    cluster.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler, tcp://host:8786")
    cluster.add_argument(
        "--workers",
        type=int,
        help=f"worker processes of a local Dask cluster (default: {DEFAULT_DASK_WORKERS}); "
        "--concurrency stays the total for all of them",
    )
    add_job_options(classify, dask=True, labels=task == "classify")
    add_client_options(classify)
    classify.set_defaults(func=_classify, task=task)
