"""Adapt any ``nn.Module`` that turns a latent (and optionally a label) into images to the generator contract.

The wrapped generator has ``num_ws = 1``: its W space is one vector per image,

    w = [latent (latent_dim values), label (c_dim values, one-hot)]      w_dim = latent_dim + c_dim

- ``latent='z'``: the module takes ``z ~ N(0, I)`` directly. The mapping is the identity (``w = z``, so
  ``w_dim = z_dim`` when unconditional) and ``w_avg`` is zero, the exact mean of ``z``; truncation then shrinks
  ``z`` towards 0 (the classic truncation trick).
- ``latent='w'``: the module is a synthesis network taking ``w [N, w_dim]``. Pass ``mapping``, a module
  ``z [N, z_dim] -> w [N, w_dim]``, when ``w`` is not itself Gaussian; ``w_avg`` is then estimated as the mean of
  ``mapping(z)`` over ``w_avg_samples`` seeded draws (or given as ``w_avg``). Without ``mapping``, ``z`` is used as
  ``w`` and ``w_avg`` is zero, as for ``latent='z'``.

Labels (``c_dim > 0``) ride along in ``w`` so that ``G.synthesis(ws)`` can hand them to the module, as the contract
has no label argument there: the module is called as ``module(latent, c)`` (``label_arg=None``) or
``module(latent, **{label_arg: c})``. Truncation applies to the latent part only; the label coordinates of ``w`` keep
the requested class, and the label part of ``w_avg`` is the mean label ``1 / c_dim`` (the start of an inversion).
A mapping network that needs the label is NVIDIA's design: implement the contract directly (see
:mod:`gan_zoo.base`) instead of wrapping.

Outputs declared in ``(0, 1)`` are mapped to [-1, 1] with ``2 x - 1``. ``noise_mode`` is accepted and ignored: the
wrapped module is deterministic given its input, as ``noise_mode='const'`` is for StyleGAN. ``img_resolution`` and
``img_channels`` are read from one forward of two samples when not given, and :func:`gan_zoo.check_generator` runs
once at construction, so a mismatch is reported by name before any real work.

Example::

    import torch
    from torch import nn

    import gan_zoo

    class Decoder(nn.Module):  # z [N, 64] -> image [N, 1, 32, 32] in [0, 1]
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(64, 32 * 32), nn.Sigmoid())

        def forward(self, z):
            return self.net(z).view(-1, 1, 32, 32)

    G = gan_zoo.wrap(Decoder(), latent="z", z_dim=64, output_range=(0, 1))
    G.num_ws, G.w_dim, G.img_resolution            # 1, 64, 32
    img = G(torch.randn(4, 64), None)               # [4, 1, 32, 32] in [-1, 1]
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from gan_zoo.base import NOISE_MODES, check_generator
from gan_zoo.devices import device_of
from gan_zoo.errors import ConfigError

__all__ = ["OUTPUT_RANGES", "WrappedGenerator", "WrappedMapping", "WrappedSynthesis", "wrap"]

OUTPUT_RANGES = ((-1.0, 1.0), (0.0, 1.0))
_PROBE_SEED = 0


def _shape(x: Tensor) -> str:
    return "[" + ", ".join(str(d) for d in x.shape) + "]"


class WrappedMapping(nn.Module):
    """``z [N, z_dim]`` (+ ``c [N, c_dim]``) -> ``ws [N, 1, latent_dim + c_dim]``; identity or a user ``mapping``.

    ``w_avg`` ``[w_dim]`` is a buffer (moves with ``.to()``, saved in the state_dict).
    """

    def __init__(self, z_dim: int, latent_dim: int, c_dim: int, w_avg: Tensor, mapping: nn.Module | None) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.latent_dim = latent_dim
        self.w_dim = latent_dim + c_dim
        self.num_ws = 1
        self.module = mapping
        self.register_buffer("w_avg", w_avg.detach().to(torch.float32).clone())

    def latent(self, z: Tensor) -> Tensor:
        """The latent part of ``w``: ``mapping(z)`` or ``z`` itself, ``[N, latent_dim]`` float32."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ConfigError(f"z must have shape [N, {self.z_dim}], got {_shape(z)}")
        if self.module is None:
            return z.to(torch.float32)
        w = self.module(z)
        if not isinstance(w, Tensor) or list(w.shape) != [z.shape[0], self.latent_dim]:
            got = _shape(w) if isinstance(w, Tensor) else type(w).__name__
            raise ConfigError(f"the wrapped mapping returned {got}, expected [{z.shape[0]}, {self.latent_dim}]")
        return w.to(torch.float32)

    def forward(
        self,
        z: Tensor,
        c: Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> Tensor:
        """Latents ``ws [N, 1, w_dim]`` float32.

        Args:
            z: ``[N, z_dim]``.
            c: one-hot ``[N, c_dim]``; ``None`` or ``[N, 0]`` when unconditional.
            truncation_psi: ``latent = w_avg + psi * (latent - w_avg)`` on the latent part; the label is kept.
            truncation_cutoff: ``None`` or >= 1 truncates the single ``w``; 0 leaves it untouched (NVIDIA's meaning
                of "the first ``cutoff`` layers" with one layer).
        """
        w = self.latent(z)
        if truncation_psi != 1 and (truncation_cutoff is None or truncation_cutoff >= 1):
            w = self.w_avg[: self.latent_dim].lerp(w, float(truncation_psi))
        if self.c_dim:
            if c is None or c.ndim != 2 or list(c.shape) != [z.shape[0], self.c_dim]:
                got = "None" if c is None else _shape(c)
                raise ConfigError(
                    f"this generator is conditional: c must have shape [{z.shape[0]}, {self.c_dim}], got {got}"
                )
            w = torch.cat([w, c.to(w)], dim=1)
        elif c is not None and c.numel() != 0:
            raise ConfigError(f"this generator is unconditional (c_dim=0) but got labels of shape {_shape(c)}")
        return w.unsqueeze(1)  # [N, 1, w_dim]


class WrappedSynthesis(nn.Module):
    """``ws [N, 1, w_dim]`` -> images ``[N, C, R, R]`` in [-1, 1] by calling the user's module on ``ws[:, 0]``."""

    def __init__(
        self,
        module: nn.Module,
        latent_dim: int,
        c_dim: int,
        label_arg: str | None,
        output_range: tuple[float, float],
    ) -> None:
        super().__init__()
        self.module = module
        self.latent_dim = latent_dim
        self.c_dim = c_dim
        self.w_dim = latent_dim + c_dim
        self.num_ws = 1
        self.label_arg = label_arg
        self.output_range = output_range
        self.img_resolution = 0  # set by wrap() once known
        self.img_channels = 0

    def raw(self, ws: Tensor) -> Tensor:
        """The module's own output for ``ws [N, 1, w_dim]``, before range conversion."""
        if ws.ndim != 3 or ws.shape[1] != 1 or ws.shape[2] != self.w_dim:
            raise ConfigError(f"ws must have shape [N, 1, {self.w_dim}], got {_shape(ws)}")
        w = ws[:, 0].to(torch.float32)
        latent, label = w[:, : self.latent_dim], w[:, self.latent_dim :]
        if not self.c_dim:
            return self.module(latent)
        if self.label_arg is None:
            return self.module(latent, label)
        return self.module(latent, **{self.label_arg: label})

    def forward(
        self,
        ws: Tensor,
        noise_mode: str = "const",
        force_fp32: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Images ``[N, img_channels, img_resolution, img_resolution]`` float32 in [-1, 1].

        ``noise_mode`` (checked against ``'const'|'random'|'none'``), ``force_fp32`` and ``generator`` are accepted
        for compatibility with StyleGAN callers and ignored: the wrapped module is deterministic.
        """
        if noise_mode not in NOISE_MODES:
            raise ConfigError(f"noise_mode must be one of {list(NOISE_MODES)}, got {noise_mode!r}")
        img = self.raw(ws)
        if not isinstance(img, Tensor):
            raise ConfigError(f"the wrapped module returned a {type(img).__name__}, expected an image tensor")
        img = img.to(torch.float32)
        if self.output_range == (0.0, 1.0):
            img = img * 2 - 1
        return img


class WrappedGenerator(nn.Module):
    """A user module behind the generator contract; build it with :func:`wrap`.

    Attributes: ``z_dim``, ``c_dim``, ``w_dim``, ``num_ws`` (1), ``img_resolution``, ``img_channels``, ``latent``
    (``'z'`` or ``'w'``), ``mapping`` (:class:`WrappedMapping`), ``synthesis`` (:class:`WrappedSynthesis`; the user's
    module is ``G.synthesis.module``).
    """

    def __init__(self, mapping: WrappedMapping, synthesis: WrappedSynthesis, latent: str) -> None:
        super().__init__()
        self.mapping = mapping
        self.synthesis = synthesis
        self.latent = latent
        self.z_dim = mapping.z_dim
        self.c_dim = mapping.c_dim
        self.w_dim = mapping.w_dim
        self.num_ws = 1
        self.img_resolution = synthesis.img_resolution
        self.img_channels = synthesis.img_channels

    def forward(
        self,
        z: Tensor,
        c: Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        force_fp32: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``z [N, z_dim]``, ``c [N, c_dim]`` or ``None`` -> images ``[N, img_channels, R, R]`` in [-1, 1]."""
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff)
        return self.synthesis(ws, noise_mode, force_fp32, generator)

    def extra_repr(self) -> str:
        return (
            f"latent={self.latent!r}, z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, "
            f"img_resolution={self.img_resolution}, img_channels={self.img_channels}"
        )


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"wrap: {name} must be a positive int, got {value!r}")
    return value


