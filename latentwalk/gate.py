"""The privacy gate: a synthetic image closer to a real patient than real patients are to each other is not written.

Every candidate is compared with the real reference images (the training split by default) in one of three spaces:

- ``identity`` (default): cosine distance between φ_id embeddings (``guides.identity.embed``): the space in which the
  identity guide tells patients apart;
- ``lpips``: LPIPS v0.1 (AlexNet) as a squared distance between LPIPS embeddings (:class:`LpipsEmbedding`); needs the
  AlexNet backbone file (see :func:`latentwalk.weights.lpips_model`);
- ``ssim``: ``1 - SSIM`` (Gaussian window, sigma 1.5, as ``skimage.metrics.structural_similarity``).

The default threshold is derived from the real data: the ``percentile``-th percentile of the distances from each real
image to its nearest real image *of a different patient*. A candidate whose nearest-real distance is below it is
closer to some patient than ``100 - percentile`` % of real images are to anybody else, and is rejected.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from latentwalk.errors import ConfigError, DataError
from latentwalk.spaces import GATE_SPACES, SPACES, embedder

__all__ = ["GATE_SPACES", "SELF_CHECK_MIN", "Gate", "LabelGate", "build_gate", "build_label_gate"]

SELF_CHECK_MIN = 0.5  # a gate space whose nearest real image is the same patient less often fails its own check

_CHUNK = 256  # images per embedding pass


@dataclass(frozen=True, eq=False)
class Gate:
    """A fitted gate: nearest-real distances of candidates, and the decision.

    Attributes:
        space: ``identity``, ``lpips`` or ``ssim``.
        threshold: candidates with a nearest-real distance below it are rejected (0 = accept everything).
        derived: True when ``threshold`` came from the real data (``percentile``), False when it was given.
        percentile: the percentile used for a derived threshold (recorded also when the threshold was given).
        real_images: number of real reference images.
        real_patients: number of distinct patients among them.
        same_patient_nearest: the gate space's own check on the real images: among the reference images whose patient
            has another image there, the share whose nearest other reference image is of the same patient (leave
            one out). Below :data:`SELF_CHECK_MIN` the space cannot tell patients apart and its threshold protects
            nobody; ``None`` when no patient has two images (nothing to check).
        self_checked: how many reference images that share was measured on.
        real_nn: ``[real_images]`` float64 distance of each real image to its nearest real of another patient.
    """

    space: str
    threshold: float
    derived: bool
    percentile: float
    real_images: int
    real_patients: int
    real_nn: Tensor
    same_patient_nearest: float | None
    self_checked: int
    _reference: Tensor
    _embed: Callable[[Tensor], Tensor]

    @torch.no_grad()
    def distances(self, images: Tensor) -> Tensor:
        """Nearest-real distance of each image ``[N, C, R, R]`` in [-1, 1]; float64 ``[N]`` on the CPU."""
        from latentwalk.distances import nearest, ssim_nearest

        if images.shape[0] == 0:
            return torch.zeros(0, dtype=torch.float64)
        if self.space == "ssim":
            dist, _ = ssim_nearest(images, self._reference.to(images.device))
            return dist.cpu()
        metric = SPACES[self.space].metric
        emb = self._embed(images)
        if metric == "cosine":  # an all-zero embedding (ReLU features of e.g. a blank image) has no direction:
            out = torch.ones(emb.shape[0], dtype=torch.float64)  # it resembles no patient (cosine distance 1)
            keep = emb.norm(dim=1) > 0
            if keep.any():
                dist, _ = nearest(emb[keep], self._reference.to(emb.device), k=1, metric=metric)
                out[keep.cpu()] = dist[:, 0].double().cpu()
            return out
        dist, _ = nearest(emb, self._reference.to(emb.device), k=1, metric=metric)
        return dist[:, 0].double().cpu()

    def accept(self, distances: Tensor) -> Tensor:
        """``[N]`` bool: True where the distance is at or above the threshold."""
        return distances >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        q = self.real_nn.numpy()
        rate = self.same_patient_nearest
        return {
            "space": self.space,
            "threshold": self.threshold,
            "threshold_derived": self.derived,
            "percentile": self.percentile,
            "real_images": self.real_images,
            "real_patients": self.real_patients,
            "real_nearest_other_patient": {
                "min": _round(float(q.min())),
                "p05": _round(float(np.percentile(q, 5))),
                "median": _round(float(np.median(q))),
            },
            "self_check": {
                "same_patient_nearest": None if rate is None else _round(rate),
                "images": self.self_checked,
                "passed": self.passes_self_check,
            },
        }

    @property
    def passes_self_check(self) -> bool | None:
        """False when the space fails its own check on the real images (see ``same_patient_nearest``)."""
        return None if self.same_patient_nearest is None else self.same_patient_nearest >= SELF_CHECK_MIN


def _self_check(
    reference: Tensor, patients: list, metric: str, nearest_other: Tensor | None
) -> tuple[float | None, int]:
    """Share of reference images (with another image of their patient) whose nearest other image is that patient's;
    ``nearest_other``: ``[M]`` index of each reference image's nearest other image when already found (SSIM, in the
    same pass as the threshold), else ``nearest`` in ``metric``."""
    from latentwalk.distances import nearest

    counts: dict[Any, int] = {}
    for p in patients:
        counts[p] = counts.get(p, 0) + 1
    rows = [i for i, p in enumerate(patients) if counts[p] >= 2]
    if not rows:
        return None, 0
    if nearest_other is not None:
        nn_idx = nearest_other[rows].tolist()
    else:
        _, idx = nearest(reference[rows], reference, k=2, metric=metric)
        nn_idx = [int(b) if int(a) == r else int(a) for r, (a, b) in zip(rows, idx.tolist(), strict=True)]
    same = sum(patients[j] == patients[r] for r, j in zip(rows, nn_idx, strict=True))
    return same / len(rows), len(rows)


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def _embedder(space: str, guides: Any, lpips_net: Any, device: torch.device) -> Callable[[Tensor], Tensor]:
    if space == "lpips" and lpips_net is None:
        from latentwalk.weights import lpips_model

        lpips_net = lpips_model("alex", device=device)
    return embedder(space, guides=guides, lpips_net=lpips_net, device=device, chunk=_CHUNK)


@torch.no_grad()
def build_gate(
    space: str,
    real_images: Tensor,
    real_patients: Sequence[str],
    *,
    guides: Any = None,
    threshold: float | None = None,
    percentile: float = 5.0,
    lpips_net: Any = None,
) -> Gate:
    """Fit a gate on the real reference images.

    Args:
        space: one of :data:`GATE_SPACES`.
        real_images: ``[M, C, R, R]`` float in [-1, 1], the images a candidate must not copy, on the device to use.
        real_patients: patient identity of each real image (kept in memory only, never written).
        guides: :class:`latentwalk.guides.Guides`; needed for ``identity``.
        threshold: fixed threshold; ``None`` = derived from the real data with ``percentile``.
        percentile: in (0, 100); the percentile of real-to-nearest-other-patient distances used as the threshold.
        lpips_net: an ``lpips.LPIPS`` to use for ``lpips`` instead of loading AlexNet's weights.

    Returns:
        :class:`Gate`.

    Raises:
        ConfigError: unknown space, bad threshold or percentile, ``identity`` without guides.
        DataError: fewer than two real patients (no real-to-real baseline).
        MissingWeightsError: ``lpips`` without the AlexNet backbone file.
    """
    from latentwalk.distances import nearest, ssim_nearest_many

    if space not in GATE_SPACES:
        raise ConfigError(f'unknown gate space "{space}"; expected one of {", ".join(GATE_SPACES)}')
    if space == "identity" and guides is None:
        raise ConfigError("the identity gate needs the guides (their identity embedding); pass guides")
    if not (isinstance(percentile, (int, float)) and 0 < percentile < 100):
        raise ConfigError(f"gate percentile must be in (0, 100), got {percentile!r}")
    if threshold is not None and not (isinstance(threshold, (int, float)) and math.isfinite(threshold)):
        raise ConfigError(f"gate threshold must be a finite number >= 0 or None (derived), got {threshold!r}")
    if threshold is not None and threshold < 0:
        raise ConfigError(f"gate threshold must be >= 0, got {threshold}")
    patients = list(real_patients)
    if len(patients) != real_images.shape[0]:
        raise DataError(f"{real_images.shape[0]} real images but {len(patients)} patient identities")
    if len(set(patients)) < 2:
        raise DataError("the gate needs real images of at least 2 patients to measure real-to-real distances")
    device = real_images.device
    embed = _embedder(space, guides, lpips_net, device)
    metric, nearest_other = SPACES[space].metric, None
    if space == "ssim":
        reference = real_images.float()
        rows = range(reference.shape[0])  # one group per image: the nearest *other* image, for the self-check
        # one blocked pass over the pairs serves the threshold and the self-check; memory never grows with M^2
        (dist, _), (_, nearest_other) = ssim_nearest_many(reference, reference, [(patients, patients), (rows, rows)])
        real_nn = dist.cpu()
    else:
        reference = embed(real_images)
        zero = (reference.flatten(1).abs().amax(dim=1) == 0).sum().item() if metric == "cosine" else 0
        if zero:
            raise DataError(
                f"the {space} embedding maps {zero} of {reference.shape[0]} real images to zero, which has no cosine "
                "distance: the guides have collapsed; retrain them (longer, or at a lower learning rate) or use "
                "another --gate-space"
            )
        dist, _ = nearest(reference, reference, k=1, metric=metric, a_groups=patients, b_groups=patients)
        real_nn = dist[:, 0].double().cpu()
    rate, checked = _self_check(reference, patients, metric, nearest_other)
    derived = threshold is None
    # rounded to the 6 digits written to run.json, so the recorded threshold is exactly the one applied
    value = _round(float(np.percentile(real_nn.numpy(), percentile))) if derived else float(threshold)
    return Gate(
        space=space,
        threshold=value,
        derived=derived,
        percentile=float(percentile),
        real_images=int(real_images.shape[0]),
        real_patients=len(set(patients)),
        real_nn=real_nn,
        same_patient_nearest=rate,
        self_checked=checked,
        _reference=reference,
        _embed=embed,
    )


# ---------------------------------------------------------------------------------------------------------------
# The label gate.


@dataclass(frozen=True, eq=False)
class LabelGate:
    """A candidate is written only when the class guide gives its label a probability of at least ``threshold``.

    The default threshold is calibrated on real images the class guide did not train on (the validation split):
    the ``percentile``-th percentile of the probability it gives each such image's true label. A candidate below it
    looks less like its label than ``100 - percentile`` % of real images of unseen patients do.

    Attributes:
        threshold: minimum probability of the candidate's label (0 = accept everything).
        derived: True when ``threshold`` came from real images (``percentile``), False when it was given.
        percentile: the percentile used for a derived threshold.
        split: the real split it was calibrated on (``"val"``, or ``"train"`` when there is no validation split).
        real_images: how many real images it was calibrated on.
    """

    threshold: float
    derived: bool
    percentile: float
    split: str
    real_images: int
    _classifier: Any

    @torch.no_grad()
    def probabilities(self, images: Tensor, label: int) -> Tensor:
        """``[N]`` float64 probability of ``label`` for images ``[N, C, R, R]`` in [-1, 1] (on the guide's device)."""
        out = [torch.softmax(self._classifier(part).double(), 1)[:, label] for part in images.split(_CHUNK)]
        return torch.cat(out).cpu() if out else torch.zeros(0, dtype=torch.float64)

    def accept(self, probs: Tensor) -> Tensor:
        """``[N]`` bool: probability at least the threshold."""
        return probs >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": round(self.threshold, 6),
            "derived": self.derived,
            "percentile": self.percentile,
            "split": self.split,
            "real_images": self.real_images,
        }


