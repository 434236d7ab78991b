"""StyleGAN2-ADA generator in plain PyTorch (discriminator: :mod:`gan_zoo.discriminator`; ops: :mod:`gan_zoo.ops`).

Karras et al., "Analyzing and Improving the Image Quality of StyleGAN" (CVPR 2020) and "Training Generative
Adversarial Networks with Limited Data" (NeurIPS 2020). Written from the papers and from reading NVIDIA's
``training/networks.py`` (github.com/NVlabs/stylegan2-ada-pytorch, commit d72cc7d041b42ec8e806021a205ed9349f87c6a4);
no NVIDIA code is imported or needed. Module, parameter and buffer names are the same as theirs, so a state_dict of
their ``G_ema`` (or ``D``) loads here with ``strict=True``. On the CPU in float32 our outputs equalled theirs bit for
bit (max abs difference 0 for mapping with truncation, synthesis with const/random/no noise, fused and unfused
modulation, and discriminator logits; gradients to 1e-7 relative; orig/skip/resnet, 1 and 3 channels, 32-128 px, with
and without ``conv_clamp`` and labels). The StyleGAN2 of NVIDIA's StyleGAN3 repository (``networks_stylegan2.py``,
commit c233a91) matched bit for bit too, with its defaults passed explicitly (see :mod:`gan_zoo.nvidia`).

Differences from NVIDIA's code, all deliberate:

- ``noise_mode`` defaults to ``'const'`` (deterministic); ``'random'`` noise comes from the ``generator`` argument
  or, when it is ``None``, from torch's default generator at call time.
- The ``w_avg`` moving average moves only when ``update_emas=True`` is passed (StyleGAN3-style), not whenever the
  mapping network is in training mode.
- Blocks run in float16 only on CUDA (``num_fp16_res`` selects the blocks as NVIDIA does); on other devices
  everything stays float32, as in the StyleGAN3 repository (stylegan2-ada-pytorch would run them in float16 on the
  CPU too).
- ``fused_modconv_default`` (StyleGAN3 repository option) is accepted; its default ``None`` keeps the ADA rule.
- The FIR resampling and fused bias + activation use plain torch ops (no custom CUDA kernels).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from gan_zoo.errors import ConfigError
from gan_zoo.ops import (
    ACTIVATIONS,
    bias_act,
    block_dtype,
    check_choice,
    check_keys,
    check_shape,
    conv2d_resample,
    downsample2d,
    mapping_input,
    modulated_conv2d,
    setup_filter,
    upfirdn2d,
    upsample2d,
)

__all__ = [
    "ARCHITECTURES",
    "ACTIVATIONS",
    "NOISE_MODES",
    "MAPPING_KWARGS",
    "SYNTHESIS_KWARGS",
    "Generator",
    "MappingNetwork",
    "SynthesisNetwork",
    "SynthesisBlock",
    "SynthesisLayer",
    "ToRGBLayer",
    "FullyConnectedLayer",
    "Conv2dLayer",
    "bias_act",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
    "downsample2d",
    "conv2d_resample",
    "modulated_conv2d",
]

ARCHITECTURES = ("orig", "skip", "resnet")
NOISE_MODES = ("const", "random", "none")

# Accepted keys of Generator(mapping_kwargs=..., synthesis_kwargs=...); anything else is a ConfigError.
MAPPING_KWARGS = frozenset(
    {"num_layers", "embed_features", "layer_features", "activation", "lr_multiplier", "w_avg_beta"}
)
SYNTHESIS_KWARGS = frozenset(
    {
        "channel_base",  # channels at resolution r: min(channel_base // r, channel_max)
        "channel_max",
        "num_fp16_res",  # the N highest resolutions run in float16 (CUDA only)
        "architecture",  # 'orig' | 'skip' | 'resnet'
        "resample_filter",  # FIR taps for up-sampling, e.g. [1, 3, 3, 1]
        "conv_clamp",  # clamp conv outputs to +-X; None = off
        "fp16_channels_last",
        "kernel_size",
        "use_noise",
        "activation",
        "fused_modconv_default",  # None = NVIDIA ADA rule (fused in eval), True, False or 'inference_only'
    }
)
# ---------------------------------------------------------------------------------------------------------------
# Layers.


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalised learning rate: ``act(x @ (weight * lr / sqrt(in)).T + bias * lr)``.

    Shapes: ``[N, in_features] -> [N, out_features]``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        check_choice("activation", activation, tuple(ACTIVATIONS))
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


class Conv2dLayer(nn.Module):
    """Convolution with equalised learning rate, optional FIR up/down-sampling, bias, activation and clamp.

    Shapes: ``[N, in_channels, H, W] -> [N, out_channels, H * up / down, W * up / down]``.
    ``trainable=False`` stores weight and bias as buffers (NVIDIA's Freeze-D).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        channels_last: bool = False,
        trainable: bool = True,
    ) -> None:
        super().__init__()
        check_choice("activation", activation, tuple(ACTIVATIONS))
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = ACTIVATIONS[activation][2]
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=fmt)
        b = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(b) if b is not None else None
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("bias", b)

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = conv2d_resample(x, w, self.resample_filter, self.up, self.down, self.padding, flip_weight=self.up == 1)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class MappingNetwork(nn.Module):
    """Maps ``z`` (and an optional label ``c``) to intermediate latents ``w``, broadcast to ``num_ws`` layers.

    Holds ``w_avg`` ``[w_dim]``, the moving average of ``w`` used for truncation (when ``w_avg_beta`` is set).
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        embed_features = 0 if c_dim == 0 else (w_dim if embed_features is None else embed_features)
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for i in range(num_layers):
            layer = FullyConnectedLayer(
                features[i], features[i + 1], activation=activation, lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{i}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: Tensor | None,
        c: Tensor | None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> Tensor:
        """Compute latents.

        Args:
            z: ``[N, z_dim]`` (ignored when ``z_dim == 0``).
            c: ``[N, c_dim]`` labels, usually one-hot; ``None`` or ``[N, 0]`` when ``c_dim == 0``.
            truncation_psi: ``w = w_avg + psi * (w - w_avg)``; 1 = off, 0 = every sample is ``w_avg``.
            truncation_cutoff: truncate only the first this many of the ``num_ws`` layers; ``None`` = all.
            update_emas: move ``w_avg`` towards this batch's mean ``w`` (training only).

        Returns:
            ``[N, num_ws, w_dim]`` float32 (``[N, w_dim]`` when ``num_ws`` is ``None``).
        """
        x = mapping_input(z, c, self.z_dim, self.c_dim, getattr(self, "embed", None))
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)

        if update_emas and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])  # [N, num_ws, w_dim]
        if truncation_psi != 1:
            if self.w_avg_beta is None:
                raise ConfigError("truncation needs w_avg, but this mapping network was built with w_avg_beta=None")
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                head = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
                x = torch.cat([head, x[:, truncation_cutoff:]], dim=1)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally up-sampling by 2) + per-pixel noise + bias + lrelu.

    Shapes: ``x [N, in_channels, R / up, R / up]``, ``w [N, w_dim] -> [N, out_channels, R, R]``, R = ``resolution``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        check_choice("activation", activation, tuple(ACTIVATIONS))
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = ACTIVATIONS[activation][2]
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=fmt)
        self.weight = nn.Parameter(weight)
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self,
        x: Tensor,
        w: Tensor,
        noise_mode: str = "const",
        fused_modconv: bool = True,
        gain: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        check_choice("noise_mode", noise_mode, NOISE_MODES)
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            shape = [x.shape[0], 1, self.resolution, self.resolution]
            noise = torch.randn(shape, device=x.device, generator=generator) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            noise=noise,
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            flip_weight=self.up == 1,
            fused_modconv=fused_modconv,
        )
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated (not demodulated) 1x1 convolution to image channels: ``[N, C, R, R] -> [N, img_channels, R, R]``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel_size: int = 1,
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=fmt)
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: Tensor, w: Tensor, fused_modconv: bool = True) -> Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (learned constant or 2x up-sampling conv) + conv (+ to-RGB).

    ``orig``: to-RGB only in the last block. ``skip``: every block adds its to-RGB output to the up-sampled image of
    the previous block. ``resnet``: a 1x1 up-sampling shortcut around the two convolutions, to-RGB only at the end.
    ``forward`` consumes ``num_conv + num_torgb`` latents; the to-RGB latent is shared with the next block.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str = "skip",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        kernel_size: int = 3,
        use_noise: bool = True,
        activation: str = "lrelu",
        fused_modconv_default: bool | str | None = None,
    ) -> None:
        super().__init__()
        check_choice("architecture", architecture, ARCHITECTURES)
        if fused_modconv_default not in (None, True, False, "inference_only"):
            raise ConfigError(
                f"fused_modconv_default must be None, True, False or 'inference_only', got {fused_modconv_default!r}"
            )
        self.fused_modconv_default = fused_modconv_default
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        layer_kwargs = dict(
            w_dim=w_dim,
            resolution=resolution,
            conv_clamp=conv_clamp,
            channels_last=self.channels_last,
            kernel_size=kernel_size,
            use_noise=use_noise,
            activation=activation,
        )
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, up=2, resample_filter=resample_filter, **layer_kwargs
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(
                out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp, channels_last=self.channels_last
            )
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(
                in_channels,
                out_channels,
                kernel_size=1,
                bias=False,
                up=2,
                resample_filter=resample_filter,
                channels_last=self.channels_last,
            )

    def forward(
        self,
        x: Tensor | None,
        img: Tensor | None,
        ws: Tensor,
        noise_mode: str = "const",
        force_fp32: bool = False,
        fused_modconv: bool | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Run the block.

        Args:
            x: features ``[N, in_channels, R/2, R/2]`` (``None`` for the first block).
            img: image so far ``[N, img_channels, R/2, R/2]`` float32, or ``None``.
            ws: ``[N, num_conv + num_torgb, w_dim]``.

        Returns:
            ``(x [N, out_channels, R, R], img [N, img_channels, R, R] float32 or None)``.
        """
        check_shape("block ws", ws, [None, self.num_conv + self.num_torgb, self.w_dim])
        w_iter = iter(ws.unbind(dim=1))
        dtype = block_dtype(self.use_fp16, force_fp32, ws.device)
        fmt = torch.channels_last if self.channels_last and dtype == torch.float16 else torch.contiguous_format
        if fused_modconv is None:
            fused_modconv = self.fused_modconv_default
        if fused_modconv is None:  # stylegan2-ada-pytorch's rule
            fused_modconv = (not self.training) and (dtype == torch.float32 or ws.shape[0] == 1)
        elif fused_modconv == "inference_only":  # StyleGAN3 repository's option
            fused_modconv = not self.training
        kw = dict(noise_mode=noise_mode, fused_modconv=fused_modconv, generator=generator)

        if self.in_channels == 0:
            x = self.const.to(dtype=dtype, memory_format=fmt).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w_iter), **kw)
        else:
            x = x.to(dtype=dtype, memory_format=fmt)
            if self.architecture == "resnet":
                y = self.skip(x, gain=math.sqrt(0.5))
                x = self.conv0(x, next(w_iter), **kw)
                x = self.conv1(x, next(w_iter), gain=math.sqrt(0.5), **kw)
                x = y + x
            else:
                x = self.conv0(x, next(w_iter), **kw)
                x = self.conv1(x, next(w_iter), **kw)

        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """Turns latents ``ws [N, num_ws, w_dim]`` into images ``[N, img_channels, R, R]`` through blocks ``b4 ... bR``.

    Channels at resolution ``r`` are ``min(channel_base // r, channel_max)``; the ``num_fp16_res`` highest
    resolutions (never below 8 px) are marked ``use_fp16`` and run in float16 on CUDA only.
    """

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        **block_kwargs: Any,
    ) -> None:
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ConfigError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(2, self.img_resolution_log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            is_last = res == img_resolution
            block = SynthesisBlock(
                channels[res // 2] if res > 4 else 0,
                channels[res],
                w_dim=w_dim,
                resolution=res,
                img_channels=img_channels,
                is_last=is_last,
                use_fp16=res >= fp16_resolution,
                **block_kwargs,
            )
            self.num_ws += block.num_conv + (block.num_torgb if is_last else 0)
            setattr(self, f"b{res}", block)

    def forward(
        self,
        ws: Tensor,
        noise_mode: str = "const",
        force_fp32: bool = False,
        fused_modconv: bool | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Render images.

        Args:
            ws: ``[N, num_ws, w_dim]``.
            noise_mode: ``'const'`` (stored noise, deterministic), ``'random'`` (fresh noise drawn from
                ``generator``, or torch's default generator when ``None``) or ``'none'``.
            force_fp32: run float16 blocks in float32 (only matters on CUDA).
            fused_modconv: see :func:`modulated_conv2d`; ``None`` = the ``fused_modconv_default`` option, whose
                default ``None`` means fused in eval mode (float32) and unfused in training.

        Returns:
            ``[N, img_channels, img_resolution, img_resolution]`` float32, about [-1, 1] (not clamped).
        """
        check_choice("noise_mode", noise_mode, NOISE_MODES)
        check_shape("ws", ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            cur_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(x, img, cur_ws, noise_mode, force_fp32, fused_modconv, generator)
        return img


class Generator(nn.Module):
    """StyleGAN2-ADA generator: ``G(z, c) = synthesis(mapping(z, c))``, NVIDIA's contract and state_dict names.

    Args:
        z_dim: latent ``z`` size (e.g. 512).
        c_dim: label size; 0 = unconditional.
        w_dim: intermediate latent size.
        img_resolution: output size in pixels, a power of two >= 4.
        img_channels: 1 (grayscale) or 3 (RGB), any positive number works.
        mapping_kwargs: keys from :data:`MAPPING_KWARGS` (``num_layers`` 8, ``lr_multiplier`` 0.01,
            ``w_avg_beta`` 0.995, ...).
        synthesis_kwargs: keys from :data:`SYNTHESIS_KWARGS` (``channel_base`` 32768, ``channel_max`` 512,
            ``architecture`` 'skip', ``conv_clamp`` None, ``num_fp16_res`` 0, ...).

    Raises:
        ConfigError: an unknown key in either dict, or an invalid value.
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: Mapping[str, Any] | None = None,
        synthesis_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        mapping_kwargs = check_keys("mapping_kwargs", mapping_kwargs, MAPPING_KWARGS)
        synthesis_kwargs = check_keys("synthesis_kwargs", synthesis_kwargs, SYNTHESIS_KWARGS)
        self._init_kwargs = copy.deepcopy(
            dict(
                z_dim=z_dim,
                c_dim=c_dim,
                w_dim=w_dim,
                img_resolution=img_resolution,
                img_channels=img_channels,
                mapping_kwargs=mapping_kwargs,
                synthesis_kwargs=synthesis_kwargs,
            )
        )
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, num_ws=self.num_ws, **mapping_kwargs)

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """The constructor arguments (a copy); ``Generator(**G.init_kwargs)`` builds the same architecture."""
        return copy.deepcopy(self._init_kwargs)

    def forward(
        self,
        z: Tensor,
        c: Tensor | None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
        noise_mode: str = "const",
        force_fp32: bool = False,
        fused_modconv: bool | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``z [N, z_dim]``, ``c [N, c_dim]`` or ``None`` -> images ``[N, img_channels, R, R]`` float32, ~[-1, 1].

        See :meth:`MappingNetwork.forward` and :meth:`SynthesisNetwork.forward` for the arguments.
        """
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff, update_emas=update_emas)
        return self.synthesis(ws, noise_mode, force_fp32, fused_modconv, generator)
