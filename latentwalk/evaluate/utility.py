"""Downstream utility of a synthetic dataset: "train on synthetic, test on real" (TSTR).

The TSTR protocol (Esteban, Hyland and Rätsch, "Real-valued (medical) time series generation with recurrent
conditional GANs", arXiv 1706.02633, 2017; used for synthetic medical images by PLAN, Pennisi et al., MICCAI 2023)
trains one classifier recipe on (a) the real training split and (b) the synthetic set, for several seeds, and tests
both on the identity-disjoint real test split. The gap between the two says how much of the real data's diagnostic
signal the synthetic set keeps; the real-trained ("TRTR") row is the reference a synthetic set is compared with.

The classifier is a guide architecture of :mod:`latentwalk.guides` (``cnn`` or ``resnet18``) trained with the
guides' loop: AdamW, cosine learning-rate decay to 0, acquisition augmentation. Images are what the generator
writes: ``[N, C, R, R]`` float32 in [-1, 1], C = 1 or 3, R >= 16; the real splits must be loaded at the generator's
resolution and channels (:func:`latentwalk.data.preprocess.load_tensors`).

Metric definitions (:func:`classification_metrics`), with ``pred = argmax(probs)``:

* ``accuracy``: share of ``pred == label``.
* ``balanced_accuracy``: mean recall over the classes present in the labels.
* ``auc``: 2 classes: ROC AUC of ``probs[:, 1]`` for class 1, from the Mann-Whitney rank statistic with average
  ranks for ties (a tied positive/negative pair counts 1/2). More classes: the macro mean of one-vs-rest AUCs of
  ``probs[:, c]`` over the classes ``c`` present in the labels. ``None`` when fewer than 2 classes are present.
* ``f1``: 2 classes: F1 of class 1, ``2 TP / (2 TP + FP + FN)``; ``None`` when class 1 is neither a label nor a
  prediction. More classes: macro mean of per-class F1 over the classes that occur as a label or a prediction
  (as scikit-learn's ``average="macro"``); ``None`` never happens for ``N >= 1``.
* ``qwk``: Cohen's quadratic weighted kappa between ``pred`` and the labels over all C classes,
  ``1 - sum(W O) / sum(W E)`` with ``W_ij = (i - j)^2 / (C - 1)^2``, ``O`` the confusion counts and ``E`` the outer
  product of the label and prediction histograms divided by N. 1 = perfect agreement, 0 = chance, < 0 = worse than
  chance; meaningful for ordinal grades (DR 0-4), reported always (for C = 2 it is Cohen's plain kappa). ``None``
  when labels and predictions all fall in one and the same class (``sum(W E) = 0``).

Seed aggregates in :class:`UtilityResult` are the mean and the SAMPLE standard deviation (``ddof=1``) over the
seeds whose value is defined; the std is ``None`` with a single defined seed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentwalk.config import StageConfig
from latentwalk.errors import ConfigError, DataError
from latentwalk.guides import ARCHITECTURES, GuideConfig, GuideContract, fit_model, init_model

__all__ = [
    "METRICS",
    "SOURCES",
    "UtilityConfig",
    "UtilityResult",
    "classification_metrics",
    "train_classifier",
    "predict_proba",
    "per_sample_loss",
    "tstr",
]

METRICS = ("accuracy", "balanced_accuracy", "auc", "f1", "qwk")  # aggregated over seeds (``n`` is not)
SOURCES = ("real", "synthetic")  # training sources of a TSTR run, in report order
STD_DDOF = 1  # seed std is the sample standard deviation
_ROLE = "utility"  # seed-derivation key: the same seed gives real- and synthetic-trained models the same init
_RANGE_TOLERANCE = 1e-3  # images may exceed [-1, 1] by this much (resampling round-off)


# ----------------------------------------------------------------------------------------------------------------
# Configuration and result


@dataclass(frozen=True)
class UtilityConfig(StageConfig):
    """Options of the TSTR utility evaluation; one classifier recipe for every training source and seed.

    Numeric options follow :class:`latentwalk.guides.GuideConfig` and are validated by its rules.
    """

    STAGE: ClassVar[str] = "utility evaluation"

    arch: str = "cnn"  # classifier: "cnn" (compact guide CNN) | "resnet18" (torchvision ResNet-18, random init)
    epochs: int = 30  # passes over the training set, per model
    batch: int = 32  # images per step (>= 2: batch norm needs two)
    lr: float = 1e-3  # AdamW peak learning rate; cosine decay to 0 over the run
    weight_decay: float = 1e-4  # AdamW decoupled weight decay; 0 = off
    augment: float = 1.0  # acquisition-augmentation strength as for the guides: 1 = default ranges, 0 = off, <= 3
    seeds: tuple[int, ...] = (0, 1, 2)  # one model per seed and source; the first seed's models are kept
    width: int = 32  # cnn only: channels of the first conv block (later blocks 2x and 4x)
    embed_dim: int = 128  # size of the penultimate embedding

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ConfigError(
                f'unknown utility classifier architecture "{self.arch}"; expected one of {", ".join(ARCHITECTURES)}'
            )
        seeds = self.seeds
        if isinstance(seeds, (list, tuple)):  # JSON gives a list; store a tuple so the config stays hashable
            seeds = tuple(seeds)
            object.__setattr__(self, "seeds", seeds)
        ok = (
            isinstance(seeds, tuple)
            and len(seeds) > 0
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
            and len(set(seeds)) == len(seeds)
        )
        if not ok:
            raise ConfigError(
                f"seeds must be a non-empty sequence of distinct integers >= 0, e.g. (0, 1, 2); got {seeds!r}"
            )
        self.guide_config(seeds[0])  # the remaining options, by the guides' rules

    def guide_config(self, seed: int) -> GuideConfig:
        """The :class:`~latentwalk.guides.GuideConfig` that trains this recipe's model for ``seed``."""
        return GuideConfig(
            arch=self.arch,
            epochs=self.epochs,
            batch=self.batch,
            lr=self.lr,
            weight_decay=self.weight_decay,
            augment=self.augment,
            seed=seed,
            embed_dim=self.embed_dim,
            width=self.width,
            id_val_fraction=0.0,
        )

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["seeds"] = list(self.seeds)
        return d


