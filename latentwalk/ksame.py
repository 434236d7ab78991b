"""Identity-aware k-same grouping of latent codes.

k-Same (Newton, Sweeney and Malin, "Preserving privacy by de-identifying face images", IEEE TKDE 2005) replaces
each face by the average of a group of at least k faces, so that a recogniser matching a released image to a person
cannot do better than 1/k. k-SALSA (Jeon et al., "k-SALSA: k-anonymous synthetic averaging of retinal images via
local style alignment", ECCV 2022; code github.com/hcholab/k-salsa) averages GAN latents instead of pixels and forms
the groups by same-size clustering. This module computes such groups and their centroid latents; PLAN (Pennisi et
al., MICCAI 2023) then walks between centroids, which keeps their k-anonymity while restoring the dataset size.

What the guarantee counts is PATIENTS, not images:

* Every patient is first reduced to one point: the mean of the patient's latents (flattened W or W+). A patient
  therefore counts once, can never fill a group alone with several images, and never spans two groups: a group
  holds all images of each of its patients.
* Grouping happens within each label, so a centroid has one class. A patient whose images carry several labels
  (e.g. the two eyes of an EyePACS patient with different grades) is grouped under the patient's majority label,
  ties going to the higher label (for ordinal grades: the more severe one). This is counted in
  ``KSameResult.diagnostics`` and warned about; ``KSameConfig(mixed_labels="error")`` refuses such data instead.
* A centroid is the mean over the group's PATIENTS of each patient's mean latent, so every patient weighs the same
  whatever their number of images. It keeps the input's shape: ``[G, num_ws, w_dim]`` for W+ latents (W latents
  broadcast over ``num_ws`` stay broadcast) or ``[G, w_dim]`` for W latents.

Methods (``KSameConfig.method``):

* ``"greedy"``: k-SALSA's same-size clustering. Repeatedly take the unassigned patient with the largest summed
  distance to the other unassigned patients and group it with its k-1 nearest unassigned patients. Unlike the
  reference script (``k-SALSA_algorithm/scripts/same_size_nearest_clustering.py`` at commit 39ae5dc, which lets the
  last group keep fewer than k points and clusters images rather than patients), the fewer than k patients left at
  the end each join the group whose centroid is nearest (centroids of the groups as first formed), so every group
  has at least k patients. Deterministic without a seed; ties go to the earlier patient in sorted-identity order.
  Described from the paper and the script, not compared numerically.
* ``"kmeans"``: balanced k-means with ``floor(n / k)`` clusters per label: seeded k-means++ initialisation, then
  rounds of a capacity-constrained assignment (patients in order of their best-over-worst benefit, as in ELKI's
  same-size k-means, each to its nearest cluster still under k members; the ``n mod k`` patients left join their
  nearest cluster) and centroid updates, keeping the assignment of least within-cluster sum of squares and
  stopping when the assignment repeats, the cost stops falling, or after ``max_iter`` rounds.

Identity strings stay in memory: :class:`KSameResult` keeps them for :func:`check_k_anonymity`, and neither
``to_dict`` nor any error message contains them (errors name group and image indices and labels). Group membership
is left out of ``to_dict`` too, since it is exactly what a membership attack on the centroids tries to recover.
"""

from __future__ import annotations

import operator
import os
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from gan_zoo.seeds import derive_seed
from latentwalk.config import StageConfig
from latentwalk.errors import ConfigError, DataError

__all__ = [
    "DISTANCES",
    "METHODS",
    "MIXED_LABEL_POLICIES",
    "KSameConfig",
    "KSameResult",
    "group_latents",
    "check_k_anonymity",
    "patient_labels",
    "latent_centroids",
    "write_ksame",
]

METHODS = ("greedy", "kmeans")
DISTANCES = ("euclidean",)
MIXED_LABEL_POLICIES = ("majority", "error")
SPREADS = ("mean", "restore")  # centroid: the plain mean, or the mean pushed out to the members' typical distance
_TIE_RTOL = 1e-9  # summed distances within this relative gap of the maximum count as tied (float drift)
_CHUNK = 256  # rows of the distance matrix computed at once


