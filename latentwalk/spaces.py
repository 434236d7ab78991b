"""The distance spaces in which a synthetic image is compared with real ones: one registry for the gate, the
evaluation and the CLI's choices.

A space is an embedding (or the images themselves) and a metric. ``identity`` is the identity guide's embedding
(the space PLAN's identity term acts on, so figures measured in it are not independent of the walk: the evaluation
says so); ``lpips`` is LPIPS-AlexNet's unit-normalised features (needs the AlexNet backbone file); ``ssim`` is
``1 - SSIM`` on the images; ``pixels`` (evaluation only) is the Euclidean distance between flattened images.

Importing this module loads no torch: the CLI builds its choices from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from latentwalk.errors import ConfigError

__all__ = ["DistanceSpace", "SPACES", "GATE_SPACES", "EVAL_SPACES", "embedder"]


@dataclass(frozen=True)
class DistanceSpace:
    """A registered space: its name, the metric between its embeddings, and what it needs."""

    name: str
    metric: str  # "cosine" | "sqeuclidean" | "euclidean" | "1 - SSIM" (images compared directly)
    needs: str  # "guides" | "lpips weights" | "" (nothing)
    gate: bool  # usable by the generation gate


SPACES: dict[str, DistanceSpace] = {
    "identity": DistanceSpace("identity", "cosine", "guides", gate=True),
    "lpips": DistanceSpace("lpips", "sqeuclidean", "lpips weights", gate=True),
    "ssim": DistanceSpace("ssim", "1 - SSIM", "", gate=True),
    "pixels": DistanceSpace("pixels", "euclidean", "", gate=False),
}
GATE_SPACES = tuple(name for name, s in SPACES.items() if s.gate)
EVAL_SPACES = tuple(SPACES)


def embedder(space: str, *, guides: Any = None, lpips_net: Any = None, device: Any, chunk: int) -> Callable:
    """The embedding of ``space``: images ``[N, C, R, R]`` -> float32 ``[N, D]`` on ``device``, ``chunk`` at a time.

    ``ssim`` and ``pixels`` return the images themselves (on ``device``); the caller compares them. ``lpips`` needs
    ``lpips_net`` (an ``lpips.LPIPS`` AlexNet, e.g. :func:`latentwalk.weights.lpips_model`); ``identity`` the guides.

    Raises:
        ConfigError: an unknown space, or what the space needs is missing.
    """
    import torch

    if space not in SPACES:
        raise ConfigError(f'unknown distance space "{space}"; expected one of {", ".join(SPACES)}')
    if space == "identity":
        net = getattr(guides, "identity", None)
        if net is None:
            raise ConfigError("the identity space needs the guides (their identity embedding); pass guides")
        if not hasattr(net, "embed"):
            raise ConfigError("the identity guide has no embed(); train guides with latentwalk (GuideCNN/ResNet18)")
        fn = net.embed
    elif space == "lpips":
        from latentwalk.distances import LpipsEmbedding

        if lpips_net is None:
            raise ConfigError("the lpips space needs an LPIPS AlexNet (latentwalk.weights.lpips_model('alex'))")
        fn = LpipsEmbedding(lpips_net)
    else:
        return lambda x: x.to(device)

    @torch.no_grad()
    def embed(x: Any) -> Any:
        return torch.cat([fn(part.to(device)).float() for part in x.split(chunk)])

    return embed
