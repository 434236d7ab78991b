"""The ``latentwalk`` command line: a thin click layer over the Python API.

Every command builds a configuration, calls the library and prints where things went. Errors meant for users
(:class:`latentwalk.errors.LatentwalkError`) become one ``Error:`` line and exit code 2; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import fields
from pathlib import Path

import click

from latentwalk import __version__
from latentwalk.data.splits import DEFAULT_FRACTIONS
from latentwalk.errors import ConfigError, LatentwalkError
from latentwalk.spaces import GATE_SPACES

EXIT_USER_ERROR = 2


class UserError(click.ClickException):
    """A :class:`LatentwalkError` shown as one line, without a traceback."""

    exit_code = EXIT_USER_ERROR


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LatentwalkError as err:
            if ctx.meta.get("latentwalk.debug"):
                raise
            raise UserError(str(err)) from err


class _Cli(_Group):
    """The top-level group: every error a user can cause, usage errors included, is one ``Error:`` line on stderr
    with exit code 2 (click's own usage errors print three lines)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except getattr(click.exceptions, "NoArgsIsHelpError", ()) as e:  # bare `latentwalk`: the help, as before
            click.echo(e.format_message())
            sys.exit(0)
        except click.UsageError as e:
            where = f"; see '{e.ctx.command_path} --help'" if e.ctx is not None else ""
            message = e.format_message().replace("\n", " ").rstrip(".")
            click.echo(f"Error: {message}{where}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _progress(ctx: click.Context) -> bool:
    """Progress bars only for a person watching: not with ``--quiet``, not when stderr is not a terminal."""
    return not ctx.meta.get("latentwalk.quiet", False) and sys.stderr.isatty()


_DEFAULT_FRACTIONS = ",".join(f"{f:g}" for f in DEFAULT_FRACTIONS)  # "0.7,0.1,0.2", from latentwalk.data.splits


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f'{name} must be comma-separated numbers such as "0.7,0.1,0.2", got "{text}"') from None


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="latentwalk")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """Anonymised synthetic medical image datasets from a privacy-preserving walk in a GAN's latent space.

    \b
    Start with:
      latentwalk demo                      # the whole job on the embedded phantom data
      latentwalk data phantoms --kind cxr --out data/cxr
      latentwalk data check data/cxr
    """
    ctx.meta["latentwalk.debug"] = debug
    ctx.meta["latentwalk.quiet"] = quiet


# ----------------------------------------------------------------------------------------------------------------
# data


@cli.group(cls=_Group)
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


def _kind_option(help_text: str):
    """``--kind cxr|fundus``, the embedded default datasets."""
    from latentwalk.data.phantoms import KINDS

    return click.option("--kind", type=click.Choice(list(KINDS)), default="cxr", show_default=True, help=help_text)


@data.command("phantoms")
@_kind_option("cxr: 1-channel chest X-rays, TB vs normal; fundus: RGB fundus photographs, DR grade 0-4.")
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
    default=_DEFAULT_FRACTIONS,
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
        class_weights=None if class_weights is None else _floats(class_weights, "--class-weights"),
        seed=seed,
        split=_floats(split_text, "--split"),
    )
    start = time.perf_counter()
    index = write_phantom_dataset(cfg, out, overwrite=overwrite, progress=_progress(ctx))
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
    check = None if no_images else check_images(index, progress=_progress(ctx))
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
    default=_DEFAULT_FRACTIONS,
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
    index = assign_splits(index, fractions=_floats(fractions, "--fractions"), seed=seed)
    write_splits(index, out)
    record_file(out)
    per_split = {s: sum(c.values()) for s, c in index.split_counts().items()}
    click.echo(f"wrote {out}: " + ", ".join(f"{s}={n}" for s, n in per_split.items()))


# ----------------------------------------------------------------------------------------------------------------
# gan


def _field_default(cls, name: str):
    """The default of a config dataclass field, so that CLI and API defaults cannot drift."""
    return next(f.default for f in fields(cls) if f.name == name)


def _demo_default(name: str):
    from latentwalk.demo import DemoConfig

    return _field_default(DemoConfig, name)


