"""Fixed concurrency against the adaptive limit, on a TorchServe with a small job queue.

Starts the demo model on a local TorchServe with a job queue of 16 and batch
size 8 (by default), then classifies the same rows in rows mode with
``concurrency`` pinned to 8, 32 and 128 and with the adaptive limit, each in
its own process, one after the other, ``--repeats`` times in alternating
order.  Printed for each run: rows/s, the 503s the server sent, error rows,
breaker openings, and the adaptive limit's path over time; then each
contender's best rows/s and the adaptive limit's ratio to the best fixed one.

    python benchmarks/bench_overload.py --rows 6000 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data_samples" / "debian_descriptions.parquet"
CONTENDERS = ["fixed-8", "fixed-32", "fixed-128", "adaptive"]


def texts(rows: int) -> list[str]:
    """``rows`` distinct texts from the sample data (suffixed when repeated, so none dedup away)."""
    import pyarrow.parquet as pq

    pool = pq.read_table(DATA, columns=["text"]).column("text").to_pylist()
    return [pool[i % len(pool)] + ("" if i < len(pool) else f" #{i}") for i in range(rows)]


def child(name: str, target: dict[str, Any], rows: int) -> dict[str, Any]:
    """Classify ``rows`` texts as contender ``name``; what happened, as JSON-able data."""
    import pandas as pd
    from prometheus_client import CollectorRegistry

    import tsbatch

    config = tsbatch.ClientConfig(url=target["url"], management_url=target["management"])
    options: dict[str, Any] = {"mode": "rows", "progress": False}
    if name.startswith("fixed-"):
        options["concurrency"] = int(name.split("-")[1])
    frame = pd.DataFrame({"text": texts(rows)})
    registry = CollectorRegistry()
    started = time.perf_counter()
    result = frame.ts.classify("text", config=config, registry=registry, **options)
    seconds = time.perf_counter() - started
    batches = tsbatch.batch_metrics(result).sort_values("ended_at")
    begin = batches["started_at"].min()
    path = [
        (round((row.ended_at - begin).total_seconds(), 1), int(row.concurrency_limit))
        for row in batches.iloc[:: max(1, len(batches) // 12)].itertuples()
    ]

    def value(metric: str, **labels: str) -> int:
        return int(registry.get_sample_value(metric, labels) or 0)

    return {
        "rows": rows,
        "seconds": seconds,
        "errors": int((result["ts_status"] == "error").sum()),
        "requests": sum(
            value("torchserve_requests_total", method="predict", status=s) for s in ("200", "503", "error")
        ),
        "overloaded": value("torchserve_requests_total", method="predict", status="503"),
        "trips": value("torchserve_circuit_breaker_trips_total"),
        "path": path,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6000, help="rows per run (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per contender (default: %(default)s)")
    parser.add_argument("--job-queue-size", type=int, default=16, help="TorchServe's queue (default: 16)")
    parser.add_argument("--batch-size", type=int, default=8, help="server-side batch (default: 8)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, json.loads(args.target), args.rows)))
        return

    from tsbatch._serve import local

    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_classify import _free_ports, run_child

    with tempfile.TemporaryDirectory(prefix="tsbatch-overload-") as tmp:
        inference, management, metrics = _free_ports(3)
        settings = local.ServeSettings(
            run_dir=Path(tmp) / "torchserve",
            inference_port=inference,
            management_port=management,
            metrics_port=metrics,
            batch_size=args.batch_size,
            max_batch_delay_ms=5,
            job_queue_size=args.job_queue_size,
            token_auth=False,
        )
        print(f"TorchServe: demo model, batch size {args.batch_size}, job queue {args.job_queue_size} ...")
        server = local.start(settings, say=lambda line: print(f"  {line}"))
        target = json.dumps({"url": server.inference_url, "management": server.management_url})
        best: dict[str, float] = {}
        try:
            child([*CONTENDERS][-1], json.loads(target), 500)  # warm the model up
            for repeat in range(args.repeats):
                order = CONTENDERS if repeat % 2 == 0 else CONTENDERS[::-1]
                for name in order:
                    command = [sys.executable, __file__, "--child", name, "--target", target]
                    r = run_child(name, [*command, "--rows", str(args.rows)])
                    rate = r["rows"] / r["seconds"]
                    best[name] = max(best.get(name, 0.0), rate)
                    print(
                        f"  {name:<10} {rate:>7.0f} rows/s  {r['overloaded']:>6} 503s of {r['requests']:>6} "
                        f"requests  {r['errors']:>4} error rows  {r['trips']} breaker openings"
                    )
                    if name == "adaptive":
                        print(f"             limit over time (s, limit): {r['path']}")
        finally:
            local.stop(settings.run_dir)
    best_fixed = max((rate, name) for name, rate in best.items() if name != "adaptive")
    print("best rows/s: " + ", ".join(f"{name} {rate:.0f}" for name, rate in best.items()))
    print(f"adaptive / best fixed ({best_fixed[1]}): {best['adaptive'] / best_fixed[0]:.2f}x")


if __name__ == "__main__":
    main()
