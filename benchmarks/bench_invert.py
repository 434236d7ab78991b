"""Inversion speed: batched projection (32 images at once) vs one image at a time, same steps and loss.

Goal (issue: inversion): batched >= 8x the images/s of a one-image loop (the way NVIDIA's projector.py works) on
the CPU at batch 32. Both sides share one session (w statistics, perceptual term) and run
``gan_zoo.invert._invert_batch``, the loop with one image per call; the latents they produce agree (max |diff|
printed). The generator is the default demo architecture (``build_networks(TrainConfig(), 1, 0)``, random
initialisation: speed does not depend on training), the targets 64 px phantom chest X-rays, one thread. The loop
is timed twice: with NVIDIA's eval default (fused modulated convolution, per-sample weights) and with the unfused
form the library uses (the batched run is compared with the latter for the latents' difference):

    python benchmarks/bench_invert.py            # ms-gradient (the offline fallback)
    python benchmarks/bench_invert.py --lpips    # also LPIPS VGG16 (random backbone, same cost as the real one)
    python benchmarks/bench_invert.py --device cuda --resolution 256                   # GPU: section invert-cuda
    python benchmarks/bench_invert.py --device cuda --resolution 256 --arch paper256

On CUDA (goal: >= 8x at batch 32) every side runs in float32 (cuDNN's default TF32 convolutions included); ``--arch
paper256`` uses the widths of stylegan2-ada-pytorch's ``paper256`` configuration instead of the demo generator's.
Writes its section of benchmarks/RESULTS.md (``invert-threads<N>`` on the CPU, ``invert-cuda`` or
``invert-cuda-paper256`` on CUDA) unless --no-record.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from record import summary, write_section  # noqa: E402

from gan_zoo import invert as inv  # noqa: E402
from gan_zoo.train import TrainConfig, build_networks  # noqa: E402
from latentwalk.data.phantoms import PhantomConfig, generate_phantoms  # noqa: E402

ARCHS = {  # TrainConfig fields per generator width; the resolution comes from --resolution
    "demo": {},  # TrainConfig's defaults: the demo generators' widths
    "paper256": dict(channel_base=16384, channel_max=512, z_dim=512, w_dim=512, mapping_layers=8),
}


def phantom_targets(n: int, resolution: int) -> torch.Tensor:
    """``n`` phantom chest X-rays as float32 ``[n, 1, R, R]`` in [-1, 1]."""
    cfg = PhantomConfig(kind="cxr", identities=n, per_identity=1, resolution=resolution, seed=0)
    pixels = [torch.from_numpy(p.pixels.copy()) for p in generate_phantoms(cfg)]
    return torch.stack(pixels)[:, None].float().div(127.5).sub(1.0)


def timed(fn, cuda: bool = False) -> tuple[float, list]:
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def time_sides(session, cfg, targets: torch.Tensor, batch: int) -> dict[str, float]:
    """Seconds of: the one-image loop with NVIDIA's eval default (fused modconv), the same loop with the library's
    unfused modconv, and batches of ``batch``; plus the max |difference| between the latents of the unfused loop
    and the batched run (the same computation, so it must be rounding only)."""
    n = targets.shape[0]
    cuda = targets.device.type == "cuda"
    keys = list(range(n))
    for fused in (True, False):  # warm-up (allocator, kernels)
        inv._invert_batch(session, replace(cfg, steps=2), targets[:2], keys[:2], fused_modconv=fused)

    def loop(fused: bool) -> list:
        return [
            inv._invert_batch(session, cfg, targets[i : i + 1], keys[i : i + 1], fused_modconv=fused)[0]
            for i in range(n)
        ]

    loop_fused_s, _ = timed(lambda: loop(True), cuda)
    loop_s, loop_ws = timed(lambda: loop(False), cuda)
    batched_s, batched_ws = timed(
        lambda: [
            inv._invert_batch(session, cfg, targets[i : i + batch], keys[i : i + batch])[0] for i in range(0, n, batch)
        ],
        cuda,
    )
    diff = (torch.cat(loop_ws) - torch.cat(batched_ws)).abs().max().item()
    return {"loop_fused": loop_fused_s, "loop": loop_s, "batched": batched_s, "diff": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32, help="images on each side")
    parser.add_argument("--steps", type=int, default=20, help="optimisation steps per image on each side")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lpips", action="store_true", help="also time LPIPS VGG16 as the perceptual term")
    parser.add_argument("--lpips-images", type=int, default=None, help="images for the LPIPS rows (default --images)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu, the recorded figures)")
    parser.add_argument("--resolution", type=int, default=TrainConfig.resolution, help="generator resolution (px)")
    parser.add_argument("--arch", choices=sorted(ARCHS), default="demo", help="generator widths (see above)")
    parser.add_argument("--no-record", action="store_true", help="print only; do not touch RESULTS.md")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    G, _ = build_networks(TrainConfig(resolution=args.resolution, **ARCHS[args.arch]), img_channels=1, c_dim=0)
    G = G.eval().requires_grad_(False).to(device)
    load_before = os.getloadavg()[0]
    rows = [
        "| perceptual term | images x steps | one at a time, fused modconv (NVIDIA) | one at a time, unfused | "
        f"batch of {args.batch} | speed-up vs NVIDIA-style loop | vs unfused loop | max abs diff (latents) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    terms = [("ms-gradient", None, args.images)]
    if args.lpips:
        import lpips

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            net = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False).eval().to(device)
        terms.append(("lpips-vgg", net, args.lpips_images or args.images))
    for name, net, n in terms:
        cfg = inv.InvertConfig(steps=args.steps, batch=args.batch, perceptual="auto" if net else name)
        session = inv._session(G, cfg, net)
        targets = phantom_targets(n, G.img_resolution).to(device)
        t = time_sides(session, cfg, targets, args.batch)
        rows.append(
            f"| {session.perceptual_used} | {n} x {args.steps} | {n / t['loop_fused']:.2f} img/s | "
            f"{n / t['loop']:.2f} img/s | {n / t['batched']:.2f} img/s | {t['loop_fused'] / t['batched']:.1f}x | "
            f"{t['loop'] / t['batched']:.1f}x | {t['diff']:.1e} |"
        )
        print(rows[-1], flush=True)
        where = f"{device.type.upper()}, {args.arch}, {G.img_resolution} px" if cuda else f"{args.threads} thread(s)"
        summary(
            f"inversion ({session.perceptual_used}, {where}): batch of {args.batch} "
            f"{t['loop_fused'] / t['batched']:.1f}x faster than one image at a time (NVIDIA-style loop)"
        )
    load_after = os.getloadavg()[0]
    arch = f"{G.img_resolution} px, 1 channel, w_dim {G.w_dim}, num_ws {G.num_ws}"
    where = f"CPU, {args.threads} thread(s)"
    if cuda:
        where = f"{torch.cuda.get_device_name(device)}, float32, TF32 convolutions"
    widths = "Default demo generator" if args.arch == "demo" else "StyleGAN2-ADA paper256 widths"
    body = (
        f"## Inversion: batched vs one image at a time ({where})\n\n"
        f"{widths} ({arch}, {sum(p.numel() for p in G.parameters()) / 1e6:.2f} M parameters), "
        f"W space, pixel MSE + perceptual + prior. Goal: >= 8x at batch 32. Load average {load_before:.1f} "
        f"before, {load_after:.1f} after (other jobs on the machine slow both sides).\n\n" + "\n".join(rows)
    )
    print(f"load average {load_before:.1f} -> {load_after:.1f}")
    if not args.no_record:
        section = f"invert-threads{args.threads}" if not cuda else f"invert-{device.type}"
        section += "" if args.arch == "demo" else f"-{args.arch}"  # on the CPU too: a default-size run keeps its own
        if not cuda and args.resolution != TrainConfig.resolution:  # the CPU sections keep the default size
            section += f"-{G.img_resolution}px"
        write_section(section, body, cmd=None)


if __name__ == "__main__":
    main()
