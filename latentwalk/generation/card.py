"""``DATASET_CARD.md`` of a synthetic dataset, written from its ``run.json`` alone."""

from __future__ import annotations

from typing import Any

__all__ = ["dataset_card", "round6"]


def round6(x: Any) -> float:
    return float(f"{float(x):.6g}")


_METHOD_TEXT = {
    "linear": "images along straight lines in W between two generated points of the same predicted label (baseline)",
    "plan": "PLAN walks (Pennisi et al., MICCAI 2023): paths between two generated points of the same label, "
    "optimised so that an identity classifier cannot tell which patient an image shows while a class classifier "
    "keeps the label",
    "ksame": "k-same: one image per group of at least k patients, rendered from the mean latent of the group "
    "(k-SALSA style latent averaging, without its texture optimisation)",
    "ksame-plan": "PLAN walks between the mean latents of two k-same groups of the same label: the anchors stand for "
    "at least k patients each, and the walk restores the dataset size k-same alone loses",
}


# the fixed end of every card: intended use, limits and how to load the images
_USE_LINES = (
    "",
    "## Intended use",
    "",
    "Method development, teaching and benchmarking where the real images cannot be shared. Check the utility "
    "(train on these images, test on real ones) and the privacy evaluation before relying on it.",
    "",
    "## Limits",
    "",
    "- The images are only as faithful as the generator: rare findings may be missing or simplified.",
    "- The gate compares with the real images it was given, in one distance space; it does not prove that no "
    "patient can be re-identified. A membership-inference and re-identification evaluation is advised.",
    "- Labels are those the generation aimed for (the class guide's decision), not a clinician's reading.",
    "- Not for diagnosis or clinical decisions.",
    "",
    "## Loading",
    "",
    "```python",
    "from torchvision.datasets import ImageFolder",
    'ds = ImageFolder("images", target_transform=lambda t: int(ds.classes[t]))  # folder name = label index',
    "```",
    "",
    "(`ImageFolder` numbers the folders it finds in string order; the transform gives back the label index, "
    "also when a label has no image or there are ten or more labels.)",
    "",
)


def dataset_card(run: dict[str, Any]) -> str:
    """``DATASET_CARD.md`` from a run record (deterministic: no timings)."""
    lines = _contents_lines(run) + _method_lines(run) + _privacy_lines(run) + list(_USE_LINES)
    return "\n".join(lines)


def _contents_lines(run: dict[str, Any]) -> list[str]:
    """Title, introduction and the table of images per label."""
    cfg, counts, gate = run["config"], run["counts"], run["gate"]
    total = sum(counts["written"].values())
    lines = [
        "# Synthetic dataset card",
        "",
        f"Synthetic images made by latentwalk {run['versions']['latentwalk']} with the method **{cfg['method']}**: "
        f"{_METHOD_TEXT[cfg['method']]}.",
        "",
        "No real image, file name or patient identifier is stored here. Every image was compared with "
        f"{gate['real_images']} real images of {gate['real_patients']} patients before it was written, and rejected "
        "when it was too close to one of them (below).",
        "",
        "## Contents",
        "",
        "| label | name | images | wanted | candidates | not written | of them off-label (label gate) |",
        "|---|---|---|---|---|---|---|",
    ]
    off = counts.get("rejected_by_label_gate") or {}
    for i, name in enumerate(run["label_names"]):
        lines.append(
            f"| {i} | {name} | {counts['written'][name]} | {counts['wanted_per_label']} | "
            f"{counts['candidates'][name]} | {counts['rejected'][name]} | {off.get(name, 0)} |"
        )
    short = [n for n in run["label_names"] if counts["written"][n] < counts["wanted_per_label"]]
    lines += ["", f"{total} images in all, in `images/<label>/<id>.png`; `manifest.csv` lists them."]
    if short:
        lines.append(
            f"Fewer images than wanted for {', '.join(short)}: "
            + {
                "ksame": "k-same gives one image per group, and the gate may have rejected some.",
                "ksame-plan": "each pair of k-same groups is walked once, so a label with few groups has few paths; "
                "the gate may also have rejected candidates.",
            }.get(cfg["method"], "the gate rejected too many candidates within max_rounds.")
        )
    return lines


