"""Privacy terms of the PLAN walk (:attr:`latentwalk.paths.PlanConfig.privacy_loss`): what the identity guide may still
tell about the patients behind a path's images.

Notation: a batch of ``N`` interior path images, the identity guide's logits ``L [N, K]`` (``K`` patients) and
``P = softmax(L)``; ``Q [N, K]`` the private target of each image, a distribution over patients (rows >= 0 summing
to 1): image ``j`` of ``n_steps`` on a path (``t = j / (n_steps - 1)``) gets ``Q = (1 - t) q_a + t q_b`` from the
targets ``q_a, q_b`` of the path's two endpoints (:func:`interior_targets`).

- ``"kl_uniform"`` (PLAN: Pennisi et al., MICCAI 2023; the default): per image ``KL(uniform || P_i)``
  (:func:`kl_to_uniform`); ignores ``Q``.
- ``"mi"``: the plug-in mutual information between the private variable and the guide's prediction over the batch,
  as IRENE (Tartaglione, "Information removal at the bottleneck in deep neural networks", BMVC 2022) estimates it:
  joint ``J = Q^T P / N [K, K]``, marginals ``p(s) = mean_i Q_i``, ``p(s^) = mean_i P_i``,
  ``I = sum_{s, s^} J log(J / (p(s) p(s^)^T)) / log K`` in [0, 1] (:func:`plugin_mutual_information`; ``0 log 0 = 0``,
  ``MI_EPS`` inside both logarithms). A batch-level quantity.
- ``"verification"``: per image the guide's verification log-odds for patient ``s``,
  ``v_i(s) = L_i(s) - logsumexp_{j != s} L_i(j) = log(P_i(s) / (1 - P_i(s)))``, and the hinge
  ``sum_s Q_i(s) relu(v_i(s) - margin)``: the score for the endpoints' patients is pushed below a margin, by default
  the chance log-odds ``log(1 / (K - 1))`` of a uniform ``P`` (:func:`verification_hinge`). A patient-verification
  score as the quantity to push down, as PriCheXy-Net (Packhäuser et al., MICCAI 2023) and GMIA do (issue 14).
- ``"hsic"``: the unbiased HSIC estimator of Song et al. (JMLR 2012, eq. 5) between the logits (Gaussian kernel,
  bandwidth the median pairwise distance, taken as a constant) and the targets (linear kernel ``Q Q^T``), over the
  batch (:func:`unbiased_hsic`; needs ``N >= 4``). A batch-level quantity.

Per-image terms (``kl_uniform``, ``verification``) are weighted per image like PLAN's KL
(:func:`latentwalk.paths.reference_chunk_weights`); batch-level ones (``mi``, ``hsic``) are computed over all interior
images of the paths optimised together and their gradient comes from :func:`batch_privacy_grad`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from latentwalk.errors import ConfigError

__all__ = [
    "PRIVACY_LOSSES",
    "IMAGE_LOSSES",
    "BATCH_LOSSES",
    "MI_EPS",
    "HSIC_MIN_IMAGES",
    "kl_to_uniform",
    "verification_log_odds",
    "verification_hinge",
    "default_margin",
    "plugin_mutual_information",
    "median_bandwidth",
    "unbiased_hsic",
    "image_privacy",
    "batch_privacy",
    "batch_privacy_grad",
    "check_targets",
    "interior_targets",
]

PRIVACY_LOSSES = ("kl_uniform", "mi", "verification", "hsic")
IMAGE_LOSSES = ("kl_uniform", "verification")  # one value per image, weighted and summed per path
BATCH_LOSSES = ("mi", "hsic")  # one value per batch of images
MI_EPS = 1e-12  # inside both logarithms of the plug-in mutual information
HSIC_MIN_IMAGES = 4  # the unbiased HSIC estimator divides by m (m - 3)
TARGET_SUM_TOL = 1e-4  # how far a target row's sum may be from 1


def kl_to_uniform(id_logits: Tensor) -> Tensor:
    """Per-image ``KL(uniform || softmax(logits))`` ``[N]``, the summand of PLAN's ``kl_div`` call."""
    logp = F.log_softmax(id_logits.float(), dim=1)  # [N, K]
    uniform = torch.full_like(logp, 1.0 / logp.shape[1])
    return F.kl_div(logp, uniform, reduction="none").sum(1)  # [N]


