"""``latentwalk weights``: the only command that downloads (third-party weights, on request)."""

from __future__ import annotations

from pathlib import Path

import click

from latentwalk.cli.common import (
    Group,
    progress,
)


@click.group(cls=Group)
def weights() -> None:
    """Third-party weight files (LPIPS backbones, FID Inception): the only command that downloads."""


@weights.command("fetch")
@click.argument("names", nargs=-1, required=True, metavar="lpips-alex|lpips-vgg|inception|all ...")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write to [default: $LATENTWALK_WEIGHTS_DIR, else the torch hub cache].")  # fmt: skip
@click.pass_context
def weights_fetch(ctx, names, dest):
    """Download weight files into the cache that every command searches, checking their SHA-256.

    \b
    Examples:
      latentwalk weights fetch lpips-alex          # LPIPS gate and evaluation space
      latentwalk weights fetch all
    Offline: place the files there yourself, or set LATENTWALK_WEIGHTS_MIRROR to a mirror's base URL.
    """
    from latentwalk.weights import FETCH_NAMES, fetch_weights

    keys = sorted(FETCH_NAMES) if "all" in names else list(dict.fromkeys(names))
    for key in keys:
        path, fetched = fetch_weights(key, dest, progress=progress(ctx))
        click.echo(f"{key}: {'downloaded' if fetched else 'already present'} {path}")
