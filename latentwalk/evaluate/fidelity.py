"""Fidelity and diversity of a synthetic set in a feature space: FID, KID, precision/recall/density/coverage.

All metrics compare two feature sets, real ``[N, D]`` and fake ``[M, D]``, and mean nothing without the extractor
that produced them, so :func:`fidelity_report` always names it. Feature extractors: :class:`InceptionFeatures`
(pytorch-fid's FID InceptionV3, pool3, 2048-d, built offline) or any embedding through :func:`features` (a domain
extractor such as the class guide's ``.embed`` is common for X-rays).

- FID: Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium", NeurIPS
  2017. ``||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2))``; :func:`frechet_distance` calls pytorch-fid's
  ``calculate_frechet_distance`` (github.com/mseitzer/pytorch-fid, package 0.3.0) on statistics computed as that
  package does (``np.mean``, ``np.cov(rowvar=False)``). FID is biased upward at small n (the bias falls like 1/n), so
  values are comparable only at equal n; with n <= D the covariances are singular.
- KID: Binkowski et al., "Demystifying MMD GANs", ICLR 2018. Unbiased MMD^2 with the cubic polynomial kernel
  ``k(x, y) = (x.y / D + 1)^3``, mean and standard deviation over random subsets. Follows torch-fidelity's
  ``kid_features_to_metric`` (github.com/toshas/torch-fidelity, ``torch_fidelity/metric_kid.py`` at 2a4d96b; read,
  not copied): same estimator, same subset draws (``np.random.RandomState(seed).choice(n, size, replace=False)``,
  real then fake, per subset) and ``np.std`` with ddof 0, so the numbers agree for equal seeds. Differences: the
  subset size is capped at ``min(N, M)`` instead of refused, and the kernel is computed in float64.
- PRDC: Naeem et al., "Reliable Fidelity and Diversity Metrics for Generative Models", ICML 2020, with precision and
  recall of Kynkaanniemi et al., NeurIPS 2019. Definitions of ``compute_prdc`` in github.com/clovaai/
  generative-evaluation-prdc (``prdc/prdc.py`` at 82db9ac; read, not copied): the radius of a point is the (k+1)-th
  smallest Euclidean distance to the points of its own set, itself included (its k-th nearest other point), and all
  comparisons are strict ``<``. Computed here in row chunks, so memory is O(chunk * max(N, M)) rather than O(N * M).
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from latentwalk.errors import ConfigError, DataError

__all__ = [
    "INCEPTION_DIM",
    "INCEPTION_WEIGHTS",
    "InceptionFeatures",
    "features",
    "fidelity_report",
    "frechet_distance",
    "kernel_inception_distance",
    "prdc",
]

INCEPTION_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"  # pytorch-fid's port of TF's 2015-12-05 Inception
INCEPTION_DIM = 2048  # pool3 feature size
_PRDC_CHUNK = 1024  # rows of a distance block in prdc(): 1024 x 5000 float64 = 41 MB
_LOADER_LOCK = threading.Lock()  # serialises the temporary swap of pytorch-fid's weight loader

FeatureSet = Tensor | np.ndarray


# ---------------------------------------------------------------------------------------------------------------
# Input checks.


def _as_numpy(x: FeatureSet, name: str, min_rows: int) -> np.ndarray:
    """``x`` as a float64 ``[N, D]`` array, checked: 2-D, at least ``min_rows`` rows, finite."""
    if isinstance(x, Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    elif isinstance(x, np.ndarray):
        x = x.astype(np.float64, copy=False)
    else:
        raise DataError(f"{name} must be a torch.Tensor or numpy array [N, D], got {type(x).__name__}")
    if x.ndim != 2:
        raise DataError(f"{name} must be a 2-D feature matrix [N, D], got shape {list(x.shape)}; flatten features")
    if x.shape[0] < min_rows:
        raise DataError(f"{name} has {x.shape[0]} rows, this metric needs at least {min_rows}; use more samples")
    if not np.isfinite(x).all():
        raise DataError(f"{name} contains NaN or infinite values; check the feature extractor and its inputs")
    return x


def _check_pair(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    if a.shape[1] != b.shape[1]:
        raise DataError(
            f"{names[0]} and {names[1]} have different feature sizes ({a.shape[1]} vs {b.shape[1]}); "
            f"extract both with the same extractor"
        )


def _fid_small_n_note(n: int, m: int, d: int) -> str | None:
    """The warning FID deserves for these sizes, or ``None``."""
    if min(n, m) > d:
        return None
    return (
        f"FID with {n} real and {m} fake samples of {d} features: the covariances are singular (n <= D) and FID is "
        f"strongly biased upward at this n; compare FIDs only at equal n and rely on KID"
    )


# ---------------------------------------------------------------------------------------------------------------
# FID.


def frechet_distance(a: FeatureSet, b: FeatureSet) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (FID when the features are Inception pool3).

    Equals pytorch-fid's ``calculate_frechet_distance(mu_a, sigma_a, mu_b, sigma_b)`` with ``mu = np.mean(x, 0)`` and
    ``sigma = np.cov(x, rowvar=False)`` (it is that function, given float64 statistics). The estimate is biased
    upward at small n; it warns when ``min(N, M) <= D`` (singular covariances, where pytorch-fid adds 1e-6 to the
    diagonals and prints a line). Tiny negative values (~-1e-10) for identical sets are rounding, left as is.

    Args:
        a: features ``[N, D]``, N >= 2, Tensor or array, any float dtype.
        b: features ``[M, D]``, M >= 2.

    Returns:
        FID, in squared feature units.

    Raises:
        DataError: fewer than 2 rows, non-2-D or non-finite input, different D, or a matrix square root with a
            large imaginary part (too few samples for the dimension).
    """
    from pytorch_fid.fid_score import calculate_frechet_distance

    a = _as_numpy(a, "real features", 2)  # [N, D]
    b = _as_numpy(b, "fake features", 2)  # [M, D]
    _check_pair(a, b, ("real features", "fake features"))
    note = _fid_small_n_note(a.shape[0], b.shape[0], a.shape[1])
    if note:
        warnings.warn(note, UserWarning, stacklevel=2)
    mu_a, sigma_a = np.mean(a, axis=0), np.atleast_2d(np.cov(a, rowvar=False))  # [D], [D, D]
    mu_b, sigma_b = np.mean(b, axis=0), np.atleast_2d(np.cov(b, rowvar=False))
    try:
        with warnings.catch_warnings():  # SciPy >= 1.16 deprecates the `disp` argument pytorch-fid passes to sqrtm
            warnings.filterwarnings("ignore", message=".*`disp` argument is deprecated", category=DeprecationWarning)
            fid = calculate_frechet_distance(mu_a, sigma_a, mu_b, sigma_b)
    except ValueError as e:  # "Imaginary component <x>" from pytorch-fid
        raise DataError(
            f"FID failed: the matrix square root of the covariance product is not real ({e}) with {a.shape[0]} and "
            f"{b.shape[0]} samples of {a.shape[1]} features; use more samples or a lower-dimensional extractor"
        ) from e
    return float(fid)


