# ruff: noqa: E402, B007  (the foreign repository is put on sys.path first)
"""Phase 2 (our code only; NVIDIA's is not importable here): load the pickles of phase 1 with gan_zoo and compare
with NVIDIA's outputs. Prints the max abs difference per case and output."""

import sys

import torch

torch.set_num_threads(1)
import gan_zoo
from gan_zoo.nvidia import inspect_pickle, load_stylegan_pickle

out = sys.argv[1]
refs = torch.load(f"{out}/nvidia_outputs.pt", weights_only=True)
worst_all = {}
for name, r in refs.items():
    path = f"{out}/{name}.pkl"
    info = inspect_pickle(path)
    G = gan_zoo.load(f"stylegan:{path}")
    D = load_stylegan_pickle(path, key="D")
    z, c = r["z"], r["c"]
    diffs = {}
    with torch.no_grad():
        for tag, psi, cut in [("psi1", 1, None), ("psi07", 0.7, None), ("psi05cut4", 0.5, 4)]:
            ws = G.mapping(z, c, truncation_psi=psi, truncation_cutoff=cut)
            diffs[f"ws_{tag}"] = (ws - r[f"ws_{tag}"]).abs().max().item()
            img = G.synthesis(ws, noise_mode="const")
            diffs[f"img_{tag}"] = (img - r[f"img_{tag}"]).abs().max().item()
        diffs["G_psi07"] = (G(z, c, truncation_psi=0.7) - r["G_psi07"]).abs().max().item()
        diffs["D_logits"] = (D(r["img_psi1"][:4], c[:4]) - r["D_logits"]).abs().max().item()
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules
    worst = max(v for k, v in diffs.items() if k != "D_logits")
    worst_all[name] = worst
    print(
        f"{name}: family={info.family} config={info.config} {type(G).__module__}.{type(G).__name__} "
        f"img range [{r['img_psi1'].min():.3f}, {r['img_psi1'].max():.3f}] max|diff| images/ws {worst:.3g} "
        f"D {diffs['D_logits']:.3g}  " + " ".join(f"{k}={v:.2g}" for k, v in diffs.items())
    )
print("overall max abs difference:", max(worst_all.values()))

# Our own filter design (numpy, no scipy) against the filters NVIDIA designed with scipy and stored in the pickles.
from gan_zoo.stylegan3 import Generator

for name in refs:
    G = gan_zoo.load(f"stylegan:{out}/{name}.pkl")
    fresh = Generator(**G.init_kwargs)
    worst = max(
        (fresh.state_dict()[k] - v).abs().max().item()
        for k, v in G.state_dict().items()
        if k.endswith(("up_filter", "down_filter"))
    )
    emas = [round(float(m), 3) for k, m in G.state_dict().items() if k.endswith("magnitude_ema")]
    print(
        f"{name}: our designed filters vs NVIDIA's stored ones, max|diff| {worst:.3g}; magnitude_ema {emas[:4]}...;"
        f" |w_avg| {G.mapping.w_avg.norm():.3f}"
    )
