"""PLAN generation with the old and the new defaults side by side, in one run (issue 18, item 2).

    python benchmarks/bench_plan_speed.py            # demo:cxr, 64 images per label; section plan-speed
    python benchmarks/bench_plan_speed.py --quick    # a smoke run, RESULTS.md untouched

The new defaults are ``generate``'s (:func:`latentwalk.generation.config.GenerateConfig`, chosen from the table of
``benchmarks/bench_plan_convergence.py``: the fewest steps that reach 200's objective, privacy term and class term,
in bfloat16 where the CPU has it); the old ones are those before it (200 Adam steps at lr 0.1, constant,
linear start, float32, no early stop), set explicitly. One process, one phantom dataset, one set of guides; for
each setting, in turn:

1. ``latentwalk generate`` end to end through the API (generator, guides and real images loaded, gates fitted, work
   items, PNG files, manifest, run.json) into a fresh folder: images/s and the gate pass rate over every candidate
   (identity and label gate, ``run.json`` counts), with the two-proportion z of the pass rates;
2. the walk of generate's first work item of each label with that setting (the same endpoints for both): PLAN's
   reference objective reached, evaluated in float32 on the final paths (:func:`latentwalk.paths.path_objective`).

Goal: >= 3x the images/s at an objective at most 2 % above the old one (and its privacy term too: the total alone
barely moves, see the convergence section) and an equal gate pass rate (|z| < 1.96).
Writes its section of benchmarks/RESULTS.md unless --no-record or --quick.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from bench_plan_convergence import OBJECTIVE_TOL, parse_args, prepare, walk  # noqa: E402
from record import summary, write_section  # noqa: E402

OLD = dict(optim_steps=200, lr=0.1, lr_schedule="constant", warmup_steps=0, path_init="linear",
           early_stop_plateau=None, amp=False)  # fmt: skip  # flat generate options before issue 18


def two_proportion_z(a: int, n: int, b: int, m: int) -> float:
    """z of the difference of two pass rates ``a/n - b/m`` (pooled standard error); 0 when both are 0 or 1."""
    p = (a + b) / (n + m)
    se = math.sqrt(p * (1 - p) * (1 / n + 1 / m))
    return 0.0 if se == 0 else (a / n - b / m) / se


def main() -> None:
    args = parse_args(__doc__, {"--per-label": dict(type=int, default=64)})
    from dataclasses import replace

    from latentwalk.pipeline import GenerateConfig, generate

    per_label = 4 if args.quick else args.per_label
    settings = {"old defaults": OLD, "new defaults": {}}
    if args.quick:
        settings = {k: {**v, "optim_steps": 2} for k, v in settings.items()}
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base, ctx, work = prepare(root, args.kind, args.quick, 2)
        load_before = os.getloadavg()[0]
        for name, change in settings.items():
            cfg = GenerateConfig.from_dict({**base.to_dict(), "per_label": per_label, **change})
            start = time.perf_counter()
            result = generate(cfg, root / name.replace(" ", "-"))
            seconds = time.perf_counter() - start
            counts = result.run["counts"]
            candidates = sum(counts["candidates"].values())
            passed = candidates - sum(counts["rejected"].values())
            amp = bool(result.run["config"]["amp"])
            pcfg = replace(cfg.plan, chunk=ctx.chunk, fused_modconv=False, amp=amp)  # as run_item walks
            walked = walk(ctx, work, pcfg)
            figures[name] = dict(seconds=seconds, images=sum(result.written.values()), passed=passed,
                                 candidates=candidates, objective=walked["objective"], privacy=walked["privacy"],
                                 steps=walked["steps"],
                                 amp=amp, plan=cfg.plan)  # fmt: skip
            print(name, figures[name], flush=True)
        load_after = os.getloadavg()[0]
    old, new = figures["old defaults"], figures["new defaults"]
    speed = {k: f["images"] / f["seconds"] for k, f in figures.items()}
    ratio = speed["new defaults"] / speed["old defaults"]
    rel = new["objective"] / old["objective"] - 1
    z = two_proportion_z(new["passed"], new["candidates"], old["passed"], old["candidates"])
    rel_privacy = new["privacy"] / old["privacy"] - 1
    met = ratio >= 3 and rel <= OBJECTIVE_TOL and rel_privacy <= OBJECTIVE_TOL and abs(z) < 1.96
    rows = ["| defaults | PLAN settings | images | seconds | images/s | speed-up | objective (first items) | "
            "privacy term (KL) | gate pass rate |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, f in figures.items():
        p = f["plan"]
        plan = (f"{p.optim_steps} steps, lr {p.lr:g} {p.schedule}" + (f", warm-up {p.warmup_steps}" if p.warmup_steps
                else "") + f", {p.init} start" + (f", plateau stop {p.early_stop_plateau:g}" if p.early_stop_plateau
                else "") + (", bfloat16" if f["amp"] else ", float32"))  # fmt: skip
        rows.append(
            f"| {name} | {plan} | {f['images']:.0f} | {f['seconds']:.1f} | {speed[name]:.2f} | "
            f"{speed[name] / speed['old defaults']:.1f}x | {f['objective']:.2f} | {f['privacy']:.4g} | "
            f"{f['passed']:.0f}/{f['candidates']:.0f} ({f['passed'] / f['candidates']:.0%}) |"
        )
    body = (
        f"## PLAN generation speed: old and new defaults side by side (CPU, {torch.get_num_threads()} thread(s), "
        f"demo:{args.kind})\n\n"
        f"`generate` end to end, {per_label} images per label, everything from loading the inputs to the last file; "
        "gate pass rate over every candidate of the run (identity and label gate). Objective: PLAN's reference "
        "objective summed over the 16 paths of generate's first work item of each label, walked with each setting "
        f"from the same endpoints and evaluated in float32. Load average {load_before:.1f} before, {load_after:.1f} "
        f"after.\n\n" + "\n".join(rows) + "\n\n"
        f"New / old: **{ratio:.1f}x** the images/s, objective {rel:+.1%}, privacy term {rel_privacy:+.1%}, gate pass "
        f"rate difference z = {z:+.2f} (|z| < 1.96: equal within sampling error). Goal (>= 3x, objective and privacy "
        "term <= +2 %, equal pass rate): "
        f"**{'met' if met else 'not met'}**."
    )
    print(body)
    summary(f"PLAN generation ({args.kind}): new defaults {ratio:.1f}x the old, objective {rel:+.1%}, z {z:+.2f}")
    if not args.no_record and not args.quick:
        write_section("plan-speed" + ("" if args.kind == "cxr" else f"-{args.kind}"), body)


if __name__ == "__main__":
    main()
