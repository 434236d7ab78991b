"""Ground-truth leakage: how often a synthetic image shows a training patient's own anatomy, measured against the
phantoms' known truth rather than a model's opinion of identity.

Phantom datasets (:mod:`latentwalk.data.phantoms`) record in ``ground_truth.json`` the anatomy that makes each
patient who they are: lung outline, ribs, heart, clavicles, spine and metal marks of a radiograph; pigment, choroidal
texture and optic-disc geometry of a fundus. That anatomy is what a re-identification attack ultimately recovers,
so it is the privacy-relevant truth. The measure asks: *does a synthetic image carry the anatomy of some training
patient as closely as another real image of that same patient would?*

Method (a regression probe with a calibrated radius, in the spirit of attribute-inference attacks on synthetic data,
e.g. Stadler, Oprisanu and Troncoso, "Synthetic data -- anonymisation groundhog day", USENIX Security 2022, where
the adversary infers a target's secret attributes from the synthetic set; here the "attributes" are the anatomy):

1. :func:`patient_parameters` flattens each patient's anatomy into a fixed-length vector of numbers (the identity
   parameters); these are z-scored per dimension over the training patients (a dimension with zero variance keeps
   unit scale), so every dimension counts alike in the Euclidean distance.
2. One image of each training patient with >= 2 images is held out (the calibration images); a small CNN regressor
   (:class:`_Regressor`) learns image -> standardised parameters on the rest, with light acquisition augmentation
   (brightness, contrast, 1-2 pixel shifts) so that acquisition changes do not move its predictions.
3. Calibration: the distance from each calibration image's prediction to its own patient's true parameters; the
   ``radius`` is the 95th percentile of these, "the range within which another image of the same patient falls".
4. Each synthetic image is predicted and matched to its nearest training patient in parameter space; it *leaks*
   when that distance is within ``radius``. ``leak_fraction`` is the share that leaks.
5. The floor: real images of patients the regressor never saw (``heldout_images``) go through step 4 too;
   ``heldout_fraction`` is how often an unrelated real patient falls within some training patient's range by chance.
   A synthetic set leaks identity when its ``leak_fraction`` is clearly above that floor.

What the parameter vector leaves out, and why: label information is not identity. A CXR patient's TB lesions
(``lesions``) exist only for TB patients and carry the diagnosis; a fundus eye's DR grade and lesions live with the
images, not the patient, and are not read. Random seeds (``seed``, ``noise_seed``) and per-image acquisition are not
anatomy. Per-eye vessel trees of the fundus phantoms are not recorded in ``ground_truth.json`` and so cannot be
used. Representations are chosen so that every number is a function of what an image shows: harmonic amplitude and
phase become the Fourier pair ``(a cos p, a sin p)``; the variable number of CXR marks becomes counts and mean/std
of position and size (bar orientation is left out: a few pixels at most); the fundus texture, a sum of sine waves
whose order and sign are not determined by the image, becomes the texture field sampled on a 3 x 3 grid.

Results are plain dicts of Python numbers (floats rounded to 6 significant digits), ready for ``json.dump``.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_zoo.seeds import derive_seed
from latentwalk.devices import resolve_device
from latentwalk.distances import nearest
from latentwalk.errors import ConfigError, DataError

__all__ = [
    "GROUND_TRUTH_FILE",
    "MAX_GROUND_TRUTH_BYTES",
    "patient_parameters",
    "read_ground_truth",
    "leakage",
    "fit_probe",
    "Probe",
]

GROUND_TRUTH_FILE = "ground_truth.json"
MAX_GROUND_TRUTH_BYTES = 64 * 2**20  # a phantom dataset of 10,000 patients writes well under this
RADIUS_PERCENTILE = 95.0  # the calibration radius: this percentile of same-patient distances
TEXTURE_GRID = (-0.5, 0.0, 0.5)  # fundus texture field sampled at these patient-frame coordinates (x and y)
MARK_SHAPES = ("disc", "ring", "bar")
BATCH, LR = 8, 2e-3  # regressor: images per Adam step, peak learning rate (cosine decay to 0)
AUTO_STEPS, MIN_EPOCHS = 400, 60  # epochs=None: enough epochs for about AUTO_STEPS steps, at least MIN_EPOCHS
_RANGE_TOLERANCE = 1e-3  # images may exceed [-1, 1] by this much (resampling round-off)
_SEED_NAMESPACE = "latentwalk.ground_truth"


# ----------------------------------------------------------------------------------------------------------------
# Reading the ground truth


def read_ground_truth(root: str | os.PathLike) -> dict[str, Any] | None:
    """The ``ground_truth.json`` of the dataset folder ``root``, or ``None`` when the folder has none.

    Raises:
        DataError: the file is over :data:`MAX_GROUND_TRUTH_BYTES`, unreadable, not JSON, or not an object with a
            ``kind`` and a ``patients`` object.
    """
    path = Path(root) / GROUND_TRUTH_FILE
    if not path.exists():
        return None
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise DataError(f"{path} is not a file")
        if size > MAX_GROUND_TRUTH_BYTES:
            raise DataError(f"{path} is {size / 2**20:.0f} MiB, over the {MAX_GROUND_TRUTH_BYTES >> 20} MiB limit")
        with open(path, "rb") as f:
            blob = f.read(MAX_GROUND_TRUTH_BYTES + 1)  # bounded even if the file grows after the check
    except OSError as e:
        raise DataError(f"{path} cannot be read ({e.strerror or e})") from e
    if len(blob) > MAX_GROUND_TRUTH_BYTES:
        raise DataError(f"{path} is over the {MAX_GROUND_TRUTH_BYTES >> 20} MiB limit")
    try:
        data = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{path} is not valid JSON ({str(e).splitlines()[0]}); rewrite the phantom dataset") from e
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("kind"), str)
        or not isinstance(data.get("patients"), dict)
    ):
        raise DataError(f'{path} is not a ground-truth file (expected an object with "kind" and "patients")')
    return data


# ----------------------------------------------------------------------------------------------------------------
# Identity parameters


def _where(where: str, key: str | int) -> str:
    return f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}"


def _get(obj: Any, key: str, where: str) -> Any:
    if not isinstance(obj, dict):
        raise DataError(f"ground truth {where} must be an object, got {type(obj).__name__}")
    if key not in obj:
        raise DataError(f'ground truth {where} has no "{key}" entry')
    return obj[key]


def _num(x: Any, where: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        shown = repr(x) if isinstance(x, (int, float, str)) and len(repr(x)) < 40 else type(x).__name__
        raise DataError(f"ground truth {where} must be a finite number, got {shown}")
    return float(x)


def _seq(x: Any, where: str, n: int | None = None) -> list:
    if not isinstance(x, list) or (n is not None and len(x) != n):
        want = "a list" if n is None else f"a list of {n}"
        got = f"{len(x)} entries" if isinstance(x, list) else type(x).__name__
        raise DataError(f"ground truth {where} must be {want}, got {got}")
    return x


def _scalars(obj: Any, where: str, prefix: str, keys: Sequence[str]) -> list[tuple[str, float]]:
    return [(f"{prefix}{k}", _num(_get(obj, k, where), _where(where, k))) for k in keys]


def _mean_std(values: list[float]) -> tuple[float, float]:
    return (float(np.mean(values)), float(np.std(values))) if values else (0.0, 0.0)


def _cxr_marks(marks: Any, where: str) -> list[tuple[str, float]]:
    """Counts per shape and mean/std of position and size of a variable number of marks (0 when there are none)."""
    marks = _seq(marks, where)
    shapes = [_get(m, "shape", _where(where, i)) for i, m in enumerate(marks)]
    out = [("marks.count", float(len(marks)))] + [(f"marks.{s}", float(shapes.count(s))) for s in MARK_SHAPES]
    for key in ("x", "y", "size"):
        mean, std = _mean_std([_num(_get(m, key, _where(where, i)), _where(where, i)) for i, m in enumerate(marks)])
        out += [(f"marks.{key}.mean", mean), (f"marks.{key}.std", std)]
    return out


def _cxr_vector(p: Any, where: str) -> list[tuple[str, float]]:
    """Identity parameters of a CXR phantom patient (``_sample_cxr_patient``), ``lesions`` (the TB label) excluded."""
    out = _scalars(p, where, "", ("body_rx", "body_level", "lung_level"))
    for part, keys in (
        ("heart", ("cx", "cy", "rx", "ry")),
        ("spine", ("width", "bend", "freq")),
        ("ribs", ("spacing", "slope", "curve", "phase", "sharp", "level")),
        ("clavicle", ("y", "slope", "length")),
    ):
        out += _scalars(_get(p, part, where), _where(where, part), f"{part}.", keys)
    lungs_at = _where(where, "lungs")
    for i, lung in enumerate(_seq(_get(p, "lungs", where), lungs_at, 2)):
        at = _where(lungs_at, i)
        out += _scalars(lung, at, f"lungs[{i}].", ("cx", "cy", "rx", "ry"))
        for k, pair in enumerate(_seq(_get(lung, "harm", at), _where(at, "harm"))):
            h_at = _where(_where(at, "harm"), k)
            amp, phase = (_num(v, h_at) for v in _seq(pair, h_at, 2))
            out += [
                (f"lungs[{i}].harm[{k}].cos", amp * math.cos(phase)),
                (f"lungs[{i}].harm[{k}].sin", amp * math.sin(phase)),
            ]
    return out + _cxr_marks(_get(p, "marks", where), _where(where, "marks"))


def _fundus_vector(p: Any, where: str) -> list[tuple[str, float]]:
    """Identity parameters of a fundus phantom patient (``_sample_fundus_patient``); it holds no label entries."""
    at = _where(where, "pigment")
    pigment = [_num(v, at) for v in _seq(_get(p, "pigment", where), at, 3)]
    out = [(f"pigment.{c}", v) for c, v in zip("rgb", pigment, strict=True)]
    out += _scalars(p, where, "", ("disc_x", "disc_y", "disc_r", "cup", "macula_dx"))
    at = _where(where, "texture")
    waves = [
        [_num(v, _where(at, i)) for v in _seq(w, _where(at, i), 4)]
        for i, w in enumerate(_seq(_get(p, "texture", where), at))
    ]
    for gy in TEXTURE_GRID:
        for gx in TEXTURE_GRID:
            field = sum(amp * math.sin(fx * gx + fy * gy + ph) for fx, fy, ph, amp in waves)
            out.append((f"texture({gx:+.1f},{gy:+.1f})", float(field)))
    return out


_VECTORS: dict[str, Callable[[Any, str], list[tuple[str, float]]]] = {"cxr": _cxr_vector, "fundus": _fundus_vector}


def patient_parameters(ground_truth: dict) -> tuple[list[str], np.ndarray, list[str]]:
    """Every patient's identity parameters as one matrix, in a fixed order.

    Args:
        ground_truth: the parsed ``ground_truth.json`` of a phantom dataset (:func:`read_ground_truth`).

    Returns:
        ``(identities, matrix, names)``: patient ids sorted, float64 ``[patients, D]``, and the ``D`` parameter
        names. CXR, D = 49: body and lung levels, heart, spine, ribs, clavicles (19 numbers), per lung centre,
        radii and 3 harmonics as cos/sin pairs (2 x 10), marks as counts and mean/std of x, y, size (10).
        Fundus, D = 17: pigment RGB, disc position, disc radius, cup, macula offset (8), texture field on a
        3 x 3 grid (9). Label entries (CXR TB ``lesions``) are excluded: label information is not identity.

    Raises:
        DataError: not a ground-truth object, an unknown kind, no patients, or a patient whose anatomy misses an
            entry or holds a non-finite or non-numeric value where a number belongs.
    """
    if not isinstance(ground_truth, dict):
        raise DataError(f"ground truth must be an object, got {type(ground_truth).__name__}")
    kind = ground_truth.get("kind")
    if kind not in _VECTORS:
        raise DataError(f"ground truth kind {kind!r} is not supported; expected one of {', '.join(_VECTORS)}")
    patients = ground_truth.get("patients")
    if not isinstance(patients, dict) or not patients:
        raise DataError('ground truth has no "patients" (expected an object of patient id -> anatomy)')
    identities = sorted(patients)
    rows = [_VECTORS[kind](patients[pid], f"patient {pid}") for pid in identities]
    names = [name for name, _ in rows[0]]
    for pid, row in zip(identities, rows, strict=True):
        if [name for name, _ in row] != names:
            raise DataError(f"ground truth patient {pid} has other parameters than patient {identities[0]}")
    matrix = np.asarray([[v for _, v in row] for row in rows], dtype=np.float64)
    return identities, matrix, names


# ----------------------------------------------------------------------------------------------------------------
# The regressor


class _Regressor(nn.Module):
    """Image -> parameter vector: conv3x3-BN-ReLU blocks (2x2 max pooling between them) on the image plus two
    coordinate channels (so that global pooling still knows where things are), global average pooling, linear.
    Blocks: 4 up to 32 px, one more per doubling of the side (the last map is 4x4 .. 8x8); channels ``width``,
    ``2 width``, then ``4 width``."""

    def __init__(self, channels: int, outputs: int, resolution: int, width: int = 32) -> None:
        super().__init__()
        from latentwalk.guide_nets import conv_trunk

        self.features, cin = conv_trunk(channels + 2, resolution, width)  # + 2 coordinate channels
        self.head = nn.Linear(cin, outputs)
        n_blocks = sum(isinstance(m, nn.Conv2d) for m in self.features)
        self.description = f"CoordConv CNN regressor ({n_blocks} conv blocks, width {width}, global pooling, linear)"

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1).expand(n, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w).expand(n, 1, h, w)
        return self.head(self.features(torch.cat([x, xs, ys], dim=1)))


def _jitter(x: Tensor, gen: torch.Generator) -> Tensor:
    """Light acquisition changes per image: brightness +-0.1, contrast x(1 +- 0.1) about the image mean, and a shift
    of up to 1 pixel (2 from 64 px) with the border repeated."""
    n, _, h, w = x.shape
    reach = max(1, h // 32)

    def uniform(scale: float) -> Tensor:
        return ((torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * scale).to(x.device, x.dtype)

    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (1 + uniform(0.1)) + mean + uniform(0.1)
    padded = F.pad(x, (reach, reach, reach, reach), mode="replicate")
    offsets = torch.randint(0, 2 * reach + 1, (n, 2), generator=gen).tolist()
    x = torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)])
    return x.clamp(-1, 1)


def _fit(
    images: Tensor, targets: Tensor, epochs: int, seed: int, device: torch.device, progress: bool
) -> tuple[nn.Module, list[float]]:
    """Train a fresh :class:`_Regressor` on ``images`` -> ``targets`` (MSE, Adam, cosine decay to 0)."""
    from tqdm.auto import tqdm

    batch, lr = BATCH, LR
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(_SEED_NAMESPACE, seed, "init"))
        model = _Regressor(images.shape[1], targets.shape[1], images.shape[-1])
    gen = torch.Generator().manual_seed(derive_seed(_SEED_NAMESPACE, seed, "train"))
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * max(1, math.ceil(len(images) / batch))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    x_all, y_all = images.to(device), targets.to(device)
    losses: list[float] = []
    for _ in tqdm(range(epochs), desc="ground-truth regressor", unit="epoch", disable=not progress):
        total, count = 0.0, 0
        for rows in torch.randperm(len(images), generator=gen).split(batch):
            if len(rows) < 2:  # batch norm cannot train on a single image
                continue
            rows = rows.to(device)
            loss = F.mse_loss(model(_jitter(x_all[rows], gen)), y_all[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, count = total + loss.item() * len(rows), count + len(rows)
        losses.append(total / max(count, 1))
    model.description += f", MSE, Adam lr {lr} cosine, batch {batch}, {epochs} epochs, seed {seed}"
    return model.eval(), losses


@torch.no_grad()
def _predict(model: nn.Module, images: Tensor, device: torch.device, batch: int = 256) -> np.ndarray:
    """Predictions ``[N, D]`` float64 of ``model`` (in eval mode)."""
    out = [model(chunk.to(device)).double().cpu() for chunk in images.split(batch)]
    return torch.cat(out).numpy()


# ----------------------------------------------------------------------------------------------------------------
# Leakage


def _sig(x: float) -> float:
    """``x`` rounded to 6 significant digits, as a Python float."""
    return float(f"{float(x):.6g}")


def _check_images(x: Any, name: str, like: Tensor | None = None) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise ConfigError(f"{name} must be a float tensor [N, C, R, R] in [-1, 1], got {getattr(x, 'dtype', type(x))}")
    if x.dim() != 4 or x.shape[1] not in (1, 3) or x.shape[2] != x.shape[3]:
        raise ConfigError(f"{name} must be [N, C, R, R] with C = 1 or 3, got shape {list(x.shape)}")
    if like is not None and x.shape[1:] != like.shape[1:]:
        raise ConfigError(f"{name} are {list(x.shape[1:])} but the training images are {list(like.shape[1:])}")
    if x.shape[0] == 0:
        raise DataError(f"{name} is empty; give at least one image")
    if not bool(torch.isfinite(x).all()) or float(x.abs().max()) > 1 + _RANGE_TOLERANCE:
        raise DataError(f"{name} must be finite and in [-1, 1]; convert pixels with x / 127.5 - 1")


def _targets(patients: list[str], params: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    """Training patients (sorted) and their parameters z-scored per dimension over them, float64 ``[P, D]``."""
    ids = sorted(set(patients))
    rows = []
    for pid in ids:
        if pid not in params:
            raise DataError(f"params has no parameter vector for training patient {pid}")
        row = np.asarray(params[pid], dtype=np.float64)
        if row.ndim != 1 or row.size == 0 or not np.isfinite(row).all():
            raise DataError(f"params of patient {pid} must be a non-empty finite 1-D vector, got shape {row.shape}")
        if rows and row.size != rows[0].size:
            raise DataError(f"params of patient {pid} has {row.size} numbers but patient {ids[0]} has {rows[0].size}")
        rows.append(row)
    matrix = np.stack(rows)
    std = matrix.std(axis=0)
    std[std < 1e-12] = 1.0  # a constant dimension keeps unit scale (it separates nobody among the training patients)
    return ids, (matrix - matrix.mean(axis=0)) / std


def _calibration_rows(codes: np.ndarray, seed: int) -> np.ndarray:
    """One random image index of each patient code with >= 2 images."""
    rng = np.random.default_rng(derive_seed(_SEED_NAMESPACE, seed, "calibration"))
    picks = [int(rng.choice(np.flatnonzero(codes == c))) for c in np.unique(codes) if (codes == c).sum() >= 2]
    if len(picks) < 2:
        raise DataError(
            f"only {len(picks)} training patient(s) have >= 2 images; calibration needs at least 2 such patients"
        )
    return np.asarray(sorted(picks))


def _nearest(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index and Euclidean distance of the nearest row of ``truth`` ``[P, D]`` for each row of ``pred`` ``[N, D]``
    (exact, in float64 blocks: :func:`latentwalk.distances.nearest`)."""
    res = nearest(torch.from_numpy(pred), torch.from_numpy(truth), k=1, metric="euclidean")
    return res.index[:, 0].numpy(), res.dists[:, 0].numpy()