# ---------------------------------------------------------------------------------------------------------------
# KID.


def _polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between ``x`` ``[m, D]`` and ``y`` ``[m, D]`` with the kernel ``(x.y / D + 1)^3``."""
    m, d = x.shape
    k_xx = (x @ x.T / d + 1.0) ** 3  # [m, m]
    k_yy = (y @ y.T / d + 1.0) ** 3  # [m, m]
    k_xy = (x @ y.T / d + 1.0) ** 3  # [m, m]
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))  # off-diagonal means
    return float(within - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(
    a: FeatureSet, b: FeatureSet, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> dict[str, float]:
    """Kernel Inception Distance: unbiased MMD^2 with a cubic polynomial kernel, averaged over random subsets.

    Unbiased, so it can be slightly negative and is comparable across sample sizes (unlike FID). Each subset draws
    ``subset_size`` rows of ``a`` then of ``b`` without replacement from ``np.random.RandomState(seed)``, as
    torch-fidelity does. When ``subset_size`` reaches ``min(N, M)`` it is capped there; with ``N == M == subset_size``
    every subset is the full sets (reordered) and ``std`` is 0.

    Args:
        a: features ``[N, D]``, N >= 2.
        b: features ``[M, D]``, M >= 2.
        subsets: number of random subsets (>= 1).
        subset_size: rows per subset (>= 2), capped at ``min(N, M)``.
        seed: seed of the subset draws; equal seeds give equal results.

    Returns:
        ``{"mean": float, "std": float, "subset_size": int}``: mean and population standard deviation of the
        per-subset MMD^2 values, and the subset size used.

    Raises:
        ConfigError: ``subsets < 1`` or ``subset_size < 2``.
        DataError: fewer than 2 rows, non-2-D or non-finite input, or different D.
    """
    if subsets < 1:
        raise ConfigError(f"KID subsets must be >= 1, got {subsets}")
    if subset_size < 2:
        raise ConfigError(f"KID subset_size must be >= 2 (the unbiased estimate divides by m - 1), got {subset_size}")
    a = _as_numpy(a, "real features", 2)  # [N, D]
    b = _as_numpy(b, "fake features", 2)  # [M, D]
    _check_pair(a, b, ("real features", "fake features"))
    size = min(subset_size, a.shape[0], b.shape[0])
    rng = np.random.RandomState(seed)
    mmds = np.empty(subsets)
    for i in range(subsets):
        x = a[rng.choice(a.shape[0], size, replace=False)]  # [size, D]
        y = b[rng.choice(b.shape[0], size, replace=False)]  # [size, D]
        mmds[i] = _polynomial_mmd2(x, y)
    return {"mean": float(np.mean(mmds)), "std": float(np.std(mmds)), "subset_size": size}


# ---------------------------------------------------------------------------------------------------------------
# Precision, recall, density, coverage.


def _knn_radii(x: Tensor, k: int, chunk: int) -> Tensor:
    """(k+1)-th smallest distance from each row of ``x`` ``[N, D]`` to all rows (itself included): ``[N]``."""
    radii = torch.empty(x.shape[0], dtype=x.dtype)
    for s in range(0, x.shape[0], chunk):
        d = torch.cdist(x[s : s + chunk], x)  # [c, N]
        radii[s : s + chunk] = d.kthvalue(k + 1, dim=1).values
    return radii


def prdc(real: FeatureSet, fake: FeatureSet, *, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real`` (Naeem et al. 2020).

    With ``r_i`` the distance of real ``i`` to its k-th nearest other real and ``s_j`` that of fake ``j`` among
    fakes, and ``d_ij`` the Euclidean distance real ``i`` - fake ``j``:

    - precision = fraction of fakes with ``d_ij < r_i`` for some real ``i`` (fakes inside the real manifold);
    - recall = fraction of reals with ``d_ij < s_j`` for some fake ``j`` (reals inside the fake manifold);
    - density = ``(1 / (k M)) sum_j #{i : d_ij < r_i}``, ~1 when fakes follow the real density, can exceed 1;
    - coverage = fraction of reals whose nearest fake lies within ``r_i``.

    Distances are computed in float64 with ``torch.cdist``, in blocks of rows, so N and M of a few thousand fit in
    tens of MB.

    Args:
        real: real features ``[N, D]``, N >= k + 1.
        fake: fake features ``[M, D]``, M >= k + 1.
        k: neighbourhood size (>= 1); Naeem et al. use 5.

    Returns:
        ``{"precision", "recall", "density", "coverage"}`` as floats; all in [0, 1] except density (>= 0).

    Raises:
        ConfigError: ``k < 1``.
        DataError: fewer than k + 1 rows in a set, non-2-D or non-finite input, or different D.
    """
    if k < 1:
        raise ConfigError(f"PRDC k must be >= 1, got {k}")
    r = torch.from_numpy(_as_numpy(real, "real features", k + 1))  # [N, D] float64
    f = torch.from_numpy(_as_numpy(fake, "fake features", k + 1))  # [M, D] float64
    _check_pair(r.numpy(), f.numpy(), ("real features", "fake features"))
    real_radii = _knn_radii(r, k, _PRDC_CHUNK)  # [N]
    fake_radii = _knn_radii(f, k, _PRDC_CHUNK)  # [M]
    inside_counts = torch.zeros(f.shape[0], dtype=torch.int64)  # [M] reals whose ball holds fake j
    recalled = torch.zeros(r.shape[0], dtype=torch.bool)  # [N]
    covered = torch.zeros(r.shape[0], dtype=torch.bool)  # [N]
    for s in range(0, r.shape[0], _PRDC_CHUNK):
        d = torch.cdist(r[s : s + _PRDC_CHUNK], f)  # [c, M]
        radii = real_radii[s : s + _PRDC_CHUNK, None]  # [c, 1]
        inside_counts += (d < radii).sum(dim=0)
        recalled[s : s + _PRDC_CHUNK] = (d < fake_radii[None, :]).any(dim=1)
        covered[s : s + _PRDC_CHUNK] = d.min(dim=1).values < radii[:, 0]
    return {
        "precision": float((inside_counts > 0).double().mean()),
        "recall": float(recalled.double().mean()),
        "density": float(inside_counts.double().mean() / k),
        "coverage": float(covered.double().mean()),
    }