def build_label_gate(
    classifier: Any,
    images: Tensor,
    labels: Tensor,
    *,
    threshold: float | None = None,
    percentile: float = 5.0,
    split: str = "val",
) -> LabelGate:
    """Fit a :class:`LabelGate` on real images the class guide did not see (see its docstring).

    Args:
        classifier: the class guide (logits ``[N, classes]``), on the images' device.
        images: real images ``[N, C, R, R]`` in [-1, 1]; used only when ``threshold`` is ``None``.
        labels: their true labels ``[N]``.
        threshold: a given threshold in [0, 1]; ``None`` = derive it.
        percentile: percentile of the true-label probabilities for a derived threshold, in [0, 100].
        split: the split ``images`` come from (recorded).

    Raises:
        ConfigError: a threshold outside [0, 1] or a percentile outside [0, 100].
        DataError: no real images to derive a threshold from.
    """
    if not (isinstance(percentile, int | float) and 0 <= percentile <= 100):
        raise ConfigError(f"label_percentile must be in [0, 100], got {percentile!r}")
    if threshold is not None:
        if not (isinstance(threshold, int | float) and 0 <= threshold <= 1):
            raise ConfigError(f"label_threshold must be a probability in [0, 1], got {threshold!r}")
        return LabelGate(float(threshold), False, float(percentile), split, int(images.shape[0]), classifier)
    if images.shape[0] == 0:
        raise DataError(f"the {split} split has no images to calibrate the label gate on; pass label_threshold")
    gate = LabelGate(0.0, True, float(percentile), split, int(images.shape[0]), classifier)
    probs = torch.cat([gate.probabilities(images[labels == c], int(c)) for c in labels.unique()])
    value = float(np.percentile(probs.numpy(), percentile))
    return LabelGate(round(value, 6), True, float(percentile), split, int(images.shape[0]), classifier)