def _estimate_w_avg(mapping: nn.Module, z_dim: int, samples: int, device: torch.device) -> Tensor:
    """Mean of ``mapping(z)`` over ``samples`` seeded ``z ~ N(0, I)``, in batches of 1024, in eval mode."""
    was_training = [m.training for m in mapping.modules()]
    mapping.eval()
    gen = torch.Generator().manual_seed(_PROBE_SEED)
    total: Tensor | None = None
    try:
        with torch.no_grad():
            for start in range(0, samples, 1024):
                z = torch.randn(min(1024, samples - start), z_dim, generator=gen).to(device)
                w = mapping(z)
                if not isinstance(w, Tensor) or w.ndim != 2:
                    got = _shape(w) if isinstance(w, Tensor) else type(w).__name__
                    raise ConfigError(f"wrap: mapping(z) returned {got}, expected [N, w_dim]")
                part = w.to(torch.float32).sum(dim=0)
                total = part if total is None else total + part
    finally:
        for m, flag in zip(mapping.modules(), was_training, strict=True):
            m.training = flag
    return (total / samples).cpu()


def _check_options(
    module: nn.Module,
    latent: str,
    c_dim: int,
    label_arg: str | None,
    output_range: tuple[float, float],
    mapping: nn.Module | None,
) -> tuple[float, float]:
    """Check :func:`wrap`'s options other than the sizes; returns ``output_range`` as a pair of floats."""
    if not isinstance(module, nn.Module):
        raise ConfigError(f"wrap needs a torch.nn.Module, got {type(module).__name__}")
    if latent not in ("z", "w"):
        raise ConfigError(f"wrap: latent must be 'z' or 'w', got {latent!r}")
    if mapping is not None and latent != "w":
        raise ConfigError("wrap: mapping is only used with latent='w' (with latent='z' the module takes z itself)")
    if mapping is not None and not isinstance(mapping, nn.Module):
        raise ConfigError(f"wrap: mapping must be a torch.nn.Module, got {type(mapping).__name__}")
    if isinstance(c_dim, bool) or not isinstance(c_dim, int) or c_dim < 0:
        raise ConfigError(f"wrap: c_dim must be an int >= 0, got {c_dim!r}")
    if label_arg is not None and (not isinstance(label_arg, str) or not label_arg.isidentifier()):
        raise ConfigError(f"wrap: label_arg must be None or a keyword argument name, got {label_arg!r}")
    if label_arg is not None and c_dim == 0:
        raise ConfigError(f"wrap: label_arg={label_arg!r} given but c_dim=0; set c_dim to the number of classes")
    try:
        rng = (float(output_range[0]), float(output_range[1]))
    except (TypeError, ValueError, IndexError):
        rng = None
    if rng not in OUTPUT_RANGES:
        raise ConfigError(f"wrap: output_range must be (-1, 1) or (0, 1), got {output_range!r}")
    return rng