def verification_log_odds(id_logits: Tensor) -> Tensor:
    """Verification log-odds ``v(s) = L(s) - logsumexp_{j != s} L(j)`` of every image for every patient ``[N, K]``.

    Equal to ``log(p_s / (1 - p_s))``, ``p = softmax(L)``; computed that way where ``p_s <= 1/2`` (every ``s`` but the
    top one) and by an exact masked logsumexp for the top patient, so it stays finite and stable when one patient
    takes nearly all the probability. Needs ``K >= 2``.
    """
    logits = id_logits.float()
    logp = F.log_softmax(logits, dim=1)  # [N, K]
    is_top = F.one_hot(logits.argmax(dim=1), logits.shape[1]).bool()  # [N, K]
    p_rest = torch.where(is_top, torch.zeros_like(logp), logp.exp())  # p_s <= 1/2 off the top
    v_rest = logp - torch.log1p(-p_rest)  # [N, K]
    top = logits.masked_select(is_top)[:, None]  # [N, 1]
    v_top = top - torch.logsumexp(logits.masked_fill(is_top, float("-inf")), dim=1, keepdim=True)  # [N, 1]
    return torch.where(is_top, v_top, v_rest)


def default_margin(n_ids: int) -> float:
    """The chance verification log-odds ``log(1 / (K - 1))``: ``v(s)`` of every patient under a uniform guess."""
    return math.log(1.0 / (n_ids - 1))


def verification_hinge(id_logits: Tensor, targets: Tensor, margin: float | None = None) -> Tensor:
    """Per image ``sum_s Q(s) relu(v(s) - margin)`` ``[N]`` (:func:`verification_log_odds`).

    Args:
        id_logits: identity guide logits ``[N, K]``, ``K >= 2``.
        targets: private targets ``Q [N, K]``, rows >= 0 summing to 1.
        margin: log-odds below which a patient's score costs nothing; ``None`` = :func:`default_margin`.
    """
    margin = default_margin(id_logits.shape[1]) if margin is None else margin
    return (targets * F.relu(verification_log_odds(id_logits) - margin)).sum(dim=1)


def plugin_mutual_information(probs: Tensor, targets: Tensor) -> Tensor:
    """IRENE's plug-in ``I(s; s^) / log K`` over a batch: ``probs P [N, K]`` (the guess), ``targets Q [N, K]``.

    Returns a float32 scalar in [0, 1] up to ``MI_EPS``: 0 when the guess does not depend on the target, 1 when
    one-hot targets of K equally frequent patients are guessed exactly. Needs ``K >= 2``.
    """
    p, q = probs.float(), targets.float()
    joint = q.T @ p / p.shape[0]  # [K, K], J[s, s^]
    outer = q.mean(0)[:, None] * p.mean(0)[None, :]  # [K, K], p(s) p(s^)
    ratio = torch.log(joint + MI_EPS) - torch.log(outer + MI_EPS)
    return (joint * ratio).sum() / math.log(p.shape[1])


@torch.no_grad()
def median_bandwidth(features: Tensor) -> Tensor:
    """Median pairwise Euclidean distance between the rows of ``features [m, D]`` (1 when it is 0), no gradient."""
    f = features.detach().float()
    d2 = (f.square().sum(1)[:, None] + f.square().sum(1)[None, :] - 2 * f @ f.T).clamp_min(0)  # [m, m]
    i, j = torch.triu_indices(f.shape[0], f.shape[0], offset=1, device=f.device)
    sigma = d2[i, j].sqrt().median() if i.numel() else f.new_tensor(1.0)
    return torch.where(sigma > 0, sigma, torch.ones_like(sigma))


