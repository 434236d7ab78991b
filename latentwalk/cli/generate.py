"""``latentwalk generate`` and ``latentwalk walk``."""

from __future__ import annotations

from pathlib import Path

import click

from latentwalk.cli.common import (
    GAN_SPEC_HELP,
    dataset_option,
    floats,
    progress,
)
from latentwalk.errors import ConfigError
from latentwalk.paths import INITS, SCHEDULES
from latentwalk.privacy_losses import PRIVACY_LOSSES
from latentwalk.spaces import GATE_SPACES

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
    "privacy_loss": "plan/ksame-plan: privacy term: kl_uniform (PLAN's KL to uniform), mi (plug-in mutual "
    "information, IRENE), verification (hinge on the identity guide's log-odds), hsic (unbiased HSIC).",
    "verification_margin": "privacy-loss verification: log-odds margin [default: log(1/(K-1)), chance for K patients].",
    "lr_schedule": "plan/ksame-plan: learning rate over the Adam steps: constant, or cosine (down to 0 at the last).",
    "warmup_steps": "plan/ksame-plan: Adam steps over which the learning rate rises linearly (0 = none).",
    "path_init": "plan/ksame-plan: the path the optimisation starts from: linear or slerp.",
    "early_stop_plateau": "plan/ksame-plan: stop a path once its loss fell by less than this fraction over the last "
    "50 steps (PLAN's log_every) [default: off].",
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
    "adversarial_rounds": "plan/ksame-plan: rounds of walking against an identity attacker fine-tuned on the walk's "
    "own images before the final generation (each one more generation plus a fine-tune; the gates keep the guides).",
    "adversarial_epochs": "Epochs of each adversarial round's attacker fine-tune.",
    "device": "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.",
    "amp": "bfloat16 autocast for PLAN [default: on with CUDA and on CPUs with native bfloat16 (AVX512-BF16, AMX)].",
}


_GENERATE_CHOICES = {
    "method": ("linear", "plan", "ksame", "ksame-plan"),
    "gate_space": GATE_SPACES,
    "gate_split": ("train", "all"),
    "ksame_method": ("greedy", "kmeans"),
    "ksame_spread": ("mean", "restore"),
    "privacy_loss": PRIVACY_LOSSES,
    "lr_schedule": SCHEDULES,
    "path_init": INITS,
}


_GENERATE_TYPES = {
    "per_label": int, "n_steps": int, "paths_per_item": int, "seed": int, "optim_steps": int, "chunk": int, "k": int,
    "max_rounds": int, "adversarial_rounds": int, "adversarial_epochs": int, "warmup_steps": int,
    "truncation_psi": float, "lr": float, "gate_threshold": float, "gate_percentile": float,
    "label_threshold": float, "label_percentile": float, "verification_margin": float, "early_stop_plateau": float,
}  # fmt: skip


def _generate_options(fn):
    """One flag per flat GenerateConfig option (``FLAT``), default None (unset): flags override the TOML file, which
    overrides the dataclass defaults shown in the help."""
    from latentwalk.pipeline import GenerateConfig

    for name, value in reversed(GenerateConfig().flat_options().items()):
        default = ",".join(f"{x:g}" for x in value) if isinstance(value, tuple) else value
        text = _GENERATE_HELP[name]
        if default not in (None, "") and "[default" not in text:
            text += f" [default: {default}]"
        if name in ("amp", "endpoint_filter", "label_gate"):
            flag = name.replace("_", "-")
            fn = click.option(f"--{flag}/--no-{flag}", name, default=None, help=text)(fn)
            continue
        kind = click.Choice(_GENERATE_CHOICES[name]) if name in _GENERATE_CHOICES else None
        kind = kind or _GENERATE_TYPES.get(name, str)
        fn = click.option("--" + name.replace("_", "-"), name, default=None, type=kind, help=text)(fn)
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
            value = floats(value, "--weights")
        elif key in PATH_FIELDS:
            value = str(Path(value).resolve())
        elif key == "gan":
            value = resolve_spec_path(value, Path.cwd())
        values[key] = value
    return values, out


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", "0"))


@click.command("generate")
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
@click.option(
    "--private-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of the private sidecar (the patients behind each image, for evaluate --private) "
    "[default: OUT.private]; never inside --out, and one per output folder. Do not share it.",
)
@click.pass_context
def generate_cmd(ctx, config_file, out, overwrite, private_dir, **options):
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
    result = generate(
        cfg, out, overwrite=overwrite, private_dir=private_dir, progress=progress(ctx) and lead, echo=echo
    )
    if lead and not result.already_done:
        click.echo(f"dataset: {out / 'images'}; manifest.csv, run.json and DATASET_CARD.md beside it")


@click.command("walk")
@click.option("--gan", "spec", required=True, help=GAN_SPEC_HELP)
@click.option("--guides", "guides_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Guides folder (latentwalk guides train).")  # fmt: skip
@dataset_option
@click.option("--label", required=True, type=int, help="Class index of both endpoints.")
@click.option("--seed", default=0, show_default=True, help="Seed of the endpoint draw.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--n-steps", default=20, show_default=True, help="Points per path, endpoints included.")
@click.option("--optim-steps", default=None, type=int, help="PLAN's Adam steps [default: generate's, 50].")
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
                         plan_cfg=walk_plan(optim_steps))  # fmt: skip
    with staged_dir(out, "walk", overwrite=overwrite, inputs=inputs) as stage:
        files = {k: out / v.name for k, v in save_walk(walk, stage).items()}
    below = walk.to_dict()["below_threshold"]
    click.echo(
        f"points below the gate threshold {walk.threshold:.3g}: linear {below['linear']}, PLAN {below['plan']} "
        f"of {n_steps}; minimum distance linear {float(walk.distances['linear'].min()):.3g}, "
        f"PLAN {float(walk.distances['plan'].min()):.3g}"
    )
    click.echo(f"wrote {files['strip']}, {files['plot']} and {files['json']}")


def walk_plan(optim_steps: int | None):
    """The PLAN walk of ``latentwalk walk``: generate's (its Adam steps, lr and schedule), float32; ``optim_steps``
    overrides its steps."""
    from dataclasses import replace

    from latentwalk.pipeline import GenerateConfig

    plan = GenerateConfig().plan
    return plan if optim_steps is None else replace(plan, optim_steps=optim_steps)
