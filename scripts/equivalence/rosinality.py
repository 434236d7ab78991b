# ruff: noqa: E402, B007  (the foreign repository is put on sys.path first)
"""Equivalence of gan_zoo.rosinality against rosinality's own model.py (run from /tmp/rosi, outside the repo)."""

import os
import sys

import torch

torch.set_num_threads(1)
sys.path.insert(0, os.environ.get("ROSINALITY_REPO", "/tmp/rosi"))  # rosinality/stylegan2-pytorch, not here
from model import Generator as RGenerator  # rosinality's code, in /tmp only

import gan_zoo


def build(size, style_dim, n_mlp, cm, blur, seed):
    torch.manual_seed(seed)
    g = RGenerator(size, style_dim, n_mlp, channel_multiplier=cm, blur_kernel=blur).eval()
    with torch.no_grad():  # make every parameter matter: non-zero noise strengths, biases, varied weights
        for name, p in g.named_parameters():
            if name.endswith("noise.weight"):
                p.normal_(0, 0.5)
            elif name.endswith("bias") and "style" not in name:
                p.add_(torch.randn_like(p) * 0.1)
            elif name.startswith("style.") and name.endswith("bias"):
                p.normal_(0, 10.0)  # lr_mul 0.01 scales the bias by 100
    return g


def compare(tag, size, style_dim, n_mlp, cm, blur=(1, 3, 3, 1), with_avg=True, extra=None, seed=0):
    g = build(size, style_dim, n_mlp, cm, list(blur), seed)
    ckpt = {"g_ema": g.state_dict()}
    if with_avg:
        with torch.no_grad():
            ckpt["latent_avg"] = g.mean_latent(4096)[0].detach()  # convert_weight.py stores [style_dim]
    ckpt.update(extra or {})
    path = f"/tmp/rosi_eq/{tag}.pt"
    torch.save(ckpt, path)
    G = gan_zoo.load(f"rosinality:{path}")
    latent_avg = ckpt.get("latent_avg", G.mapping.w_avg)
    z = torch.randn(4, style_dim, generator=torch.Generator().manual_seed(1))
    worst = {}
    with torch.no_grad():
        const_noise = [getattr(g.noises, f"noise_{i}") for i in range(g.num_layers)]
        # z -> image, stored noise (their randomize_noise=False), no truncation
        theirs, _ = g([z], randomize_noise=False)
        worst["z, const noise"] = (G(z, None, noise_mode="const") - theirs).abs().max().item()
        # truncation towards latent_avg
        theirs, lat = g([z], randomize_noise=False, truncation=0.7, truncation_latent=latent_avg, return_latents=True)
        ws = G.mapping(z, None, truncation_psi=0.7)
        worst["ws (psi=0.7)"] = (ws - lat).abs().max().item()
        worst["z, psi=0.7"] = (G(z, None, truncation_psi=0.7) - theirs).abs().max().item()
        # given per-layer ws (W+), as inversion produces
        wplus = torch.randn(4, g.n_latent, style_dim, generator=torch.Generator().manual_seed(2))
        theirs, _ = g([wplus], input_is_latent=True, randomize_noise=False)
        worst["ws W+, const"] = (G.synthesis(wplus, noise_mode="const") - theirs).abs().max().item()
        # no noise: their noise=zeros
        zeros = [torch.zeros_like(n) for n in const_noise]
        theirs, _ = g([wplus], input_is_latent=True, noise=zeros)
        worst["ws W+, none"] = (G.synthesis(wplus, noise_mode="none") - theirs).abs().max().item()
        # style mixing: their two styles with inject_index 3 == our ws with rows swapped in
        z2 = torch.randn(4, style_dim, generator=torch.Generator().manual_seed(3))
        theirs, _ = g([z, z2], inject_index=3, randomize_noise=False)
        mixed = G.mapping(z, None).clone()
        mixed[:, 3:] = G.mapping(z2, None)[:, 3:]
        worst["mixing @3"] = (G.synthesis(mixed) - theirs).abs().max().item()
        scale = theirs.abs().max().item()
    print(
        f"{tag}: size={size} style_dim={style_dim} n_mlp={n_mlp} cm={cm} blur={list(blur)} "
        f"latent_avg={'stored' if with_avg else 'computed'} |img|max={scale:.3f}"
    )
    for k, v in worst.items():
        print(f"   {k:16s} max abs diff {v:.3e}")
    return max(worst.values())


if __name__ == "__main__":
    import argparse

    results = [
        compare("s32_cm1", 32, 32, 3, 1),
        compare(
            "s64_cm2_args",
            64,
            64,
            8,
            2,
            with_avg=False,
            extra={"args": argparse.Namespace(size=64, latent=64, n_mlp=8, channel_multiplier=2), "ada_aug_p": 0.1},
        ),
        compare("s64_cm1_mlp2", 64, 16, 2, 1, seed=1),
    ]
    # gan convert -> lite: gives the same numbers as rosinality: (bit for bit), so the same distance to their code
    import shutil

    from click.testing import CliRunner

    from latentwalk.cli import cli

    shutil.rmtree("/tmp/rosi_eq/conv", ignore_errors=True)
    done = CliRunner().invoke(cli, ["gan", "convert", "/tmp/rosi_eq/s32_cm1.pt", "--out", "/tmp/rosi_eq/conv"])
    assert done.exit_code == 0, done.output
    torch.manual_seed(0)
    g = build(32, 32, 3, 1, [1, 3, 3, 1], 0)
    lite = gan_zoo.load("lite:/tmp/rosi_eq/conv")
    z = torch.randn(4, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        d = (lite(z, None) - g([z], randomize_noise=False)[0]).abs().max().item()
    print(f"gan convert -> lite: vs theirs, z const noise: max abs diff {d:.3e}")
    results.append(d)
    print(f"overall max abs diff {max(results):.3e}  (threshold 1e-4)")
    assert max(results) < 1e-4
    # a non-default blur_kernel: their ToRGB ignores it, so the file has two filters; refused with one line
    g = build(32, 16, 2, 1, [1, 2, 1], 0)
    torch.save({"g_ema": g.state_dict()}, "/tmp/rosi_eq/blur121.pt")
    try:
        gan_zoo.load("rosinality:/tmp/rosi_eq/blur121.pt")
    except gan_zoo.registry.ConfigError as e:
        print("blur [1, 2, 1] refused:", e)