# ----------------------------------------------------------------------------------------------------------------
# Configuration and result


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class KSameConfig(StageConfig):
    """Options of k-same grouping; the single source of defaults for the API and the CLI."""

    STAGE: ClassVar[str] = "k-same"

    k: int = 5  # minimum distinct identities (patients) per group; 1 = every patient is its own group
    method: str = "greedy"  # "greedy" (k-SALSA same-size clustering) | "kmeans" (balanced k-means)
    distance: str = "euclidean"  # between flattened latents (W or W+); the only metric so far
    seed: int = 0  # kmeans: seeds the k-means++ initialisation (per label); greedy needs no seed
    max_iter: int = 100  # kmeans: most assignment/update rounds per label
    mixed_labels: str = "majority"  # patient with several labels: "majority" (ties -> higher label) | "error"
    spread: str = "mean"  # "mean" | "restore": scale each centroid's offset from the mean of all patients so that it
    # lies as far from it as the group's members do on average (averaging k latents shrinks that distance)

    def __post_init__(self) -> None:
        if not _is_int(self.k) or self.k < 1:
            raise ConfigError(f"k must be an integer >= 1 (minimum distinct patients per group), got {self.k!r}")
        if self.method not in METHODS:
            raise ConfigError(f'unknown k-same method "{self.method}"; expected one of {", ".join(METHODS)}')
        if self.distance not in DISTANCES:
            raise ConfigError(f'unknown k-same distance "{self.distance}"; expected one of {", ".join(DISTANCES)}')
        if not _is_int(self.seed) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not _is_int(self.max_iter) or self.max_iter < 1:
            raise ConfigError(f"max_iter must be an integer >= 1, got {self.max_iter!r}")
        if self.spread not in SPREADS:
            raise ConfigError(f'unknown k-same spread "{self.spread}"; expected one of {", ".join(SPREADS)}')
        if self.mixed_labels not in MIXED_LABEL_POLICIES:
            raise ConfigError(
                f'unknown mixed_labels policy "{self.mixed_labels}"; expected one of {", ".join(MIXED_LABEL_POLICIES)}'
            )


