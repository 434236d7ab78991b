"""Privacy of a synthetic dataset: nearest-neighbour distances, copying tests, membership inference, re-identification.

Notation: R = real training images (the generator's members), H = real held-out images (non-members, unseen
patients), S = synthetic images. Every set is given as embeddings ``[N, D]`` in one feature space, with the
``metric`` of :func:`latentwalk.distances.nearest` that belongs to it: ``"sqeuclidean"`` for
:class:`~latentwalk.distances.LpipsEmbedding` rows (the distance *is* LPIPS), ``"cosine"`` for identity embeddings,
``"euclidean"`` for pixels. Nearest neighbours are exact (float64 blocks). Results are plain dicts of Python
numbers, floats rounded to 6 significant digits, ready for ``json.dump``.

Methods:

- DCR / NNDR: distance to the closest record and nearest-neighbour distance ratio, with the held-out images as the
  baseline a generator that learned the distribution (and no individual) would match.
- Identifiability: Yoon, Drumright, van der Schaar, "Anonymization through data synthesis using generative
  adversarial networks (ADS-GAN)", IEEE JBHI 2020, with plain (unweighted) distances.
- Authenticity: Alaa, van Breugel, Saveliev, van der Schaar, "How faithful is your synthetic data? Sample-level
  metrics for evaluating and auditing generative models", ICML 2022.
- C_T: Meehan, Chaudhuri, Dasgupta, "A non-parametric test to detect data-copying in generative models",
  AISTATS 2020 (arXiv 2004.05675). The per-cell statistic and the weighting follow the authors' code
  (github.com/casey-meehan/data-copying, ``data_copying_tests.py`` at commit 50db23a; read, not copied): distances to
  the training points *of the same cell*, ``U`` counted for the synthetic sample, cells kept when they hold enough
  synthetic points, mean weighted by the test mass of each kept cell. One deliberate difference: their code
  subtracts 0.5 from the null mean of ``U`` ("continuity correction"); we use the paper's
  ``Z_U = (U - mn/2) / sqrt(mn(m + n + 1) / 12)``, which is larger in magnitude by at most ``0.5 / sd``.
- Membership inference: balanced accuracy and AUC of a threshold attack (Yeom et al., CSF 2018, for the loss of a
  downstream classifier; Chen et al., "GAN-Leaks", CCS 2020, full black-box, for the distance of a query to its
  nearest synthetic image).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import mannwhitneyu, rankdata
from torch import Tensor

from latentwalk.distances import METRICS, check_rows, nearest, pairwise_sq_dists
from latentwalk.errors import ConfigError, DataError

__all__ = [
    "auc_score",
    "auc_score_chunked",
    "best_threshold_accuracy",
    "nearest_real",
    "mml",
    "collisions",
    "dcr",
    "nndr",
    "identifiability",
    "authenticity",
    "data_copying",
    "mia_distance",
    "mia_loss",
    "reidentification",
]

KMEANS_ITERS = 100  # Lloyd iterations at most for the C_T partition (stops earlier when the centroids are fixed)
PROB_ATOL = 1e-3  # tolerance on the row sums of probability matrices


# ---------------------------------------------------------------------------------------------------------------
# Input checks and conversions.


def _sig(x: float) -> float:
    """``x`` rounded to 6 significant digits, as a Python float."""
    return float(f"{float(x):.6g}")


def _check_metric(metric: Any) -> None:
    if metric not in METRICS:
        raise ConfigError(f'unknown metric "{metric}"; expected one of {", ".join(METRICS)}')


def _check_int(value: Any, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def _embeddings(*named: tuple[str, Any]) -> None:
    """Check that each ``(name, x)`` is a non-empty float tensor ``[N, D]``, all with one ``D`` and device."""
    first: tuple[str, Tensor] | None = None
    for name, x in named:
        check_rows(x, name)
        if x.shape[0] == 0:
            raise DataError(f"{name} has no rows; give at least one embedding")
        if first is None:
            first = (name, x)
        elif x.shape[1] != first[1].shape[1]:
            raise ConfigError(
                f"{name} has {x.shape[1]} features per row but {first[0]} has {first[1].shape[1]}; "
                "embed every set with the same network"
            )
        elif x.device != first[1].device:
            raise ConfigError(
                f"{name} is on {x.device} but {first[0]} is on {first[1].device}; move them to one device with .to()"
            )


def _scores(x: Any, name: str) -> np.ndarray:
    """A non-empty, finite, 1-D float64 array from a tensor, array or sequence of numbers."""
    if isinstance(x, Tensor):
        arr = x.detach().cpu().double().numpy()
    else:
        try:
            arr = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a 1-D array of numbers, got {type(x).__name__}") from None
    if arr.ndim != 1:
        raise ConfigError(f"{name} must be 1-D (one score per sample), got shape {list(arr.shape)}")
    if arr.size == 0:
        raise DataError(f"{name} is empty; give at least one score")
    if not np.isfinite(arr).all():
        raise DataError(f"{name} contains NaN or infinite values; remove or fix those samples")
    return arr


def _groups(groups: Sequence[Hashable] | None, n: int, name: str) -> list[Hashable]:
    """One group id per row: ``groups`` checked, or the row index (each row its own group) when None."""
    if groups is None:
        ids: list[Hashable] = list(range(n))
    else:
        if isinstance(groups, (str, bytes)) or not hasattr(groups, "__len__"):
            raise ConfigError(f"{name} must be a sequence with one patient id per row, got {type(groups).__name__}")
        if len(groups) != n:
            raise ConfigError(f"{name} has {len(groups)} entries for {n} rows; give one patient id per row")
        ids = groups.tolist() if isinstance(groups, (Tensor, np.ndarray)) else list(groups)
    if len(set(ids)) < 2:
        what = "one patient" if groups is not None else "one row"
        raise DataError(f"the training set has only {what}, so no image has an 'other real' neighbour; add patients")
    return ids


def _np(x: Tensor) -> np.ndarray:
    return x.detach().cpu().double().numpy()


# ---------------------------------------------------------------------------------------------------------------
# Scores of a two-class attack.


def auc_score(scores_pos: Any, scores_neg: Any) -> float:
    """ROC AUC that a positive scores higher than a negative: ``U / (n_pos * n_neg)``, ties counting 1/2.

    ``U`` is the Mann-Whitney statistic of the positives, from average ranks of the pooled scores
    (``scipy.stats.rankdata``), i.e. the number of pairs with ``pos > neg`` plus half the pairs with ``pos == neg``.

    Args:
        scores_pos: ``[n_pos]`` scores of the positives (e.g. members), tensor, array or sequence.
        scores_neg: ``[n_neg]`` scores of the negatives.

    Returns:
        AUC in [0, 1]; 0.5 when the scores carry no information, 1.0 when every positive outscores every negative.

    Raises:
        ConfigError: scores that are not 1-D numbers.
        DataError: an empty set, NaN or infinity.
    """
    pos, neg = _scores(scores_pos, "scores_pos"), _scores(scores_neg, "scores_neg")
    ranks = rankdata(np.concatenate([pos, neg]))  # [n_pos + n_neg], ties get their average rank
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (pos.size * neg.size))


def auc_score_chunked(scores_pos: Any, neg_chunks: Iterable[Any]) -> float:
    """:func:`auc_score` with the negatives given in chunks and never all in memory; the same value, exactly.

    ``2U`` is counted against the sorted positives, chunk by chunk: twice the pairs with ``pos > neg`` plus the
    pairs with ``pos == neg``, an integer. The average ranks :func:`auc_score` sums are multiples of 1/2, so its
    ``U`` is exact too (below 2^52) and both divide the same number by the same count.

    Args:
        scores_pos: ``[n_pos]`` scores of the positives (kept in memory, sorted).
        neg_chunks: an iterable of ``[n_i]`` scores of the negatives (tensors, arrays or sequences); empty chunks
            are skipped.

    Returns:
        AUC in [0, 1], as :func:`auc_score` of the positives and all the negatives.

    Raises:
        ConfigError: scores that are not 1-D numbers.
        DataError: no positives or no negatives at all, NaN or infinity.
    """
    pos = np.sort(_scores(scores_pos, "scores_pos"))  # [n_pos]
    twice_u, n_neg = 0, 0
    for chunk in neg_chunks:
        if len(chunk) == 0:
            continue
        neg = _scores(chunk, "scores_neg")  # [n_i]
        at_most = np.searchsorted(pos, neg, side="right")  # positives <= each negative
        below = np.searchsorted(pos, neg, side="left")  # positives < each negative
        twice_u += 2 * int((pos.size - at_most).sum()) + int((at_most - below).sum())
        n_neg += neg.size
    if n_neg == 0:
        raise DataError("scores_neg is empty; give at least one score")
    return float((twice_u / 2) / (pos.size * n_neg))


def best_threshold_accuracy(scores_pos: Any, scores_neg: Any) -> float:
    """Balanced accuracy of the best single threshold ``score >= t => positive`` (the usual MIA "attack accuracy").

    Computes ``max_t (TPR(t) + TNR(t)) / 2`` over every distinct pooled score ``t`` (the smallest predicts
    "positive" for all and scores 0.5; thresholds between scores add nothing), where ``TPR(t)`` is the share of
    positives with score ``>= t`` and ``TNR(t)`` the share of negatives with score ``< t``. The direction is fixed
    (higher = positive), so the value is in [0.5, 1]; it equals ``0.5 + KS / 2`` with ``KS`` the one-sided
    Kolmogorov-Smirnov distance ``max_t (TPR(t) - FPR(t))``. It is the plain accuracy on balanced sets. The threshold
    is chosen knowing the labels, so this is an optimistic (upper-bound) attack accuracy; on finite samples of
    identical distributions it is slightly above 0.5 (about ``0.5 + 0.44 / sqrt(n)`` for ``n`` per class).

    Args:
        scores_pos: ``[n_pos]`` scores of the positives (members).
        scores_neg: ``[n_neg]`` scores of the negatives (non-members).

    Returns:
        Balanced accuracy in [0.5, 1].

    Raises:
        ConfigError: scores that are not 1-D numbers.
        DataError: an empty set, NaN or infinity.
    """
    pos, neg = np.sort(_scores(scores_pos, "scores_pos")), np.sort(_scores(scores_neg, "scores_neg"))
    thresholds = np.unique(np.concatenate([pos, neg]))  # [T] ascending
    tpr = 1.0 - np.searchsorted(pos, thresholds, side="left") / pos.size  # [T] P(pos >= t)
    tnr = np.searchsorted(neg, thresholds, side="left") / neg.size  # [T] P(neg < t)
    return float(((tpr + tnr) / 2).max())


# ---------------------------------------------------------------------------------------------------------------
# Distances to the closest real image.


def nearest_real(syn: Tensor, real: Tensor, metric: str) -> Tensor:
    """Distance of each synthetic (or any query) embedding to its nearest real embedding.

    Args:
        syn: ``[N, D]`` float queries.
        real: ``[M, D]`` float references, same device.
        metric: ``"sqeuclidean"``, ``"euclidean"`` or ``"cosine"`` (see :func:`latentwalk.distances.nearest`).

    Returns:
        ``[N]`` distances in the metric's units, dtype of the inputs, on their device.

    Raises:
        ConfigError: bad shapes, devices or metric.
        DataError: an empty set, NaN or infinity, a zero row with ``"cosine"``.
    """
    _embeddings(("syn", syn), ("real", real))
    _check_metric(metric)
    return nearest(syn, real, k=1, metric=metric).dists[:, 0]  # [N]


def mml(syn: Tensor, real: Tensor, metric: str) -> dict[str, float | int]:
    """Mean over synthetic images of the distance to the nearest real image ("mmL" when the space is LPIPS).

    Args:
        syn: ``[N, D]`` synthetic embeddings.
        real: ``[M, D]`` real embeddings (usually the training set), same device.
        metric: distance of :func:`latentwalk.distances.nearest`.

    Returns:
        ``mml`` (mean), ``median``, ``min``, ``max`` of the ``N`` nearest-real distances, ``n_syn``, ``n_real``.
        Small values mean synthetic images sit on top of real ones.

    Raises:
        ConfigError: bad shapes, devices or metric.
        DataError: an empty set, NaN or infinity.
    """
    d = _np(nearest_real(syn, real, metric))  # [N]
    return {
        "mml": _sig(d.mean()),
        "median": _sig(np.median(d)),
        "min": _sig(d.min()),
        "max": _sig(d.max()),
        "n_syn": int(d.size),
        "n_real": int(real.shape[0]),
    }


def collisions(syn: Tensor, real: Tensor, metric: str, threshold: float, *, n_pairs: int = 8) -> dict[str, Any]:
    """Synthetic images whose nearest real image is closer than ``threshold``, and the closest pairs overall.

    Args:
        syn: ``[N, D]`` synthetic embeddings.
        real: ``[M, D]`` real embeddings, same device.
        metric: distance of :func:`latentwalk.distances.nearest`.
        threshold: a collision is a nearest-real distance strictly below this, in the metric's units (>= 0).
        n_pairs: closest pairs to list, whatever the threshold (for showing side by side); at most ``N``.

    Returns:
        ``count`` and ``fraction`` of colliding synthetic images, ``n_real_collided`` (distinct real images hit),
        ``threshold``, ``n_syn``, and ``closest_pairs``: up to ``n_pairs`` tuples ``(syn_index, real_index,
        distance)`` sorted by ascending distance (ties by synthetic index).

    Raises:
        ConfigError: bad shapes, devices, metric, threshold or ``n_pairs``.
        DataError: an empty set, NaN or infinity.
    """
    _embeddings(("syn", syn), ("real", real))
    _check_metric(metric)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < math.inf:
        raise ConfigError(f"threshold must be a finite number >= 0 in the metric's units, got {threshold!r}")
    _check_int(n_pairs, "n_pairs", 0)
    res = nearest(syn, real, k=1, metric=metric)
    d, idx = _np(res.dists[:, 0]), res.index[:, 0].cpu().numpy()  # [N], [N]
    below = d < threshold  # [N]
    order = np.argsort(d, kind="stable")[:n_pairs]
    return {
        "threshold": float(threshold),
        "count": int(below.sum()),
        "fraction": _sig(below.mean()),
        "n_real_collided": int(np.unique(idx[below]).size),
        "n_syn": int(d.size),
        "closest_pairs": [(int(i), int(idx[i]), _sig(d[i])) for i in order],
    }


def dcr(syn: Tensor, train: Tensor, holdout: Tensor, metric: str) -> dict[str, float | int]:
    """Distance to closest record of the synthetic images, against the held-out baseline.

    ``d_S`` = distance of each synthetic image to its nearest training image; ``d_H`` = the same for each held-out
    real image (what a generator of new patients should match). A privacy-preserving generator has ``d_S`` no
    smaller than ``d_H``.

    Args:
        syn: ``[N, D]`` synthetic embeddings.
        train: ``[M, D]`` training (member) embeddings.
        holdout: ``[H, D]`` held-out (non-member) embeddings; same space and device for all three.
        metric: distance of :func:`latentwalk.distances.nearest`.

    Returns:
        ``syn_median``, ``syn_p05``, ``holdout_median``, ``holdout_p05`` (5th percentiles, linear interpolation);
        ``p_closer`` = P(d_S < d_H) over all (synthetic, held-out) pairs, ties 1/2: 0.5 is the ideal, 1.0 means
        every synthetic image is closer to the training set than any held-out image; ``share_below_holdout_p05`` =
        fraction of synthetic images with ``d_S`` below the 5th percentile of ``d_H`` (0.05 expected);
        ``n_syn``, ``n_holdout``.

    Raises:
        ConfigError: bad shapes, devices or metric.
        DataError: an empty set, NaN or infinity.
    """
    _embeddings(("syn", syn), ("train", train), ("holdout", holdout))
    d_s = _np(nearest_real(syn, train, metric))  # [N]
    d_h = _np(nearest_real(holdout, train, metric))  # [H]
    h_p05 = np.percentile(d_h, 5)
    return {
        "syn_median": _sig(np.median(d_s)),
        "syn_p05": _sig(np.percentile(d_s, 5)),
        "holdout_median": _sig(np.median(d_h)),
        "holdout_p05": _sig(h_p05),
        "p_closer": _sig(auc_score(d_h, d_s)),  # P(d_H > d_S) + ties / 2
        "share_below_holdout_p05": _sig((d_s < h_p05).mean()),
        "n_syn": int(d_s.size),
        "n_holdout": int(d_h.size),
    }


def _nndr_values(query: Tensor, train: Tensor, metric: str) -> np.ndarray:
    """``[N]`` ratio d1 / d2 of the two nearest training distances, 0 where both are 0."""
    d = _np(nearest(query, train, k=2, metric=metric).dists)  # [N, 2]
    d1, d2 = d[:, 0], d[:, 1]
    return np.divide(d1, d2, out=np.zeros_like(d1), where=d2 > 0)


def nndr(syn: Tensor, train: Tensor, metric: str, holdout: Tensor | None = None) -> dict[str, float | int]:
    """Nearest-neighbour distance ratio ``d1 / d2`` of each synthetic image to its two nearest training images.

    A ratio near 0 means the image is much closer to one training image than to any other (a likely copy); the
    held-out images give the baseline. The ratio is taken in the metric's units (for ``"sqeuclidean"`` it is the
    square of the Euclidean ratio); ``0 / 0`` (two exact duplicates in the training set, both at distance 0) counts
    as 0.

    Args:
        syn: ``[N, D]`` synthetic embeddings.
        train: ``[M, D]`` training embeddings, ``M >= 2``.
        metric: distance of :func:`latentwalk.distances.nearest`.
        holdout: optional ``[H, D]`` held-out embeddings for the baseline.

    Returns:
        ``syn_mean``, ``syn_median``, ``syn_p05``, ``n_syn``, and with ``holdout`` also ``holdout_mean``,
        ``holdout_median``, ``holdout_p05``, ``n_holdout``.

    Raises:
        ConfigError: bad shapes, devices or metric.
        DataError: an empty set, fewer than 2 training images, NaN or infinity.
    """
    queries = [("syn", syn)] + ([("holdout", holdout)] if holdout is not None else [])
    _embeddings(("train", train), *queries)
    _check_metric(metric)
    if train.shape[0] < 2:
        raise DataError(f"nndr needs at least 2 training images (two nearest neighbours), got {train.shape[0]}")
    out: dict[str, float | int] = {}
    for name, query in queries:
        r = _nndr_values(query, train, metric)  # [N]
        out |= {
            f"{name}_mean": _sig(r.mean()),
            f"{name}_median": _sig(np.median(r)),
            f"{name}_p05": _sig(np.percentile(r, 5)),
            f"n_{name}": int(r.size),
        }
    return out


# ---------------------------------------------------------------------------------------------------------------
# Sample-level privacy: identifiability and authenticity.


def _nearest_other_real(train: Tensor, metric: str, groups: list[Hashable]) -> tuple[Tensor, Tensor]:
    """``[M]`` distance of each training image to its nearest training image of another group, and that index."""
    res = nearest(train, train, k=1, metric=metric, a_groups=groups, b_groups=groups)
    return res.dists[:, 0], res.index[:, 0]


def identifiability(train: Tensor, syn: Tensor, metric: str, train_groups: Sequence[Hashable] | None = None) -> float:
    """Share of training images whose nearest synthetic image is closer than their nearest other real image.

    ADS-GAN's identifiability (Yoon et al. 2020) with plain distances: real image ``r`` is identifiable when
    ``min_s d(r, s) < min_{r' != r} d(r, r')`` (strictly). "Other" is any other row, or, with ``train_groups``, any
    image of a *different* patient, so a second image of the same patient never hides a copy.

    Args:
        train: ``[M, D]`` training embeddings.
        syn: ``[N, D]`` synthetic embeddings, same space and device.
        metric: distance of :func:`latentwalk.distances.nearest`.
        train_groups: optional patient id per training row (ids are only compared, never reported).

    Returns:
        Identifiability in [0, 1]; a generator of new patients gives a value near 0.5 or below, copies give ~1.

    Raises:
        ConfigError: bad shapes, devices, metric, or groups of the wrong length.
        DataError: an empty set, fewer than 2 training rows/patients, NaN or infinity.
    """
    _embeddings(("train", train), ("syn", syn))
    _check_metric(metric)
    groups = _groups(train_groups, train.shape[0], "train_groups")
    d_other, _ = _nearest_other_real(train, metric, groups)  # [M]
    d_syn = nearest(train, syn, k=1, metric=metric).dists[:, 0]  # [M]
    return _sig((d_syn < d_other).double().mean().item())


def authenticity(
    train: Tensor, syn: Tensor, metric: str, train_groups: Sequence[Hashable] | None = None
) -> dict[str, float | int]:
    """Share of authentic synthetic images (Alaa et al. 2022).

    For synthetic ``s`` with nearest real image ``r = NN_R(s)``, ``s`` is authentic when ``r`` is closer to its own
    nearest other real image than to ``s``: ``d(r, NN_{R minus r}(r)) < d(s, r)``; otherwise (``s`` at least as close
    to ``r`` as any other real image is) ``s`` is unauthentic, a likely copy of ``r``. With ``train_groups``, "other
    real image" means an image of a different patient.

    Args:
        train: ``[M, D]`` training embeddings.
        syn: ``[N, D]`` synthetic embeddings, same space and device.
        metric: distance of :func:`latentwalk.distances.nearest`.
        train_groups: optional patient id per training row.

    Returns:
        ``authentic_fraction`` in [0, 1], ``n_authentic``, ``n_unauthentic``, ``n_syn``.

    Raises:
        ConfigError: bad shapes, devices, metric, or groups of the wrong length.
        DataError: an empty set, fewer than 2 training rows/patients, NaN or infinity.
    """
    _embeddings(("train", train), ("syn", syn))
    _check_metric(metric)
    groups = _groups(train_groups, train.shape[0], "train_groups")
    d_other, _ = _nearest_other_real(train, metric, groups)  # [M]
    res = nearest(syn, train, k=1, metric=metric)
    authentic = d_other[res.index[:, 0]] < res.dists[:, 0]  # [N]
    n_auth = int(authentic.sum())
    return {
        "authentic_fraction": _sig(n_auth / syn.shape[0]),
        "n_authentic": n_auth,
        "n_unauthentic": int(syn.shape[0] - n_auth),
        "n_syn": int(syn.shape[0]),
    }


# ---------------------------------------------------------------------------------------------------------------
# The data-copying test C_T.


def _kmeans(x: Tensor, k: int, seed: int) -> Tensor:
    """Centroids ``[k, D]`` of seeded k-means (k-means++ seeding, then Lloyd) on the rows of ``x`` ``[M, D]``."""
    g = torch.Generator().manual_seed(seed)  # CPU generator: draws are moved to x's device
    first = int(torch.randint(x.shape[0], (1,), generator=g))
    chosen = [first]
    d2 = pairwise_sq_dists(x, x[first : first + 1])[:, 0].double().cpu()  # [M] to the nearest chosen centroid
    for _ in range(1, k):
        weights = d2 if float(d2.sum()) > 0 else torch.ones_like(d2)  # fewer distinct rows than k: uniform
        nxt = int(torch.multinomial(weights, 1, generator=g))
        chosen.append(nxt)
        d2 = torch.minimum(d2, pairwise_sq_dists(x, x[nxt : nxt + 1])[:, 0].double().cpu())
    centers = x[chosen].clone()  # [k, D]
    for _ in range(KMEANS_ITERS):
        labels = nearest(x, centers, k=1, metric="sqeuclidean").index[:, 0]  # [M]
        sums = torch.zeros_like(centers).index_add_(0, labels, x)  # [k, D]
        counts = torch.bincount(labels, minlength=k).to(x.dtype)[:, None]  # [k, 1]
        new = torch.where(counts > 0, sums / counts.clamp_min(1), centers)  # empty cells keep their centroid
        if torch.equal(new, centers):
            break
        centers = new
    return centers


def _cell_z(l_test: np.ndarray, l_syn: np.ndarray) -> float:
    """Meehan et al.'s ``Z_U`` of one cell: U of the synthetic distances, Z-scored under the null (no tie term)."""
    n, m = l_test.size, l_syn.size
    u = mannwhitneyu(l_syn, l_test, alternative="two-sided", method="asymptotic").statistic  # pairs syn > test
    return float((u - n * m / 2) / math.sqrt(n * m * (n + m + 1) / 12))