def _method_lines(run: dict[str, Any]) -> list[str]:
    """The method section: generator, paths, PLAN, k-same, seed, label gate and diversity."""
    cfg = run["config"]
    lines = [
        "",
        "## Method",
        "",
        f"- Generator: `{run['inputs']['generator']['spec']}` (SHA-256 {run['inputs']['generator']['sha256'][:16]}...)",
    ]
    if cfg["method"] in ("linear", "plan", "ksame-plan"):
        lines.append(f"- Paths of {cfg['n_steps']} points; points written: {cfg['keep']}")
    if cfg["method"] in ("plan", "ksame-plan"):
        w = cfg["weights"]
        lines.append(
            f"- PLAN: {cfg['optim_steps']} Adam steps, lr {cfg['lr']}, loss weights privacy {w[0]}, equidistance "
            f"{w[1]}, class {w[2]}"
        )
    if run.get("adversarial"):
        lines.append(_adversarial_line(run["adversarial"]))
    if run.get("ksame"):
        k = run["ksame"]
        lines.append(
            f"- k-same: k = {k['config']['k']} ({k['config']['method']}), {k['n_groups']} groups; smallest group "
            f"{min(k['group_patients'])} patients"
        )
    lines.append(f"- Seed {cfg['seed']}; the same configuration and inputs give the same files (see `run.json`).")
    lg = run.get("label_gate")
    if lg:
        origin = (f"the {lg['percentile']:g}th percentile of the class guide's true-label probability on "
                  f"{lg['real_images']} real {lg['split']} images" if lg["derived"] else "given")  # fmt: skip
        lines.append(f"- Label gate: an image was written only when the class "
                     f"guide gave its label a probability >= {lg['threshold']:.4g} ({origin})")  # fmt: skip
    div = run.get("diversity")
    if div:
        ratio = f" ({100 * div['ratio']:.0f} % of the real set's)" if div.get("ratio") is not None else ""
        text = f"{div['synthetic']:.4g} against {div['real']:.4g} among the real training images{ratio}"
        lines.append(f"- Diversity: mean pairwise pixel distance {text}")
    return lines


def _adversarial_line(adv: dict[str, Any]) -> str:
    """The adversarial rounds (:mod:`latentwalk.generation.adversarial`) and the last round's attacker accuracy."""
    last = adv["per_round"][-1]

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.0f} %"

    return (
        f"- Adversarial rounds: {adv['rounds']} (after Feutry et al. 2018): the walk steered against an identity "
        f"attacker fine-tuned ({adv['epochs']} epochs a round) on the real training images and the walk's own "
        f"candidates; in the last round it named the patient behind {pct(last['accuracy_before'])} of "
        f"{last['images']['synthetic_held_out']} held-out candidates before fine-tuning and "
        f"{pct(last['accuracy_after'])} after (chance {pct(adv['chance_accuracy'])}). The gates kept the original "
        "guides."
    )


def _privacy_lines(run: dict[str, Any]) -> list[str]:
    """The privacy figures: gate space and threshold, self-check, nearest-real distances."""
    gate = run["gate"]
    lines = [
        "",
        "## Privacy figures",
        "",
        f"- Gate space: {gate['space']}; threshold {gate['threshold']:.6g} "
        + (
            f"(the {gate['percentile']:g}th percentile of real-to-nearest-other-patient distances)"
            if gate["threshold_derived"]
            else "(given)"
        ),
        f"- Real images to their nearest other patient: min {gate['real_nearest_other_patient']['min']:.4g}, "
        f"median {gate['real_nearest_other_patient']['median']:.4g}",
    ]
    check = gate.get("self_check") or {}
    if check.get("same_patient_nearest") is not None:
        lines.append(
            f"- Gate self-check: for {check['same_patient_nearest']:.0%} of {check['images']} real images with another "
            "image of their patient, the nearest other real image in this space is the same patient's"
            + ("" if check["passed"] else " — **this space cannot tell patients apart: the gate protects nobody**")
        )
    elif check:
        lines.append("- Gate self-check: not possible (no patient has two real images)")
    nd = run["nearest_real_distance"]
    if nd["min"] is not None:
        lines.append(
            f"- Written images to their nearest real image: min {nd['min']:.4g}, median {nd['median']:.4g}, "
            f"max {nd['max']:.4g}"
        )
    sidecar = run.get("private_sidecar")
    if sidecar:
        who = _SIDECAR_TEXT.get(sidecar.get("source"), "the patients behind them")
        lines.append(
            f"- The real patients behind each image ({who}) are recorded in a private file that its maker keeps apart "
            "from this dataset, to measure leakage (`latentwalk evaluate --private`); it is not part of the dataset."
        )
    return lines


_SIDECAR_TEXT = {
    "ksame-groups": "the members of its k-same groups, weighted by the image's place on the path",
    "identity-guide": "the training patient the identity guide finds most alike at each end of its path",
}
