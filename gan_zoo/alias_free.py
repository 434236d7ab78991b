"""The operations under StyleGAN3 (alias-free) in plain PyTorch: FIR resampling, the filtered leaky ReLU, the
modulated convolution with input gain, and the Kaiser / jinc low-pass filter design.

Written from Karras et al., "Alias-Free Generative Adversarial Networks" (NeurIPS 2021) and from reading NVIDIA's
pure-PyTorch reference paths (``_upfirdn2d_ref`` in ``torch_utils/ops/upfirdn2d.py``, ``_filtered_lrelu_ref`` in
``torch_utils/ops/filtered_lrelu.py``, ``modulated_conv2d`` and ``design_lowpass_filter`` in
``training/networks_stylegan3.py``; github.com/NVlabs/stylegan3 at commit c233a919a6faee6e36a316ddd4eddababad1adf9).
No NVIDIA code is imported. The operations are applied in the same order as NVIDIA's reference paths, so on the CPU
in float32 the results equal theirs (see :mod:`gan_zoo.stylegan3` for the measured differences). NVIDIA's fused
CUDA kernels compute the same functions with other rounding.

The filter design uses numpy only (no scipy): ``firwin`` with a Kaiser window as scipy computes it, and the
radially symmetric jinc filter of StyleGAN3-R. Pickled networks carry their designed filters as buffers, so the
design only matters for networks built here from scratch; it agrees with scipy's to float32 rounding (tested when
scipy is present).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gan_zoo.errors import ConfigError
from gan_zoo.ops import bias_act

__all__ = [
    "MAX_TAPS",
    "upfirdn2d_ref",
    "filtered_lrelu",
    "modulated_conv2d",
    "design_lowpass_filter",
    "kaiser_beta",
    "kaiser_atten",
]


MAX_TAPS = 256  # StyleGAN3's filters have 12 or 24 taps; a file asking for more is refused before any design


def _padding4(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    pad = [int(p) for p in padding]
    if len(pad) == 2:
        return pad[0], pad[0], pad[1], pad[1]
    if len(pad) != 4:
        raise ConfigError(f"padding must be an int, [x, y] or [x0, x1, y0, y1], got {list(padding)}")
    return pad[0], pad[1], pad[2], pad[3]


def upfirdn2d_ref(
    x: Tensor,
    f: Tensor | None,
    up: int = 1,
    down: int = 1,
    padding: int | Sequence[int] = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
) -> Tensor:
    """Zero-insert up-sample, pad (negative = crop), FIR-filter, then keep every ``down``-th pixel.

    NVIDIA's ``_upfirdn2d_ref``: a separable filter ``[k]`` runs as two 1-D passes, each scaled by ``sqrt(gain)``;
    a 2-D filter ``[k, k]`` as one pass scaled by ``gain``; ``None`` is the identity (times ``gain``).

    Args:
        x: ``[N, C, H, W]``.
        f: float32 filter ``[k]`` or ``[kh, kw]``, or ``None``.
        padding: ``(x0, x1, y0, y1)`` in up-sampled pixels, or an int, or ``(x, y)``.
        flip_filter: ``False`` = convolution, ``True`` = correlation.

    Returns:
        ``[N, C, (H * up + y0 + y1 - kh + 1) / down, (W * up + x0 + x1 - kw + 1) / down]`` (ceil division).
    """
    n, c, h, w = x.shape
    px0, px1, py0, py1 = _padding4(padding)
    if up > 1:  # insert zeros
        x = x.reshape([n, c, h, 1, w, 1])
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape([n, c, h * up, w * up])
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    f = f * (gain ** (f.ndim / 2))
    f = f.to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f[None, None].repeat([c, 1] + [1] * f.ndim)
    if f.ndim == 4:
        x = F.conv2d(x, f, groups=c)
    else:
        x = F.conv2d(x, f.unsqueeze(2), groups=c)
        x = F.conv2d(x, f.unsqueeze(3), groups=c)
    return x[:, :, ::down, ::down]


def filtered_lrelu(
    x: Tensor,
    fu: Tensor | None = None,
    fd: Tensor | None = None,
    b: Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int | Sequence[int] = 0,
    gain: float = math.sqrt(2),
    slope: float = 0.2,
    clamp: float | None = None,
) -> Tensor:
    """Bias, up-sample with ``fu``, leaky ReLU (times ``gain``, clamped), down-sample with ``fd``.

    NVIDIA's ``_filtered_lrelu_ref``: the non-linearity runs at ``up`` times the input rate, between two low-pass
    filters, so it adds no aliases below the output's Nyquist frequency.

    Args:
        x: ``[N, C, H, W]``; ``b``: ``[C]`` in ``x``'s dtype or ``None``.
        fu, fd: up- and down-sampling filters (``[k]``, ``[k, k]`` or ``None``).
        padding: applied to the up-sampled image, see :func:`upfirdn2d_ref`.
        slope: leaky ReLU slope (1 = linear); ``clamp``: clamp to ``[-clamp, clamp]`` after the activation.

    Returns:
        ``[N, C, (H * up + y0 + y1 - fu_h - fd_h + 2 + down - 1) // down, ...]`` in ``x``'s dtype.
    """
    x = bias_act(x, b)
    x = upfirdn2d_ref(x, fu, up=up, padding=padding, gain=up**2)
    x = bias_act(x, act="lrelu", alpha=slope, gain=gain, clamp=clamp)
    return upfirdn2d_ref(x, fd, down=down)


def modulated_conv2d(
    x: Tensor,
    w: Tensor,
    s: Tensor,
    demodulate: bool = True,
    padding: int = 0,
    input_gain: Tensor | None = None,
) -> Tensor:
    """StyleGAN3's modulated convolution: one grouped convolution with per-sample weights.

    With ``demodulate``, weights and styles are first normalised (the styles over the whole batch, as NVIDIA does;
    demodulation cancels that scale up to its 1e-8 epsilon). ``input_gain`` (``[]``, ``[C_in]`` or ``[N, C_in]``)
    scales the input channels (StyleGAN3 passes ``magnitude_ema ** -0.5``).

    Args:
        x: ``[N, C_in, H, W]``; ``w``: ``[C_out, C_in, kh, kw]``; ``s``: ``[N, C_in]``.

    Returns:
        ``[N, C_out, H + 2 * padding - kh + 1, W + 2 * padding - kw + 1]`` in ``x``'s dtype.
    """
    batch = x.shape[0]
    _, in_channels, kh, kw = w.shape
    if demodulate:
        w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()
    w = w.unsqueeze(0)  # [N, C_out, C_in, kh, kw]
    w = w * s.unsqueeze(1).unsqueeze(3).unsqueeze(4)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, C_out]
        w = w * dcoefs.unsqueeze(2).unsqueeze(3).unsqueeze(4)
    if input_gain is not None:
        input_gain = input_gain.expand(batch, in_channels)
        w = w * input_gain.unsqueeze(1).unsqueeze(3).unsqueeze(4)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = F.conv2d(x, w.to(x.dtype), padding=padding, groups=batch)
    return x.reshape(batch, -1, *x.shape[2:])


# ---------------------------------------------------------------------------------------------------------------
# Filter design (numpy, float64; the result is cast to float32 as NVIDIA does).


def kaiser_atten(numtaps: int, width: float) -> float:
    """Attenuation (dB) of a Kaiser FIR filter of ``numtaps`` taps and transition ``width`` (fraction of Nyquist)."""
    return 2.285 * (numtaps - 1) * np.pi * width + 7.95


def kaiser_beta(atten: float) -> float:
    """The Kaiser window's beta for an attenuation in dB (Kaiser's empirical formula, as scipy)."""
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def _kaiser_window(numtaps: int, beta: float) -> np.ndarray:
    n = np.arange(0, numtaps)
    alpha = (numtaps - 1) / 2.0
    return np.i0(beta * np.sqrt(1 - ((n - alpha) / alpha) ** 2.0)) / np.i0(beta)


def _firwin_lowpass(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
    """``scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs)``: windowed-sinc low-pass, unit DC gain."""
    nyq = 0.5 * fs
    c = float(cutoff) / nyq
    beta = kaiser_beta(kaiser_atten(numtaps, float(width) / nyq))
    m = np.arange(0, numtaps) - 0.5 * (numtaps - 1)
    h = c * np.sinc(c * m)
    h = h * _kaiser_window(numtaps, beta)
    return h / np.sum(h)


def _jinc_lowpass(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
    """StyleGAN3-R's radially symmetric jinc filter ``[numtaps, numtaps]`` with a separable Kaiser window."""
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    j1 = torch.special.bessel_j1(torch.from_numpy(2 * cutoff * (np.pi * r))).numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(r > 0, j1 / (np.pi * r), cutoff)  # the limit at r = 0 (odd numtaps only)
    beta = kaiser_beta(kaiser_atten(numtaps, width / (fs / 2)))
    w = np.kaiser(numtaps, beta)
    f = f * np.outer(w, w)
    return f / np.sum(f)


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False) -> Tensor | None:
    """NVIDIA's ``SynthesisLayer.design_lowpass_filter``: ``None`` for one tap (identity), else a separable
    Kaiser-windowed sinc ``[numtaps]`` or, with ``radial``, a jinc filter ``[numtaps, numtaps]``; float32.

    Args:
        numtaps: filter length; cutoff, width: cutoff frequency and transition band width; fs: sampling rate.

    Raises:
        ConfigError: ``numtaps`` outside 1..:data:`MAX_TAPS`, or a cutoff / width that gives no usable filter.
    """
    if not 1 <= numtaps <= MAX_TAPS:
        raise ConfigError(f"a low-pass filter needs 1..{MAX_TAPS} taps, got {numtaps}")
    if numtaps == 1:
        return None
    if not (0 < cutoff < fs / 2 and 0 < width):
        raise ConfigError(f"invalid low-pass filter: cutoff {cutoff:g}, width {width:g} at sampling rate {fs:g}")
    f = _jinc_lowpass(numtaps, cutoff, width, fs) if radial else _firwin_lowpass(numtaps, cutoff, width, fs)
    return torch.as_tensor(f, dtype=torch.float32)
