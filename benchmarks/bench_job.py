"""A Parquet job against the accessor on the same rows, and pipelined parts against parts one by one.

Contenders, each in its own process, on the same input (the sample data
repeated, each text made unique, ids unique):

* ``accessor``: ``pd.read_parquet``, ``df.ts.classify``, ``to_parquet``;
* ``job-serial``: the job with parts one after another, everything on the
  event loop (how jobs ran before parts were pipelined; kept here as the
  baseline);
* ``job``: ``tsbatch classify`` as it is (pipelined parts).

Printed: rows/s (the accessor's also for its classify call alone, without
reading and writing Parquet), peak RSS, and the event loop's lag (how late a 5 ms timer
fires: p50, p99, max) while the job runs.  Every row's answer is checked: with
``--target null`` (nginx, list mode, a fixed reply of 64) each row is ``ok``
with the fixed label; with ``--target demo`` (the demo model on TorchServe)
the job's labels equal the accessor's.

    python benchmarks/bench_job.py --target null --rows 200000 --rows-per-part 20032
    python benchmarks/bench_job.py --target demo --rows 60000 --rows-per-part 6016
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_classify import NULL_LIST_SIZE, _peak_rss_mb, run_child, start_demo, start_null, texts

CONTENDERS = ["accessor", "job-serial", "job"]


def write_input(path: Path, rows: int) -> None:
    items = texts(rows)
    pq.write_table(pa.table({"id": [f"row-{i}" for i in range(rows)], "text": items}), path)


def options(target: dict[str, Any]) -> dict[str, Any]:
    """The classify options every contender uses on ``target``."""
    if target["model"] == "null":  # nginx: no model info, a list reply of fixed length
        return {"model": "nulllist", "mode": "list", "batch_size": target["list_batch"]}
    return {"model": target["model"]}


def config(target: dict[str, Any]) -> Any:
    import tsbatch

    return tsbatch.ClientConfig(
        url=target["base"],
        management_url=target["management"],
        auth=tsbatch.Auth(
            inference_token=target.get("token"), management_token=target.get("management_token")
        ),
    )


class SerialEngine:
    """Parts one after another, read, classified and written on the event loop (the baseline)."""

    async def parts(
        self, job: Any, client: Any, files: list[Path], manifest: Any
    ) -> AsyncGenerator[Any, None]:
        from tsbatch._engine import classify_values
        from tsbatch._job._parts import classified_part, part_name, record_batches

        offset = 0
        for index, batch in enumerate(record_batches(files, job.settings)):
            if part_name(index) not in manifest.parts:
                frame = batch.to_pandas()
                result = await classify_values(
                    client,
                    frame[job.settings.column].tolist(),
                    job.settings.classify,
                    job.progress,
                    job.stop,
                    engine=job.engine_config,
                    checked=job.checked,
                )
                yield classified_part(job.settings, index, offset, frame, result)
            offset += batch.num_rows


async def lag_monitor(lags: list[float], period: float = 0.005) -> None:
    """How late a ``period`` timer fires, again and again, until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(period)
        lags.append(loop.time() - started - period)


