"""Can a discriminator learn through DiffAugment? A fresh D against a *fixed* demo generator, per augmentation policy.

    python benchmarks/bench_d_augment.py                # writes the RESULTS.md section d-augment (cxr and fundus)
    python benchmarks/bench_d_augment.py --quick        # a few steps; prints only

Why: the class-conditional fine-tunes of the demo generators logged a discriminator at chance from the first
snapshot to the last (loss_d = 2 ln 2 = 1.386, R1 ~1e-5), which gives the generator no signal. Here the generator
does not move, so every policy faces the same task: tell ``demo:<kind>``'s samples (drawn with the real label
distribution) from the phantom training images. Each policy starts from the same D initialisation and sees the same
batches; the table gives the running loss (exponential average, 5 %) at the end and the gap between D's mean logit on
real and on generated images. Lower loss and larger gap = D still learns. Not a claim about final image quality.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

POLICIES = ("none", "color", "translation", "cutout", "translation,cutout", "color,translation,cutout")


def train_fresh_d(G, images, labels, policy: str, steps: int, seed: int = 0, **sizes: int) -> dict[str, float]:
    """Train a fresh discriminator (the trainer's optimiser and lazy R1) against the fixed ``G``; end-of-run figures.

    ``sizes``: ``channel_base``/``channel_max`` of D (default: the trainer's, as the demo generators were trained).
    """
    from gan_zoo.augment import diff_augment, parse_policy
    from gan_zoo.train import TrainConfig, build_networks

    c_dim = int(G.c_dim)
    cfg = TrainConfig(
        resolution=G.img_resolution, z_dim=G.z_dim, w_dim=G.w_dim, conditional=c_dim > 0, seed=seed, **sizes
    )
    _, D = build_networks(cfg, images.shape[1], c_dim)
    ratio = cfg.r1_interval / (cfg.r1_interval + 1)
    opt = torch.optim.Adam(D.parameters(), lr=cfg.lr * ratio, betas=(0.0, 0.99**ratio), eps=1e-8)
    gen = torch.Generator().manual_seed(seed)  # batches, labels, z: the same for every policy
    aug = torch.Generator().manual_seed(seed + 1)  # augmentation draws: their own stream
    ops = parse_policy(policy)
    avg: dict[str, float] = {}
    for step in range(steps):
        idx = torch.randint(0, len(images), (cfg.batch,), generator=gen)
        real = images[idx]
        real_c = F.one_hot(labels[idx], c_dim).float() if c_dim else None
        fake_labels = labels[torch.randint(0, len(images), (cfg.batch,), generator=gen)]
        c = F.one_hot(fake_labels, c_dim).float() if c_dim else None
        z = torch.randn(cfg.batch, G.z_dim, generator=gen)
        with torch.no_grad():
            fake = G(z, c, noise_mode="const")
        logit_fake = D(diff_augment(fake, ops, aug), c)
        logit_real = D(diff_augment(real, ops, aug), real_c)
        loss = F.softplus(logit_fake).mean() + F.softplus(-logit_real).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if cfg.gamma > 0 and step % cfg.r1_interval == 0:
            r = real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(D(diff_augment(r, ops, aug), real_c).sum(), r, create_graph=True)
            opt.zero_grad(set_to_none=True)
            (grad.square().sum([1, 2, 3]).mean() * (cfg.gamma / 2) * cfg.r1_interval).backward()
            opt.step()
        for k, v in {"loss": loss.item(), "gap": (logit_real.mean() - logit_fake.mean()).item()}.items():
            avg[k] = v if k not in avg else 0.95 * avg[k] + 0.05 * v
    return avg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kind", nargs="+", default=["cxr", "fundus"], choices=["cxr", "fundus"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="20 steps, two policies; prints only")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import tempfile

    import gan_zoo
    from latentwalk.data import load_tensors, open_dataset
    from latentwalk.data.phantoms import PhantomConfig, write_phantom_dataset

    steps = 20 if args.quick else args.steps
    policies = POLICIES[:2] if args.quick else POLICIES
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kind:
            G = gan_zoo.load(f"demo:{kind}").requires_grad_(False)
            write_phantom_dataset(PhantomConfig(kind=kind), Path(tmp) / kind)
            x, y = load_tensors(open_dataset(Path(tmp) / kind).subset("train"), G.img_resolution,
                                channels=G.img_channels)  # fmt: skip
            for policy in policies:
                start = time.perf_counter()
                r = train_fresh_d(G, x, y, policy, steps)
                rows.append(
                    f"| {kind} | {policy} | {r['loss']:.3f} | {r['gap']:.2f} | {time.perf_counter() - start:.0f} |"
                )
                print(rows[-1], flush=True)
    body = (
        "## A fresh discriminator against the fixed demo generator, per DiffAugment policy\n\n"
        f"{steps} steps, batch 16, the trainer's optimiser and lazy R1, same initialisation and batches for every "
        "policy (`benchmarks/bench_d_augment.py`; augmentation draws from their own seeded stream). Loss: running "
        "average at the end (chance 2 ln 2 = 1.386); gap: "
        "D's mean logit on real minus on generated images. Lower loss / larger gap: D still learns through the "
        "augmentation.\n\n| kind | policy | D loss | logit gap | seconds |\n|---|---|---|---|---|\n" + "\n".join(rows)
    )
    if not args.quick:
        from record import write_section

        write_section("d-augment", body)


if __name__ == "__main__":
    main()
