"""StyleGAN3 (alias-free) generator in plain PyTorch, configs ``t`` and ``r`` (ops: :mod:`gan_zoo.alias_free`).

Karras et al., "Alias-Free Generative Adversarial Networks" (NeurIPS 2021). Matches NVlabs/stylegan3
``training/networks_stylegan3.py`` at commit c233a919a6faee6e36a316ddd4eddababad1adf9, written from the paper and
from reading that file; no NVIDIA code is imported or needed. Module, parameter and buffer names are theirs
(``synthesis.input``, ``synthesis.L0_36_512``, ..., ``magnitude_ema``, ``up_filter``, ``down_filter``), so a state_dict
of their ``G_ema`` loads here with ``strict=True``; :mod:`gan_zoo.nvidia` reads their network pickles as data.

Compared with NVIDIA's network at that commit on the CPU in float32, where its custom ops take their reference
PyTorch paths (random 32-px generators built with its ``train.py`` options for configs t and r, 1 and 3 channels,
with and without labels, weights perturbed, ``w_avg`` and every ``magnitude_ema`` moved away from their initial
values, a non-identity ``transform``; pickled as its training loop does and read here by :mod:`gan_zoo.nvidia`):
mappings with truncation 1, 0.7 and 0.5 (cutoff 4) and the synthesised images were equal bit for bit (max abs
difference 0 in every case). Our numpy filter design equals scipy's bit for bit for the separable filters and to
2e-8 for the radial ones (those loaded from a pickle are NVIDIA's own).

Differences from NVIDIA's code, all deliberate:

- ``noise_mode`` is accepted by ``synthesis`` and ``forward`` and ignored (StyleGAN3 has no noise inputs), and
  defaults to ``'const'`` as everywhere in this package.
- The constructor takes the synthesis options as one ``synthesis_kwargs`` dict (as :mod:`gan_zoo.stylegan2`);
  NVIDIA's flat keyword arguments are translated by :mod:`gan_zoo.nvidia`.
- Layers run in float16 only on CUDA (``num_fp16_res``), with the reference (non-fused) filtered leaky ReLU.
- Filters are designed with numpy (:func:`gan_zoo.alias_free.design_lowpass_filter`), not scipy; they are buffers,
  so loaded networks use the filters stored with them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gan_zoo import stylegan2
from gan_zoo.alias_free import design_lowpass_filter, filtered_lrelu, modulated_conv2d
from gan_zoo.errors import ConfigError
from gan_zoo.ops import block_dtype, check_choice, check_keys, check_shape, mapping_input

__all__ = [
    "MAPPING_KWARGS",
    "SYNTHESIS_KWARGS",
    "NOISE_MODES",
    "Generator",
    "MappingNetwork",
    "SynthesisNetwork",
    "SynthesisInput",
    "SynthesisLayer",
    "FullyConnectedLayer",
    "config_name",
]

NOISE_MODES = ("const", "random", "none")  # accepted for the contract; StyleGAN3 has no noise
MAPPING_KWARGS = frozenset({"num_layers", "lr_multiplier", "w_avg_beta"})
LAYER_KWARGS = frozenset(
    {"conv_kernel", "filter_size", "lrelu_upsampling", "use_radial_filters", "conv_clamp", "magnitude_ema_beta"}
)
SYNTHESIS_KWARGS = (
    frozenset(
        {
            "channel_base",  # channels of layer i: min(channel_base / 2 / cutoff_i, channel_max), rounded
            "channel_max",
            "num_layers",  # layers between the Fourier features and the to-RGB layer (14)
            "num_critical",  # critically sampled layers at the end (2)
            "first_cutoff",
            "first_stopband",
            "last_stopband_rel",
            "margin_size",  # extra pixels computed around the image in the inner layers (10)
            "output_scale",  # the image is the last layer's output times this (0.25)
            "num_fp16_res",  # layers whose sampling rate is within this many octaves of the output run in float16
        }
    )
    | LAYER_KWARGS
)

_LIMITS = {  # sane ranges (inclusive) of integer options, checked before anything is built
    "num_layers": (1, 64), "num_critical": (0, 63), "margin_size": (0, 1024), "num_fp16_res": (0, 32),
    "conv_kernel": (1, 15), "filter_size": (1, 32), "lrelu_upsampling": (1, 8), "channel_base": (1, 1 << 26),
    "channel_max": (1, 65536), "img_resolution": (4, 8192), "img_channels": (1, 16), "w_dim": (1, 8192),
}  # fmt: skip


def _check_int(name: str, value: Any) -> int:
    lo, hi = _LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    return int(value)


def _check_number(name: str, value: Any, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if value <= minimum:
        raise ConfigError(f"{name} must be > {minimum:g}, got {value!r}")
    return float(value)


def config_name(conv_kernel: int, use_radial_filters: bool) -> str:
    """``'t'`` (3x3 convolutions, separable filters), ``'r'`` (1x1, radial filters) or ``'custom'``."""
    if conv_kernel == 1 and use_radial_filters:
        return "r"
    return "t" if conv_kernel != 1 and not use_radial_filters else "custom"


class FullyConnectedLayer(stylegan2.FullyConnectedLayer):
    """StyleGAN3's dense layer: the StyleGAN2 one with NVIDIA's StyleGAN3 initialisation (``weight_init``, bias
    ``bias_init / lr_multiplier``, ``bias_init`` a number or one value per output). Same forward pass."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: str = "linear",
        bias: bool = True,
        lr_multiplier: float = 1.0,
        weight_init: float = 1.0,
        bias_init: float | Sequence[float] = 0.0,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias, activation=activation, lr_multiplier=lr_multiplier)
        self.in_features = in_features
        self.out_features = out_features
        with torch.no_grad():
            self.weight.mul_(weight_init)
            if self.bias is not None:
                init = torch.as_tensor(bias_init, dtype=torch.float32).broadcast_to([out_features])
                self.bias.copy_(init / lr_multiplier)


