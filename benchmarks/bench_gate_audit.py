"""Planted-copy audit of the privacy gate: which gate space catches near-copies of training images, at what cost?

    python benchmarks/bench_gate_audit.py --kind cxr --threads 1     # writes the RESULTS.md section gate-audit-cxr
    python benchmarks/bench_gate_audit.py --quick                    # toy sizes, prints only (the CI smoke test)

The design of Koeken et al. (2025), who found that post-hoc similarity filters miss near-duplicates: plant copies
among the candidates and count how many each gate rejects. Planted, from randomly chosen training images of the
phantom dataset (the same plants for every gate and seed):

- augmented copy: the training image under acquisition changes (``acquisition_augment`` at strength 0.5: a few
  degrees, a few per cent of shift and zoom, exposure, noise);
- G reconstruction: the generator's rendering of the image's inverted latent (W, the demo's inversion steps);
- blend alpha: ``w = (1 - alpha) w_train + alpha w_other`` for alpha in 0.1, 0.2, 0.3 with ``w_other`` the inverted
  latent of another training patient's image.

The negatives are the real images of the test split: patients nobody trained on, who must pass (their rejection
share is the false-rejection rate). Gates: ``identity`` (the guides' identity embedding, cosine), ``ssim``
(1 - SSIM), ``lpips`` (skipped without AlexNet's weights, offline), each with the product's threshold (the 5th
percentile of real nearest-other-patient distances over the training split), and ``verifier``: the independent
Siamese attacker of ``latentwalk.evaluate.verifier`` used as a gate (reject when its best score over the training
patients reaches its equal-error threshold). The trained parts change with the seed (the guides' seed for
``identity``, the verifier's seed); SSIM and LPIPS are deterministic. Agreement = share of planted images on which
every seed takes the same decision.
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

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

FULL = dict(identities=None, guide_epochs=30, invert_steps=50, plants=60, verifier_epochs=80)
QUICK = dict(identities=16, guide_epochs=1, invert_steps=2, plants=6, verifier_epochs=2)
ALPHAS = (0.1, 0.2, 0.3)


def _stage_data(kind: str, sizes: dict, out: Path) -> Any:
    """The phantom dataset (written once; reused when present)."""
    from latentwalk.data import open_dataset
    from latentwalk.data.phantoms import PhantomConfig, write_phantom_dataset

    data = out / "data"
    if (data / "dataset.json").exists():
        return open_dataset(data)
    extra = {"identities": sizes["identities"], "per_identity": 3} if sizes["identities"] else {}
    return write_phantom_dataset(PhantomConfig(kind=kind, **extra), data, overwrite=True)


def _stage_guides(index: Any, G: Any, seed: int, epochs: int, out: Path) -> Any:
    from latentwalk.guides import GuideConfig, load_guides, train_guides

    folder = out / f"guides-seed{seed}"
    if not (folder / "identity.json").exists():
        train_guides(index, folder, GuideConfig(epochs=epochs, seed=seed), resolution=G.img_resolution,
                     channels=G.img_channels, overwrite=True)  # fmt: skip
    return load_guides(folder)


def _stage_latents(index: Any, G: Any, steps: int, out: Path) -> tuple[list[str], torch.Tensor]:
    from gan_zoo.invert import InvertConfig
    from latentwalk.invert import invert_dataset, load_latents

    path = out / "latents-train.safetensors"
    if not path.exists():
        with warnings.catch_warnings():  # no LPIPS weights offline: the fallback is recorded in the JSON
            warnings.simplefilter("ignore")
            invert_dataset(G, index.subset("train"), path, InvertConfig(space="w", steps=steps, batch=64))
    ids, ws, _ = load_latents(path)
    return ids, ws


def _plants(index: Any, G: Any, real: torch.Tensor, patients: list[str], ids: list[str], ws: torch.Tensor,
            n: int) -> dict[str, torch.Tensor]:  # fmt: skip
    """The planted near-copies, from ``n`` training images drawn with a fixed seed."""
    from latentwalk.guides import acquisition_augment
    from latentwalk.paths import render_paths

    gen = torch.Generator().manual_seed(2025)
    files = [str(r.file.relative_to(index.root)) for r in index.subset("train").records]
    row_of = {f: i for i, f in enumerate(files)}
    pick = torch.randperm(len(ids), generator=gen)[:n]
    rows = torch.tensor([row_of[ids[i]] for i in pick])  # the real rows of the picked latents
    partner = []
    for i in pick.tolist():  # another training patient's latent for each blend
        while True:
            j = int(torch.randint(len(ids), (1,), generator=gen))
            if patients[row_of[ids[j]]] != patients[row_of[ids[i]]]:
                partner.append(j)
                break
    w, w_other = ws[pick], ws[torch.tensor(partner)]
    with torch.no_grad():
        plants = {"augmented copy": acquisition_augment(real[rows], 0.5, gen),
                  "G reconstruction": render_paths(G, w[:, None])[:, 0]}  # fmt: skip
        for a in ALPHAS:
            plants[f"blend alpha={a:g}"] = render_paths(G, ((1 - a) * w + a * w_other)[:, None])[:, 0]
    return plants


def _gate_rejections(space: str, real: torch.Tensor, patients: list[str], guides: Any, seed: int,
                     sizes: dict, sets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | str:  # fmt: skip
    """Per named image set, the gate's rejections ``[N]`` bool; a string when the space cannot run here."""
    from latentwalk.errors import MissingWeightsError
    from latentwalk.gate import build_gate

    if space == "verifier":
        from latentwalk.evaluate.verifier import VerifierConfig, fit_verifier

        ver, _ = fit_verifier(real, patients, VerifierConfig(epochs=sizes["verifier_epochs"], seed=303 + seed))
        return {name: ver.matches(x) for name, x in sets.items()}
    try:
        gate = build_gate(space, real, patients, guides=guides)
    except MissingWeightsError:
        return "skipped: no AlexNet weights on this machine (offline)"
    return {name: ~gate.accept(gate.distances(x)).cpu() for name, x in sets.items()}