def _share_within(pred: np.ndarray, truth: np.ndarray, radius: float) -> dict[str, Any]:
    idx, dist = _nearest(pred, truth)
    inside = dist <= radius
    return {
        "images": int(len(pred)),
        "fraction": _sig(inside.mean()),
        "leaked": int(inside.sum()),
        "patients_hit": int(np.unique(idx[inside]).size),
        "mean_distance": _sig(dist.mean()),
        "min_distance": _sig(dist.min()),
    }


def leakage(
    train_images: Tensor,
    train_patients: Sequence[str],
    syn_images: Tensor,
    params: Mapping[str, Any],
    *,
    heldout_images: Tensor | None = None,
    epochs: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """Ground-truth leakage of a synthetic set: the share of synthetic images whose predicted anatomy falls within
    the calibrated same-patient range of some training patient (see the module docstring for the method).

    Args:
        train_images: ``[N, C, R, R]`` float in [-1, 1], the generator's real training images.
        train_patients: ``N`` patient ids, one per training image.
        syn_images: ``[M, C, R, R]`` synthetic images, same geometry.
        params: patient id -> parameter vector (e.g. rows of :func:`patient_parameters`), at least every training
            patient; one length for all.
        heldout_images: optional ``[H, C, R, R]`` real images of patients not in training: the chance floor.
        epochs: passes of the regressor over its training images; ``None`` = enough for about
            :data:`AUTO_STEPS` optimiser steps (at least :data:`MIN_EPOCHS`): small sets need many passes.
        seed: seeds the calibration pick, the initialisation, batch order and augmentation (torch's global RNG is
            untouched).
        device: torch device to train and predict on (``"auto"`` picks CUDA, then MPS, then CPU).
        progress: show a tqdm bar over epochs.

    Returns:
        ``parameters`` (D), ``patients`` (training patients), ``radius``, ``percentile``; ``calibration``:
        ``images``, ``precision_at_1`` (share whose nearest training patient is their own), ``r2`` (1 - MSE / mean
        squared standardised target: the gain over predicting the average patient), ``median_distance``;
        ``synthetic``: ``images``, ``leak_fraction``, ``leaked``, ``patients_hit``, ``mean_distance``,
        ``min_distance``; ``heldout`` (only with ``heldout_images``): the same with ``heldout_fraction``;
        ``model``: the regressor in words; ``final_loss``.

    Raises:
        ConfigError: malformed image tensors, patient list, epochs or seed.
        DataError: images outside [-1, 1], missing or inconsistent parameters, fewer than 2 training patients with
            >= 2 images (nothing to calibrate against).
    """
    _check_images(train_images, "train_images")
    _check_images(syn_images, "syn_images", train_images)
    if heldout_images is not None:
        _check_images(heldout_images, "heldout_images", train_images)
    probe = fit_probe(train_images, train_patients, params, epochs=epochs, seed=seed, device=device, progress=progress)
    return probe.report(syn_images, heldout_images)


def fit_probe(
    train_images: Tensor,
    train_patients: Sequence[str],
    params: Mapping[str, Any],
    *,
    epochs: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> Probe:
    """Train the regressor of :func:`leakage` once; :meth:`Probe.report` then scores any number of image sets."""
    _check_images(train_images, "train_images")
    if isinstance(train_patients, (str, bytes)) or len(train_patients) != len(train_images):
        raise ConfigError(f"train_patients must list one patient id per training image ({len(train_images)})")
    for value, name, low in ((1 if epochs is None else epochs, "epochs", 1), (seed, "seed", 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    patients = [str(p) for p in train_patients]
    ids, truth = _targets(patients, params)  # [P], [P, D]
    code_of = {pid: i for i, pid in enumerate(ids)}
    codes = np.asarray([code_of[p] for p in patients])  # [N] index of each image's patient in ids
    calib = _calibration_rows(codes, seed)
    fit_rows = np.setdiff1d(np.arange(len(codes)), calib)
    if epochs is None:
        epochs = max(MIN_EPOCHS, math.ceil(AUTO_STEPS / math.ceil(len(fit_rows) / BATCH)))
    device = resolve_device(device)
    targets = torch.as_tensor(truth[codes[fit_rows]], dtype=torch.float32)
    model, losses = _fit(train_images[torch.as_tensor(fit_rows)], targets, epochs, seed, device, progress)
    return Probe(model, train_images[torch.as_tensor(calib)], codes[calib], truth, device, losses)


@dataclass
class Probe:
    """A trained anatomy regressor with its calibration images: :meth:`report` scores image sets against it."""

    model: nn.Module
    calib_images: Tensor
    calib_codes: np.ndarray
    truth: np.ndarray  # [P, D] standardised parameters of the training patients
    device: torch.device
    losses: list[float]

    def report(self, syn_images: Tensor, heldout_images: Tensor | None = None) -> dict[str, Any]:
        """:func:`leakage`'s figures for ``syn_images`` (and the floor of ``heldout_images``)."""
        _check_images(syn_images, "syn_images", self.calib_images)
        if heldout_images is not None:
            _check_images(heldout_images, "heldout_images", self.calib_images)
        return _report(self, syn_images, heldout_images)

    def leaks(self, images: Tensor) -> Tensor:
        """``[N]`` bool: the image's predicted anatomy lies within the calibrated radius of a training patient."""
        _check_images(images, "images", self.calib_images)
        _, dist = _nearest(_predict(self.model, images, self.device), self.truth)
        return torch.as_tensor(dist <= self.calibration[2])

    @functools.cached_property
    def calibration(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Predictions ``[K, D]`` of the calibration images, their distances ``[K]`` to their own patient's true
        parameters, and the radius (the :data:`RADIUS_PERCENTILE` of those distances); computed once."""
        pred = _predict(self.model, self.calib_images, self.device)
        own = np.sqrt(((pred - self.truth[self.calib_codes]) ** 2).sum(-1))
        return pred, own, float(np.percentile(own, RADIUS_PERCENTILE))


def _report(probe: Probe, syn_images: Tensor, heldout_images: Tensor | None) -> dict[str, Any]:
    """The calibration radius and the leak shares of the synthetic and held-out images."""
    model, calib_codes, truth, device = probe.model, probe.calib_codes, probe.truth, probe.device
    pred, own, radius = probe.calibration  # [K, D], [K], radius
    nearest_idx, _ = _nearest(pred, truth)
    mse, baseline = ((pred - truth[calib_codes]) ** 2).mean(), (truth[calib_codes] ** 2).mean()
    out: dict[str, Any] = {
        "parameters": int(truth.shape[1]),
        "patients": int(truth.shape[0]),
        "radius": _sig(radius),
        "percentile": RADIUS_PERCENTILE,
        "calibration": {
            "images": int(len(own)),
            "precision_at_1": _sig((nearest_idx == calib_codes).mean()),
            "r2": _sig(1 - mse / baseline) if baseline > 0 else None,
            "median_distance": _sig(np.median(own)),
        },
    }
    syn = _share_within(_predict(model, syn_images, device), truth, radius)
    out["synthetic"] = {"images": syn.pop("images"), "leak_fraction": syn.pop("fraction"), **syn}
    if heldout_images is not None:
        held = _share_within(_predict(model, heldout_images, device), truth, radius)
        out["heldout"] = {"images": held.pop("images"), "heldout_fraction": held.pop("fraction"), **held}
    out["model"] = model.description
    out["final_loss"] = _sig(probe.losses[-1]) if probe.losses else None
    return out