@dataclass(frozen=True, eq=False)
class KSameResult:
    """Groups of at least ``config.k`` patients and their centroid latents.

    Attributes:
        groups: per group, the sorted int64 indices (CPU) of its images among the N input rows.
        group_identities: per group, the sorted distinct identities of its patients. In memory only: never write
            them (``to_dict`` leaves them out).
        group_labels: per group, the label all its patients were grouped under.
        centroids: ``[G, num_ws, w_dim]`` (or ``[G, w_dim]`` for W input), dtype and device of the input; the mean
            over the group's patients of each patient's mean latent.
        config: the configuration used.
        diagnostics: counts (images, patients, mixed-label patients, relabelled images) and per-label details
            (patients, groups; kmeans: rounds, why it stopped, within-cluster sum of squares).
    """

    groups: tuple[Tensor, ...]
    group_identities: tuple[tuple[str, ...], ...]
    group_labels: tuple[int, ...]
    centroids: Tensor
    config: KSameConfig
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.groups)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary without identities or membership (counts, labels, shapes, config)."""
        return {
            "config": self.config.to_dict(),
            "n_groups": len(self.groups),
            "group_labels": list(self.group_labels),
            "group_images": [int(g.numel()) for g in self.groups],
            "group_patients": [len(ids) for ids in self.group_identities],
            "centroid_shape": list(self.centroids.shape),
            "diagnostics": self.diagnostics,
        }


# ----------------------------------------------------------------------------------------------------------------
# Input validation


def _check_identities(identities: Sequence[str] | None, n: int, what: str = "latents") -> list[str]:
    if identities is None or len(identities) == 0:
        raise DataError(
            f"the {n} {what} have no patient identities; k-same needs one per latent "
            "(meta['items'][id]['identity'] from load_latents)"
        )
    if len(identities) != n:
        raise DataError(f"got {len(identities)} identities for {n} {what}; give exactly one identity per latent")
    out = list(identities)
    for i, ident in enumerate(out):
        if not isinstance(ident, str) or not ident:
            raise DataError(f"identity of row {i} is {ident!r}; every latent needs a non-empty identity string")
    return out


def _check_labels(labels: Sequence[int] | None, n: int) -> list[int]:
    if labels is None:
        raise DataError(f"the {n} latents have no labels; k-same groups within a label (meta['items'][id]['label'])")
    if isinstance(labels, Tensor):
        labels = labels.tolist()
    if len(labels) != n:
        raise DataError(f"got {len(labels)} labels for {n} latents; give exactly one label per latent")
    out = []
    for i, label in enumerate(labels):
        try:
            if isinstance(label, bool):
                raise TypeError
            out.append(operator.index(label))
        except TypeError:
            raise DataError(f"label of latent {i} is {label!r}; labels must be integers") from None
    return out


def _check_ws(ws: Tensor) -> None:
    if not isinstance(ws, Tensor):
        raise DataError(f"ws must be a tensor [N, w_dim] or [N, num_ws, w_dim], got {type(ws).__name__}")
    if ws.ndim not in (2, 3) or not ws.is_floating_point():
        raise DataError(
            f"ws must be a float tensor [N, w_dim] or [N, num_ws, w_dim], got {ws.dtype} of shape {list(ws.shape)}"
        )
    if ws.shape[0] == 0:
        raise DataError("ws holds no latents (N = 0); nothing to group")
    bad = (~torch.isfinite(ws.reshape(ws.shape[0], -1))).any(dim=1).nonzero()
    if bad.numel():
        raise DataError(f"latent {int(bad[0])} has non-finite values ({bad.numel()} such rows); rerun the inversion")


def patient_labels(
    patient_of_image: Sequence[int], labels: Sequence[int], n_patients: int, policy: str = "majority"
) -> tuple[list[int], int, int]:
    """The label each patient is grouped under.

    Args:
        patient_of_image: patient index (0 … n_patients-1) of each image.
        labels: integer label of each image.
        n_patients: number of patients.
        policy: ``"majority"``: the most frequent label among the patient's images, ties to the higher label;
            ``"error"``: raise if a patient's images carry several labels.

    Returns:
        ``(label per patient, patients with several labels, images whose label differs from their patient's)``.

    Raises:
        DataError: policy ``"error"`` and a patient with several labels.
    """
    counts: list[Counter[int]] = [Counter() for _ in range(n_patients)]
    for p, label in zip(patient_of_image, labels, strict=True):
        counts[p][label] += 1
    out, mixed, relabelled = [], 0, 0
    for c in counts:
        best = max(c.items(), key=lambda kv: (kv[1], kv[0]))[0]  # most images, then higher label
        out.append(best)
        if len(c) > 1:
            mixed += 1
            relabelled += sum(c.values()) - c[best]
    if mixed and policy == "error":
        raise DataError(
            f"{mixed} patient(s) have images of several labels; use mixed_labels='majority' to group each patient "
            "under its majority label, or fix the labels"
        )
    return out, mixed, relabelled


# ----------------------------------------------------------------------------------------------------------------
# Grouping algorithms (points: [n, D] float64 CPU, rows in stable patient order)


def _gram_dist(points: Tensor, sq: Tensor, rows: Tensor) -> Tensor:
    """Distances ``[len(rows), n]`` from ``points[rows]`` to all points, by the Gram form (one matmul).

    ``sq`` is the squared norm of every point. Exact for small integer coordinates; elsewhere within float64
    rounding, which is why summed distances are compared with a relative tolerance.
    """
    d2 = sq[rows, None] + sq[None, :] - 2.0 * (points[rows] @ points.T)  # [r, n]
    d2[torch.arange(len(rows)), rows] = 0.0  # a point's distance to itself, free of cancellation
    return d2.clamp_min_(0.0).sqrt_()


def _group_means(points: Tensor, groups: Sequence[Sequence[int]]) -> Tensor:
    """Mean point of each group: ``[G, D]``."""
    gidx = torch.tensor([g for g, members in enumerate(groups) for _ in members], dtype=torch.long)
    pidx = torch.tensor([p for members in groups for p in members], dtype=torch.long)
    sums = torch.zeros(len(groups), points.shape[1], dtype=points.dtype).index_add_(0, gidx, points[pidx])
    return sums / torch.bincount(gidx, minlength=len(groups)).to(points.dtype)[:, None]


def _restore_spread(points: Tensor, groups: Sequence[Sequence[int]], centroids: Tensor) -> Tensor:
    """Push each centroid away from the mean of all patients until it lies at the members' mean distance from it.

    The mean of k latents lies closer to the population mean than its members (their individual deviations partly
    cancel), and its image shows less of everything that varies between patients, the disease signs included. The
    scale of group g is ``mean_i ||p_i - m|| / ||c_g - m||`` over its members' patient latents ``p_i``: one number
    computed from all k members together, so the result still depends on the group only as a whole.

    Args:
        points: patient latents ``[P, D]`` float64; groups: patient indices per group; centroids: ``[G, D]``.

    Returns:
        ``[G, D]`` float64.
    """
    center = points.mean(0)  # [D]
    out = centroids.clone()
    for g, members in enumerate(groups):
        target = (points[list(members)] - center).norm(dim=1).mean()
        current = (centroids[g] - center).norm()
        if current > 0:
            out[g] = center + (target / current) * (centroids[g] - center)
    return out


def _greedy_groups(points: Tensor, k: int) -> list[list[int]]:
    """k-SALSA same-size clustering with leftovers joining the nearest group centroid.

    Args:
        points: ``[n, D]`` float64, one row per patient in stable order (ties go to the lower row).
        k: patients per group (before leftovers join).

    Returns:
        Groups as sorted lists of rows, in order of formation.
    """
    n = points.shape[0]
    sq = (points * points).sum(dim=1)  # [n]
    unassigned = torch.ones(n, dtype=torch.bool)
    sums = torch.empty(n, dtype=torch.float64)  # summed distance of each patient to the unassigned ones
    for start in range(0, n, _CHUNK):
        rows = torch.arange(start, min(start + _CHUNK, n))
        sums[rows] = _gram_dist(points, sq, rows).sum(dim=1)
    groups: list[list[int]] = []
    n_free = n
    while n_free >= k:
        s = sums.masked_fill(~unassigned, -torch.inf)
        top = s.max()
        p = int(((s >= top - _TIE_RTOL * top.abs()) & unassigned).nonzero()[0])  # first of the (near-)tied maxima
        d = torch.cdist(points[p : p + 1], points, compute_mode="donot_use_mm_for_euclid_dist")[0]  # [n], exact
        d[~unassigned] = torch.inf
        d[p] = torch.inf
        nearest = torch.sort(d, stable=True).indices[: k - 1]  # ties -> lower row
        members = sorted([p, *nearest.tolist()])
        unassigned[members] = False
        n_free -= k
        if n_free:
            sums -= _gram_dist(points, sq, torch.tensor(members)).sum(dim=0)
        groups.append(members)
    leftovers = unassigned.nonzero().squeeze(1)
    if leftovers.numel():  # each joins the nearest centroid of the groups as first formed (order-independent)
        centres = _group_means(points, groups)  # [G, D]
        d = torch.cdist(points[leftovers], centres, compute_mode="donot_use_mm_for_euclid_dist")  # [L, G]
        for p, g in zip(leftovers.tolist(), d.argmin(dim=1).tolist(), strict=True):
            groups[g].append(p)
    return [sorted(g) for g in groups]


def _label_seed(seed: int, label: int) -> int:
    return derive_seed("latentwalk.ksame", seed, label)


def _kmeanspp(points: Tensor, n_clusters: int, generator: torch.Generator) -> Tensor:
    """k-means++ initial centres ``[n_clusters, D]`` drawn with ``generator``."""
    n = points.shape[0]
    sq = (points * points).sum(dim=1)
    chosen = [int(torch.randint(n, (1,), generator=generator))]
    d2 = _gram_dist(points, sq, torch.tensor(chosen))[0] ** 2  # [n] squared distance to the nearest centre
    for _ in range(1, n_clusters):
        total = float(d2.sum())
        if total > 0:
            nxt = int(torch.multinomial(d2 / total, 1, generator=generator))
        else:  # every remaining point coincides with a chosen centre
            taken = set(chosen)
            nxt = next(i for i in range(n) if i not in taken)
        chosen.append(nxt)
        d2 = torch.minimum(d2, _gram_dist(points, sq, torch.tensor([nxt]))[0] ** 2)
    return points[chosen].clone()


def _capacity_assign(points: Tensor, centres: Tensor, k: int) -> Tensor:
    """Fill every cluster with exactly k patients, best-over-worst benefit first; the rest join their nearest.

    Returns:
        ``[n]`` int64 cluster of each patient; every cluster has at least k patients.
    """
    n, g = points.shape[0], centres.shape[0]
    d = torch.cdist(points, centres, compute_mode="use_mm_for_euclid_dist").numpy()  # [n, g]
    priority = d.min(axis=1) - d.max(axis=1)  # most negative = most to lose if misplaced
    assign = np.full(n, -1, dtype=np.int64)
    room = np.full(g, k, dtype=np.int64)
    masked = d.copy()
    filled = 0
    for i in np.argsort(priority, kind="stable"):  # a plain loop: n steps of O(g)
        if filled == g * k:
            break
        c = int(masked[i].argmin())
        assign[i] = c
        filled += 1
        room[c] -= 1
        if room[c] == 0:
            masked[:, c] = np.inf
    rest = assign < 0
    assign[rest] = d[rest].argmin(axis=1)
    return torch.from_numpy(assign)


def _kmeans_groups(points: Tensor, k: int, generator: torch.Generator, max_iter: int) -> tuple[list[list[int]], dict]:
    """Balanced k-means: floor(n / k) clusters of at least k patients each.

    The capacity-constrained assignment is a heuristic, so rounds may cycle instead of repeating an assignment;
    the loop therefore keeps the assignment of lowest within-cluster sum of squares and stops when an assignment
    repeats ("converged"), when a round fails to lower that cost ("no_improvement") or after ``max_iter`` rounds.
    """
    n_clusters = points.shape[0] // k
    centres = _kmeanspp(points, n_clusters, generator)
    best, best_cost, prev, stop, rounds = None, float("inf"), None, "max_iter", 0
    while rounds < max_iter:
        rounds += 1
        assign = _capacity_assign(points, centres, k)
        if prev is not None and torch.equal(assign, prev):
            stop = "converged"
            break
        counts = torch.bincount(assign, minlength=n_clusters).to(points.dtype)
        centres = torch.zeros_like(centres).index_add_(0, assign, points) / counts[:, None]  # [G, D]
        cost = float(((points - centres[assign]) ** 2).sum())
        if cost >= best_cost * (1 - _TIE_RTOL):
            stop = "no_improvement"
            break
        best, best_cost, prev = assign, cost, assign
    groups = [sorted((best == c).nonzero().squeeze(1).tolist()) for c in range(n_clusters)]
    groups.sort(key=lambda g: g[0])
    return groups, {"rounds": rounds, "stop": stop, "sum_of_squares": best_cost}


def _patient_points(ws: Tensor, patient_of_image: Sequence[int], n_patients: int) -> Tensor:
    """One point per patient: the mean of the patient's latents, ``[P, D]`` float64 on the CPU."""
    n = ws.shape[0]
    pidx = torch.tensor(patient_of_image, dtype=torch.long)
    flat = ws.detach().reshape(n, -1)  # [N, D], D = num_ws * w_dim (or w_dim)
    points = torch.zeros(n_patients, flat.shape[1], dtype=torch.float64)  # [P, D]
    for start in range(0, n, _CHUNK):  # chunked: never a float64 copy of all N latents at once
        stop = min(start + _CHUNK, n)
        points.index_add_(0, pidx[start:stop], flat[start:stop].to(device="cpu", dtype=torch.float64))
    points /= torch.bincount(pidx, minlength=n_patients).to(torch.float64)[:, None]
    return points


def _patients_by_label(plabel: Sequence[int], labs: Sequence[int], k: int) -> dict[int, list[int]]:
    """Patients (ascending) per label; every label of an image must have at least ``k`` patients."""
    by_label: dict[int, list[int]] = defaultdict(list)
    for p, label in enumerate(plabel):
        by_label[label].append(p)
    images_by_label = Counter(labs)
    for label in sorted(set(labs)):
        n_lab = len(by_label.get(label, []))
        if n_lab == 0:
            raise DataError(
                f"label {label} has {images_by_label[label]} image(s) but no patient grouped under it (each such "
                "patient has a majority of images of another label); drop those images or fix the labels"
            )
        if n_lab < k:
            raise DataError(
                f"label {label} has {n_lab} distinct patient(s) ({images_by_label[label]} image(s)), fewer than "
                f"k={k}; lower k to at most {n_lab} or merge labels"
            )
    return by_label


def _group_by_label(
    points: Tensor, by_label: dict[int, list[int]], cfg: KSameConfig
) -> tuple[list[list[int]], list[int], dict[str, dict[str, Any]]]:
    """Group each label's patients; returns the groups (patient indices), their labels and per-label details."""
    patient_groups: list[list[int]] = []
    group_labels: list[int] = []
    per_label: dict[str, dict[str, Any]] = {}
    for label in sorted(by_label):
        members = torch.tensor(by_label[label], dtype=torch.long)  # ascending = stable order
        info: dict[str, Any] = {"patients": len(members)}
        if cfg.k == 1:
            local = [[i] for i in range(len(members))]
        elif cfg.method == "greedy":
            local = _greedy_groups(points[members], cfg.k)
        elif cfg.method == "kmeans":
            gen = torch.Generator().manual_seed(_label_seed(cfg.seed, label))
            local, extra = _kmeans_groups(points[members], cfg.k, gen, cfg.max_iter)
            info.update(extra)
        else:  # pragma: no cover - KSameConfig validates the method
            raise ConfigError(f'unknown k-same method "{cfg.method}"; expected one of {", ".join(METHODS)}')
        info["groups"] = len(local)
        per_label[str(label)] = info
        for g in local:
            patient_groups.append(members[g].tolist())
            group_labels.append(label)
    return patient_groups, group_labels, per_label


def _image_groups(
    patient_of_image: Sequence[int], n_patients: int, patient_groups: Sequence[Sequence[int]]
) -> tuple[Tensor, ...]:
    """Per group of patients, the sorted int64 indices of all their images."""
    images_of_patient: list[list[int]] = [[] for _ in range(n_patients)]
    for i, p in enumerate(patient_of_image):
        images_of_patient[p].append(i)
    return tuple(
        torch.tensor(sorted(i for p in g for i in images_of_patient[p]), dtype=torch.long) for g in patient_groups
    )


# ----------------------------------------------------------------------------------------------------------------
# Public API


def group_latents(
    ws: Tensor, identities: Sequence[str] | None, labels: Sequence[int] | None, cfg: KSameConfig | None = None
) -> KSameResult:
    """Group latent codes by patient so that every group spans at least ``cfg.k`` patients of one label.

    Args:
        ws: latent codes ``[N, num_ws, w_dim]`` (W+, or W broadcast) or ``[N, w_dim]`` (W), float, any device;
            finite.
        identities: patient identity of each row of ``ws`` (non-empty strings); kept in memory, never written.
        labels: integer class label of each row of ``ws``.
        cfg: options; ``KSameConfig()`` when None.

    Returns:
        :class:`KSameResult`; groups ordered by label, then by formation (greedy) or first patient (kmeans).
        Passes :func:`check_k_anonymity` by construction (and is checked before it is returned).

    Raises:
        DataError: missing, empty or mismatched identities or labels, bad latents, mixed-label patients under
            ``mixed_labels="error"``, or a label with no patients or fewer than ``cfg.k`` patients.
    """
    cfg = KSameConfig() if cfg is None else cfg
    if not isinstance(cfg, KSameConfig):
        raise ConfigError(f"cfg must be a KSameConfig, got {type(cfg).__name__}")
    _check_ws(ws)
    n = ws.shape[0]
    ids = _check_identities(identities, n)
    labs = _check_labels(labels, n)

    order = sorted(set(ids))  # stable patient order: sorted identity strings
    pindex = {ident: i for i, ident in enumerate(order)}
    patient_of_image = [pindex[ident] for ident in ids]
    n_patients = len(order)
    plabel, mixed, relabelled = patient_labels(patient_of_image, labs, n_patients, cfg.mixed_labels)
    if mixed:
        warnings.warn(
            f"{mixed} patient(s) have images of several labels; {relabelled} image(s) were grouped under their "
            "patient's majority label (ties to the higher label)",
            stacklevel=2,
        )

    points = _patient_points(ws, patient_of_image, n_patients)  # [P, D]
    by_label = _patients_by_label(plabel, labs, cfg.k)
    patient_groups, group_labels, per_label = _group_by_label(points, by_label, cfg)
    groups = _image_groups(patient_of_image, n_patients, patient_groups)
    group_identities = tuple(tuple(order[p] for p in sorted(g)) for g in patient_groups)
    centroids = _group_means(points, patient_groups)  # [G, D]: mean over patients, each weighing the same
    if cfg.spread == "restore":
        centroids = _restore_spread(points, patient_groups, centroids)
    centroids = centroids.reshape(len(patient_groups), *ws.shape[1:]).to(device=ws.device, dtype=ws.dtype)

    result = KSameResult(
        groups=groups,
        group_identities=group_identities,
        group_labels=tuple(group_labels),
        centroids=centroids,
        config=cfg,
        diagnostics={
            "images": n,
            "patients": n_patients,
            "mixed_label_patients": mixed,
            "relabelled_images": relabelled,
            "per_label": per_label,
        },
    )
    check_k_anonymity(result, ids, cfg.k, labels=labs)
    return result


def check_k_anonymity(
    result: KSameResult, identities: Sequence[str], k: int, *, labels: Sequence[int] | None = None
) -> None:
    """Verify the k-same guarantee of any grouping, whatever produced it.

    Checks that groups are disjoint and index valid images; every group has at least ``k`` distinct identities
    (and its recorded identities match its images); every patient is in exactly one group, with all of its images;
    group labels, identities and centroids are one per group; and, when ``labels`` are given, that every patient of
    a group has the group's label under the result's ``mixed_labels`` policy.

    Args:
        result: the grouping to check.
        identities: patient identity of each of the N images the groups index.
        k: the minimum number of distinct identities per group (>= 1).
        labels: optional integer label of each image.

    Raises:
        ConfigError: ``k`` is not an integer >= 1.
        DataError: the first violation found, naming the failing group (by index and label) or image index.
    """
    if not _is_int(k) or k < 1:
        raise ConfigError(f"k must be an integer >= 1, got {k!r}")
    if identities is None:
        raise DataError("check_k_anonymity needs the patient identity of every image the groups index, got None")
    ids = _check_identities(identities, len(identities), "images")
    n = len(ids)
    n_groups = len(result.groups)
    if n_groups == 0:
        raise DataError(f"k-anonymity check failed: the result has no groups for {n} images")
    for name, count in (
        ("group_labels", len(result.group_labels)),
        ("group_identities", len(result.group_identities)),
        ("centroids", int(result.centroids.shape[0]) if result.centroids.ndim else 0),
    ):
        if count != n_groups:
            raise DataError(f"k-anonymity check failed: the result has {n_groups} groups but {count} {name}")

    group_of_image: list[int] = [-1] * n
    group_of_patient: dict[str, int] = {}
    for g, idx in enumerate(result.groups):
        where = f"group {g} (label {result.group_labels[g]})"
        if not isinstance(idx, Tensor) or idx.ndim != 1 or idx.is_floating_point() or idx.is_complex():
            raise DataError(f"k-anonymity check failed: {where} is not a 1-D integer index tensor")
        members = idx.tolist()
        for i in members:
            if not 0 <= i < n:
                raise DataError(f"k-anonymity check failed: {where} holds image index {i}, outside 0..{n - 1}")
            if group_of_image[i] >= 0:
                other = group_of_image[i]
                raise DataError(f"k-anonymity check failed: image {i} is in group {other} and in {where}")
            group_of_image[i] = g
        distinct = {ids[i] for i in members}
        if len(distinct) < k:
            raise DataError(
                f"k-anonymity check failed: {where} has {len(distinct)} distinct identities "
                f"({len(members)} images), fewer than k={k}"
            )
        for ident in distinct:
            if ident in group_of_patient:
                raise DataError(
                    f"k-anonymity check failed: a patient's images are split across group "
                    f"{group_of_patient[ident]} and {where}"
                )
            group_of_patient[ident] = g
        if set(result.group_identities[g]) != distinct or len(result.group_identities[g]) != len(distinct):
            raise DataError(f"k-anonymity check failed: the recorded identities of {where} do not match its images")

    missing = [i for i in range(n) if group_of_image[i] < 0]
    if missing:
        g = group_of_patient.get(ids[missing[0]])
        where = "no group" if g is None else f"not in its patient's group {g} (label {result.group_labels[g]})"
        raise DataError(
            f"k-anonymity check failed: {len(missing)} image(s) are in no group (first: image {missing[0]}, {where})"
        )

    if labels is not None:
        labs = _check_labels(labels, n)
        order = sorted(group_of_patient)
        pindex = {ident: i for i, ident in enumerate(order)}
        plabel, _, _ = patient_labels([pindex[i] for i in ids], labs, len(order), result.config.mixed_labels)
        for ident, p in pindex.items():
            g = group_of_patient[ident]
            if plabel[p] != result.group_labels[g]:
                raise DataError(
                    f"k-anonymity check failed: group {g} (label {result.group_labels[g]}) holds a patient of "
                    f"label {plabel[p]}; groups must not mix labels"
                )


KSAME_FORMAT = "latentwalk.ksame.centroids"
KSAME_FORMAT_VERSION = 1


def _group_inverted(latents: str | os.PathLike, G: Any, index: Any, cfg: KSameConfig) -> tuple[KSameResult, str, dict]:
    """Group the inverted real latents of ``latents`` (checked against ``G`` and ``index``); k checked as well."""
    from gan_zoo.invert import generator_sha256
    from latentwalk.invert import load_latents

    ids, ws, meta = load_latents(latents)
    if meta["generator"]["sha256"] != generator_sha256(G):
        raise ConfigError(
            f"the latents in {Path(latents).name} were inverted with another generator; invert the real images "
            "again with this --gan (latentwalk gan invert)"
        )
    known = {str(r.file.relative_to(index.root)) for r in index.records}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ConfigError(
            f"{len(unknown)} latent(s) name images that are not in the dataset; invert this dataset's images"
        )
    patients = [meta["items"][i]["identity"] for i in ids]
    point_labels = [meta["items"][i]["label"] for i in ids]
    result = group_latents(ws, patients, point_labels, cfg)
    check_k_anonymity(result, patients, cfg.k, labels=point_labels)
    space = meta.get("config", {}).get("space", "w")
    return result, space, meta


def latent_centroids(
    latents: str | os.PathLike,
    G: Any,
    index: Any,
    labels: Sequence[int],
    cfg: KSameConfig,
    *,
    min_groups: int = 1,
    members: dict[int, tuple[tuple[str, ...], ...]] | None = None,
) -> tuple[dict[int, Tensor], dict[str, Any], str]:
    """The k-same centroids of inverted real latents, per label: the start and end points of ksame/ksame-plan walks.

    Args:
        latents: a latents file of :func:`latentwalk.invert.invert_dataset`, inverted with ``G`` from ``index``.
        G: the generator (its weights must be the ones the latents were inverted with).
        index: the real dataset the latents name.
        labels: the labels to return centroids for.
        cfg: the grouping (k, method, spread).
        min_groups: fewest groups a label needs (2 for walks between two groups).
        members: a dict to fill with ``{label: the sorted identities of each group's patients}``, in the rows' order
            of the centroids (for the private sidecar of ``generate``); identities: keep them in memory only.

    Returns:
        ``({label: centroids float32}, grouping summary without its diagnostics, the latents file's SHA-256)``; a
        centroid is one ``w`` ``[G_label, w_dim]`` for a W-space file, ``[G_label, num_ws, w_dim]`` for W+, and a
        ``z`` ``[G_label, z_dim]``-like row for Z (as inverted).

    Raises:
        ConfigError: the latents come from another generator or name images outside ``index``.
        DataError: a label with fewer than ``min_groups`` groups at this k, or a grouping that fails the k check.
    """
    result, space, meta = _group_inverted(latents, G, index, cfg)
    points = result.centroids[:, 0] if space == "w" else result.centroids  # W: one w per group
    centroids = {}
    for label in labels:
        rows = [i for i, lab in enumerate(result.group_labels) if lab == label]
        if min_groups >= 2 and len(rows) < min_groups:
            raise DataError(
                f"label {label} has {len(rows)} k-same group(s) at k={cfg.k}; ksame-plan walks between two groups of "
                "a label: lower k or add patients"
            )
        if not rows:
            raise DataError(f"label {label} has no k-same group at k={cfg.k}; lower k or add patients")
        centroids[label] = points[rows].float()
        if members is not None:
            members[label] = tuple(result.group_identities[i] for i in rows)
    summary = result.to_dict()
    summary.pop("diagnostics", None)
    return centroids, summary, str(meta["latents_sha256"])


def write_ksame(
    latents: str | os.PathLike, G: Any, index: Any, cfg: KSameConfig, out_file: str | os.PathLike, *, overwrite=False
) -> Path:
    """The k-same stage as files: group inverted real latents, check k, write the centroids and the proof.

    Writes ``out_file`` (``.safetensors``: ``centroids`` as the walks use them, ``labels`` [G] int64) and
    ``<stem>.json``: format, the checksums of both inputs (latents file, generator) and of the centroids, the
    grouping summary (config, labels, images and patients per group, diagnostics) and the k check that passed. No
    patient identity, path or group membership is written; the centroids are means of at least k patients' latents,
    yet still derived from real images: keep the files as private as the latents.

    Raises:
        ConfigError: see :func:`latent_centroids`; an ``out_file`` not ending in ``.safetensors``, or an existing one
            without ``overwrite`` or not written by latentwalk.
        DataError: a grouping that fails the k check (never written).
    """
    import hashlib

    from safetensors.torch import save

    from gan_zoo.invert import generator_sha256
    from latentwalk.io import atomic_write_bytes, write_json
    from latentwalk.outputs import claim_file, record_file

    out_file = Path(out_file)
    if out_file.suffix != ".safetensors":
        raise ConfigError(
            f"k-same file {out_file} must end in .safetensors; e.g. {out_file.with_suffix('.safetensors')}"
        )
    meta_file = out_file.with_suffix(".json")
    for target in (out_file, meta_file):
        claim_file(target, overwrite=overwrite, inputs={"dataset": index.root, "latents": Path(latents)})
    result, space, meta = _group_inverted(latents, G, index, cfg)
    points = (result.centroids[:, 0] if space == "w" else result.centroids).float().cpu().contiguous()
    labels = torch.tensor(result.group_labels, dtype=torch.int64)
    blob = save({"centroids": points, "labels": labels}, metadata={"format": f"{KSAME_FORMAT}/v{KSAME_FORMAT_VERSION}"})
    summary = result.to_dict()
    info = {
        "format": KSAME_FORMAT,
        "format_version": KSAME_FORMAT_VERSION,
        "centroids_file": out_file.name,
        "centroids_sha256": hashlib.sha256(blob).hexdigest(),
        "space": space,
        "inputs": {"latents_sha256": str(meta["latents_sha256"]), "generator_sha256": generator_sha256(G)},
        "k_check": {
            "k": cfg.k,
            "passed": True,
            "min_patients_per_group": min(summary["group_patients"]),
            "checked": "disjoint groups; >= k distinct patients each; every patient in exactly one group with all "
            "of its images (latentwalk.ksame.check_k_anonymity)",
        },
        "grouping": summary,
    }
    atomic_write_bytes(out_file, blob)
    write_json(meta_file, info)  # last: the commit mark
    record_file(out_file)
    record_file(meta_file)
    return out_file