def _latent_dims(latent: str, z_dim: int | None, w_dim: int | None, mapping: nn.Module | None) -> tuple[int, int]:
    """``(z_dim, latent_dim)`` of :func:`wrap`, checked: the size of ``z`` and of the module's latent."""
    if latent == "z":
        if z_dim is None:
            raise ConfigError("wrap: latent='z' needs z_dim, the size of the latent the module takes")
        z_dim = _positive("z_dim", z_dim)
        if w_dim is not None and w_dim != z_dim:
            raise ConfigError(
                f"wrap: with latent='z' the latent is z itself, so w_dim must equal z_dim={z_dim}, got {w_dim}"
            )
        latent_dim = z_dim
    else:
        if w_dim is None:
            raise ConfigError("wrap: latent='w' needs w_dim, the size of the latent the module takes")
        latent_dim = _positive("w_dim", w_dim)
        if mapping is None:
            if z_dim is not None and z_dim != latent_dim:
                raise ConfigError(
                    f"wrap: latent='w' without a mapping uses z as w, so z_dim must equal w_dim={latent_dim}, "
                    f"got {z_dim}"
                )
            z_dim = latent_dim
        elif z_dim is None:
            raise ConfigError("wrap: latent='w' with a mapping needs z_dim, the size of the mapping's input")
        z_dim = _positive("z_dim", z_dim)
    return z_dim, latent_dim


