"""Peak memory of a Parquet job against input size: it should follow --rows-per-part, not the input.

Builds inputs of 1x and 4x the sample data (ids made unique), runs
``tsbatch classify`` on each in a fresh process with the same settings, and
prints each run's peak resident memory (VmHWM) and rows/s.  Needs a running
TorchServe with the demo model, named by TORCHSERVE_URL / TORCHSERVE_KEY_FILE
(``tsbatch serve start`` starts one).

    python benchmarks/bench_job_memory.py --rows-per-part 2000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

DATA = Path(__file__).resolve().parents[1] / "data_samples" / "debian_descriptions.parquet"

CHILD = """
import sys
from pathlib import Path
from tsbatch._cli import main
code = main(sys.argv[1:])
for line in Path("/proc/self/status").read_text().splitlines():
    if line.startswith("VmHWM:"):
        print("PEAK_MB", int(line.split()[1]) / 1024)
sys.exit(code)
"""


def build(copies: int, folder: Path) -> Path:
    table = pq.read_table(DATA, columns=["id", "text"])
    folder.mkdir()
    for copy in range(copies):
        ids = pc.binary_join_element_wise(table.column("id"), pa.scalar(f"#{copy}"), "")
        pq.write_table(table.set_column(0, "id", ids), folder / f"copy-{copy}.parquet")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-part", type=int, default=2000)
    parser.add_argument("--copies", type=int, nargs="*", default=[1, 4])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for copies in args.copies:
            source = build(copies, Path(tmp) / f"in-{copies}")
            command = [
                sys.executable,
                "-c",
                CHILD,
                "classify",
                str(source),
                str(Path(tmp) / f"out-{copies}"),
                "--id-column=id",
                f"--rows-per-part={args.rows_per_part}",
                "--no-progress",
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            peak = next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("PEAK_MB"))
            summary = json.loads((Path(tmp) / f"out-{copies}" / "_summary.json").read_text())
            print(
                f"{summary['rows']:>7} rows  rows-per-part {args.rows_per_part}  "
                f"peak {float(peak):6.0f} MB  {summary['rows_per_second']:>6.0f} rows/s"
            )


if __name__ == "__main__":
    main()