class MappingNetwork(nn.Module):
    """``z`` (and a label ``c``) to ``w``, broadcast to ``num_ws`` layers; ``w_avg`` ``[w_dim]`` for truncation."""

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int,
        num_layers: int = 2,
        lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.998,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = _check_int("num_layers", num_layers)
        self.w_avg_beta = w_avg_beta
        self.embed = FullyConnectedLayer(c_dim, w_dim) if c_dim > 0 else None
        features = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        for i in range(num_layers):
            layer = FullyConnectedLayer(features[i], features[i + 1], activation="lrelu", lr_multiplier=lr_multiplier)
            setattr(self, f"fc{i}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: Tensor | None,
        c: Tensor | None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> Tensor:
        """``z [N, z_dim]``, ``c [N, c_dim]`` (``None``/``[N, 0]`` when unconditional) -> ``ws [N, num_ws, w_dim]``.

        Truncation: ``w_avg + psi * (w - w_avg)`` on the first ``truncation_cutoff`` layers (``None`` = all).
        ``update_emas=True`` moves ``w_avg`` towards this batch's mean ``w`` (training only).
        """
        x = mapping_input(z, c, self.z_dim, self.c_dim, getattr(self, "embed", None))
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if update_emas:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            head = self.w_avg.lerp(x[:, :cutoff], truncation_psi)
            x = torch.cat([head, x[:, cutoff:]], dim=1)
        return x


class SynthesisInput(nn.Module):
    """Fourier features: ``channels`` sinusoids of fixed frequencies (``freqs``, ``phases``), rotated and translated
    by an affine transform of ``w`` (and the user ``transform`` buffer), mixed by a learned ``weight``.

    Shapes: ``w [N, w_dim] -> [N, channels, size, size]``.
    """

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.channels = channels
        self.size = (int(size), int(size))  # width, height
        self.sampling_rate = float(sampling_rate)
        self.bandwidth = float(bandwidth)
        freqs = torch.randn([channels, 2])  # random frequencies from a uniform 2-D disc
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs /= radii * radii.square().exp().pow(0.25)
        freqs *= bandwidth
        phases = torch.rand([channels]) - 0.5
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer("transform", torch.eye(3, 3))  # user-specified inverse transform of the image
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", phases)

    def forward(self, w: Tensor) -> Tensor:
        transforms = self.transform.unsqueeze(0)  # [batch, row, col]
        freqs = self.freqs.unsqueeze(0)  # [batch, channel, xy]
        phases = self.phases.unsqueeze(0)  # [batch, channel]

        t = self.affine(w)  # (r_c, r_s, t_x, t_y)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        m_r = torch.eye(3, device=w.device).unsqueeze(0).repeat([w.shape[0], 1, 1])  # inverse rotation
        m_r[:, 0, 0] = t[:, 0]
        m_r[:, 0, 1] = -t[:, 1]
        m_r[:, 1, 0] = t[:, 1]
        m_r[:, 1, 1] = t[:, 0]
        m_t = torch.eye(3, device=w.device).unsqueeze(0).repeat([w.shape[0], 1, 1])  # inverse translation
        m_t[:, 0, 2] = -t[:, 2]
        m_t[:, 1, 2] = -t[:, 3]
        transforms = m_r @ m_t @ transforms

        phases = phases + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]
        # dampen out-of-band frequencies that a user transform may introduce
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)

        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = 0.5 * self.size[0] / self.sampling_rate
        theta[1, 1] = 0.5 * self.size[1] / self.sampling_rate
        size = [1, 1, self.size[1], self.size[0]]
        grids = torch.nn.functional.affine_grid(theta.unsqueeze(0), size, align_corners=False)

        x = (grids.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)  # [N, H, W, C]
        x = x + phases.unsqueeze(1).unsqueeze(2)
        x = torch.sin(x * (np.pi * 2))
        x = x * amplitudes.unsqueeze(1).unsqueeze(2)
        weight = self.weight / np.sqrt(self.channels)
        x = x @ weight.t()
        return x.permute(0, 3, 1, 2)  # [N, C, H, W]


