"""Train the demo generators shipped as ``demo:cxr`` / ``demo:fundus`` and copy them into ``gan_zoo/weights``.

    python scripts/train_demo_gans.py --kind cxr --out runs/demo-cxr [--kimg 80] [--threads 1] [--resume]
    python scripts/train_demo_gans.py --kind cxr --out runs/demo-cxr --install   # copy the latest snapshot only

Data: the default phantom dataset of that kind (100 patients x 4 images, 64 px, seed 0), train split only, so the
val/test patients stay unseen by the generator. Network and recipe: ``gan_zoo.train.TrainConfig`` defaults.
Training can be stopped at any time; ``--resume`` continues from the last snapshot, and ``--install`` copies the
latest snapshot's G_ema (its kimg is recorded in the JSON); `--no-install` trains a candidate without installing it.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

WEIGHTS = Path(__file__).resolve().parents[1] / "gan_zoo" / "weights"


def install(run: Path, kind: str) -> None:
    """Copy ``run/generator.*`` to ``gan_zoo/weights/demo_<kind>.*`` and print what was installed."""
    WEIGHTS.mkdir(exist_ok=True)
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(run / f"generator{suffix}", WEIGHTS / f"demo_{kind}{suffix}")
    meta = json.loads((WEIGHTS / f"demo_{kind}.json").read_text())
    print(f"installed demo:{kind} from {run} at {meta['provenance']['kimg']} kimg")


def main() -> None:
    from gan_zoo.train import TrainConfig, train_gan
    from latentwalk.data import PhantomConfig, load_tensors, write_phantom_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["cxr", "fundus"], required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--kimg", type=float, default=80.0)
    parser.add_argument("--conditional", action="store_true", help="class-conditional G and D (c_dim = labels)")
    parser.add_argument("--channel-base", type=int, default=None, help="TrainConfig.channel_base (default: its own)")
    parser.add_argument("--channel-max", type=int, default=None, help="TrainConfig.channel_max (default: its own)")
    parser.add_argument("--batch", type=int, default=None, help="TrainConfig.batch (default: its own)")
    parser.add_argument("--init-from", default=None, help="generator spec to start G from (e.g. demo:cxr)")
    parser.add_argument("--lr", type=float, default=None, help="TrainConfig.lr (default: its own)")
    parser.add_argument("--augment", default=None, help="TrainConfig.augment (default: its own)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--install", action="store_true", help="only copy the latest snapshot into gan_zoo/weights")
    parser.add_argument("--no-install", action="store_true", help="train a candidate; leave gan_zoo/weights alone")
    args = parser.parse_args()
    if args.install:
        install(args.out, args.kind)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    from latentwalk.devices import resolve_device

    phantoms = PhantomConfig(kind=args.kind)
    data_dir = args.out.with_name(args.out.name + "-data")
    if not (data_dir / "metadata.csv").exists():
        write_phantom_dataset(phantoms, data_dir)
    from latentwalk.data import open_dataset

    index = open_dataset(data_dir).subset("train")
    images, labels = load_tensors(index, phantoms.resolution)
    extra = {"channel_base": args.channel_base} if args.channel_base else {}
    for name in ("lr", "channel_max", "batch", "augment"):
        if getattr(args, name):
            extra[name] = getattr(args, name)
    import gan_zoo

    init = gan_zoo.load(args.init_from) if args.init_from else None
    cfg = TrainConfig(kimg=args.kimg, conditional=args.conditional, **extra)
    result = train_gan(
        images,
        labels,
        args.out,
        cfg,
        n_labels=len(phantoms.label_names),
        device=resolve_device(args.device),
        resume=args.resume,
        init_from=init,
        progress=True,
        provenance={
            "dataset": f"phantom-{args.kind} (latentwalk.data.phantoms, seed 0, train split)",
            "phantom_config": phantoms.to_dict(),
            **({"init_from": args.init_from} if args.init_from else {}),
        },
    )
    print(result)
    if not args.no_install:
        install(args.out, args.kind)


if __name__ == "__main__":
    main()
