"""gan_zoo: everything that turns a latent code into an image (generators, loaders, inversion).

It knows nothing about privacy. Importing it does no work and does not import torch: the names below load their
module on first use.

    G = gan_zoo.load("demo:cxr")                     # or lite:PATH, stylegan:PATH.pkl, module:pkg.mod:factory
    img = G(torch.randn(4, G.z_dim), c)              # [4, img_channels, R, R] in [-1, 1]
    G = gan_zoo.wrap(my_decoder, z_dim=64, output_range=(0, 1))   # any z -> image module
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "GeneratorLike": "gan_zoo.base",
    "check_generator": "gan_zoo.base",
    "describe": "gan_zoo.base",
    "prepare": "gan_zoo.base",
    "SPECS": "gan_zoo.registry",
    "load": "gan_zoo.registry",
    "parse_spec": "gan_zoo.registry",
    "register_loader": "gan_zoo.registry",
    "wrap": "gan_zoo.wrapping",
}

__all__ = [
    "GeneratorLike",
    "SPECS",
    "check_generator",
    "describe",
    "load",
    "parse_spec",
    "prepare",
    "register_loader",
    "wrap",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # cache; later lookups do not come here
        return value
    raise AttributeError(f"module 'gan_zoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
