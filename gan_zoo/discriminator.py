"""The StyleGAN2-ADA discriminator in plain PyTorch (used to train generators; NVIDIA's names, so their ``D``
state_dict loads with ``strict=True``). Read from NVIDIA's ``training/networks.py`` (stylegan2-ada-pytorch, commit
d72cc7d041b42ec8e806021a205ed9349f87c6a4); see :mod:`gan_zoo.stylegan2` for what was checked and what differs."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from gan_zoo.errors import ConfigError
from gan_zoo.ops import block_dtype, check_choice, check_keys, check_shape, downsample2d, setup_filter
from gan_zoo.stylegan2 import ARCHITECTURES, Conv2dLayer, FullyConnectedLayer, MappingNetwork

__all__ = ["Discriminator", "DiscriminatorBlock", "DiscriminatorEpilogue", "MinibatchStdLayer"]

_D_BLOCK_KWARGS = frozenset({"activation", "resample_filter", "fp16_channels_last", "freeze_layers"})
_D_MAPPING_KWARGS = frozenset({"num_layers", "embed_features", "layer_features", "activation", "lr_multiplier"})
_D_EPILOGUE_KWARGS = frozenset({"mbstd_group_size", "mbstd_num_channels", "activation"})


class DiscriminatorBlock(nn.Module):
    """One resolution of the discriminator: ``[N, tmp, R, R] -> [N, out_channels, R/2, R/2]``.

    ``fromrgb`` reads the image in the first block (every block for ``skip``); ``resnet`` adds a 1x1
    down-sampling shortcut.
    """

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        resolution: int,
        img_channels: int,
        first_layer_idx: int,
        architecture: str = "resnet",
        activation: str = "lrelu",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        freeze_layers: int = 0,
    ) -> None:
        super().__init__()
        check_choice("architecture", architecture, ARCHITECTURES)
        if in_channels not in (0, tmp_channels):
            raise ConfigError(f"in_channels must be 0 or {tmp_channels}, got {in_channels}")
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_layers = 0

        def conv(*args: Any, **kwargs: Any) -> Conv2dLayer:
            trainable = self.first_layer_idx + self.num_layers >= freeze_layers
            self.num_layers += 1
            return Conv2dLayer(*args, trainable=trainable, channels_last=self.channels_last, **kwargs)

        act = dict(activation=activation, conv_clamp=conv_clamp)
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = conv(img_channels, tmp_channels, kernel_size=1, **act)
        self.conv0 = conv(tmp_channels, tmp_channels, kernel_size=3, **act)
        self.conv1 = conv(tmp_channels, out_channels, kernel_size=3, down=2, resample_filter=resample_filter, **act)
        if architecture == "resnet":
            self.skip = conv(
                tmp_channels, out_channels, kernel_size=1, bias=False, down=2, resample_filter=resample_filter
            )

    def forward(self, x: Tensor | None, img: Tensor | None, force_fp32: bool = False) -> tuple[Tensor, Tensor | None]:
        """``x [N, in_channels, R, R]`` or ``None``, ``img [N, img_channels, R, R]`` -> ``(x, img at R/2 or None)``."""
        device = (x if x is not None else img).device
        dtype = block_dtype(self.use_fp16, force_fp32, device)
        fmt = torch.channels_last if self.channels_last and dtype == torch.float16 else torch.contiguous_format
        if x is not None:
            x = x.to(dtype=dtype, memory_format=fmt)
        if self.in_channels == 0 or self.architecture == "skip":
            check_shape("img", img, [None, self.img_channels, self.resolution, self.resolution])
            img = img.to(dtype=dtype, memory_format=fmt)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
            x = y + x
        else:
            x = self.conv1(self.conv0(x))
        return x, img


class MinibatchStdLayer(nn.Module):
    """Append the standard deviation across groups of ``group_size`` samples as extra channels.

    Shapes: ``[N, C, H, W] -> [N, C + num_channels, H, W]``; ``N`` must be a multiple of ``min(group_size, N)``.
    """

    def __init__(self, group_size: int | None, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        if n % g:
            raise ConfigError(f"batch size {n} must be a multiple of the minibatch-std group size {g}")
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)  # [G, n, F, c, H, W]
        y = (y - y.mean(dim=0)).square().mean(dim=0)  # variance over each group  [n, F, c, H, W]
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # [n, F]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)  # [N, F, H, W]
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """Final 4x4 stage: minibatch std, conv, two dense layers, optional projection onto the label embedding.

    Shapes: ``[N, in_channels, 4, 4] -> [N, 1]`` float32.
    """

    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,
        resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        activation: str = "lrelu",
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        check_choice("architecture", architecture, ARCHITECTURES)
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation, conv_clamp=conv_clamp
        )
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: Tensor, img: Tensor | None, cmap: Tensor | None) -> Tensor:
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.architecture == "skip":
            x = x + self.fromrgb(img.to(dtype=torch.float32, memory_format=torch.contiguous_format))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.out(self.fc(self.conv(x).flatten(1)))
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    """StyleGAN2-ADA discriminator (``resnet`` by default) with NVIDIA's state_dict names.

    Args:
        c_dim: label size; 0 = unconditional (labels are projected onto ``cmap_dim`` when > 0).
        img_resolution: input size, a power of two >= 4.
        img_channels: input channels.
        block_kwargs: keys ``activation``, ``resample_filter``, ``fp16_channels_last``, ``freeze_layers``.
        mapping_kwargs: label mapping keys ``num_layers``, ``embed_features``, ``layer_features``, ``activation``,
            ``lr_multiplier``.
        epilogue_kwargs: keys ``mbstd_group_size``, ``mbstd_num_channels``, ``activation``.
    """

    def __init__(
        self,
        c_dim: int,
        img_resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = None,
        cmap_dim: int | None = None,
        block_kwargs: Mapping[str, Any] | None = None,
        mapping_kwargs: Mapping[str, Any] | None = None,
        epilogue_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        block_kwargs = check_keys("block_kwargs", block_kwargs, _D_BLOCK_KWARGS)
        mapping_kwargs = check_keys("mapping_kwargs", mapping_kwargs, _D_MAPPING_KWARGS)
        epilogue_kwargs = check_keys("epilogue_kwargs", epilogue_kwargs, _D_EPILOGUE_KWARGS)
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ConfigError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self._init_kwargs = copy.deepcopy(
            dict(
                c_dim=c_dim,
                img_resolution=img_resolution,
                img_channels=img_channels,
                architecture=architecture,
                channel_base=channel_base,
                channel_max=channel_max,
                num_fp16_res=num_fp16_res,
                conv_clamp=conv_clamp,
                cmap_dim=cmap_dim,
                block_kwargs=block_kwargs,
                mapping_kwargs=mapping_kwargs,
                epilogue_kwargs=epilogue_kwargs,
            )
        )
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(self.img_resolution_log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        cmap_dim = (channels[4] if cmap_dim is None else cmap_dim) if c_dim > 0 else 0
        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        layer_idx = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(
                channels[res] if res < img_resolution else 0,
                channels[res],
                channels[res // 2],
                resolution=res,
                first_layer_idx=layer_idx,
                use_fp16=res >= fp16_resolution,
                **block_kwargs,
                **common,
            )
            setattr(self, f"b{res}", block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(0, c_dim, cmap_dim, num_ws=None, w_avg_beta=None, **mapping_kwargs)
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, resolution=4, **epilogue_kwargs, **common)

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """The constructor arguments (a copy)."""
        return copy.deepcopy(self._init_kwargs)

    def forward(self, img: Tensor, c: Tensor | None, force_fp32: bool = False) -> Tensor:
        """``img [N, img_channels, R, R]`` (range [-1, 1]), ``c [N, c_dim]`` or ``None`` -> logits ``[N, 1]``."""
        check_shape("img", img, [None, self.img_channels, self.img_resolution, self.img_resolution])
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, force_fp32=force_fp32)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)
