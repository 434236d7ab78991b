"""Phantom generation speed: 1,000 images at 64 px per kind, rendering alone and writing a whole dataset.

Goal (issue: foundation): 1,000 images at 64 px in under 30 s on one core. Run it pinned to one core:

    taskset -c 0 python benchmarks/bench_phantoms.py

Writes its section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from record import summary, write_section  # noqa: E402

from latentwalk.data.phantoms import PhantomConfig, generate_phantoms, write_phantom_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--no-record", action="store_true", help="print only; do not touch RESULTS.md")
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0))
    rows = [
        "| kind | images | render only (s) | render only (img/s) | whole dataset on disk (s) | goal < 30 s |",
        "|---|---|---|---|---|---|",
    ]
    for kind in ("cxr", "fundus"):
        cfg = PhantomConfig(kind=kind, identities=args.images // 4, per_identity=4, resolution=args.resolution)
        start = time.perf_counter()
        n = sum(1 for _ in generate_phantoms(cfg))
        render = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            write_phantom_dataset(cfg, Path(tmp) / "d")
            whole = time.perf_counter() - start
        ok = "met" if whole < 30 else "missed"
        rows.append(f"| {kind} | {n} | {render:.1f} | {n / render:.0f} | {whole:.1f} | {ok} |")
        print(rows[-1], flush=True)
        summary(f"phantom {kind}: {n / render:.0f} images/s rendered, {n} images on disk in {whole:.1f} s")
    body = (
        f"## Phantom generation ({args.resolution} px, {cores} core(s))\n\n"
        "Rendering alone, then `write_phantom_dataset` (render + PNG + metadata + split + ground truth).\n\n"
        + "\n".join(rows)
    )
    if not args.no_record:
        write_section(
            "phantoms", body, cmd=("taskset -c 0 " if cores == 1 else "") + "python benchmarks/bench_phantoms.py"
        )


if __name__ == "__main__":
    main()
