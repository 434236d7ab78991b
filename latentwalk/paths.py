"""Latent paths between two points of a generator's W (or W+) space: linear, spherical, and PLAN.

PLAN: Pennisi et al., "A Privacy-Preserving Walk in the Latent Space of Generative Models for Medical
Applications", MICCAI 2023 (arXiv 2307.02984). The objective of
:func:`plan_paths` was matched numerically against ``get_privacy_path`` in ``privacy_path.py`` of
github.com/perceivelab/PLAN (MIT, commit 2d471b079e2ab4406cca19e53221c19c163ebc9d); that file was read, not
copied. For one path, and with the default :class:`PlanConfig`, the optimisation is the reference's:

- the path has ``n_steps`` points including both endpoints and starts as the linear interpolation
  ``w_a + t * (w_b - w_a)``, ``t = linspace(0, 1, n_steps)``; the ``n_steps - 2`` interior points are the
  parameters, the endpoints stay fixed; a W point is broadcast to all ``num_ws`` layers;
- at each Adam step (lr 0.1, betas 0.9/0.999) every interior point is rendered with ``noise_mode='const'`` and
  clamped to [-1, 1]; one-channel images are repeated to three channels before the classifiers (``repeat_gray``);
- privacy term: ``KL(uniform || softmax(id_net(x)))``, computed like ``F.kl_div(log_softmax, uniform,
  reduction='batchmean')`` on consecutive chunks of 4 interior images and summed over the chunks, so an image's
  KL is divided by the size of its chunk (4, or the remainder for the last one);
- class term: cross-entropy of ``class_net(x)`` to the path's label, averaged per chunk of 4 and summed likewise;
- equidistance term: ``sum_i ||p_i - p_{i+1} + 1e-6||^2`` over the full path including the endpoints (the 1e-6 is
  the offset ``F.pairwise_distance`` adds, kept for exactness); a W+ point counts as one ``num_ws * w_dim`` vector;
- loss = 0.1 privacy + 1 equidistance + 1 class.

Differences from the reference, all deliberate:

- ``impl="batched"`` optimises many paths at once. Its loss is the *sum* of the independent per-path losses, and
  Adam is elementwise, so every path gets the gradient and the updates it would get alone (tested against
  ``impl="reference"``, our one-path-at-a-time restatement). Images of all paths are rendered and classified
  ``chunk`` at a time, each chunk's gradient taken at once (memory is bounded by ``chunk``, not by paths or steps);
  the per-chunk-of-4 averaging of the reference becomes a fixed weight per interior image.
- Gradients are taken with respect to the path only (``torch.autograd.grad``): nothing is accumulated in the
  ``.grad`` of the generator's or classifiers' weights (the reference fills them, unused), and their weight
  gradients are not computed. Network modes are left as they are.
- ``impl="batched"`` renders with ``fused_modconv=False`` (our generator only, ``PlanConfig.fused_modconv``): the
  same function as the fused default of an eval-mode generator up to rounding, and faster for many images.
- W+ endpoints, per-term weights, early stopping (identity probability reached, or a loss plateau; stopped paths leave
  the batch), a slerp start, warm-up and cosine schedules, bfloat16 autocast (CUDA, or a CPU with native bfloat16),
  channels-last on CUDA, diagnostics and a loss history per path; no global seeding. The defaults are the
  reference's; ``generate`` has its own (chosen by ``benchmarks/bench_plan_convergence.py``).
- Other privacy terms (``PlanConfig.privacy_loss``, issue 14; formulas and sources in :mod:`latentwalk.privacy_losses`)
  compare each interior image with private targets (``plan_paths(targets=)``; by default the identity guide's softmax
  at the two rendered endpoints). ``"verification"`` is per image, weighted like the KL. ``"mi"`` and ``"hsic"`` are
  batch-level: over the interior images of all paths optimised together (``impl="reference"``: of the one path),
  times the number of those paths (a per-path scale in the summed loss); ``loss_history["privacy"]`` holds the batch
  value for each path (the term divided equally). So with ``mi``/``hsic`` a path depends on which paths share its
  batch (``generate``'s work items are fixed by the seed: runs stay reproducible). Their exact gradient takes two
  passes, memory still bounded by ``chunk``: pass 1 renders all interior images without gradient and collects the
  logits, autograd gives ``g`` = d(term)/d(logits), pass 2 re-renders chunk by chunk and back-propagates
  ``(g * logits).sum()``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentwalk.config import StageConfig
from latentwalk.errors import ConfigError
from latentwalk.interpolation import INITS, check_endpoints, linear_paths, slerp_paths, start_paths
from latentwalk.privacy_losses import (
    BATCH_LOSSES,
    HSIC_MIN_IMAGES,
    PRIVACY_LOSSES,
    batch_privacy,
    batch_privacy_grad,
    check_targets,
    image_privacy,
    interior_targets,
)

__all__ = [
    "IMPLS",
    "PRIVACY_LOSSES",
    "LOSS_TERMS",
    "DIAGNOSTICS",
    "PlanConfig",
    "WalkResult",
    "linear_paths",
    "slerp_paths",
    "start_paths",
    "learning_rate",
    "plan_paths",
    "path_objective",
    "render_paths",
    "classifier_input",
    "labels_tensor",
    "render_ws",
]

logger = logging.getLogger(__name__)

IMPLS = ("batched", "reference")
SCHEDULES = ("constant", "cosine")  # PlanConfig.schedule
LOSS_TERMS = ("privacy", "equidistance", "class", "total")  # keys of WalkResult.loss_history
DIAGNOSTICS = ("id_max_prob", "id_entropy", "class_prob", "step_length")  # keys of WalkResult.diagnostics
REFERENCE_CHUNK = 4  # images per classifier call in the reference; its KL and CE are averaged within each call
PAIRWISE_EPS = 1e-6  # the offset F.pairwise_distance adds to differences; part of the reference's equidistance


# ---------------------------------------------------------------------------------------------------------------
# Configuration and result.


@dataclass(frozen=True)
class PlanConfig(StageConfig):
    """Options of a PLAN optimisation; the single source of defaults for the API and the CLI.

    The defaults are the reference's (``get_privacy_path`` of perceivelab/PLAN) where it has the option.
    """

    STAGE: ClassVar[str] = "PLAN path"

    n_steps: int = 50  # points per path including both endpoints (>= 3: at least one interior point)
    optim_steps: int = 500  # Adam steps; 0 = return the linear path
    lr: float = 0.1  # Adam learning rate (betas 0.9, 0.999)
    weights: tuple[float, float, float] = (0.1, 1.0, 1.0)  # (privacy, equidistance, class) loss weights, >= 0
    privacy_loss: str = "kl_uniform"  # PRIVACY_LOSSES: kl_uniform (the reference's), mi, verification, hsic (needs
    # n_steps >= 6); see latentwalk.privacy_losses
    verification_margin: float | None = None  # verification: log-odds margin; None = log(1/(K-1)), K identities
    chunk: int = 64  # images per synthesis + classifier pass (impl="batched"; bounds memory, not the result)
    repeat_gray: bool | None = None  # 1-channel images to 3 channels for the classifiers; None = when the id net
    # declares in_channels == 3 or declares nothing (the reference always repeats; our 1-channel guides need none)
    init: str = "linear"  # INITS: the path the optimisation starts from: linear (the reference's) or slerp
    schedule: str = "constant"  # SCHEDULES: Adam's learning rate over the steps: constant (the reference's) or
    # cosine (half a cosine from lr down to 0 at optim_steps)
    warmup_steps: int = 0  # learning rate rises linearly over these first steps (0 = none), then the schedule
    amp: bool = False  # impl="batched" on CUDA or CPU: autocast G and classifiers in bfloat16 (the latents, Adam's
    # state and the loss stay float32); pays on GPUs and on CPUs with native bfloat16 (AVX512-BF16, AMX)
    channels_last: bool = False  # impl="batched" on CUDA only: classifiers see channels-last images
    fused_modconv: bool | None = False  # impl="batched", our generator only; None = the generator's own default
    early_stop_id_prob: float | None = None  # stop a path once every interior point's top identity prob is below
    early_stop_plateau: float | None = None  # stop a path once its total loss fell by less than this fraction over
    # the last log_every steps (checked at each host sync); None = off
    log_every: int = 50  # steps between host syncs: progress figures, log lines, early-stop bookkeeping

    def __post_init__(self) -> None:
        for name in ("n_steps", "optim_steps", "chunk", "log_every", "warmup_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
        if self.n_steps < 3:
            raise ConfigError(f"n_steps must be >= 3 (two endpoints and an interior point), got {self.n_steps}")
        if self.optim_steps < 0:
            raise ConfigError(f"optim_steps must be >= 0, got {self.optim_steps}")
        for name in ("chunk", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        for name, choices in (("init", INITS), ("schedule", SCHEDULES)):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in choices:
                raise ConfigError(f'unknown {name} "{value}"; expected one of {", ".join(choices)}')
        tol = self.early_stop_plateau
        if tol is not None and not (_is_number(tol) and 0 <= tol < 1):
            raise ConfigError(f"early_stop_plateau must be in [0, 1) or None (off), got {tol!r}")
        if not _is_number(self.lr) or not self.lr > 0:
            raise ConfigError(f"lr must be a finite number > 0, got {self.lr!r}")
        weights = tuple(self.weights) if isinstance(self.weights, (tuple, list)) else None
        if weights is None or len(weights) != 3 or not all(_is_number(w) and w >= 0 for w in weights):
            raise ConfigError(
                f"weights must be three finite numbers >= 0 for (privacy, equidistance, class), got {self.weights!r}"
            )
        object.__setattr__(self, "weights", tuple(float(w) for w in weights))  # from_dict may bring a JSON list
        for name in ("amp", "channels_last"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.repeat_gray is not None and not isinstance(self.repeat_gray, bool):
            raise ConfigError(f"repeat_gray must be true, false or None (auto), got {self.repeat_gray!r}")
        if self.fused_modconv is not None and not isinstance(self.fused_modconv, bool):
            raise ConfigError(f"fused_modconv must be true, false or None, got {self.fused_modconv!r}")
        p = self.early_stop_id_prob
        if p is not None and not (_is_number(p) and 0 < p <= 1):
            raise ConfigError(f"early_stop_id_prob must be in (0, 1] or None (off), got {p!r}")
        if not isinstance(self.privacy_loss, str) or self.privacy_loss not in PRIVACY_LOSSES:
            names = ", ".join(PRIVACY_LOSSES)
            raise ConfigError(f'unknown privacy_loss "{self.privacy_loss}"; expected one of {names}')
        if self.privacy_loss == "hsic" and self.n_steps - 2 < HSIC_MIN_IMAGES:
            raise ConfigError(f"privacy_loss hsic needs n_steps >= {HSIC_MIN_IMAGES + 2}, got {self.n_steps}")
        m = self.verification_margin
        if m is not None and not _is_number(m):
            raise ConfigError(f"verification_margin must be a finite number or None (chance log-odds), got {m!r}")
        if m is not None:
            object.__setattr__(self, "verification_margin", float(m))


def _is_number(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x)


@dataclass(frozen=True)
class WalkResult:
    """Paths and what the networks saw along them.

    Attributes:
        ws: float32 paths including both endpoints, on the endpoints' device: ``[B, n_steps, w_dim]`` for W
            endpoints, ``[B, n_steps, num_ws, w_dim]`` for W+; ``ws[:, 0]`` and ``ws[:, -1]`` are the endpoints.
        labels: ``[B]`` int64 class label of each path.
        diagnostics: per path and point of the final paths (endpoints included), CPU float32:
            ``id_max_prob [B, n_steps]`` (largest identity probability; 1/K = no identity evidence),
            ``id_entropy [B, n_steps]`` (nats; log K = uniform), ``class_prob [B, n_steps]`` (probability of the
            path's label), ``step_length [B, n_steps - 1]`` (L2 distance between consecutive points).
        loss_history: per optimisation step and path, CPU float32 ``[optim_steps, B]`` for each of ``privacy``,
            ``equidistance``, ``class`` (unweighted terms) and ``total`` (weighted sum), evaluated at the path
            before that step's update; NaN after a path stopped early.
        steps_run: ``[B]`` int64 Adam updates applied to each path (< ``optim_steps`` when it stopped early).
        impl: ``"batched"`` or ``"reference"``.
        config: the :class:`PlanConfig` used.
        notes: warnings raised during the run (e.g. a classifier in training mode), also emitted as warnings.
    """

    ws: Tensor
    labels: Tensor
    diagnostics: dict[str, Tensor]
    loss_history: dict[str, Tensor]
    steps_run: Tensor
    impl: str
    config: PlanConfig
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: configuration, labels, steps, diagnostics, first and last losses (no latents)."""

        def first_last(h: Tensor) -> dict[str, list[float | None]]:
            vals = [[float(v) for v in h[:, i] if math.isfinite(float(v))] for i in range(h.shape[1])]
            return {"first": [v[0] if v else None for v in vals], "last": [v[-1] if v else None for v in vals]}

        return {
            "impl": self.impl,
            "config": self.config.to_dict(),
            "ws_shape": list(self.ws.shape),
            "labels": self.labels.tolist(),
            "steps_run": self.steps_run.tolist(),
            "diagnostics": {k: v.tolist() for k, v in self.diagnostics.items()},
            "loss": {k: first_last(v) for k, v in self.loss_history.items()},
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------------------------------------------
# Shared pieces of both implementations.


def render_ws(G: nn.Module, ws: Tensor, fused_modconv: bool | None) -> Tensor:
    """:func:`gan_zoo.sampling.synthesize` clamped to [-1, 1] ``[N, C, R, R]``."""
    from gan_zoo.sampling import synthesize

    return synthesize(G, ws, fused_modconv=fused_modconv).clamp(-1, 1)


def resolve_repeat_gray(repeat_gray: bool | None, net: nn.Module | None) -> bool:
    """``repeat_gray``, or for ``None`` whether ``net`` wants 3 channels (``net.in_channels``; absent = yes)."""
    if repeat_gray is not None:
        return repeat_gray
    return getattr(net, "in_channels", 3) == 3


def classifier_input(img: Tensor, cfg: PlanConfig) -> Tensor:
    """Images as the guides take them (gray repeated to 3 channels when ``cfg.repeat_gray``)."""
    if cfg.repeat_gray and img.shape[1] == 1:
        img = img.repeat(1, 3, 1, 1)  # [N, 3, R, R]
    if cfg.channels_last:
        img = img.contiguous(memory_format=torch.channels_last)
    return img


def reference_chunk_weights(n_interior: int, device: torch.device | str = "cpu") -> Tensor:
    """Weight of each interior image in the reference's sums of per-chunk means: 1 / size of its chunk of 4.

    ``[n_interior]`` float32; e.g. 7 interior images -> ``[1/4, 1/4, 1/4, 1/4, 1/3, 1/3, 1/3]``.
    """
    sizes = torch.tensor([len(c) for c in torch.arange(n_interior).split(REFERENCE_CHUNK)], dtype=torch.float32)
    return (1.0 / sizes).repeat_interleave(sizes.long()).to(device)


def _equidistance(full: Tensor) -> Tensor:
    """``sum_i ||p_i - p_{i+1} + eps||^2`` per path: ``full [B, n_steps, ...]`` -> ``[B]``."""
    diff = (full[:, :-1] - full[:, 1:]).flatten(2) + PAIRWISE_EPS  # [B, n_steps - 1, D]
    return diff.square().sum(dim=(1, 2))


def learning_rate(cfg: PlanConfig, step: int) -> float:
    """Adam's learning rate at ``step`` (0-based): ``lr (step + 1) / warmup_steps`` during the warm-up, then ``lr``
    (``constant``) or ``lr (1 + cos(pi s)) / 2`` with ``s`` the fraction of the remaining steps done (``cosine``)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    done = (step - cfg.warmup_steps) / max(1, cfg.optim_steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * done))


def _plateaued(history: Tensor, step: int, cfg: PlanConfig) -> Tensor | None:
    """Paths whose total loss fell by less than ``early_stop_plateau`` of itself over the last ``log_every`` steps
    (``history [S, 4, B]``, checked at step ``step``); ``None`` when the criterion is off or not yet due."""
    tol = cfg.early_stop_plateau
    if tol is None or (step + 1) % cfg.log_every or step < cfg.log_every:
        return None
    now, before = history[step, 3], history[step - cfg.log_every, 3]
    return (before - now) < tol * before.abs()


def labels_tensor(labels: Tensor | Sequence[int], n: int, device: torch.device) -> Tensor:
    """``labels`` as an int64 tensor ``[n]`` on ``device``, checked."""
    if not isinstance(labels, Tensor):
        try:
            labels = torch.as_tensor(list(labels))
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"labels must be a sequence of {n} integers, got {labels!r}") from exc
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ConfigError(f"labels must have shape [{n}] (one per path), got {list(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ConfigError(f"labels must be integers, got dtype {labels.dtype}")
    if n and int(labels.min()) < 0:
        raise ConfigError(f"labels must be >= 0, got {int(labels.min())}")
    return labels.to(device=device, dtype=torch.long)


def _as_points(w_a: Tensor, w_b: Tensor, G: nn.Module) -> tuple[Tensor, Tensor]:
    """Validate endpoints against ``G``; return float32 ``[B, k, w_dim]`` with k = 1 (W) or ``num_ws`` (W+)."""
    check_endpoints(w_a, w_b, 2)
    w_dim, num_ws = int(G.w_dim), int(G.num_ws)
    if w_a.shape[-1] != w_dim or (w_a.dim() == 3 and w_a.shape[1] != num_ws):
        raise ConfigError(
            f"endpoints must be [B, {w_dim}] (W) or [B, {num_ws}, {w_dim}] (W+) for this generator, "
            f"got {list(w_a.shape)}"
        )
    if not w_a.dtype.is_floating_point or not w_b.dtype.is_floating_point:
        raise ConfigError(f"endpoints must be floating point, got {w_a.dtype} and {w_b.dtype}")
    if not (torch.isfinite(w_a).all() and torch.isfinite(w_b).all()):
        raise ConfigError("endpoints contain NaN or infinite values")
    param = next(iter(G.parameters()), None)
    if param is not None and param.device != w_a.device:
        raise ConfigError(f"endpoints are on {w_a.device} but the generator is on {param.device}; move one of them")
    a, b = w_a.detach().float(), w_b.detach().float()
    if a.dim() == 2:
        a, b = a.unsqueeze(1), b.unsqueeze(1)  # [B, 1, w_dim]
    return a, b


def _batch_dependent(net: nn.Module) -> bool:
    """Whether ``net`` has batch-norm or dropout layers in training mode (outputs depend on the batch or on luck)."""
    kinds = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)
    return any(isinstance(m, kinds) and m.training for m in net.modules())


def _check_networks(
    G: nn.Module, a: Tensor, labels: Tensor, id_net: nn.Module, class_net: nn.Module, cfg: PlanConfig
) -> tuple[list[str], int]:
    """One image through both classifiers before any optimisation; returns notes for the result and the number of
    identities of ``id_net``."""
    with torch.no_grad():
        img = classifier_input(render_ws(G, a[:1].expand(-1, int(G.num_ws), -1), cfg.fused_modconv), cfg)
        try:
            outs = {"id_net": id_net(img), "class_net": class_net(img)}
        except RuntimeError as exc:
            raise ConfigError(
                f"a classifier failed on generator images of shape {list(img.shape)} "
                f"(repeat_gray={cfg.repeat_gray}): {exc}"
            ) from exc
    for name, out in outs.items():
        if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != 1 or out.shape[1] < 1:
            got = list(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ConfigError(f"{name} must return logits [N, classes], got {got} for one image")
    n_classes, n_ids = outs["class_net"].shape[1], outs["id_net"].shape[1]
    if labels.numel() and int(labels.max()) >= n_classes:
        raise ConfigError(f"labels must be < {n_classes} (class_net's outputs), got {int(labels.max())}")
    p = cfg.early_stop_id_prob
    if p is not None and p <= 1.0 / n_ids:
        raise ConfigError(
            f"early_stop_id_prob {p} can never be reached: id_net has {n_ids} identities, so the largest "
            f"probability is at least {1.0 / n_ids:.4g}; pass a larger value or None"
        )
    if cfg.privacy_loss != "kl_uniform" and n_ids < 2:
        raise ConfigError(f"privacy_loss {cfg.privacy_loss} needs an id_net with >= 2 identities, got {n_ids}")
    notes = []
    for name, net in (("id_net", id_net), ("class_net", class_net)):
        if isinstance(net, nn.Module) and _batch_dependent(net):
            notes.append(
                f"{name} has batch-norm or dropout layers in training mode, so its outputs depend on which images "
                "are classified together (and on chance); call .eval() on it for reproducible paths"
            )
    return notes, n_ids


@torch.no_grad()
def _endpoint_targets(G: nn.Module, a: Tensor, b: Tensor, id_net: nn.Module, cfg: PlanConfig) -> Tensor:
    """The identity guide's softmax at each path's rendered endpoints ``[B, 2, K]`` float32, without gradient."""
    ends = torch.stack([a, b], dim=1).flatten(0, 1)  # [B * 2, k, w_dim], a_0, b_0, a_1, ...
    probs = [
        F.softmax(id_net(classifier_input(render_ws(G, part.expand(-1, int(G.num_ws), -1), None), cfg)).float(), 1)
        for part in ends.split(cfg.chunk)
    ]
    return torch.cat(probs).view(a.shape[0], 2, -1)  # [B, 2, K]


@torch.no_grad()
def _diagnostics(
    G: nn.Module, full: Tensor, labels: Tensor, id_net: nn.Module, class_net: nn.Module, cfg: PlanConfig
) -> dict[str, Tensor]:
    """Per-point identity and class evidence of the final paths ``full [B, n_steps, k, w_dim]``, float32 CPU."""
    B, n_steps = full.shape[:2]
    pts = full.flatten(0, 1)  # [B * n_steps, k, w_dim]
    img_labels = labels.repeat_interleave(n_steps)  # [B * n_steps]
    id_max, id_ent, cls_p = [], [], []
    for s in range(0, pts.shape[0], cfg.chunk):
        img = classifier_input(render_ws(G, pts[s : s + cfg.chunk].expand(-1, int(G.num_ws), -1), None), cfg)
        logp = F.log_softmax(id_net(img).float(), dim=1)  # [n, K_id]
        id_max.append(logp.max(dim=1).values.exp())
        id_ent.append(-(logp.exp() * logp).sum(dim=1))
        cls_logp = F.log_softmax(class_net(img).float(), dim=1)  # [n, K_class]
        cls_p.append(cls_logp.gather(1, img_labels[s : s + cfg.chunk, None]).squeeze(1).exp())
    shape = (B, n_steps)
    return {
        "id_max_prob": torch.cat(id_max).view(shape).cpu(),
        "id_entropy": torch.cat(id_ent).view(shape).cpu(),
        "class_prob": torch.cat(cls_p).view(shape).cpu(),
        "step_length": (full[:, 1:] - full[:, :-1]).flatten(2).norm(dim=2).float().cpu(),  # [B, n_steps - 1]
    }


def _progress(total: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False, disable=None if progress else True)


# ---------------------------------------------------------------------------------------------------------------
# impl="reference": one path at a time, the reference's loop.


def _reference_one(
    G: nn.Module,
    a: Tensor,
    b: Tensor,
    label: Tensor,
    targets: Tensor | None,
    id_net: nn.Module,
    class_net: nn.Module,
    cfg: PlanConfig,
    bar: Any,
) -> tuple[Tensor, Tensor, int]:
    """Optimise one path ``a, b [k, w_dim]``; returns ``(interior [n_steps-2, k, w_dim], history [S, 4], steps)``.

    ``targets``: the interior points' private targets ``[n_steps-2, K]`` (``None`` for ``kl_uniform``); a batch-level
    privacy term is taken over this path's interior images, with plain autograd (no two-pass trick)."""
    w_priv, w_eq, w_cls = cfg.weights
    loss_name = cfg.privacy_loss
    num_ws = int(G.num_ws)
    path = start_paths(a[None], b[None], cfg.n_steps, cfg.init)[0, 1:-1].clone().requires_grad_(True)  # [n_int, ...]
    opt = torch.optim.Adam([path], lr=cfg.lr, betas=(0.9, 0.999))
    history = torch.full((cfg.optim_steps, len(LOSS_TERMS)), float("nan"))
    steps = 0
    for step in range(cfg.optim_steps):
        imgs = classifier_input(render_ws(G, path.expand(-1, num_ws, -1), None), cfg)  # all interior points at once
        privacy = cls = 0
        id_max, all_logits = [], []
        parts = imgs.split(REFERENCE_CHUNK)
        q_parts = targets.split(REFERENCE_CHUNK) if targets is not None else [None] * len(parts)
        for part, q_part in zip(parts, q_parts, strict=True):  # the reference's sum of per-chunk means
            id_logits = id_net(part)
            if loss_name == "kl_uniform":
                privacy = privacy + F.kl_div(
                    F.log_softmax(id_logits, dim=1),
                    torch.ones(id_logits.shape[1], device=part.device) / id_logits.shape[1],
                    reduction="batchmean",
                )
            elif loss_name not in BATCH_LOSSES:
                privacy = privacy + image_privacy(loss_name, id_logits, q_part, cfg.verification_margin).mean()
            all_logits.append(id_logits)
            cls = cls + F.cross_entropy(class_net(part), label.repeat(part.shape[0]))
            id_max.append(F.softmax(id_logits.detach(), dim=1).max(dim=1).values)
        if loss_name in BATCH_LOSSES:  # one path is the batch: n paths = 1
            privacy = batch_privacy(loss_name, torch.cat(all_logits), targets)
        full = torch.cat([a[None], path, b[None]]).flatten(1)  # [n_steps, k * w_dim]
        eq = F.pairwise_distance(full[:-1], full[1:]).square().sum()
        loss = w_priv * privacy + w_eq * eq + w_cls * cls
        history[step] = torch.stack([privacy, eq, cls, loss]).detach().cpu()
        if cfg.early_stop_id_prob is not None and bool((torch.cat(id_max) < cfg.early_stop_id_prob).all()):
            break
        (path.grad,) = torch.autograd.grad(loss, [path])
        opt.param_groups[0]["lr"] = learning_rate(cfg, step)
        opt.step()
        steps += 1
        bar.update(1)
        plateau = _plateaued(history[:, :, None], step, cfg)
        if plateau is not None and bool(plateau.all()):
            break
    return path.detach(), history, steps


def _plan_reference(
    G: nn.Module,
    a: Tensor,
    b: Tensor,
    labels: Tensor,
    targets: Tensor | None,
    id_net: nn.Module,
    class_net: nn.Module,
    cfg: PlanConfig,
    progress: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    B = a.shape[0]
    q_int = None if targets is None else interior_targets(targets, cfg.n_steps)  # [B, n_int, K]
    interiors, histories, steps = [], [], []
    with _progress(B * cfg.optim_steps, "PLAN (reference)", progress) as bar:
        for i in range(B):
            q = None if q_int is None else q_int[i]
            path, history, n = _reference_one(G, a[i], b[i], labels[i : i + 1], q, id_net, class_net, cfg, bar)
            interiors.append(path)
            histories.append(history)
            steps.append(n)
    interior = torch.stack(interiors)  # [B, n_int, k, w_dim]
    history = torch.stack(histories, dim=2) if B else torch.zeros(cfg.optim_steps, len(LOSS_TERMS), 0)  # [S, 4, B]
    return interior, history, torch.tensor(steps, dtype=torch.long)


# ---------------------------------------------------------------------------------------------------------------
# impl="batched": all paths at once, chunked over images.


def _image_terms(
    G: nn.Module,
    pts: Tensor,
    img_labels: Tensor,
    img_weights: Tensor,
    img_targets: Tensor | None,
    id_net: nn.Module,
    class_net: nn.Module,
    cfg: PlanConfig,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradient of the weighted privacy + class terms for the interior points ``pts [N, k, w_dim]`` of ``n`` paths
    (path-major, ``N = n * (n_steps - 2)``), ``cfg.chunk`` images per pass; ``img_targets [N, K]`` the private
    targets (``None`` for ``kl_uniform``). Returns ``(grad [N, k, w_dim], privacy [n], ce [N], id_max_prob [N])``
    (all detached); ``privacy`` per path is the weighted sum of its images' terms, or for a batch-level loss the batch
    value (two passes: see the module docstring)."""
    w_priv, _, w_cls = cfg.weights
    num_ws, n_paths = int(G.num_ws), pts.shape[0] // (cfg.n_steps - 2)
    amp = torch.autocast(pts.device.type, dtype=torch.bfloat16) if cfg.amp else contextlib.nullcontext()
    batch_level = cfg.privacy_loss in BATCH_LOSSES
    if batch_level:  # pass 1: every image's logits without gradient, then the batch term's gradient wrt them
        with torch.no_grad(), amp:
            logits = [id_net(classifier_input(render_ws(G, part.expand(-1, num_ws, -1), cfg.fused_modconv), cfg))
                      for part in pts.split(cfg.chunk)]  # fmt: skip
        value, g_logits = batch_privacy_grad(cfg.privacy_loss, torch.cat(logits), img_targets)  # [], [N, K]
        g_logits = g_logits * (w_priv * n_paths)  # the term is n_paths * value: a per-path scale in the summed loss
    grad = torch.empty_like(pts)
    priv_all = pts.new_empty(pts.shape[0])
    ce_all, id_max_all = torch.empty_like(priv_all), torch.empty_like(priv_all)
    for s in range(0, pts.shape[0], cfg.chunk):
        e = min(s + cfg.chunk, pts.shape[0])
        x = pts[s:e].detach().requires_grad_(True)  # [n, k, w_dim]
        with amp:
            img = classifier_input(render_ws(G, x.expand(-1, num_ws, -1), cfg.fused_modconv), cfg)  # [n, C, R, R]
            id_logits, cls_logits = id_net(img), class_net(img)
        ce = F.cross_entropy(cls_logits.float(), img_labels[s:e], reduction="none")  # [n]
        if batch_level:  # pass 2: the chain rule through the constant g_logits
            loss = (g_logits[s:e] * id_logits.float()).sum() + (img_weights[s:e] * (w_cls * ce)).sum()
        else:
            q = None if img_targets is None else img_targets[s:e]
            priv = image_privacy(cfg.privacy_loss, id_logits, q, cfg.verification_margin)  # [n]
            loss = (img_weights[s:e] * (w_priv * priv + w_cls * ce)).sum()  # sum over images: paths stay independent
            priv_all[s:e] = priv.detach()
        (grad[s:e],) = torch.autograd.grad(loss, [x])
        ce_all[s:e] = ce.detach()
        id_max_all[s:e] = F.softmax(id_logits.detach().float(), dim=1).max(dim=1).values
    privacy = value.expand(n_paths) if batch_level else (priv_all * img_weights).view(n_paths, -1).sum(1)  # [n]
    return grad, privacy, ce_all, id_max_all


def _plan_batched(
    G: nn.Module,
    a: Tensor,
    b: Tensor,
    labels: Tensor,
    targets: Tensor | None,
    id_net: nn.Module,
    class_net: nn.Module,
    cfg: PlanConfig,
    progress: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    B, n_int, device = a.shape[0], cfg.n_steps - 2, a.device
    _, w_eq, _ = cfg.weights
    early = cfg.early_stop_id_prob is not None or cfg.early_stop_plateau is not None
    path = start_paths(a, b, cfg.n_steps, cfg.init)[:, 1:-1].clone().requires_grad_(True)  # [B, n_int, k, w_dim]
    opt = torch.optim.Adam([path], lr=cfg.lr, betas=(0.9, 0.999))
    chunk_w = reference_chunk_weights(n_int, device)  # [n_int]
    q_int = None if targets is None else interior_targets(targets, cfg.n_steps)  # [B, n_int, K]
    history = torch.full((cfg.optim_steps, len(LOSS_TERMS), B), float("nan"), device=device)
    running = torch.ones(B, dtype=torch.bool, device=device)  # paths still being optimised (device-side, no sync)
    steps_run = torch.zeros(B, dtype=torch.long, device=device)
    idx = torch.arange(B, device=device)  # paths computed this step; shrinks at host syncs when paths stop
    with _progress(cfg.optim_steps, f"PLAN ({B} paths)", progress) as bar:
        for step in range(cfg.optim_steps):
            n = idx.shape[0]
            pts = path.detach()[idx].flatten(0, 1)  # [n * n_int, k, w_dim]
            q = None if q_int is None else q_int[idx].flatten(0, 1)  # [n * n_int, K]
            g_img, privacy, ce, id_max = _image_terms(
                G, pts, labels[idx].repeat_interleave(n_int), chunk_w.repeat(n), q, id_net, class_net, cfg
            )
            full = torch.cat([a[idx, None], path[idx], b[idx, None]], dim=1)  # [n, n_steps, k, w_dim]
            eq = _equidistance(full)  # [n]
            (grad,) = torch.autograd.grad(w_eq * eq.sum(), [path])  # [B, n_int, k, w_dim], zero outside idx
            grad.index_add_(0, idx, g_img.view(n, n_int, *g_img.shape[1:]))
            cls = (ce * chunk_w.repeat(n)).view(n, n_int).sum(1)
            eq = eq.detach()
            terms = torch.stack([privacy, eq, cls, cfg.weights[0] * privacy + w_eq * eq + cfg.weights[2] * cls])
            was_running = running[idx]
            history[step][:, idx] = torch.where(was_running, terms, torch.full_like(terms, float("nan")))
            if cfg.early_stop_id_prob is not None:
                done = (id_max.view(n, n_int) < cfg.early_stop_id_prob).all(dim=1)  # [n]
                running[idx] = was_running & ~done
            if early:
                before = path.detach().clone()
            steps_run += running.long()
            path.grad = grad
            opt.param_groups[0]["lr"] = learning_rate(cfg, step)
            opt.step()
            if early:  # stopped paths keep the point at which they met the criterion
                with torch.no_grad():
                    path.copy_(torch.where(running.view(B, 1, 1, 1), path, before))
            plateau = _plateaued(history, step, cfg)  # [B]; NaN rows (stopped paths) compare False: no change
            if plateau is not None:  # a plateaued path keeps this step's update and leaves the batch below
                running &= ~plateau
            bar.update(1)
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.optim_steps:  # the only host syncs
                means = history[step].nanmean(dim=1).tolist()
                bar.set_postfix({k: f"{v:.4g}" for k, v in zip(LOSS_TERMS, means, strict=True)})
                logger.info("PLAN step %d/%d: %s", step + 1, cfg.optim_steps, dict(zip(LOSS_TERMS, means, strict=True)))
                if early:
                    idx = running.nonzero().squeeze(1)
                    if idx.numel() == 0:
                        break
    return path.detach(), history.cpu(), steps_run.cpu()


# ---------------------------------------------------------------------------------------------------------------
# Public entry points.


def plan_paths(
    G: nn.Module,
    w_a: Tensor,
    w_b: Tensor,
    labels: Tensor | Sequence[int],
    id_net: nn.Module,
    class_net: nn.Module,
    cfg: PlanConfig | None = None,
    *,
    impl: str = "batched",
    progress: bool = False,
    targets: Tensor | None = None,
) -> WalkResult:
    """Optimise PLAN paths between pairs of same-class latent points (see the module docstring for the objective).

    Args:
        G: generator with NVIDIA's contract (``synthesis``, ``num_ws``, ``w_dim``) on the endpoints' device; only
            read (no gradients stored in it; its mode is left as it is).
        w_a: start points, float ``[B, w_dim]`` (W, broadcast to all layers) or ``[B, num_ws, w_dim]`` (W+).
        w_b: end points, same shape and device.
        labels: class label of each path, ``[B]`` ints in ``[0, classes)`` of ``class_net``.
        id_net: identity classifier, images ``[N, C, R, R]`` in [-1, 1] (C = 3 for gray generators when
            ``cfg.repeat_gray``) -> logits ``[N, identities]``; should be in eval mode.
        class_net: class classifier, same input -> logits ``[N, classes]``; should be in eval mode.
        cfg: options; ``None`` = :class:`PlanConfig` defaults (the reference's).
        impl: ``"batched"`` (all paths together, ``cfg.chunk`` images per pass) or ``"reference"`` (one path at a
            time, the reference's loop: every interior image of a path in one synthesis call, classifiers on
            chunks of 4, float32; ignores ``chunk`` and ``fused_modconv``). Both give the same paths up to
            floating-point rounding.
        progress: show a progress bar (hidden anyway when stderr is not a terminal).
        targets: private targets of ``cfg.privacy_loss`` other than ``kl_uniform``: soft identities of each path's
            two endpoints ``[B, 2, K]`` (``K`` = id_net's identities; rows >= 0 summing to 1), interpolated to the
            interior points as ``(1 - t) q_a + t q_b``. ``None`` = the patient the identity guide sees at each
            endpoint (its softmax on the rendered endpoint, no gradient). Ignored by ``kl_uniform`` (but checked).

    Returns:
        :class:`WalkResult` with ``ws [B, n_steps, ...]`` (endpoints included, exactly ``w_a`` and ``w_b``),
        per-point diagnostics and the loss history.

    Raises:
        ConfigError: unknown ``impl``; endpoints not ``[B, w_dim]``/``[B, num_ws, w_dim]``, mismatched, non-finite
            or on another device than ``G``; labels not ``[B]`` integers in range; classifiers not returning
            ``[N, classes]``; ``amp``/``channels_last`` without CUDA or with ``impl="reference"``; an
            ``early_stop_id_prob`` that cannot be reached; ``targets`` of the wrong shape or not distributions.
    """
    cfg = PlanConfig() if cfg is None else cfg
    if not isinstance(cfg, PlanConfig):
        raise ConfigError(f"cfg must be a PlanConfig, got {type(cfg).__name__}")
    cfg = replace(cfg, repeat_gray=resolve_repeat_gray(cfg.repeat_gray, id_net))
    if impl not in IMPLS:
        raise ConfigError(f'unknown PLAN implementation "{impl}"; expected one of {", ".join(IMPLS)}')
    a, b = _as_points(w_a, w_b, G)  # [B, k, w_dim]
    labels_t = labels_tensor(labels, a.shape[0], a.device)
    for name in ("amp", "channels_last"):
        if getattr(cfg, name) and impl == "reference":
            raise ConfigError(f'{name}=True applies to impl="batched" only; the reference runs in float32')
    if cfg.amp and a.device.type not in ("cuda", "cpu"):
        raise ConfigError(f"amp=True needs CUDA or CPU tensors, got endpoints on {a.device}; set amp=False")
    if cfg.channels_last and a.device.type != "cuda":
        raise ConfigError(f"channels_last=True needs CUDA tensors, got endpoints on {a.device}; set it False")
    notes, n_ids = _check_networks(G, a, labels_t, id_net, class_net, cfg)
    q_ends = None if targets is None else check_targets(targets, a.shape[0], n_ids, a.device)  # [B, 2, K]
    if cfg.privacy_loss == "kl_uniform":
        q_ends = None
    elif q_ends is None:
        q_ends = _endpoint_targets(G, a, b, id_net, cfg)
    for note in notes:
        warnings.warn(note, stacklevel=2)

    run = _plan_batched if impl == "batched" else _plan_reference
    with torch.enable_grad():
        interior, history, steps_run = run(G, a, b, labels_t, q_ends, id_net, class_net, cfg, progress)
    full = torch.cat([a[:, None], interior, b[:, None]], dim=1)  # [B, n_steps, k, w_dim], endpoints exact
    diagnostics = _diagnostics(G, full, labels_t, id_net, class_net, cfg)
    ws = full.squeeze(2) if w_a.dim() == 2 else full  # [B, n_steps, w_dim] for W endpoints
    return WalkResult(
        ws=ws,
        labels=labels_t,
        diagnostics=diagnostics,
        loss_history={k: history[:, i].float().contiguous() for i, k in enumerate(LOSS_TERMS)},
        steps_run=steps_run,
        impl=impl,
        config=cfg,
        notes=tuple(notes),
    )


def path_objective(
    G: nn.Module,
    ws: Tensor,
    labels: Tensor | Sequence[int],
    id_net: nn.Module,
    class_net: nn.Module,
    cfg: PlanConfig | None = None,
    *,
    targets: Tensor | None = None,
) -> dict[str, Tensor]:
    """PLAN's objective at the given paths, per path, in float32 without autocast: what ``loss_history`` records
    at each step, for paths that were optimised some other way (e.g. to compare optimisers at the same objective).

    Args:
        G, labels, id_net, class_net, targets: as :func:`plan_paths`.
        ws: paths with their endpoints, ``[B, n_steps, w_dim]`` or ``[B, n_steps, num_ws, w_dim]`` (a
            :attr:`WalkResult.ws`); ``n_steps`` is taken from here, not from ``cfg``.
        cfg: the weights, privacy loss and chunk; ``None`` = :class:`PlanConfig` defaults.

    Returns:
        ``{"privacy", "equidistance", "class", "total"}``, each ``[B]`` float32 on the CPU.
    """
    cfg = PlanConfig() if cfg is None else cfg
    if not isinstance(ws, Tensor) or ws.dim() not in (3, 4) or ws.shape[1] < 3:
        got = list(ws.shape) if isinstance(ws, Tensor) else type(ws).__name__
        raise ConfigError(f"ws must be paths [B, n_steps >= 3, w_dim] or [B, n_steps, num_ws, w_dim], got {got}")
    cfg = replace(cfg, n_steps=int(ws.shape[1]), amp=False, channels_last=False,
                  repeat_gray=resolve_repeat_gray(cfg.repeat_gray, id_net))  # fmt: skip
    a, b = _as_points(ws[:, 0], ws[:, -1], G)  # [B, k, w_dim] float32
    full = (ws if ws.dim() == 4 else ws[:, :, None]).detach().float()  # [B, n_steps, k, w_dim]
    B, n_int = a.shape[0], cfg.n_steps - 2
    labels_t = labels_tensor(labels, B, a.device)
    _, n_ids = _check_networks(G, a, labels_t, id_net, class_net, cfg)
    q_ends = None if targets is None else check_targets(targets, B, n_ids, a.device)  # [B, 2, K]
    if cfg.privacy_loss == "kl_uniform":
        q_ends = None
    elif q_ends is None:
        q_ends = _endpoint_targets(G, a, b, id_net, cfg)
    q = None if q_ends is None else interior_targets(q_ends, cfg.n_steps).flatten(0, 1)  # [B * n_int, K]
    chunk_w = reference_chunk_weights(n_int, a.device).repeat(B)  # [B * n_int]
    with torch.enable_grad():
        _, privacy, ce, _ = _image_terms(G, full[:, 1:-1].flatten(0, 1), labels_t.repeat_interleave(n_int), chunk_w,
                                         q, id_net, class_net, cfg)  # fmt: skip
    cls = (ce * chunk_w).view(B, n_int).sum(1)
    eq = _equidistance(full).detach()
    w_priv, w_eq, w_cls = cfg.weights
    terms = (privacy, eq, cls, w_priv * privacy + w_eq * eq + w_cls * cls)
    return {k: v.float().cpu() for k, v in zip(LOSS_TERMS, terms, strict=True)}


@torch.no_grad()
def render_paths(G: nn.Module, paths: Tensor, *, chunk: int = 64) -> Tensor:
    """Images of every point of ``paths`` ``[B, n_steps, w_dim]`` (W) or ``[B, n_steps, num_ws, w_dim]`` (W+).

    Returns:
        ``[B, n_steps, C, R, R]`` float32 in [-1, 1] (clamped), ``noise_mode='const'``, on ``paths.device``.
    """
    if paths.ndim not in (3, 4):
        raise ConfigError(f"paths must be [B, n_steps, w_dim] or [B, n_steps, num_ws, w_dim], got {list(paths.shape)}")
    flat = paths.flatten(0, 1)  # [B * n_steps, (num_ws,) w_dim]
    if flat.ndim == 2:
        flat = flat[:, None, :].expand(-1, int(G.num_ws), -1)  # W broadcast over the layers
    images = torch.cat([render_ws(G, part, None) for part in flat.split(chunk)])
    return images.reshape(*paths.shape[:2], *images.shape[1:])
