"""``latentwalk demo``: the main job on the embedded phantom data, offline, in minutes on a laptop CPU.

phantom dataset -> shipped ``demo:<kind>`` generator -> guides -> inversion of the training images -> k-same ->
PLAN walks between same-label k-same centroids (``latentwalk generate``, method ``ksame-plan``) -> a comparison with
straight lines between the same centroids -> ``report.md`` with the pictures.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from latentwalk.errors import ConfigError
from latentwalk.io import atomic_write_text, write_json
from latentwalk.outputs import LEDGER, claim_dir, mark_dir, replace_dir

__all__ = ["DemoConfig", "run_demo"]


# fundus has five grades: 150 patients leave about 21 training patients per grade, i.e. 3-4 k-same groups (k = 5) and
# 3-6 distinct centroid pairs of 8 images each (100 patients gave 2 groups, one pair, 8 images for some grades)
DEFAULT_PATIENTS = {"cxr": 100, "fundus": 150}
# the demo's own top-level files while it runs (latentwalk.outputs); its stage folders carry markers of their own,
# and generate's private sidecars sit beside them in <stage>.private/
_DEMO_PATTERNS = ("samples.png", "synthetic.png", "walk_strip.png", "walk_distance.png", "walk.json", "demo.json",
                  "report.md", "latents-train.safetensors", "latents-train.json", "latents-train.safetensors.partial/*",
                  LEDGER, ".*.tmp", ".*.partial/*", "*.private/patients.json",
                  f"*.private/{LEDGER}", "*.private/.*.tmp")  # fmt: skip


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; the defaults finish in about 8 minutes on 2 CPU cores (README: measured stage by stage)."""

    kind: str = "cxr"
    patients: int | None = None  # phantom patients (4 images each; 70% train); None: DEFAULT_PATIENTS[kind]
    guide_epochs: int = 30  # per guide model
    invert_steps: int = 50  # per training image
    # w: with the conditional demo:cxr, z keeps the disease in the latents (utility ladder) but puts every normal
    # k-same centroid path nearer a training patient than the gate allows (0 normal images written); w keeps some
    invert_space: str = "w"
    k: int = 5
    per_label: int = 32  # synthetic images per label
    n_steps: int = 10  # points per path (8 written)
    optim_steps: int = 60  # PLAN Adam steps per path
    privacy_weight: float = 0.1  # PLAN's weight of the identity term (its reference: 0.1); equidistance, class: 1
    walk_steps: int = 16  # points of the linear-vs-PLAN picture
    eval_epochs: int = 10  # evaluation: utility classifiers (2 seeds) and the re-identification model
    seed: int = 0
    device: str = "auto"


def _stage(echo: Callable[[str], None], times: dict[str, float], name: str, text: str):
    class _Timer:
        def __enter__(self):
            echo(text)
            self.start = time.perf_counter()
            return self

        def __exit__(self, *exc):
            times[name] = round(time.perf_counter() - self.start, 1)
            return False

    return _Timer()


def _grid(out: Path, files: list[Path], nrow: int = 8) -> None:
    """A PNG grid of image files (8-bit gray or RGB)."""
    import numpy as np
    from PIL import Image

    from gan_zoo.sampling import save_grid

    tensors = []
    for path in files:
        with Image.open(path) as im:
            arr = torch.from_numpy(np.array(im))  # [R, R] or [R, R, 3] uint8
        tensors.append((arr[None] if arr.ndim == 2 else arr.permute(2, 0, 1)).float() / 127.5 - 1)
    save_grid(torch.stack(tensors), out, nrow=nrow)