class SynthesisLayer(nn.Module):
    """Modulated convolution (input gain ``magnitude_ema ** -0.5``) + filtered leaky ReLU: up-sample by
    ``up_factor`` with ``up_filter``, bias, lrelu, clamp, down-sample by ``down_factor`` with ``down_filter``.

    The to-RGB layer (``is_torgb``) is a 1x1 modulated convolution without demodulation, bias and clamp only.
    Shapes: ``x [N, in_channels, in_size, in_size]``, ``w [N, w_dim] -> [N, out_channels, out_size, out_size]``.
    """

    def __init__(
        self,
        w_dim: int,
        is_torgb: bool,
        is_critically_sampled: bool,
        use_fp16: bool,
        in_channels: int,
        out_channels: int,
        in_size: int,
        out_size: int,
        in_sampling_rate: int,
        out_sampling_rate: int,
        in_cutoff: float,
        out_cutoff: float,
        in_half_width: float,
        out_half_width: float,
        conv_kernel: int = 3,
        filter_size: int = 6,
        lrelu_upsampling: int = 2,
        use_radial_filters: bool = False,
        conv_clamp: float | None = 256,
        magnitude_ema_beta: float = 0.999,
    ) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.is_torgb = is_torgb
        self.is_critically_sampled = is_critically_sampled
        self.use_fp16 = use_fp16
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = (in_size, in_size)
        self.out_size = (out_size, out_size)
        self.in_sampling_rate = in_sampling_rate
        self.out_sampling_rate = out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff = in_cutoff
        self.out_cutoff = out_cutoff
        self.in_half_width = in_half_width
        self.out_half_width = out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))

        self.up_factor = self._factor(self.tmp_sampling_rate, in_sampling_rate, "input")
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        fs = self.tmp_sampling_rate
        self.register_buffer("up_filter", design_lowpass_filter(self.up_taps, in_cutoff, in_half_width * 2, fs))
        self.down_factor = self._factor(self.tmp_sampling_rate, out_sampling_rate, "output")
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        down = design_lowpass_filter(self.down_taps, out_cutoff, out_half_width * 2, fs, radial=self.down_radial)
        self.register_buffer("down_filter", down)

        # padding of the up-sampled image, with the symmetric interpretation of sample locations (paper, C.3)
        pad_total = (out_size - 1) * self.down_factor + 1  # size wanted before down-sampling
        pad_total -= (in_size + self.conv_kernel - 1) * self.up_factor  # size after up-sampling
        pad_total += self.up_taps + self.down_taps - 2  # what the filters take away
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        self.padding = [pad_lo, pad_hi, pad_lo, pad_hi]

    @staticmethod
    def _factor(tmp_rate: int, rate: int, which: str) -> int:
        factor = int(np.rint(tmp_rate / rate))
        if rate * factor != tmp_rate:
            raise ConfigError(f"the {which} sampling rate {rate} does not divide the layer's rate {tmp_rate}")
        return factor

    def forward(
        self, x: Tensor, w: Tensor, noise_mode: str = "const", force_fp32: bool = False, update_emas: bool = False
    ) -> Tensor:
        check_choice("noise_mode", noise_mode, NOISE_MODES)
        check_shape("x", x, [None, self.in_channels, self.in_size[1], self.in_size[0]])
        check_shape("w", w, [x.shape[0], self.w_dim])
        if update_emas:
            magnitude_cur = x.detach().to(torch.float32).square().mean()
            self.magnitude_ema.copy_(magnitude_cur.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()
        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / np.sqrt(self.in_channels * (self.conv_kernel**2)))
        dtype = block_dtype(self.use_fp16, force_fp32, x.device)
        x = modulated_conv2d(x.to(dtype), self.weight, styles, demodulate=not self.is_torgb,
                             padding=self.conv_kernel - 1, input_gain=input_gain)  # fmt: skip
        gain = 1 if self.is_torgb else np.sqrt(2)
        slope = 1 if self.is_torgb else 0.2
        return filtered_lrelu(x, self.up_filter, self.down_filter, self.bias.to(x.dtype), up=self.up_factor,
                              down=self.down_factor, padding=self.padding, gain=gain, slope=slope,
                              clamp=self.conv_clamp)  # fmt: skip