def unbiased_hsic(features: Tensor, targets: Tensor, bandwidth: Tensor | float | None = None) -> Tensor:
    """Song et al.'s unbiased HSIC between ``features [m, D]`` and ``targets [m, K]``, a float32 scalar.

    ``K~`` = Gaussian kernel ``exp(-||f_i - f_j||^2 / (2 sigma^2))`` and ``L~ = Q Q^T``, both with a zero diagonal;
    ``HSIC = [tr(K~ L~) + 1^T K~ 1 1^T L~ 1 / ((m-1)(m-2)) - 2/(m-2) 1^T K~ L~ 1] / (m (m-3))``.

    Args:
        features: the identity guide's logits (any features), ``m >= 4`` rows.
        targets: private targets, one row per feature row.
        bandwidth: ``sigma``; ``None`` = :func:`median_bandwidth` of ``features`` (a constant for the gradient).
    """
    m = features.shape[0]
    if m < HSIC_MIN_IMAGES:
        raise ConfigError(f"the unbiased HSIC needs at least {HSIC_MIN_IMAGES} images in a batch, got {m}")
    f, q = features.float(), targets.float()
    sigma = median_bandwidth(f) if bandwidth is None else bandwidth
    sq = f.square().sum(1)  # [m]
    d2 = (sq[:, None] + sq[None, :] - 2 * f @ f.T).clamp_min(0)  # [m, m]
    off = 1 - torch.eye(m, device=f.device, dtype=f.dtype)
    k = torch.exp(-d2 / (2 * sigma**2)) * off  # [m, m]
    l = (q @ q.T) * off  # noqa: E741  [m, m]
    k_row, l_row = k.sum(1), l.sum(1)  # [m]: K~ 1, L~ 1
    trace = (k * l).sum()  # tr(K~ L~), both symmetric
    value = trace + k.sum() * l.sum() / ((m - 1) * (m - 2)) - 2.0 / (m - 2) * (k_row * l_row).sum()
    return value / (m * (m - 3))


def image_privacy(name: str, id_logits: Tensor, targets: Tensor | None, margin: float | None) -> Tensor:
    """The per-image privacy term ``[N]`` of a loss in :data:`IMAGE_LOSSES`."""
    if name == "kl_uniform":
        return kl_to_uniform(id_logits)
    if name == "verification":
        return verification_hinge(id_logits, targets, margin)
    raise ValueError(f'"{name}" is not a per-image privacy loss; expected one of {", ".join(IMAGE_LOSSES)}')


def batch_privacy(name: str, id_logits: Tensor, targets: Tensor) -> Tensor:
    """The batch-level privacy term (a scalar) of a loss in :data:`BATCH_LOSSES` over ``id_logits [N, K]``."""
    if name == "mi":
        return plugin_mutual_information(F.softmax(id_logits.float(), dim=1), targets)
    if name == "hsic":
        return unbiased_hsic(id_logits, targets)
    raise ValueError(f'"{name}" is not a batch-level privacy loss; expected one of {", ".join(BATCH_LOSSES)}')


def batch_privacy_grad(name: str, id_logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`batch_privacy` and its gradient with respect to the logits: ``(value [], grad [N, K])``, detached.

    The first pass of the chunked exact gradient: with ``g`` from here, back-propagating ``(g * logits).sum()`` chunk
    by chunk through freshly rendered images gives the exact gradient of the batch term (the chain rule through a
    constant ``g``); for ``mi`` this is ``dI/dP`` pulled through the softmax.
    """
    x = id_logits.detach().float().requires_grad_(True)
    with torch.enable_grad():
        value = batch_privacy(name, x, targets)
        (grad,) = torch.autograd.grad(value, [x])
    return value.detach(), grad


def check_targets(targets: object, n_paths: int, n_ids: int, device: torch.device) -> Tensor:
    """``targets`` as float32 ``[B, 2, K]`` on ``device``, checked: soft identity targets of each path's endpoints."""
    if not isinstance(targets, Tensor):
        raise ConfigError(f"targets must be a tensor [B, 2, K] or None, got {type(targets).__name__}")
    if tuple(targets.shape) != (n_paths, 2, n_ids):
        raise ConfigError(
            f"targets must have shape [{n_paths}, 2, {n_ids}] (paths, endpoints, id_net's identities), "
            f"got {list(targets.shape)}"
        )
    if not targets.dtype.is_floating_point:
        raise ConfigError(f"targets must be floating point probabilities, got dtype {targets.dtype}")
    t = targets.detach().to(device=device, dtype=torch.float32)
    sums = t.sum(dim=2)  # [B, 2]
    ok = torch.isfinite(t).all() and (t >= 0).all() and torch.allclose(sums, torch.ones_like(sums), atol=TARGET_SUM_TOL)
    if not ok:
        raise ConfigError("targets must be finite, >= 0, and each [path, endpoint] row must sum to 1")
    return t


def interior_targets(ends: Tensor, n_steps: int) -> Tensor:
    """Targets of the interior points: ``ends [B, 2, K]`` -> ``[B, n_steps - 2, K]``, ``(1 - t) q_a + t q_b``."""
    t = torch.linspace(0, 1, n_steps, device=ends.device, dtype=ends.dtype)[1:-1, None]  # [n_int, 1]
    return (1 - t) * ends[:, :1] + t * ends[:, 1:]  # [B, n_int, K]
