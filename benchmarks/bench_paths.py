"""PLAN path speed: ``plan_paths(impl="batched")`` on many paths vs ``impl="reference"`` (one path at a time).

Goal (issue: PLAN paths): batched >= 2x the path-steps/s of the reference loop with 16 paths on a 2-core CPU. Both
sides optimise the same paths with the same objective and number of Adam steps (no early stopping) and must end at
the same paths up to rounding (max |diff| printed). The reference side is our restatement of perceivelab/PLAN's
``get_privacy_path``: every interior image of one path in one synthesis call, classifiers on chunks of 4 (see
:mod:`latentwalk.paths`). The generator is the default demo architecture (``build_networks(TrainConfig(), 1, 0)``,
random initialisation: speed does not depend on training); the classifiers are compact CNNs (4 strided conv
layers, 16-128 channels, global pooling) with a 100-way identity head and a 2-way class head. Time inside the
generator is measured with hooks on ``G.synthesis`` (forward, and backward from the gradient of its output to the
gradient of its input):

    python benchmarks/bench_paths.py                       # 16 paths, 10 points, 6 Adam steps, 2 threads
    python benchmarks/bench_paths.py --unfused-reference   # also the reference loop with unfused modulation
    python benchmarks/bench_paths.py --no-record     # print only
    python benchmarks/bench_paths.py --device cuda --resolution 256 --paths 64            # GPU: section paths-cuda
    python benchmarks/bench_paths.py --device cuda --resolution 256 --paths 64 --arch paper256

On CUDA (goal: >= 15x at 64 paths on a 256 px StyleGAN2) both sides run in float32 as on the CPU (cuDNN's default
TF32 convolutions included), and one more row times the batched side the way ``generate`` runs it on CUDA
(bfloat16 autocast, channels-last classifiers). ``--arch paper256`` uses the feature-map widths of
stylegan2-ada-pytorch's ``paper256`` configuration (channel_base 16384, channel_max 512, z/w 512, 8 mapping
layers) instead of the demo generator's. Writes its section of benchmarks/RESULTS.md (``paths`` on the CPU,
``paths-cuda`` or ``paths-cuda-paper256`` on CUDA) unless --no-record.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from record import summary, write_section  # noqa: E402
from torch import nn  # noqa: E402

from gan_zoo.train import TrainConfig, build_networks  # noqa: E402
from latentwalk.paths import PlanConfig, plan_paths  # noqa: E402

ARCHS = {  # TrainConfig fields per generator width; the resolution comes from --resolution
    "demo": {},  # TrainConfig's defaults: the demo generators' widths
    "paper256": dict(channel_base=16384, channel_max=512, z_dim=512, w_dim=512, mapping_layers=8),
}


def classifier(classes: int, seed: int) -> nn.Module:
    """A compact CNN on 3-channel images (about 0.1 M parameters + head), eval mode, seeded."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    channels = [3, 16, 32, 64, 128]
    for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels[-1], classes)]
    return nn.Sequential(*layers).eval().requires_grad_(False)


class SynthesisTimer:
    """Time spent in ``module``'s forward and backward passes, from module hooks: wall time on the CPU (synchronous),
    CUDA events on a GPU (read once at the end, so the timing adds no synchronisation)."""

    def __init__(self, module: nn.Module, cuda: bool = False) -> None:
        self.forward_s = self.backward_s = 0.0
        self.calls = self.images = 0
        self._t0 = self._b0 = 0.0
        self.cuda = cuda
        self._events: dict[str, list] = {"fwd": [], "bwd": []}
        self.handles = [
            module.register_forward_pre_hook(self._pre),
            module.register_forward_hook(self._post),
            module.register_full_backward_pre_hook(self._bpre),
            module.register_full_backward_hook(self._bpost),
        ]

    def _event(self, kind: str, start: bool) -> None:
        if start:
            self._events[kind].append([torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)])
        self._events[kind][-1][0 if start else 1].record()

    def _pre(self, module, args):
        if self.cuda:
            self._event("fwd", True)
        self._t0 = time.perf_counter()

    def _post(self, module, args, out):
        if self.cuda:
            self._event("fwd", False)
        self.forward_s += time.perf_counter() - self._t0
        self.calls += 1
        self.images += out.shape[0]

    def _bpre(self, module, grad_out):
        if self.cuda:
            self._event("bwd", True)
        self._b0 = time.perf_counter()

    def _bpost(self, module, grad_in, grad_out):
        if self.cuda:
            self._event("bwd", False)
        self.backward_s += time.perf_counter() - self._b0

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        if self.cuda:  # GPU time of each pass replaces the launch-side wall time
            torch.cuda.synchronize()
            self.forward_s = sum(a.elapsed_time(b) for a, b in self._events["fwd"]) / 1000
            self.backward_s = sum(a.elapsed_time(b) for a, b in self._events["bwd"]) / 1000