def data_copying(
    train: Tensor,
    test: Tensor,
    syn: Tensor,
    metric: str = "euclidean",
    *,
    n_cells: int = 10,
    seed: int = 0,
    min_syn_per_cell: int = 20,
) -> dict[str, Any]:
    """Meehan et al.'s three-sample data-copying statistic ``C_T`` (AISTATS 2020).

    1. Cells: k-means with ``n_cells`` centroids on the training embeddings (seeded k-means++, Lloyd), every point
       assigned to its nearest centroid (squared Euclidean; with ``metric="cosine"`` on unit-normalised rows).
    2. In cell ``pi``: ``L(x)`` = distance of ``x`` to its nearest training point of that cell, for the test points
       ``P_n(pi)`` and the synthetic points ``Q_m(pi)``; ``U`` = number of pairs (test, synthetic) where the synthetic
       distance is larger (ties 1/2); ``Z_U = (U - nm/2) / sqrt(nm(n + m + 1) / 12)``. Synthetic points closer to the
       training set than test points give ``Z_U < 0``.
    3. ``C_T`` = mean of ``Z_U`` over the kept cells weighted by the test mass ``n(pi) / n``. A cell is kept when it
       holds at least ``min_syn_per_cell`` synthetic points (the paper's ``tau``, ``Q_m(pi) > tau``, with
       ``tau = 20 / m`` in their experiments) and at least one test and one training point.

    Reading: ``C_T << 0`` (below about -3) is data copying; ``C_T`` near 0 (roughly N(0, 1/cells) under the null)
    is fine; ``C_T >> 0`` is underfitting (synthetic points farther from the training set than new real points).

    Args:
        train: ``[M, D]`` training embeddings (defines the cells and the distances).
        test: ``[n, D]`` held-out real embeddings, drawn like the training set and never trained on.
        syn: ``[m, D]`` synthetic embeddings; same space and device for all three.
        metric: distance for ``L`` (rank-based: ``"euclidean"`` and ``"sqeuclidean"`` give the same result).
        n_cells: k-means cells, ``1 <= n_cells <= M``.
        seed: seed of the k-means++ draws (the result is deterministic for a seed).
        min_syn_per_cell: synthetic points a cell needs to be kept.

    Returns:
        ``c_t``; ``n_cells``, ``n_cells_used``; ``test_mass_used`` and ``syn_mass_used`` (shares of test and
        synthetic points in kept cells); per cell (lists of length ``n_cells``) ``cell_z`` (None for cells not
        kept), ``cell_n_train``, ``cell_n_test``, ``cell_n_syn``.

    Raises:
        ConfigError: bad shapes, devices, metric, ``n_cells``, ``seed`` or ``min_syn_per_cell``.
        DataError: an empty set, NaN or infinity, or no cell with enough synthetic and test points.
    """
    _embeddings(("train", train), ("test", test), ("syn", syn))
    _check_metric(metric)
    _check_int(n_cells, "n_cells", 1)
    _check_int(seed, "seed", 0)
    _check_int(min_syn_per_cell, "min_syn_per_cell", 1)
    if n_cells > train.shape[0]:
        raise ConfigError(f"n_cells={n_cells} exceeds the {train.shape[0]} training embeddings; lower n_cells")

    def space(x: Tensor) -> Tensor:
        return F.normalize(x, dim=1) if metric == "cosine" else x

    centers = _kmeans(space(train), n_cells, seed)  # [k, D]
    labels = [nearest(space(x), centers, k=1, metric="sqeuclidean").index[:, 0] for x in (train, test, syn)]
    n_test, n_syn = test.shape[0], syn.shape[0]
    z_cells: list[float | None] = []
    counts: list[list[int]] = []
    weighted, mass, syn_used = 0.0, 0.0, 0
    for c in range(n_cells):
        t_c, p_c, q_c = (x[lab == c] for x, lab in zip((train, test, syn), labels, strict=True))
        counts.append([t_c.shape[0], p_c.shape[0], q_c.shape[0]])
        if t_c.shape[0] == 0 or p_c.shape[0] == 0 or q_c.shape[0] < min_syn_per_cell:
            z_cells.append(None)
            continue
        l_test = _np(nearest(p_c, t_c, k=1, metric=metric).dists[:, 0])  # [n(pi)]
        l_syn = _np(nearest(q_c, t_c, k=1, metric=metric).dists[:, 0])  # [m(pi)]
        z = _cell_z(l_test, l_syn)
        z_cells.append(_sig(z))
        weighted += p_c.shape[0] / n_test * z
        mass += p_c.shape[0] / n_test
        syn_used += q_c.shape[0]
    used = sum(z is not None for z in z_cells)
    if used == 0:
        raise DataError(
            f"no k-means cell holds at least min_syn_per_cell={min_syn_per_cell} synthetic and one test embedding "
            f"({n_syn} synthetic, {n_test} test in {n_cells} cells); lower n_cells or min_syn_per_cell, or add samples"
        )
    return {
        "c_t": _sig(weighted / mass),
        "n_cells": n_cells,
        "n_cells_used": used,
        "test_mass_used": _sig(mass),
        "syn_mass_used": _sig(syn_used / n_syn),
        "cell_z": z_cells,
        "cell_n_train": [c[0] for c in counts],
        "cell_n_test": [c[1] for c in counts],
        "cell_n_syn": [c[2] for c in counts],
    }


