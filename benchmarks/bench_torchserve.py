"""tsbatch against ``wrk`` and a bare aiohttp loop on a real TorchServe, in rows mode and list mode.

TorchServe serves the demo model (server-side batch size 32, delay 5 ms, one
worker, token auth on, the quiet log config of ``tsbatch serve``).  ``wrk``
(Debian's ``wrk``) posts the same bodies as the clients, round robin, from a
small Lua script, with as many connections as the clients keep requests in
flight; it measures what the server itself can do.  Without ``wrk`` the
figures are compared with the bare aiohttp loop only.

Contenders (each in its own process, one after another):

* ``wrk-rows`` / ``aiohttp-rows`` / ``tsbatch-rows-tuned``: one text a
  request, ``--rows-concurrency`` in flight; ``tsbatch-rows``: tsbatch's
  defaults (an adaptive limit, from the model's info);
* ``wrk-list`` / ``aiohttp-list`` / ``tsbatch-list-tuned``: ``--list-size``
  texts a request, ``--list-concurrency`` in flight (the best setting found
  by hand); ``tsbatch-list``: tsbatch's defaults, from the model's info.

Every tsbatch and aiohttp row is checked: each is ``ok`` and its label is the
one the bare loop got for the same text; wrk's non-200 replies are counted.

    python benchmarks/bench_torchserve.py --rows 20000 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_classify import run_child, start_demo, texts

CONTENDERS = [
    "wrk-rows",
    "aiohttp-rows",
    "tsbatch-rows",
    "tsbatch-rows-tuned",
    "wrk-list",
    "aiohttp-list",
    "tsbatch-list",
    "tsbatch-list-tuned",
]

WRK_SCRIPT = """
local bodies, count = {}, 0
local next_body = 0
errors = 0  -- a global: done() reads it from each thread
function init(args)
    local file = assert(io.open(args[1], "rb"))
    local data = file:read("*a")
    file:close()
    for body in string.gmatch(data, "([^%z]+)") do
        count = count + 1
        bodies[count] = body
    end
    wrk.method = "POST"
    wrk.headers["Content-Type"] = args[2]
    wrk.headers["Authorization"] = "Bearer " .. args[3]
end
function request()
    next_body = next_body % count + 1
    return wrk.format(nil, nil, nil, bodies[next_body])
end
function response(status, headers, body)
    if status ~= 200 then errors = errors + 1 end
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
    local total = 0
    for _, thread in ipairs(threads) do total = total + thread:get("errors") end
    io.write(string.format("TSBATCH_ERRORS %d\\n", total))
