"""The null of the memorising-regime membership attacks: what they say about a classifier that never saw a member.

    python benchmarks/bench_mia_null.py --benchmark tb --threads 1
    python benchmarks/bench_mia_null.py --benchmark dr --threads 1

`latentwalk evaluate` attacks classifiers trained to convergence (no augmentation, no weight decay) on the real
training split R and on each synthetic set, with members = R and non-members = the held-out split H, by their loss
and by a calibrated offline-LiRA attack (shadow models on random halves of R and H). 0.5 is the ideal, but with a
few shadow models and 80 non-members the attack's AUC on an uninvolved classifier has its own spread. This benchmark
measures that null: the same recipe trained on the training split of *fresh phantom cohorts* (other seeds: patients
who are neither members nor non-members), attacked with the same shadows, beside the real-trained classifier. A
synthetic-trained classifier above this null carries membership from the generator's training patients.

Reuses ``scripts/bench_paper.py``'s dataset (``benchmarks/results/<benchmark>/data``) and writes the section
``mia-null-<benchmark>`` of RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
KINDS = {"tb": "cxr", "dr": "fundus"}
EPOCHS, SHADOWS, SEED = 60, 4, 0  # evaluate's defaults and the paper tables' settings (EvalConfig.mia_*)
COHORT_SEEDS = (11, 12, 13)
RESOLUTION = 64  # the demo generators' side: evaluate reads the real images at the synthetic set's resolution


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmark", choices=sorted(KINDS), required=True)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--work", type=Path, default=None, help="default benchmarks/results/mia-null-<benchmark>")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from latentwalk.data import open_dataset
    from latentwalk.data.phantoms import PhantomConfig, write_phantom_dataset
    from latentwalk.data.preprocess import load_tensors
    from latentwalk.evaluate import membership as mem
    from latentwalk.evaluate.utility import train_classifier

    kind = KINDS[args.benchmark]
    data = ROOT / "benchmarks" / "results" / args.benchmark / "data"
    if not (data / "dataset.json").is_file():
        sys.exit(f"error: {data} is missing; run scripts/bench_paper.py --benchmark {args.benchmark} first")
    work = args.work or ROOT / "benchmarks" / "results" / f"mia-null-{args.benchmark}"
    started = time.perf_counter()
    index = open_dataset(data)
    res = RESOLUTION
    R, Ry = load_tensors(index, res, split="train")
    H, Hy = load_tensors(index, res, split="test")
    n_classes = int(max(Ry.max(), Hy.max())) + 1
    recipe = mem.memorising_recipe(EPOCHS, SEED)
    shadows = mem.fit_shadows(torch.cat([R, H]), torch.cat([Ry, Hy]), n_classes, SHADOWS, EPOCHS, SEED, "cpu", False)
    rows = []
    real = train_classifier(R, Ry, n_classes, recipe, SEED, "cpu", False)
    rows.append(("real training split (members)", len(R), mem.attack(real, (R, Ry), (H, Hy), shadows)))
    for seed in COHORT_SEEDS:
        folder = work / f"cohort-{seed}"
        if not (folder / "dataset.json").is_file():
            write_phantom_dataset(PhantomConfig(kind=kind, seed=seed), folder, overwrite=True)
        X, Xy = load_tensors(open_dataset(folder), res, split="train")
        model = train_classifier(X, Xy, n_classes, recipe, SEED, "cpu", False)
        rows.append((f"fresh cohort, phantom seed {seed}", len(X), mem.attack(model, (R, Ry), (H, Hy), shadows)))
        print(rows[-1], flush=True)
    null = torch.tensor([r[2]["calibrated"]["auc"] for r in rows[1:]])
    null_loss = torch.tensor([r[2]["loss"]["auc"] for r in rows[1:]])
    lines = [
        "| classifier trained on | images | loss attack AUC | calibrated attack AUC |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {name} | {n} | {a['loss']['auc']:.3f} | {a['calibrated']['auc']:.3f} |" for name, n, a in rows]
    body = (
        f"## Null of the memorising-regime MIA ({args.benchmark.upper()}): phantom {kind}, classifiers that never saw "
        f"a member\n\nWall time {(time.perf_counter() - started) / 60:.1f} min. Members: the {len(R)} real training "
        f"images; non-members: the {len(H)} test images; recipe: the utility CNN, {EPOCHS} epochs, no augmentation, "
        f"no weight decay, seed {SEED}; calibrated: offline LiRA with {SHADOWS} shadow models on random halves of "
        "members and non-members (as `latentwalk evaluate`). Fresh cohorts: the phantom generator's default dataset "
        "with other seeds (other patients), same recipe, same shadows. Null over the fresh cohorts: loss AUC "
        f"{null_loss.mean():.3f} (range {null_loss.min():.3f}-{null_loss.max():.3f}), calibrated AUC "
        f"{null.mean():.3f} (range {null.min():.3f}-{null.max():.3f}). Compare the synthetic-trained rows of "
        f"`paper-{args.benchmark}`.\n\n" + "\n".join(lines)
    )
    print(body)
    if not args.no_record:
        from record import write_section

        write_section(f"mia-null-{args.benchmark}", body)


if __name__ == "__main__":
    main()
