"""Where tsbatch's client time goes, per row, against the null server (nginx with a fixed reply).

Runs one tsbatch contender of ``bench_classify.py`` under cProfile and sums
each module's own time per row.  cProfile slows everything down (about 2.5x
here), so read the shares, not the microseconds.

    python benchmarks/profile_null.py rows 20000
    python benchmarks/profile_null.py list 40960     # a multiple of the null list reply (512)
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_classify

GROUPS = {
    "aiohttp": "aiohttp",
    "asyncio": "asyncio",
    "selectors": "asyncio",
    "pandas": "pandas/pyarrow/numpy",
    "pyarrow": "pandas/pyarrow/numpy",
    "numpy": "pandas/pyarrow/numpy",
    "json": "json",
    "prometheus_client": "prometheus_client",
    "tenacity": "tenacity",
    "pybreaker": "pybreaker",
}


def group(file: str, function: str) -> str:
    """The module a profiled function belongs to, tsbatch's by file."""
    if "/tsbatch/" in file:
        return "tsbatch/" + file.split("/tsbatch/")[1]
    for marker, name in GROUPS.items():
        if marker in file:
            return name
    if file == "~":
        return "builtin " + function.split(" of ")[0][:40]
    return file.rsplit("/", 1)[-1]


def main() -> None:
    mode, rows = sys.argv[1], int(sys.argv[2])
    import aiohttp  # noqa: F401  (imports are not profiled)
    import pandas  # noqa: F401

    import tsbatch  # noqa: F401

    target, stop = bench_classify.start_null(Path(tempfile.mkdtemp(prefix="profile-null-")))
    try:
        items = bench_classify.texts(rows)
        profile = cProfile.Profile()
        profile.enable()
        bench_classify.run_tsbatch(target, items, mode)
        profile.disable()
    finally:
        stop()
    totals: dict[str, float] = {}
    for (file, _, function), (_, _, own, _, _) in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        key = group(file, function)
        totals[key] = totals.get(key, 0.0) + own
    whole = sum(totals.values())
    print(f"mode {mode}, {rows} rows: {whole:.2f} s of profiled time, {whole / rows * 1e6:.0f} us a row")
    for key, seconds in sorted(totals.items(), key=lambda item: -item[1])[:25]:
        print(f"{seconds / rows * 1e6:8.1f} us/row  {seconds / whole:6.1%}  {key}")


if __name__ == "__main__":
    main()