@dataclass(frozen=True)
class UtilityResult:
    """Outcome of :func:`tstr`.

    Attributes:
        per_seed: ``{source: [{"seed", "accuracy", "balanced_accuracy", "auc", "f1", "qwk", "n",
            "final_train_loss"}, ...]}`` in seed order; source is ``"real"`` (absent when no real training split was
            given) and ``"synthetic"``. Metrics are on the real test split.
        mean: ``{source: {metric: mean over the seeds where defined, or None}}`` for each name in :data:`METRICS`.
        std: ``{source: {metric: sample std (ddof=1) over the seeds where defined, or None}}``.
        seeds: the seeds, in training order.
        n_classes: number of classes C.
        n_images: images per set: ``{"real": ..., "synthetic": ..., "real_test": ...}``.
        config: the recipe.
        notes: facts a reader of the numbers needs (classes missing from a set, undefined metrics).
        seconds: wall time of the call.
        models: ``{source: model}`` trained with the first seed (seed 0 by default), in eval mode on the training
            device, kept in memory for a membership-inference attack; never written by :meth:`to_dict`.
    """

    per_seed: dict[str, list[dict[str, Any]]]
    mean: dict[str, dict[str, float | None]]
    std: dict[str, dict[str, float | None]]
    seeds: tuple[int, ...]
    n_classes: int
    n_images: dict[str, int]
    config: UtilityConfig
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    models: dict[str, nn.Module] = field(default_factory=dict, repr=False, compare=False)

    @property
    def sources(self) -> tuple[str, ...]:
        """Training sources evaluated, in report order."""
        return tuple(s for s in SOURCES if s in self.per_seed)

    def gap(self) -> dict[str, float | None]:
        """Mean synthetic-trained minus mean real-trained value per metric; ``{}`` without a real source."""
        if "real" not in self.mean:
            return {}
        syn, real = self.mean["synthetic"], self.mean["real"]
        return {m: None if syn[m] is None or real[m] is None else syn[m] - real[m] for m in METRICS}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (plain dicts, lists, numbers, strings and None); the models are left out."""
        return {
            "protocol": "TSTR: train on each source, test on the identity-disjoint real test split",
            "seeds": list(self.seeds),
            "n_classes": self.n_classes,
            "n_images": dict(self.n_images),
            "metrics": list(METRICS),
            "std_ddof": STD_DDOF,
            "per_seed": {s: [dict(row) for row in rows] for s, rows in self.per_seed.items()},
            "mean": {s: dict(v) for s, v in self.mean.items()},
            "std": {s: dict(v) for s, v in self.std.items()},
            "gap_synthetic_minus_real": self.gap(),
            "notes": list(self.notes),
            "config": self.config.to_dict(),
            "seconds": self.seconds,
        }


# ----------------------------------------------------------------------------------------------------------------
# Metrics


def classification_metrics(probs: Tensor | np.ndarray, labels: Tensor | np.ndarray) -> dict[str, Any]:
    """Accuracy, balanced accuracy, AUC, F1 and quadratic weighted kappa of class probabilities.

    Definitions are in the module docstring. A value that is undefined for the input (AUC with one class present,
    binary F1 with class 1 neither labelled nor predicted, kappa when everything is one class) is ``None``;
    nothing raises for a missing class or constant predictions.

    Args:
        probs: scores ``[N, C]`` (C >= 2), e.g. softmax probabilities; higher = more likely. Ties in the arg-max go
            to the lower class index.
        labels: true class indices ``[N]``, integers in ``[0, C)``.

    Returns:
        ``{"accuracy", "balanced_accuracy", "auc", "f1", "qwk"}`` as Python floats or ``None``, and ``"n"`` = N.

    Raises:
        DataError: empty input, wrong shapes, non-finite scores, non-integer or out-of-range labels.
    """
    p = torch.as_tensor(probs).detach().cpu()
    y = torch.as_tensor(labels).detach().cpu()
    if p.ndim != 2 or p.shape[1] < 2:
        raise DataError(f"probs must be [N, C] scores with C >= 2 classes, got shape {list(p.shape)}")
    if y.ndim != 1 or len(y) != len(p):
        raise DataError(f"labels must be [N] = [{len(p)}] class indices matching probs, got shape {list(y.shape)}")
    if len(y) == 0:
        raise DataError("classification metrics need at least one image; got empty probs and labels")
    if not torch.isfinite(p).all():
        raise DataError("probs contain NaN or infinite values; check the model's outputs")
    y = _as_class_indices(y, p.shape[1], "labels")
    scores = p.double().numpy()  # [N, C]
    truth = y.numpy()  # [N]
    n, c = scores.shape
    pred = scores.argmax(axis=1)  # [N], first maximum on ties
    confusion = np.bincount(truth * c + pred, minlength=c * c).reshape(c, c)  # [C, C]: rows true, columns predicted
    present = np.flatnonzero(confusion.sum(axis=1))
    recalls = confusion[present, present] / confusion[present].sum(axis=1)
    return {
        "accuracy": float(np.trace(confusion) / n),
        "balanced_accuracy": float(recalls.mean()),
        "auc": _auc(scores, truth),
        "f1": _f1(confusion),
        "qwk": _quadratic_weighted_kappa(confusion),
        "n": int(n),
    }


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` [N]; tied values share the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.concatenate([[0], np.flatnonzero(xs[1:] != xs[:-1]) + 1])  # first index of each tie group
    ends = np.concatenate([starts[1:], [len(xs)]])
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # mean of ranks start+1 .. end
    return ranks


def _binary_auc(score: np.ndarray, positive: np.ndarray) -> float | None:
    """ROC AUC of ``score`` [N] for the boolean ``positive`` [N] (Mann-Whitney U with ties counted 1/2)."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    rank_sum = _average_ranks(score)[positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _auc(scores: np.ndarray, truth: np.ndarray) -> float | None:
    c = scores.shape[1]
    if c == 2:
        return _binary_auc(scores[:, 1], truth == 1)
    per_class = [_binary_auc(scores[:, k], truth == k) for k in np.unique(truth)]
    defined = [a for a in per_class if a is not None]
    return float(np.mean(defined)) if defined else None


