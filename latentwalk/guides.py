"""Guide classifiers that steer a PLAN walk: the identity classifier φ_id and the class classifier φ_class.

PLAN (Pennisi et al., "Privacy-preserving latent walks", MICCAI 2023, arXiv 2307.02984; reference code
github.com/perceivelab/PLAN) optimises a path in a GAN's latent space so that its images keep the class of its
endpoints (cross-entropy of φ_class) while φ_id cannot tell which training patient they show (KL of φ_id's softmax
to uniform). Both classifiers therefore read exactly what the generator writes: ``[N, C, R, R]`` float32 in
[-1, 1] at the generator's native resolution, C = 1 (X-ray) or 3 (fundus). As in the reference code, gray images
are repeated to 3 channels in front of the ImageNet-style backbone (``resnet18``); the compact ``cnn`` reads the
native channels.

* φ_id is closed-set: one class per patient (identity) of the training split. It is trained with augmentations that
  mimic acquisition changes (small shifts, rotations and zoom; brightness, contrast, gamma; sensor noise), so it
  recognises a patient from any of their images. Its accuracy is measured on held-out IMAGES of training patients:
  of each patient with n >= 2 training images, ``round(id_val_fraction * n)`` images (at least 1, at most n - 1)
  are held out and never trained on; patients with a single image are used for training only.
* φ_class predicts the clinical label (e.g. TB vs normal, DR grade 0-4); it is trained on every training image and
  validated on the identity-disjoint ``val`` split (no patient in common).

On disk a guides folder holds ``identity.safetensors`` + ``identity.json`` and ``class.safetensors`` +
``class.json``. The JSON records the architecture and its constructor arguments, the input contract, the label
names, the number of identities, training metrics, the configuration and a SHA-256 fingerprint of the training
tensors. Patient identifiers and file names are never written: identity class ``i`` is the i-th training identity
in sorted order, which :func:`identity_classes` recomputes in memory from the dataset index (the fingerprint covers
each image's identity class index, so a changed assignment is detectable). No ``identities.json`` is written.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_zoo.seeds import derive_seed
from latentwalk.config import StageConfig
from latentwalk.data.records import DatasetIndex
from latentwalk.errors import ConfigError, DataError, MissingWeightsError
from latentwalk.guide_nets import ARCHITECTURES, GuideCNN, GuideResNet18, build_guide
from latentwalk.io import load_checked_safetensors, read_model_bytes, read_versioned_json
from latentwalk.provenance import versions

__all__ = [
    "ARCHITECTURES",
    "FORMAT",
    "FORMAT_VERSION",
    "ROLES",
    "GuideConfig",
    "GuideContract",
    "GuideResult",
    "Guides",
    "GuideCNN",
    "GuideResNet18",
    "acquisition_augment",
    "build_guide",
    "identity_classes",
    "train_guides",
    "load_guides",
    "check_contract",
    "init_model",
    "fit_model",
]

FORMAT = "latentwalk.guides"
FORMAT_VERSION = 1
ROLES = ("identity", "class")  # file stems inside a guides folder


# ----------------------------------------------------------------------------------------------------------------
# Configuration and results


@dataclass(frozen=True)
class GuideConfig(StageConfig):
    """Options of guide training; the single source of defaults for the API and the CLI.

    Both models use the same options but share no parameters, optimiser state or random stream.
    """

    STAGE: ClassVar[str] = "guide training"

    arch: str = "cnn"  # "cnn" (compact, fast on CPU) | "resnet18" (torchvision ResNet-18)
    epochs: int = 60  # passes over the training images, per model
    batch: int = 32  # images per step (>= 2: batch norm needs two)
    lr: float = 1e-3  # AdamW peak learning rate; cosine decay to 0 over the run
    weight_decay: float = 1e-4  # AdamW decoupled weight decay; 0 = off
    augment: float = 1.0  # acquisition-augmentation strength: 1 = default ranges, 0 = off, up to 3
    seed: int = 0  # seeds initialisation, hold-out choice, batch order and augmentation
    embed_dim: int = 128  # size D of the penultimate embedding returned by embed(x)
    width: int = 32  # cnn only: channels of the first conv block (later blocks 2x and 4x)
    id_val_fraction: float = 0.25  # share of each patient's train images held out for identity accuracy; 0 = none
    weights: str | None = None  # resnet18 only: torchvision state_dict (.pth) to start from; None = random init

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f'unknown guide architecture "{self.arch}"; expected one of {", ".join(ARCHITECTURES)}')
        for name in ("epochs", "embed_dim", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 2:
            raise ConfigError(f"batch must be an integer >= 2 (batch norm needs two images), got {self.batch!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and math.isfinite(self.weight_decay)):
            raise ConfigError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        if not (isinstance(self.augment, (int, float)) and 0 <= self.augment <= 3):
            raise ConfigError(f"augment strength must be between 0 (off) and 3, got {self.augment!r}")
        if not (isinstance(self.id_val_fraction, (int, float)) and 0 <= self.id_val_fraction < 1):
            raise ConfigError(f"id_val_fraction must be in [0, 1), got {self.id_val_fraction!r}")
        if self.weights is not None and self.arch != "resnet18":
            raise ConfigError(f'weights (an initial state_dict) apply to arch "resnet18" only, not "{self.arch}"')


@dataclass(frozen=True)
class GuideContract:
    """What images a guide reads: ``[N, channels, resolution, resolution]`` float32 in ``value_range``."""

    resolution: int
    channels: int
    value_range: tuple[float, float] = (-1.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {"resolution": self.resolution, "channels": self.channels, "range": list(self.value_range)}


@dataclass(frozen=True)
class GuideResult:
    """What :func:`train_guides` wrote and measured.

    Attributes:
        out_dir: the guides folder.
        files: paths of ``identity.*`` and ``class.*`` (safetensors and JSON).
        contract: the input contract of both models.
        n_identities: identity classes (training patients).
        label_names: class names of φ_class, in label order.
        metrics: ``{"identity": {...}, "class": {...}}`` as written to the JSON files.
        fingerprint: SHA-256 of the training tensors (images, labels, identity class indices).
        seconds: wall time of the call.
    """

    out_dir: Path
    files: tuple[Path, ...]
    contract: GuideContract
    n_identities: int
    label_names: tuple[str, ...]
    metrics: dict[str, dict[str, Any]]
    fingerprint: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "files": [str(p) for p in self.files],
            "contract": self.contract.to_dict(),
            "n_identities": self.n_identities,
            "label_names": list(self.label_names),
            "metrics": self.metrics,
            "fingerprint": self.fingerprint,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class Guides:
    """The two loaded guide models, frozen (eval mode, ``requires_grad`` off) but differentiable in their input.

    Attributes:
        identity: φ_id; ``identity(x)`` gives ``[N, n_identities]`` logits, ``identity.embed(x)`` ``[N, D]``.
        classifier: φ_class; ``classifier(x)`` gives ``[N, len(label_names)]`` logits.
        contract: the images both read (the generator's resolution and channels, range [-1, 1]).
        label_names: class names in label order.
        n_identities: number of training patients φ_id tells apart.
        metrics: ``{"identity": {...}, "class": {...}}`` training metrics from the JSON files.
    """

    identity: nn.Module
    classifier: nn.Module
    contract: GuideContract
    label_names: tuple[str, ...]
    n_identities: int
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------------
# Augmentation


def acquisition_augment(x: Tensor, strength: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Random changes of acquisition, per image: geometry, exposure, gamma, noise. Differentiable in ``x``.

    At ``strength`` s: rotation uniform in ±8s degrees, zoom in ±8s %, shift in ±6s % of the side (bilinear
    resampling, border padding); gamma ``exp(U(±0.25s))`` on [0, 1] intensities; contrast ×(1 ± 0.2s) about the
    image mean; brightness ±0.1s (in [-1, 1] units); Gaussian noise with std uniform in [0, 0.03s]; the result
    is clamped to [-1, 1]. Colour images get the same change on every channel.

    Args:
        x: images ``[N, C, R, R]`` float in [-1, 1], any device.
        strength: scale of every range; 0 returns ``x`` unchanged.
        generator: CPU ``torch.Generator`` all random draws come from (``None`` = torch's global one).

    Returns:
        ``[N, C, R, R]`` float in [-1, 1] on ``x.device``.
    """
    if strength == 0:
        return x
    n, dev, s = x.shape[0], x.device, float(strength)

    def uniform(scale: float, *shape: int) -> Tensor:  # U(-scale, scale) drawn on the CPU, moved to x's device
        return ((torch.rand(n, *shape, generator=generator) * 2 - 1) * scale).to(dev, x.dtype)

    angle = uniform(math.radians(8) * s)  # [N]
    zoom = 1 + uniform(0.08 * s)
    shift = uniform(0.12 * s, 2)  # [N, 2]; affine_grid units: the side spans 2, so 0.12 = 6 % of the side
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # [N, R, R, 2]
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    gamma = torch.exp(uniform(0.25 * s)).view(n, 1, 1, 1)
    x = ((x + 1) / 2).clamp(1e-4, 1).pow(gamma) * 2 - 1  # clamp away from 0: finite gradient of pow
    contrast = (1 + uniform(0.2 * s)).view(n, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean + uniform(0.1 * s).view(n, 1, 1, 1)
    sigma = (torch.rand(n, 1, 1, 1, generator=generator) * 0.03 * s).to(dev, x.dtype)
    x = x + sigma * torch.randn(x.shape, generator=generator).to(dev, x.dtype)
    return x.clamp(-1, 1)


# ----------------------------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class _GuideData:
    """Training tensors of both guides, on the CPU."""

    images: Tensor  # [N, C, R, R] train split, float32 in [-1, 1]
    labels: Tensor  # [N] int64 class index
    ids: Tensor  # [N] int64 identity class (index into the sorted training identities)
    id_train: Tensor  # row indices φ_id trains on
    id_held: Tensor  # row indices held out for identity accuracy
    val_images: Tensor | None  # [M, C, R, R] val split (other patients), or None when the split is empty
    val_labels: Tensor | None  # [M]
    n_identities: int
    label_names: tuple[str, ...]
    single_image_identities: int  # patients with one train image (training only)


def identity_classes(index: DatasetIndex) -> tuple[str, ...]:
    """The identity φ_id's class ``i`` stands for: the sorted distinct identities of the ``train`` split.

    Patient identifiers are private: this mapping lives in memory only and is never written by this module.

    Raises:
        DataError: a training record has no identity.
    """
    train = index.subset("train")
    train.require_identities("the identity guide")
    return tuple(sorted({r.identity for r in train.records}))  # type: ignore[type-var]


def _held_out_rows(ids: Tensor, n_identities: int, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Split row indices into (train, held-out) per identity: round(fraction*n) in [1, n-1] held when n >= 2."""
    gen = torch.Generator().manual_seed(_derive_seed(seed, "holdout"))
    train_rows, held_rows = [], []
    for k in range(n_identities):
        rows = torch.nonzero(ids == k).squeeze(1)
        rows = rows[torch.randperm(len(rows), generator=gen)]
        n = len(rows)
        n_held = 0 if fraction == 0 or n < 2 else min(max(round(fraction * n), 1), n - 1)
        held_rows.append(rows[:n_held])
        train_rows.append(rows[n_held:])
    return torch.cat(train_rows).sort().values, torch.cat(held_rows).sort().values


def _native_resolution(index: DatasetIndex) -> int:
    """The side of the training images when all are square and the same size; else a ConfigError."""
    from PIL import Image

    sizes = set()
    for r in index.records:
        with Image.open(r.file) as im:
            sizes.add(im.size)
        if len(sizes) > 1:
            break
    if len(sizes) != 1 or (size := next(iter(sizes)))[0] != size[1]:
        shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes))
        raise ConfigError(
            f"training images are not all square and the same size ({shown}); pass resolution= the generator's "
            f"img_resolution"
        )
    return size[0]


def _load_data(
    index: DatasetIndex, resolution: int | None, channels: int | None, cfg: GuideConfig, progress: bool
) -> tuple[_GuideData, GuideContract]:
    from latentwalk.data.preprocess import load_tensors

    train = index.subset("train")
    if not len(train):
        raise DataError(
            f"no images in the train split of {index.root}; assign identity-disjoint splits first "
            f"(latentwalk data split)"
        )
    names = identity_classes(index)
    if len(names) < 2:
        raise DataError(f"the identity guide needs at least 2 training patients, found {len(names)}")
    if len(train) < 2:
        raise DataError(f"guide training needs at least 2 training images, found {len(train)}")
    if len(index.label_names) < 2:
        raise DataError(f"the class guide needs at least 2 labels, found {list(index.label_names)}")
    channels = channels if channels is not None else (index.channels or 1)
    if resolution is None:
        resolution = _native_resolution(train)
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 16:
        raise ConfigError(f"guide resolution must be an integer >= 16 pixels, got {resolution!r}")

    images, labels = load_tensors(train, resolution, channels=channels, progress=progress)
    position = {name: i for i, name in enumerate(names)}
    ids = torch.tensor([position[r.identity] for r in train.records], dtype=torch.int64)  # type: ignore[index]
    id_train, id_held = _held_out_rows(ids, len(names), cfg.id_val_fraction, cfg.seed)
    val = index.subset("val")
    val_images = val_labels = None
    if len(val):
        val_images, val_labels = load_tensors(val, resolution, channels=channels, progress=progress)
    data = _GuideData(
        images=images,
        labels=labels,
        ids=ids,
        id_train=id_train,
        id_held=id_held,
        val_images=val_images,
        val_labels=val_labels,
        n_identities=len(names),
        label_names=tuple(index.label_names),
        single_image_identities=int((torch.bincount(ids, minlength=len(names)) == 1).sum()),
    )
    return data, GuideContract(resolution=resolution, channels=channels)


def _fingerprint(data: _GuideData) -> str:
    """SHA-256 of the training tensors: images, labels and identity class indices (no names, no paths)."""
    h = hashlib.sha256()
    for t in (data.images, data.labels, data.ids):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _derive_seed(seed: int, key: str) -> int:
    return derive_seed("latentwalk.guides", seed, key)


# ----------------------------------------------------------------------------------------------------------------
# Training


def init_model(cfg: GuideConfig, contract: GuideContract, n_classes: int, role: str) -> nn.Module:
    """A freshly initialised guide (seeded without touching torch's global RNG state), optionally from weights.

    With :func:`fit_model` the training recipe of the guides, shared by the evaluation's utility classifier and
    re-identification model so that their figures come from the same recipe.
    """
    kwargs: dict[str, Any] = {
        "in_channels": contract.channels,
        "n_classes": n_classes,
        "resolution": contract.resolution,
        "embed_dim": cfg.embed_dim,
    }
    if cfg.arch == "cnn":
        kwargs["width"] = cfg.width
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_derive_seed(cfg.seed, f"init:{role}"))
        model = build_guide(cfg.arch, **kwargs)
    if cfg.weights is not None:
        _load_backbone_weights(model, Path(cfg.weights))
    return model


def _load_backbone_weights(model: nn.Module, path: Path) -> None:
    """Load a torchvision ResNet-18 state_dict (``fc.*`` ignored) into ``model.backbone``, strictly."""
    from gan_zoo.checkpoint import load_state_dict_strict

    blob = _read_weights_bytes(path, "initial resnet18 weights")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load

        try:
            state = load(blob)
        except SafetensorError as e:
            raise DataError(f"{path} is not a readable safetensors file ({e})") from e
    else:
        from gan_zoo.safe_load import bounded_torch_load

        state = bounded_torch_load(blob, str(path), "torch state_dict loadable with weights_only=True")
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise DataError(f"{path} does not hold a state_dict (a dict of tensors); save model.state_dict()")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    load_state_dict_strict(model.backbone, state, str(path))


def _read_weights_bytes(path: Path, what: str) -> bytes:
    return read_model_bytes(path, what, "check the path (nothing is downloaded)")


def fit_model(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    rows: Tensor,
    cfg: GuideConfig,
    role: str,
    device: torch.device,
    progress: bool,
) -> list[float]:
    """Train ``model`` on ``images[rows]`` (on ``device``) with augmentation; returns the mean loss per epoch."""
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(_derive_seed(cfg.seed, f"train:{role}"))
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(rows) / cfg.batch))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)
    x_all, y_all = images.to(device), targets.to(device)
    losses: list[float] = []
    bar = tqdm(range(cfg.epochs), desc=f"guide:{role}", unit="epoch", disable=not progress)
    for _ in bar:
        total, count = 0.0, 0
        for batch in rows[torch.randperm(len(rows), generator=gen)].split(cfg.batch):
            if len(batch) < 2:  # batch norm cannot train on a single image
                continue
            xb = acquisition_augment(x_all[batch.to(device)], cfg.augment, gen)
            loss = F.cross_entropy(model(xb), y_all[batch.to(device)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, count = total + loss.item() * len(batch), count + len(batch)
        losses.append(round(total / max(count, 1), 6))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return losses


@torch.no_grad()
def _predict(model: nn.Module, images: Tensor, device: torch.device, batch: int = 256) -> Tensor:
    """Arg-max predictions ``[N]`` (CPU int64) of ``model`` in eval mode."""
    model.eval()
    out = [model(chunk.to(device)).argmax(1).cpu() for chunk in images.split(batch)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)


def _accuracy(pred: Tensor, target: Tensor) -> float | None:
    return round((pred == target).float().mean().item(), 6) if len(target) else None


def _balanced_accuracy(pred: Tensor, target: Tensor) -> float | None:
    """Mean per-class recall; ``None`` (n/a) with fewer than two classes present, where it would only repeat the
    accuracy of that class."""
    recalls = [(pred[target == c] == c).float().mean().item() for c in target.unique()]
    return round(sum(recalls) / len(recalls), 6) if len(recalls) >= 2 else None


def _train_identity(data: _GuideData, contract, cfg, device, progress) -> tuple[nn.Module, dict[str, Any]]:
    model = init_model(cfg, contract, data.n_identities, "identity")
    start = time.perf_counter()
    losses = fit_model(model, data.images, data.ids, data.id_train, cfg, "identity", device, progress)
    train_pred = _predict(model, data.images[data.id_train], device)
    held_pred = _predict(model, data.images[data.id_held], device)
    metrics = {
        "task": "closed-set patient identity; accuracy on held-out images of training patients",
        "train_loss": losses,
        "train_accuracy": _accuracy(train_pred, data.ids[data.id_train]),
        "val_accuracy": _accuracy(held_pred, data.ids[data.id_held]),
        "chance_accuracy": round(1 / data.n_identities, 6),
        "n_train_images": len(data.id_train),
        "n_val_images": len(data.id_held),
        "n_identities": data.n_identities,
        "single_image_identities": data.single_image_identities,
        "seconds": round(time.perf_counter() - start, 3),
    }
    return model, metrics


def _train_class(data: _GuideData, contract, cfg, device, progress) -> tuple[nn.Module, dict[str, Any]]:
    n_labels = len(data.label_names)
    model = init_model(cfg, contract, n_labels, "class")
    start = time.perf_counter()
    rows = torch.arange(len(data.images))
    losses = fit_model(model, data.images, data.labels, rows, cfg, "class", device, progress)
    train_pred = _predict(model, data.images, device)
    metrics: dict[str, Any] = {
        "task": "clinical label; accuracy on the identity-disjoint val split",
        "train_loss": losses,
        "train_accuracy": _accuracy(train_pred, data.labels),
        "val_accuracy": None,
        "val_balanced_accuracy": None,
        "majority_accuracy": None,
        "n_train_images": len(data.images),
        "n_val_images": 0,
    }
    if data.val_images is not None and data.val_labels is not None:
        val_pred = _predict(model, data.val_images, device)
        majority = torch.bincount(data.val_labels, minlength=n_labels).max().item() / len(data.val_labels)
        present = sorted({data.label_names[int(c)] for c in data.val_labels.unique()})
        if len(present) < 2:
            warnings.warn(
                f"the validation split holds only class {present[0]} ({len(data.val_labels)} image(s)): the class "
                "guide's validation accuracy says nothing about telling the classes apart and its balanced accuracy "
                "is n/a; write splits with every class in validation (latentwalk data split)",
                UserWarning,
                stacklevel=3,
            )
        metrics.update(
            val_accuracy=_accuracy(val_pred, data.val_labels),
            val_balanced_accuracy=_balanced_accuracy(val_pred, data.val_labels),
            majority_accuracy=round(majority, 6),
            n_val_images=len(data.val_labels),
        )
    metrics["seconds"] = round(time.perf_counter() - start, 3)
    return model, metrics


def train_guides(
    index: DatasetIndex,
    out_dir: str | os.PathLike,
    cfg: GuideConfig = GuideConfig(),
    *,
    resolution: int | None = None,
    channels: int | None = None,
    device: str | torch.device | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> GuideResult:
    """Train φ_id and φ_class on the ``train`` split of ``index`` and write the guides folder ``out_dir``.

    Args:
        index: the dataset, with identity-disjoint splits assigned and an identity for every training image.
        out_dir: folder to create; an existing non-empty folder is an error unless ``overwrite`` and latentwalk
            wrote it (:mod:`latentwalk.outputs`); never inside the dataset.
        cfg: training options.
        resolution: input side R in pixels; give the generator's ``img_resolution``. ``None`` = the training
            images' own side (they must all be square and of one size).
        channels: 1 or 3; give the generator's ``img_channels``. ``None`` = ``index.channels``, or 1 when undeclared.
        device: torch device to train on (``None`` = CPU); the caller resolves "auto".
        overwrite: replace a non-empty ``out_dir`` that latentwalk wrote.
        progress: show tqdm bars (image loading, one bar over epochs per model).

    Returns:
        :class:`GuideResult`; the folder holds ``identity.{safetensors,json}`` and ``class.{safetensors,json}``.

    Raises:
        ConfigError: bad ``resolution``/``channels``, or a non-empty ``out_dir`` without ``overwrite``.
        DataError: no train split, a training image without identity, fewer than 2 training patients or labels.
        MissingWeightsError: ``cfg.weights`` names a file that does not exist.
    """
    from latentwalk.outputs import claim_dir, staged_dir

    started = time.perf_counter()
    device = torch.device("cpu") if device is None else torch.device(device)
    inputs = {"dataset": index.root, "initial weights": cfg.weights}
    claim_dir(out_dir, overwrite=overwrite, inputs=inputs)  # before the slow training
    if cfg.weights is not None:
        _read_weights_bytes(Path(cfg.weights), "initial resnet18 weights")
    data, contract = _load_data(index, resolution, channels, cfg, progress)
    fingerprint = _fingerprint(data)

    id_model, id_metrics = _train_identity(data, contract, cfg, device, progress)
    cls_model, cls_metrics = _train_class(data, contract, cfg, device, progress)
    metrics = {"identity": id_metrics, "class": cls_metrics}
    dataset = {
        "sha256": fingerprint,
        "layout": index.layout,
        "n_train_images": len(data.images),
        "n_val_images": 0 if data.val_images is None else len(data.val_images),
    }
    common = {
        "contract": contract.to_dict(),
        "label_names": list(data.label_names),
        "n_identities": data.n_identities,
        "config": cfg.to_dict(),
        "dataset": dataset,
        "versions": versions(full=False),
    }
    if cfg.weights is not None:
        blob = Path(cfg.weights).read_bytes()
        common["init_weights"] = {"file": Path(cfg.weights).name, "sha256": hashlib.sha256(blob).hexdigest()}

    out = Path(out_dir)
    with staged_dir(out, "guides train", overwrite=overwrite, inputs=inputs) as stage:
        _save_model(stage, "identity", id_model, {**common, "metrics": id_metrics})
        _save_model(stage, "class", cls_model, {**common, "metrics": cls_metrics})
    files = tuple(out / f"{role}.{ext}" for role in ROLES for ext in ("safetensors", "json"))
    return GuideResult(
        out_dir=out,
        files=files,
        contract=contract,
        n_identities=data.n_identities,
        label_names=data.label_names,
        metrics=metrics,
        fingerprint=fingerprint,
        seconds=round(time.perf_counter() - started, 3),
    )


# ----------------------------------------------------------------------------------------------------------------
# Saving and loading


def _save_model(folder: Path, role: str, model: nn.Module, meta: dict[str, Any]) -> None:
    """Write ``<role>.safetensors`` then ``<role>.json`` atomically."""
    from safetensors.torch import save

    from latentwalk.io import atomic_write_bytes, write_json

    arch = next(name for name, cls in ARCHITECTURES.items() if type(model) is cls)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    blob = save(state)
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "role": role,
        "architecture": {"name": arch, "kwargs": model.init_kwargs},
        "classes": (
            "identity class i = the i-th training patient in sorted order (latentwalk.guides.identity_classes); "
            "identifiers are not stored"
            if role == "identity"
            else "label_names"
        ),
        "weights_file": f"{role}.safetensors",
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
        **meta,
    }
    json.dumps(record)  # fail before writing anything if a value is not JSON-serialisable
    atomic_write_bytes(folder / f"{role}.safetensors", blob)
    write_json(folder / f"{role}.json", record)


def _read_meta(folder: Path, role: str) -> dict[str, Any]:
    path = folder / f"{role}.json"
    if not path.is_file():
        raise MissingWeightsError(
            f"guide config {path} not found; a guides folder holds identity.* and class.* as written by train_guides"
        )
    meta = read_versioned_json(path, FORMAT, FORMAT_VERSION, what="guide model", fix="train the guides again")
    if meta.get("role") != role:
        raise DataError(f"{path} holds a {meta.get('role')!r} guide, expected {role!r}")
    arch = meta.get("architecture")
    if not isinstance(arch, dict) or not isinstance(arch.get("kwargs"), dict):
        raise DataError(f"{path} has no 'architecture' object with 'name' and 'kwargs'")
    if arch.get("name") not in ARCHITECTURES:
        raise DataError(
            f'{path} names guide architecture "{arch.get("name")}", which this version does not know; expected one '
            f"of {', '.join(ARCHITECTURES)}"
        )
    contract = meta.get("contract")
    if not isinstance(contract, dict) or not {"resolution", "channels"} <= set(contract):
        raise DataError(f"{path} has no input 'contract' with resolution and channels")
    return meta


def _load_model(folder: Path, role: str, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    from gan_zoo.checkpoint import build_checked

    meta = _read_meta(folder, role)
    weights = folder / f"{role}.safetensors"
    blob = _read_weights_bytes(weights, f"guide weights (beside {role}.json)")
    state = load_checked_safetensors(blob, weights, str(meta.get("weights_sha256")), f"{role}.json")
    arch = meta["architecture"]
    try:
        model = build_checked(partial(build_guide, arch["name"]), arch["kwargs"], state, str(weights))
    except ConfigError as e:
        raise DataError(f"{folder / (role + '.json')}: {e}") from e
    return model.to(device).eval().requires_grad_(False), meta


def load_guides(path: str | os.PathLike, device: str | torch.device | None = None) -> Guides:
    """Load a guides folder written by :func:`train_guides`.

    Args:
        path: the folder holding ``identity.{safetensors,json}`` and ``class.{safetensors,json}``.
        device: target device; ``None`` = CPU.

    Returns:
        :class:`Guides`; both models in eval mode with ``requires_grad`` off on every parameter, so gradients flow
        to the input images (as PLAN needs) but never into the guides.

    Raises:
        MissingWeightsError: the folder or one of the four files is absent.
        DataError: invalid JSON, unknown format or architecture, empty / git-lfs pointer / changed weights, keys or
            shapes that do not match the architecture (listed), or two models with different input contracts.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise MissingWeightsError(f"guides folder {folder} not found; train guides first (train_guides)")
    device = torch.device("cpu") if device is None else torch.device(device)
    identity, id_meta = _load_model(folder, "identity", device)
    classifier, cls_meta = _load_model(folder, "class", device)
    contracts = [(m["contract"]["resolution"], m["contract"]["channels"]) for m in (id_meta, cls_meta)]
    if contracts[0] != contracts[1]:
        raise DataError(
            f"{folder}: identity and class guides read different images ({contracts[0]} vs {contracts[1]} as "
            f"(resolution, channels)); train both together with train_guides"
        )
    labels = tuple(cls_meta.get("label_names", ()))
    n_ids = id_meta["architecture"]["kwargs"].get("n_classes")
    if id_meta.get("n_identities") != n_ids:
        raise DataError(
            f"{folder / 'identity.json'}: n_identities {id_meta.get('n_identities')!r} differs from the model's "
            f"{n_ids!r} classes; train the guides again"
        )
    if len(labels) != cls_meta["architecture"]["kwargs"].get("n_classes"):
        raise DataError(f"{folder / 'class.json'}: {len(labels)} label names for a model with a different class count")
    return Guides(
        identity=identity,
        classifier=classifier,
        contract=GuideContract(resolution=int(contracts[0][0]), channels=int(contracts[0][1])),
        label_names=labels,
        n_identities=int(n_ids),
        metrics={"identity": id_meta.get("metrics", {}), "class": cls_meta.get("metrics", {})},
    )


def check_contract(guides: Guides, G: Any, label_names: Sequence[str] | None = None) -> None:
    """Check that ``guides`` read what the generator ``G`` writes.

    Args:
        guides: loaded guides.
        G: a generator with ``img_resolution`` and ``img_channels`` (the gan_zoo / NVIDIA contract).
        label_names: optionally, the class names the walk will use; checked against ``guides.label_names``.

    Raises:
        ConfigError: naming each mismatch (resolution, channels, label names) and the fix.
    """
    c = guides.contract
    problems = []
    res, ch = getattr(G, "img_resolution", None), getattr(G, "img_channels", None)
    if res != c.resolution:
        problems.append(f"resolution {c.resolution} px vs the generator's img_resolution {res}")
    if ch != c.channels:
        problems.append(f"channels {c.channels} vs the generator's img_channels {ch}")
    if label_names is not None and tuple(label_names) != tuple(guides.label_names):
        problems.append(f"label names {list(guides.label_names)} vs {list(label_names)}")
    if problems:
        raise ConfigError(
            "guides do not match the generator: guide "
            + "; ".join(problems)
            + "; train the guides again at the generator's resolution and channels"
        )
