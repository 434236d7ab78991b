"""``latentwalk guides``: train the identity and class classifiers that steer PLAN paths."""

from __future__ import annotations

from pathlib import Path

import click

from latentwalk.cli.common import (
    GAN_SPEC_HELP,
    Group,
    dataset_option,
    field_default_lazy,
    progress,
)
from latentwalk.errors import ConfigError


@click.group(cls=Group)
def guides() -> None:
    """Train the identity and class classifiers that steer PLAN paths."""


@guides.command("train")
@dataset_option
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Guides folder.")
@click.option(
    "--gan",
    "spec",
    default=None,
    help="Take resolution and channels from this generator (recommended). " + GAN_SPEC_HELP,
)
@click.option("--resolution", default=None, type=int, help="Input side in pixels (default: --gan's, or the images').")
@click.option(
    "--arch",
    type=click.Choice(["cnn", "resnet18"]),
    default=field_default_lazy("GuideConfig", "arch"),
    show_default=True,
    help="cnn: compact, fast on CPU; resnet18: torchvision ResNet-18.",
)
@click.option(
    "--epochs", default=field_default_lazy("GuideConfig", "epochs"), show_default=True, help="Epochs per model."
)
@click.option("--seed", default=field_default_lazy("GuideConfig", "seed"), show_default=True, help="Seed.")
@click.option(
    "--weights",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="resnet18 only: torchvision state_dict to start from.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out.")
@click.pass_context
def guides_train(ctx, data_dir, layout, out, spec, resolution, arch, epochs, seed, weights, device, overwrite):
    """Train φ_id (one class per training patient) and φ_class on the train split; print validation accuracy.

    \b
    Example:
      latentwalk guides train --data data/cxr --gan demo:cxr --out guides/cxr
    """
    from latentwalk.data import open_dataset
    from latentwalk.devices import resolve_device
    from latentwalk.guides import GuideConfig, train_guides

    cfg = GuideConfig(arch=arch, epochs=epochs, seed=seed, weights=weights)
    channels = None
    if spec is not None:
        import gan_zoo

        G = gan_zoo.load(spec)
        if resolution is not None and resolution != G.img_resolution:
            raise ConfigError(f"--resolution {resolution} differs from the generator's {G.img_resolution}; drop one")
        resolution, channels = G.img_resolution, G.img_channels
    index = open_dataset(data_dir, layout=layout)
    result = train_guides(
        index,
        out,
        cfg,
        resolution=resolution,
        channels=channels,
        device=resolve_device(device),
        overwrite=overwrite,
        progress=progress(ctx),
    )
    ident, klass = result.metrics["identity"], result.metrics["class"]

    def fmt(value) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    click.echo(
        f"wrote {out}: {result.contract.resolution} px, {result.contract.channels} channel(s), "
        f"{result.n_identities} identities, labels {', '.join(result.label_names)} ({result.seconds:.0f}s)"
    )
    click.echo(f"  identity accuracy on held-out images of training patients: {fmt(ident.get('val_accuracy'))}")
    click.echo(
        f"  class accuracy on validation patients: {fmt(klass.get('val_accuracy'))} (balanced "
        + (
            fmt(klass["val_balanced_accuracy"])
            if klass.get("val_balanced_accuracy") is not None
            else "n/a: fewer than two classes in validation"
            if klass.get("val_accuracy") is not None
            else "n/a"
        )
        + ")"
    )
