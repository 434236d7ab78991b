"""An independent patient-verification attacker: does a synthetic image show one of the real training patients?

After Packhäuser, Gündel, Münster, Syben, Christlein, Maier, "Deep learning-based patient re-identification is able
to exploit the biometric nature of medical chest X-ray data", Sci Rep 12, 14851 (2022): a Siamese network — one trunk
shared by both images, the absolute difference of the two embeddings, a linear layer to one logit — trained with
binary cross-entropy on balanced pairs of images of the same / of different patients, with acquisition
augmentation. Theirs is a ResNet-50 on 256 px X-rays; ours is a small residual network sized for the CPU, with its own
architecture (GroupNorm residual blocks, average and max pooling) and its own seed, so that it shares neither weights,
nor architecture, nor training data order with the guides that PLAN's walk and the gate use: a figure it reports is
not true by construction of the walk.

Protocol (:func:`verify`):

1. The real training split R is split per patient: one image of every patient with at least two images is held out
   (the calibration images, C); the rest is the gallery G. The attacker trains on pairs from G only.
2. A query image scores against a training patient as the largest pair probability over that patient's gallery
   images (the attacker's best evidence). Calibration images against their own patient are the positives, against
   every other patient the negatives: the verification AUC and retrieval precision@1 (the top-scoring patient is
   the right one) measure the attacker's strength on images it never saw. The match decision asks whether an image
   shows *some* training patient, so it reads an image's best score over all training patients: with its own
   patient in the gallery (a member) and with its own patient left out (an outsider, scored against everyone
   else). The equal-error threshold between those two is the match threshold; their AUC is the attacker's
   membership AUC. (A threshold set on single pairs would call almost every image a match once it is compared
   with hundreds of patients.)
3. Every synthetic image gets its best score over the training patients; the match rate is the share at or above
   the equal-error threshold, beside the mean and the worst case (max). Real images of patients outside R (the
   held-out split H) give the same share for people who are *not* in the training set: the false-match floor a
   synthetic set should not exceed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentwalk.config import StageConfig
from latentwalk.errors import ConfigError, DataError

__all__ = [
    "VerifierConfig",
    "SiameseVerifier",
    "Verifier",
    "train_verifier",
    "fit_verifier",
    "summarize",
    "verify",
    "equal_error",
    "patient_order",
]


# Default augmentation strengths, measured with 80 epochs on 60-patient phantoms (4 images each, 64 px): held-out
# images of training patients, precision@1 / membership AUC / match rate of augmented copies (strength 0.3) vs of
# unseen patients' images. fundus: strength 0.5 -> 0.14 / 0.53 / 0.70 vs 0.67 (colour jitter erases the pigment a
# fundus patient is told by); 0.15 -> 0.29 / 0.57 / 0.34 vs 0.29; 0.05 -> 0.29 / 0.63 / 0.66 vs 0.44; 0 -> 0.43 /
# 0.64 / 0.64 vs 0.60 (copies no longer told from outsiders). cxr keeps 0.5 (the paper tables' attacker).
AUGMENT_GRAY = 0.5
AUGMENT_COLOUR = 0.05
SCORE_ROWS = 1024  # images scored against the gallery at a time by best_scores and the calibration: a multiple
# of embed's 256 and of the 64-query passes, so blocks give the bits of the whole [N, P] without holding it


def augment_strength(cfg: VerifierConfig, channels: int) -> float:
    """The augmentation strength ``cfg`` gives images of ``channels`` channels (``augment=None``: by channels)."""
    if cfg.augment is not None:
        return float(cfg.augment)
    return AUGMENT_GRAY if channels == 1 else AUGMENT_COLOUR


@dataclass(frozen=True)
class VerifierConfig(StageConfig):
    """Options of the verification attacker; the single source of defaults."""

    STAGE: ClassVar[str] = "verifier"

    epochs: int = 80  # passes over the training patients
    patients_per_batch: int = 16  # patients per step; every pair of their images is scored
    images_per_patient: int = 4  # images of each (fewer when a patient has fewer)
    lr: float = 2e-3  # AdamW, cosine schedule
    width: int = 24  # channels of the first stage (x2 per stage, at most x4)
    embed_dim: int = 64
    augment: float | None = None  # acquisition augmentation strength (latentwalk.guides.acquisition_augment);
    # None = by channels: AUGMENT_GRAY for one-channel images, AUGMENT_COLOUR for colour ones (see their comments)
    seed: int = 303  # its own seed (the guides use 0, the re-identification model 101)

    def __post_init__(self) -> None:
        for name in ("epochs", "patients_per_batch", "images_per_patient", "width", "embed_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"verifier {name} must be an integer >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"verifier seed must be an integer >= 0, got {self.seed!r}")
        for name in ("lr", "augment"):
            value = getattr(self, name)
            if name == "augment" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"verifier {name} must be a finite number >= 0, got {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"verifier lr must be > 0, got {self.lr}")


class _Block(nn.Module):
    """Pre-activation residual block with GroupNorm; halves the side."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(min(8, cin), cin), nn.Conv2d(cin, cout, 3, stride=2, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(8, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class SiameseVerifier(nn.Module):
    """Shared trunk -> embedding ``e``; ``logit(a, b) = w · |e(a) - e(b)| + c`` (Packhäuser et al. 2022)."""

    def __init__(self, in_channels: int, resolution: int, width: int = 24, embed_dim: int = 64):
        super().__init__()
        if in_channels not in (1, 3) or resolution < 16:
            raise ConfigError(f"verifier needs 1 or 3 channels and >= 16 px, got {in_channels} x {resolution}")
        stages = max(3, int(math.log2(resolution)) - 3)  # the last map is 8x8 or smaller
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1)]
        cin = width
        for i in range(stages):
            cout = width * 2 ** min(i + 1, 2)
            layers.append(_Block(cin, cout))
            cin = cout
        self.trunk = nn.Sequential(*layers, nn.GroupNorm(8, cin), nn.SiLU())
        self.project = nn.Linear(2 * cin, embed_dim)
        self.head = nn.Linear(embed_dim, 1)

    def embed(self, x: Tensor) -> Tensor:
        h = self.trunk(x)
        return self.project(torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1))

    def pair_logits(self, ea: Tensor, eb: Tensor) -> Tensor:
        """Logits ``[N]`` of embedding pairs ``ea[i], eb[i]``."""
        return self.head((ea - eb).abs()).squeeze(1)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self.pair_logits(self.embed(a), self.embed(b))


