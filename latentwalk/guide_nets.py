"""The guide networks: a compact CNN (default, fast on the CPU) and a ResNet-18, both with ``embed(x)`` (the
penultimate features) and a linear head; :func:`build_guide` makes one by name (:data:`ARCHITECTURES`).
Training, saving and loading are :mod:`latentwalk.guides`."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from latentwalk.errors import ConfigError

__all__ = ["ARCHITECTURES", "GuideCNN", "GuideResNet18", "build_guide", "conv_trunk", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def conv_trunk(in_channels: int, resolution: int, width: int) -> tuple[nn.Sequential, int]:
    """:class:`GuideCNN`'s feature stack: conv3x3-BN-ReLU blocks with 2x2 max pooling between them (``max(4,
    log2(resolution) - 1)`` blocks; ``width``, ``2 width``, then ``4 width`` channels), global average pooling,
    flattened. Returns the module and its output width."""
    n_blocks = max(4, int(math.log2(resolution)) - 1)
    layers: list[nn.Module] = []
    cin = in_channels
    for i in range(n_blocks):
        cout = width * 2 ** min(i, 2)
        if i > 0:
            layers.append(nn.MaxPool2d(2))
        layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten()), cin


class GuideCNN(nn.Module):
    """Compact CNN: conv3x3-BN-ReLU blocks with 2x2 max pooling between them, global average pooling, a linear
    embedding layer (+ReLU), and a linear head.

    The number of blocks grows with the resolution so the last feature map is 4x4 (at least 4 blocks):
    ``blocks = max(4, log2(resolution) - 1)``. Channels are ``width``, ``2 width``, then ``4 width``.

    Args:
        in_channels: 1 or 3.
        n_classes: number of output logits.
        resolution: input side in pixels (>= 16); sets the depth only, any size runs.
        width: channels of the first block.
        embed_dim: size D of :meth:`embed`.
    """

    def __init__(self, in_channels: int, n_classes: int, resolution: int, width: int = 32, embed_dim: int = 128):
        super().__init__()
        _check_model_args(in_channels, n_classes, resolution, embed_dim)
        self.init_kwargs = {
            "in_channels": in_channels,
            "n_classes": n_classes,
            "resolution": resolution,
            "width": width,
            "embed_dim": embed_dim,
        }
        self.in_channels = in_channels
        self.features, cin = conv_trunk(in_channels, resolution, width)
        self.embedding = nn.Sequential(nn.Linear(cin, embed_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(embed_dim, n_classes)

    def embed(self, x: Tensor) -> Tensor:
        """Penultimate features ``[N, embed_dim]`` (non-negative) of images ``[N, C, R, R]`` in [-1, 1]."""
        _check_input(x, self.in_channels)
        return self.embedding(self.features(x))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[N, n_classes]`` of images ``[N, C, R, R]`` in [-1, 1]."""
        return self.head(self.embed(x))


class GuideResNet18(nn.Module):
    """torchvision ResNet-18 backbone (its ``fc`` removed), a linear embedding layer (+ReLU) and a linear head.

    Input ``[N, C, R, R]`` in [-1, 1]: gray images (C = 1) are repeated to 3 channels, as PLAN's reference code does
    before its classifiers; then mapped to [0, 1] and normalised with ImageNet's mean and std, so that torchvision's
    ImageNet weights (loaded by ``train_guides`` from an explicit path) see the statistics they were trained on.
    The backbone's ``conv1`` always has 3 input channels, so one state_dict serves gray and colour inputs.

    Args:
        in_channels: 1 or 3.
        n_classes: number of output logits.
        resolution: input side in pixels (recorded; the network runs at any size >= 16).
        embed_dim: size D of :meth:`embed`.
    """

    def __init__(self, in_channels: int, n_classes: int, resolution: int, embed_dim: int = 128):
        super().__init__()
        from torchvision.models import resnet18

        _check_model_args(in_channels, n_classes, resolution, embed_dim)
        self.init_kwargs = {
            "in_channels": in_channels,
            "n_classes": n_classes,
            "resolution": resolution,
            "embed_dim": embed_dim,
        }
        self.in_channels = in_channels
        self.backbone = resnet18(weights=None)
        self.backbone.fc = nn.Identity()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.embedding = nn.Sequential(nn.Linear(512, embed_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(embed_dim, n_classes)

    def embed(self, x: Tensor) -> Tensor:
        """Penultimate features ``[N, embed_dim]`` (non-negative) of images ``[N, C, R, R]`` in [-1, 1]."""
        _check_input(x, self.in_channels)
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)  # [N, 3, R, R], gray repeated (differentiable)
        x = ((x + 1) / 2 - self.mean) / self.std
        return self.embedding(self.backbone(x))  # backbone: [N, 512] after global pooling

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[N, n_classes]`` of images ``[N, C, R, R]`` in [-1, 1]."""
        return self.head(self.embed(x))


ARCHITECTURES: dict[str, type[nn.Module]] = {"cnn": GuideCNN, "resnet18": GuideResNet18}


def build_guide(arch: str, **kwargs: Any) -> nn.Module:
    """Construct a guide network by architecture name with its constructor arguments (as stored in the JSON).

    Raises:
        ConfigError: unknown ``arch``, or arguments the architecture does not take (named).
    """
    if arch not in ARCHITECTURES:
        raise ConfigError(f'unknown guide architecture "{arch}"; expected one of {", ".join(ARCHITECTURES)}')
    try:
        return ARCHITECTURES[arch](**kwargs)
    except TypeError as e:
        raise ConfigError(f'invalid arguments for guide architecture "{arch}": {e}') from e


def _check_model_args(in_channels: int, n_classes: int, resolution: int, embed_dim: int) -> None:
    if in_channels not in (1, 3):
        raise ConfigError(f"in_channels must be 1 (gray) or 3 (colour), got {in_channels!r}")
    if n_classes < 2:
        raise ConfigError(f"a guide needs at least 2 classes, got {n_classes}")
    if resolution < 16:
        raise ConfigError(f"guide resolution must be >= 16 pixels, got {resolution}")
    if embed_dim < 1:
        raise ConfigError(f"embed_dim must be >= 1, got {embed_dim}")


def _check_input(x: Tensor, channels: int) -> None:
    if x.ndim != 4 or x.shape[1] != channels:
        raise ConfigError(f"guide expects images [N, {channels}, R, R] in [-1, 1], got shape {list(x.shape)}")
