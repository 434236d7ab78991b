"""Is a demo generator good enough? Sample grids, and a classifier's view of generated images. Writes RESULTS.md.

    python scripts/check_demo_gans.py [--kind cxr fundus] [--steps 150] [--images 64]
    python scripts/check_demo_gans.py --kind fundus --gan lite:runs/demo-fundus   # a candidate; prints only

For each kind, on the default phantom dataset (the demo generators saw its train split only):
1. a grid of 32 samples (seed 0, psi 1) is written to docs/demo_gan_<kind>.png, real images beside them;
2. a small CNN (scripts/phantom_learnability.py) is trained on the real train split and scored on real test images;
3. test images are inverted into the generator (``--space``, ms-gradient loss) and the same CNN labels the
   reconstructions: these are generated images with a known label, so accuracy against it measures whether the
   generator keeps the disease. A conditional generator is given each image's label (its start in W, its
   conditioning in Z): the figure then says whether G draws that label recognisably near the image, as ``generate``
   uses it, not whether G would recover an unknown label;
4. the CNN labels 512 random samples: predicted-label shares and mean confidence, next to the real test set's;
   for a class-conditional generator also the accuracy against the label each sample was drawn with.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "scripts"))


def _predict(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([net(b).softmax(1) for b in x.split(128)])


def main() -> None:
    from phantom_learnability import train_cnn
    from record import write_section

    import gan_zoo
    from gan_zoo.invert import SPACES, InvertConfig, invert
    from gan_zoo.sampling import sample_images, sample_latents, save_grid
    from latentwalk.data import PhantomConfig, load_tensors, write_phantom_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", nargs="+", default=["cxr", "fundus"], choices=["cxr", "fundus"])
    parser.add_argument("--steps", type=int, default=150, help="inversion steps")
    parser.add_argument("--space", choices=SPACES, default="w", help="inversion space")
    parser.add_argument("--images", type=int, default=64, help="test images to invert")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--gan", help="check this generator spec instead of demo:<kind> (one kind; prints only)")
    args = parser.parse_args()
    if args.gan and len(args.kind) != 1:
        parser.error("--gan needs exactly one --kind")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    for kind in args.kind:
        start = time.perf_counter()
        G = gan_zoo.load(args.gan or f"demo:{kind}")
        meta = gan_zoo.registry.WEIGHTS_DIR / f"demo_{kind}.json"
        kimg = "-" if args.gan else __import__("json").loads(meta.read_text())["provenance"]["kimg"]
        cfg = PhantomConfig(kind=kind)
        with tempfile.TemporaryDirectory() as tmp:
            index = write_phantom_dataset(cfg, Path(tmp) / "d")
            x_train, y_train = load_tensors(index.subset("train"), cfg.resolution)
            x_test, y_test = load_tensors(index.subset("test"), cfg.resolution)
        samples = sample_images(G, 512, seed=0)
        grid = torch.cat(
            [samples[:24], x_train[torch.randperm(len(x_train), generator=torch.Generator().manual_seed(0))[:8]]]
        )
        save_grid(
            grid,
            Path(tempfile.gettempdir()) / f"check_{kind}.png" if args.gan else ROOT / "docs" / f"demo_gan_{kind}.png",
            nrow=8,
        )

        net = train_cnn(x_train, y_train, torch.arange(len(x_train)), args.epochs)
        predict = partial(_predict, net)
        p_real = predict(x_test)
        acc_real = (p_real.argmax(1) == y_test).float().mean().item()
        pick = torch.randperm(len(x_test), generator=torch.Generator().manual_seed(0))[: args.images]
        labels = y_test[pick] if int(getattr(G, "c_dim", 0)) > 0 else None  # conditional: start at the label's mean
        icfg = InvertConfig(space=args.space, steps=args.steps, perceptual="ms-gradient")
        result = invert(G, x_test[pick], icfg, labels=labels)
        with torch.no_grad():
            recon = G.synthesis(result.ws, noise_mode="const").clamp(-1, 1)
        acc_recon = (predict(recon).argmax(1) == y_test[pick]).float().mean().item()
        acc_real_same = (p_real[pick].argmax(1) == y_test[pick]).float().mean().item()
        p_fake = predict(samples)
        _, drawn = sample_latents(G, len(samples), seed=0)  # the labels sample_images drew (conditional G)
        acc_cond = "-" if drawn is None else f"{(p_fake.argmax(1) == drawn.argmax(1)).float().mean().item():.3f}"
        share = torch.bincount(p_fake.argmax(1), minlength=len(cfg.label_names)).float() / len(p_fake)
        real_share = torch.bincount(y_test, minlength=len(cfg.label_names)).float() / len(y_test)
        fmt = lambda v: "/".join(f"{x:.2f}" for x in v.tolist())  # noqa: E731
        rows.append(
            f"| {kind} | {kimg} | {acc_real:.3f} | {acc_real_same:.3f} | {acc_recon:.3f} | {result.mse.mean():.4f} "
            f"| {acc_cond} | {fmt(share)} | {fmt(real_share)} | {p_fake.max(1).values.mean():.3f} "
            f"| {p_real.max(1).values.mean():.3f} "
            f"| {time.perf_counter() - start:.0f} |"
        )
        print(rows[-1], flush=True)
    head = (
        "| kind | G kimg | CNN acc. real test | same, inverted subset | CNN acc. on G reconstructions "
        "| recon. MSE | CNN acc. on samples vs their drawn label (conditional G) | predicted label shares, 512 samples "
        "| label shares, real test | mean confidence, samples "
        "| mean confidence, real test | seconds |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    body = (
        "## Demo generators: does a classifier see the disease in generated images?\n\n"
        f"Small CNN trained on the real train split ({args.epochs} epochs); {args.images} test images inverted "
        f"({args.steps} steps, {args.space.upper()} space, ms-gradient). Chance for cxr 0.5, for fundus 0.2. "
        "Sample grids: `docs/demo_gan_<kind>.png` (3 rows of samples, 1 row of real training images).\n\n"
        + head
        + "\n"
        + "\n".join(rows)
    )
    if not (args.no_record or args.gan):
        write_section("demo-gans", body)


if __name__ == "__main__":
    main()
