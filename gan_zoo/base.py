"""The generator contract: NVIDIA's StyleGAN2-ADA / StyleGAN3 attribute names, call signatures and shapes.

Everything downstream (inversion, k-same, PLAN paths, the generation pipeline) talks to a generator only through
this contract, so NVIDIA's own networks, :class:`gan_zoo.stylegan2.Generator` and anything adapted by
:func:`gan_zoo.wrap` are interchangeable:

- attributes ``z_dim``, ``c_dim`` (0 = unconditional), ``w_dim``, ``img_resolution``, ``img_channels``, ``num_ws``;
- ``G.mapping(z [N, z_dim], c [N, c_dim], truncation_psi=1, truncation_cutoff=None) -> ws [N, num_ws, w_dim]``,
  with ``G.mapping.num_ws == G.num_ws`` and ``G.mapping.w_avg [w_dim]`` (truncation is ``w_avg + psi * (w - w_avg)``);
- ``G.synthesis(ws, noise_mode='const'|'random'|'none') -> img [N, img_channels, img_resolution, img_resolution]``,
  float32, in [-1, 1] (networks are not clamped and overshoot a little);
- ``G(z, c, truncation_psi=1, noise_mode='const') == G.synthesis(G.mapping(z, c, truncation_psi), noise_mode)``.

Unconditional generators take ``c`` as ``None`` or an empty ``[N, 0]`` tensor; conditional ones a one-hot float
``[N, c_dim]``. Importing this module does not import torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from gan_zoo.devices import device_of
from gan_zoo.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

__all__ = [
    "CONTRACT_ATTRIBUTES",
    "MAX_ABS_OUTPUT",
    "NOISE_MODES",
    "MappingLike",
    "SynthesisLike",
    "GeneratorLike",
    "is_generator_like",
    "check_generator",
    "prepare",
    "describe",
]

CONTRACT_ATTRIBUTES = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "num_ws")
NOISE_MODES = ("const", "random", "none")
MAX_ABS_OUTPUT = 32.0  # larger image values mean a wrong scale ([0, 255]?), not an overshooting network
_CHECK_BATCH = 2


@runtime_checkable
class MappingLike(Protocol):
    """``G.mapping``: ``z`` (+ label) to per-layer latents, with the truncation centre ``w_avg``."""

    num_ws: int
    w_avg: Tensor  # [w_dim], float32; the truncation centre

    def __call__(
        self, z: Tensor, c: Tensor | None, truncation_psi: float = 1, truncation_cutoff: int | None = None
    ) -> Tensor:
        """``z [N, z_dim]``, ``c [N, c_dim]`` (or ``None``/``[N, 0]``) -> ``ws [N, num_ws, w_dim]`` float32."""
        ...


@runtime_checkable
class SynthesisLike(Protocol):
    """``G.synthesis``: per-layer latents to images."""

    def __call__(self, ws: Tensor, noise_mode: str = "const") -> Tensor:
        """``ws [N, num_ws, w_dim]`` -> images ``[N, img_channels, img_resolution, img_resolution]`` in [-1, 1]."""
        ...


@runtime_checkable
class GeneratorLike(Protocol):
    """What every generator in latentwalk looks like (NVIDIA's names; see the module docstring).

    Attributes:
        z_dim: size of the input latent ``z`` (sampled from N(0, I)).
        c_dim: size of the one-hot label; 0 = unconditional.
        w_dim: size of one intermediate latent ``w``.
        num_ws: number of ``w`` vectors the synthesis network takes (1 for wrapped modules).
        img_resolution: output height = width in pixels.
        img_channels: 1 (grayscale, X-rays) or 3 (RGB, fundus).
        mapping: see :class:`MappingLike`.
        synthesis: see :class:`SynthesisLike`.

    ``isinstance(G, GeneratorLike)`` checks only that the names exist; :func:`check_generator` checks the shapes.
    """

    z_dim: int
    c_dim: int
    w_dim: int
    num_ws: int
    img_resolution: int
    img_channels: int
    mapping: MappingLike
    synthesis: SynthesisLike

    def __call__(self, z: Tensor, c: Tensor | None, truncation_psi: float = 1, noise_mode: str = "const") -> Tensor:
        """``synthesis(mapping(z, c, truncation_psi), noise_mode)``: ``[N, img_channels, R, R]`` in [-1, 1]."""
        ...


def is_generator_like(obj: Any) -> bool:
    """Whether ``obj`` has every contract name (attributes, ``mapping.num_ws``, ``mapping.w_avg``, ``synthesis``).

    A cheap structural test with no forward pass; :func:`check_generator` is the real check.
    """
    if not all(hasattr(obj, name) for name in (*CONTRACT_ATTRIBUTES, "mapping", "synthesis")) or not callable(obj):
        return False
    mapping = obj.mapping
    return hasattr(mapping, "num_ws") and hasattr(mapping, "w_avg") and callable(mapping) and callable(obj.synthesis)


def _shape(x: Tensor) -> str:
    return "[" + ", ".join(str(d) for d in x.shape) + "]"


def _int_attribute(G: Any, name: str, minimum: int) -> int:
    if not hasattr(G, name):
        raise ConfigError(
            f"the generator ({type(G).__name__}) has no attribute {name!r}; the contract needs "
            f"{', '.join(CONTRACT_ATTRIBUTES)} (use gan_zoo.wrap for a plain module)"
        )
    value = getattr(G, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"G.{name} must be an int >= {minimum}, got {value!r}")
    return value


@contextlib.contextmanager
def _eval_mode(module: Any) -> Iterator[None]:
    """Put every submodule in eval mode (no BatchNorm statistics move, no dropout) and restore the flags after."""
    modules = list(module.modules()) if hasattr(module, "modules") else []
    flags = [m.training for m in modules]
    try:
        for m in modules:
            m.training = False
        yield
    finally:
        for m, flag in zip(modules, flags, strict=True):
            m.training = flag


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # any failure of the user's network is a contract violation we name
        raise ConfigError(f"{what} failed: {type(e).__name__}: {e}") from e


def _check_tensor(what: str, x: Any, expected: list[int], note: str) -> Tensor:
    import torch

    if not isinstance(x, torch.Tensor):
        raise ConfigError(f"{what} returned a {type(x).__name__}, expected a tensor {expected} ({note})")
    if list(x.shape) != expected:
        raise ConfigError(f"{what} returned {_shape(x)}, expected {expected} ({note})")
    if not x.is_floating_point():
        raise ConfigError(f"{what} returned dtype {x.dtype}, expected a floating-point tensor")
    if not torch.isfinite(x).all():
        raise ConfigError(f"{what} returned NaN or infinite values")
    return x


def check_generator(G: Any, *, device: str | torch.device | None = None) -> None:
    """Check that ``G`` follows the contract, with one tiny forward pass (N=2) under ``torch.no_grad``.

    Checks the attributes, ``G.mapping.num_ws == G.num_ws``, ``G.mapping.w_avg`` of shape ``[w_dim]``, the shapes
    and finiteness of ``G.mapping`` and ``G.synthesis`` outputs, that image values are within
    ``±MAX_ABS_OUTPUT`` (a larger value means a [0, 255]-style scale), that ``truncation_psi=0`` maps different
    ``z`` with the same label to the same ``ws`` (to ``w_avg`` when unconditional), and that ``G(z, c)`` equals
    ``G.synthesis(G.mapping(z, c))``. The pass runs with every submodule in eval mode (the training flags are
    restored afterwards), so BatchNorm statistics and ``w_avg`` do not move.

    Args:
        G: the generator to check.
        device: where to create the test inputs; ``None`` = the device of ``G``'s first parameter or buffer (CPU
            when it has none). ``G`` itself is not moved.

    Raises:
        ConfigError: naming the missing attribute or the mismatching shape, e.g. ``G.synthesis returned
            [2, 3, 32, 32], expected [2, 1, 64, 64] (img_channels=1, img_resolution=64)``.
    """
    import torch

    dims = {name: _int_attribute(G, name, 0 if name in ("z_dim", "c_dim") else 1) for name in CONTRACT_ATTRIBUTES}
    z_dim, c_dim, w_dim, num_ws = dims["z_dim"], dims["c_dim"], dims["w_dim"], dims["num_ws"]
    res, channels = dims["img_resolution"], dims["img_channels"]
    for name in ("mapping", "synthesis"):
        if not callable(getattr(G, name, None)):
            raise ConfigError(f"the generator ({type(G).__name__}) has no callable attribute {name!r}")
    if not callable(G):
        raise ConfigError(f"the generator ({type(G).__name__}) is not callable as G(z, c)")
    mapping_num_ws = getattr(G.mapping, "num_ws", None)
    if mapping_num_ws != num_ws:
        raise ConfigError(f"G.mapping.num_ws is {mapping_num_ws!r}, expected G.num_ws = {num_ws}")
    w_avg = getattr(G.mapping, "w_avg", None)
    if not isinstance(w_avg, torch.Tensor):
        raise ConfigError(f"G.mapping has no tensor attribute 'w_avg' (got {type(w_avg).__name__}); expected [{w_dim}]")
    if list(w_avg.shape) != [w_dim]:
        raise ConfigError(f"G.mapping.w_avg has shape {_shape(w_avg)}, expected [{w_dim}] (w_dim={w_dim})")

    device = device_of(G) if device is None else torch.device(device)
    n = _CHECK_BATCH
    z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(0)).to(device)
    c = torch.zeros(n, c_dim, device=device)
    if c_dim:
        c[:, 0] = 1  # the same label for both rows, so that truncation to psi=0 must give equal rows
    ws_shape = [n, num_ws, w_dim]
    img_shape = [n, channels, res, res]
    img_note = f"img_channels={channels}, img_resolution={res}"
    with torch.no_grad(), _eval_mode(G):
        ws = _call("G.mapping(z, c)", G.mapping, z, c, truncation_psi=1, truncation_cutoff=None)
        ws = _check_tensor("G.mapping", ws, ws_shape, f"num_ws={num_ws}, w_dim={w_dim}")
        img = _call("G.synthesis(ws)", G.synthesis, ws, noise_mode="const")
        img = _check_tensor("G.synthesis", img, img_shape, img_note)
        lo, hi = img.min().item(), img.max().item()
        if max(-lo, hi) > MAX_ABS_OUTPUT:
            raise ConfigError(
                f"G.synthesis returned values in [{lo:.3g}, {hi:.3g}], expected images in [-1, 1]; convert the "
                f"output (gan_zoo.wrap(..., output_range=(0, 1)) handles [0, 1] outputs)"
            )
        ws0 = _call("G.mapping(z, c, truncation_psi=0)", G.mapping, z, c, truncation_psi=0, truncation_cutoff=None)
        ws0 = _check_tensor("G.mapping(truncation_psi=0)", ws0, ws_shape, f"num_ws={num_ws}, w_dim={w_dim}")
        if not torch.allclose(ws0[0], ws0[1], atol=1e-5):
            raise ConfigError("G.mapping(z, c, truncation_psi=0) differs between samples; it must return w_avg")
        if c_dim == 0 and not torch.allclose(ws0[0], w_avg.to(ws0).expand(num_ws, w_dim), atol=1e-5):
            raise ConfigError("G.mapping(z, c, truncation_psi=0) does not return G.mapping.w_avg")
        out = _call("G(z, c)", G, z, c, truncation_psi=1, noise_mode="const")
        out = _check_tensor("G(z, c)", out, img_shape, img_note)
        if not torch.allclose(out, img, atol=1e-4, rtol=1e-4):
            raise ConfigError(
                "G(z, c) differs from G.synthesis(G.mapping(z, c)) with noise_mode='const'; G must compose them"
            )


def prepare(G: nn.Module, device: str | torch.device | None = None) -> nn.Module:
    """Make ``G`` ready for inference: moved to ``device``, eval mode, ``requires_grad`` off (in place).

    Args:
        G: any generator module.
        device: ``None`` = CPU; ``"auto"`` = CUDA, then MPS, then CPU; or an explicit ``"cuda:1"``, ...

    Returns:
        ``G`` itself.

    Raises:
        ConfigError: an unknown device, or one this machine does not have.
    """
    from gan_zoo.devices import resolve_device

    target = resolve_device("cpu" if device is None else device)
    return G.to(target).eval().requires_grad_(False)


def describe(G: Any) -> dict[str, Any]:
    """The contract facts of ``G`` as a JSON-ready dict (for ``gan info`` and ``run.json``).

    Returns:
        ``{"class", "z_dim", "c_dim", "w_dim", "num_ws", "img_resolution", "img_channels", "num_parameters",
        "device"}``; ``num_parameters`` counts every parameter element, ``device`` is that of the first parameter
        or buffer.

    Raises:
        ConfigError: a contract attribute is missing (named).
    """
    info: dict[str, Any] = {"class": f"{type(G).__module__}.{type(G).__qualname__}"}
    for name in ("z_dim", "c_dim", "w_dim", "num_ws", "img_resolution", "img_channels"):
        info[name] = _int_attribute(G, name, 0)
    params = list(G.parameters()) if hasattr(G, "parameters") else []
    info["num_parameters"] = sum(p.numel() for p in params)
    info["device"] = str(device_of(G))
    return info