def wrap(
    module: nn.Module,
    *,
    latent: Literal["z", "w"] = "z",
    z_dim: int | None = None,
    w_dim: int | None = None,
    c_dim: int = 0,
    img_resolution: int | None = None,
    img_channels: int | None = None,
    output_range: tuple[float, float] = (-1, 1),
    label_arg: str | None = None,
    mapping: nn.Module | None = None,
    w_avg: Tensor | None = None,
    w_avg_samples: int = 10_000,
) -> WrappedGenerator:
    """Adapt ``module`` (latent [+ label] -> images) to the generator contract with ``num_ws = 1``.

    Args:
        module: called as ``module(latent [N, latent_dim])``, or with the label as described by ``label_arg``;
            returns images ``[N, C, R, R]`` in ``output_range``.
        latent: ``'z'``: ``module`` takes Gaussian ``z`` (``z_dim`` required). ``'w'``: ``module`` is a synthesis
            network taking ``w [N, w_dim]`` (``w_dim`` required), fed by ``mapping`` or, without it, by ``z``.
        z_dim: size of ``z``; with ``latent='w'`` and no ``mapping`` it defaults to ``w_dim`` and must equal it.
        w_dim: size of the module's latent; with ``latent='z'`` it defaults to ``z_dim`` and must equal it. The
            wrapped generator's ``G.w_dim`` is this plus ``c_dim`` (the label rides in ``w``).
        c_dim: label size; 0 = unconditional. Labels are one-hot float ``[N, c_dim]``.
        img_resolution: output height = width; ``None`` = read from one forward of two samples.
        img_channels: output channels; ``None`` = read from the same forward.
        output_range: ``(-1, 1)`` (used as is) or ``(0, 1)`` (mapped with ``2 x - 1``).
        label_arg: how the label is passed when ``c_dim > 0``: ``None`` = second positional argument
            ``module(latent, c)``, a name = keyword argument ``module(latent, name=c)`` (e.g. ``'c'``, ``'y'``).
        mapping: only with ``latent='w'``: a module ``z [N, z_dim] -> w [N, w_dim]``.
        w_avg: the truncation centre of the module's latent, ``[w_dim]``; ``None`` = 0 without ``mapping``, the
            mean of ``mapping(z)`` over ``w_avg_samples`` draws (seed 0) with it.
        w_avg_samples: number of ``z`` draws for that estimate.

    Returns:
        A :class:`WrappedGenerator` holding ``module`` (and ``mapping``) as submodules, on their device, in
        their train/eval mode (use :func:`gan_zoo.base.prepare` or ``gan_zoo.load`` for inference).

    Raises:
        ConfigError: inconsistent options, or a module whose output does not fit the contract (named by
            :func:`gan_zoo.check_generator`, e.g. ``G.synthesis returned [2, 3, 32, 32], expected [2, 1, 64, 64]``).
    """
    rng = _check_options(module, latent, c_dim, label_arg, output_range, mapping)
    z_dim, latent_dim = _latent_dims(latent, z_dim, w_dim, mapping)

    device = device_of(module)
    if w_avg is None:
        if mapping is None:
            w_avg = torch.zeros(latent_dim)
        else:
            w_avg = _estimate_w_avg(mapping, z_dim, _positive("w_avg_samples", w_avg_samples), device_of(mapping))
    w_avg = torch.as_tensor(w_avg, dtype=torch.float32).detach().cpu()
    if list(w_avg.shape) != [latent_dim]:
        raise ConfigError(f"wrap: w_avg must have shape [{latent_dim}], got {_shape(w_avg)}")
    if c_dim:
        w_avg = torch.cat([w_avg, torch.full([c_dim], 1.0 / c_dim)])

    G = WrappedGenerator(
        WrappedMapping(z_dim, latent_dim, c_dim, w_avg, mapping).to(device),
        WrappedSynthesis(module, latent_dim, c_dim, label_arg, rng),
        latent,
    )
    if img_resolution is None or img_channels is None:
        probe_res, probe_ch = _probe_image_shape(G, device)
        img_resolution = probe_res if img_resolution is None else img_resolution
        img_channels = probe_ch if img_channels is None else img_channels
    G.img_resolution = G.synthesis.img_resolution = _positive("img_resolution", img_resolution)
    G.img_channels = G.synthesis.img_channels = _positive("img_channels", img_channels)
    check_generator(G, device=device)
    return G


