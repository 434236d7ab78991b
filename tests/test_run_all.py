"""``benchmarks/run_all.py --quick``: every speed benchmark runs and reports its side-by-side ratio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_run_all_quick_runs_every_benchmark_and_prints_their_ratios():
    results = REPO / "benchmarks" / "RESULTS.md"
    before = results.read_bytes()
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run_all.py"), "--quick"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = done.stdout.split("Summary (each ratio measured side by side in this run):", 1)[1]
    for headline in ("phantom cxr:", "phantom fundus:", "inversion (", "PLAN paths: batched", "LPIPS nearest-real",
                     "generation (CPU): straight lines"):  # fmt: skip
        assert headline in summary, summary
    for script in ("bench_phantoms.py", "bench_invert.py", "bench_paths.py", "bench_lpips_nn.py", "bench_generate.py"):
        assert f"{script}: " in summary
    assert results.read_bytes() == before  # --quick records nothing
