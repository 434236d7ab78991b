"""StyleGAN2-ADA generator and discriminator in plain PyTorch.

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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_zoo.errors import ConfigError

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
    "Discriminator",
    "DiscriminatorBlock",
    "DiscriminatorEpilogue",
    "MinibatchStdLayer",
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

# name -> (function of (x, alpha), default alpha, default gain); the gains keep the signal's magnitude.
ACTIVATIONS: dict[str, tuple[Callable[[Tensor, float], Tensor], float, float]] = {
    "linear": (lambda x, a: x, 0.0, 1.0),
    "relu": (lambda x, a: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": (lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2)),
    "tanh": (lambda x, a: torch.tanh(x), 0.0, 1.0),
    "sigmoid": (lambda x, a: torch.sigmoid(x), 0.0, 1.0),
    "elu": (lambda x, a: F.elu(x), 0.0, 1.0),
    "selu": (lambda x, a: F.selu(x), 0.0, 1.0),
    "softplus": (lambda x, a: F.softplus(x), 0.0, 1.0),
    "swish": (lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2)),
}

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
_D_BLOCK_KWARGS = frozenset({"activation", "resample_filter", "fp16_channels_last", "freeze_layers"})
_D_MAPPING_KWARGS = frozenset({"num_layers", "embed_features", "layer_features", "activation", "lr_multiplier"})
_D_EPILOGUE_KWARGS = frozenset({"mbstd_group_size", "mbstd_num_channels", "activation"})


def _check_keys(what: str, given: Mapping[str, Any] | None, allowed: frozenset[str]) -> dict[str, Any]:
    given = dict(given or {})
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ConfigError(f"unknown {what} {unknown}; expected a subset of {sorted(allowed)}")
    return given


def _check_choice(what: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{what} must be one of {list(choices)}, got {value!r}")


def _check_shape(what: str, x: Tensor, shape: Sequence[int | None]) -> None:
    ok = x.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, x.shape, strict=True))
    if not ok:
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ConfigError(f"{what} must have shape {want}, got {list(x.shape)}")


# ---------------------------------------------------------------------------------------------------------------
# Functional ops: fused bias + activation, FIR resampling, modulated convolution.


def bias_act(
    x: Tensor,
    b: Tensor | None = None,
    act: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
    alpha: float | None = None,
    dim: int = 1,
) -> Tensor:
    """Add a bias along ``dim``, apply an activation, scale by ``gain`` and clamp to ``[-clamp, clamp]``.

    Args:
        x: any shape; ``b`` (1-D, ``x.shape[dim]`` entries) is broadcast along ``dim``.
        act: a key of :data:`ACTIVATIONS`; ``gain``/``alpha`` default to that activation's defaults
            (``lrelu``: slope 0.2, gain sqrt(2)).
        clamp: ``None`` = no clamping.

    Returns:
        A tensor shaped and typed like ``x``.
    """
    func, def_alpha, def_gain = ACTIVATIONS[act]
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = func(x, float(def_alpha if alpha is None else alpha))
    gain = float(def_gain if gain is None else gain)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-float(clamp), float(clamp))
    return x


def setup_filter(taps: Sequence[float] | Tensor | None) -> Tensor:
    """Normalised FIR low-pass filter from 1-D taps (sum 1), float32 on the CPU.

    Fewer than 8 taps give the 2-D outer product ``[k, k]`` (so ``[1, 3, 3, 1]`` gives ``[4, 4]``); 8 or more stay
    1-D ``[k]`` and are applied separably. ``None`` is the identity filter. These shapes are the ones stored in
    NVIDIA's ``resample_filter`` buffers.
    """
    f = torch.as_tensor(1.0 if taps is None else taps, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim == 1 and f.numel() < 8:
        f = torch.outer(f, f)
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ConfigError(f"resample_filter must be 1-D taps, got shape {list(f.shape)}")
    return f / f.sum()


def _as_2d(f: Tensor | None, device: torch.device) -> Tensor:
    if f is None:
        return torch.ones(1, 1, device=device)
    return torch.outer(f, f) if f.ndim == 1 else f


def upfirdn2d(
    x: Tensor,
    f: Tensor | None,
    up: int = 1,
    down: int = 1,
    padding: Sequence[int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> Tensor:
    """Zero-insert up-sample, pad (negative = crop), convolve with the FIR ``f``, then keep every ``down``-th pixel.

    Args:
        x: ``[N, C, H, W]``.
        f: filter from :func:`setup_filter` (``[k, k]`` or separable ``[k]``) or ``None`` (identity).
        padding: ``(left, right, top, bottom)`` in up-sampled pixels.
        gain: multiplies the filter (use ``up**2`` after zero insertion to keep the magnitude).

    Returns:
        ``[N, C, (H*up + top + bottom - kh + 1) / down, (W*up + left + right - kw + 1) / down]`` (ceil division).
    """
    n, c, h, w = x.shape
    if up > 1:
        y = x.new_zeros(n, c, h * up, w * up)
        y[:, :, ::up, ::up] = x
        x = y
    x = F.pad(x, list(padding))
    k = (_as_2d(f, x.device) * gain).flip([0, 1]).to(x.dtype)  # flip: a true convolution
    return F.conv2d(x, k[None, None].expand(c, 1, *k.shape), stride=down, groups=c)


def _filter_size(f: Tensor | None) -> tuple[int, int]:
    if f is None:
        return 1, 1
    return int(f.shape[-1]), int(f.shape[0])


def upsample2d(x: Tensor, f: Tensor | None, up: int = 2) -> Tensor:
    """FIR up-sampling ``[N, C, H, W] -> [N, C, H*up, W*up]`` keeping the signal's magnitude."""
    fw, fh = _filter_size(f)
    pad = ((fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2)
    return upfirdn2d(x, f, up=up, padding=pad, gain=up * up)


def downsample2d(x: Tensor, f: Tensor | None, down: int = 2) -> Tensor:
    """FIR down-sampling ``[N, C, H, W] -> [N, C, H/down, W/down]``."""
    fw, fh = _filter_size(f)
    pad = ((fw - down + 1) // 2, (fw - down) // 2, (fh - down + 1) // 2, (fh - down) // 2)
    return upfirdn2d(x, f, down=down, padding=pad)


def conv2d_resample(
    x: Tensor,
    w: Tensor,
    f: Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    groups: int = 1,
    flip_weight: bool = True,
) -> Tensor:
    """2-D convolution with FIR up- or down-sampling, padding applied once with respect to the up-sampled image.

    Up-sampling runs as a strided transposed convolution followed by the FIR filter; down-sampling as the FIR filter
    followed by a strided convolution.

    Args:
        x: ``[N, C_in, H, W]``.
        w: ``[C_out, C_in / groups, kh, kw]``, same dtype as ``x``.
        f: FIR filter from :func:`setup_filter`, used when ``up > 1`` or ``down > 1``.
        flip_weight: ``True`` = correlation (as ``F.conv2d``), ``False`` = convolution.

    Returns:
        ``[N, C_out, H * up / down, W * up / down]`` for ``padding = kh // 2``.
    """
    c_out, c_in_g, kh, kw = w.shape
    fw, fh = _filter_size(f)
    px0 = px1 = py0 = py1 = int(padding)
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2

    if up > 1:
        # Transposed convolution wants [C_in, C_out / groups, kh, kw]; it computes a convolution, so flip for
        # correlation.
        wt = w.reshape(groups, c_out // groups, c_in_g, kh, kw).transpose(1, 2).reshape(groups * c_in_g, -1, kh, kw)
        if flip_weight:
            wt = wt.flip([2, 3])
        x = F.conv_transpose2d(x, wt, stride=up, groups=groups)
        pad = (px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up))
        x = upfirdn2d(x, f, padding=pad, gain=up * up)
        return upfirdn2d(x, f, down=down) if down > 1 else x

    if not flip_weight:
        w = w.flip([2, 3])
    if down > 1 and kh == kw == 1:  # a 1x1 kernel commutes with the filter: shrink first, then convolve
        return F.conv2d(upfirdn2d(x, f, down=down, padding=(px0, px1, py0, py1)), w, groups=groups)
    if down > 1:
        x = upfirdn2d(x, f, padding=(px0, px1, py0, py1))
        return F.conv2d(x, w, stride=down, groups=groups)
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return F.conv2d(x, w, padding=(py0, px0), groups=groups)
    return F.conv2d(F.pad(x, [px0, px1, py0, py1]), w, groups=groups)


def modulated_conv2d(
    x: Tensor,
    weight: Tensor,
    styles: Tensor,
    noise: Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    resample_filter: Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
) -> Tensor:
    """StyleGAN2 weight modulation and demodulation around :func:`conv2d_resample`.

    Args:
        x: ``[N, C_in, H, W]``.
        weight: ``[C_out, C_in, kh, kw]``.
        styles: per-sample input-channel scales ``[N, C_in]``.
        noise: added after demodulation; broadcastable to the output ``[N, C_out, H', W']``.
        fused_modconv: one grouped convolution with per-sample weights (``True``) or scale activations before and
            after one shared convolution (``False``); equal up to rounding.

    Returns:
        ``[N, C_out, H * up / down, W * up / down]`` in ``x.dtype``.
    """
    n = x.shape[0]
    c_out, c_in, kh, kw = weight.shape
    _check_shape("styles", styles, [n, c_in])
    if x.dtype == torch.float16 and demodulate:  # pre-normalise so that float16 cannot overflow
        weight = weight * (1 / math.sqrt(c_in * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    w = dcoefs = None
    if fused_modconv:
        w = weight[None] * styles.reshape(n, 1, c_in, 1, 1)  # [N, C_out, C_in, kh, kw]
        if demodulate:
            dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, C_out]
    elif demodulate:
        # the same sum regrouped, sum_i s_i^2 sum_k W_oik^2, without building per-sample weights (3x faster batches)
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).T + 1e-8).rsqrt()  # [N, C_out]

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), resample_filter, up, down, padding, flip_weight=flip_weight)
        if demodulate and noise is not None:
            return torch.addcmul(noise.to(x.dtype), x, dcoefs.to(x.dtype).reshape(n, -1, 1, 1))
        if demodulate:
            x = x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        return x if noise is None else x + noise.to(x.dtype)

    if demodulate:
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)
    x = x.reshape(1, n * c_in, *x.shape[2:])  # the batch becomes groups of one grouped convolution
    w = w.reshape(n * c_out, c_in, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), resample_filter, up, down, padding, groups=n, flip_weight=flip_weight)
    x = x.reshape(n, c_out, *x.shape[2:])
    return x if noise is None else x + noise.to(x.dtype)


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """Scale ``x`` to unit root-mean-square along ``dim``."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def _block_dtype(use_fp16: bool, force_fp32: bool, device: torch.device) -> torch.dtype:
    return torch.float16 if use_fp16 and not force_fp32 and device.type == "cuda" else torch.float32


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
        _check_choice("activation", activation, tuple(ACTIVATIONS))
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
        _check_choice("activation", activation, tuple(ACTIVATIONS))
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
        x = None
        if self.z_dim > 0:
            if z is None:
                raise ConfigError(f"z is required: pass latents of shape [N, {self.z_dim}]")
            _check_shape("z", z, [None, self.z_dim])
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            if c is None:
                raise ConfigError(f"this network is conditional: pass labels c of shape [N, {self.c_dim}]")
            _check_shape("c", c, [None, self.c_dim])
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
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
        _check_choice("activation", activation, tuple(ACTIVATIONS))
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
        _check_choice("noise_mode", noise_mode, NOISE_MODES)
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
        _check_choice("architecture", architecture, ARCHITECTURES)
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
        _check_shape("block ws", ws, [None, self.num_conv + self.num_torgb, self.w_dim])
        w_iter = iter(ws.unbind(dim=1))
        dtype = _block_dtype(self.use_fp16, force_fp32, ws.device)
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
        _check_choice("noise_mode", noise_mode, NOISE_MODES)
        _check_shape("ws", ws, [None, self.num_ws, self.w_dim])
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
        mapping_kwargs = _check_keys("mapping_kwargs", mapping_kwargs, MAPPING_KWARGS)
        synthesis_kwargs = _check_keys("synthesis_kwargs", synthesis_kwargs, SYNTHESIS_KWARGS)
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


# ---------------------------------------------------------------------------------------------------------------
# Discriminator.


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
        _check_choice("architecture", architecture, ARCHITECTURES)
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
        dtype = _block_dtype(self.use_fp16, force_fp32, device)
        fmt = torch.channels_last if self.channels_last and dtype == torch.float16 else torch.contiguous_format
        if x is not None:
            x = x.to(dtype=dtype, memory_format=fmt)
        if self.in_channels == 0 or self.architecture == "skip":
            _check_shape("img", img, [None, self.img_channels, self.resolution, self.resolution])
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
        _check_choice("architecture", architecture, ARCHITECTURES)
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
        block_kwargs = _check_keys("block_kwargs", block_kwargs, _D_BLOCK_KWARGS)
        mapping_kwargs = _check_keys("mapping_kwargs", mapping_kwargs, _D_MAPPING_KWARGS)
        epilogue_kwargs = _check_keys("epilogue_kwargs", epilogue_kwargs, _D_EPILOGUE_KWARGS)
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
        _check_shape("img", img, [None, self.img_channels, self.img_resolution, self.img_resolution])
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, force_fp32=force_fp32)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)
