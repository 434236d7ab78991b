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

Writes its section of benchmarks/RESULTS.md unless --no-record.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from record import summary, write_section  # noqa: E402
from torch import nn  # noqa: E402

from gan_zoo.train import TrainConfig, build_networks  # noqa: E402
from latentwalk.paths import PlanConfig, plan_paths  # noqa: E402


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
    """Wall time spent in ``module``'s forward and backward passes, from module hooks (CPU: synchronous)."""

    def __init__(self, module: nn.Module) -> None:
        self.forward_s = self.backward_s = 0.0
        self.calls = self.images = 0
        self._t0 = self._b0 = 0.0
        self.handles = [
            module.register_forward_pre_hook(self._pre),
            module.register_forward_hook(self._post),
            module.register_full_backward_pre_hook(self._bpre),
            module.register_full_backward_hook(self._bpost),
        ]

    def _pre(self, module, args):
        self._t0 = time.perf_counter()

    def _post(self, module, args, out):
        self.forward_s += time.perf_counter() - self._t0
        self.calls += 1
        self.images += out.shape[0]

    def _bpre(self, module, grad_out):
        self._b0 = time.perf_counter()

    def _bpost(self, module, grad_in, grad_out):
        self.backward_s += time.perf_counter() - self._b0

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def timed_run(G, w_a, w_b, labels, id_net, class_net, cfg, impl: str) -> dict:
    timer = SynthesisTimer(G.synthesis)
    try:
        start = time.perf_counter()
        res = plan_paths(G, w_a, w_b, labels, id_net, class_net, cfg, impl=impl)
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
    parser.add_argument(
        "--unfused-reference",
        action="store_true",
        help="also time the reference loop with unfused modulated convolution (G in training mode), to separate "
        "the gain of batching from that of the modulation form",
    )
    parser.add_argument("--no-record", action="store_true", help="print only; do not touch RESULTS.md")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    G, _ = build_networks(TrainConfig(), img_channels=1, c_dim=0)
    G = G.eval().requires_grad_(False)
    id_net, class_net = classifier(100, seed=1), classifier(2, seed=2)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2 * args.paths, G.z_dim, generator=gen)
    with torch.no_grad():
        w = G.mapping(z, None, truncation_psi=0.7)[:, 0]  # [2P, w_dim]
    w_a, w_b = w[: args.paths], w[args.paths :]
    labels = torch.randint(2, (args.paths,), generator=gen)
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
    load_after = os.getloadavg()[0]
    batched, reference = runs["batched"]["res"], runs["reference"]["res"]
    diff = (batched.ws - reference.ws).abs().flatten()  # [paths * n_steps * w_dim]
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
    body = (
        f"## PLAN paths: batched vs one path at a time (CPU, {args.threads} thread(s))\n\n"
        f"Default demo generator ({G.img_resolution} px, 1 channel, w_dim {G.w_dim}, num_ws {G.num_ws}, "
        f"{n_params:.2f} M parameters), W space, {args.n_steps} points per path ({args.n_steps - 2} optimised), "
        f"compact CNN classifiers ({c_params:.2f} M parameters each; 100 identities, 2 classes), no early "
        f"stopping. Goal: >= 2x with 16 paths. Load average {load_before:.1f} before, {load_after:.1f} after (other "
        "jobs on the machine slow both sides). The final diagnostics pass is included on both sides. "
        f"{agreement}\n\n" + "\n".join(rows)
    )
    print(body)
    summary(
        f"PLAN paths: batched ({args.paths} paths) {runs['reference']['total'] / runs['batched']['total']:.1f}x "
        "faster than the one-path reference loop"
    )
    if not args.no_record:
        write_section("paths", body, cmd=None)


if __name__ == "__main__":
    main()