def _ground_truth_row(index: Any, real: torch.Tensor, patients: list[str], sets: dict) -> dict | str:
    """Is a plant a copy of a training patient's anatomy? The phantoms' ground truth (latentwalk.evaluate.ground_truth):
    not a gate (it needs the truth), the reference the gates are read against."""
    from latentwalk.evaluate.ground_truth import fit_probe, patient_parameters, read_ground_truth

    truth = read_ground_truth(index.root)
    if truth is None:
        return "skipped: no ground_truth.json"
    ids, matrix, _ = patient_parameters(truth)
    probe = fit_probe(real, patients, dict(zip(ids, matrix, strict=True)))
    return {0: {name: probe.leaks(x) for name, x in sets.items()}}


def _table(results: dict[str, Any], plant_names: list[str]) -> list[str]:
    head = ["gate space", *[f"caught: {p}" for p in plant_names], "false rejections (unseen patients)", "agreement"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for space, per_seed in results.items():
        if isinstance(per_seed, str):
            lines.append(f"| {space} | " + " | ".join([per_seed] + ["–"] * (len(head) - 2)) + " |")
            continue
        cells, runs = [space], list(per_seed)  # one run for the deterministic spaces
        for name in [*plant_names, "unseen real patient"]:
            shares = torch.tensor([per_seed[s][name].float().mean().item() for s in runs])
            spread = f" ± {100 * shares.std().item():.1f}" if len(runs) > 1 else ""
            cells.append(f"{100 * shares.mean().item():.1f}{spread} %")
        planted = torch.stack([torch.cat([per_seed[s][p] for p in plant_names]) for s in runs])  # [S, plants]
        same = (planted == planted[0]).all(0).float().mean().item()
        cells.append(f"{100 * same:.1f} %" if len(runs) > 1 else "deterministic")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("cxr", "fundus"), default="cxr")
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the trained parts (guides, verifier)")
    parser.add_argument("--spaces", default="identity,ssim,lpips,verifier")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="default benchmarks/results/gate-audit-<kind>")
    parser.add_argument("--quick", action="store_true", help="toy sizes; prints only")
    parser.add_argument("--no-record", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", UserWarning)  # the gate self-check warns on toy guides; it is in the table

    import gan_zoo
    from latentwalk.data.preprocess import load_tensors
    from latentwalk.pipeline import real_reference

    sizes = QUICK if args.quick else FULL
    seeds = [int(s) for s in args.seeds.split(",")]
    out = args.out or HERE / "results" / (f"gate-audit-{args.kind}" + ("-quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    index = _stage_data(args.kind, sizes, out)
    G = gan_zoo.load(f"demo:{args.kind}")
    real, patients = real_reference(index, G)
    unseen, _ = load_tensors(index.subset("test"), G.img_resolution, channels=G.img_channels)
    ids, ws = _stage_latents(index, G, sizes["invert_steps"], out)
    plants = _plants(index, G, real, patients, ids, ws, sizes["plants"])
    sets = {**plants, "unseen real patient": unseen}
    results: dict[str, Any] = {}
    for space in args.spaces.split(","):
        t0 = time.perf_counter()
        per_seed: dict[int, Any] = {}
        for seed in seeds if space in ("identity", "verifier") else seeds[:1]:
            guides = _stage_guides(index, G, seed, sizes["guide_epochs"], out) if space == "identity" else None
            per_seed[seed] = _gate_rejections(space, real, patients, guides, seed, sizes, sets)
            if isinstance(per_seed[seed], str):
                break
        first = next(iter(per_seed.values()))
        results[space] = first if isinstance(first, str) else per_seed
        print(f"  {space}: {time.perf_counter() - t0:.0f}s", flush=True)
    if isinstance(results.get("identity"), dict) and isinstance(results.get("ssim"), dict):
        ssim = next(iter(results["ssim"].values()))  # either gate rejects: the union, per identity seed
        results["identity or ssim"] = {s: {k: d[k] | ssim[k] for k in d} for s, d in results["identity"].items()}
    results["ground truth (reference)"] = _ground_truth_row(index, real, patients, sets)
    lines = _table(results, list(plants))
    wall = time.perf_counter() - started
    body = (
        f"## Planted-copy audit of the gate: phantom {args.kind}, generator `demo:{args.kind}`\n\n"
        f"{sizes['plants']} training images planted per kind of copy; {len(unseen)} real test-split images of "
        f"{len(set(r.identity for r in index.subset('test').records))} unseen patients as the negatives; seeds "
        f"{seeds} of the trained parts (SSIM and LPIPS are deterministic: one seed). Caught = share rejected by the "
        "gate at its default threshold (identity, ssim, lpips: 5th percentile of real nearest-other-patient "
        "distances; verifier: its equal-error threshold; identity or ssim: rejected by either), mean ± std over seeds. "
        "Ground truth (reference, not a gate): the share whose anatomy, read by the probe of "
        "latentwalk.evaluate.ground_truth, lies within a training patient's same-patient range: whether the plant "
        "is a copy at all; its false-rejection cell is the unseen patients' chance rate. Latents inverted in W "
        f"({sizes['invert_steps']} steps). Wall time {wall / 60:.1f} min.\n\n" + "\n".join(lines)
    )
    raw = {space: r if isinstance(r, str) else {str(s): {k: v.tolist() for k, v in d.items()} for s, d in r.items()}
           for space, r in results.items()}  # fmt: skip
    (out / "audit.json").write_text(json.dumps(raw))
    print(body)
    if not (args.quick or args.no_record):
        from record import write_section

        cmd = "python benchmarks/bench_gate_audit.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        write_section(f"gate-audit-{args.kind}", body, cmd=cmd)


if __name__ == "__main__":
    main()