def run_demo(
    out: str | os.PathLike,
    cfg: DemoConfig = DemoConfig(),
    *,
    overwrite: bool = False,
    progress: bool = False,
    echo: Callable | None = None,
) -> dict[str, Any]:
    """Run every stage into ``out`` and write ``report.md``; returns its figures.

    ``out`` must be absent or empty, or hold an earlier demo and ``overwrite`` be given (:mod:`latentwalk.outputs`).
    """
    from gan_zoo.invert import InvertConfig
    from latentwalk.devices import resolve_device
    from latentwalk.invert import invert_dataset
    from latentwalk.pipeline import GenerateConfig, generate

    cfg = _checked_config(cfg)
    say = echo if echo is not None else (lambda _m: None)
    out = Path(out)
    if claim_dir(out, overwrite=overwrite) == "replace":
        replace_dir(out)
    mark_dir(out, "demo", files=(), patterns=_DEMO_PATTERNS)
    times: dict[str, float] = {}
    started = time.perf_counter()
    device = resolve_device(cfg.device)
    data_dir, guides_dir = out / f"data-{cfg.kind}", out / "guides"
    latents = out / "latents-train.safetensors"
    synth = out / "synthetic"

    index, G, res = _data_generator_guides(cfg, say, times, out, data_dir, guides_dir, device, progress)
    train = index.subset("train")
    with _stage(say, times, "invert", f"[4/8] inverting {len(train)} training images ({cfg.invert_steps} steps)"):
        with warnings.catch_warnings():  # no LPIPS weights offline: the fallback is recorded in the latents' JSON
            warnings.simplefilter("ignore", UserWarning)
            invert_dataset(G, train, latents, InvertConfig(space=cfg.invert_space, steps=cfg.invert_steps, batch=64,
                                                           seed=cfg.seed), progress=progress)  # fmt: skip
    gen_cfg = _generate_config(cfg, data_dir, guides_dir, latents)
    n_labels = len(index.label_names)
    with _stage(say, times, "generate", f"[5/8] k-same (k={cfg.k}) + PLAN: {cfg.per_label} images x {n_labels} "
                f"labels -> {synth}"):  # fmt: skip
        result = generate(gen_cfg, synth, progress=progress, echo=lambda m: say("      " + m))
    with _stage(say, times, "baseline", "[6/8] the same k-same centroid pairs walked in straight lines"):
        base = generate(GenerateConfig.from_dict({**gen_cfg.to_dict(), "optim_steps": 0, "gate_threshold": 0.0}),
                        out / "baseline-linear", progress=progress)  # fmt: skip
    walk_text = f"[7/8] linear vs PLAN walk between two k-same centroids -> {out / 'walk_strip.png'}"
    with _stage(say, times, "walk", walk_text):
        walk = _walk_picture(cfg, gen_cfg, G, index, guides_dir, device, out)
        rows = sorted((synth / "images").rglob("*.png"))
        if rows:
            _grid(out / "synthetic.png", rows[:: max(1, len(rows) // 32)][:32])
    evaluation = out / "evaluation"
    with _stage(say, times, "evaluate", f"[8/8] evaluation (privacy, fidelity, utility) -> {evaluation}"):
        ev = _evaluate_demo(cfg, data_dir, synth, guides_dir, evaluation, out, progress)
    total = round(time.perf_counter() - started, 1)
    figures = _figures(result, base, walk, res, total, times)
    figures["evaluation"] = _evaluation_summary(ev.metrics)
    write_json(out / "demo.json", figures)
    atomic_write_text(out / "report.md", _report(cfg, figures, out, synth))
    mark_dir(out, "demo")  # the exact files of the finished demo
    say(f"done in {total:.0f}s; report: {out / 'report.md'}; synthetic dataset: {synth}")
    return figures


def _checked_config(cfg: DemoConfig) -> DemoConfig:
    """``cfg`` after its kind, inversion space and privacy weight are checked, with ``patients`` filled in."""
    from gan_zoo.invert import SPACES
    from latentwalk.data.phantoms import KINDS

    if cfg.kind not in KINDS:
        raise ConfigError(f'unknown demo kind "{cfg.kind}"; expected one of {", ".join(KINDS)}')
    if cfg.invert_space not in SPACES:
        raise ConfigError(f'unknown inversion space "{cfg.invert_space}"; expected one of {", ".join(SPACES)}')
    pw = cfg.privacy_weight
    if isinstance(pw, bool) or not isinstance(pw, (int, float)) or not math.isfinite(pw) or pw < 0:
        raise ConfigError(f"privacy_weight must be a number >= 0, got {pw!r}")
    if cfg.patients is None:
        cfg = dataclasses.replace(cfg, patients=DEFAULT_PATIENTS[cfg.kind])
    return cfg


def _data_generator_guides(
    cfg: DemoConfig,
    say: Callable[[str], None],
    times: dict[str, float],
    out: Path,
    data_dir: Path,
    guides_dir: Path,
    device: Any,
    progress: bool,
) -> tuple[Any, Any, Any]:
    """Stages 1-3: the phantom dataset, the generator's samples, the guides; returns ``(index, G, guides result)``."""
    import gan_zoo
    from gan_zoo.sampling import sample_images, save_grid
    from latentwalk.data.phantoms import PhantomConfig, write_phantom_dataset
    from latentwalk.data.validate import check_images, format_summary, summarize
    from latentwalk.guides import GuideConfig, train_guides

    with _stage(say, times, "data", f"[1/8] phantom {cfg.kind} dataset -> {data_dir}"):
        phantoms = PhantomConfig(kind=cfg.kind, identities=cfg.patients, seed=cfg.seed)
        index = write_phantom_dataset(phantoms, data_dir, progress=progress)
        summary = format_summary(summarize(index, check_images(index, progress=progress)))
        say("      " + summary.replace("\n", "\n      "))
    with _stage(say, times, "generator", f"[2/8] generator demo:{cfg.kind} -> {out / 'samples.png'}"):
        G = gan_zoo.load(f"demo:{cfg.kind}", device=device)
        save_grid(sample_images(G, 32, seed=cfg.seed), out / "samples.png", nrow=8)
    with _stage(say, times, "guides", f"[3/8] identity and class guides ({cfg.guide_epochs} epochs) -> {guides_dir}"):
        res = train_guides(index, guides_dir, GuideConfig(epochs=cfg.guide_epochs, seed=cfg.seed),
                           resolution=G.img_resolution, channels=G.img_channels, device=device,
                           progress=progress)  # fmt: skip
        ident, klass = res.metrics["identity"], res.metrics["class"]
        say(f"      identity accuracy (held-out images of training patients) {ident.get('val_accuracy', 0):.3f}; "
            f"class accuracy (validation patients) {klass.get('val_accuracy', 0):.3f}")  # fmt: skip
    return index, G, res


def _generate_config(cfg: DemoConfig, data_dir: Path, guides_dir: Path, latents: Path) -> Any:
    """The ``latentwalk generate`` configuration of the demo: PLAN walks between k-same centroids."""
    from latentwalk.ksame import KSameConfig
    from latentwalk.paths import PlanConfig
    from latentwalk.pipeline import GenerateConfig

    return GenerateConfig(
        gan=f"demo:{cfg.kind}",
        guides=str(guides_dir),
        data=str(data_dir),
        latents=str(latents),
        method="ksame-plan",
        per_label=cfg.per_label,
        paths_per_item=4,
        seed=cfg.seed,
        plan=PlanConfig(n_steps=cfg.n_steps, optim_steps=cfg.optim_steps, weights=(cfg.privacy_weight, 1.0, 1.0)),
        ksame=KSameConfig(k=cfg.k),
        device=cfg.device,
    )


def _walk_picture(cfg: DemoConfig, gen_cfg: Any, G: Any, index: Any, guides_dir: Path, device: Any, out: Path) -> Any:
    """The linear and the PLAN walk between the first two k-same centroids of the last label, saved as pictures."""
    from latentwalk.gate import build_gate
    from latentwalk.guides import load_guides
    from latentwalk.ksame import latent_centroids
    from latentwalk.pipeline import real_reference
    from latentwalk.walk import compare_walks, save_walk

    guides = load_guides(guides_dir, device=device)
    real, patients = real_reference(index, G)
    gate = build_gate("identity", real.to(device), patients, guides=guides)
    label = len(index.label_names) - 1
    with warnings.catch_warnings():  # mixed-label patients were reported by the generation stage
        warnings.simplefilter("ignore", UserWarning)
        centroids, _, _ = latent_centroids(gen_cfg.latents, G, index, [label], gen_cfg.ksame, min_groups=2)
    ends = (centroids[label][:1].to(device), centroids[label][1:2].to(device))  # two k-same centroids
    walk = compare_walks(G, guides, gate, label, n_steps=cfg.walk_steps, endpoints=ends,
                         plan_cfg=gen_cfg.plan)  # fmt: skip
    save_walk(walk, out)
    return walk


def _evaluate_demo(
    cfg: DemoConfig, data_dir: Path, synth: Path, guides_dir: Path, evaluation: Path, walk_dir: Path, progress: bool
) -> Any:
    """``latentwalk evaluate`` of the demo's synthetic set, sized for the demo (no SSIM space, short trainings)."""
    from latentwalk.evaluate.run import EvalConfig, evaluate

    # SSIM over every pair is the slowest space: left to the full `latentwalk evaluate`
    ecfg = EvalConfig(guides=str(guides_dir), spaces=("identity", "lpips", "pixels"), utility_seeds=(0, 1),
                      utility_epochs=cfg.eval_epochs, reid_epochs=cfg.eval_epochs, seed=cfg.seed,
                      verifier_epochs=4 * cfg.eval_epochs,  # an all-pairs attacker needs more passes
                      mia_epochs=3 * cfg.eval_epochs, mia_shadows=2,  # the memorising regime, sized for the demo
                      device=cfg.device)  # fmt: skip
    with warnings.catch_warnings():  # small-sample FID warnings are recorded in the report's notes
        warnings.simplefilter("ignore")
        return evaluate(data_dir, synth, evaluation, ecfg, walk_dir=walk_dir, progress=progress)


def _nn_stats(out_dir: Path) -> dict[str, float]:
    import csv

    with (out_dir / "manifest.csv").open(newline="") as f:
        d = sorted(float(r["nearest_real_distance"]) for r in csv.DictReader(f))
    if not d:
        return {"n": 0}
    return {"n": len(d), "min": round(d[0], 4), "median": round(d[len(d) // 2], 4)}


def _figures(result, base, walk, guides_res, total, times) -> dict[str, Any]:
    threshold = result.run["gate"]["threshold"]
    base_dir = base.out_dir
    import csv

    with (base_dir / "manifest.csv").open(newline="") as f:
        base_d = [float(r["nearest_real_distance"]) for r in csv.DictReader(f)]
    first = result.run["counts"]["by_round"][0]
    return {
        "seconds": total,
        "stage_seconds": times,
        "guides": guides_res.metrics,
        "gate": result.run["gate"],
        "plan": {
            "written": result.written,
            "rejected": result.rejected,
            **_nn_stats(result.out_dir),
            "round0_rejected": sum(first["rejected"].values()),
            "round0_candidates": sum(first["candidates"].values()),
        },
        "linear_baseline": {
            **_nn_stats(base_dir),
            "below_threshold": sum(d < threshold for d in base_d),
            "candidates": len(base_d),
        },
        "walk": walk.to_dict(),
    }


def _num(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _evaluation_summary(m: dict[str, Any]) -> dict[str, Any]:
    """The few evaluation figures the demo report quotes (the full set is in evaluation/metrics.json)."""
    u = m["utility"]["mean"]
    ident = m["privacy"].get("identity", {})
    return {
        "tstr_accuracy": {k: u[k]["accuracy"] for k in u},
        "mia_generator_auc": ident.get("mia_generator", {}).get("auc"),
        "mia_classifier_auc": {k: v["auc"] for k, v in m["membership_inference"].items()},
        "reid_match_rate": m["reidentification"].get("syn_match_rate"),
        "dcr_p_closer": ident.get("dcr", {}).get("p_closer"),
    }


def _report(cfg: DemoConfig, f: dict[str, Any], out: Path, synth: Path) -> str:
    g, p, lb, w, e = f["gate"], f["plan"], f["linear_baseline"], f["walk"], f["evaluation"]
    stages = ", ".join(f"{k} {v:.0f}s" for k, v in f["stage_seconds"].items())
    return "\n".join(
        [
            f"# latentwalk demo ({cfg.kind})",
            "",
            f"Done in {f['seconds']:.0f} s ({stages}). Everything is under `{out}`.",
            "",
            "## What ran",
            "",
            f"1. A phantom {cfg.kind} dataset (`data-{cfg.kind}/`) and the shipped `demo:{cfg.kind}` generator "
            "(`samples.png`).",
            f"2. Identity and class guides trained on the training patients (`guides/`): identity accuracy "
            f"{f['guides']['identity'].get('val_accuracy', 0):.3f} on held-out images, class accuracy "
            f"{f['guides']['class'].get('val_accuracy', 0):.3f} on validation patients.",
            f"3. Every training image inverted into {cfg.invert_space.upper()} (`latents-train.safetensors`), grouped "
            f"by k-same (k = {cfg.k}).",
            "4. PLAN walks between same-label k-same centroids, every image through the privacy gate "
            "(`synthetic/`: images, manifest.csv, run.json, DATASET_CARD.md).",
            "5. The same centroid pairs walked in straight lines, without the gate (`baseline-linear/`).",
            "6. The synthetic dataset evaluated against the real one (`evaluation/`).",
            "",
            "## Privacy gate",
            "",
            f"Space {g['space']}; threshold {g['threshold']:.4g} = the {g['percentile']:g}th percentile of the "
            f"distances from each of {g['real_images']} real training images to the nearest image of another "
            "patient.",
            "",
            f"Round 0 of the PLAN run walks the same centroid pairs (same seeds) as the straight-line baseline: "
            f"**{p['round0_rejected']} of {p['round0_candidates']}** PLAN candidates fell below the threshold, "
            f"against **{lb['below_threshold']} of {lb['candidates']}** points on the straight lines. The gate "
            f"rejected {sum(p['rejected'].values())} PLAN candidates in all"
            + (" and later rounds replaced them." if sum(p["rejected"].values()) else "."),
            "",
            "| | images written | nearest-real distance, min | median |",
            "|---|---|---|---|",
            f"| PLAN between k-same centroids (gated) | {p.get('n', 0)} | {p.get('min', float('nan')):.4g} | "
            f"{p.get('median', float('nan')):.4g} |",
            f"| straight lines, same pairs (ungated) | {lb.get('n', 0)} | {lb.get('min', float('nan')):.4g} | "
            f"{lb.get('median', float('nan')):.4g} |",
            "",
            "## Evaluation",
            "",
            f"Full report: `evaluation/report.md` (and `report.html`, `metrics.json`). Identity space: DCR "
            f"p_closer {_num(e['dcr_p_closer'])} (0.5 = synthetic images no closer to training patients than unseen "
            f"patients are), membership inference through the synthetic set AUC {_num(e['mia_generator_auc'])} "
            f"(0.5 = ideal), re-identification match rate {_num(e['reid_match_rate'])}. A classifier trained on the "
            f"synthetic images reaches accuracy {_num(e['tstr_accuracy'].get('synthetic'))} on real test patients "
            f"(trained on the real training images: {_num(e['tstr_accuracy'].get('real'))}).",
            "",
            "## Synthetic images",
            "",
            "![synthetic](synthetic.png)",
            "",
            "## One walk between two k-same centroids: linear (top) vs PLAN (bottom)",
            "",
            "![walk](walk_strip.png)",
            "",
            "![distance along the walk](walk_distance.png)",
            "",
            f"Points below the threshold: linear {w['below_threshold']['linear']}, PLAN {w['below_threshold']['plan']}"
            f" of {len(w['distances']['linear'])}.",
            "",
            "Real samples of the generator: ![samples](samples.png)",
            "",
        ]
    )
