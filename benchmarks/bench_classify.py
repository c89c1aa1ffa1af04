"""Throughput of tsbatch against simpler clients, side by side in one run.

Targets:

* ``demo``: the demo model on a local TorchServe started here (server-side
  batching on, token auth on);
* ``null``: nginx from Debian on loopback answering a fixed JSON reply (a list
  of exactly ``--list-size`` predictions on ``/predictions/nulllist``), to
  show each client's own ceiling.  Needs ``apt-get install nginx-light``.

Each contender runs in its own process, so peak memory is its own; its input
(a list of texts, or a DataFrame for tsbatch) is made before the clock starts.
``aiohttp-uvloop`` is the bare loop on uvloop; ``tsbatch-rows-asyncio`` is
tsbatch on asyncio's own loop (``TSBATCH_EVENT_LOOP=asyncio``).  Printed:
rows/s, client CPU seconds per 10k rows, peak RSS, and ratios.

    python benchmarks/bench_classify.py --target demo --rows 3000
    python benchmarks/bench_classify.py --target null --rows 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data_samples" / "debian_descriptions.parquet"
NULL_LIST_SIZE = 64
CONTENDERS = [
    "sequential",
    "threads32",
    "aiohttp",
    "aiohttp-uvloop",
    "tsbatch-rows-asyncio",
    "tsbatch-rows",
    "tsbatch-list",
]


def texts(rows: int) -> list[str]:
    """``rows`` distinct texts from the sample data (suffixed when repeated, so none dedup away)."""
    pool = pq.read_table(DATA, columns=["text"]).column("text").to_pylist()
    return [pool[i % len(pool)] + ("" if i < len(pool) else f" #{i}") for i in range(rows)]


# -- contenders (run in a child process) ----------------------------------------


def run_sequential(target: dict[str, Any], items: list[str]) -> None:
    import requests

    with requests.Session() as session:
        for text in items:
            session.post(target["url"], data=text.encode(), headers=target["headers"]).raise_for_status()


def run_threads(target: dict[str, Any], items: list[str]) -> None:
    import threading

    import requests

    local = threading.local()

    def one(text: str) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        local.session.post(target["url"], data=text.encode(), headers=target["headers"]).raise_for_status()

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(one, items))


def run_aiohttp(target: dict[str, Any], items: list[str], *, uvloop: bool = False) -> None:
    import aiohttp

    async def main() -> None:
        limit = asyncio.Semaphore(target["concurrency"])
        connector = aiohttp.TCPConnector(limit=target["concurrency"])
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(text: str) -> None:
                async with (
                    limit,
                    session.post(target["url"], data=text.encode(), headers=target["headers"]) as r,
                ):
                    answer = json.loads(await r.read())
                    if "label" in target and answer["label"] != target["label"]:
                        raise SystemExit(f"got {answer['label']!r}, not the null label {target['label']!r}")
                    r.raise_for_status()

            await asyncio.gather(*(one(t) for t in items))

    if uvloop:
        import uvloop as fast

        with asyncio.Runner(loop_factory=fast.new_event_loop) as runner:
            runner.run(main())
    else:
        asyncio.run(main())


def run_tsbatch(target: dict[str, Any], frame: Any, mode: str) -> None:
    from prometheus_client import CollectorRegistry

    import tsbatch

    config = tsbatch.ClientConfig(
        url=target["base"],
        management_url=target["management"],
        model=target["list_model"] if mode == "list" else target["model"],
        auth=tsbatch.Auth(
            inference_token=target.get("token"), management_token=target.get("management_token")
        ),
    )
    options: dict[str, Any] = {"mode": mode, "progress": False}
    if target.get("concurrency_" + mode):
        options["concurrency"] = target["concurrency_" + mode]
    if mode == "list":
        options["batch_size"] = target["list_batch"]
    result = frame.ts.classify("text", config=config, registry=CollectorRegistry(), **options)
    failed = int((result["ts_status"] != "ok").sum())
    if failed:
        raise SystemExit(f"{failed} rows failed: {result['ts_error'].dropna().iloc[0]}")
    if "label" in target and (result["pred_label"] != target["label"]).any():  # the null server's answer
        raise SystemExit(f"some rows did not get the null server's label {target['label']!r}")


RUNNERS: dict[str, Callable[[dict[str, Any], list[str]], None]] = {
    "sequential": run_sequential,
    "threads32": run_threads,
    "aiohttp": run_aiohttp,
    "aiohttp-uvloop": lambda target, items: run_aiohttp(target, items, uvloop=True),
    "tsbatch-rows-asyncio": lambda target, frame: run_tsbatch(target, frame, "rows"),
    "tsbatch-rows": lambda target, frame: run_tsbatch(target, frame, "rows"),
    "tsbatch-list": lambda target, frame: run_tsbatch(target, frame, "list"),
}


def child(name: str, target_file: str, rows: int) -> None:
    import aiohttp  # noqa: F401  (imports are not part of the timed run)
    import pandas
    import requests  # noqa: F401
    import uvloop  # noqa: F401

    import tsbatch  # noqa: F401

    target = json.loads(Path(target_file).read_text())
    items: Any = texts(rows)
    if name.startswith("tsbatch"):
        items = pandas.DataFrame({"text": items})
        if name.endswith("-asyncio"):
            os.environ["TSBATCH_EVENT_LOOP"] = "asyncio"
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    RUNNERS[name](target, items)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"rows": rows, "seconds": seconds, "cpu": cpu, "peak_mb": _peak_rss_mb()}))


def run_child(name: str, command: list[str]) -> dict[str, Any]:
    """Run one contender's child process (no progress bar) and read the JSON of its last line."""
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "TSBATCH_PROGRESS": "0"}
    )
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would include the parent's before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- targets ------------------------------------------------------------------------


