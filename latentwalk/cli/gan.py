"""``latentwalk gan``: train, convert, inspect, sample and invert generators."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import click

from latentwalk.cli.common import (
    GAN_SPEC_HELP,
    Group,
    dataset_option,
    field_default,
    progress,
)
from latentwalk.errors import ConfigError


@click.group(cls=Group)
def gan() -> None:
    """Train, convert, inspect and invert generators."""


def _train_config_options(fn):
    from gan_zoo.train import TrainConfig

    d = lambda name: field_default(TrainConfig, name)  # noqa: E731
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


@gan.command("train")
@dataset_option
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
    images, labels = load_tensors(index, cfg.resolution, progress=progress(ctx))
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
        progress=progress(ctx),
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
@click.argument("pickle_path", metavar="PATH.pkl|PATH.pt", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option(
    "--key",
    type=click.Choice(["G_ema", "G"]),
    default="G_ema",
    show_default=True,
    help="Which generator of the pickle (g_ema or g of a rosinality .pt checkpoint).",
)
@click.option("--overwrite", is_flag=True, help="Replace an earlier latentwalk output in --out.")
def gan_convert(pickle_path, out, key, overwrite):
    """Convert a StyleGAN2-ADA or StyleGAN3 pickle, or a rosinality stylegan2-pytorch .pt checkpoint, to
    safetensors + JSON, without their code and without running the file.

    \b
    Examples:
      latentwalk gan convert network-snapshot-001000.pkl --out models/cxr
      latentwalk gan convert checkpoint/050000.pt --out models/fundus     # rosinality stylegan2-pytorch
      latentwalk gan info lite:models/cxr
    """

    from gan_zoo.checkpoint import save_generator
    from gan_zoo.nvidia import load_stylegan_pickle
    from gan_zoo.rosinality import is_rosinality_file, load_rosinality
    from latentwalk.io import sha256_file
    from latentwalk.outputs import claim_dir, staged_dir

    claim_dir(out, overwrite=overwrite, inputs={"pickle": pickle_path})
    if is_rosinality_file(pickle_path):
        key = {"G_ema": "g_ema", "G": "g"}[key]
        G = load_rosinality(pickle_path, key=key)
        source = {"source": "rosinality stylegan2-pytorch checkpoint", "rosinality": G.source_info["config"]}
    else:
        G = load_stylegan_pickle(pickle_path, key=key)
        source = {"source": "stylegan2-ada pickle"}
        if getattr(G, "family", None) == "stylegan3":  # NVlabs/stylegan3 config t or r
            source = {"source": "stylegan3 pickle", "stylegan3": G.source_info["config"]}
    digest = sha256_file(pickle_path)
    with staged_dir(out, "gan convert", overwrite=overwrite, inputs={"pickle": pickle_path}) as stage:
        save_generator(
            G, stage / "generator", {**source, "key": key, "source_file": pickle_path.name, "source_sha256": digest}
        )
    weights = out / "generator.safetensors"
    click.echo(
        f"wrote {weights} and {weights.with_suffix('.json')} ({G.img_resolution} px, {G.img_channels} "
        f"channel(s), num_ws {G.num_ws}); load it with lite:{out}"
    )


@gan.command("info")
@click.argument("spec")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def gan_info(spec, as_json):
    """Load a generator and print what it is (latent sizes, resolution, channels, parameters).

    SPEC is demo:cxr, demo:fundus, lite:PATH, stylegan:PATH.pkl, module:pkg.mod:factory, rosinality:PATH.pt, or a
    path. Loaders that know more about the source (e.g. rosinality:) add its family and config.
    """
    import gan_zoo

    G = gan_zoo.load(spec)
    info = gan_zoo.describe(G)
    info.update(getattr(G, "source_info", None) or {})  # {"family": ..., "config": {...}} where the loader sets it
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True))
    else:
        rows = [(f"{k}.{sub}", v) for k, d in info.items() if isinstance(d, dict) for sub, v in d.items()]
        rows = [(k, v) for k, v in info.items() if not isinstance(v, dict)] + rows
        width = max(16, *(len(k) for k, _ in rows))
        click.echo("\n".join(f"{k:{width}s} {v}" for k, v in rows))


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
@dataset_option
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
        path = invert_dataset(G, index, out, cfg, progress=progress(ctx), overwrite=overwrite)
    _, _, meta = load_latents(path)
    errors = [item["mse"] for item in meta["items"].values()] if isinstance(meta.get("items"), dict) else []
    mean = f", mean pixel MSE {sum(errors) / len(errors):.4f}" if errors else ""
    click.echo(f"wrote {len(index)} latents ({space}) to {path}{mean}; perceptual term: {meta['perceptual_used']}")
