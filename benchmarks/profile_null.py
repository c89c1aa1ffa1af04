"""Where tsbatch's client time goes, per row, against the null server (nginx with a fixed reply).

Runs one tsbatch contender of ``bench_classify.py`` under py-spy (a sampling
profiler: the code runs at full speed) and sums the samples by the module of
the innermost Python frame, and by the innermost tsbatch function (its own
time plus the library calls it makes).
Needs ``pip install py-spy`` and nginx (``apt-get install nginx-light``).

    python benchmarks/profile_null.py rows 20000
    python benchmarks/profile_null.py list 81920     # a multiple of the null list reply (64)
    python benchmarks/profile_null.py rows 20000 --svg rows.svg   # also a flame graph
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_classify

GROUPS = {
    "aiohttp": "aiohttp",
    "multidict": "aiohttp",
    "yarl": "aiohttp",
    "uvloop": "event loop",
    "asyncio": "event loop",
    "selectors": "event loop",
    "pandas": "pandas/pyarrow/numpy",
    "pyarrow": "pandas/pyarrow/numpy",
    "numpy": "pandas/pyarrow/numpy",
    "json": "json",
    "orjson": "json",
    "prometheus_client": "prometheus_client",
    "tenacity": "tenacity",
    "pybreaker": "pybreaker",
}


def group(frame: str) -> str:
    """The module a sampled frame (``function (file:line)``) belongs to, tsbatch's by file."""
    file = frame.rsplit("(", 1)[-1].split(":")[0]
    if "/tsbatch/" in file or file.startswith("tsbatch/"):
        return "tsbatch/" + file.split("tsbatch/", 1)[1]
    for marker, name in GROUPS.items():
        if marker in file:
            return name
    return file.rsplit("/", 1)[-1] or frame


def run(mode: str, rows: int) -> None:
    """The profiled run (in the child py-spy starts): nginx, then tsbatch, imports first."""
    import aiohttp  # noqa: F401  (imports are not part of the run)
    import pandas

    import tsbatch  # noqa: F401

    target, stop = bench_classify.start_null(Path(tempfile.mkdtemp(prefix="profile-null-")))
    try:
        frame = pandas.DataFrame({"text": bench_classify.texts(rows)})
        bench_classify.run_tsbatch(target, frame, mode)
    finally:
        stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["rows", "list"])
    parser.add_argument("rows", type=int)
    parser.add_argument("--svg", help="also write a flame graph here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run(args.mode, args.rows)
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("py-spy not found: pip install py-spy")
    with tempfile.TemporaryDirectory(prefix="profile-") as tmp:
        raw = Path(tmp) / "stacks.txt"
        command = [sys.executable, __file__, args.mode, str(args.rows), "--child"]
        env = {**os.environ, "TSBATCH_PROGRESS": "0"}
        subprocess.run(
            [spy, "record", "--rate", "250", "--format", "raw", "-o", str(raw), "--", *command],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if args.svg:
            subprocess.run(
                [spy, "record", "--rate", "250", "-o", args.svg, "--", *command],
                check=True,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        by_module: collections.Counter[str] = collections.Counter()
        by_function: collections.Counter[str] = collections.Counter()
        total = 0
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            # Only the classify call (and the threads it starts): leave out start-up and imports.
            if not any("run_tsbatch" in f or group(f).startswith("tsbatch/") for f in frames):
                continue
            samples = int(count)
            total += samples
            leaf = frames[-1]
            by_module[group(leaf)] += samples
            # The innermost tsbatch frame: what of tsbatch's own work the time is spent for.
            own = next((f for f in reversed(frames) if group(f).startswith("tsbatch/")), None)
            if own is not None:
                by_function[own.split(" (")[0] + " " + group(own)] += samples
    if not total:
        raise SystemExit("no samples: is py-spy allowed to trace (ptrace)?")
    print(f"mode {args.mode}, {args.rows} rows: {total} samples at 250/s ({total / 250:.1f} s sampled)")
    print("by module of the innermost frame:")
    for key, samples in by_module.most_common(20):
        print(f"  {samples / total:6.1%}  {key}")
    print("by tsbatch function (its own time and the library calls it makes):")
    for key, samples in by_function.most_common(15):
        print(f"  {samples / total:6.1%}  {key}")


if __name__ == "__main__":
    main()