# ---------------------------------------------------------------------------------------------------------------
# Membership inference and re-identification.


def mia_distance(members: Tensor, nonmembers: Tensor, syn: Tensor, metric: str) -> dict[str, float | int]:
    """Membership inference against the generator through its samples (GAN-Leaks, full black-box).

    Score of a query = minus its distance to the nearest synthetic image; the attack says "member" above a
    threshold. Members are real training images, non-members real held-out images (use sets of equal size, or
    read ``accuracy`` as balanced accuracy).

    Args:
        members: ``[M, D]`` training (member) embeddings.
        nonmembers: ``[H, D]`` held-out (non-member) embeddings.
        syn: ``[N, D]`` synthetic embeddings; same space and device for all three.
        metric: distance of :func:`latentwalk.distances.nearest`.

    Returns:
        ``auc`` (:func:`auc_score`; 0.5 = no leak), ``accuracy`` (:func:`best_threshold_accuracy`, balanced, best
        threshold chosen knowing the labels), ``members_median_distance``, ``nonmembers_median_distance``,
        ``n_members``, ``n_nonmembers``.

    Raises:
        ConfigError: bad shapes, devices or metric.
        DataError: an empty set, NaN or infinity.
    """
    _embeddings(("members", members), ("nonmembers", nonmembers), ("syn", syn))
    d_mem = _np(nearest_real(members, syn, metric))  # [M]
    d_non = _np(nearest_real(nonmembers, syn, metric))  # [H]
    return {
        "auc": _sig(auc_score(-d_mem, -d_non)),
        "accuracy": _sig(best_threshold_accuracy(-d_mem, -d_non)),
        "members_median_distance": _sig(np.median(d_mem)),
        "nonmembers_median_distance": _sig(np.median(d_non)),
        "n_members": int(d_mem.size),
        "n_nonmembers": int(d_non.size),
    }


