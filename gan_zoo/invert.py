"""Projection of real images into a StyleGAN2 generator's W, W+ or Z space, many images at once.

Karras et al., "Analyzing and Improving the Image Quality of StyleGAN" (CVPR 2020), Sec. 5 (projection). The
schedule follows NVIDIA's ``projector.py`` (github.com/NVlabs/stylegan2-ada-pytorch, commit
d72cc7d041b42ec8e806021a205ed9349f87c6a4), read, not copied: start every image at the mean ``w`` of mapping-network
samples; Adam (betas 0.9, 0.999); learning rate ramped up linearly over the first ``lr_rampup`` of the steps and
down along a half cosine over the last ``lr_rampdown``; Gaussian noise added to ``w`` at each step with scale
``w_std * init_noise * max(0, 1 - t / noise_ramp)**2`` (``t`` = step / steps), ``w_std`` being the RMS distance of
mapping samples to their mean.

Differences from NVIDIA's projector, all deliberate:

- Batched: ``B`` images are optimised together. The loss is the *sum* of independent per-image losses and Adam is
  elementwise, so a batch gives the same latents as ``B`` one-image runs (tested); each image's latent noise comes
  from its own ``torch.Generator`` seeded by ``(seed, key)``, so results do not depend on batch composition.
  Synthesis runs with ``fused_modconv=False`` (activations scaled around one shared convolution instead of one
  grouped convolution with per-sample weights): equal up to rounding, about 2x faster per image in batches on the
  CPU (benchmarks/bench_invert.py).
- Loss per image: ``pixel_weight * MSE + perceptual_weight * perceptual + prior_weight * mean((w - w_mean)**2)``.
  NVIDIA uses LPIPS-style VGG16 features alone and also optimises the noise buffers; we keep ``noise_mode='const'``
  and add the pixel and prior terms (useful on small gray medical images).
- W+ (one ``w`` per layer, Abdal et al., Image2StyleGAN, ICCV 2019) as an option.
- Z as an option (the original StyleGAN projection space): ``z`` is optimised and ``w = mapping(z, c)`` kept, with
  ``c`` the image's own label for a conditional G. Less faithful than W, but every latent is one G could sample for
  that label. With the small demo generators a W projection reproduces a blurred image and loses the disease (a
  classifier trained on the reconstructions of the conditional demo:cxr: 63.8% on real test patients, section
  ``utility-ladder-tb-conditional-ft`` of benchmarks/RESULTS.md); Z keeps more of it (81.7%, ``utility-ladder-tb``).
- Offline: ``perceptual="auto"`` uses LPIPS VGG16 when its backbone weights resolve locally
  (:func:`gan_zoo.pretrained.lpips_model`) and otherwise the weights-free ``ms-gradient`` distance
  (:func:`ms_gradient_distance`), warning *and* recording the fact in ``perceptual_used``.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_zoo.config import StageConfig
from gan_zoo.devices import device_of
from gan_zoo.errors import ConfigError, DataError, MissingWeightsError
from gan_zoo.sampling import synthesize
from gan_zoo.seeds import derive_seed

__all__ = [
    "SPACES",
    "PERCEPTUAL",
    "InvertConfig",
    "InversionResult",
    "invert",
    "Projector",
    "check_projectable",
    "check_images",
    "finite_or_none",
    "class_w_means",
    "lr_at",
    "noise_at",
    "ms_gradient_distance",
    "item_seed",
    "generator_sha256",
    "w_statistics",
]

SPACES = ("w", "w+", "z")
PERCEPTUAL = ("auto", "lpips-vgg", "lpips-alex", "ms-gradient", "none")
_LPIPS_MIN, _LPIPS_MAX = 64, 256  # LPIPS input side: smaller images are upsampled, larger ones area-downsampled


@dataclass(frozen=True)
class InvertConfig(StageConfig):
    """Options of a projection; the single source of defaults for the API and the CLI."""

    STAGE: ClassVar[str] = "inversion"

    space: str = "w"  # "w": one w per image broadcast to all num_ws layers; "w+": one w per layer; "z": see below
    steps: int = 300  # optimisation steps per image (NVIDIA's projector: 1000)
    lr: float = 0.1  # peak Adam learning rate (betas 0.9, 0.999)
    lr_rampup: float = 0.05  # fraction of the steps with a linear lr warm-up from 0; 0 = none
    lr_rampdown: float = 0.25  # fraction of the steps at the end with a half-cosine lr decay to 0; 0 = none
    batch: int = 32  # images optimised together; speed only, results do not depend on it
    pixel_weight: float = 1.0  # weight of the per-image pixel MSE (images in [-1, 1]); 0 = off
    perceptual: str = "auto"  # "auto" = lpips-vgg if its weights resolve, else ms-gradient; or a PERCEPTUAL name
    perceptual_weight: float = 1.0  # weight of the perceptual distance; ignored when perceptual="none"
    prior_weight: float = 1e-3  # weight of mean((w - w_mean)**2) over latent entries; 0 = off
    init_noise: float = 0.05  # latent noise at step 0 in units of w_std; decays to 0 at noise_ramp; 0 = none
    noise_ramp: float = 0.75  # fraction of the steps after which the latent noise is 0
    w_avg_samples: int = 10000  # mapping-network samples for w_mean (start and prior centre) and w_std
    seed: int = 0  # seeds the w statistics and, with each image's key, that image's latent noise

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ConfigError(f'unknown latent space "{self.space}"; expected one of {", ".join(SPACES)}')
        if self.perceptual not in PERCEPTUAL:
            raise ConfigError(f'unknown perceptual loss "{self.perceptual}"; expected one of {", ".join(PERCEPTUAL)}')
        for name in ("steps", "batch", "w_avg_samples", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
        for name in ("steps", "batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.w_avg_samples < 2:
            raise ConfigError(f"w_avg_samples must be >= 2, got {self.w_avg_samples}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        for name in ("lr", "lr_rampup", "lr_rampdown", "pixel_weight", "perceptual_weight", "prior_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
        for name in ("init_noise", "noise_ramp"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        for name in ("lr_rampup", "lr_rampdown"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be a fraction of the steps in [0, 1], got {getattr(self, name)}")
        if not 0 < self.noise_ramp <= 1:
            raise ConfigError(f"noise_ramp must be a fraction of the steps in (0, 1], got {self.noise_ramp}")
        for name in ("pixel_weight", "perceptual_weight", "prior_weight", "init_noise"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        uses_perceptual = self.perceptual != "none" and self.perceptual_weight > 0
        if self.pixel_weight == 0 and not uses_perceptual:
            raise ConfigError(
                "nothing to fit: pixel_weight is 0 and the perceptual term is off; set pixel_weight > 0 or choose a "
                "perceptual loss with perceptual_weight > 0"
            )


@dataclass(frozen=True)
class InversionResult:
    """Latents of projected images and how well they reproduce them.

    Attributes:
        ws: ``[N, num_ws, w_dim]`` float32 on the images' device; in W space every row of an image is the same w.
        mse: ``[N]`` mean squared pixel error of the final render (clamped to [-1, 1]) against the image.
        perceptual: ``[N]`` final perceptual distance (``perceptual_used``); NaN when the perceptual term is off.
        perceptual_used: what the perceptual term was, e.g. ``"lpips-vgg (vgg16-397923af.pth)"`` or
            ``"ms-gradient (LPIPS backbone weights not found: vgg16-397923af.pth)"``.
    """

    ws: Tensor
    mse: Tensor
    perceptual: Tensor
    perceptual_used: str

    def to_dict(self) -> dict[str, Any]:
        """Per-image errors and the perceptual term as plain JSON values (latents excluded)."""
        return {
            "perceptual_used": self.perceptual_used,
            "mse": [float(v) for v in self.mse],
            "perceptual": [finite_or_none(v) for v in self.perceptual],
        }


# ---------------------------------------------------------------------------------------------------------------
# Schedule, seeds and losses.


def lr_at(step: int, cfg: InvertConfig) -> float:
    """Learning rate at ``step`` (0-based): linear ramp-up, flat, half-cosine ramp-down to 0 (NVIDIA's schedule)."""
    t = step / cfg.steps
    ramp = min(1.0, (1.0 - t) / cfg.lr_rampdown) if cfg.lr_rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp *= min(1.0, t / cfg.lr_rampup) if cfg.lr_rampup > 0 else 1.0
    return cfg.lr * ramp


def noise_at(step: int, cfg: InvertConfig) -> float:
    """Latent noise scale at ``step`` in units of ``w_std``: ``init_noise * max(0, 1 - t / noise_ramp)**2``."""
    t = step / cfg.steps
    return cfg.init_noise * max(0.0, 1.0 - t / cfg.noise_ramp) ** 2


def item_seed(seed: int, key: Any) -> int:
    """A 63-bit seed for one image from the run's ``seed`` and the image's ``key`` (its id or position)."""
    return derive_seed("latentwalk.invert", seed, key)


def ms_gradient_distance(x: Tensor, y: Tensor, scales: int = 4, min_size: int = 8) -> Tensor:
    """Weights-free perceptual proxy: pixel and gradient differences averaged over an image pyramid.

    At each scale ``s`` (the images 2x2 average-pooled ``s`` times, while the side stays >= ``min_size``; the full
    resolution always counts) with ``d = x_s - y_s``: ``mean(d**2) + mean((d_x)**2) + mean((d_y)**2)``, where
    ``d_x``, ``d_y`` are forward differences along width and height. Edges and coarse structure weigh as much as
    fine pixels, which keeps the projection out of blurry minima that plain MSE favours. Deterministic and
    per-image (no mixing across the batch).

    Args:
        x, y: ``[N, C, R, R]`` float, same shape, any range (images are in [-1, 1] here).
        scales: number of pyramid levels at most.
        min_size: smallest side a level may have.

    Returns:
        ``[N]`` float distances, 0 for identical images.
    """
    total = x.new_zeros(x.shape[0])
    levels = 0
    d = x - y  # [N, C, R, R]; the distance is quadratic in the difference, so pool the difference
    for s in range(scales):
        if s:
            if min(d.shape[-2:]) // 2 < min_size:
                break
            d = F.avg_pool2d(d, 2)  # [N, C, R / 2**s, R / 2**s]
        dx = d[..., :, 1:] - d[..., :, :-1]  # [N, C, H, W - 1]
        dy = d[..., 1:, :] - d[..., :-1, :]  # [N, C, H - 1, W]
        total = total + d.square().mean((1, 2, 3)) + dx.square().mean((1, 2, 3)) + dy.square().mean((1, 2, 3))
        levels += 1
    return total / levels


class _Perceptual:
    """A perceptual distance with target preparation done once per batch."""

    name: str = "none"

    def targets(self, y: Tensor) -> Any:
        return y

    def distance(self, x: Tensor, targets: Any) -> Tensor:  # [N]
        raise NotImplementedError


class _MsGradient(_Perceptual):
    def __init__(self, name: str) -> None:
        self.name = name

    def distance(self, x: Tensor, targets: Any) -> Tensor:
        return ms_gradient_distance(x, targets)


class _Lpips(_Perceptual):
    """LPIPS on gray or RGB ``[N, C, R, R]`` in [-1, 1]: gray repeated to RGB, side brought into [64, 256].

    For a standard LPIPS v0.1 network the target's normalised features are computed once and each step runs the
    backbone on the renders only (equal to ``net(x, y)``, tested); any other configuration calls ``net(x, y)``.
    """

    def __init__(self, net: nn.Module, name: str) -> None:
        self.net = net
        self.name = name
        self.cached = (
            getattr(net, "lpips", False) is True
            and getattr(net, "spatial", True) is False
            and getattr(net, "version", None) == "0.1"
            and hasattr(net, "lins")
        )

    @staticmethod
    def prepare(x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # [N, 3, R, R]
        side = x.shape[-1]
        if side < _LPIPS_MIN:
            x = F.interpolate(x, size=(_LPIPS_MIN, _LPIPS_MIN), mode="bilinear", align_corners=False)
        elif side > _LPIPS_MAX:
            x = F.interpolate(x, size=(_LPIPS_MAX, _LPIPS_MAX), mode="area")
        return x  # [N, 3, S, S], 64 <= S <= 256

    def _features(self, x: Tensor) -> list[Tensor]:
        import lpips

        outs = self.net.net(self.net.scaling_layer(self.prepare(x)))
        return [lpips.normalize_tensor(o) for o in outs]  # per layer [N, C_l, H_l, W_l], unit norm over C_l

    def targets(self, y: Tensor) -> Any:
        if not self.cached:
            return self.prepare(y)
        with torch.no_grad():
            return [f.detach() for f in self._features(y)]

    def distance(self, x: Tensor, targets: Any) -> Tensor:
        if not self.cached:
            return self.net(self.prepare(x), targets).reshape(x.shape[0])
        total = x.new_zeros(x.shape[0])
        for lin, fx, fy in zip(self.net.lins, self._features(x), targets, strict=True):
            total = total + lin((fx - fy).square()).mean((1, 2, 3))  # [N]; lin: [N, C_l, H, W] -> [N, 1, H, W]
        return total


def _perceptual(cfg: InvertConfig, lpips_net: nn.Module | None, device: torch.device) -> _Perceptual | None:
    """The perceptual term of ``cfg`` (``None`` when off), resolving LPIPS weights offline."""
    from gan_zoo.pretrained import LPIPS_BACKBONES, lpips_model

    if cfg.perceptual == "none" or cfg.perceptual_weight == 0:
        if lpips_net is not None:
            raise ConfigError(
                "lpips_net was given but the perceptual term is off; drop lpips_net or set perceptual to "
                "auto/lpips-vgg/lpips-alex with perceptual_weight > 0"
            )
        return None
    if cfg.perceptual == "ms-gradient":
        if lpips_net is not None:
            raise ConfigError('lpips_net was given but perceptual is "ms-gradient"; drop one of them')
        return _MsGradient("ms-gradient")
    if lpips_net is not None:
        net_type = getattr(lpips_net, "pnet_type", None)
        if cfg.perceptual != "auto" and cfg.perceptual != f"lpips-{net_type}":
            raise ConfigError(f'lpips_net is an LPIPS "{net_type}" network but perceptual is "{cfg.perceptual}"')
        if getattr(lpips_net, "training", False):
            raise ConfigError("lpips_net is in training mode (dropout would make results random); call .eval()")
        param = next(lpips_net.parameters(), None)
        if param is not None and param.device != device:
            raise ConfigError(f"lpips_net is on {param.device} but the images are on {device}; move it with .to()")
        return _Lpips(lpips_net, f"lpips-{net_type} (network given by the caller)")
    net = "vgg" if cfg.perceptual in ("auto", "lpips-vgg") else "alex"
    try:
        model = lpips_model(net, device=device)
    except MissingWeightsError:
        if cfg.perceptual != "auto":
            raise
        name = f"ms-gradient (LPIPS backbone weights not found: {LPIPS_BACKBONES[net]})"
        warnings.warn(
            f"perceptual loss: {name}; place {LPIPS_BACKBONES[net]} in $LATENTWALK_WEIGHTS_DIR for LPIPS",
            stacklevel=3,
        )
        return _MsGradient(name)
    return _Lpips(model, f"lpips-{net} ({LPIPS_BACKBONES[net]})")


def finite_or_none(v: Any) -> float | None:
    """``float(v)``, or ``None`` when it is not finite (JSON has no NaN)."""
    v = float(v)
    return v if math.isfinite(v) else None


# ---------------------------------------------------------------------------------------------------------------
# The batched projection.


@dataclass(frozen=True)
class _Session:
    """Everything shared by the batches of one run: generator, w statistics and the perceptual term."""

    G: nn.Module
    w_mean: Tensor  # [w_dim]
    w_std: float  # RMS distance of mapping samples to w_mean
    perceptual: _Perceptual | None
    perceptual_used: str
    w_class: Tensor | None = None  # [c_dim, w_dim]: mean w of each label (conditional G), the start of its images


def _c_dim(G: Any) -> int:
    """The label size of ``G`` (0 for an unconditional generator)."""
    return int(getattr(G, "c_dim", 0) or 0)


def check_projectable(G: Any) -> None:
    """Raise :class:`ConfigError` unless ``G`` has NVIDIA's generator contract (what projection needs)."""
    for attr in ("mapping", "synthesis", "num_ws", "w_dim", "z_dim", "c_dim", "img_resolution", "img_channels"):
        if not hasattr(G, attr):
            raise ConfigError(
                f"G has no attribute {attr!r}; invert needs a generator with NVIDIA's contract (gan_zoo.load)"
            )


def class_w_means(G: nn.Module, samples: int, seed: int) -> Tensor:
    """Mean ``w`` of each label of a conditional ``G``: ``[c_dim, w_dim]``, ``samples // c_dim`` draws per label."""
    gen = torch.Generator().manual_seed(seed)
    device = device_of(G)
    per = max(1, samples // G.c_dim)
    means = []
    with torch.no_grad():
        for label in range(G.c_dim):
            z = torch.randn(per, G.z_dim, generator=gen).to(device)  # [per, z_dim]
            c = F.one_hot(torch.full((per,), label), G.c_dim).to(device=device, dtype=torch.float32)
            means.append(G.mapping(z, c)[:, 0].to(torch.float64).mean(0))
    return torch.stack(means).to(torch.float32)  # [c_dim, w_dim]


def w_statistics(G: nn.Module, samples: int, seed: int) -> tuple[Tensor, float]:
    """Mean ``w`` ``[w_dim]`` and ``w_std`` (RMS distance to it) of ``samples`` mapping outputs.

    ``z`` comes from a CPU generator seeded with ``seed`` (same numbers on every device); a conditional ``G`` gets
    uniformly drawn one-hot labels.
    """
    gen = torch.Generator().manual_seed(seed)
    device = device_of(G)
    chunks = []
    with torch.no_grad():
        for start in range(0, samples, 4096):
            n = min(4096, samples - start)
            z = torch.randn(n, G.z_dim, generator=gen).to(device)  # [n, z_dim]
            c = None
            if G.c_dim > 0:
                labels = torch.randint(G.c_dim, (n,), generator=gen)
                c = F.one_hot(labels, G.c_dim).to(device=device, dtype=torch.float32)  # [n, c_dim]
            chunks.append(G.mapping(z, c)[:, 0].to(torch.float64))  # [n, w_dim]
    w = torch.cat(chunks)  # [samples, w_dim]
    w_mean = w.mean(0)
    w_std = float(w.sub(w_mean).square().sum(1).mean().sqrt())
    return w_mean.to(torch.float32), w_std


def _session(G: nn.Module, cfg: InvertConfig, lpips_net: nn.Module | None) -> _Session:
    device = device_of(G)
    w_mean, w_std = w_statistics(G, cfg.w_avg_samples, cfg.seed)
    perceptual = _perceptual(cfg, lpips_net, device)
    w_class = class_w_means(G, cfg.w_avg_samples, cfg.seed) if int(getattr(G, "c_dim", 0)) > 0 else None
    return _Session(G, w_mean, w_std, perceptual, perceptual.name if perceptual else "none", w_class)


def check_images(G: nn.Module, images: Any) -> None:
    """Raise unless ``images`` is a finite float tensor ``[N, C, R, R]`` in [-1, 1] matching ``G``."""
    expected = [G.img_channels, G.img_resolution, G.img_resolution]
    if not isinstance(images, Tensor) or images.ndim != 4 or list(images.shape[1:]) != expected:
        got = list(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ConfigError(
            f"images must be a tensor [N, {', '.join(map(str, expected))}] to match the generator, got {got}; load "
            f"them with latentwalk.data.preprocess.load_tensors(index, {G.img_resolution}, channels={G.img_channels})"
        )
    if images.shape[0] == 0:
        raise ConfigError("images is empty; pass at least one image [1, C, R, R]")
    if not images.is_floating_point():
        raise ConfigError(f"images must be float in [-1, 1], got dtype {images.dtype}")
    if not torch.isfinite(images).all():
        raise DataError("images contain NaN or infinite values; check how they were loaded")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1.01 or hi > 1.01:
        raise DataError(
            f"images must be in [-1, 1], got values in [{lo:.3g}, {hi:.3g}]; map 0..255 pixels with x / 127.5 - 1"
        )


def _invert_batch(
    s: _Session,
    cfg: InvertConfig,
    targets: Tensor,
    keys: Sequence[Any],
    progress: bool = False,
    fused_modconv: bool = False,
    labels: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Project one batch; returns ``(ws [B, num_ws, w_dim], mse [B], perceptual [B])``, detached.

    With ``labels`` (a conditional generator), each image starts at, and is drawn towards, the mean w of its label
    instead of the overall mean.

    ``fused_modconv=False`` (scale activations around one shared convolution) is about 2x faster per image than
    per-sample weights for batches on the CPU and equal up to rounding; the benchmark passes ``True`` to time
    NVIDIA's one-image default.
    """
    from tqdm.auto import tqdm

    if cfg.space == "z":
        return _invert_batch_z(s, cfg, targets, keys, progress, fused_modconv, labels)
    G = s.G
    n, num_ws, w_dim = targets.shape[0], G.num_ws, G.w_dim
    k = 1 if cfg.space == "w" else num_ws
    device = targets.device
    targets = targets.to(torch.float32)
    if labels is not None and s.w_class is not None:
        w_mean = s.w_class.to(device)[labels.to(device)][:, None, :]  # [B, 1, w_dim]: each image's label mean
    else:
        w_mean = s.w_mean.to(device)
    w_opt = w_mean.expand(n, k, w_dim).clone().requires_grad_(True)  # [B, k, w_dim]
    opt = torch.optim.Adam([w_opt], lr=cfg.lr, betas=(0.9, 0.999))
    gens = [torch.Generator().manual_seed(item_seed(cfg.seed, key)) for key in keys]
    perc_targets = s.perceptual.targets(targets) if s.perceptual is not None else None

    def losses(synth: Tensor, w: Tensor) -> Tensor:  # [B]
        loss = _fit_loss(s, cfg, synth, targets, perc_targets)
        if cfg.prior_weight > 0:
            loss = loss + cfg.prior_weight * (w - w_mean).square().mean((1, 2))
        return loss

    with torch.enable_grad():
        for step in tqdm(range(cfg.steps), desc="steps", leave=False, disable=None if progress else True):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            scale = s.w_std * noise_at(step, cfg)
            w = w_opt
            if scale > 0:
                noise = torch.stack([torch.randn(k, w_dim, generator=g) for g in gens])  # [B, k, w_dim], CPU
                w = w_opt + noise.to(device) * scale
            synth = synthesize(G, w.expand(-1, num_ws, -1), fused_modconv=fused_modconv)  # [B, C, R, R]
            (grad,) = torch.autograd.grad(losses(synth, w_opt).sum(), [w_opt])  # sum: images stay independent
            w_opt.grad = grad
            opt.step()

    ws = w_opt.detach().expand(-1, num_ws, -1).contiguous()  # [B, num_ws, w_dim]
    return _score(s, ws, targets, perc_targets, fused_modconv)


def _fit_loss(s: _Session, cfg: InvertConfig, synth: Tensor, targets: Tensor, perc_targets: Any) -> Tensor:
    """Per-image data term ``[B]``: ``pixel_weight * MSE + perceptual_weight * perceptual`` (W and Z alike)."""
    loss = cfg.pixel_weight * (synth - targets).square().mean((1, 2, 3))
    if s.perceptual is not None:
        loss = loss + cfg.perceptual_weight * s.perceptual.distance(synth, perc_targets)
    return loss


@torch.no_grad()
def _score(s: _Session, ws: Tensor, targets: Tensor, perc_targets: Any, fused_modconv: bool):
    """``(ws, mse [B], perceptual [B])`` of final latents: the render clamped to [-1, 1] against the targets."""
    synth = synthesize(s.G, ws, fused_modconv=fused_modconv).clamp(-1, 1)  # [B, C, R, R]
    mse = (synth - targets).square().mean((1, 2, 3))
    if s.perceptual is not None:
        perceptual = s.perceptual.distance(synth, perc_targets).detach()
    else:
        perceptual = torch.full_like(mse, float("nan"))
    return ws, mse, perceptual


def _invert_batch_z(
    s: _Session,
    cfg: InvertConfig,
    targets: Tensor,
    keys: Sequence[Any],
    progress: bool,
    fused_modconv: bool,
    labels: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Project one batch in Z: optimise ``z`` and keep ``w = G.mapping(z, c)`` (``c`` the image's label, one-hot).

    The latent stays on the mapping network's output, so its image is one G could sample (for that label, with a
    conditional G): the projection is less faithful than in W, but it keeps what G draws for the label, where a W
    projection of an image G cannot reproduce drifts off the distribution and loses it (benchmarks/RESULTS.md,
    ``utility-ladder-tb``). Each image starts at a standard-normal ``z`` seeded by its key; ``prior_weight`` and
    the latent noise do not apply (the mapping normalises ``z`` and is the prior).
    """
    from tqdm.auto import tqdm

    G = s.G
    device = targets.device
    targets = targets.to(torch.float32)
    c = None
    if _c_dim(G):
        c = F.one_hot(labels.to(device), _c_dim(G)).to(torch.float32)  # [B, c_dim]; labels checked by invert()
    z0 = torch.stack([torch.randn(G.z_dim, generator=torch.Generator().manual_seed(item_seed(cfg.seed, key)))
                      for key in keys])  # fmt: skip
    z = z0.to(device).requires_grad_(True)  # [B, z_dim]
    opt = torch.optim.Adam([z], lr=cfg.lr, betas=(0.9, 0.999))
    perc_targets = s.perceptual.targets(targets) if s.perceptual is not None else None

    with torch.enable_grad():
        for step in tqdm(range(cfg.steps), desc="steps", leave=False, disable=None if progress else True):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            synth = synthesize(G, G.mapping(z, c), fused_modconv=fused_modconv)  # [B, C, R, R]
            loss = _fit_loss(s, cfg, synth, targets, perc_targets)  # [B]
            (grad,) = torch.autograd.grad(loss.sum(), [z])  # sum: images stay independent
            z.grad = grad
            opt.step()

    with torch.no_grad():
        ws = G.mapping(z.detach(), c).contiguous()  # [B, num_ws, w_dim]
    return _score(s, ws, targets, perc_targets, fused_modconv)


def invert(
    G: nn.Module,
    images: Tensor,
    cfg: InvertConfig | None = None,
    *,
    keys: Sequence[Any] | None = None,
    labels: Tensor | None = None,
    lpips_net: nn.Module | None = None,
    progress: bool = False,
) -> InversionResult:
    """Project images into ``G``'s W (or W+, or Z) space, ``cfg.batch`` images at a time.

    Args:
        G: generator with NVIDIA's contract (``mapping``, ``synthesis``, ``num_ws``, ...), on the images' device;
            it is only read (no gradients are stored in it, its mode is left as it is).
        images: float ``[N, G.img_channels, G.img_resolution, G.img_resolution]`` in [-1, 1].
        cfg: options; ``None`` = :class:`InvertConfig` defaults.
        keys: one key per image (int or str) that, with ``cfg.seed``, seeds its latent noise; ``None`` = the
            positions ``0..N-1``. Pass dataset ids to make results independent of which images are inverted together.
        labels: ``[N]`` class index of each image; for a conditional ``G`` (``c_dim > 0``) each image starts at the
            mean w of its label (ignored for an unconditional ``G``).
        lpips_net: an ``lpips.LPIPS`` network (eval mode, on the images' device) to use as the perceptual term
            instead of resolving one; allowed with ``perceptual`` auto or the matching lpips-*.
        progress: show tqdm bars.

    Returns:
        :class:`InversionResult` with ``ws [N, G.num_ws, G.w_dim]``, per-image ``mse`` and ``perceptual`` ``[N]``.

    Raises:
        ConfigError: images of the wrong shape, keys of the wrong length, G or lpips_net not usable.
        DataError: images outside [-1, 1] or not finite.
        MissingWeightsError: ``perceptual`` is lpips-vgg/lpips-alex and the backbone weights are absent.
    """
    from tqdm.auto import tqdm

    cfg = cfg if cfg is not None else InvertConfig()
    check_projectable(G)
    check_images(G, images)
    device = device_of(G)
    if images.device != device:
        raise ConfigError(f"images are on {images.device} but G is on {device}; move one of them with .to()")
    n = images.shape[0]
    keys = list(range(n)) if keys is None else list(keys)
    if len(keys) != n:
        raise ConfigError(f"keys must give one key per image: {n} images, {len(keys)} keys")
    if len(set(map(str, keys))) != n:
        raise ConfigError("keys must be distinct (equal keys would give images the same latent noise)")
    if labels is not None and (labels.shape != (n,) or labels.dtype not in (torch.int64, torch.int32)):
        raise ConfigError(f"labels must be an integer tensor [{n}], one per image")
    if labels is not None and _c_dim(G) and not bool(((labels >= 0) & (labels < _c_dim(G))).all()):
        raise ConfigError(f"labels must lie in [0, {_c_dim(G)}) for this conditional generator")
    if cfg.space == "z" and _c_dim(G) and labels is None:
        raise ConfigError("inversion in Z of a conditional generator needs each image's label (labels=...)")
    s = _session(G, cfg, lpips_net)
    parts = []
    for start in tqdm(range(0, n, cfg.batch), desc="inverting", unit="batch", disable=None if progress else True):
        stop = min(start + cfg.batch, n)
        lab = labels[start:stop] if labels is not None else None
        parts.append(_invert_batch(s, cfg, images[start:stop], keys[start:stop], progress, labels=lab))
    ws, mse, perceptual = (torch.cat(p) for p in zip(*parts, strict=True))
    return InversionResult(ws=ws, mse=mse, perceptual=perceptual, perceptual_used=s.perceptual_used)


def generator_sha256(G: nn.Module) -> str:
    """SHA-256 over ``G``'s state_dict (names, dtypes, shapes and bytes, in key order): names the exact weights."""
    h = hashlib.sha256()
    for name, tensor in G.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{list(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class Projector:
    """One projection run for images that arrive batch by batch (a dataset read from disk, a stream).

    Holds what every batch shares (the ``w`` statistics, the class means of a conditional ``G``, the perceptual term)
    so that they are computed once; :meth:`project` of a batch equals :func:`invert` of the same images with the same
    keys (each image's latent noise is seeded by ``(cfg.seed, key)``). Used by :func:`latentwalk.invert.invert_dataset`.
    """

    def __init__(self, G: nn.Module, cfg: InvertConfig | None = None, *, lpips_net: nn.Module | None = None) -> None:
        check_projectable(G)
        self.G = G
        self.cfg = cfg if cfg is not None else InvertConfig()
        self._s = _session(G, self.cfg, lpips_net)

    @property
    def perceptual_used(self) -> str:
        """What the perceptual term is, e.g. ``"lpips-vgg (vgg16-397923af.pth)"`` or ``"none"``."""
        return self._s.perceptual_used

    @property
    def w_std(self) -> float:
        """RMS distance of mapping samples to their mean (scales the latent noise)."""
        return self._s.w_std

    @property
    def uses_labels(self) -> bool:
        """True for a conditional ``G``: each image starts at (W) or is mapped with (Z) its own label."""
        return self._s.w_class is not None

    def project(
        self, images: Tensor, keys: Sequence[Any], *, labels: Tensor | None = None, progress: bool = False
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Project one batch: ``(ws [B, num_ws, w_dim], mse [B], perceptual [B])``; see :func:`invert`."""
        check_images(self.G, images)
        if self.cfg.space == "z" and self.uses_labels and labels is None:
            raise ConfigError("inversion in Z of a conditional generator needs each image's label (labels=...)")
        return _invert_batch(self._s, self.cfg, images, list(keys), progress, labels=labels)
