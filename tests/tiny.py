"""Tiny networks shared by test modules (CPU, seconds)."""

from __future__ import annotations

import torch


def tiny_generator(resolution: int = 32, seed: int = 0):
    """A seeded 32-px StyleGAN2 generator of our own with 8-d latents and 8 channels (about 10 k parameters)."""
    from gan_zoo.stylegan2 import Generator

    torch.manual_seed(seed)
    return Generator(8, 0, 8, resolution, 1, mapping_kwargs={"num_layers": 1},
                     synthesis_kwargs={"channel_base": 64, "channel_max": 8})  # fmt: skip
