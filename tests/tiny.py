"""Tiny networks shared by test modules (CPU, seconds)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TinyClassifier(nn.Module):
    """A seeded conv + linear head on ``in_channels``-channel 16 px images (a stand-in guide for PLAN's tests)."""

    def __init__(self, classes: int, seed: int, in_channels: int = 3) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(in_channels, 4, 3, stride=2, padding=1)
        self.head = nn.Linear(4 * 8 * 8, classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.leaky_relu(self.conv(x), 0.2).flatten(1))


def tiny_generator(resolution: int = 32, seed: int = 0):
    """A seeded 32-px StyleGAN2 generator of our own with 8-d latents and 8 channels (about 10 k parameters)."""
    from gan_zoo.stylegan2 import Generator

    torch.manual_seed(seed)
    return Generator(8, 0, 8, resolution, 1, mapping_kwargs={"num_layers": 1},
                     synthesis_kwargs={"channel_base": 64, "channel_max": 8})  # fmt: skip


def tiny_stylegan3(config: str = "t", c_dim: int = 0, channels: int = 1, resolution: int = 16, seed: int = 0):
    """A seeded StyleGAN3 of our own (config ``t`` or ``r``; 8-d latents, 4 layers, 8 or 16 channels, margin 2) in a
    trained-looking state: every ``magnitude_ema``, ``w_avg`` and the Fourier features' affine away from their init."""
    from gan_zoo.stylegan3 import Generator

    torch.manual_seed(seed)
    synthesis = {"channel_base": 64, "channel_max": 8, "num_layers": 4, "margin_size": 2}
    if config == "r":
        synthesis.update(conv_kernel=1, use_radial_filters=True, channel_base=128, channel_max=16)
    G = Generator(8, c_dim, 8, resolution, channels, mapping_kwargs={"num_layers": 2}, synthesis_kwargs=synthesis)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, b in G.named_buffers():
            if name.endswith("magnitude_ema"):
                b.fill_(float(torch.empty([]).uniform_(0.3, 3.0, generator=g)))
        G.mapping.w_avg.copy_(torch.randn(8, generator=g))
        G.synthesis.input.affine.weight.normal_(generator=g)  # rotate and translate the Fourier features with w
    return G.eval()


def crash_after(n: int, fn):
    """``fn`` that raises KeyboardInterrupt on its call number ``n + 1`` (a run killed after ``n`` work items)."""
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n:
            raise KeyboardInterrupt
        return fn(*args, **kwargs)

    return wrapped