def run_job(
    name: str, target: dict[str, Any], source: Path, output: Path, rows_per_part: int
) -> dict[str, Any]:
    from tsbatch import _loop
    from tsbatch._job import Job, JobSettings
    from tsbatch._options import ClassifyOptions

    settings = JobSettings(
        input=str(source),
        output=output,
        id_column="id",
        classify=ClassifyOptions(progress=False, **options(target)),
        rows_per_part=rows_per_part,
    )
    job = Job(settings, config(target), engine=SerialEngine() if name == "job-serial" else None)
    lags: list[float] = []

    async def main() -> Any:
        monitor = asyncio.ensure_future(lag_monitor(lags))
        try:
            return await job.run()
        finally:
            monitor.cancel()

    started = time.perf_counter()
    summary = _loop.run(main())
    seconds = time.perf_counter() - started
    lags.sort()
    return {
        "seconds": seconds,
        "rows": summary.rows,
        "failed": summary.failed,
        "lag_ms": [1000 * lags[len(lags) // 2], 1000 * lags[int(len(lags) * 0.99)], 1000 * lags[-1]],
    }


def run_accessor(target: dict[str, Any], source: Path, output: Path) -> dict[str, Any]:
    import pandas as pd

    import tsbatch  # noqa: F401  (the accessor)

    started = time.perf_counter()
    frame = pd.read_parquet(source)
    classifying = time.perf_counter()
    result = frame.ts.classify("text", config=config(target), progress=False, **options(target))
    classified = time.perf_counter()
    output.mkdir()
    result.to_parquet(output / "result.parquet")
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "classify_seconds": classified - classifying,
        "rows": len(result),
        "failed": int((result["ts_status"] != "ok").sum()),
    }


def child(name: str, workdir: Path, rows_per_part: int) -> None:
    import pandas  # noqa: F401  (imports are not timed)

    import tsbatch  # noqa: F401

    target = json.loads((workdir / "target.json").read_text())
    source, output = workdir / "input.parquet", workdir / name
    if name == "accessor":
        result = run_accessor(target, source, output)
    else:
        result = run_job(name, target, source, output, rows_per_part)
    print(json.dumps({**result, "peak_mb": _peak_rss_mb()}))


def labels(output: Path) -> dict[str, str]:
    table = pq.read_table(output, columns=["id", "pred_label", "ts_status"]).to_pandas()
    ids = table["id"].tolist()
    if len(ids) != len(set(ids)):
        raise SystemExit(f"{output.name}: some ids appear twice")
    if (table["ts_status"] != "ok").any():
        raise SystemExit(f"{output.name}: {int((table['ts_status'] != 'ok').sum())} rows not ok")
    return dict(zip(ids, table["pred_label"].tolist(), strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=["null", "demo"], default="null")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rows-per-part", type=int, default=20_032)
    parser.add_argument("--only", nargs="*", choices=CONTENDERS, default=CONTENDERS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, Path(args.workdir), args.rows_per_part)
        return
    if args.target == "null" and (args.rows % NULL_LIST_SIZE or args.rows_per_part % NULL_LIST_SIZE):
        parser.error(f"--rows and --rows-per-part must be multiples of {NULL_LIST_SIZE} (the null list)")

    with tempfile.TemporaryDirectory(prefix="tsbatch-bench-job-") as tmp:
        workdir = Path(tmp)
        write_input(workdir / "input.parquet", args.rows)
        print(f"target: {args.target}; {args.rows} rows, parts of {args.rows_per_part}; starting it ...")
        target, stop = start_demo(workdir) if args.target == "demo" else start_null(workdir)
        results: dict[str, dict[str, Any]] = {}
        answers: dict[str, dict[str, str]] = {}
        try:
            (workdir / "target.json").write_text(json.dumps(target))
            for name in args.only:
                command = [sys.executable, __file__, "--child", name, "--workdir", str(workdir)]
                r = results[name] = run_child(name, [*command, "--rows-per-part", str(args.rows_per_part)])
                answers[name] = labels(workdir / name)
                if "lag_ms" in r:
                    extra = "  loop lag p50 {:.1f} / p99 {:.1f} / max {:.1f} ms".format(*r["lag_ms"])
                else:
                    extra = f"  (classify alone: {r['rows'] / r['classify_seconds']:.0f} rows/s)"
                print(
                    f"  {name:<10} {r['rows']:>7} rows  {r['rows'] / r['seconds']:>8.0f} rows/s  "
                    f"{r['peak_mb']:>5.0f} MB peak{extra}"
                )
        finally:
            stop()
    if len(answers) != len(args.only) or any(len(a) != args.rows for a in answers.values()):
        raise SystemExit("a contender did not answer every row")
    first = next(iter(answers.values()))
    for name, got in answers.items():
        if args.target == "null" and set(got.values()) != {"n"}:
            raise SystemExit(f"{name}: a row got another label than the null server's")
        if got != first:
            raise SystemExit(f"{name}: labels differ from {next(iter(answers))}'s")
    print("every row answered once, labels agree")
    rate = {name: r["rows"] / r["seconds"] for name, r in results.items()}
    print("ratios:")
    for a, b in [("job", "accessor"), ("job", "job-serial"), ("job-serial", "accessor")]:
        if a in rate and b in rate:
            print(f"  {a} / {b}: {rate[a] / rate[b]:.2f}x")
    if "job" in rate and "accessor" in rate:
        alone = results["accessor"]["rows"] / results["accessor"]["classify_seconds"]
        print(f"  job / accessor's classify call alone: {rate['job'] / alone:.2f}x")


if __name__ == "__main__":
    main()
