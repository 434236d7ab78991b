"""PLAN's comparison, end to end, on one benchmark: Real, Linear, PLAN, k-same (k = 2, 5), k-same + PLAN (k = 5).

    python scripts/bench_paper.py --benchmark tb            # phantom chest X-rays, demo:cxr (TB vs normal)
    python scripts/bench_paper.py --benchmark dr            # phantom fundus photographs, demo:fundus (DR grade 0-4)
    python scripts/bench_paper.py --benchmark tb --data /data/shenzhen --layout shenzhen --gan stylegan:G.pkl
    python scripts/bench_paper.py --benchmark tb --quick    # minutes: the end-to-end smoke test CI runs

Stages: dataset (the phantom default, or any supported layout) -> generator (``demo:<kind>`` or ``--gan``) -> guides
-> inversion of the training split -> one synthetic set per row with ``latentwalk generate`` -> ``latentwalk evaluate``
on each. The method rows run with the privacy gate and the label gate off (``gate_threshold = 0``,
``label_gate = False``): the table compares the walks themselves, as the paper does; the gates are the product's own
safeguards and are measured by the demo.

Writes ``benchmarks/results/<benchmark>/`` (every stage's output, ``metrics.json`` with all rows, ``table.md``) and,
unless ``--quick`` or ``--no-record``, the section ``paper-<benchmark>`` of benchmarks/RESULTS.md with the command,
the machine and the wall time.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

KINDS = {"tb": "cxr", "dr": "fundus"}
# (row name, generate method, k or None); "Real" is read from the first evaluation's real-trained classifiers
ROWS = [
    ("Linear", "linear", None),
    ("PLAN", "plan", None),
    ("k-same (k=2)", "ksame", 2),
    ("k-same (k=5)", "ksame", 5),
    ("k-same+PLAN (k=5)", "ksame-plan", 5),
]
# The walk as the recorded tables ran it (generate's PLAN defaults before issue 18): Adam at a constant lr from the
# linear path, float32. Pinned so that a rerun or a --resume of a table reproduces it whatever generate's defaults are.
PAPER_WALK = dict(
    lr=0.1, lr_schedule="constant", warmup_steps=0, path_init="linear", early_stop_plateau=None, amp=False
)
FULL = dict(guide_epochs=30, invert_steps=50, per_label=100, optim_steps=100, eval_epochs=15, seeds=(0, 1, 2),
            mia_epochs=60, mia_shadows=4)  # fmt: skip
QUICK = dict(guide_epochs=1, invert_steps=2, per_label=4, optim_steps=2, eval_epochs=1, seeds=(0, 1), mia_epochs=2,
             mia_shadows=1)  # fmt: skip


def _num(x: Any, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _pm(mean: dict, std: dict, source: str, key: str) -> str:
    m, s = mean.get(source, {}).get(key), std.get(source, {}).get(key)
    if m is None:
        return "–"
    return f"{100 * m:.1f} ± {100 * s:.1f}" if s is not None else f"{100 * m:.1f}"


def _row(name: str, m: dict[str, Any], source: str, n_images: int | str) -> list[str]:
    u = m["utility"]
    cells = [name, str(n_images), _pm(u["mean"], u["std"], source, "accuracy"),
             _pm(u["mean"], u["std"], source, "balanced_accuracy")]  # fmt: skip
    mia = m["membership_inference"].get(f"classifier_trained_on_{source}", {})
    cells.append(f"{100 * mia['accuracy']:.1f} / {mia['auc']:.3f}" if mia else "–")
    mem = m.get("membership_inference_memorising", {}).get(f"classifier_trained_on_{source}", {})
    cal = mem.get("calibrated", {}).get("auc")
    cells.append(f"{mem['loss']['auc']:.3f} / {_num(cal)}" if mem else "–")
    v, g = m.get("verification", {}), m.get("ground_truth", {})
    unseen_v = v.get("heldout", {}).get("match_rate")
    unseen_g = g.get("heldout", {}).get("heldout_fraction")
    if source == "real":  # the attacker on real images of the members it never saw; the probe's radius is 95 % of them
        return cells + ["–"] * 6 + [f"{_num(v.get('attacker', {}).get('member_match_rate'))} / {_num(unseen_v)}",
                                    f"– / {_num(unseen_g)}"]  # fmt: skip
    ident = m["privacy"].get("identity", {})
    lp = m["privacy"].get("lpips")
    mml = f"{lp['mml']['mml']:.3f} (LPIPS)" if lp else f"{ident['mml']['mml']:.3g} (id)"
    fid = m["fidelity"].get("inception") or m["fidelity"].get("class_guide")
    fid_txt = f"{fid['fid']:.1f} / {fid['kid']['mean']:.3f}" if fid else "–"
    col = ident.get("collisions", {})
    cells += [
        _num(ident.get("mia_generator", {}).get("auc")),
        mml,
        f"{col.get('count', 0)} / {col.get('n_syn', 0)}",
        _num(ident.get("dcr", {}).get("p_closer")),
        fid_txt,
        _num(m["reidentification"].get("syn_match_rate")),
        f"{_num(v.get('synthetic', {}).get('match_rate'))} / {_num(unseen_v)}",
        f"{_num(g.get('synthetic', {}).get('leak_fraction'))} / {_num(unseen_g)}",
    ]
    return cells


HEADER = [
    "row",
    "images",
    "TSTR accuracy %",
    "balanced acc. %",
    "MIA on classifier: acc. % / AUC",
    "MIA, memorising classifier: loss / calibrated AUC",
    "MIA via synthetic set (AUC)",
    "mmL",
    "collisions",
    "DCR p_closer",
    "FID / KID",
    "re-id match rate",
    "verifier match rate: set / unseen",
    "GT leakage: set / unseen",
]


def main() -> None:
    from gan_zoo.invert import SPACES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", choices=sorted(KINDS), required=True)
    parser.add_argument("--data", type=Path, default=None, help="a real dataset instead of the phantom default")
    parser.add_argument("--layout", default="auto")
    parser.add_argument("--gan", default=None, help="generator spec (default demo:<kind>)")
    parser.add_argument("--out", type=Path, default=None, help="default benchmarks/results/<benchmark>")
    parser.add_argument("--quick", action="store_true", help="toy sizes: the CI smoke test")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--space",
        choices=SPACES,
        default="z",
        help="inversion space of the training latents (k-same rows); default z, as the demo",
    )
    parser.add_argument("--no-record", action="store_true", help="do not touch RESULTS.md")
    parser.add_argument("--resume", action="store_true", help="reuse the dataset, guides, latents and finished "
                        "synthetic sets in --out (generate refuses sets made otherwise); evaluate anew")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # small-sample FID and mixed-label notes land in each report

    import gan_zoo
    from gan_zoo.invert import InvertConfig
    from latentwalk.data import open_dataset
    from latentwalk.data.phantoms import PhantomConfig, write_phantom_dataset
    from latentwalk.devices import resolve_device
    from latentwalk.evaluate.run import EvalConfig, evaluate
    from latentwalk.guides import GuideConfig, train_guides
    from latentwalk.invert import invert_dataset
    from latentwalk.pipeline import GenerateConfig, generate

    sizes = QUICK if args.quick else FULL
    kind = KINDS[args.benchmark]
    out = args.out or ROOT / "benchmarks" / "results" / (args.benchmark + ("-quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    times: dict[str, float] = {}

    def stage(name: str, t0: float) -> None:
        times[name] = round(time.perf_counter() - t0, 1)
        print(f"  {name}: {times[name]:.0f}s", flush=True)

    t0 = time.perf_counter()
    reused = []
    if args.data is None:
        data_dir = out / "data"
        pcfg = PhantomConfig(kind=kind, seed=args.seed, **({"identities": 40, "per_identity": 3} if args.quick else {}))
        if args.resume and (data_dir / "dataset.json").is_file():
            index, _ = open_dataset(data_dir), reused.append("data")
        else:
            index = write_phantom_dataset(pcfg, data_dir, overwrite=True)
    else:
        data_dir = args.data
        index = open_dataset(data_dir, args.layout)
    stage("data", t0)
    device = resolve_device(args.device)
    spec = args.gan or f"demo:{kind}"
    G = gan_zoo.load(spec, device=device)

    t0 = time.perf_counter()
    guides = out / "guides"
    if args.resume and (guides / "identity.json").is_file():
        reused.append("guides")
    else:
        train_guides(index, guides, GuideConfig(epochs=sizes["guide_epochs"], seed=args.seed),
                     resolution=G.img_resolution, channels=G.img_channels, device=device, overwrite=True)  # fmt: skip
    stage("guides", t0)
    t0 = time.perf_counter()
    latents = out / "latents-train.safetensors"
    icfg = InvertConfig(space=args.space, steps=sizes["invert_steps"], batch=64)
    if args.resume and latents.is_file():
        reused.append("inversion")
    else:
        invert_dataset(G, index.subset("train"), latents, icfg, overwrite=True)
    stage("inversion", t0)

    results: dict[str, Any] = {}
    table = []
    for n, (name, method, k) in enumerate(ROWS):
        t0 = time.perf_counter()
        slug = name.lower().replace(" ", "").replace("(", "-").replace(")", "").replace("=", "").replace("+", "-")
        row_dir = out / "rows" / slug
        gcfg = GenerateConfig.from_dict(dict(
            gan=spec, guides=str(guides), data=str(data_dir), layout=args.layout, latents=str(latents), method=method,
            per_label=sizes["per_label"] if method != "ksame" else 100_000, optim_steps=sizes["optim_steps"],
            k=k or 5, gate_threshold=0.0, label_gate=False, seed=args.seed, device=args.device,
            endpoint_filter=not args.quick,  # toy guides may never predict a label: the quick run draws freely
            **PAPER_WALK,
        ))  # fmt: skip
        gen = generate(gcfg, row_dir / "synthetic", overwrite=not args.resume)
        if gen.already_done:
            reused.append(f"set {name}")
        ecfg = EvalConfig(guides=str(guides), layout=args.layout, spaces=("identity", "lpips", "pixels"),
                          utility_epochs=sizes["eval_epochs"],
                          utility_seeds=sizes["seeds"], reid_epochs=sizes["eval_epochs"], utility_real=n == 0,
                          verifier_epochs=4 * sizes["eval_epochs"], mia_epochs=sizes["mia_epochs"],
                          mia_shadows=sizes["mia_shadows"],
                          seed=args.seed, device=args.device)  # fmt: skip
        metrics = evaluate(data_dir, row_dir / "synthetic", row_dir / "evaluation", ecfg, overwrite=True).metrics
        results[name] = {"metrics": metrics, "written": gen.written, "seconds": round(time.perf_counter() - t0, 1)}
        if n == 0:
            table.append(_row("Real", metrics, "real", metrics["counts"]["train"]))
        table.append(_row(name, metrics, "synthetic", sum(gen.written.values())))
        stage(f"row {name}", t0)

    wall = round(time.perf_counter() - started, 1)
    lines = ["| " + " | ".join(r) + " |" for r in [HEADER, ["---"] * len(HEADER), *table]]
    ev0 = results[ROWS[0][0]]["metrics"]
    fid_name = (ev0["fidelity"].get("inception") or ev0["fidelity"].get("class_guide") or {}).get("extractor", "none")
    source = f"{args.data} ({args.layout})" if args.data else f"phantom {kind} (default size)"
    body = (
        f"## PLAN's comparison on {args.benchmark.upper()}: {source}, generator `{spec}`\n\n"
        f"Wall time {wall / 60:.1f} min ({', '.join(f'{k} {v:.0f}s' for k, v in times.items())}"
        + (f"; reused from an earlier run with --resume: {', '.join(reused)}" if reused else "")
        + "). Utility: the same "
        f"CNN recipe trained on each source, tested on the real {ev0['counts']['holdout_split']} split "
        f"({ev0['counts']['holdout']} images of unseen patients), mean ± std over seeds {list(sizes['seeds'])}. "
        "MIA on classifier: loss attack on that classifier (members = real training images, non-members = "
        "held-out images; 50 % / 0.5 = ideal). Memorising classifier: the same CNN trained to convergence "
        "without augmentation or weight decay; loss attack / offline LiRA with shadow models on real halves "
        "(0.5 = ideal). MIA via synthetic set, mmL, collisions and DCR: identity-embedding "
        f"space (cosine). FID / KID on: {fid_name}. Training latents: {sizes['invert_steps']} inversion steps in "
        f"{args.space.upper()}. Method rows without the privacy gate or the label gate; per label "
        f"{sizes['per_label']} images (k-same: one per group). Verifier: the independent Siamese attacker "
        "(its own architecture and seed, never seen by the walk), the share of the row's images matched to a "
        "training patient at its equal-error threshold / the same for real images of unseen patients (the floor); "
        "in the Real row, real images of training patients it never saw. GT leakage: the share whose anatomy, read "
        "by a regressor trained on the real training images, lies within the range of another image of a training "
        "patient (ground_truth.json) / the floor; in the Real row that range holds 95 % of such images by "
        "definition.\n\n" + "\n".join(lines)
    )
    (out / "table.md").write_text(body + "\n")
    (out / "metrics.json").write_text(json.dumps({"rows": results, "stages": times, "wall_seconds": wall}, indent=2))
    print(body)
    if not (args.quick or args.no_record):
        from record import write_section

        cmd = "python scripts/bench_paper.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        write_section(f"paper-{args.benchmark}", body, cmd=cmd)


if __name__ == "__main__":
    main()