def start_demo(workdir: Path, max_batch_delay_ms: int = 10) -> tuple[dict[str, Any], Callable[[], None]]:
    """The demo model on a local TorchServe (batch size 32, token auth on)."""
    from tsbatch._serve import local

    ports = _free_ports(3)
    settings = local.ServeSettings(
        run_dir=workdir / "torchserve",
        inference_port=ports[0],
        management_port=ports[1],
        metrics_port=ports[2],
        batch_size=32,
        max_batch_delay_ms=max_batch_delay_ms,
    )
    server = local.start(settings, say=lambda line: print(f"  {line}"))
    token = server.inference_token()
    target = {
        "url": f"{server.inference_url}/predictions/demo",
        "base": server.inference_url,
        "management": server.management_url,
        "model": "demo",
        "list_model": "demo",
        "list_batch": 64,
        "token": token,
        "management_token": server.management_token(),
        "headers": {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
        "concurrency": 64,
    }
    return target, lambda: local.stop(settings.run_dir)


def start_null(workdir: Path, list_size: int = NULL_LIST_SIZE) -> tuple[dict[str, Any], Callable[[], None]]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx not found: apt-get install nginx-light")
    (port,) = _free_ports(1)
    compact = {"separators": (",", ":")}
    one = json.dumps({"label": "n", "score": 1}, **compact)  # type: ignore[arg-type]
    many = json.dumps([{"label": "n", "score": 1}] * list_size, **compact)  # type: ignore[arg-type]
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)  # nginx workers drop privileges and must read the reply file
    (workdir / "replies").mkdir()
    (workdir / "replies" / "nulllist").write_text(many)
    config = workdir / "nginx.conf"
    config.write_text(
        f"""
worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_buffer_size 64k;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location = /ping {{ default_type ""; return 200 '{{"status":"Healthy"}}'; }}
        location = /predictions/null {{ default_type ""; return 200 '{one}'; }}
        # The list reply is a file (too long for a config token); nginx serves
        # files to GET only, so a POST's 405 is turned into the file.
        location = /predictions/nulllist {{ error_page 405 =200 /replies/nulllist; return 405; }}
        location = /replies/nulllist {{ default_type ""; root {workdir}; }}
        location / {{ return 404; }}
    }}
}}
"""
    )
    with (workdir / "logs" / "stderr.log").open("wb") as errors:
        process = subprocess.Popen([nginx, "-c", str(config), "-p", str(workdir)], stderr=errors)
    _wait_for_port(port)
    base = f"http://127.0.0.1:{port}"
    target = {
        "url": f"{base}/predictions/null",
        "base": base,
        "management": base,
        "model": "null",
        "list_model": "nulllist",
        "list_batch": list_size,
        "headers": {"Content-Type": "text/plain"},
        "concurrency": 64,
        "concurrency_rows": 64,
        "concurrency_list": 4,
        "label": "n",  # every row's right answer
    }

    def stop() -> None:
        process.terminate()
        process.wait(timeout=10)

    return target, stop