def _field_default_lazy(cls_name: str, name: str, module: str = "latentwalk.guides"):
    """Like :func:`_field_default` for a config class of ``module``, imported when the CLI is built."""
    import importlib

    return _field_default(getattr(importlib.import_module(module), cls_name), name)


@cli.group(cls=_Group)
def gan() -> None:
    """Train, convert, inspect and invert generators."""


def _train_config_options(fn):
    from gan_zoo.train import TrainConfig

    d = lambda name: _field_default(TrainConfig, name)  # noqa: E731
    options = [
        click.option("--resolution", default=d("resolution"), show_default=True, help="Training resolution (px)."),
        click.option("--kimg", default=d("kimg"), show_default=True, help="Length: thousands of real images shown."),
        click.option("--batch", default=d("batch"), show_default=True, help="Images per step."),
        click.option("--seed", default=d("seed"), show_default=True, help="Seed of the whole run."),
        click.option("--lr", default=d("lr"), show_default=True, help="Adam learning rate of G and D."),
        click.option(
            "--channel-base",
            default=d("channel_base"),
            show_default=True,
            help="Feature maps at resolution r: min(channel_base / r, channel_max).",
        ),
        click.option("--channel-max", default=d("channel_max"), show_default=True, help="Cap on feature maps."),
        click.option("--z-dim", default=d("z_dim"), show_default=True, help="Latent z size."),
        click.option("--w-dim", default=d("w_dim"), show_default=True, help="Latent w size."),
        click.option("--conditional", is_flag=True, help="Class-conditional generator (c_dim = number of labels)."),
        click.option("--augment", default=d("augment"), show_default=True, help="DiffAugment policy, or none."),
        click.option(
            "--snapshot-kimg",
            default=d("snapshot_kimg"),
            show_default=True,
            help="Save generator, state and samples this often.",
        ),
        click.option(
            "--split",
            "split_name",
            type=click.Choice(["train", "val", "test", "all"]),
            default="train",
            show_default=True,
            help="Which split of the dataset to train on.",
        ),
        click.option(
            "--fp16-res",
            default=d("fp16_res"),
            show_default=True,
            help="Highest-resolution blocks run in float16 (CUDA only).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _dataset_option(fn):
    """``--data DIR`` and ``--layout`` for commands that read one dataset."""
    fn = click.option(
        "--layout", default="auto", show_default=True, help="Dataset layout (see latentwalk data check)."
    )(fn)
    return click.option(
        "--data",
        "data_dir",
        required=True,
        type=click.Path(exists=True, path_type=Path),
        help="Dataset folder (any supported layout).",
    )(fn)


@gan.command("train")
@_dataset_option
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Run folder.")
@_train_config_options
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last snapshot.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier run in --out.")
@click.option("--init", "init_spec", default=None, metavar="SPEC",
              help="Start G from this generator (fine-tuning; e.g. demo:cxr into a --conditional run).")  # fmt: skip
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.pass_context
def gan_train(ctx, data_dir, layout, out, resume, overwrite, init_spec, device, split_name, **options):
    """Train the built-in StyleGAN2 generator on a dataset.

    \b
    Examples:
      latentwalk gan train --data data/cxr --out runs/cxr --kimg 200
      latentwalk gan train --data data/cxr --out runs/cxr --kimg 400 --resume     # longer, from the last snapshot
    """
    from gan_zoo.train import TrainConfig, train_gan
    from latentwalk.data import load_tensors, open_dataset
    from latentwalk.devices import resolve_device
    from latentwalk.outputs import claim_dir

    cfg = TrainConfig(**options, split=None if split_name == "all" else split_name)
    claim_dir(out, overwrite=overwrite, inputs={"dataset": data_dir}, resumable="gan train", resume=resume)
    index = open_dataset(data_dir, layout=layout)
    if cfg.split is not None:
        if all(r.split is None for r in index.records):
            raise ConfigError(
                f"{data_dir} has no split column, so --split {cfg.split} selects nothing; write splits with "
                f"latentwalk data split, or pass --split all"
            )
        index = index.subset(cfg.split)
    images, labels = load_tensors(index, cfg.resolution, progress=_progress(ctx))
    init = None
    if init_spec is not None:
        import gan_zoo

        init = gan_zoo.load(init_spec)
    click.echo(f"training on {len(images)} images ({cfg.split or 'all splits'}) at {cfg.resolution} px -> {out}")
    result = train_gan(
        images,
        labels,
        out,
        cfg,
        n_labels=len(index.label_names),
        device=resolve_device(device),
        resume=resume,
        overwrite=overwrite,
        init_from=init,
        progress=_progress(ctx),
        provenance={
            "label_names": list(index.label_names),
            "channels": int(images.shape[1]),
            **({"init_from": init_spec} if init_spec else {}),
        },  # fmt: skip
    )
    click.echo(
        f"generator at {result.generator} ({result.kimg:.1f} kimg, {result.seconds:.0f}s); samples in {out / 'samples'}"
    )


@gan.command("convert")
@click.argument("pickle_path", metavar="PATH.pkl", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option(
    "--key",
    type=click.Choice(["G_ema", "G"]),
    default="G_ema",
    show_default=True,
    help="Which generator of the pickle.",
)
@click.option("--overwrite", is_flag=True, help="Replace an earlier latentwalk output in --out.")
def gan_convert(pickle_path, out, key, overwrite):
    """Convert a StyleGAN2-ADA pickle to safetensors + JSON, without NVIDIA's code and without running the file.

    \b
    Example:
      latentwalk gan convert network-snapshot-001000.pkl --out models/cxr
      latentwalk gan info lite:models/cxr
    """

    from gan_zoo.checkpoint import save_generator
    from gan_zoo.nvidia import load_stylegan_pickle
    from latentwalk.io import sha256_file
    from latentwalk.outputs import claim_dir, staged_dir

    claim_dir(out, overwrite=overwrite, inputs={"pickle": pickle_path})
    G = load_stylegan_pickle(pickle_path, key=key)
    digest = sha256_file(pickle_path)
    with staged_dir(out, "gan convert", overwrite=overwrite, inputs={"pickle": pickle_path}) as stage:
        save_generator(
            G,
            stage / "generator",
            {"source": "stylegan2-ada pickle", "key": key, "source_file": pickle_path.name, "source_sha256": digest},
        )
    weights = out / "generator.safetensors"
    click.echo(
        f"wrote {weights} and {weights.with_suffix('.json')} ({G.img_resolution} px, {G.img_channels} "
        f"channel(s), num_ws {G.num_ws}); load it with lite:{out}"
    )


GAN_SPEC_HELP = "Generator: demo:cxr, demo:fundus, lite:PATH, stylegan:PATH.pkl, module:pkg.mod:factory, or a path."


@gan.command("info")
@click.argument("spec")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def gan_info(spec, as_json):
    """Load a generator and print what it is (latent sizes, resolution, channels, parameters).

    SPEC is demo:cxr, demo:fundus, lite:PATH, stylegan:PATH.pkl, module:pkg.mod:factory, or a path.
    """
    import gan_zoo

    info = gan_zoo.describe(gan_zoo.load(spec))
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True))
    else:
        click.echo("\n".join(f"{k:16s} {v}" for k, v in info.items()))


@gan.command("sample")
@click.option("--gan", "spec", required=True, help=GAN_SPEC_HELP)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="PNG grid to write.")
@click.option("--n", "count", default=32, show_default=True, help="Number of samples.")
@click.option("--seed", default=0, show_default=True, help="Seed of the latents.")
@click.option("--truncation", default=1.0, show_default=True, help="Truncation psi (1 = off).")
@click.option("--label", default=None, type=int, help="Class index for a conditional generator (default: cycle).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--overwrite", is_flag=True, help="Replace a grid that latentwalk wrote earlier.")
def gan_sample(spec, out, count, seed, truncation, label, device, overwrite):
    """Write a grid of samples from a generator (same seed, same picture)."""
    import gan_zoo
    from gan_zoo.sampling import sample_images, save_grid
    from latentwalk.outputs import claim_file, record_file

    claim_file(out, overwrite=overwrite)

    G = gan_zoo.load(spec, device=device)
    images = sample_images(G, count, seed=seed, truncation_psi=truncation, label=label)
    save_grid(images, out, nrow=min(8, count))
    record_file(out)
    click.echo(f"wrote {count} samples of {spec} to {out}")


