"""``latentwalk ksame``: k-same groups of inverted real latents, their centroids and the k check."""

from __future__ import annotations

import json
from pathlib import Path

import click

from latentwalk.cli.common import (
    GAN_SPEC_HELP,
    dataset_option,
    field_default_lazy,
)


@click.command("ksame")
@click.option("--gan", "spec", required=True, help="The generator the latents were inverted with. " + GAN_SPEC_HELP)
@dataset_option
@click.option(
    "--latents",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Inverted real latents (latentwalk gan invert).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Centroids file (.safetensors); the grouping summary and the k check are written beside it as .json.",
)
@click.option(
    "--k",
    default=field_default_lazy("KSameConfig", "k", "latentwalk.ksame"),
    show_default=True,
    help="Minimum patients per group.",
)
@click.option(
    "--method",
    type=click.Choice(["greedy", "kmeans"]),
    default=field_default_lazy("KSameConfig", "method", "latentwalk.ksame"),
    show_default=True,
    help="greedy (k-SALSA's grouping) or kmeans (size-constrained).",
)
@click.option(
    "--spread",
    type=click.Choice(["mean", "restore"]),
    default=field_default_lazy("KSameConfig", "spread", "latentwalk.ksame"),
    show_default=True,
    help="Centroid = the mean, or the mean pushed out to the members' typical distance from it.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--overwrite", is_flag=True, help="Replace an existing centroids file that latentwalk wrote.")
def ksame_command(spec, data_dir, layout, latents, out, k, method, spread, device, overwrite):
    """Group inverted real latents into k-same groups, check k, write their centroids.

    \b
    Every group holds at least k distinct patients; every patient is in exactly one group. No identity, path or
    membership is written, yet the centroids derive from real images: keep them private.
    Example:
      latentwalk ksame --gan demo:cxr --data data/cxr --latents lat.safetensors --k 5 --out ksame.safetensors
    """

    import gan_zoo
    from latentwalk.data import open_dataset
    from latentwalk.devices import resolve_device
    from latentwalk.ksame import KSameConfig, write_ksame

    cfg = KSameConfig(k=k, method=method, spread=spread)
    index = open_dataset(data_dir, layout=layout)
    G = gan_zoo.load(spec, device=resolve_device(device))
    path = write_ksame(latents, G, index, cfg, out, overwrite=overwrite)
    info = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    grouping, check = info["grouping"], info["k_check"]
    click.echo(
        f"wrote {grouping['n_groups']} k-same centroids ({info['space']}) to {path}; k={check['k']} checked: every "
        f"group holds >= {check['min_patients_per_group']} patients"
    )