def mia_loss(member_losses: Any, nonmember_losses: Any, *, signal: str = "loss") -> dict[str, float | int]:
    """Threshold membership inference against a downstream classifier (Yeom et al. 2018).

    Callers pass one value per sample: with ``signal="loss"`` the per-sample cross-entropy of the true label (lower
    loss => member); with ``signal="confidence"`` the model's probability of the true label (higher => member).

    Args:
        member_losses: ``[M]`` values on the classifier's training samples.
        nonmember_losses: ``[H]`` values on samples it never saw.
        signal: ``"loss"`` or ``"confidence"``.

    Returns:
        ``auc``, ``accuracy`` (balanced, best threshold, see :func:`best_threshold_accuracy`), ``n_members``,
        ``n_nonmembers``.

    Raises:
        ConfigError: values that are not 1-D numbers, or an unknown ``signal``.
        DataError: an empty set, NaN or infinity.
    """
    mem, non = _scores(member_losses, "member_losses"), _scores(nonmember_losses, "nonmember_losses")
    if signal == "loss":
        pos, neg = -mem, -non
    elif signal == "confidence":
        pos, neg = mem, non
    else:
        raise ConfigError(f'unknown signal "{signal}"; expected "loss" (lower = member) or "confidence"')
    return {
        "auc": _sig(auc_score(pos, neg)),
        "accuracy": _sig(best_threshold_accuracy(pos, neg)),
        "n_members": int(mem.size),
        "n_nonmembers": int(non.size),
    }