end
"""


def bodies(items: list[str], list_size: int | None) -> list[bytes]:
    if list_size is None:
        return [text.encode() for text in items]
    return [
        json.dumps({"instances": items[i : i + list_size]}).encode() for i in range(0, len(items), list_size)
    ]


def run_wrk(
    target: dict[str, Any], workdir: Path, items: list[str], args: argparse.Namespace, mode: str
) -> dict[str, Any]:
    list_size = args.list_size if mode == "list" else None
    payloads = bodies(items, list_size)
    body_file = workdir / f"bodies-{mode}.bin"
    body_file.write_bytes(b"\0".join(payloads))
    script = workdir / "bench.lua"
    script.write_text(WRK_SCRIPT)
    connections = args.list_concurrency if mode == "list" else args.rows_concurrency
    content_type = "application/json" if mode == "list" else "text/plain; charset=utf-8"
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{args.seconds}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        target["url"],
        "--",
        str(body_file),
        content_type,
        target["token"],
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"wrk failed: {done.stdout[-1000:]} {done.stderr[-1000:]}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    errors = int(re.search(r"TSBATCH_ERRORS (\d+)", done.stdout).group(1))  # type: ignore[union-attr]
    return {"rows_per_s": rate * (list_size or 1), "errors": errors, "cpu": None}


def run_aiohttp(
    target: dict[str, Any], items: list[str], args: argparse.Namespace, mode: str
) -> dict[str, Any]:
    import aiohttp

    list_size = args.list_size if mode == "list" else None
    payloads = bodies(items, list_size)
    headers = {
        "Authorization": f"Bearer {target['token']}",
        "Content-Type": "application/json" if list_size else "text/plain; charset=utf-8",
    }
    concurrency = args.list_concurrency if list_size else args.rows_concurrency
    labels: list[Any] = [None] * len(payloads)

    async def main() -> None:
        work = iter(enumerate(payloads))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

            async def worker() -> None:
                for index, payload in work:
                    async with session.post(target["url"], data=payload, headers=headers) as reply:
                        reply.raise_for_status()
                        labels[index] = json.loads(await reply.read())

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    started = time.perf_counter()
    asyncio.run(main())
    seconds = time.perf_counter() - started
    flat = [a["label"] for answer in labels for a in answer] if list_size else [a["label"] for a in labels]
    return {"rows_per_s": len(items) / seconds, "labels": flat}


def run_tsbatch(
    target: dict[str, Any], items: list[str], args: argparse.Namespace, name: str
) -> dict[str, Any]:
    import pandas as pd
    from prometheus_client import CollectorRegistry

    import tsbatch

    config = tsbatch.ClientConfig(
        url=target["base"],
        management_url=target["management"],
        model="demo",
        auth=tsbatch.Auth(inference_token=target["token"], management_token=target["management_token"]),
    )
    options: dict[str, Any] = {"mode": "rows" if "rows" in name else "list", "progress": False}
    if name == "tsbatch-rows-tuned":
        options.update(concurrency=args.rows_concurrency)
    if name == "tsbatch-list-tuned":
        options.update(batch_size=args.list_size, concurrency=args.list_concurrency)
    frame = pd.DataFrame({"text": items})
    started = time.perf_counter()
    result = frame.ts.classify("text", config=config, registry=CollectorRegistry(), **options)
    seconds = time.perf_counter() - started
    report = tsbatch.run_report(result)
    if (result["ts_status"] != "ok").any():
        raise SystemExit(f"{name}: {int((result['ts_status'] != 'ok').sum())} rows not ok")
    return {
        "rows_per_s": len(items) / seconds,
        "labels": result["pred_label"].tolist(),
        "setting": f"{report.mode} mode, limit started at {report.concurrency}, "
        f"ended at {report.batches[-1].concurrency_limit}, "
        f"{max(b.rows for b in report.batches)} rows a batch",
    }


def child(name: str, workdir: Path, args: argparse.Namespace) -> None:
    import aiohttp  # noqa: F401  (imports are not timed)
    import pandas  # noqa: F401

    import tsbatch  # noqa: F401

    target = json.loads((workdir / "target.json").read_text())
    items = texts(args.rows)
    mode = "list" if "list" in name else "rows"
    if name.startswith("wrk"):
        result = run_wrk(target, workdir, items, args, mode)
    elif name.startswith("aiohttp"):
        result = run_aiohttp(target, items, args, mode)
    else:
        result = run_tsbatch(target, items, args, name)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=20_000, help="rows for the clients (default: %(default)s)"
    )
    parser.add_argument("--seconds", type=int, default=10, help="how long wrk runs (default: %(default)s)")
    parser.add_argument("--rows-concurrency", type=int, default=64)
    parser.add_argument("--list-size", type=int, default=64)
    parser.add_argument("--list-concurrency", type=int, default=4)
    parser.add_argument("--only", nargs="*", choices=CONTENDERS, default=CONTENDERS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, Path(args.workdir), args)
        return
    names = list(args.only)
    if shutil.which("wrk") is None:
        print("wrk not found (apt-get install wrk): comparing with the bare aiohttp loop only")
        names = [n for n in names if not n.startswith("wrk")]

    with tempfile.TemporaryDirectory(prefix="tsbatch-bench-ts-") as tmp:
        workdir = Path(tmp)
        print("starting TorchServe with the demo model ...")
        target, stop = start_demo(workdir, max_batch_delay_ms=5)
        results: dict[str, dict[str, Any]] = {}
        try:
            (workdir / "target.json").write_text(json.dumps(target))
            for name in names:
                command = [sys.executable, __file__, "--child", name, "--workdir", str(workdir)]
                for flag in ("rows", "seconds", "rows_concurrency", "list_size", "list_concurrency"):
                    command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
                r = results[name] = run_child(name, command)
                note = f"  {r['errors']} non-200" if "errors" in r else f"  {r.get('setting', '')}"
                print(f"  {name:<19} {r['rows_per_s']:>8.0f} rows/s{note}")
        finally:
            stop()
    reference = next((r["labels"] for n, r in results.items() if n.startswith("aiohttp")), None)
    for name, r in results.items():
        if "labels" in r and reference is not None and r["labels"] != reference:
            raise SystemExit(f"{name}: labels differ from the bare aiohttp loop's")
        if r.get("errors"):
            raise SystemExit(f"{name}: {r['errors']} requests not answered 200")
    print("every row checked: labels agree" if reference is not None else "")
    rate = {name: r["rows_per_s"] for name, r in results.items()}
    print("ratios:")
    for a, b in [
        ("tsbatch-rows", "wrk-rows"),
        ("tsbatch-rows-tuned", "wrk-rows"),
        ("tsbatch-rows", "aiohttp-rows"),
        ("tsbatch-rows-tuned", "aiohttp-rows"),
        ("tsbatch-list", "wrk-list"),
        ("tsbatch-list-tuned", "wrk-list"),
        ("tsbatch-list", "aiohttp-list"),
        ("tsbatch-list-tuned", "aiohttp-list"),
        ("tsbatch-list", "tsbatch-rows"),
    ]:
        if a in rate and b in rate:
            print(f"  {a} / {b}: {rate[a] / rate[b]:.2f}x")


if __name__ == "__main__":
    main()