def _layer_plan(img_resolution: int, img_channels: int, kw: dict[str, Any]) -> dict[str, np.ndarray]:
    """Per-layer cutoffs, stopbands, sampling rates, half-widths, sizes and channels, computed as NVIDIA does."""
    num_layers, num_critical = kw["num_layers"], kw["num_critical"]
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * kw["last_stopband_rel"]
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = kw["first_cutoff"] * (last_cutoff / kw["first_cutoff"]) ** exponents
    stopbands = kw["first_stopband"] * (last_stopband / kw["first_stopband"]) ** exponents
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    sizes = sampling_rates + kw["margin_size"] * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((kw["channel_base"] / 2) / cutoffs, kw["channel_max"]))
    channels[-1] = img_channels
    if (sampling_rates < 1).any() or (half_widths <= 0).any() or (channels < 1).any():
        raise ConfigError("the cutoff and stopband options give layers without a transition band or channels")
    return dict(cutoffs=cutoffs, sampling_rates=sampling_rates, half_widths=half_widths, sizes=sizes,
                channels=channels)  # fmt: skip


def _synthesis_options(img_resolution: int, img_channels: int, kw: dict[str, Any]) -> dict[str, Any]:
    """The synthesis options with NVIDIA's defaults filled in, range-checked."""
    full = {"channel_base": 32768, "channel_max": 512, "num_layers": 14, "num_critical": 2, "first_cutoff": 2,
            "first_stopband": 2**2.1, "last_stopband_rel": 2**0.3, "margin_size": 10, "output_scale": 0.25,
            "num_fp16_res": 4, **kw}  # fmt: skip
    _check_int("img_resolution", img_resolution)
    _check_int("img_channels", img_channels)
    for name in ("channel_base", "channel_max", "num_layers", "num_critical", "margin_size", "num_fp16_res"):
        _check_int(name, full[name])
    if full["num_critical"] >= full["num_layers"]:
        raise ConfigError(f"num_critical ({full['num_critical']}) must be below num_layers ({full['num_layers']})")
    for name in ("conv_kernel", "filter_size", "lrelu_upsampling"):
        if name in full:
            _check_int(name, full[name])
    for name in ("first_cutoff", "first_stopband", "last_stopband_rel"):
        _check_number(name, full[name])
    _check_number("output_scale", full["output_scale"], minimum=-math.inf)
    if full.get("conv_clamp") is not None:
        _check_number("conv_clamp", full["conv_clamp"])
    return full


