# ruff: noqa: E402, B007  (the foreign repository is put on sys.path first)
"""Phase 1 (NVIDIA's code, /tmp/sg3 at NVlabs/stylegan3 c233a91): random tiny StyleGAN3 generators in a realistic
state, pickled as training_loop.py does, and NVIDIA's outputs for fixed z, c, truncation (float32, CPU)."""

import copy
import math
import os
import pickle
import sys

import torch

torch.set_num_threads(1)
sys.path.insert(0, os.environ.get("STYLEGAN3_REPO", "/tmp/sg3"))  # NVlabs/stylegan3 checkout, not in this repo
import dnnlib
import legacy
from training import networks_stylegan2, networks_stylegan3

CASES = {  # name: (cfg, c_dim, img_channels)
    "t-c0-ch1": ("t", 0, 1),
    "t-c3-ch3": ("t", 3, 3),
    "r-c0-ch3": ("r", 0, 3),
    "r-c3-ch1": ("r", 3, 1),
}


def build(cfg, c_dim, channels, seed):
    torch.manual_seed(seed)
    # as train.py builds G_kwargs (class_name popped by construct_class_by_name), tiny sizes
    G_kwargs = dnnlib.EasyDict(
        z_dim=32,
        w_dim=32,
        mapping_kwargs=dnnlib.EasyDict(num_layers=2),
        channel_base=1024,
        channel_max=32,
        magnitude_ema_beta=0.5 ** (32 / (20 * 1e3)),
    )
    if cfg == "r":
        G_kwargs.conv_kernel = 1
        G_kwargs.channel_base *= 2
        G_kwargs.channel_max *= 2
        G_kwargs.use_radial_filters = True
    common = dict(c_dim=c_dim, img_resolution=32, img_channels=channels)
    G = networks_stylegan3.Generator(**G_kwargs, **common).train().requires_grad_(False)
    D = networks_stylegan2.Discriminator(
        channel_base=1024,
        channel_max=32,
        block_kwargs={},
        mapping_kwargs={},
        epilogue_kwargs={"mbstd_group_size": 4},
        **common,
    )
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in G.named_parameters():  # trained-looking weights: nothing at its init value
            p.add_(torch.randn(p.shape, generator=g) * (0.3 if p.ndim <= 1 else 0.2 * p.std().clamp(min=0.1)))
        for _ in range(6):  # move w_avg and every magnitude_ema as training does
            z = torch.randn(16, 32, generator=g)
            c = (
                torch.nn.functional.one_hot(torch.randint(0, c_dim, (16,), generator=g), c_dim).float()
                if c_dim
                else None
            )
            G(z, c, update_emas=True)
        for name, b in G.named_buffers():  # and far from 1, as after long training (the updates above move little)
            if name.endswith("magnitude_ema"):
                b.mul_(torch.empty([], dtype=torch.float32).uniform_(0.2, 5.0, generator=g))
        G.mapping.w_avg.add_(torch.randn(G.mapping.w_avg.shape, generator=g) * 0.5)
        ang = 0.3
        G.synthesis.input.transform.copy_(
            torch.tensor([[math.cos(ang), -math.sin(ang), 0.05], [math.sin(ang), math.cos(ang), -0.03], [0, 0, 1]])
        )
    return G, D


def main(out):
    refs = {}
    for i, (name, (cfg, c_dim, ch)) in enumerate(CASES.items()):
        G, D = build(cfg, c_dim, ch, seed=100 + i)
        G_ema = copy.deepcopy(G).eval()
        snapshot = dict(
            G=G,
            D=D,
            G_ema=G_ema,
            augment_pipe=None,
            training_set_kwargs=dict(path="data.zip", resolution=32, use_labels=bool(c_dim)),
        )
        for key, value in snapshot.items():  # as training_loop.py
            if isinstance(value, torch.nn.Module):
                snapshot[key] = copy.deepcopy(value).eval().requires_grad_(False).cpu()
        path = f"{out}/{name}.pkl"
        with open(path, "wb") as f:
            pickle.dump(snapshot, f)
        with open(path, "rb") as f:  # NVIDIA's own loading path
            G2 = legacy.load_network_pkl(f)["G_ema"].eval()
        g = torch.Generator().manual_seed(7)
        z = torch.randn(5, 32, generator=g)
        c = torch.eye(c_dim)[torch.tensor([0, 1, 2, 0, 1]) % c_dim] if c_dim else torch.zeros(5, 0)
        r = {"z": z, "c": c}
        with torch.no_grad():
            for tag, psi, cut in [("psi1", 1, None), ("psi07", 0.7, None), ("psi05cut4", 0.5, 4)]:
                ws = G2.mapping(z, c, truncation_psi=psi, truncation_cutoff=cut)
                r[f"ws_{tag}"] = ws
                r[f"img_{tag}"] = G2.synthesis(ws, noise_mode="const")
            r["G_psi07"] = G2(z, c, truncation_psi=0.7, noise_mode="random")
            r["D_logits"] = D.eval()(r["img_psi1"][:4], c[:4])
        refs[name] = r
        print(name, cfg, "num_ws", G2.num_ws, "layers", G2.synthesis.layer_names)
    torch.save(refs, f"{out}/nvidia_outputs.pt")


if __name__ == "__main__":
    main(sys.argv[1])
