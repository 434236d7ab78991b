"""How much of the patients behind each synthetic image an independent attacker reads back from the image.

Inputs, for the N synthetic images: Q ``[N, K]``, the patients behind each image with their weights (the private
sidecar of ``latentwalk generate``, :mod:`latentwalk.generation.sidecar`), restricted to the K training patients the
attacker knows and renormalised; and P ``[N, K]``, the attacker's belief about which of them each image shows
(:mod:`latentwalk.evaluate.verifier`: the softmax over patients of its best same-patient logits).

* **Mutual information** (the plug-in estimator of IRENE: Tartaglione, "Information removal at the bottleneck in
  deep neural networks", BMVC 2022): the joint ``J = QᵀP / N`` of the patient
  behind an image ``s`` and the patient the attacker sees ``ŝ``, and ``I = Σ J log(J / (p(s) p(ŝ))) / log K`` with
  the marginals ``p(s) = Σ_ŝ J``, ``p(ŝ) = Σ_s J``. ``I`` is in [0, 1]: 0 when the attacker's reading is
  independent of who is behind the image, 1 when it names the patient behind every image and all K patients are
  behind equally many. Reported for the soft P and for the hard plug-in (P one-hot at the attacker's top patient).
  Only the rows of J of patients behind some image can be non-zero (``p(s) = 0`` elsewhere, and those rows add
  nothing to the sum), so J is built on Q's support S alone: ``J_S = Q[:, S]ᵀP / N`` ``[|S|, K]`` with
  ``|S| <= min(K, nnz(Q))`` (:func:`support`), never the ``[K, K]`` table: memory and time grow with ``|S| K``, not
  ``K²``, for the estimate and each of its null and bootstrap draws; :func:`joint` on all K rows is the reference.
  The plug-in estimate is biased upwards with few images per cell of the K x K table, so it is read against a
  **permutation null**: Q is shuffled across *clusters* (the images of one path share their endpoints, so their Q
  rows and the attacker's readings are alike; shuffling single images would break that structure in the null only
  and make any path-structured set look leaky): the clusters of a size are permuted among themselves, image ``j`` of
  a cluster taking the Q row of image ``j`` of its partner (the same marginals, no dependence), seeded. The report
  gives the null's mean and 95th percentile and the p-value ``(1 + #{null >= I}) / (1 + permutations)``. A
  **bootstrap** over clusters (resampled with replacement, seeded) gives a basic 95 % interval (``2I`` minus the
  resamples' quantiles, in [0, 1]: a resample repeats images, which raises the plug-in, and the basic interval
  carries that bias over instead of shifting the interval up). The interval is one for the bias-corrected estimate
  ``mi_corrected = 2I - mean(resamples)`` (Efron and Tibshirani, "An Introduction to the Bootstrap", 1993, §10.3),
  which lies inside it; the plug-in ``I`` itself may sit at the interval's upper end or above it when few images
  fall in each cell (the DR phantom's sets: ``I`` 0.181, interval [0.119, 0.180]). ``excess`` is ``I`` minus the
  null's mean. Without clusters every image is its own.
* **HSIC** (unbiased estimator of Song, Smola, Gretton, Bedo, Borgwardt, "Feature selection via dependence
  maximization", JMLR 13, 2012, eq. 5) between the attacker's embedding of each image (Gaussian kernel, bandwidth the
  median pairwise distance) and Q (linear kernel ``QQᵀ``: the overlap of the patients behind two images), with its
  own permutation p-value (clusters permuted as for the MI) and the normalised value
  ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))``. It needs no attacker's guess of a patient, only its representation.
  At most ``HSIC_MAX_IMAGES`` images (a seeded subset).

Implemented from the formulas, not compared numerically with a reference implementation. Every figure comes from a
``torch.Generator`` seeded by the caller; no patient identifier enters the result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from latentwalk.errors import ConfigError, DataError

__all__ = [
    "PERMUTATIONS",
    "BOOTSTRAP",
    "HSIC_MAX_IMAGES",
    "patient_matrix",
    "support",
    "joint",
    "normalised_mi",
    "hsic_unbiased",
    "gaussian_kernel",
    "path_clusters",
    "cluster_order",
    "cluster_counts",
    "leakage",
    "estimate_leakage",
]

PERMUTATIONS = 200  # shuffles of the images' Q rows for each null distribution
BOOTSTRAP = 200  # resamples of the images for the confidence interval
HSIC_MAX_IMAGES = 2000  # HSIC works on [m, m] kernels: a seeded subset of at most this many images


def patient_matrix(behind: Sequence[Mapping[str, float]], patients: Sequence[str]) -> tuple[Tensor, Tensor, Tensor]:
    """Q restricted to ``patients`` (the attacker's columns), each row renormalised to sum 1.

    Args:
        behind: per image, ``{identity: weight}`` (a sidecar's ``images``).
        patients: the attacker's patients in column order.

    Returns:
        ``(Q [N', K] sparse COO float64 of the images with any weight on a known patient, their row indices [N']
        into ``behind``, the share of each image's weight on known patients [N] float64)``.
    """
    column = {p: j for j, p in enumerate(patients)}
    rows, cols, vals, kept = [], [], [], []
    known = torch.zeros(len(behind), dtype=torch.float64)
    for i, weights in enumerate(behind):
        total = sum(float(w) for w in weights.values())
        inside = [(column[p], float(w)) for p, w in weights.items() if p in column and float(w) > 0]
        mass = sum(w for _, w in inside)
        known[i] = mass / total if total > 0 else 0.0
        if mass <= 0:
            continue
        row = len(kept)
        kept.append(i)
        for j, w in inside:
            rows.append(row)
            cols.append(j)
            vals.append(w / mass)
    index = torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1)
    shape = (len(kept), len(patients))
    q = torch.sparse_coo_tensor(index, torch.tensor(vals, dtype=torch.float64), shape, check_invariants=False)
    return q.coalesce(), torch.tensor(kept, dtype=torch.long), known


def support(q: Tensor) -> tuple[Tensor, Tensor]:
    """Q on its support: the columns (patients) with weight in some row.

    Args:
        q: ``[N, K]`` sparse COO (coalesced) or dense.

    Returns:
        ``(Q_S [N, |S|] sparse COO coalesced (q's dtype), S [|S|] int64 ascending column indices into q)``;
        ``|S| <= min(K, nnz(Q))``.
    """
    q = (q if q.is_sparse else q.to_sparse()).coalesce()
    img, pat = q.indices()
    val = q.values()
    keep = val != 0  # an explicit zero is no support
    img, pat, val = img[keep], pat[keep], val[keep]
    columns, local = pat.unique(sorted=True, return_inverse=True)  # [|S|], [nnz]
    shape = (q.shape[0], len(columns))
    qs = torch.sparse_coo_tensor(torch.stack([img, local]), val, shape, check_invariants=False)
    return qs.coalesce(), columns


def joint(
    q: Tensor,
    p: Tensor,
    order: Tensor | None = None,
    counts: Tensor | None = None,
    *,
    patients: int | None = None,
) -> Tensor:
    """``J = QᵀP / N`` ``[R, K]`` float64: row ``s`` = patient behind (a column of ``q``), column ``ŝ`` = patient
    the attacker sees.

    With ``q`` of all K patients (``R = K``) this is the full table, the reference; with ``q`` on its support
    (:func:`support`: ``R = |S|``) it is the full table's rows of S, every other row being zero.

    Args:
        q: ``[N, R]`` sparse COO (coalesced) or dense; rows sum to 1.
        p: ``[N, K]`` dense float64 with rows summing to 1, or ``[N]`` int64 the attacker's top patient (one-hot P).
        order: optional ``[N]`` permutation: image ``i``'s Q row is paired with P row ``order[i]`` (a null draw).
        counts: optional ``[N]`` multiplicities of the images (a bootstrap draw); J is divided by their sum.
        patients: K, the columns of J, for a one-hot ``p``; ``None`` = R (``q`` of all K patients). Ignored for a
            dense ``p`` (its columns).
    """
    q = q if q.is_sparse else q.to_sparse()
    n, r = q.shape
    img, pat = q.indices()
    val = q.values()
    if order is not None:
        img = order[img]
    if counts is not None:
        val = val * counts.to(val.dtype)[img]
    total = float(n) if counts is None else float(counts.sum())  # a cluster bootstrap draws about N images
    if p.dtype == torch.long:  # one-hot P: add each weight to its cell, no product needed
        k = r if patients is None else int(patients)
        return torch.zeros(r * k, dtype=torch.float64).index_add_(0, pat * k + p[img], val).view(r, k) / total
    qt = torch.sparse_coo_tensor(torch.stack([pat, img]), val, (r, n), check_invariants=False)
    return torch.sparse.mm(qt, p) / total


def normalised_mi(j: Tensor) -> float:
    """``Σ J log(J / (p(s) p(ŝ))) / log K`` of a joint that sums to 1; in [0, 1].

    Args:
        j: ``[R, K]`` float64: the full ``[K, K]`` table or any of its rows that hold all its mass (Q's support,
            :func:`support`); K, the attacker's patients, is its column count.
    """
    k = j.shape[1]
    if k < 2:
        raise DataError(f"mutual information over {k} patient(s) is undefined; the attacker must know two or more")
    ps, pc = j.sum(1), j.sum(0)
    s, c = torch.nonzero(j > 0, as_tuple=True)
    cell = j[s, c]
    value = float((cell * (cell.log() - ps[s].log() - pc[c].log())).sum()) / math.log(k)
    return min(1.0, max(0.0, value))


def gaussian_kernel(x: Tensor) -> tuple[Tensor, float]:
    """``exp(-|x_i - x_j|² / (2 σ²))`` ``[m, m]`` float64, σ the median distance between distinct rows (1 if 0)."""
    x = x.double().flatten(1)
    d2 = torch.cdist(x, x).pow(2)
    off = d2[~torch.eye(len(x), dtype=torch.bool)]
    sigma = float(off.sqrt().median()) if off.numel() else 1.0
    sigma = sigma if sigma > 0 else 1.0
    return torch.exp(-d2 / (2 * sigma**2)), sigma


def _hsic_parts(k: Tensor, l: Tensor) -> tuple[Tensor, Tensor, int]:  # noqa: E741
    """The zero-diagonal kernels of the unbiased estimator and m."""
    m = k.shape[0]
    if m < 4:
        raise DataError(f"unbiased HSIC needs 4 or more images, got {m}")
    kt, lt = k.clone(), l.clone()
    kt.fill_diagonal_(0)
    lt.fill_diagonal_(0)
    return kt, lt, m


def _hsic(kt: Tensor, lt: Tensor, m: int, order: Tensor | None = None) -> float:
    """Song et al. 2012, eq. 5, on zero-diagonal kernels; ``order`` permutes the images of ``lt``."""
    if order is not None:
        lt = lt.index_select(0, order).index_select(1, order)  # (much faster than lt[order][:, order])
    trace = (kt * lt).sum()  # tr(K̃L̃) for symmetric kernels
    cross = kt.sum(1) @ lt.sum(1)  # 1ᵀK̃L̃1
    value = trace + kt.sum() * lt.sum() / ((m - 1) * (m - 2)) - 2 * cross / (m - 2)
    return float(value / (m * (m - 3)))


def hsic_unbiased(k: Tensor, l: Tensor) -> float:  # noqa: E741
    """Unbiased HSIC of two kernel matrices ``[m, m]`` (m >= 4); ~0 for independent samples."""
    return _hsic(*_hsic_parts(k.double(), l.double()))


def _sig6(x: float) -> float:
    return float(f"{x:.6g}")


def _p_value(value: float, null: Tensor) -> float:
    """``(1 + #{null >= value}) / (1 + draws)``: never 0; a tie (within float noise) counts against the value."""
    tol = 1e-9 * max(1.0, abs(value))
    return round((1 + int((null >= value - tol).sum())) / (1 + len(null)), 6)


def _null_summary(value: float, null: Tensor) -> dict[str, float]:
    return {
        "null_mean": round(float(null.mean()), 6),
        "null_p95": round(float(torch.quantile(null, 0.95)), 6),
        "p_value": _p_value(value, null),
    }


def path_clusters(rows: Sequence[Mapping[str, str]]) -> Tensor:
    """``[N]`` cluster ids from manifest rows: the images of one path of one work item (its ``seed`` and
    ``path_id``) share a cluster; a row without them is its own."""
    keys: dict[tuple[str, ...], int] = {}
    ids = []
    for i, row in enumerate(rows):
        seed, path = row.get("seed") or "", row.get("path_id") or ""
        key = (seed, path) if seed and path else ("row", str(i))
        ids.append(keys.setdefault(key, len(keys)))
    return torch.tensor(ids, dtype=torch.long)


def cluster_order(clusters: Tensor, gen: torch.Generator) -> Tensor:
    """A null draw ``order [N]`` that permutes whole clusters among the clusters of their size: image ``j`` of a
    cluster is paired with image ``j`` of its partner (``clusters [N]`` int64 ids, images in a fixed order)."""
    order = torch.arange(len(clusters))
    ids, inverse, sizes = clusters.unique(return_inverse=True, return_counts=True)
    members = [torch.nonzero(inverse == c).squeeze(1) for c in range(len(ids))]  # image rows of each cluster
    for size in sizes.unique().tolist():
        same = torch.nonzero(sizes == size).squeeze(1)
        if len(same) < 2:
            continue
        for a, b in zip(same.tolist(), same[torch.randperm(len(same), generator=gen)].tolist(), strict=True):
            order[members[a]] = members[b]
    return order


def cluster_counts(clusters: Tensor, gen: torch.Generator) -> Tensor:
    """A bootstrap draw over clusters: ``[N]`` how many times each image's cluster was drawn (as many draws as
    there are clusters)."""
    ids, inverse = clusters.unique(return_inverse=True)
    drawn = torch.bincount(torch.randint(len(ids), (len(ids),), generator=gen), minlength=len(ids))
    return drawn[inverse]


def _unit(x: float) -> float:
    return round(min(1.0, max(0.0, x)), 6)


def _interval(value: float, draws: Tensor) -> list[float]:
    """The basic (pivotal) bootstrap 95 % interval ``[2v - q97.5, 2v - q2.5]`` in [0, 1]: unlike the percentile
    interval it carries the plug-in's upward bias over (a resample repeats images, which raises the estimate)."""
    lo, hi = 2 * value - float(torch.quantile(draws, 0.975)), 2 * value - float(torch.quantile(draws, 0.025))
    return [_unit(lo), _unit(hi)]


def _corrected(value: float, draws: Tensor) -> float:
    """The bootstrap bias-corrected estimate ``2v - mean(draws)`` in [0, 1]: the plug-in less the bias its
    resamples show; it lies inside :func:`_interval` whenever the resamples' mean lies between their 2.5th and
    97.5th percentiles."""
    return _unit(2 * value - float(draws.mean()))


def _mi_figures(
    q: Tensor, p: Tensor, clusters: Tensor, permutations: int, bootstrap: int, gen: torch.Generator
) -> dict[str, Any]:
    """Soft and hard plug-in MI with their cluster-permutation nulls and cluster-bootstrap intervals, every joint
    on Q's support (``[|S|, K]``; a null or bootstrap draw moves or reweights Q's rows, never its support)."""
    qs, _ = support(q)
    k = p.shape[1]
    views = {"soft": p, "hard": p.argmax(1)}  # hard: the attacker's top patient (P one-hot)

    def mi(view: Tensor, **draw: Tensor) -> float:
        return normalised_mi(joint(qs, view, patients=k, **draw))

    value = {name: mi(view) for name, view in views.items()}
    null: dict[str, list[float]] = {name: [] for name in views}
    boot: dict[str, list[float]] = {name: [] for name in views}
    for _ in range(permutations):
        order = cluster_order(clusters, gen)
        for name, view in views.items():
            null[name].append(mi(view, order=order))
    for _ in range(bootstrap):
        counts = cluster_counts(clusters, gen)
        for name, view in views.items():
            boot[name].append(mi(view, counts=counts))
    out: dict[str, Any] = {}
    for name in views:
        figures = _null_summary(value[name], torch.tensor(null[name], dtype=torch.float64))
        draws = torch.tensor(boot[name], dtype=torch.float64)
        out[name] = {"mi": round(value[name], 6), "mi_corrected": _corrected(value[name], draws), **figures,
                     "excess": round(value[name] - figures["null_mean"], 6),
                     "ci95": _interval(value[name], draws)}  # fmt: skip
    return out


def _hsic_figures(
    q: Tensor, embedding: Tensor, clusters: Tensor, permutations: int, gen: torch.Generator
) -> dict[str, Any]:
    """Unbiased HSIC between the attacker's embedding (Gaussian kernel) and Q (linear kernel), with its null."""
    n = q.shape[0]
    if n < 4:
        return {"skipped": f"unbiased HSIC needs 4 or more images, got {n}"}
    subset = torch.randperm(n, generator=gen)[:HSIC_MAX_IMAGES].sort().values if n > HSIC_MAX_IMAGES else None
    qd = support(q)[0].to_dense()  # [N, |S|]: QQᵀ without Q's empty columns
    emb = embedding
    if subset is not None:
        qd, emb, clusters = qd[subset], emb[subset], clusters[subset]
    k, sigma = gaussian_kernel(emb)
    kt, lt, m = _hsic_parts(k, qd @ qd.T)
    value = _hsic(kt, lt, m)
    self_k, self_l = _hsic(kt, kt, m), _hsic(lt, lt, m)
    scale = math.sqrt(self_k * self_l) if self_k > 0 and self_l > 0 else math.nan
    null = torch.tensor([_hsic(kt, lt, m, cluster_order(clusters, gen)) for _ in range(permutations)])
    return {
        "hsic": _sig6(value),
        "normalised": round(value / scale, 6) if math.isfinite(scale) else None,
        "null_mean": _sig6(float(null.mean())),
        "null_p95": _sig6(float(torch.quantile(null.double(), 0.95))),
        "p_value": _p_value(value, null),
        "bandwidth": _sig6(sigma),
        "images": m,
    }


def leakage(
    q: Tensor,
    p: Tensor,
    embedding: Tensor,
    *,
    clusters: Tensor | None = None,
    permutations: int = PERMUTATIONS,
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
) -> dict[str, Any]:
    """MI (soft and hard) and HSIC between the patients behind the images and the attacker's view of them.

    Args:
        q: ``[N, K]`` patients behind each image (rows sum to 1), sparse COO or dense.
        p: ``[N, K]`` the attacker's probability of each patient per image (rows sum to 1).
        embedding: ``[N, D]`` the attacker's embedding of each image (for HSIC).
        clusters: ``[N]`` int64 cluster of each image (the images of one path); ``None`` = every image its own.
            The nulls permute and the bootstrap resamples whole clusters.
        permutations: null draws (each of MI and HSIC); bootstrap: resamples for the MI intervals.
        seed: seeds every draw.

    Returns:
        JSON-ready ``{"mi": {"soft": {...}, "hard": {...}}, "hsic": {...}}``: per MI ``mi`` (the plug-in),
        ``mi_corrected`` (bootstrap bias-corrected), ``null_mean``, ``null_p95``, ``p_value``, ``excess``, ``ci95``
        (the basic interval, around ``mi_corrected``); for HSIC ``hsic``, ``normalised``, its null and p-value,
        ``bandwidth`` and ``images``.

    Raises:
        DataError: fewer than two images or two patients, or mismatched shapes. ConfigError: fewer than one
        permutation or bootstrap resample.
    """
    if permutations < 1 or bootstrap < 1:
        raise ConfigError(f"the leakage estimate needs 1 or more permutations and bootstrap resamples, got "
                          f"{permutations} and {bootstrap}")  # fmt: skip
    if q.shape != p.shape or embedding.shape[0] != p.shape[0]:
        raise DataError(f"Q {list(q.shape)}, P {list(p.shape)} and the embedding {list(embedding.shape)} disagree")
    if p.shape[0] < 2:
        raise DataError(
            f"the leakage estimate needs 2 or more images with a known patient behind them, got {p.shape[0]}"
        )
    if clusters is None:
        clusters = torch.arange(p.shape[0])
    if clusters.shape != (p.shape[0],):
        raise DataError(f"clusters {list(clusters.shape)} must give one cluster per image ({p.shape[0]})")
    gen = torch.Generator().manual_seed(seed)
    mi = _mi_figures(q, p.double(), clusters, permutations, bootstrap, gen)
    return {"mi": mi, "hsic": _hsic_figures(q, embedding, clusters, permutations, gen)}


def estimate_leakage(
    behind: Sequence[Mapping[str, float]],
    patients: Sequence[str],
    logits: Tensor,
    embedding: Tensor,
    *,
    clusters: Tensor | None = None,
    permutations: int = PERMUTATIONS,
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`leakage` from a sidecar's patients and the attacker's logits (softmax over patients gives P).

    Args:
        behind: per synthetic image, ``{identity: weight}`` (:func:`latentwalk.generation.sidecar.read_sidecar`).
        patients: the attacker's training patients in its column order.
        logits: ``[N, K]`` the attacker's best same-patient logit of each image against each patient.
        embedding: ``[N, D]`` the attacker's embedding of each image.
        clusters: ``[N]`` the path (or group) of each image, as for :func:`leakage`; ``None`` = none.

    Returns:
        :func:`leakage`'s figures, with ``images`` (used), ``images_without_known_patient`` (no weight on a
        training patient: left out), ``known_weight`` (mean share of the weight on training patients), ``patients``
        (K) and how P was formed; or ``{"skipped": reason}`` when fewer than two images remain.
    """
    if logits.shape != (len(behind), len(patients)):
        raise DataError(f"attacker logits {list(logits.shape)} do not match {len(behind)} images x {len(patients)} "
                        "patients")  # fmt: skip
    q, kept, known = patient_matrix(behind, patients)
    counts = {
        "images": len(kept),
        "images_without_known_patient": len(behind) - len(kept),
        "known_weight": round(float(known.mean()), 6) if len(known) else 0.0,
        "patients": len(patients),
    }
    if len(kept) < 2 or len(patients) < 2:
        return {"skipped": "fewer than two synthetic images have a training patient behind them", **counts}
    p = logits[kept].double().softmax(1)
    cl = None if clusters is None else clusters[kept]
    figures = leakage(q, p, embedding[kept], clusters=cl, permutations=permutations, bootstrap=bootstrap, seed=seed)
    attacker = "softmax over patients of the verifier's best same-patient logits (hard: its top patient)"
    return {**counts, **figures, "permutations": permutations, "bootstrap": bootstrap, "seed": seed,
            "clusters": len(kept) if cl is None else int(cl.unique().numel()),
            "attacker_distribution": attacker}  # fmt: skip