class SynthesisNetwork(nn.Module):
    """``ws [N, num_ws, w_dim]`` to images: Fourier features ``input``, ``num_layers`` layers ``L{i}_{size}_{ch}``
    and a to-RGB layer, then times ``output_scale``. ``num_ws = num_layers + 2``."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, **kwargs: Any) -> None:
        super().__init__()
        kw = _synthesis_options(img_resolution, img_channels, kwargs)
        self.options = kw  # every synthesis option, defaults filled in
        self.w_dim = w_dim
        self.num_ws = kw["num_layers"] + 2
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_layers = kw["num_layers"]
        self.num_critical = kw["num_critical"]
        self.margin_size = kw["margin_size"]
        self.output_scale = kw["output_scale"]
        self.num_fp16_res = kw["num_fp16_res"]
        plan = _layer_plan(img_resolution, img_channels, kw)
        rates, sizes, channels = plan["sampling_rates"], plan["sizes"], plan["channels"]
        self.input = SynthesisInput(w_dim=w_dim, channels=int(channels[0]), size=int(sizes[0]),
                                    sampling_rate=rates[0], bandwidth=plan["cutoffs"][0])  # fmt: skip
        layer_kwargs = {k: v for k, v in kw.items() if k in LAYER_KWARGS}
        self.layer_names: list[str] = []
        for idx in range(self.num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(
                w_dim=w_dim, is_torgb=idx == self.num_layers,
                is_critically_sampled=idx >= self.num_layers - self.num_critical,
                use_fp16=bool(rates[idx] * (2**self.num_fp16_res) > img_resolution),
                in_channels=int(channels[prev]), out_channels=int(channels[idx]),
                in_size=int(sizes[prev]), out_size=int(sizes[idx]),
                in_sampling_rate=int(rates[prev]), out_sampling_rate=int(rates[idx]),
                in_cutoff=float(plan["cutoffs"][prev]), out_cutoff=float(plan["cutoffs"][idx]),
                in_half_width=float(plan["half_widths"][prev]), out_half_width=float(plan["half_widths"][idx]),
                **layer_kwargs,
            )  # fmt: skip
            name = f"L{idx}_{layer.out_size[0]}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def forward(
        self, ws: Tensor, noise_mode: str = "const", force_fp32: bool = False, update_emas: bool = False
    ) -> Tensor:
        """``ws [N, num_ws, w_dim]`` -> ``[N, img_channels, R, R]`` float32, about [-1, 1] (not clamped).

        ``noise_mode`` is checked and ignored (no noise in StyleGAN3); ``force_fp32`` matters on CUDA only;
        ``update_emas`` moves each layer's ``magnitude_ema`` (training only).
        """
        check_choice("noise_mode", noise_mode, NOISE_MODES)
        check_shape("ws", ws, [None, self.num_ws, self.w_dim])
        w_list = ws.to(torch.float32).unbind(dim=1)
        x = self.input(w_list[0])
        for name, w in zip(self.layer_names, w_list[1:], strict=True):
            x = getattr(self, name)(x, w, noise_mode=noise_mode, force_fp32=force_fp32, update_emas=update_emas)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(torch.float32)


class Generator(nn.Module):
    """StyleGAN3 generator: ``G(z, c) = synthesis(mapping(z, c))`` with NVIDIA's contract and state_dict names.

    Args:
        z_dim, c_dim, w_dim: latent, label (0 = unconditional) and intermediate latent sizes.
        img_resolution: output size in pixels; img_channels: 1 (grayscale) or 3 (RGB).
        mapping_kwargs: keys from :data:`MAPPING_KWARGS` (``num_layers`` 2, ``lr_multiplier`` 0.01,
            ``w_avg_beta`` 0.998).
        synthesis_kwargs: keys from :data:`SYNTHESIS_KWARGS`, NVIDIA's defaults otherwise (``channel_base`` 32768,
            ``channel_max`` 512, ``num_layers`` 14, ``conv_kernel`` 3, ``use_radial_filters`` False,
            ``conv_clamp`` 256, ...). Config ``r`` is ``conv_kernel=1, use_radial_filters=True`` (and, in NVIDIA's
            training script, twice the channels).

    Attributes:
        family: ``'stylegan3'``; config: ``'t'``, ``'r'`` or ``'custom'`` (see :func:`config_name`).
        source_info: ``{'family': 'stylegan3', 'config': {'name': 't', 'conv_kernel': 3, ...}}``, what
            ``latentwalk gan info`` shows beside the contract facts.

    Raises:
        ConfigError: an unknown key in either dict, or a value out of range.
    """

    family = "stylegan3"

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
            dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                 mapping_kwargs=mapping_kwargs, synthesis_kwargs=synthesis_kwargs)
        )  # fmt: skip
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = _check_int("w_dim", w_dim)
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, num_ws=self.num_ws, **mapping_kwargs)
        self.config = config_name(
            synthesis_kwargs.get("conv_kernel", 3), synthesis_kwargs.get("use_radial_filters", False)
        )

    @property
    def source_info(self) -> dict[str, Any]:
        """The family and the architecture options that tell StyleGAN3 configs apart (JSON-ready)."""
        kw = self.synthesis.options
        config = {"name": self.config, "conv_kernel": kw.get("conv_kernel", 3),
                  "use_radial_filters": bool(kw.get("use_radial_filters", False))}  # fmt: skip
        for name in ("channel_base", "channel_max", "num_layers", "margin_size", "output_scale"):
            config[name] = kw[name]
        config["mapping_layers"] = self.mapping.num_layers
        return {"family": self.family, "config": config}

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
    ) -> Tensor:
        """``z [N, z_dim]``, ``c [N, c_dim]`` or ``None`` -> images ``[N, img_channels, R, R]`` float32, ~[-1, 1]."""
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff, update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode, force_fp32=force_fp32, update_emas=update_emas)
