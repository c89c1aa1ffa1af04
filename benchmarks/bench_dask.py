"""The Parquet job on pandas against Dask with 1 and 2 worker processes, side by side in one run.

Every contender classifies the same Parquet file (row groups of
``--rows-per-part`` rows, so Dask gets one partition per row group) into its
own OUTPUT, in a process of its own; Dask contenders start a LocalCluster
first (not timed, reported apart).  Targets are those of
``bench_classify.py``: ``demo`` (the demo model on a local TorchServe) and
``null`` (nginx answering a fixed list, the client's own ceiling).  Printed:
rows/s of the job, peak RSS of the driver and of each worker, and ratios.

    python benchmarks/bench_dask.py --target demo --rows 15360
    python benchmarks/bench_dask.py --target null --rows 262144
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from bench_classify import NULL_LIST_SIZE, _peak_rss_mb, run_child, start_demo, start_null, texts

CONTENDERS = {"pandas": 0, "dask-1": 1, "dask-2": 2}


def child(name: str, target: dict[str, Any], data: Path, output: Path, rows_per_part: int) -> dict[str, Any]:
    from distributed import Client, LocalCluster

    import tsbatch
    from tsbatch._job import Job, JobSettings
    from tsbatch._job._dask import ClusterSettings, DaskEngine

    config = tsbatch.ClientConfig(
        url=target["base"],
        management_url=target["management"],
        model=target["list_model"],
        auth=tsbatch.Auth(
            inference_token=target.get("token"), management_token=target.get("management_token")
        ),
    )
    settings = JobSettings(
        input=str(data),
        output=output,
        id_column="id",
        classify=tsbatch.ClassifyOptions(
            mode="list", batch_size=target["list_batch"], concurrency=target.get("concurrency_list")
        ),
        rows_per_part=rows_per_part,
        engine="pandas" if name == "pandas" else "dask",
    )
    workers = CONTENDERS[name]
    if not workers:
        started = time.perf_counter()
        summary = asyncio.run(Job(settings, config).run())
        return {
            "seconds": time.perf_counter() - started,
            "rows": summary.rows,
            "failed": summary.failed,
            "driver_mb": _peak_rss_mb(),
            "workers_mb": [],
            "cluster_seconds": 0.0,
        }
    started = time.perf_counter()
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address="127.0.0.1:0") as cluster,
        Client(cluster) as client,
    ):
        cluster_seconds = time.perf_counter() - started
        job = Job(settings, config, engine=DaskEngine(ClusterSettings(scheduler=cluster.scheduler_address)))
        started = time.perf_counter()
        summary = asyncio.run(job.run())
        seconds = time.perf_counter() - started
        workers_mb = sorted(client.run(_peak_rss_mb).values())
    return {
        "seconds": seconds,
        "rows": summary.rows,
        "failed": summary.failed,
        "driver_mb": _peak_rss_mb(),
        "workers_mb": workers_mb,
        "cluster_seconds": cluster_seconds,
    }


def write_input(path: Path, rows: int, rows_per_part: int) -> None:
    items = texts(rows)
    table = pa.table({"id": [f"r{i}" for i in range(rows)], "text": items})
    pq.write_table(table, path, row_group_size=rows_per_part)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=["demo", "null"], default="demo")
    parser.add_argument("--rows", type=int, default=15360, help="rows of the input (default: %(default)s)")
    parser.add_argument("--rows-per-part", type=int, default=1024, help="rows per part and row group")
    parser.add_argument("--only", nargs="*", choices=list(CONTENDERS), default=list(CONTENDERS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rows % NULL_LIST_SIZE or args.rows_per_part % NULL_LIST_SIZE:
        parser.error(f"--rows and --rows-per-part must be multiples of {NULL_LIST_SIZE} (the null list)")
    if args.child:
        workdir = Path(args.workdir)
        target = json.loads((workdir / "target.json").read_text())
        result = child(
            args.child, target, workdir / "input.parquet", workdir / args.child, args.rows_per_part
        )
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory(prefix="tsbatch-bench-dask-") as tmp:
        workdir = Path(tmp)
        write_input(workdir / "input.parquet", args.rows, args.rows_per_part)
        print(f"target: {args.target}; {args.rows} rows in parts of {args.rows_per_part}; starting it ...")
        target, stop = (start_demo if args.target == "demo" else start_null)(workdir)
        if args.target == "demo":
            target["list_batch"] = 64
        try:
            (workdir / "target.json").write_text(json.dumps(target))
            results = {}
            for name in args.only:
                command = [
                    sys.executable,
                    __file__,
                    "--child",
                    name,
                    "--workdir",
                    str(workdir),
                    "--rows",
                    str(args.rows),
                    "--rows-per-part",
                    str(args.rows_per_part),
                ]
                r = results[name] = run_child(name, command)
                if r["failed"]:
                    raise SystemExit(f"{name}: {r['failed']} rows failed")
                workers = ", ".join(f"{mb:.0f}" for mb in r["workers_mb"]) or "-"
                print(
                    f"  {name:<7} {r['rows']:>7} rows  {r['rows'] / r['seconds']:>8.0f} rows/s  "
                    f"driver {r['driver_mb']:>4.0f} MB peak  workers {workers} MB peak  "
                    f"(cluster start {r['cluster_seconds']:.1f}s, not timed)"
                )
        finally:
            stop()
    rate = {name: r["rows"] / r["seconds"] for name, r in results.items()}
    print("ratios:")
    for a, b in [("dask-1", "pandas"), ("dask-2", "pandas"), ("dask-2", "dask-1")]:
        if a in rate and b in rate:
            print(f"  {a} / {b}: {rate[a] / rate[b]:.2f}x")


if __name__ == "__main__":
    main()