def _probs(x: Any, name: str) -> np.ndarray:
    """A non-empty ``[N, K]`` float64 matrix whose rows are probability vectors."""
    if isinstance(x, Tensor):
        arr = _np(x)
    else:
        try:
            arr = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be an array [N, K] of probabilities, got {type(x).__name__}") from None
    if arr.ndim != 2:
        raise ConfigError(f"{name} must be [N, K] (one probability vector per image), got shape {list(arr.shape)}")
    if arr.shape[0] == 0:
        raise DataError(f"{name} has no rows; give at least one image")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise DataError(f"{name} has negative, NaN or infinite entries; pass softmax probabilities, not logits")
    sums = arr.sum(1)
    bad = np.abs(sums - 1) > PROB_ATOL
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"row {i} of {name} sums to {sums[i]:.4g}, not 1; apply softmax to the identity logits")
    return arr


def reidentification(syn_probs: Any, heldout_probs: Any, heldout_patient: Any) -> dict[str, Any]:
    """Re-identification by an identity model over the K training patients.

    The model is applied to held-out images *of training patients* (true patient known) and to synthetic images
    (no true patient). Held-out: top-1 accuracy and mean top-1 confidence. Synthetic: mean top-1 confidence and the
    match rate = fraction of synthetic images whose top-1 confidence is at least the reference confidence, the
    median top-1 confidence of the *correctly* identified held-out images, i.e. matched to some training patient
    as confidently as a typical real image that the model re-identifies. Chance confidence is ``1 / K``.

    Args:
        syn_probs: ``[N, K]`` softmax probabilities on synthetic images (tensor or array; rows sum to 1).
        heldout_probs: ``[H, K]`` probabilities on held-out images of the training patients.
        heldout_patient: ``[H]`` integer patient index in ``[0, K)`` of each held-out image.

    Returns:
        ``n_patients`` (K), ``chance_confidence``, ``heldout_top1_accuracy``, ``heldout_mean_top1_confidence``,
        ``heldout_n_correct``, ``reference_confidence`` (None when no held-out image is identified correctly),
        ``syn_mean_top1_confidence``, ``syn_match_rate`` and ``syn_n_matched`` (None and 0 without a reference),
        ``syn_n_patients_matched`` (distinct top-1 patients among matched synthetic images), ``n_syn``,
        ``n_heldout``.

    Raises:
        ConfigError: wrong types or shapes, K < 2, or patient indices that are not integers in ``[0, K)``.
        DataError: empty sets, or rows that are not probability vectors.
    """
    syn, held = _probs(syn_probs, "syn_probs"), _probs(heldout_probs, "heldout_probs")
    k = held.shape[1]
    if syn.shape[1] != k:
        raise ConfigError(f"syn_probs has {syn.shape[1]} classes but heldout_probs has {k}; use one identity model")
    if k < 2:
        raise ConfigError(f"the identity model must cover at least 2 patients, got K={k}")
    patient = _np(heldout_patient) if isinstance(heldout_patient, Tensor) else np.asarray(heldout_patient)
    if patient.shape != (held.shape[0],):
        raise ConfigError(
            f"heldout_patient must be [H] = [{held.shape[0]}] (one patient index per held-out image), "
            f"got shape {list(patient.shape)}"
        )
    if patient.dtype.kind not in "iuf" or (patient != np.round(patient)).any() or (patient < 0).any():
        raise ConfigError("heldout_patient must hold integer patient indices in [0, K), the model's class order")
    if (patient >= k).any():
        raise ConfigError(f"heldout_patient has index {int(patient.max())} but the model has only K={k} patients")
    patient = patient.astype(np.int64)
    held_conf, held_top1 = held.max(1), held.argmax(1)  # [H], [H]
    syn_conf, syn_top1 = syn.max(1), syn.argmax(1)  # [N], [N]
    correct = held_top1 == patient  # [H]
    if correct.any():
        reference = float(np.median(held_conf[correct]))
        matched = syn_conf >= reference  # [N]
        match_rate: float | None = _sig(matched.mean())
        ref_out: float | None = _sig(reference)
    else:
        matched = np.zeros_like(syn_conf, dtype=bool)
        match_rate = ref_out = None
    return {
        "n_patients": int(k),
        "chance_confidence": _sig(1 / k),
        "heldout_top1_accuracy": _sig(correct.mean()),
        "heldout_mean_top1_confidence": _sig(held_conf.mean()),
        "heldout_n_correct": int(correct.sum()),
        "reference_confidence": ref_out,
        "syn_mean_top1_confidence": _sig(syn_conf.mean()),
        "syn_match_rate": match_rate,
        "syn_n_matched": int(matched.sum()),
        "syn_n_patients_matched": int(np.unique(syn_top1[matched]).size),
        "n_syn": int(syn.shape[0]),
        "n_heldout": int(held.shape[0]),
    }
