"""Straight and spherical interpolation between latent points: the paths PLAN starts from and the Linear baseline.

Split from :mod:`latentwalk.paths` (which re-exports both) so that module stays one noun: the PLAN walk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from latentwalk.errors import ConfigError

__all__ = ["INITS", "linear_paths", "slerp_paths", "start_paths"]

INITS = ("linear", "slerp")  # PlanConfig.init: the path PLAN starts from


def check_endpoints(w_a: Tensor, w_b: Tensor, n_steps: int) -> None:
    if not isinstance(w_a, Tensor) or not isinstance(w_b, Tensor):
        raise ConfigError(f"endpoints must be tensors, got {type(w_a).__name__} and {type(w_b).__name__}")
    if w_a.shape != w_b.shape or w_a.dim() not in (2, 3) or w_a.shape[0] < 1:
        raise ConfigError(
            "endpoints must have the same shape [B, w_dim] (W) or [B, num_ws, w_dim] (W+), "
            f"got {list(w_a.shape)} and {list(w_b.shape)}"
        )
    if w_a.device != w_b.device:
        raise ConfigError(f"endpoints must be on one device, got {w_a.device} and {w_b.device}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 2:
        raise ConfigError(f"n_steps must be an integer >= 2 (both endpoints included), got {n_steps!r}")


def _steps(n_steps: int, like: Tensor) -> Tensor:
    """``linspace(0, 1, n_steps)`` shaped ``[1, n_steps, 1, ...]`` to broadcast against ``like.unsqueeze(1)``."""
    t = torch.linspace(0, 1, n_steps, device=like.device, dtype=like.dtype)
    return t.reshape(1, n_steps, *([1] * (like.dim() - 1)))


def linear_paths(w_a: Tensor, w_b: Tensor, n_steps: int) -> Tensor:
    """Evenly spaced points on the segments from ``w_a`` to ``w_b``: ``w_a + t (w_b - w_a)``, ``t`` in [0, 1].

    Args:
        w_a: start points, float ``[B, w_dim]`` (W) or ``[B, num_ws, w_dim]`` (W+).
        w_b: end points, same shape and device.
        n_steps: points per path including both endpoints, >= 2.

    Returns:
        ``[B, n_steps, ...]`` in the endpoints' dtype; ``[:, 0]`` equals ``w_a`` and ``[:, -1]`` equals ``w_b``
        exactly; interior points are computed as the reference does (``w_a + t * (w_b - w_a)``).

    Raises:
        ConfigError: mismatched shapes or devices, or ``n_steps < 2``.
    """
    check_endpoints(w_a, w_b, n_steps)
    a, b = w_a.unsqueeze(1), w_b.unsqueeze(1)  # [B, 1, ...]
    out = a + _steps(n_steps, w_a) * (b - a)  # [B, n_steps, ...]
    out[:, 0], out[:, -1] = w_a, w_b
    return out


def slerp_paths(w_a: Tensor, w_b: Tensor, n_steps: int) -> Tensor:
    """Spherical interpolation along the last dimension (per layer for W+), with evenly spaced angles.

    ``p(t) = sin((1 - t) omega) / sin(omega) w_a + sin(t omega) / sin(omega) w_b``, ``omega`` the angle between
    ``w_a`` and ``w_b``; norms are interpolated along with directions. Where the two vectors are (anti)parallel
    (``sin(omega) < 1e-6``) or one is zero, the point is linear instead.

    Args:
        w_a: start points, float ``[B, w_dim]`` (W) or ``[B, num_ws, w_dim]`` (W+).
        w_b: end points, same shape and device.
        n_steps: points per path including both endpoints, >= 2.

    Returns:
        ``[B, n_steps, ...]``; the endpoints equal ``w_a`` and ``w_b`` exactly.

    Raises:
        ConfigError: mismatched shapes or devices, or ``n_steps < 2``.
    """
    check_endpoints(w_a, w_b, n_steps)
    a, b = w_a.unsqueeze(1), w_b.unsqueeze(1)  # [B, 1, ..., w_dim]
    t = _steps(n_steps, w_a)  # [1, n_steps, 1, ...]
    cos = F.cosine_similarity(a, b, dim=-1, eps=1e-12).clamp(-1, 1).unsqueeze(-1)  # [B, 1, ..., 1]
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    degenerate = (sin < 1e-6) | (a.norm(dim=-1, keepdim=True) == 0) | (b.norm(dim=-1, keepdim=True) == 0)
    safe = torch.where(degenerate, torch.ones_like(sin), sin)
    ca = torch.where(degenerate, 1 - t, torch.sin((1 - t) * omega) / safe)  # [B, n_steps, ..., 1]
    cb = torch.where(degenerate, t, torch.sin(t * omega) / safe)
    out = ca * a + cb * b  # [B, n_steps, ..., w_dim]
    out[:, 0], out[:, -1] = w_a, w_b
    return out


def start_paths(w_a: Tensor, w_b: Tensor, n_steps: int, init: str = "linear") -> Tensor:
    """The path PLAN's optimisation starts from (``init``, one of :data:`INITS`), ``[B, n_steps, ...]``."""
    if init not in INITS:
        raise ConfigError(f'unknown init "{init}"; expected one of {", ".join(INITS)}')
    return (slerp_paths if init == "slerp" else linear_paths)(w_a, w_b, n_steps)