def timed_run(G, w_a, w_b, labels, id_net, class_net, cfg, impl: str) -> dict:
    cuda = w_a.device.type == "cuda"
    timer = SynthesisTimer(G.synthesis, cuda=cuda)
    try:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        res = plan_paths(G, w_a, w_b, labels, id_net, class_net, cfg, impl=impl)
        if cuda:
            torch.cuda.synchronize()
        total = time.perf_counter() - start
    finally:
        timer.remove()
    return {"res": res, "total": total, "fwd": timer.forward_s, "bwd": timer.backward_s, "calls": timer.calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=16, help="paths on each side")
    parser.add_argument("--n-steps", type=int, default=10, help="points per path, endpoints included")
    parser.add_argument("--optim-steps", type=int, default=6, help="Adam steps per path on each side")
    parser.add_argument("--chunk", type=int, default=PlanConfig.chunk, help="images per pass (batched side)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu, the recorded figures)")
    parser.add_argument("--resolution", type=int, default=TrainConfig.resolution, help="generator resolution (px)")
    parser.add_argument("--arch", choices=sorted(ARCHS), default="demo", help="generator widths (see above)")
    parser.add_argument(
        "--unfused-reference",
        action="store_true",
        help="also time the reference loop with unfused modulated convolution (G in training mode), to separate "
        "the gain of batching from that of the modulation form",
    )
    parser.add_argument("--no-record", action="store_true", help="print only; do not touch RESULTS.md")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    G, _ = build_networks(TrainConfig(resolution=args.resolution, **ARCHS[args.arch]), img_channels=1, c_dim=0)
    G = G.eval().requires_grad_(False)
    id_net, class_net = classifier(100, seed=1), classifier(2, seed=2)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2 * args.paths, G.z_dim, generator=gen)
    with torch.no_grad():
        w = G.mapping(z, None, truncation_psi=0.7)[:, 0]  # [2P, w_dim]
    G, id_net, class_net, w = G.to(device), id_net.to(device), class_net.to(device), w.to(device)
    w_a, w_b = w[: args.paths], w[args.paths :]
    labels = torch.randint(2, (args.paths,), generator=gen).to(device)
    cfg = PlanConfig(n_steps=args.n_steps, optim_steps=args.optim_steps, chunk=args.chunk)

    warm = PlanConfig(n_steps=args.n_steps, optim_steps=1, chunk=args.chunk)  # allocator and kernels
    for impl in ("batched", "reference"):
        plan_paths(G, w_a[:2], w_b[:2], labels[:2], id_net, class_net, warm, impl=impl)

    load_before = os.getloadavg()[0]
    runs = {impl: timed_run(G, w_a, w_b, labels, id_net, class_net, cfg, impl) for impl in ("reference", "batched")}
    if args.unfused_reference:  # our synthesis picks unfused modulation in training mode; nothing else changes
        G.train()
        runs["reference-unfused"] = timed_run(G, w_a, w_b, labels, id_net, class_net, cfg, "reference")
        G.eval()
    if cuda:  # the way generate runs PLAN on CUDA
        amp_cfg = PlanConfig(n_steps=args.n_steps, optim_steps=args.optim_steps, chunk=args.chunk, amp=True,
                             channels_last=True)  # fmt: skip
        plan_paths(G, w_a[:2], w_b[:2], labels[:2], id_net, class_net, replace(amp_cfg, optim_steps=1))  # warm-up
        runs["batched-amp"] = timed_run(G, w_a, w_b, labels, id_net, class_net, amp_cfg, "batched")
    load_after = os.getloadavg()[0]
    batched, reference = runs["batched"]["res"], runs["reference"]["res"]
    diff = (batched.ws - reference.ws).abs().flatten().cpu()  # [paths * n_steps * w_dim]
    q50, q99, q100 = torch.quantile(diff, torch.tensor([0.5, 0.99, 1.0])).tolist()
    final = (batched.loss_history["total"][-1] - reference.loss_history["total"][-1]).abs()
    loss_rel = (final / reference.loss_history["total"][-1].abs()).max().item()
    agreement = (
        f"The two sides' paths differ by {q50:.0e} (median), {q99:.0e} (99th percentile), {q100:.0e} (max) per "
        f"latent coordinate, their final losses by {loss_rel:.0e} (relative): Adam's normalised steps turn rounding "
        "differences on coordinates with near-zero gradient into steps of either sign."
    )
    path_steps = args.paths * args.optim_steps

    rows = [
        "| implementation | paths x Adam steps | seconds | path-steps/s | speed-up | G.synthesis calls | "
        "G forward (s) | G backward (s) | share of time in G |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    labels_of = {
        "reference": "reference (one path at a time, chunks of 4; G's eval default: fused modulation)",
        "reference-unfused": "reference loop with unfused modulation",
        "batched": f"batched ({args.paths} paths, chunk {args.chunk}, unfused modulation)",
        "batched-amp": "batched, bfloat16 autocast + channels-last classifiers (generate's CUDA default)",
    }
    for impl, r in runs.items():
        speed = runs["reference"]["total"] / r["total"]
        rows.append(
            f"| {labels_of[impl]} | {args.paths} x {args.optim_steps} | {r['total']:.1f} | "
            f"{path_steps / r['total']:.2f} | {speed:.1f}x | {r['calls']} | {r['fwd']:.1f} | {r['bwd']:.1f} | "
            f"{(r['fwd'] + r['bwd']) / r['total']:.0%} |"
        )
    n_params = sum(p.numel() for p in G.parameters()) / 1e6
    c_params = sum(p.numel() for p in id_net.parameters()) / 1e6
    where = f"CPU, {args.threads} thread(s)"
    if cuda:
        where = f"{torch.cuda.get_device_name(device)}, float32, TF32 convolutions"
    arch = "Default demo generator" if args.arch == "demo" else "StyleGAN2-ADA paper256 widths"
    goal = "Goal: >= 15x with 64 paths on a 256 px StyleGAN2" if cuda else "Goal: >= 2x with 16 paths"
    body = (
        f"## PLAN paths: batched vs one path at a time ({where})\n\n"
        f"{arch} ({G.img_resolution} px, 1 channel, w_dim {G.w_dim}, num_ws {G.num_ws}, "
        f"{n_params:.2f} M parameters), W space, {args.n_steps} points per path ({args.n_steps - 2} optimised), "
        f"compact CNN classifiers ({c_params:.2f} M parameters each; 100 identities, 2 classes), no early "
        f"stopping. {goal}. Load average {load_before:.1f} before, {load_after:.1f} after (other "
        "jobs on the machine slow both sides). The final diagnostics pass is included on both sides. "
        f"{agreement}\n\n" + "\n".join(rows)
    )
    print(body)
    on = f" on {device.type.upper()} ({args.arch}, {G.img_resolution} px)" if cuda else ""
    summary(
        f"PLAN paths{on}: batched ({args.paths} paths) {runs['reference']['total'] / runs['batched']['total']:.1f}x "
        "faster than the one-path reference loop"
    )
    if not args.no_record:
        name = "paths" if not cuda else f"paths-{device.type}"
        name += "" if args.arch == "demo" else f"-{args.arch}"
        if not cuda and args.resolution != TrainConfig.resolution:  # the CPU sections keep the default size
            name += f"-{G.img_resolution}px"
        write_section(name, body, cmd=None)


if __name__ == "__main__":
    main()