def _patient_batches(patients: Tensor, per_batch: int, per_patient: int, gen: torch.Generator) -> list[Tensor]:
    """One epoch: every patient once, in random groups of ``per_batch`` patients, up to ``per_patient`` random
    images of each (rows into ``patients``)."""
    groups = [torch.nonzero(patients == p).flatten() for p in patients.unique()]
    order = torch.randperm(len(groups), generator=gen).tolist()
    batches = []
    for start in range(0, len(order), per_batch):
        picked = [groups[i] for i in order[start : start + per_batch]]
        batches.append(torch.cat([g[torch.randperm(len(g), generator=gen)[:per_patient]] for g in picked]))
    return batches


def _pair_loss(model: SiameseVerifier, emb: Tensor, patients: Tensor) -> Tensor | None:
    """Balanced BCE over every pair of the batch: same-patient pairs and different-patient pairs weigh half each."""
    i, j = torch.triu_indices(len(emb), len(emb), offset=1, device=emb.device)
    target = (patients[i] == patients[j]).float()
    n_pos = int(target.sum())
    if n_pos == 0 or n_pos == len(target):
        return None
    bce = F.binary_cross_entropy_with_logits(model.pair_logits(emb[i], emb[j]), target, reduction="none")
    return 0.5 * (bce * target).sum() / n_pos + 0.5 * (bce * (1 - target)).sum() / (len(target) - n_pos)


