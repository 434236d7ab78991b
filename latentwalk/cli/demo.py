"""``latentwalk demo``: the main job on the embedded phantom data."""

from __future__ import annotations

from pathlib import Path

import click

from latentwalk.cli.common import (
    demo_default,
    kind_option,
    progress,
)


@click.command("demo")
@kind_option("cxr: tuberculosis X-rays; fundus: diabetic retinopathy.")
@click.option(
    "--out",
    default=Path("latentwalk-demo"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder (empty, absent, or an earlier demo with --overwrite).",
)
@click.option("--overwrite", is_flag=True, help="Replace an earlier demo in --out.")
@click.option("--patients", type=int, default=None, help="Phantom patients.  [default: 100 (cxr), 150 (fundus)]")
@click.option("--guide-epochs", default=demo_default("guide_epochs"), show_default=True, help="Epochs per guide.")
@click.option("--invert-steps", default=demo_default("invert_steps"), show_default=True, help="Steps per image.")
@click.option("--invert-space", type=click.Choice(["w", "w+", "z"]), default=demo_default("invert_space"),
              show_default=True, help="Inversion space of the training images.")  # fmt: skip
@click.option("--k", default=demo_default("k"), show_default=True, help="k-same: minimum patients per group.")
@click.option("--per-label", default=demo_default("per_label"), show_default=True, help="Synthetic images per label.")
@click.option("--optim-steps", default=demo_default("optim_steps"), show_default=True, help="PLAN steps per path.")
@click.option("--privacy-weight", default=demo_default("privacy_weight"), show_default=True,
              help="PLAN's weight of the identity term (equidistance and class: 1).")  # fmt: skip
@click.option("--eval-epochs", default=demo_default("eval_epochs"), show_default=True,
              help="Epochs of the evaluation's classifiers.")  # fmt: skip
@click.option("--seed", default=demo_default("seed"), show_default=True, help="Seed of every stage.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.pass_context
def demo(
    ctx,
    kind,
    out,
    overwrite,
    patients,
    guide_epochs,
    invert_steps,
    invert_space,
    k,
    per_label,
    optim_steps,
    privacy_weight,
    eval_epochs,
    seed,
    device,
):
    """Run the main job on the embedded phantom data, offline.

    \b
    phantom dataset -> demo generator -> guides -> inversion -> k-same -> PLAN generation
    (privacy-gated) -> straight-line baseline -> walk picture -> evaluation -> OUT/report.md
    """
    from latentwalk.demo import DemoConfig, run_demo

    cfg = DemoConfig(kind=kind, patients=patients, guide_epochs=guide_epochs, invert_steps=invert_steps,
                     invert_space=invert_space, k=k, per_label=per_label, optim_steps=optim_steps,
                     privacy_weight=privacy_weight, eval_epochs=eval_epochs, seed=seed, device=device)  # fmt: skip
    run_demo(out, cfg, overwrite=overwrite, progress=progress(ctx), echo=click.echo)
