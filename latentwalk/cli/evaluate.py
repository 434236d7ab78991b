"""``latentwalk evaluate``: privacy, fidelity and utility of a synthetic dataset."""

from __future__ import annotations

from pathlib import Path

import click

from latentwalk.cli.common import (
    field_default,
    progress,
)
from latentwalk.errors import ConfigError


def _eval_default(name: str):
    from latentwalk.evaluate.run import EvalConfig

    return field_default(EvalConfig, name)


@click.command("evaluate")
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
@click.option("--verifier-epochs", default=_eval_default("verifier_epochs"), show_default=True,
              help="Epochs of the independent Siamese verification attacker.")  # fmt: skip
@click.option("--lpips-weights", default=None, type=click.Path(exists=True),
              help="alexnet-owt-7be5be79.pth (default: $LATENTWALK_WEIGHTS_DIR, then the torch cache).")  # fmt: skip
@click.option("--inception-weights", default=None, type=click.Path(exists=True),
              help="pt_inception-2015-12-05-6726825d.pth for FID/KID (default: search; absent = skipped).")  # fmt: skip
@click.option("--walk", "walk_dir", default=None, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Output of latentwalk walk: adds its linear-vs-PLAN distance plot.")  # fmt: skip
@click.option("--private", "private", default=None, type=click.Path(exists=True, path_type=Path), metavar="PATH",
              help="Private sidecar of the generate run (patients.json or its folder; generate writes it to "
                   "OUT.private/ unless --private-dir): adds the leakage estimate. Never looked for unless "
                   "given.")  # fmt: skip
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier report in --out.")
@click.pass_context
def evaluate_cmd(ctx, real_dir, syn_dir, out, guides_dir, layout, spaces, utility_epochs, utility_seeds, reid_epochs,
                 verifier_epochs, lpips_weights, inception_weights, walk_dir, private, device, overwrite):  # fmt: skip
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
        utility_epochs=utility_epochs, utility_seeds=seeds, reid_epochs=reid_epochs,
        verifier_epochs=verifier_epochs, lpips_weights=lpips_weights,
        inception_weights=inception_weights, private=str(private) if private else None, device=device,
    )  # fmt: skip
    evaluate(real_dir, syn_dir, out, cfg, walk_dir=walk_dir, overwrite=overwrite, progress=progress(ctx),
             echo=click.echo)  # fmt: skip