@gan.command("invert")
@click.option("--gan", "spec", required=True, help=GAN_SPEC_HELP)
@_dataset_option
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Latents file (.safetensors); a .json with errors and labels is written beside it.",
)
@click.option(
    "--split",
    "split_name",
    type=click.Choice(["train", "val", "test", "all"]),
    default="all",
    show_default=True,
    help="Which split to invert.",
)
@click.option(
    "--space",
    type=click.Choice(["w", "w+", "z"]),
    default="w",
    show_default=True,
    help="Latent space; z keeps each latent on the mapping network's output (with the label, for a conditional G).",
)
@click.option("--steps", default=300, show_default=True, help="Optimisation steps per image.")
@click.option("--batch", default=32, show_default=True, help="Images optimised together (speed only).")
@click.option(
    "--perceptual",
    type=click.Choice(["auto", "lpips-vgg", "lpips-alex", "ms-gradient", "none"]),
    default="auto",
    show_default=True,
    help="Perceptual loss; auto = LPIPS VGG when its backbone weights are found, else ms-gradient.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the latent noise.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--overwrite", is_flag=True, help="Replace an existing latents file.")
@click.pass_context
def gan_invert(ctx, spec, data_dir, layout, out, split_name, space, steps, batch, perceptual, seed, device, overwrite):
    """Project a dataset's images into the generator's W (or W+) space, resumably.

    \b
    Rerunning the same command after an interruption continues from the last finished batch.
    Example:
      latentwalk gan invert --gan demo:cxr --data data/cxr --split train --out latents/cxr-train.safetensors
    """
    import gan_zoo
    from gan_zoo.invert import InvertConfig
    from latentwalk.data import open_dataset
    from latentwalk.devices import resolve_device
    from latentwalk.invert import invert_dataset, load_latents

    cfg = InvertConfig(space=space, steps=steps, batch=batch, perceptual=perceptual, seed=seed)
    index = open_dataset(data_dir, layout=layout)
    if split_name != "all":
        index = index.subset(split_name)
    if len(index) == 0:
        raise ConfigError(f"no images in split {split_name} of {data_dir}; pass --split all or write splits first")
    G = gan_zoo.load(spec, device=resolve_device(device))
    with warnings.catch_warnings():  # the perceptual term actually used is printed below
        warnings.simplefilter("ignore", UserWarning)
        path = invert_dataset(G, index, out, cfg, progress=_progress(ctx), overwrite=overwrite)
    _, _, meta = load_latents(path)
    errors = [item["mse"] for item in meta["items"].values()] if isinstance(meta.get("items"), dict) else []
    mean = f", mean pixel MSE {sum(errors) / len(errors):.4f}" if errors else ""
    click.echo(f"wrote {len(index)} latents ({space}) to {path}{mean}; perceptual term: {meta['perceptual_used']}")


