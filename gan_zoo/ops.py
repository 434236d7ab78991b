"""The operations under the StyleGAN2 networks in plain PyTorch: bias + activation, FIR up/down-sampling,
resampling convolution, modulated convolution; and the argument checks the networks share.

Read from NVIDIA's ``torch_utils/ops`` (github.com/NVlabs/stylegan2-ada-pytorch, commit
d72cc7d041b42ec8e806021a205ed9349f87c6a4) and written without custom CUDA kernels; the networks built on them
(:mod:`gan_zoo.stylegan2`, :mod:`gan_zoo.discriminator`) match NVIDIA's outputs bit for bit on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gan_zoo.errors import ConfigError

__all__ = [
    "ACTIVATIONS",
    "bias_act",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
    "downsample2d",
    "conv2d_resample",
    "modulated_conv2d",
    "normalize_2nd_moment",
    "mapping_input",
    "block_dtype",
    "check_keys",
    "check_choice",
    "check_shape",
]

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


def check_keys(what: str, given: Mapping[str, Any] | None, allowed: frozenset[str]) -> dict[str, Any]:
    """``given`` as a dict, refusing keys outside ``allowed`` with a :class:`ConfigError` naming them."""
    given = dict(given or {})
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ConfigError(f"unknown {what} {unknown}; expected a subset of {sorted(allowed)}")
    return given


def check_choice(what: str, value: str, choices: Sequence[str]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{what} must be one of {list(choices)}, got {value!r}")


def check_shape(what: str, x: Tensor, shape: Sequence[int | None]) -> None:
    """Raise :class:`ConfigError` unless ``x`` has ``shape`` (``None`` = any size)."""
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
    check_shape("styles", styles, [n, c_in])
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


def mapping_input(z: Tensor | None, c: Tensor | None, z_dim: int, c_dim: int, embed: Any) -> Tensor:
    """A mapping network's input as NVIDIA's (StyleGAN2-ADA and StyleGAN3 alike): ``z`` normalised to unit second
    moment, joined by the normalised label embedding ``embed(c)`` when the network is conditional; ``[N, D]``."""
    x = None
    if z_dim > 0:
        if z is None:
            raise ConfigError(f"z is required: pass latents of shape [N, {z_dim}]")
        check_shape("z", z, [None, z_dim])
        x = normalize_2nd_moment(z.to(torch.float32))
    if c_dim > 0:
        if c is None:
            raise ConfigError(f"this network is conditional: pass labels c of shape [N, {c_dim}]")
        check_shape("c", c, [None, c_dim])
        y = normalize_2nd_moment(embed(c.to(torch.float32)))
        x = torch.cat([x, y], dim=1) if x is not None else y
    return x


def block_dtype(use_fp16: bool, force_fp32: bool, device: torch.device) -> torch.dtype:
    """float16 for an fp16 block on CUDA unless forced to float32; float32 everywhere else."""
    return torch.float16 if use_fp16 and not force_fp32 and device.type == "cuda" else torch.float32
