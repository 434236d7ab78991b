"""Every performance benchmark in one command; each measures both of its sides in the same run.

    python benchmarks/run_all.py            # all of them, each writing its section of benchmarks/RESULTS.md
    python benchmarks/run_all.py --quick    # smaller sizes, print only (a check that they all run)

Runs, in order: phantom rendering (bench_phantoms), batched vs one-at-a-time inversion (bench_invert), PLAN batched
vs one-path reference loop (bench_paths), LPIPS nearest-neighbour search vs one `lpips` call per image
(bench_lpips_nn), and generation images/s for straight lines and PLAN (bench_generate). On a machine with a GPU the
same command measures there (the sections name the device). Prints every table and, at the end, each benchmark's
headline ratio (both sides measured in this run) and its wall time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from record import SUMMARY_ENV  # noqa: E402

BENCHES = [
    ("bench_phantoms.py", [], ["--images", "100"]),
    ("bench_invert.py", ["--threads", "2"], ["--images", "4", "--steps", "3", "--batch", "4"]),
    ("bench_paths.py", ["--unfused-reference", "--optim-steps", "10"], ["--paths", "2", "--optim-steps", "2"]),
    ("bench_lpips_nn.py", [], ["--n", "50", "--m", "50", "--baseline-calls", "2"]),
    ("bench_generate.py", [], ["--per-label", "8", "--optim-steps", "2"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, nothing recorded")
    args = parser.parse_args()
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        summary_file = Path(tmp) / "summary.txt"
        env = {**os.environ, SUMMARY_ENV: str(summary_file)}
        for script, full, quick in BENCHES:
            cmd = [sys.executable, str(HERE / script), *(quick + ["--no-record"] if args.quick else full)]
            print(f"\n$ {' '.join(cmd[1:])}", flush=True)
            start = time.perf_counter()
            subprocess.run(cmd, check=True, env=env)
            times.append((script, time.perf_counter() - start))
        lines = summary_file.read_text().splitlines() if summary_file.exists() else []
    print("\nSummary (each ratio measured side by side in this run):")
    print("\n".join(f"  {line}" for line in lines))
    print("\nWall time:")
    print("\n".join(f"  {name}: {seconds:.0f} s" for name, seconds in times))


if __name__ == "__main__":
    main()
