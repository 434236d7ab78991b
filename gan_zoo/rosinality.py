"""Read rosinality ``stylegan2-pytorch`` checkpoints as data, into our StyleGAN2 modules (:mod:`gan_zoo.stylegan2`).

rosinality's training script (github.com/rosinality/stylegan2-pytorch, ``train.py``) saves ``torch.save`` dicts
``{'g': ..., 'd': ..., 'g_ema': ..., 'g_optim': ..., 'd_optim': ..., 'args': argparse.Namespace, 'ada_aug_p': ...}``;
its ``convert_weight.py`` saves ``{'g_ema': ..., 'latent_avg': ...}``. ``g_ema`` is the state_dict of its
``model.Generator``. The mapping here was written from reading ``model.py`` at commit
bef283a1c24087da704d16c30abc8e36e63efa0e; none of their code is imported, copied or needed. The file is read with
``torch.load(weights_only=True)`` after its declared sizes are checked (:func:`gan_zoo.safe_load.bounded_torch_load`);
the only class allowed beyond torch's own data types is ``argparse.Namespace`` (the ``args`` entry), filled with data.

rosinality's generator is the StyleGAN2 "config-f" generator (skip architecture) and maps onto ours term for term
(outputs differ by float rounding only):

==========================================  ============================================================================
rosinality state_dict                       ours
==========================================  ============================================================================
``style.{i+1}.weight/bias`` (PixelNorm,      ``mapping.fc{i}.weight/bias``: the same equalised-lr dense layer (weight
EqualLinear ``lr_mul=lr_mlp``, fused lrelu)  ``* lr / sqrt(in)``, bias ``* lr``, lrelu 0.2 with gain sqrt(2));
                                             ``lr_mlp`` is not stored (0.01 unless the code was changed)
``latent_avg`` [w] or [1, w]                 ``mapping.w_avg``; when absent, the mean of 4096 mapped ``z`` (seed 0),
                                             as their ``generate.py`` computes ``mean_latent(4096)``
``input.input`` [1, C, 4, 4]                 ``synthesis.b4.const`` [C, 4, 4]
``conv1``, ``convs.{2k}``, ``convs.{2k+1}``  ``b4.conv1``, ``b{2^(k+3)}.conv0`` (up-sampling), ``b{2^(k+3)}.conv1``:
(StyledConv)                                 ``conv.weight`` [1, O, I, 3, 3] ``* 1/sqrt(9 I)`` -> ``weight`` (their
                                             scale folded in, so demodulation's epsilon acts on the same numbers),
                                             ``conv.modulation`` -> ``affine``, ``noise.weight`` [1] ->
                                             ``noise_strength`` [], ``activate.bias`` -> ``bias`` (FusedLeakyReLU:
                                             bias, lrelu 0.2, gain sqrt(2), as ours)
``noises.noise_{j}`` [1, 1, r, r]            ``noise_const`` [r, r] of the j-th convolution (``noise_mode='const'``
                                             equals their ``randomize_noise=False``)
``to_rgb1``, ``to_rgbs.{k}`` (ToRGB)         ``b4.torgb``, ``b{2^(k+3)}.torgb``; ``conv.weight`` [1, C_img, I, 1, 1],
                                             ``bias`` [1, C_img, 1, 1] -> [C_img]; the skip image is up-sampled with
                                             the same FIR filter and padding as ours
``convs.{2k}.conv.blur.kernel``,             checked (separable, all equal) and divided by 4 into our
``to_rgbs.{k}.upsample.kernel``              ``resample_filter`` buffers: their transposed convolution + blur
                                             with pads (1, 1) equals our ``conv2d_resample(up=2)``
==========================================  ============================================================================

Channels per resolution are read from the weights (rosinality: 512 up to 32 px, then ``16384 * channel_multiplier /
r``) and expressed as our ``channel_base``/``channel_max``; ``size``, ``style_dim``, ``n_mlp`` and the image
channels come from the shapes too, so forks with other channel counts or ``n_mlp`` (k-SALSA uses 2) load as well.
Their ``n_latent`` (``2 log2(size) - 2``) is our ``num_ws`` with the same layer order; style mixing is done on ``ws``
(``G.mapping`` gives one ``w`` per layer). On the CPU in float32 our outputs matched their ``Generator`` (seeded
random 32 and 64 px networks, images up to about 12 in magnitude) to within 1e-5 in max abs difference: ``z`` with
stored noise, truncation towards ``latent_avg``, given W+ latents, no noise, style mixing. ``gan convert`` keeps the
result as a ``lite:`` checkpoint.

Not read: a ``Generator(blur_kernel=...)`` other than [1, 3, 3, 1] (their ToRGB ignores the argument, so such a file
holds two filters; refused with a ConfigError), the discriminator ``d``, and pSp/e4e checkpoints that embed the
generator under ``decoder.``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gan_zoo.checkpoint import build_checked
from gan_zoo.errors import ConfigError, DataError, MissingWeightsError, UnsafePickleError
from gan_zoo.io import reject_placeholder
from gan_zoo.ops import setup_filter
from gan_zoo.safe_load import bounded_torch_load, check_object_graph
from gan_zoo.stylegan2 import Generator

__all__ = [
    "FAMILY",
    "KEYS",
    "DEFAULT_LR_MLP",
    "W_AVG_SAMPLES",
    "RosinalityArchitecture",
    "read_rosinality_checkpoint",
    "infer_architecture",
    "convert_state_dict",
    "load_rosinality",
    "is_rosinality_file",
]

FAMILY = "rosinality stylegan2"
SOURCE_COMMIT = "bef283a1c24087da704d16c30abc8e36e63efa0e"
KEYS = ("g_ema", "g")  # the generators a training checkpoint holds; g_ema is the one to sample from
DEFAULT_LR_MLP = 0.01  # rosinality's Generator(lr_mlp=0.01); train.py never changes it and the file does not store it
W_AVG_SAMPLES = 4096  # their generate.py: g_ema.mean_latent(args.truncation_mean=4096)
_MAX_TENSORS = 10_000  # a 1024-px generator has about 120 tensors
_MAX_LOG_SIZE = 13  # 8192 px
_MAX_TAPS = 16
_STYLE = re.compile(r"style\.(\d+)\.weight")
_TO_RGBS = re.compile(r"to_rgbs\.(\d+)\.conv\.weight")
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")  # in torch's weights_only refusals


@dataclass(frozen=True)
class RosinalityArchitecture:
    """rosinality ``Generator(size, style_dim, n_mlp, channel_multiplier, blur_kernel, lr_mlp)``, as read from shapes.

    Attributes:
        size: output resolution (their ``size``).
        style_dim: ``z`` and ``w`` size (their ``style_dim``, ``args.latent``).
        n_mlp: dense layers of the mapping network (their ``n_mlp``).
        img_channels: 3 in their code; forks may use 1.
        channels: feature maps per resolution, ``{4: 512, 8: 512, ...}``.
        blur_kernel: the FIR taps, normalised to sum 1.
        lr_mlp: learning-rate multiplier of the mapping network (not stored in the file).
    """

    size: int
    style_dim: int
    n_mlp: int
    img_channels: int
    channels: dict[int, int]
    blur_kernel: tuple[float, ...]
    lr_mlp: float = DEFAULT_LR_MLP

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def n_latent(self) -> int:
        return 2 * self.log_size - 2

    @property
    def channel_multiplier(self) -> int | None:
        """Their ``channel_multiplier`` when the channels follow their table, else ``None`` (a fork's own table)."""
        for cm in range(1, 33):
            table = {r: 512 if r <= 32 else 16384 * cm // r for r in self.channels}
            if table == self.channels:
                return cm
        return None

    @property
    def taps(self) -> list[float]:
        """The blur kernel as their argument: ``[1, 3, 3, 1]`` for the default, else the taps normalised to sum 1."""
        return [1, 3, 3, 1] if self.blur_kernel == _normalised((1, 3, 3, 1)) else list(self.blur_kernel)

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor of their ``g_ema`` state_dict for this architecture, with its shape."""
        d, k = self.style_dim, len(self.blur_kernel)
        shapes: dict[str, tuple[int, ...]] = {}
        for i in range(1, self.n_mlp + 1):
            shapes |= {f"style.{i}.weight": (d, d), f"style.{i}.bias": (d,)}
        c4 = self.channels[4]
        shapes["input.input"] = (1, c4, 4, 4)
        shapes |= _styled_conv_shapes("conv1", c4, c4, d, blur=None)
        shapes |= _to_rgb_shapes("to_rgb1", c4, self.img_channels, d, blur=None)
        in_channels = c4
        for i in range(3, self.log_size + 1):
            j, out = i - 3, self.channels[2**i]
            shapes |= _styled_conv_shapes(f"convs.{2 * j}", in_channels, out, d, blur=k)
            shapes |= _styled_conv_shapes(f"convs.{2 * j + 1}", out, out, d, blur=None)
            shapes |= _to_rgb_shapes(f"to_rgbs.{j}", out, self.img_channels, d, blur=k)
            in_channels = out
        for j in range(self.n_latent - 1):
            r = 2 ** ((j + 5) // 2)
            shapes[f"noises.noise_{j}"] = (1, 1, r, r)
        return shapes

    def generator_kwargs(self, where: str) -> dict[str, Any]:
        """Constructor arguments of our :class:`~gan_zoo.stylegan2.Generator` for this architecture.

        Raises:
            ConfigError: channels per resolution that no ``min(channel_base // r, channel_max)`` reproduces.
        """
        cmax = max(self.channels.values())
        below = [r for r in sorted(self.channels) if self.channels[r] < cmax]
        base = self.channels[below[0]] * below[0] if below else cmax * self.size
        if any(min(base // r, cmax) != c for r, c in self.channels.items()):
            raise ConfigError(
                f"{where}: channels per resolution {self.channels} do not follow min(channel_base / r, channel_max); "
                "this loader reads rosinality's layout (constant, then halving with each resolution)"
            )
        return {
            "z_dim": self.style_dim,
            "c_dim": 0,
            "w_dim": self.style_dim,
            "img_resolution": self.size,
            "img_channels": self.img_channels,
            "mapping_kwargs": {"num_layers": self.n_mlp, "lr_multiplier": self.lr_mlp},
            "synthesis_kwargs": {"channel_base": base, "channel_max": cmax, "resample_filter": self.taps},
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description, in their argument names (for ``gan info`` and provenance)."""
        return {
            "size": self.size,
            "style_dim": self.style_dim,
            "n_mlp": self.n_mlp,
            "channel_multiplier": self.channel_multiplier,
            "channels": {str(r): c for r, c in sorted(self.channels.items())},
            "img_channels": self.img_channels,
            "blur_kernel": self.taps,
            "lr_mlp": self.lr_mlp,
            "n_latent": self.n_latent,
        }


def _styled_conv_shapes(prefix: str, cin: int, cout: int, d: int, blur: int | None) -> dict[str, tuple[int, ...]]:
    shapes = {
        f"{prefix}.conv.weight": (1, cout, cin, 3, 3),
        f"{prefix}.conv.modulation.weight": (cin, d),
        f"{prefix}.conv.modulation.bias": (cin,),
        f"{prefix}.noise.weight": (1,),
        f"{prefix}.activate.bias": (cout,),
    }
    if blur is not None:
        shapes[f"{prefix}.conv.blur.kernel"] = (blur, blur)
    return shapes


def _to_rgb_shapes(prefix: str, cin: int, cimg: int, d: int, blur: int | None) -> dict[str, tuple[int, ...]]:
    shapes = {
        f"{prefix}.conv.weight": (1, cimg, cin, 1, 1),
        f"{prefix}.conv.modulation.weight": (cin, d),
        f"{prefix}.conv.modulation.bias": (cin,),
        f"{prefix}.bias": (1, cimg, 1, 1),
    }
    if blur is not None:
        shapes[f"{prefix}.upsample.kernel"] = (blur, blur)
    return shapes


def _normalised(taps: Any) -> tuple[float, ...]:
    t = torch.as_tensor(taps, dtype=torch.float64)
    return tuple(float(v) for v in t / t.sum())


# ---------------------------------------------------------------------------------------------------------------
# Reading.


def is_rosinality_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a ``torch.save`` checkpoint: a ``.pt``/``.pth`` file, or a zip that is not a ``.pkl``."""
    p = Path(path)
    if p.suffix.lower() in (".pt", ".pth", ".pkl"):
        return p.suffix.lower() != ".pkl"
    try:
        with open(p, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def read_rosinality_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a stylegan2-pytorch checkpoint, after bounding what it declares.

    Returns:
        The top-level dict (``'g_ema'``, ``'latent_avg'``, ``'args'``, ...); ``args`` comes back as an
        ``argparse.Namespace`` of plain values.

    Raises:
        MissingWeightsError: the file does not exist.
        DataError: empty file, git-lfs pointer, not a torch checkpoint, storages larger than the file, or not a dict.
        UnsafePickleError: the file names a global outside torch's data types (and ``argparse.Namespace``); torch
            refused it, nothing from the file was run.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(
            f"rosinality checkpoint not found: {path}; pass the path of a stylegan2-pytorch .pt file"
        )
    with open(path, "rb") as f:
        reject_placeholder(path, f.read(64), "rosinality checkpoint")
    safe = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5; older: files with 'args' are refused
    with safe([argparse.Namespace]) if safe is not None else contextlib.nullcontext():
        try:
            data = bounded_torch_load(path, str(path), "stylegan2-pytorch checkpoint")
        except DataError as e:  # torch's refusal spans many lines and suggests weights_only=False: name the global
            found = _GLOBAL.search(str(e.__cause__ or ""))
            if found is None:
                raise
            raise UnsafePickleError(
                f"{path} asks for {found.group(1)}, which a stylegan2-pytorch checkpoint never needs; refused by "
                "torch.load(weights_only=True), nothing from the file was run. Use a checkpoint from a source you trust"
            ) from e
    check_object_graph(data, str(path), children=lambda x: [vars(x)] if isinstance(x, argparse.Namespace) else None)
    if not isinstance(data, dict):
        raise DataError(
            f"{path} holds a {type(data).__name__}, expected the dict stylegan2-pytorch saves ({{'g_ema': ...}})"
        )
    return data


def _generator_state(data: dict[str, Any], key: str, where: str) -> dict[str, torch.Tensor]:
    if key not in data:
        held = sorted(str(k) for k in data)[:20]
        raise DataError(
            f"{where} has no {key!r} entry (it holds {held}); expected a stylegan2-pytorch checkpoint with "
            f"'g_ema', the generator's state_dict"
        )
    state = data[key]
    if not isinstance(state, dict):
        raise DataError(f"{where} [{key!r}] is a {type(state).__name__}, expected a state_dict of tensors")
    if len(state) > _MAX_TENSORS:
        raise DataError(f"{where} [{key!r}] holds {len(state):,} entries; a generator has a few hundred, refused")
    for name, value in state.items():
        if not isinstance(name, str):
            raise DataError(f"{where} [{key!r}] has a non-text key {name!r}")
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            kind = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
            raise DataError(f"{where} [{key!r}] {name} is a {kind}, expected a floating-point tensor")
    return state


# ---------------------------------------------------------------------------------------------------------------
# Architecture and state mapping.


def _tensor(state: dict[str, torch.Tensor], key: str, ndim: int, where: str) -> torch.Tensor:
    if key not in state:
        raise DataError(f"{where} lacks {key}, which every rosinality stylegan2 generator has")
    t = state[key]
    if t.ndim != ndim:
        raise DataError(f"{where}: {key} has shape {list(t.shape)}, expected {ndim} dimensions")
    return t


def _blur_taps(state: dict[str, torch.Tensor], size: int, where: str) -> tuple[float, ...]:
    """Their blur kernels (``make_kernel(k) * 4``), checked to be one separable FIR filter; its taps, sum 1."""
    keys = sorted(k for k in state if k.endswith(("conv.blur.kernel", "upsample.kernel")))
    if size == 4 or not keys:
        return _normalised((1, 3, 3, 1))  # no up-sampling at 4 px: the filter is never used
    first = _tensor(state, keys[0], 2, where).to(torch.float64)
    k = first.shape[0]
    if not 1 <= k <= _MAX_TAPS or first.shape[1] != k or not torch.isfinite(first).all() or first.sum() <= 0:
        raise DataError(f"{where}: {keys[0]} of shape {list(first.shape)} is not a square FIR kernel of 1-16 taps")
    taps = _normalised(first.sum(dim=1))
    expected = setup_filter(list(taps)).to(torch.float64) * 4
    for key in keys:
        kernel = state[key].to(torch.float64)
        if kernel.shape != expected.shape or not torch.allclose(kernel, expected, rtol=1e-5, atol=1e-7):
            raise ConfigError(
                f"{where}: {key} differs from {keys[0]} (taps {[round(t, 4) for t in taps]}); our generator has one "
                "resample filter, and rosinality's ToRGB always up-samples with [1, 3, 3, 1] whatever blur_kernel is"
            )
    return taps


def infer_architecture(
    state: dict[str, torch.Tensor], where: str, lr_mlp: float = DEFAULT_LR_MLP
) -> RosinalityArchitecture:
    """Read ``size``, ``style_dim``, ``n_mlp``, channels and blur kernel from a ``g_ema`` state_dict's shapes.

    Raises:
        DataError: a tensor the architecture needs is absent or misshapen; any missing or unexpected key or wrong
            shape against the full layout (all named).
        ConfigError: a resolution or depth beyond any real generator.
    """
    style_ids = sorted(int(m.group(1)) for k in state if (m := _STYLE.fullmatch(k)))
    if not style_ids:
        raise DataError(f"{where} has no mapping layers (style.1.weight, ...); not a rosinality stylegan2 generator")
    if style_ids != list(range(1, len(style_ids) + 1)) or len(style_ids) > 64:
        raise DataError(f"{where}: mapping layers style.N must be numbered 1..n_mlp (at most 64), got {style_ids[:10]}")
    style_dim = _tensor(state, "style.1.weight", 2, where).shape[1]
    n_rgbs = len([k for k in state if _TO_RGBS.fullmatch(k)])
    if n_rgbs + 2 > _MAX_LOG_SIZE:
        raise ConfigError(f"{where} has {n_rgbs} to_rgbs layers, a resolution above {2**_MAX_LOG_SIZE} px; refused")
    size = 2 ** (n_rgbs + 2)
    channels = {4: _tensor(state, "input.input", 4, where).shape[1]}
    for i in range(3, n_rgbs + 3):
        channels[2**i] = _tensor(state, f"convs.{2 * (i - 3)}.conv.weight", 5, where).shape[1]
    img_channels = _tensor(state, "to_rgb1.conv.weight", 5, where).shape[1]
    if not isinstance(lr_mlp, int | float) or not math.isfinite(lr_mlp) or lr_mlp <= 0:
        raise ConfigError(f"lr_mlp must be a positive number, got {lr_mlp!r}")
    arch = RosinalityArchitecture(
        size, style_dim, len(style_ids), img_channels, channels, _blur_taps(state, size, where), float(lr_mlp)
    )
    expected = arch.expected_shapes()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise DataError(
            f"{where} does not match a rosinality stylegan2 generator of {size} px with n_mlp={arch.n_mlp}: "
            f"missing keys {missing[:12]}, unexpected keys {unexpected[:12]}"
        )
    bad = [f"{k} {list(state[k].shape)} vs {list(s)}" for k, s in expected.items() if tuple(state[k].shape) != s]
    if bad:
        raise DataError(f"{where} has tensors of the wrong shape (file vs architecture): {bad[:8]}")
    return arch


def _latent_avg(value: Any, style_dim: int, where: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise DataError(f"{where} ['latent_avg'] is a {type(value).__name__}, expected a float tensor [{style_dim}]")
    if value.numel() != style_dim or value.ndim not in (1, 2):
        raise DataError(
            f"{where} ['latent_avg'] has shape {list(value.shape)}, expected [{style_dim}] or [1, {style_dim}]"
        )
    if not torch.isfinite(value).all():
        raise DataError(f"{where} ['latent_avg'] holds NaN or infinite values")
    return value.reshape(style_dim).to(torch.float32)


def convert_state_dict(
    state: dict[str, torch.Tensor], arch: RosinalityArchitecture, latent_avg: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Their ``g_ema`` state_dict (checked by :func:`infer_architecture`) as ours, float32, under our names.

    ``latent_avg`` ``[w_dim]`` becomes ``mapping.w_avg`` (zeros when ``None``; the loader then computes it).
    """
    f32 = {k: v.detach().to(torch.float32) for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    for i in range(arch.n_mlp):
        out[f"mapping.fc{i}.weight"] = f32[f"style.{i + 1}.weight"]
        out[f"mapping.fc{i}.bias"] = f32[f"style.{i + 1}.bias"]
    d = arch.style_dim
    out["mapping.w_avg"] = torch.zeros(d) if latent_avg is None else latent_avg.reshape(d).to(torch.float32)
    out["synthesis.b4.const"] = f32["input.input"][0]
    default = setup_filter(arch.taps)  # b4's, never used: nothing is up-sampled into 4 px
    unused = setup_filter([1, 3, 3, 1])  # our non-up-sampling SynthesisLayer keeps its default filter, never used
    layers = [("b4.conv1", "conv1")]
    for i in range(3, arch.log_size + 1):
        j = i - 3
        layers += [(f"b{2**i}.conv0", f"convs.{2 * j}"), (f"b{2**i}.conv1", f"convs.{2 * j + 1}")]
    for noise_index, (ours, theirs) in enumerate(layers):
        weight = f32[f"{theirs}.conv.weight"][0]
        dst = f"synthesis.{ours}"
        out[f"{dst}.weight"] = weight * (1 / math.sqrt(weight[0].numel()))  # their EqualConv scale, folded in
        out[f"{dst}.affine.weight"] = f32[f"{theirs}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = f32[f"{theirs}.conv.modulation.bias"]
        out[f"{dst}.noise_strength"] = f32[f"{theirs}.noise.weight"].reshape([])
        out[f"{dst}.bias"] = f32[f"{theirs}.activate.bias"]
        out[f"{dst}.noise_const"] = f32[f"noises.noise_{noise_index}"][0, 0]
        blur = f32.get(f"{theirs}.conv.blur.kernel")
        out[f"{dst}.resample_filter"] = unused.clone() if blur is None else blur / 4
    rgbs = [("b4", "to_rgb1")] + [(f"b{2**i}", f"to_rgbs.{i - 3}") for i in range(3, arch.log_size + 1)]
    for block, theirs in rgbs:
        dst = f"synthesis.{block}.torgb"
        out[f"{dst}.weight"] = f32[f"{theirs}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = f32[f"{theirs}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = f32[f"{theirs}.conv.modulation.bias"]
        out[f"{dst}.bias"] = f32[f"{theirs}.bias"].reshape(-1)
        up = f32.get(f"{theirs}.upsample.kernel")
        out[f"synthesis.{block}.resample_filter"] = default.clone() if up is None else up / 4
    return {k: v.contiguous() for k, v in out.items()}


def _mean_w(G: Generator, samples: int) -> torch.Tensor:
    z = torch.randn(samples, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return G.mapping(z, None, truncation_psi=1)[:, 0].mean(dim=0)


def load_rosinality(
    path: str | os.PathLike,
    key: str = "g_ema",
    device: str | torch.device | None = None,
    lr_mlp: float = DEFAULT_LR_MLP,
    w_avg_samples: int = W_AVG_SAMPLES,
) -> Generator:
    """Load the generator of a rosinality stylegan2-pytorch checkpoint as our module, without their code.

    Args:
        path: a ``.pt`` file from their ``train.py`` (``checkpoint/050000.pt``) or ``convert_weight.py``.
        key: ``'g_ema'`` (the generator to sample from) or ``'g'``.
        device: where to put the module; ``None`` = CPU.
        lr_mlp: their ``Generator(lr_mlp=...)``, which the file does not record; 0.01 unless their code was changed.
        w_avg_samples: when the file has no ``latent_avg`` (training checkpoints; always for ``key='g'``),
            ``w_avg`` is the mean ``w`` of this many ``z`` drawn with seed 0.

    Returns:
        :class:`~gan_zoo.stylegan2.Generator` in eval mode, ``requires_grad`` off, float32, with
        ``source_info = {'family': 'rosinality stylegan2', 'config': {...}}`` (shown by ``gan info``).

    Raises:
        MissingWeightsError / DataError / UnsafePickleError: see :func:`read_rosinality_checkpoint`; DataError
            also for an absent ``key``, non-tensor entries, or weights that do not form a rosinality generator
            (keys/shapes named).
        ConfigError: an unknown ``key``, invalid ``lr_mlp``/``w_avg_samples``, or sizes beyond any real
            generator.
    """
    if key not in KEYS:
        raise ConfigError(f"key must be one of {list(KEYS)} for a stylegan2-pytorch checkpoint, got {key!r}")
    if isinstance(w_avg_samples, bool) or not isinstance(w_avg_samples, int) or w_avg_samples < 1:
        raise ConfigError(f"w_avg_samples must be a positive integer, got {w_avg_samples!r}")
    path = Path(path)
    data = read_rosinality_checkpoint(path)
    where = f"{path} [{key}]"
    state = _generator_state(data, key, str(path))
    arch = infer_architecture(state, where, lr_mlp)
    latent_avg = data.get("latent_avg") if key == "g_ema" else None  # latent_avg is g_ema's
    w_avg = None if latent_avg is None else _latent_avg(latent_avg, arch.style_dim, str(path))
    G = build_checked(Generator, arch.generator_kwargs(where), convert_state_dict(state, arch, w_avg), where)
    if w_avg is None:
        G.mapping.w_avg.copy_(_mean_w(G, w_avg_samples))
    origin = "latent_avg" if w_avg is not None else f"mean of {w_avg_samples} mapped z (seed 0)"
    config = {**arch.to_dict(), "key": key, "w_avg": origin, "entries": sorted(str(k) for k in data),
              "layout_commit": SOURCE_COMMIT}  # fmt: skip
    G.source_info = {"family": FAMILY, "config": config}
    return G.to(device or "cpu").eval().requires_grad_(False)
