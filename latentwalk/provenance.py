"""The software versions recorded in what latentwalk writes (guides, synthetic datasets), from one place."""

from __future__ import annotations

import platform

__all__ = ["versions"]


def versions(*, full: bool = True) -> dict[str, str]:
    """``{"latentwalk", "torch"}`` versions, plus torchvision, numpy and python when ``full``."""
    import torch

    from latentwalk import __version__

    out = {"latentwalk": __version__, "torch": torch.__version__}
    if full:
        import numpy as np
        import torchvision

        out.update(torchvision=torchvision.__version__, numpy=np.__version__, python=platform.python_version())
    return out