def _probe_image_shape(G: WrappedGenerator, device: torch.device) -> tuple[int, int]:
    """``(resolution, channels)`` from one eval-mode forward of two samples."""
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(_PROBE_SEED)).to(device)
    c = torch.zeros(2, G.c_dim, device=device)
    if G.c_dim:
        c[:, 0] = 1
    flags = [m.training for m in G.modules()]
    G.eval()
    try:
        with torch.no_grad():
            img = G.synthesis.raw(G.mapping(z, c))
    except ConfigError:
        raise
    except Exception as e:  # the user's module failed on a well-formed input: say how it was called
        label_arg = G.synthesis.label_arg
        call = "module(latent)"
        if G.c_dim:
            call = "module(latent, c)" if label_arg is None else f"module(latent, {label_arg}=c)"
        raise ConfigError(
            f"wrap: the module failed when called as {call} with latent [2, {G.mapping.latent_dim}]: "
            f"{type(e).__name__}: {e}"
        ) from e
    finally:
        for m, flag in zip(G.modules(), flags, strict=True):
            m.training = flag
    if not isinstance(img, Tensor) or img.ndim != 4 or img.shape[0] != 2 or img.shape[2] != img.shape[3]:
        got = _shape(img) if isinstance(img, Tensor) else type(img).__name__
        raise ConfigError(f"wrap: the module returned {got} for 2 latents, expected square images [2, C, R, R]")
    return int(img.shape[2]), int(img.shape[1])
