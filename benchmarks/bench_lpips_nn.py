"""LPIPS nearest-real search: precomputed LPIPS embeddings + batched distances vs one ``lpips`` call per image.

Goal (issue: evaluation): >= 100x at N = M = 1000, 64 px, CPU. The baseline is how users call the package today: for
each synthetic image, one ``lpips.LPIPS`` call on that image repeated M times against the batch of all M real images,
then the minimum. Every such call costs the same (2M backbone passes), so the baseline is timed on ``--baseline-calls``
synthetic images and scaled to N (said in the table). Our side embeds the N + M images once
(:class:`latentwalk.distances.LpipsEmbedding`) and runs :func:`latentwalk.distances.nearest` on all N x M pairs. The
nearest distances and indices of the timed baseline calls are compared with ours (max |difference| printed).

Images: phantom chest X-rays (real: one set of patients, "synthetic": other patients), gray repeated to RGB by both
sides. The AlexNet backbone is randomly initialised (``pnet_rand=True``: same cost as the real weights, no download);
the linear calibration layers are the package's shipped v0.1 weights.

    python benchmarks/bench_lpips_nn.py                # N = M = 1000, alex
    python benchmarks/bench_lpips_nn.py --net vgg      # VGG16 backbone

Writes its section of benchmarks/RESULTS.md unless --no-record.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from record import summary, write_section  # noqa: E402

from latentwalk.data.phantoms import PhantomConfig, generate_phantoms  # noqa: E402
from latentwalk.distances import LpipsEmbedding, nearest  # noqa: E402


def phantoms(n: int, resolution: int, seed: int) -> torch.Tensor:
    """``n`` phantom chest X-rays (one per patient) as float32 ``[n, 1, R, R]`` in [-1, 1]."""
    cfg = PhantomConfig(kind="cxr", identities=n, per_identity=1, resolution=resolution, seed=seed)
    return torch.stack([torch.from_numpy(p.pixels.copy()) for p in generate_phantoms(cfg)])[:, None].float() / 127.5 - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="synthetic images (queries)")
    parser.add_argument("--m", type=int, default=1000, help="real images (reference)")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--net", choices=["alex", "vgg", "squeeze"], default="alex")
    parser.add_argument("--baseline-calls", type=int, default=10, help="lpips calls timed and scaled to --n")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-record", action="store_true", help="print only; do not touch RESULTS.md")
    args = parser.parse_args()

    import lpips

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = lpips.LPIPS(net=args.net, pnet_rand=True, verbose=False).eval()
    real = phantoms(args.m, args.resolution, seed=1)
    syn = phantoms(args.n, args.resolution, seed=2)
    load_before = os.getloadavg()[0]

    # ours: embed once, then exact nearest over all pairs
    start = time.perf_counter()
    emb = LpipsEmbedding(net)
    e_real, e_syn = emb.embed(real), emb.embed(syn)
    embed_s = time.perf_counter() - start
    dist, idx = nearest(e_syn, e_real, k=1, metric="sqeuclidean")
    ours_s = time.perf_counter() - start

    # baseline: one lpips call per synthetic image against all real images
    calls = min(args.baseline_calls, args.n)
    base_d, base_i = [], []
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(calls):
            d = net(syn[i : i + 1].expand(args.m, -1, -1, -1), real).flatten()  # [M]
            base_d.append(d.min().item())
            base_i.append(int(d.argmin()))
    base_calls_s = time.perf_counter() - start
    base_s = base_calls_s / calls * args.n
    load_after = os.getloadavg()[0]

    d_diff = max(abs(base_d[i] - float(dist[i, 0])) for i in range(calls))
    same_idx = sum(base_i[i] == int(idx[i, 0]) for i in range(calls))
    speedup = base_s / ours_s
    dim = e_real.shape[1]
    rows = [
        "| method | N x M | seconds | speed-up |",
        "|---|---|---|---|",
        f"| one `lpips` call per synthetic image vs all real (timed {calls} calls: {base_calls_s:.1f} s, scaled to "
        f"{args.n}) | {args.n} x {args.m} | {base_s:.0f} | 1x |",
        f"| LPIPS embeddings ({dim:,}-d, {embed_s:.1f} s) + exact nearest over all pairs | {args.n} x {args.m} | "
        f"{ours_s:.1f} | {speedup:.0f}x |",
    ]
    body = (
        f"## LPIPS nearest-real search: embeddings vs one `lpips` call per image (CPU, {args.threads} threads)\n\n"
        f"LPIPS v0.1 {args.net} (random backbone, shipped linear weights), {args.resolution} px phantom chest "
        f"X-rays. Goal: >= 100x at N = M = 1000. On the {calls} synthetic images timed on both sides the nearest "
        f"distances differ by at most {d_diff:.1e} and {same_idx} of {calls} nearest indices agree. Load average "
        f"{load_before:.1f} before, {load_after:.1f} after.\n\n" + "\n".join(rows)
    )
    print(body)
    summary(f"LPIPS nearest-real search ({args.n} x {args.m}): {speedup:.0f}x faster than one lpips call per image")
    if not args.no_record:
        write_section(f"lpips-nn-{args.net}", body)


if __name__ == "__main__":
    main()