def train_verifier(
    images: Tensor,
    patients: Tensor,
    cfg: VerifierConfig | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> tuple[SiameseVerifier, list[float]]:
    """Train the Siamese verifier on ``images`` ``[N, C, R, R]`` (in [-1, 1]) of ``patients`` ``[N]`` (int64).

    Each step embeds up to ``images_per_patient`` augmented images of ``patients_per_batch`` patients and scores
    every pair among them (the same BCE on balanced same / different pairs, many pairs per embedded image).

    Returns:
        The model in eval mode and the mean loss per epoch.

    Raises:
        DataError: no patient with two images (no same-patient pair) or fewer than two patients.
    """
    from tqdm.auto import tqdm

    from latentwalk.guides import acquisition_augment

    cfg = VerifierConfig() if cfg is None else cfg
    counts = torch.bincount(patients.unique(return_inverse=True)[1])
    if len(counts) < 2 or int((counts >= 2).sum()) == 0:
        raise DataError("the verifier needs two or more patients, one of them with two or more images")
    with torch.random.fork_rng(devices=[]):  # the initial weights from its own seed; the caller's RNG untouched
        torch.manual_seed(cfg.seed)
        model = SiameseVerifier(images.shape[1], images.shape[-1], cfg.width, cfg.embed_dim).to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    steps = cfg.epochs * math.ceil(len(counts) / cfg.patients_per_batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    x, pid = images.to(device), patients.to(device)
    strength = augment_strength(cfg, images.shape[1])
    losses: list[float] = []
    model.train()
    for _ in tqdm(range(cfg.epochs), desc="verifier", unit="epoch", disable=not progress):
        total, count = 0.0, 0
        for rows in _patient_batches(patients, cfg.patients_per_batch, cfg.images_per_patient, gen):
            rows = rows.to(device)
            loss = _pair_loss(model, model.embed(acquisition_augment(x[rows], strength, gen)), pid[rows])
            if loss is None:  # a last batch of one patient, or of single images
                continue
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, count = total + loss.item(), count + 1
        losses.append(round(total / max(count, 1), 6))
    return model.eval(), losses


@dataclass
class Verifier:
    """A trained verifier with its gallery: the embedded training images of each patient."""

    model: SiameseVerifier
    gallery: Tensor  # [G, D] embeddings of the gallery images
    gallery_patients: Tensor  # [G] int64 patient index (0..P-1)
    n_patients: int
    device: torch.device
    threshold: float = math.inf  # match when the best score reaches it (set by fit_verifier: the EER threshold)

    @torch.no_grad()
    def embed(self, images: Tensor, batch: int = 256) -> Tensor:
        parts = [self.model.embed(c.to(self.device)) for c in images.split(batch)]
        return torch.cat(parts) if parts else torch.empty(0, self.gallery.shape[1], device=self.device)

    @torch.no_grad()
    def patient_scores(self, images: Tensor, chunk: int = 64) -> Tensor:
        """``[N, P]`` CPU float: each image's best same-patient probability against each training patient."""
        return self._best(images, chunk, probability=True)

    @torch.no_grad()
    def patient_logits(self, images: Tensor, chunk: int = 64) -> Tensor:
        """``[N, P]`` CPU float: the logits of :meth:`patient_scores` (unsaturated where the probability is 1)."""
        return self._best(images, chunk, probability=False)

    def _best(self, images: Tensor, chunk: int, probability: bool) -> Tensor:
        return self._best_of(self.embed(images), chunk, probability)

    @torch.no_grad()
    def _best_of(self, e: Tensor, chunk: int, probability: bool) -> Tensor:
        """``[N, P]`` CPU float of embeddings ``e`` ``[N, D]``, ``chunk`` queries against the gallery at a time."""
        out = torch.full((len(e), self.n_patients), -math.inf)
        index = self.gallery_patients.to(self.device)
        for start in range(0, len(e), chunk):
            q = e[start : start + chunk]  # [q, D]
            logits = self.model.head((q[:, None] - self.gallery[None]).abs()).squeeze(2)  # [q, G]
            best = torch.full((len(q), self.n_patients), -math.inf, device=self.device)
            best = best.scatter_reduce(1, index.expand(len(q), -1), logits, reduce="amax")
            out[start : start + chunk] = (torch.sigmoid(best) if probability else best).cpu()
        return out

    @torch.no_grad()
    def best_scores(self, images: Tensor) -> Tensor:
        """``[N]`` CPU float: each image's best score over all training patients (the maxima of
        :meth:`patient_scores`, :data:`SCORE_ROWS` rows at a time: never the ``[N, P]`` matrix)."""
        e = self.embed(images)
        parts = [self._best_of(e[s : s + SCORE_ROWS], 64, True).max(1).values for s in range(0, len(e), SCORE_ROWS)]
        return torch.cat([*parts, torch.empty(0)])

    def matches(self, images: Tensor) -> Tensor:
        """``[N]`` bool: the image shows some training patient (best score >= threshold)."""
        return self.best_scores(images) >= self.threshold


def equal_error(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """Equal-error rate and its threshold (``score >= t`` = match): the ``t`` where the false-match rate on
    ``neg`` and the false-non-match rate on ``pos`` are closest (their mean is the EER)."""
    thresholds = np.unique(np.concatenate([pos, neg]))
    pos_s, neg_s = np.sort(pos), np.sort(neg)
    fnmr = np.searchsorted(pos_s, thresholds, side="left") / pos.size  # P(pos < t)
    fmr = 1.0 - np.searchsorted(neg_s, thresholds, side="left") / neg.size  # P(neg >= t)
    i = int(np.argmin(np.abs(fmr - fnmr)))
    return float((fmr[i] + fnmr[i]) / 2), float(thresholds[i])


def patient_order(patients: Sequence[Any]) -> list[Any]:
    """The training patients in the attacker's column order (index ``i`` of :meth:`Verifier.patient_scores`)."""
    return sorted(set(patients), key=str)


def calibration_split(patients: Tensor) -> tuple[Tensor, Tensor]:
    """Rows held out (the last image of every patient with >= 2 images, sorted) and the other rows, in order."""
    held = []
    for p in patients.unique():
        rows = torch.nonzero(patients == p).flatten()
        if len(rows) >= 2:
            held.append(int(rows[-1]))
    held_t = torch.tensor(sorted(held), dtype=torch.long)
    mask = torch.ones(len(patients), dtype=torch.bool)
    mask[held_t] = False
    return held_t, torch.nonzero(mask).flatten()


def summarize(ver: Verifier, images: Tensor) -> dict[str, Any]:
    """Match rate at the verifier's threshold, mean and max of the best scores of ``images`` (JSON-ready)."""
    best = ver.best_scores(images)
    return {
        "images": len(best),
        "match_rate": round(float((best >= ver.threshold).float().mean()), 6),
        "mean_best_score": round(float(best.mean()), 6),
        "max_best_score": round(float(best.max()), 6),
    }


@torch.no_grad()
def _calibrate(ver: Verifier, images: Tensor, own: Tensor) -> dict[str, Any]:
    """The calibration figures of ``images`` ``[C, ...]`` of patients ``own`` ``[C]`` without the ``[C, P]`` score
    matrix (it grows with the square of the patients): rows are scored :data:`SCORE_ROWS` at a time, twice (the
    negatives are counted against the sorted positives, :func:`~latentwalk.evaluate.privacy.auc_score_chunked`).
    The same numbers as from the whole matrix: the passes batch the same embeddings and 64-query blocks.

    Returns:
        ``present`` ``[C]`` (best score with the image's own patient in the gallery: a member), ``absent`` ``[C]``
        (with it left out: the best an outsider could score), both float32 numpy; ``precision_at_1``;
        ``verification_auc`` over (image, own patient) against (image, other patient) pairs.
    """
    from latentwalk.evaluate.privacy import auc_score_chunked

    e = ver.embed(images)  # [C, D]

    def blocks() -> Iterator[tuple[Tensor, Tensor]]:
        for s in range(0, len(e), SCORE_ROWS):
            cal = ver._best_of(e[s : s + SCORE_ROWS], 64, True)  # [c, P]
            yield cal, own[s : s + len(cal)]

    pos, present, absent, top_ok = [], [], [], []
    for cal, o in blocks():
        rows = torch.arange(len(o))
        pos.append(cal[rows, o])
        present.append(cal.max(1).values)
        top_ok.append(cal.argmax(1) == o)
        cal[rows, o] = -math.inf
        absent.append(cal.max(1).values)

    def negatives() -> Iterator[Tensor]:  # every (image, other patient) score
        for cal, o in blocks():
            cal[torch.arange(len(o)), o] = -math.inf
            yield cal[torch.isfinite(cal)]

    return {
        "present": torch.cat(present).numpy(),
        "absent": torch.cat(absent).numpy(),
        "precision_at_1": float(torch.cat(top_ok).float().mean()),
        "verification_auc": auc_score_chunked(torch.cat(pos), negatives()),
    }


def fit_verifier(
    train_images: Tensor,
    train_patients: Sequence[Any],
    cfg: VerifierConfig | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> tuple[Verifier, dict[str, Any]]:
    """Train the attacker on the training split (less one calibration image per patient) and calibrate it.

    Returns:
        The :class:`Verifier` (its ``threshold`` set) and the JSON-ready ``attacker`` figures: verification AUC,
        membership AUC, EER and threshold, precision@1 and the member match rate on the calibration images, the
        loss curve, a description.

    Raises:
        DataError: fewer than two patients with two or more images (no calibration).
    """
    from latentwalk.evaluate.privacy import auc_score

    cfg = VerifierConfig() if cfg is None else cfg
    names = patient_order(train_patients)
    pid = torch.tensor([names.index(p) for p in train_patients], dtype=torch.long)
    held, gallery = calibration_split(pid)
    if len(held) < 2:
        raise DataError("the verifier needs two or more training patients with two or more images to calibrate")
    dev = torch.device(device)
    model, losses = train_verifier(train_images[gallery], pid[gallery], cfg, dev, progress)
    ver = Verifier(model, torch.empty(0), pid[gallery], len(names), dev)
    ver.gallery = ver.embed(train_images[gallery])
    cal = _calibrate(ver, train_images[held], pid[held])
    present, absent = cal["present"], cal["absent"]
    eer, ver.threshold = equal_error(present, absent)
    attacker = {
        "verification_auc": round(cal["verification_auc"], 6),
        "membership_auc": round(auc_score(present, absent), 6),
        "eer": round(eer, 6),
        "threshold": round(ver.threshold, 6),
        "precision_at_1": round(cal["precision_at_1"], 6),
        "member_match_rate": round(float((present >= ver.threshold).mean()), 6),  # unseen images of members
        "calibration_images": len(held),
        "gallery_images": len(gallery),
        "patients": len(names),
        "loss": losses,
        "model": f"Siamese residual CNN (width {cfg.width}, embedding {cfg.embed_dim}), |e1 - e2| -> logit, "
        f"seed {cfg.seed}, {cfg.epochs} epochs of all-pairs batches, augmentation "
        f"{augment_strength(cfg, train_images.shape[1]):g} (independent of the guides)",
    }
    return ver, attacker


def verify(
    train_images: Tensor,
    train_patients: Sequence[Any],
    queries: dict[str, Tensor],
    cfg: VerifierConfig | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """Train the attacker on the training split and score each named query set against its patients.

    Args:
        train_images: ``[N, C, R, R]`` real training images in [-1, 1].
        train_patients: ``N`` patient identifiers (any hashable).
        queries: name -> images ``[M, C, R, R]``, e.g. ``{"synthetic": S, "heldout": H}``; each gets a summary
            (match rate at the equal-error threshold, mean and max of the best scores).

    Returns:
        JSON-ready dict: ``attacker`` (:func:`fit_verifier`) and one entry per non-empty query set.

    Raises:
        DataError: fewer than two patients with two or more images (no calibration).
    """
    ver, attacker = fit_verifier(train_images, train_patients, cfg, device, progress)
    result: dict[str, Any] = {"attacker": attacker}
    for name, images in queries.items():
        if len(images):
            result[name] = summarize(ver, images)
    return result
