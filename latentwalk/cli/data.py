"""``latentwalk data``: make, check, split and prepare image datasets."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from latentwalk.cli.common import (
    DEFAULT_FRACTIONS_TEXT,
    Group,
    floats,
    kind_option,
    progress,
)


@click.group(cls=Group)
def data() -> None:
    """Make, check, split and prepare image datasets."""


def _layout_options(fn):
    """Options shared by every command that reads a dataset in any supported layout."""
    from latentwalk.data.layouts import LAYOUTS

    options = [
        click.option(
            "--layout",
            type=click.Choice(["auto", *LAYOUTS]),
            default="auto",
            show_default=True,
            help="How the folder is organised; auto detects it.",
        ),
        click.option(
            "--csv",
            "csv_path",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Layout csv: the metadata CSV.",
        ),
        click.option(
            "--image-dir",
            type=click.Path(exists=True, file_okay=False, path_type=Path),
            help="Layout csv: folder the file names are relative to "
            "(default: PATH when it is a folder, else the CSV's folder).",
        ),
        click.option("--file-column", default="file", show_default=True, help="Layout csv: column with file names."),
        click.option("--label-column", default="label", show_default=True, help="Layout csv: column with labels."),
        click.option("--identity-column", default=None, help="Layout csv: column with patient ids (none if absent)."),
        click.option(
            "--labels",
            default=None,
            metavar="A,B,...",
            help="Layout csv: the declared label values, in class order; others are an error.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _open(path: Path, layout: str, csv_path, image_dir, file_column, label_column, identity_column, labels):
    from latentwalk.data.layouts import open_dataset

    return open_dataset(
        path,
        layout=layout,
        csv_path=csv_path,
        image_dir=image_dir,
        file_column=file_column,
        label_column=label_column,
        identity_column=identity_column,
        labels=None if labels is None else tuple(x.strip() for x in labels.split(",")),
    )


@data.command("phantoms")
@kind_option("cxr: 1-channel chest X-rays, TB vs normal; fundus: RGB fundus photographs, DR grade 0-4.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--identities", default=100, show_default=True, help="Number of synthetic patients.")
@click.option("--per-identity", default=4, show_default=True, help="Images per patient (1 = one per patient).")
@click.option("--resolution", default=64, show_default=True, help="Image side in pixels (32-256).")
@click.option(
    "--class-weights",
    default=None,
    metavar="W0,W1,...",
    help="Relative label frequency over patients (cxr: 2 values, fundus: 5). Default: balanced.",
)
@click.option(
    "--split",
    "split_text",
    default=DEFAULT_FRACTIONS_TEXT,
    show_default=True,
    metavar="TRAIN,VAL,TEST",
    help="Fractions of patients per split (identity-disjoint, label-stratified).",
)
@click.option("--seed", default=0, show_default=True, help="Same seed, same files, byte for byte.")
@click.option("--overwrite", is_flag=True, help="Replace the output folder if it is not empty.")
@click.pass_context
def data_phantoms(ctx, kind, out, identities, per_identity, resolution, class_weights, split_text, seed, overwrite):
    """Write a procedural phantom dataset (the embedded default) in latentwalk's own format.

    \b
    Examples:
      latentwalk data phantoms --kind cxr --out data/cxr
      latentwalk data phantoms --kind fundus --out data/dr --identities 300 --per-identity 2 --resolution 128
    """
    from latentwalk.data.phantoms import PhantomConfig, write_phantom_dataset

    cfg = PhantomConfig(
        kind=kind,
        identities=identities,
        per_identity=per_identity,
        resolution=resolution,
        class_weights=None if class_weights is None else floats(class_weights, "--class-weights"),
        seed=seed,
        split=floats(split_text, "--split"),
    )
    start = time.perf_counter()
    index = write_phantom_dataset(cfg, out, overwrite=overwrite, progress=progress(ctx))
    counts = ", ".join(f"{k}={v}" for k, v in index.label_counts().items())
    click.echo(
        f"wrote {len(index)} {kind} phantoms of {identities} patients to {out} "
        f"in {time.perf_counter() - start:.1f}s ({counts})"
    )


@data.command("check")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@_layout_options
@click.option("--no-images", is_flag=True, help="Check the metadata only; do not open every image.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def data_check(
    ctx, path, layout, csv_path, image_dir, file_column, label_column, identity_column, labels, no_images, as_json
):
    """Validate a dataset and print a summary; exit code 0 when usable, 2 with the error otherwise.

    \b
    Examples:
      latentwalk data check data/cxr
      latentwalk data check ~/datasets/ChinaSet_AllFiles          # Shenzhen, detected from CXR_png/
      latentwalk data check ~/aptos --layout aptos --json
      latentwalk data check . --layout csv --csv labels.csv --file-column path --label-column dx
    """
    from latentwalk.data.validate import check_images, format_summary, summarize

    index = _open(path, layout, csv_path, image_dir, file_column, label_column, identity_column, labels)
    check = None if no_images else check_images(index, progress=progress(ctx))
    summary = summarize(index, check)
    click.echo(json.dumps(summary, indent=2, sort_keys=True) if as_json else format_summary(summary))


@data.command("split")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@_layout_options
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="CSV to write (file,split)."
)
@click.option(
    "--fractions",
    default=DEFAULT_FRACTIONS_TEXT,
    show_default=True,
    metavar="TRAIN,VAL,TEST",
    help="Fractions of patients per split.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the split.")
@click.option("--overwrite", is_flag=True, help="Replace a CSV that latentwalk wrote earlier.")
def data_split(
    path, layout, csv_path, image_dir, file_column, label_column, identity_column, labels, out, fractions, seed,
    overwrite,
):  # fmt: skip
    """Write an identity-disjoint, label-stratified train/val/test split of a dataset as a CSV (outside it)."""
    from latentwalk.data.splits import assign_splits, write_splits
    from latentwalk.outputs import claim_file, record_file

    claim_file(out, overwrite=overwrite, inputs={"dataset": path, "metadata CSV": csv_path, "image folder": image_dir})
    index = _open(path, layout, csv_path, image_dir, file_column, label_column, identity_column, labels)
    index = assign_splits(index, fractions=floats(fractions, "--fractions"), seed=seed)
    write_splits(index, out)
    record_file(out)
    per_split = {s: sum(c.values()) for s, c in index.split_counts().items()}
    click.echo(f"wrote {out}: " + ", ".join(f"{s}={n}" for s, n in per_split.items()))
