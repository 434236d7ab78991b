"""Differentiable augmentation for GAN training on small datasets (DiffAugment, Zhao et al., NeurIPS 2020).

The same random transform family is applied to real and generated images before the discriminator, so the
discriminator cannot memorise the few real images while the generator still learns the un-augmented distribution.
Every op is differentiable in the image and draws its randomness from an explicit ``torch.Generator``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gan_zoo.errors import ConfigError

__all__ = ["AUGMENTS", "parse_policy", "diff_augment"]

AUGMENTS = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"color,translation,cutout"`` -> names; ``""`` or ``"none"`` -> no augmentation."""
    if policy.strip() in ("", "none"):
        return ()
    names = tuple(p.strip() for p in policy.split(","))
    unknown = [n for n in names if n not in AUGMENTS]
    if unknown:
        raise ConfigError(f"unknown augmentation {unknown[0]!r}; expected a comma list of {', '.join(AUGMENTS)}")
    return names


def _uniform(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    return torch.rand(n, 1, 1, 1, generator=generator).to(device)


def _color(x: Tensor, generator: torch.Generator | None) -> Tensor:
    n = x.shape[0]
    x = x + (_uniform(n, generator, x.device) - 0.5)  # brightness
    if x.shape[1] == 3:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (_uniform(n, generator, x.device) * 2) + mean  # saturation
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (_uniform(n, generator, x.device) + 0.5) + mean  # contrast


def _translation(x: Tensor, generator: torch.Generator | None, ratio: float = 0.125) -> Tensor:
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sy, sy + 1, (n, 1, 1), generator=generator).to(x.device)
    tx = torch.randint(-sx, sx + 1, (n, 1, 1), generator=generator).to(x.device)
    yy, xx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    src_y = (yy[None] - ty + sy).clamp(0, h + 2 * sy - 1)  # [N, H, W] rows in the padded image
    src_x = (xx[None] - tx + sx).clamp(0, w + 2 * sx - 1)
    padded = F.pad(x, [sx, sx, sy, sy])  # zeros = mid grey in [-1, 1]
    flat = padded.flatten(2)  # [N, C, (H+2sy)(W+2sx)]
    idx = (src_y * (w + 2 * sx) + src_x).flatten(1)[:, None, :].expand(-1, x.shape[1], -1)
    return flat.gather(2, idx).view_as(x)


def _cutout(x: Tensor, generator: torch.Generator | None, ratio: float = 0.5) -> Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=generator).to(x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=generator).to(x.device)
    yy, xx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    inside = ((yy[None] - cy + ch // 2).clamp(min=0) < ch) & ((xx[None] - cx + cw // 2).clamp(min=0) < cw)
    inside = inside & (yy[None] - cy + ch // 2 >= 0) & (xx[None] - cx + cw // 2 >= 0)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_OPS = {"color": _color, "translation": _translation, "cutout": _cutout}


def diff_augment(x: Tensor, policy: tuple[str, ...], generator: torch.Generator | None = None) -> Tensor:
    """Apply the ops of ``policy`` in order to images ``x [N, C, H, W]`` (range about [-1, 1]); differentiable."""
    for name in policy:
        x = _OPS[name](x, generator)
    return x