# ----------------------------------------------------------------------------------------------------------------
# guides


@cli.group(cls=_Group)
def guides() -> None:
    """Train the identity and class classifiers that steer PLAN paths."""


@guides.command("train")
@_dataset_option
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
    default=_field_default_lazy("GuideConfig", "arch"),
    show_default=True,
    help="cnn: compact, fast on CPU; resnet18: torchvision ResNet-18.",
)
@click.option(
    "--epochs", default=_field_default_lazy("GuideConfig", "epochs"), show_default=True, help="Epochs per model."
)
@click.option("--seed", default=_field_default_lazy("GuideConfig", "seed"), show_default=True, help="Seed.")
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
        progress=_progress(ctx),
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
        f"  class accuracy on validation patients: {fmt(klass.get('val_accuracy'))} "
        f"(balanced {fmt(klass.get('val_balanced_accuracy'))})"
    )


# ----------------------------------------------------------------------------------------------------------------
# ksame


@cli.command("ksame")
@click.option("--gan", "spec", required=True, help="The generator the latents were inverted with. " + GAN_SPEC_HELP)
@_dataset_option
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
    default=_field_default_lazy("KSameConfig", "k", "latentwalk.ksame"),
    show_default=True,
    help="Minimum patients per group.",
)
@click.option(
    "--method",
    type=click.Choice(["greedy", "kmeans"]),
    default=_field_default_lazy("KSameConfig", "method", "latentwalk.ksame"),
    show_default=True,
    help="greedy (k-SALSA's grouping) or kmeans (size-constrained).",
)
@click.option(
    "--spread",
    type=click.Choice(["mean", "restore"]),
    default=_field_default_lazy("KSameConfig", "spread", "latentwalk.ksame"),
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
    import json

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


# ----------------------------------------------------------------------------------------------------------------
# generate and walk

_GENERATE_HELP = {
    "gan": GAN_SPEC_HELP,
    "guides": "Guides folder (latentwalk guides train). Required.",
    "data": "The real dataset the guides were trained on (labels, patients, gate reference). Required.",
    "layout": "Dataset layout (see latentwalk data check).",
    "latents": "Inverted real latents (latentwalk gan invert); ksame and ksame-plan need them.",
    "method": "linear, plan, ksame (one image per k-same group) or ksame-plan (PLAN between k-same centroids).",
    "per_label": "Images wanted per label.",
    "n_steps": "Points per path, endpoints included.",
    "keep": 'Points written: "interior", "all" or indices such as "1,3,5".',
    "paths_per_item": "Paths optimised together in one resumable work item (ksame: groups per item).",
    "seed": "Seed; every work item's seed derives from it.",
    "truncation_psi": "linear/plan: truncation of the sampled endpoints (1 = off).",
    "endpoint_filter": "linear/plan: keep only drawn endpoints that the class guide assigns to the label.",
    "optim_steps": "plan/ksame-plan: Adam steps per path (PLAN's reference uses 500).",
    "lr": "plan/ksame-plan: Adam learning rate.",
    "weights": "plan/ksame-plan: loss weights privacy,equidistance,class.",
    "chunk": "Images per synthesis + classifier pass [default: 64 on CPU, sized to free memory on CUDA].",
    "k": "ksame/ksame-plan: minimum patients per group.",
    "ksame_method": "ksame/ksame-plan: greedy (k-SALSA) or kmeans.",
    "ksame_spread": "ksame/ksame-plan: centroid = mean, or restore (members' typical distance from the mean).",
    "gate_space": "Nearest-real distance space of the privacy gate: identity, lpips or ssim.",
    "gate_threshold": "Reject candidates closer than this [default: derived from the real data].",
    "gate_percentile": "Derived threshold: this percentile of real nearest-other-patient distances.",
    "gate_split": "Real images the gate compares with: train or all.",
    "label_gate": "Write a candidate only when the class guide gives its label at least --label-threshold.",
    "label_threshold": "Label gate threshold (probability) [default: derived from the real validation split].",
    "label_percentile": "Derived label threshold: this percentile of real validation images' true-label probability.",
    "max_rounds": "Rounds of work items; later rounds top up labels short after gate rejections.",
    "device": "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.",
    "amp": "bfloat16 autocast for PLAN [default: on with CUDA].",
}
_GENERATE_CHOICES = {
    "method": ("linear", "plan", "ksame", "ksame-plan"),
    "gate_space": GATE_SPACES,
    "gate_split": ("train", "all"),
    "ksame_method": ("greedy", "kmeans"),
    "ksame_spread": ("mean", "restore"),
}
_GENERATE_TYPES = {
    "per_label": int, "n_steps": int, "paths_per_item": int, "seed": int, "optim_steps": int, "chunk": int, "k": int,
    "max_rounds": int, "truncation_psi": float, "lr": float, "gate_threshold": float, "gate_percentile": float,
    "label_threshold": float, "label_percentile": float,
}  # fmt: skip


def _generate_options(fn):
    """One flag per GenerateConfig field, default None (unset): flags override the TOML file, which overrides the
    dataclass defaults shown in the help."""
    from latentwalk.pipeline import GenerateConfig

    for f in reversed(fields(GenerateConfig)):
        default = ",".join(f"{x:g}" for x in f.default) if isinstance(f.default, tuple) else f.default
        text = _GENERATE_HELP[f.name]
        if default not in (None, "") and "[default" not in text:
            text += f" [default: {default}]"
        if f.name in ("amp", "endpoint_filter", "label_gate"):
            flag = f.name.replace("_", "-")
            fn = click.option(f"--{flag}/--no-{flag}", f.name, default=None, help=text)(fn)
            continue
        kind = click.Choice(_GENERATE_CHOICES[f.name]) if f.name in _GENERATE_CHOICES else None
        kind = kind or _GENERATE_TYPES.get(f.name, str)
        fn = click.option("--" + f.name.replace("_", "-"), f.name, default=None, type=kind, help=text)(fn)
    return fn


def _generate_values(config_file: Path | None, options: dict) -> tuple[dict, Path | None]:
    """TOML values overridden by the flags that were given; ``out`` may come from the TOML file."""
    from latentwalk.pipeline import PATH_FIELDS, load_config_file, resolve_spec_path

    values = load_config_file(config_file) if config_file is not None else {}
    out = values.pop("out", None)
    if out is not None:
        out = Path(out) if Path(out).is_absolute() else config_file.parent / out
    for key, value in options.items():
        if value is None:
            continue
        if key == "weights":
            value = _floats(value, "--weights")
        elif key in PATH_FIELDS:
            value = str(Path(value).resolve())
        elif key == "gan":
            value = resolve_spec_path(value, Path.cwd())
        values[key] = value
    return values, out


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", "0"))


@cli.command("generate")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML run file: key = value lines with these options' names (and out = DIR); the PLAN, k-same and gate "
    "options in tables [plan], [ksame], [gate]; flags override it.",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder (or out in --config).")
@click.option("--overwrite", is_flag=True, help="Replace whatever --out holds.")
@_generate_options
@click.pass_context
def generate_cmd(ctx, config_file, out, overwrite, **options):
    """Generate an anonymised synthetic dataset; rerun the same command to resume after a crash.

    \b
    Writes OUT/images/<label>/<id>.png, manifest.csv, run.json and DATASET_CARD.md. Every candidate
    image is compared with the real training images first and rejected when it is too close to one.
    Sharded: torchrun --nproc-per-node N -m latentwalk generate ... (each rank runs its share of the
    work items; rank 0 merges; the files equal a one-process run's).

    \b
    Example:
      latentwalk generate --gan demo:cxr --guides guides/cxr --data data/cxr \\
          --latents latents/cxr.safetensors --method ksame-plan --per-label 100 --out synth/cxr
    """
    from latentwalk.pipeline import GenerateConfig, generate

    values, toml_out = _generate_values(config_file, options)
    out = out or toml_out
    if out is None:
        raise ConfigError("no output folder: pass --out DIR or write out = DIR in the --config file")
    cfg = GenerateConfig.from_dict(values)
    lead = _rank() == 0
    echo = click.echo if lead else None
    result = generate(cfg, out, overwrite=overwrite, progress=_progress(ctx) and lead, echo=echo)
    if lead and not result.already_done:
        click.echo(f"dataset: {out / 'images'}; manifest.csv, run.json and DATASET_CARD.md beside it")


@cli.command("walk")
@click.option("--gan", "spec", required=True, help=GAN_SPEC_HELP)
@click.option("--guides", "guides_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Guides folder (latentwalk guides train).")  # fmt: skip
@_dataset_option
@click.option("--label", required=True, type=int, help="Class index of both endpoints.")
@click.option("--seed", default=0, show_default=True, help="Seed of the endpoint draw.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--n-steps", default=20, show_default=True, help="Points per path, endpoints included.")
@click.option("--optim-steps", default=200, show_default=True, help="PLAN's Adam steps.")
@click.option("--gate-space", type=click.Choice(GATE_SPACES), default="identity",
              show_default=True, help="Distance space of the plot.")  # fmt: skip
@click.option("--gate-percentile", default=5.0, show_default=True, help="Threshold line: this percentile of "
              "real nearest-other-patient distances.")  # fmt: skip
@click.option("--endpoint-filter/--no-endpoint-filter", default=True, show_default=True,
              help="Keep only drawn endpoints that the class guide assigns to --label.")  # fmt: skip
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier walk in --out.")
def walk_cmd(spec, guides_dir, data_dir, layout, label, seed, out, n_steps, optim_steps, gate_space,
             gate_percentile, endpoint_filter, device, overwrite):  # fmt: skip
    """One linear and one PLAN path between the same two endpoints: an image strip and a distance plot.

    \b
    Writes OUT/walk_strip.png (row 1 linear, row 2 PLAN), OUT/walk_distance.png (each point's distance
    to its nearest real image, with the gate threshold) and OUT/walk.json.
    """
    import gan_zoo
    from latentwalk.data import open_dataset
    from latentwalk.devices import resolve_device
    from latentwalk.gate import build_gate
    from latentwalk.guides import load_guides
    from latentwalk.outputs import claim_dir, staged_dir
    from latentwalk.paths import PlanConfig
    from latentwalk.pipeline import check_guides, real_reference
    from latentwalk.walk import compare_walks, save_walk

    inputs = {"dataset": data_dir, "guides": guides_dir}
    claim_dir(out, overwrite=overwrite, inputs=inputs)
    dev = resolve_device(device)
    G = gan_zoo.load(spec, device=dev)
    guides = load_guides(guides_dir, device=dev)
    index = open_dataset(data_dir, layout=layout)
    check_guides(guides, G, index)
    real, patients = real_reference(index, G)
    gate = build_gate(gate_space, real.to(dev), patients, guides=guides, percentile=gate_percentile)
    walk = compare_walks(G, guides, gate, label, seed=seed, n_steps=n_steps, endpoint_filter=endpoint_filter,
                         plan_cfg=PlanConfig(optim_steps=optim_steps))  # fmt: skip
    with staged_dir(out, "walk", overwrite=overwrite, inputs=inputs) as stage:
        files = {k: out / v.name for k, v in save_walk(walk, stage).items()}
    below = walk.to_dict()["below_threshold"]
    click.echo(
        f"points below the gate threshold {walk.threshold:.3g}: linear {below['linear']}, PLAN {below['plan']} "
        f"of {n_steps}; minimum distance linear {float(walk.distances['linear'].min()):.3g}, "
        f"PLAN {float(walk.distances['plan'].min()):.3g}"
    )
    click.echo(f"wrote {files['strip']}, {files['plot']} and {files['json']}")


# ----------------------------------------------------------------------------------------------------------------
# evaluate


def _eval_default(name: str):
    from latentwalk.evaluate.run import EvalConfig

    return _field_default(EvalConfig, name)


@cli.command("evaluate")
@click.option("--real", "real_dir", required=True, type=click.Path(exists=True, path_type=Path),
              help="The real dataset (train split = members, test split = held-out patients).")  # fmt: skip
@click.option("--synthetic", "syn_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A synthetic dataset (latentwalk generate output, or images/<label>/*.png).")  # fmt: skip
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Report folder.")
@click.option("--guides", "guides_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="Guides folder: adds the identity space and domain FID/PRDC.")  # fmt: skip
@click.option("--layout", default="auto", show_default=True, help="Layout of --real.")
@click.option("--spaces", default=",".join(_eval_default("spaces")), show_default=True,
              help="Distance spaces: identity, lpips, ssim, pixels (lpips needs AlexNet's weights).")  # fmt: skip
@click.option("--utility-epochs", default=_eval_default("utility_epochs"), show_default=True,
              help="Classifier epochs per seed (train on real / on synthetic).")  # fmt: skip
@click.option("--utility-seeds", default=",".join(map(str, _eval_default("utility_seeds"))), show_default=True,
              help="Seeds of the utility classifiers.")  # fmt: skip
@click.option("--reid-epochs", default=_eval_default("reid_epochs"), show_default=True,
              help="Epochs of the independent re-identification model.")  # fmt: skip
@click.option("--lpips-weights", default=None, type=click.Path(exists=True),
              help="alexnet-owt-7be5be79.pth (default: $LATENTWALK_WEIGHTS_DIR, then the torch cache).")  # fmt: skip
@click.option("--inception-weights", default=None, type=click.Path(exists=True),
              help="pt_inception-2015-12-05-6726825d.pth for FID/KID (default: search; absent = skipped).")  # fmt: skip
@click.option("--walk", "walk_dir", default=None, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Output of latentwalk walk: adds its linear-vs-PLAN distance plot.")  # fmt: skip
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier report in --out.")
@click.pass_context
def evaluate_cmd(ctx, real_dir, syn_dir, out, guides_dir, layout, spaces, utility_epochs, utility_seeds, reid_epochs,
                 lpips_weights, inception_weights, walk_dir, device, overwrite):  # fmt: skip
    """Score a synthetic dataset: privacy (near-copies, DCR, MIA, re-identification), fidelity, utility.

    \b
    Writes OUT/report.md, OUT/report.html (self-contained) and OUT/metrics.json. The report shows
    real images next to their nearest synthetic ones: keep it as private as the data.
    """
    from latentwalk.evaluate.run import EvalConfig, evaluate

    try:
        seeds = tuple(int(s) for s in utility_seeds.split(","))
    except ValueError:
        raise ConfigError(f'--utility-seeds must be integers such as "0,1,2", got "{utility_seeds}"') from None
    cfg = EvalConfig(
        guides=str(guides_dir) if guides_dir else None, layout=layout, spaces=tuple(spaces.split(",")),
        utility_epochs=utility_epochs, utility_seeds=seeds, reid_epochs=reid_epochs, lpips_weights=lpips_weights,
        inception_weights=inception_weights, device=device,
    )  # fmt: skip
    evaluate(real_dir, syn_dir, out, cfg, walk_dir=walk_dir, overwrite=overwrite, progress=_progress(ctx),
             echo=click.echo)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# weights


@cli.group(cls=_Group)
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
        path, fetched = fetch_weights(key, dest, progress=_progress(ctx))
        click.echo(f"{key}: {'downloaded' if fetched else 'already present'} {path}")


# ----------------------------------------------------------------------------------------------------------------
# demo


@cli.command("demo")
@_kind_option("cxr: tuberculosis X-rays; fundus: diabetic retinopathy.")
@click.option(
    "--out",
    default=Path("latentwalk-demo"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder (empty, absent, or an earlier demo with --overwrite).",
)
@click.option("--overwrite", is_flag=True, help="Replace an earlier demo in --out.")
@click.option("--patients", type=int, default=None, help="Phantom patients.  [default: 100 (cxr), 150 (fundus)]")
@click.option("--guide-epochs", default=_demo_default("guide_epochs"), show_default=True, help="Epochs per guide.")
@click.option("--invert-steps", default=_demo_default("invert_steps"), show_default=True, help="Steps per image.")
@click.option("--invert-space", type=click.Choice(["w", "w+", "z"]), default=_demo_default("invert_space"),
              show_default=True, help="Inversion space of the training images.")  # fmt: skip
@click.option("--k", default=_demo_default("k"), show_default=True, help="k-same: minimum patients per group.")
@click.option("--per-label", default=_demo_default("per_label"), show_default=True, help="Synthetic images per label.")
@click.option("--optim-steps", default=_demo_default("optim_steps"), show_default=True, help="PLAN steps per path.")
@click.option("--privacy-weight", default=_demo_default("privacy_weight"), show_default=True,
              help="PLAN's weight of the identity term (equidistance and class: 1).")  # fmt: skip
@click.option("--eval-epochs", default=_demo_default("eval_epochs"), show_default=True,
              help="Epochs of the evaluation's classifiers.")  # fmt: skip
@click.option("--seed", default=_demo_default("seed"), show_default=True, help="Seed of every stage.")
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
    run_demo(out, cfg, overwrite=overwrite, progress=_progress(ctx), echo=click.echo)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="latentwalk")


if __name__ == "__main__":
    main()
