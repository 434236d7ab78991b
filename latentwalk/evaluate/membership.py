"""Membership inference in the memorising regime: a downstream classifier trained as a typical user trains one.

The utility classifiers of :mod:`latentwalk.evaluate.utility` train with acquisition augmentation and weight decay,
which keeps them from memorising their training images: a loss attack on them sits near chance even when they are
trained on the real images, so they cannot show what a synthetic set protects. Here the same architecture is trained
*to convergence without augmentation or weight decay* (a user's model fitted to a small dataset), once on the real
training split and once on the synthetic set, and two attacks ask which real images were members (R, the training
split) and which were not (H, the held-out patients):

- the loss attack (Yeom et al., CSF 2018): lower loss = member; AUC and best-threshold accuracy;
- a calibrated attack, offline LiRA (Carlini et al., "Membership inference attacks from first principles", S&P 2022,
  the offline variant of section VI-C) sized for the CPU: ``K`` shadow models of the same recipe, each trained on a
  random half of R ∪ H, give every image the confidence a model that did *not* see it has in its label; the score
  is ``(φ_target(x) - μ_out(x)) / σ_out`` with ``φ = log p_y - log(1 - p_y)`` (the logit-scaled confidence,
  computed from the logits), ``μ_out(x)`` the mean over the shadows that left ``x`` out and ``σ_out`` the pooled
  standard deviation of those out-scores around their per-image means (a global variance, the paper's choice for
  few shadows). Images that no shadow left out are dropped from this attack.

The shadows are trained on real data only, so they calibrate the per-image difficulty of recognising a real image;
the same calibration then scores a classifier trained on a synthetic set. Paper-style regime: PLAN's Table 1 reports
real-trained Shenzhen classifiers at 71.41 % attack accuracy and PLAN-trained ones at 50.13 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from latentwalk.errors import ConfigError, DataError

__all__ = ["memorising_recipe", "confidence_logits", "Shadows", "fit_shadows", "attack"]


def memorising_recipe(epochs: int, seed: int) -> Any:
    """The utility classifier's architecture trained to convergence: no augmentation, no weight decay."""
    from latentwalk.evaluate.utility import UtilityConfig

    return UtilityConfig(epochs=epochs, augment=0.0, weight_decay=0.0, seeds=(seed,))


@torch.no_grad()
def confidence_logits(model: nn.Module, images: Tensor, labels: Tensor, batch: int = 256) -> Tensor:
    """``[N]`` CPU float64: ``log p_y - log(1 - p_y)`` from the logits ``z`` as ``z_y - logsumexp(z_{j != y})``
    (finite even when the softmax rounds to 1)."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    for x, y in zip(images.split(batch), labels.split(batch), strict=True):
        z = model(x.to(device)).double().cpu()  # [b, K]
        own = z.gather(1, y[:, None]).squeeze(1)
        others = z.scatter(1, y[:, None], float("-inf"))
        out.append(own - torch.logsumexp(others, dim=1))
    return torch.cat(out)


@dataclass
class Shadows:
    """Out-of-training confidences of every pool image (R then H) under ``K`` shadow models."""

    phi: Tensor  # [K, N] float64 confidence logits of the pool images
    trained_on: Tensor  # [K, N] bool: the shadow saw the image

    def calibrated(self, phi_target: Tensor) -> tuple[Tensor, Tensor]:
        """``(score [N], covered [N] bool)``: offline LiRA scores; ``covered`` = some shadow left the image out."""
        out = ~self.trained_on
        count = out.sum(0)
        mu = (self.phi * out).sum(0) / count.clamp(min=1)
        resid = (self.phi - mu)[out]
        sigma = resid.std() if len(resid) > 1 and bool(resid.std() > 0) else self.phi[out].std()
        return (phi_target - mu) / sigma.clamp(min=1e-6), count > 0


def fit_shadows(
    pool: Tensor, labels: Tensor, n_classes: int, k: int, epochs: int, seed: int, device: Any, progress: bool
) -> Shadows:
    """``k`` shadow models of :func:`memorising_recipe`, each on a random half of ``pool`` (seeded)."""
    from latentwalk.evaluate.utility import train_classifier

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"shadow models must be an integer >= 1, got {k!r}")
    gen = torch.Generator().manual_seed(seed)
    phis, masks = [], []
    for i in range(k):
        inside = torch.zeros(len(pool), dtype=torch.bool)
        inside[torch.randperm(len(pool), generator=gen)[: len(pool) // 2]] = True
        model = train_classifier(pool[inside], labels[inside], n_classes, memorising_recipe(epochs, seed + 1 + i),
                                 seed + 1 + i, device, progress)  # fmt: skip
        phis.append(confidence_logits(model, pool, labels))
        masks.append(inside)
    return Shadows(torch.stack(phis), torch.stack(masks))


def attack(model: nn.Module, members: tuple[Tensor, Tensor], nonmembers: tuple[Tensor, Tensor],
           shadows: Shadows | None) -> dict[str, Any]:  # fmt: skip
    """Loss attack and (with ``shadows`` over members then non-members) the calibrated attack on ``model``."""
    from latentwalk.evaluate.privacy import auc_score, best_threshold_accuracy

    phi = confidence_logits(model, torch.cat([members[0], nonmembers[0]]), torch.cat([members[1], nonmembers[1]]))
    is_member = torch.zeros(len(phi), dtype=torch.bool)
    is_member[: len(members[0])] = True
    # a lower loss is a higher confidence logit: -log p_y is decreasing in phi, so the loss attack ranks by phi
    out: dict[str, Any] = {"loss": _scores(phi[is_member], phi[~is_member], auc_score, best_threshold_accuracy)}
    if shadows is not None:
        if shadows.phi.shape[1] != len(phi):
            raise DataError("the shadow models were fitted on another pool of images")
        score, covered = shadows.calibrated(phi)
        pos, neg = score[is_member & covered], score[~is_member & covered]
        if len(pos) and len(neg):
            out["calibrated"] = _scores(pos, neg, auc_score, best_threshold_accuracy)
            out["calibrated"]["images"] = int(covered.sum())
    return out


def _scores(pos: Tensor, neg: Tensor, auc_score: Any, accuracy: Any) -> dict[str, Any]:
    return {"auc": round(auc_score(pos, neg), 6), "accuracy": round(accuracy(pos, neg), 6)}