# ---------------------------------------------------------------------------------------------------------------
# Feature extraction.


def _module_of(extractor: Callable[[Tensor], Tensor]) -> nn.Module | None:
    """The module behind ``extractor``: itself, or the owner of a bound method such as ``guide.embed``."""
    if isinstance(extractor, nn.Module):
        return extractor
    owner = getattr(extractor, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


def features(images: Tensor, extractor: Callable[[Tensor], Tensor], *, batch: int = 64) -> Tensor:
    """Run a feature extractor over images in batches, in eval mode and without gradients.

    Args:
        images: ``[N, ...]`` (typically ``[N, C, H, W]`` in [-1, 1]), any device; N >= 1.
        extractor: an ``nn.Module``, a bound method of one (``guide.embed``), or any callable mapping a batch
            ``[B, ...]`` to ``[B, ...]``. A module (or the method's owner) is switched to eval mode for the call and
            restored afterwards; batches are moved to its parameters' device.
        batch: images per call (>= 1).

    Returns:
        Features ``[N, D]``, float64, on the CPU; trailing dimensions of the extractor's output are flattened.

    Raises:
        ConfigError: ``batch < 1``, or the extractor returns something other than a tensor with B rows.
        DataError: ``images`` is not a tensor with at least one row.
    """
    if batch < 1:
        raise ConfigError(f"feature batch must be >= 1, got {batch}")
    if not isinstance(images, Tensor) or images.ndim < 2 or images.shape[0] == 0:
        got = list(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise DataError(f"images must be a non-empty tensor [N, ...], got {got}")
    module = _module_of(extractor)
    was_training = module.training if module is not None else False
    param = next(module.parameters(), None) if module is not None else None
    device = param.device if param is not None else images.device
    out = []
    try:
        if module is not None:
            module.eval()
        with torch.no_grad():
            for s in range(0, images.shape[0], batch):
                x = images[s : s + batch].to(device)  # [B, ...]
                y = extractor(x)
                if not isinstance(y, Tensor) or y.ndim < 1 or y.shape[0] != x.shape[0]:
                    got = list(y.shape) if isinstance(y, Tensor) else type(y).__name__
                    raise ConfigError(f"the feature extractor must return [B, D] for B={x.shape[0]}, got {got}")
                out.append(y.reshape(y.shape[0], -1).to("cpu", torch.float64))  # [B, D]
    finally:
        if module is not None:
            module.train(was_training)
    return torch.cat(out)  # [N, D]


class _UnexpectedDownload(Exception):
    """pytorch-fid asked the swapped loader for something other than the FID weights (a version we do not know)."""


def _local_loader(state: dict[str, Tensor], calls: list[str]) -> Callable[..., dict[str, Tensor]]:
    """A stand-in for ``load_state_dict_from_url`` that hands out ``state`` for the FID URL and refuses others."""
    from pytorch_fid.inception import FID_WEIGHTS_URL

    def load(url: str, *args: Any, **kwargs: Any) -> dict[str, Tensor]:
        if url != FID_WEIGHTS_URL:
            raise _UnexpectedDownload(f"pytorch-fid asked for {url}, not the FID Inception weights; not downloading")
        calls.append(url)
        return state

    return load


class InceptionFeatures:
    """pytorch-fid's FID InceptionV3 (pool3, 2048-d), built from a local weights file without any download.

    pytorch-fid's ``InceptionV3()`` builds the network in ``fid_inception_v3()``, which calls the module-level
    ``pytorch_fid.inception.load_state_dict_from_url(FID_WEIGHTS_URL)`` (a download into the torch.hub cache) and
    ``load_state_dict`` (strict). Here the file is first resolved offline (:func:`latentwalk.weights.resolve_weights`:
    explicit path > ``$LATENTWALK_WEIGHTS_DIR`` > ``torch.hub.get_dir()/checkpoints``), loaded with
    ``torch.load(weights_only=True)``, and the loader is swapped, under a lock and only during construction, for one
    that returns that state dict; so the architecture, the block split and the forward are pytorch-fid's own.

    Inputs are ``[N, 1|3, H, W]`` in [-1, 1]. pytorch-fid's forward expects [0, 1]: it resizes bilinearly to 299 x
    299 (``resize_input=True``) and then maps to [-1, 1] with ``2x - 1`` (``normalize_input=True``). This class
    passes ``(x + 1) / 2``, so the network sees the original [-1, 1] values (bilinear resizing commutes with the
    affine map). Gray images are repeated to 3 channels, as pytorch-fid's PIL ``convert("RGB")`` does. Values are
    clamped to [-1, 1] (GAN outputs overshoot a little); pytorch-fid's own pipeline also quantises to 8 bits, which is
    not done here.

    Args:
        weights: ``pt_inception-2015-12-05-6726825d.pth`` or a folder holding it; ``None`` = search.
        device: where the network runs; ``None`` = CPU.
        verify_hash: check the file's SHA-256 prefix (off only for tests or deliberately substituted weights).

    Raises:
        MissingWeightsError: the weights file was found nowhere (the message names it and where to put it).
        DataError: the file fails the hash check, is not a readable state dict, or does not fit the network.
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        device: torch.device | str | None = None,
        verify_hash: bool = True,
    ) -> None:
        from latentwalk.weights import resolve_weights

        file = resolve_weights(INCEPTION_WEIGHTS, weights, verify_hash=verify_hash)  # before anything could download
        self.weights_path: Path = file
        self.device = torch.device(device or "cpu")
        self.model = self._build(file).to(self.device).eval().requires_grad_(False)

    @staticmethod
    def _build(file: Path) -> nn.Module:
        from latentwalk.weights import load_state_dict

        state = load_state_dict(file, "FID Inception state_dict")

        import pytorch_fid.inception as pfi

        calls: list[str] = []
        with _LOADER_LOCK:
            original = pfi.load_state_dict_from_url
            pfi.load_state_dict_from_url = _local_loader(state, calls)
            try:
                model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[INCEPTION_DIM]], use_fid_inception=True)
            except RuntimeError as e:  # load_state_dict(strict=True): missing/unexpected keys or shapes
                why = " ".join(str(e).split())
                why = why if len(why) <= 300 else why[:300] + "..."
                raise DataError(
                    f"{file} does not fit pytorch-fid's FID Inception ({why}); use the original {INCEPTION_WEIGHTS}"
                ) from e
            finally:
                pfi.load_state_dict_from_url = original
        if not calls:  # a pytorch-fid that fetches weights another way; internal invariant, not user input
            raise RuntimeError("pytorch-fid built InceptionV3 without load_state_dict_from_url; unsupported version")
        return model

    def __call__(self, images: Tensor, batch: int = 50) -> Tensor:
        """Pool3 features of images.

        Args:
            images: ``[N, 1|3, H, W]``, float, in [-1, 1] (values up to 1.5 in magnitude are clamped), any device.
            batch: images per forward pass (>= 1).

        Returns:
            ``[N, 2048]`` float64 on the CPU.

        Raises:
            ConfigError: ``batch < 1``.
            DataError: wrong shape, channel count, dtype, non-finite values, or a range that is not [-1, 1].
        """
        if batch < 1:
            raise ConfigError(f"Inception batch must be >= 1, got {batch}")
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3) or not len(images):
            got = list(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise DataError(f"Inception features need images [N, 1|3, H, W] with N >= 1, got {got}")
        if not images.is_floating_point():
            raise DataError(f"Inception features need float images in [-1, 1], got dtype {images.dtype}")
        lo, hi = float(images.min()), float(images.max())
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo < -1.5 or hi > 1.5:
            raise DataError(
                f"Inception features need images in [-1, 1], got values in [{lo:.3g}, {hi:.3g}]; "
                f"map [0, 1] images with 2x - 1 and [0, 255] images with x / 127.5 - 1"
            )
        out = []
        with torch.no_grad():
            for s in range(0, images.shape[0], batch):
                x = images[s : s + batch].to(self.device, torch.float32).clamp(-1.0, 1.0)  # [B, C, H, W]
                x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x  # [B, 3, H, W]
                y = self.model((x + 1.0) / 2.0)[0]  # [B, 2048, 1, 1]; pytorch-fid wants [0, 1]
                out.append(y.reshape(y.shape[0], -1).to("cpu", torch.float64))  # [B, 2048]
        return torch.cat(out)  # [N, 2048]


# ---------------------------------------------------------------------------------------------------------------
# Report.


def fidelity_report(
    real_feats: FeatureSet,
    fake_feats: FeatureSet,
    *,
    extractor_name: str,
    kid_subsets: int = 100,
    seed: int = 0,
    k: int = 5,
) -> dict[str, Any]:
    """FID, KID and PRDC of fake against real features, labelled with the extractor that produced them.

    Args:
        real_feats: ``[N, D]`` real features (N >= k + 1).
        fake_feats: ``[M, D]`` fake features from the same extractor (M >= k + 1).
        extractor_name: what produced the features (e.g. ``"InceptionV3 pool3 (pytorch-fid)"``); required, since
            the numbers are meaningless without it.
        kid_subsets: KID subsets (subset size 1000, capped at ``min(N, M)``).
        seed: seed of the KID subset draws.
        k: PRDC neighbourhood size.

    Returns:
        ``{"extractor", "fid", "kid": {"mean", "std", "subset_size"}, "prdc": {"precision", "recall", "density",
        "coverage"}, "n_real", "n_fake", "dim", "notes"}``; ``notes`` lists caveats (small-n FID, capped KID subsets).

    Raises:
        ConfigError: empty ``extractor_name`` or invalid ``kid_subsets``/``k``.
        DataError: as :func:`frechet_distance`, :func:`kernel_inception_distance` and :func:`prdc`.
    """
    if not isinstance(extractor_name, str) or not extractor_name.strip():
        raise ConfigError("fidelity_report needs a non-empty extractor_name saying which features were compared")
    real = _as_numpy(real_feats, "real features", 2)  # [N, D]
    fake = _as_numpy(fake_feats, "fake features", 2)  # [M, D]
    _check_pair(real, fake, ("real features", "fake features"))
    n, m, d = real.shape[0], fake.shape[0], real.shape[1]
    notes = []
    fid_note = _fid_small_n_note(n, m, d)
    if fid_note:
        notes.append(fid_note)
    kid = kernel_inception_distance(real, fake, subsets=kid_subsets, seed=seed)
    if kid["subset_size"] < 1000:
        notes.append(f"KID subsets of {kid['subset_size']} (capped at min(N, M)) instead of 1000")
    return {
        "extractor": extractor_name,
        "fid": frechet_distance(real, fake),
        "kid": kid,
        "prdc": prdc(real, fake, k=k),
        "n_real": n,
        "n_fake": m,
        "dim": d,
        "notes": notes,
    }