def _f1(confusion: np.ndarray) -> float | None:
    tp = np.diag(confusion).astype(np.float64)  # [C]
    fp = confusion.sum(axis=0) - tp  # predicted k, label other
    fn = confusion.sum(axis=1) - tp  # label k, predicted other
    denom = 2 * tp + fp + fn
    if confusion.shape[0] == 2:
        return float(2 * tp[1] / denom[1]) if denom[1] > 0 else None
    occurring = denom > 0  # classes seen as a label or a prediction
    return float(np.mean(2 * tp[occurring] / denom[occurring])) if occurring.any() else None


def _quadratic_weighted_kappa(confusion: np.ndarray) -> float | None:
    c = confusion.shape[0]
    observed = confusion.astype(np.float64)  # [C, C]
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()  # [C, C], chance agreement
    i, j = np.meshgrid(np.arange(c), np.arange(c), indexing="ij")
    weights = (i - j) ** 2 / (c - 1) ** 2  # [C, C]
    denom = float((weights * expected).sum())
    if denom <= 0:
        return None
    return float(1 - (weights * observed).sum() / denom)


# ----------------------------------------------------------------------------------------------------------------
# Training and prediction


def train_classifier(
    images: Tensor,
    labels: Tensor,
    n_classes: int,
    cfg: UtilityConfig = UtilityConfig(),
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> nn.Module:
    """Train the utility classifier recipe ``cfg`` on one training set with one seed.

    Initialisation, batch order and augmentation derive from ``seed`` only (torch's global RNG is untouched), so a
    seed repeats bit for bit on the CPU.

    Args:
        images: ``[N, C, R, R]`` float in [-1, 1], C = 1 or 3, R >= 16, N >= 2.
        labels: ``[N]`` integer class indices in ``[0, n_classes)``.
        n_classes: number of output classes (>= 2); classes absent from ``labels`` are allowed.
        cfg: the recipe.
        seed: integer >= 0.
        device: torch device to train on (``None`` = CPU).
        progress: show a tqdm bar over epochs.

    Returns:
        The model (a :class:`~latentwalk.guides.GuideCNN` or ``GuideResNet18``) on ``device``, in eval mode;
        ``model(x)`` gives logits ``[N, n_classes]``.

    Raises:
        ConfigError: bad ``n_classes`` or ``seed``.
        DataError: malformed images or labels, fewer than 2 images, labels out of range.
    """
    model, _ = _train(images, labels, n_classes, cfg, seed, device, progress)
    return model


def _train(
    images: Tensor,
    labels: Tensor,
    n_classes: int,
    cfg: UtilityConfig,
    seed: int,
    device: str | torch.device | None,
    progress: bool,
) -> tuple[nn.Module, list[float]]:
    """:func:`train_classifier` that also returns the mean training loss per epoch."""
    _check_n_classes(n_classes)
    images, labels = _check_set((images, labels), n_classes, "training", min_images=2)
    gcfg = cfg.guide_config(seed)  # validates seed
    device = torch.device("cpu") if device is None else torch.device(device)
    contract = GuideContract(resolution=images.shape[-1], channels=images.shape[1])
    model = init_model(gcfg, contract, n_classes, _ROLE)
    losses = fit_model(model, images, labels, torch.arange(len(images)), gcfg, _ROLE, device, progress)
    return model.eval(), losses


@torch.no_grad()
def _logits(model: nn.Module, images: Tensor, device: str | torch.device | None, batch: int) -> Tensor:
    """Logits ``[N, K]`` (CPU float32) of ``model`` in eval mode; the model's train/eval mode is restored."""
    if not isinstance(images, Tensor) or images.ndim != 4 or len(images) == 0:
        shape = list(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise DataError(f"expected a non-empty image tensor [N, C, R, R] in [-1, 1], got {shape}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"batch must be an integer >= 1, got {batch!r}")
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    device = torch.device(device)
    model.to(device)
    was_training = model.training
    model.eval()
    try:
        out = [model(chunk.to(device, torch.float32)).float().cpu() for chunk in images.split(batch)]
    finally:
        model.train(was_training)
    return torch.cat(out)  # [N, K]


def predict_proba(
    model: nn.Module, images: Tensor, device: str | torch.device | None = None, batch: int = 256
) -> Tensor:
    """Softmax class probabilities of ``model`` on ``images``, in eval mode and without gradients.

    Args:
        model: a classifier giving logits ``[N, K]``; its train/eval mode is restored afterwards.
        images: ``[N, C, R, R]`` float in [-1, 1], any device.
        device: where to run (the model is moved there); ``None`` = the model's parameters' device.
        batch: images per forward pass.

    Returns:
        ``[N, K]`` float32 on the CPU, rows summing to 1.

    Raises:
        DataError: ``images`` is not a non-empty ``[N, C, R, R]`` tensor.
        ConfigError: ``batch`` < 1.
    """
    return F.softmax(_logits(model, images, device, batch), dim=1)


def per_sample_loss(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    device: str | torch.device | None = None,
    batch: int = 256,
) -> Tensor:
    """Cross-entropy of each image under ``model`` (eval mode, no gradients), e.g. for a loss-threshold
    membership-inference attack.

    Args:
        model: a classifier giving logits ``[N, K]``; its train/eval mode is restored afterwards.
        images: ``[N, C, R, R]`` float in [-1, 1], any device.
        labels: ``[N]`` integer class indices in ``[0, K)``.
        device: where to run (the model is moved there); ``None`` = the model's parameters' device.
        batch: images per forward pass.

    Returns:
        ``[N]`` float32 on the CPU, ``-log softmax(model(x))[label]`` (natural log, >= 0).

    Raises:
        DataError: malformed images, or labels of the wrong length, type or range.
        ConfigError: ``batch`` < 1.
    """
    logits = _logits(model, images, device, batch)  # [N, K]
    if not isinstance(labels, Tensor) or labels.shape != (len(logits),):
        shape = list(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise DataError(f"labels must be a tensor [N] = [{len(logits)}] of class indices, got {shape}")
    labels = _as_class_indices(labels.cpu(), logits.shape[1], "labels")
    return F.cross_entropy(logits, labels, reduction="none")  # [N]


# ----------------------------------------------------------------------------------------------------------------
# TSTR


def tstr(
    real_train: tuple[Tensor, Tensor] | None,
    synthetic: tuple[Tensor, Tensor],
    real_test: tuple[Tensor, Tensor],
    n_classes: int,
    cfg: UtilityConfig = UtilityConfig(),
    device: str | torch.device | None = None,
    progress: bool = False,
) -> UtilityResult:
    """Train on real and on synthetic images, test both on real: one model per source and seed.

    All inputs are validated before any training starts.

    Args:
        real_train: ``(images [N, C, R, R] in [-1, 1], labels [N])`` of the real training split, or ``None`` to
            evaluate the synthetic set alone (no reference row).
        synthetic: ``(images, labels)`` of the synthetic set, labels as generated (the class conditioning).
        real_test: ``(images, labels)`` of the real test split, identity-disjoint from the patients the generator
            and ``real_train`` saw.
        n_classes: number of classes C (>= 2); every label must lie in ``[0, C)``.
        cfg: the classifier recipe and the seeds.
        device: torch device to train and test on (``None`` = CPU); the caller resolves "auto".
        progress: show a tqdm bar over epochs per model.

    Returns:
        :class:`UtilityResult` with per-seed metrics, mean and sample std (ddof=1) per source, notes, and the
        first seed's model per source in ``models``.

    Raises:
        ConfigError: bad ``n_classes``.
        DataError: a set that is not an (images, labels) pair, is empty (a training set needs >= 2 images), has
            malformed images, labels out of range, or differs from the others in channels or resolution.
    """
    started = time.perf_counter()
    _check_n_classes(n_classes)
    train_sets: dict[str, tuple[Tensor, Tensor]] = {}
    if real_train is not None:
        train_sets["real"] = _check_set(real_train, n_classes, "real_train", min_images=2)
    train_sets["synthetic"] = _check_set(synthetic, n_classes, "synthetic", min_images=2)
    test_x, test_y = _check_set(real_test, n_classes, "real_test", min_images=1)
    _check_same_geometry({**{_SET_NAMES[s]: v[0] for s, v in train_sets.items()}, "real_test": test_x})
    notes = _coverage_notes(train_sets, test_y, n_classes)

    per_seed: dict[str, list[dict[str, Any]]] = {}
    models: dict[str, nn.Module] = {}
    for source, (x, y) in train_sets.items():
        rows = []
        for seed in cfg.seeds:
            model, losses = _train(x, y, n_classes, cfg, seed, device, progress)
            metrics = classification_metrics(predict_proba(model, test_x), test_y)
            rows.append({"seed": seed, **metrics, "final_train_loss": losses[-1] if losses else None})
            if seed == cfg.seeds[0]:
                models[source] = model
        per_seed[source] = rows

    mean, std = {}, {}
    for source, rows in per_seed.items():
        mean[source], std[source] = {}, {}
        for metric in METRICS:
            values = [r[metric] for r in rows if r[metric] is not None]
            mean[source][metric] = float(np.mean(values)) if values else None
            std[source][metric] = float(np.std(values, ddof=STD_DDOF)) if len(values) > STD_DDOF else None
            if len(values) < len(rows):
                notes.append(
                    f"{metric} of {source}-trained models is undefined for {len(rows) - len(values)} of "
                    f"{len(rows)} seeds; mean and std use the seeds where it is defined"
                )
    return UtilityResult(
        per_seed=per_seed,
        mean=mean,
        std=std,
        seeds=tuple(cfg.seeds),
        n_classes=n_classes,
        n_images={**{s: len(v[1]) for s, v in train_sets.items()}, "real_test": len(test_y)},
        config=cfg,
        notes=tuple(notes),
        seconds=round(time.perf_counter() - started, 3),
        models=models,
    )


_SET_NAMES = {"real": "real_train", "synthetic": "synthetic"}


def _coverage_notes(train_sets: dict[str, tuple[Tensor, Tensor]], test_y: Tensor, n_classes: int) -> list[str]:
    """Notes on classes missing from a training set or from the test split."""
    notes = []
    for name, y in [*((_SET_NAMES[s], v[1]) for s, v in train_sets.items()), ("real_test", test_y)]:
        missing = sorted(set(range(n_classes)) - set(y.unique().tolist()))
        if missing:
            notes.append(f"{name} has no image of class(es) {missing}")
    if len(test_y.unique()) < 2:
        notes.append("real_test holds a single class, so AUC is undefined (None)")
    return notes


# ----------------------------------------------------------------------------------------------------------------
# Validation


def _check_n_classes(n_classes: int) -> None:
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise ConfigError(f"n_classes must be an integer >= 2, got {n_classes!r}")


def _as_class_indices(y: Tensor, n_classes: int, what: str) -> Tensor:
    """``y`` as int64 after checking it holds integers in ``[0, n_classes)``; else a DataError."""
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise DataError(f"{what} must be integer class indices (e.g. torch.int64), got dtype {y.dtype}; use .long()")
    y = y.long()
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise DataError(
            f"{what} must lie in [0, {n_classes - 1}] for {n_classes} classes, found values from {int(y.min())} to "
            f"{int(y.max())}; pass the right n_classes or remap the labels"
        )
    return y


def _check_set(pair: Any, n_classes: int, what: str, min_images: int) -> tuple[Tensor, Tensor]:
    """Validate an ``(images, labels)`` pair; returns float32 images and int64 labels (same device as given)."""
    if not (isinstance(pair, Sequence) and len(pair) == 2 and all(isinstance(t, Tensor) for t in pair)):
        raise DataError(
            f"{what} must be a pair of tensors (images [N, C, R, R], labels [N]), got {type(pair).__name__}"
        )
    images, labels = pair
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[2] != images.shape[3]:
        raise DataError(
            f"{what} images must be square [N, C, R, R] with C = 1 or 3, got shape {list(images.shape)}; load them "
            f"with latentwalk.data.preprocess.load_tensors at the generator's resolution and channels"
        )
    if len(images) < min_images:
        need = "is empty" if len(images) == 0 else f"has {len(images)} image, fewer than the {min_images} needed"
        raise DataError(f"{what} {need}; check the split or the synthetic dataset folder")
    if images.shape[-1] < 16:
        raise DataError(f"{what} images are {images.shape[-1]} px; the classifier needs a side >= 16 pixels")
    if labels.shape != (len(images),):
        raise DataError(f"{what} labels must be [N] = [{len(images)}] class indices, got shape {list(labels.shape)}")
    labels = _as_class_indices(labels, n_classes, f"{what} labels")
    if images.is_complex() or not images.is_floating_point():
        raise DataError(
            f"{what} images must be floating point in [-1, 1], got dtype {images.dtype}; map uint8 with x / 127.5 - 1"
        )
    images = images.float()
    if not torch.isfinite(images).all():
        raise DataError(f"{what} images contain NaN or infinite values")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1 - _RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE:
        raise DataError(
            f"{what} images must lie in [-1, 1], found values from {lo:.4g} to {hi:.4g}; map [0, 255] with "
            f"x / 127.5 - 1 or clamp generator outputs"
        )
    return images, labels


def _check_same_geometry(images: dict[str, Tensor]) -> None:
    """All sets must share channels and resolution; else a DataError naming each set's ``C x R x R``."""
    shapes = {name: tuple(x.shape[1:]) for name, x in images.items()}
    if len(set(shapes.values())) > 1:
        shown = ", ".join(f"{name} {'x'.join(map(str, s))}" for name, s in shapes.items())
        raise DataError(
            f"sets differ in channels or resolution (C x R x R: {shown}); load the real splits with "
            f"latentwalk.data.preprocess.load_tensors at the generator's img_resolution and img_channels"
        )
