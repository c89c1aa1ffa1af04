"""tsbatch against the other clients of the Open Inference Protocol, on one KServe v2 server.

Starts the demo model on KServe's ModelServer (``tsbatch/_demo/kserve_server.py``,
on the Python of ``.venv-kserve``), then sends the same texts, in the same
batches, with the same number of requests in flight, through:

- ``tsbatch``: ``df.ts.classify(..., protocol="v2", mode="list")``, with its
  breaker, retries, metrics and ordering;
- ``aiohttp``: a bare loop of JSON POSTs over one session, a semaphore and nothing else;
- ``tritonclient``: ``tritonclient.http.aio`` in JSON mode;
- ``kserve``: KServe's own ``InferenceRESTClient``.

Each contender runs in its own process (tritonclient and kserve on
``.venv-kserve``'s Python: ``.venv-kserve/bin/pip install 'tritonclient[http]'``),
``--repeats`` times in alternating order.  Printed: rows/s and the client's
CPU seconds per 10,000 rows (of the sending, not of starting Python and
importing), each contender's best, and tsbatch's ratios to the fastest peer.

    python benchmarks/bench_peers.py --rows 20000 --batch-size 64 --concurrency 4 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data_samples" / "debian_descriptions.parquet"
KSERVE_PYTHON = REPO / ".venv-kserve" / "bin" / "python"
PEERS = {"tsbatch": sys.executable, "aiohttp": sys.executable, "tritonclient": str(KSERVE_PYTHON)}
PEERS["kserve"] = str(KSERVE_PYTHON)


def texts(rows: int) -> list[str]:
    """``rows`` distinct texts from the sample data (suffixed when repeated, so none dedup away)."""
    import pyarrow.parquet as pq

    pool = pq.read_table(DATA, columns=["text"]).column("text").to_pylist()
    return [pool[i % len(pool)] + ("" if i < len(pool) else f" #{i}") for i in range(rows)]


def batches(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def run_aiohttp(url: str, work: list[list[str]], concurrency: int) -> int:
    import asyncio

    import aiohttp

    gate = asyncio.Semaphore(concurrency)
    labels = 0

    async def one(session: aiohttp.ClientSession, batch: list[str]) -> None:
        nonlocal labels
        body = {"inputs": [{"name": "text", "shape": [len(batch)], "datatype": "BYTES", "data": batch}]}
        async with gate, session.post(f"{url}/v2/models/demo/infer", json=body) as reply:
            reply.raise_for_status()
            labels += len((await reply.json())["outputs"][0]["data"])

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session, b) for b in work))
    return labels


async def run_tritonclient(url: str, work: list[list[str]], concurrency: int) -> int:
    import asyncio

    import numpy as np
    import tritonclient.http.aio as httpclient

    gate = asyncio.Semaphore(concurrency)
    labels = 0
    client = httpclient.InferenceServerClient(url=url.split("://", 1)[1], conn_limit=concurrency)

    async def one(batch: list[str]) -> None:
        nonlocal labels
        given = httpclient.InferInput("text", [len(batch)], "BYTES")
        given.set_data_from_numpy(np.array(batch, dtype=object), binary_data=False)
        wanted = [httpclient.InferRequestedOutput(n, binary_data=False) for n in ("label", "score")]
        async with gate:
            # KServe reads a body without this header as the binary extension and refuses it.
            result = await client.infer(
                "demo", [given], outputs=wanted, headers={"Content-Type": "application/json"}
            )
        labels += len(result.as_numpy("label"))

    try:
        await asyncio.gather(*(one(b) for b in work))
    finally:
        await client.close()
    return labels


async def run_kserve(url: str, work: list[list[str]], concurrency: int) -> int:
    import asyncio

    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    gate = asyncio.Semaphore(concurrency)
    labels = 0
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=120))

    async def one(batch: list[str]) -> None:
        nonlocal labels
        request = InferRequest(
            model_name="demo", infer_inputs=[InferInput("text", [len(batch)], "BYTES", data=batch)]
        )
        async with gate:
            result = await client.infer(url, request, model_name="demo")
        labels += len(result.get_output_by_name("label").data)

    try:
        await asyncio.gather(*(one(b) for b in work))
    finally:
        await client.close()
    return labels


def run_tsbatch(url: str, rows: list[str], batch_size: int, concurrency: int) -> int:
    import pandas as pd

    import tsbatch

    config = tsbatch.ClientConfig(url=url, protocol="v2")
    result = pd.DataFrame({"text": rows}).ts.classify(
        "text", config=config, mode="list", batch_size=batch_size, concurrency=concurrency, progress=False
    )
    return int((result["ts_status"] == "ok").sum())


def child(name: str, url: str, source: Path, batch_size: int, concurrency: int) -> dict[str, Any]:
    import asyncio

    items = json.loads(source.read_text())
    started, cpu = time.perf_counter(), time.process_time()
    if name == "tsbatch":
        done = run_tsbatch(url, items, batch_size, concurrency)
    else:
        runner = {"aiohttp": run_aiohttp, "tritonclient": run_tritonclient, "kserve": run_kserve}[name]
        done = asyncio.run(runner(url, batches(items, batch_size), concurrency))
    return {"rows": done, "seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(archive: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = REPO / "tsbatch" / "_demo" / "kserve_server.py"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(KSERVE_PYTHON), str(server), f"--port={port}", f"--archive={archive}"],
            stdout=out,
            stderr=out,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2):
                return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"KServe did not start: {log.read_text()[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--texts", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.url, args.texts, args.batch_size, args.concurrency)))
        return
    if not KSERVE_PYTHON.exists():
        raise SystemExit(f"{KSERVE_PYTHON} is missing: scripts/test makes .venv-kserve")
    from tsbatch._demo.archive import build_demo_archive

    work = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    archive, _ = build_demo_archive(work, DATA)
    source = work / "texts.json"
    source.write_text(json.dumps(texts(args.rows)))
    process, url = start_server(archive, work / "kserve.log")
    best: dict[str, dict[str, float]] = {}
    try:
        for repeat in range(args.repeats):
            order = list(PEERS) if repeat % 2 == 0 else list(reversed(PEERS))
            for name in order:
                command = [PEERS[name], __file__, f"--child={name}", f"--url={url}", f"--texts={source}"]
                sizes = [f"--batch-size={args.batch_size}", f"--concurrency={args.concurrency}"]
                done = subprocess.run(
                    [*command, *sizes],
                    capture_output=True,
                    text=True,
                    env={**os.environ, "PYTHONPATH": str(REPO) if name == "tsbatch" else ""},
                )
                if done.returncode != 0:
                    print(f"{name}: failed: {done.stderr.strip()[-600:]}")
                    continue
                result = json.loads(done.stdout.strip().splitlines()[-1])
                rate = result["rows"] / result["seconds"]
                per_10k = result["cpu"] / result["rows"] * 10_000
                print(f"round {repeat + 1} {name:<13} {rate:8.0f} rows/s  {per_10k:5.2f} CPU s / 10k rows")
                mine = best.setdefault(name, {"rate": 0.0, "cpu": float("inf")})
                mine["rate"], mine["cpu"] = max(mine["rate"], rate), min(mine["cpu"], per_10k)
    finally:
        process.terminate()
        process.wait(timeout=30)
    shape = f"{args.rows} rows, batches of {args.batch_size}, {args.concurrency} in flight"
    print(f"\nbest of {args.repeats} ({shape}):")
    for name, figures in best.items():
        print(f"  {name:<13} {figures['rate']:8.0f} rows/s  {figures['cpu']:5.2f} CPU s / 10k rows")
    peers = {n: f for n, f in best.items() if n != "tsbatch"}
    if "tsbatch" in best and peers:
        fastest = max(peers, key=lambda n: peers[n]["rate"])
        ours = best["tsbatch"]
        print(
            f"tsbatch / fastest peer ({fastest}): {ours['rate'] / peers[fastest]['rate']:.2f}x rows/s, "
            f"{ours['cpu'] / peers[fastest]['cpu']:.2f}x CPU per row"
        )


if __name__ == "__main__":
    main()
