"""Drawing images from any contract generator, and writing image grids."""

from __future__ import annotations

import io
import os

import torch
from torch import Tensor

from gan_zoo.errors import ConfigError
from gan_zoo.io import atomic_write_bytes

__all__ = ["sample_latents", "sample_images", "save_grid", "synthesize", "has_fused_toggle"]


def sample_latents(G, n: int, *, seed: int = 0, label: int | None = None) -> tuple[Tensor, Tensor | None]:
    """``z [n, z_dim]`` from a seeded CPU generator and one-hot ``c [n, c_dim]`` (cycling labels unless ``label``)."""
    if n < 1:
        raise ConfigError(f"number of samples must be >= 1, got {n}")
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=gen)
    if G.c_dim == 0:
        if label is not None:
            raise ConfigError("--label needs a conditional generator, but this one has c_dim = 0")
        return z, None
    if label is not None and not 0 <= label < G.c_dim:
        raise ConfigError(f"label must be in 0..{G.c_dim - 1}, got {label}")
    labels = torch.full((n,), label) if label is not None else torch.arange(n) % G.c_dim
    return z, torch.nn.functional.one_hot(labels, G.c_dim).float()


@torch.no_grad()
def sample_images(
    G, n: int, *, seed: int = 0, truncation_psi: float = 1.0, label: int | None = None, batch: int = 64
) -> Tensor:
    """``n`` images ``[n, C, R, R]`` in [-1, 1] (clamped, on the CPU) with const noise; deterministic given ``seed``."""
    z, c = sample_latents(G, n, seed=seed, label=label)
    device = next((p.device for p in G.parameters()), torch.device("cpu"))
    out = []
    for i in range(0, n, batch):
        zc = None if c is None else c[i : i + batch].to(device)
        out.append(G(z[i : i + batch].to(device), zc, truncation_psi=truncation_psi, noise_mode="const").cpu())
    return torch.cat(out).clamp(-1, 1)


def save_grid(images: Tensor, path: str | os.PathLike, nrow: int = 8) -> None:
    """Write images ``[N, C, H, W]`` in [-1, 1] as one PNG grid (gray for C = 1), atomically."""
    from PIL import Image
    from torchvision.utils import make_grid

    grid = make_grid(
        images.detach().float().cpu().clamp(-1, 1), nrow=nrow, padding=1, normalize=True, value_range=(-1, 1)
    )
    array = (grid.permute(1, 2, 0).numpy() * 255 + 0.5).clip(0, 255).astype("uint8")
    if images.shape[1] == 1:
        array = array[..., 0]
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def has_fused_toggle(G) -> bool:
    """True when ``G.synthesis`` is this package's network, which takes ``fused_modconv`` (NVIDIA's option)."""
    from gan_zoo.stylegan2 import SynthesisNetwork

    return isinstance(getattr(G, "synthesis", None), SynthesisNetwork)


def synthesize(G, ws: Tensor, *, fused_modconv: bool | None = None) -> Tensor:
    """``G.synthesis(ws, noise_mode="const")`` ``[N, C, R, R]``, not clamped: where images are rendered from ``ws``.

    ``fused_modconv`` (``False``: scale activations around one shared convolution, about 2x faster per image in
    batches on the CPU; ``True``: one grouped convolution with per-sample weights; equal up to rounding) reaches
    this package's synthesis network only; ``None`` or any other generator keeps the network's own default.
    """
    if fused_modconv is not None and has_fused_toggle(G):
        return G.synthesis(ws, noise_mode="const", fused_modconv=fused_modconv)
    return G.synthesis(ws, noise_mode="const")