def _free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _wait_for_port(port: int) -> None:
    import socket

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=["demo", "null"], default="demo")
    parser.add_argument("--rows", type=int, default=3000, help="rows per contender (default: %(default)s)")
    parser.add_argument(
        "--sequential-rows",
        type=int,
        default=None,
        help="rows for the slow sequential loop (default: --rows)",
    )
    parser.add_argument(
        "--list-rows",
        type=int,
        default=None,
        help="rows for list mode, which runs too briefly at --rows for a steady rate (default: --rows)",
    )
    parser.add_argument(
        "--list-size",
        type=int,
        default=NULL_LIST_SIZE,
        help="texts in a list request to the null server (default: %(default)s)",
    )
    parser.add_argument("--only", nargs="*", choices=CONTENDERS, default=CONTENDERS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--target-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.target_file, args.rows)
        return

    with tempfile.TemporaryDirectory(prefix="tsbatch-bench-") as tmp:
        workdir = Path(tmp)
        print(f"target: {args.target}; starting it ...")
        if args.target == "null" and (args.rows % args.list_size or (args.list_rows or 0) % args.list_size):
            parser.error(f"--rows and --list-rows must be multiples of --list-size ({args.list_size})")
        target, stop = start_demo(workdir) if args.target == "demo" else start_null(workdir, args.list_size)
        try:
            target_file = workdir / "target.json"
            target_file.write_text(json.dumps(target))
            results = {}
            for name in args.only:
                rows = args.rows
                if name == "sequential" and args.sequential_rows:
                    rows = args.sequential_rows
                if name == "tsbatch-list" and args.list_rows:
                    rows = args.list_rows
                command = [sys.executable, __file__, "--child", name, "--target-file", str(target_file)]
                r = results[name] = run_child(name, [*command, "--rows", str(rows)])
                print(
                    f"  {name:<13} {r['rows']:>7} rows  {r['rows'] / r['seconds']:>9.0f} rows/s  "
                    f"{r['cpu'] / r['rows'] * 10_000:>6.2f} CPU s/10k rows  {r['peak_mb']:>6.0f} MB peak"
                )
        finally:
            stop()
    rate = {name: r["rows"] / r["seconds"] for name, r in results.items()}
    print("ratios:")
    for a, b in [
        ("tsbatch-rows", "sequential"),
        ("tsbatch-list", "sequential"),
        ("tsbatch-rows", "threads32"),
        ("tsbatch-list", "threads32"),
        ("tsbatch-rows", "aiohttp"),
        ("tsbatch-rows-asyncio", "aiohttp"),
        ("tsbatch-rows", "aiohttp-uvloop"),
        ("tsbatch-list", "tsbatch-rows"),
    ]:
        if a in rate and b in rate:
            print(f"  {a} / {b}: {rate[a] / rate[b]:.2f}x")


if __name__ == "__main__":
    main()
