"""Identity-disjoint, label-stratified train/val/test splits.

A patient's images all go to one split, so that no patient seen in training is measured in the test set (privacy
attacks and utility scores would otherwise be optimistic). Patients are stratified by their most frequent label,
ties going to the higher label (in diabetic retinopathy the worse eye decides the patient's grade).
"""

from __future__ import annotations

import math
import numbers
import os
from collections import Counter
from collections.abc import Sequence

from latentwalk.data.records import SPLITS, DatasetIndex
from latentwalk.errors import ConfigError, DataError

__all__ = [
    "DEFAULT_FRACTIONS",
    "split_identities",
    "identity_strata",
    "assign_splits",
    "check_disjoint",
    "write_splits",
]

DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)  # train, val, test: fractions of patients


def split_identities(
    index: DatasetIndex, fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0
) -> dict[str, str]:
    """Assign every patient to ``"train"``, ``"val"`` or ``"test"``.

    Identities are sorted, grouped into strata by label, shuffled within each stratum by a
    ``numpy.random.Generator`` seeded with ``seed``, and cut by controlled rounding: the split totals are the
    largest-remainder rounding of ``n_patients * fractions`` (so a 10 % val split of 20 patients has 2 patients even
    when every stratum alone would round it to 0), and each stratum's part is its quota rounded down or up. The
    result depends only on the set of ``(identity, label)`` pairs and ``seed``, never on record order.

    Args:
        index: the dataset; every record needs an identity.
        fractions: ``(train, val, test)`` fractions of patients, each >= 0, summing to 1 (within 1e-6).
        seed: seed of the shuffle; the same seed gives the same assignment.

    Returns:
        identity -> split name, for every identity of ``index``.

    Raises:
        ConfigError: ``fractions`` is not three non-negative numbers summing to 1.
        DataError: a record has no identity.
    """
    import numpy as np

    fractions = _check_fractions(fractions)
    index.require_identities("splitting by patient")
    strata: dict[int, list[str]] = {}
    for identity, stratum in sorted(identity_strata(index).items()):
        strata.setdefault(stratum, []).append(identity)

    rng = np.random.default_rng(seed)
    keys = sorted(strata)
    sizes_of = _controlled_rounding([len(strata[k]) for k in keys], fractions)
    assignment: dict[str, str] = {}
    for stratum, sizes in zip(keys, sizes_of, strict=True):
        members = strata[stratum]
        order = rng.permutation(len(members))
        start = 0
        for split, size in zip(SPLITS, sizes, strict=True):
            for i in order[start : start + size]:
                assignment[members[i]] = split
            start += size
    return assignment


def identity_strata(index: DatasetIndex) -> dict[str, int]:
    """Each identity's stratum: its most frequent label, ties going to the highest label (the worse eye in DR).

    Records without an identity are skipped.
    """
    labels_of: dict[str, Counter] = {}
    for record in index.records:
        if record.identity is not None:
            labels_of.setdefault(record.identity, Counter())[record.label] += 1
    return {identity: max(counts, key=lambda label: (counts[label], label)) for identity, counts in labels_of.items()}


def assign_splits(index: DatasetIndex, fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0) -> DatasetIndex:
    """A copy of ``index`` whose records carry the splits of :func:`split_identities` (existing splits replaced)."""
    return index.with_splits(split_identities(index, fractions=fractions, seed=seed))


def check_disjoint(index: DatasetIndex) -> None:
    """Check that no patient has images in two splits.

    Records without a split are ignored; when any record has a split, every record needs an identity.

    Raises:
        DataError: a patient appears in two splits (named, with the splits), or identities are missing.
    """
    if all(r.split is None for r in index.records):
        return
    index.require_identities("checking that splits are patient-disjoint")
    splits_of: dict[str, Counter] = {}
    for record in index.records:
        if record.split is not None:
            splits_of.setdefault(record.identity, Counter())[record.split] += 1
    leaking = [(identity, counts) for identity, counts in splits_of.items() if len(counts) > 1]
    if leaking:
        identity, counts = leaking[0]
        where = " and ".join(f"{split} ({n} images)" for split, n in sorted(counts.items(), key=_split_order))
        more = f" ({len(leaking) - 1} more patients too)" if len(leaking) > 1 else ""
        raise DataError(
            f"patient {identity!r} of {index.root} appears in {where}{more}; splits must be patient-disjoint, so "
            f"re-split with latentwalk data split or fix the split column"
        )


def write_splits(index: DatasetIndex, path: str | os.PathLike) -> None:
    """Write ``file,split`` rows (file relative to ``index.root``, POSIX separators; empty split when unassigned).

    The file is written atomically; rows follow the index order (sorted by file).
    """
    from latentwalk.io import write_csv

    rows = [
        {"file": os.path.relpath(r.file, index.root).replace(os.sep, "/"), "split": r.split or ""}
        for r in index.records
    ]
    write_csv(path, ["file", "split"], rows)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate and renormalise ``(train, val, test)`` so that they sum to exactly 1."""
    values = tuple(fractions)
    if (
        len(values) != len(SPLITS)
        or not all(isinstance(f, numbers.Real) and not isinstance(f, bool) and math.isfinite(f) for f in values)
        or any(f < 0 for f in values)
        or abs(sum(values) - 1.0) > 1e-6
    ):
        raise ConfigError(
            f"split fractions must be three non-negative numbers (train, val, test) summing to 1, got {list(values)}; "
            f"for example 0.7,0.1,0.2"
        )
    total = sum(values)
    return tuple(f / total for f in values)  # type: ignore[return-value]


def _largest_remainder(n: int, fractions: Sequence[float]) -> list[int]:
    """Split ``n`` items into integer parts proportional to ``fractions``; leftovers to the largest remainders."""
    quotas = [round(n * f, 9) for f in fractions]
    sizes = [math.floor(q) for q in quotas]
    by_remainder = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - sizes[i]), i))
    for i in by_remainder[: n - sum(sizes)]:
        sizes[i] += 1
    return sizes


def _controlled_rounding(strata_sizes: Sequence[int], fractions: Sequence[float]) -> list[list[int]]:
    """Integer table ``[stratum][split]`` whose rows sum to the strata sizes and columns to the rounded split totals.

    Every cell is its exact quota ``n_h * f_s`` rounded down or up (controlled rounding, which always exists for a
    two-way table). Leftover patients go first to the largest remainders; what greedy leaves open is completed with
    augmenting paths (a tiny max-flow), so no stratum ever takes two extra patients in one split.
    """
    n_splits = len(fractions)
    quotas = [[round(n * f, 9) for f in fractions] for n in strata_sizes]
    table = [[math.floor(q) for q in row] for row in quotas]
    can_add = [[q > cell for q, cell in zip(qrow, trow, strict=True)] for qrow, trow in zip(quotas, table, strict=True)]
    totals = _largest_remainder(sum(strata_sizes), fractions)
    row_need = [n - sum(row) for n, row in zip(strata_sizes, table, strict=True)]
    col_need = [t - sum(row[s] for row in table) for s, t in enumerate(totals)]
    extra = [[False] * n_splits for _ in strata_sizes]

    def add(h: int, s: int) -> None:
        extra[h][s] = True
        row_need[h] -= 1
        col_need[s] -= 1

    cells = sorted(
        ((h, s) for h in range(len(table)) for s in range(n_splits) if can_add[h][s]),
        key=lambda hs: (-(quotas[hs[0]][hs[1]] - table[hs[0]][hs[1]]), hs[1], hs[0]),
    )
    for h, s in cells:
        if row_need[h] > 0 and col_need[s] > 0:
            add(h, s)
    for h in range(len(table)):
        while row_need[h] > 0:
            path = _augmenting_path(h, extra, can_add, col_need)
            if path is None:  # cannot happen for margins that are roundings of the quotas; keep totals exact anyway
                s = max(range(n_splits), key=lambda i: (col_need[i], -i))
                table[h][s] += 1
                row_need[h] -= 1
                col_need[s] -= 1
                continue
            for i, (row, col) in enumerate(path):
                extra[row][col] = i % 2 == 0  # even steps add an extra patient, odd steps move one away
            row_need[h] -= 1
            col_need[path[-1][1]] -= 1
    return [
        [cell + int(e) for cell, e in zip(trow, erow, strict=True)] for trow, erow in zip(table, extra, strict=True)
    ]


def _augmenting_path(start: int, extra, can_add, col_need) -> list[tuple[int, int]] | None:
    """Alternating path row -> split -> row ... ending at a split that still needs a patient (breadth first)."""
    from collections import deque

    queue = deque([(start, [])])
    seen_rows, seen_cols = {start}, set()
    while queue:
        h, path = queue.popleft()
        for s in range(len(col_need)):
            if s in seen_cols or not can_add[h][s] or extra[h][s]:
                continue
            seen_cols.add(s)
            step = [*path, (h, s)]
            if col_need[s] > 0:
                return step
            for other in range(len(extra)):
                if other not in seen_rows and extra[other][s]:
                    seen_rows.add(other)
                    queue.append((other, [*step, (other, s)]))
    return None


def _split_order(item: tuple[str, int]) -> int:
    return SPLITS.index(item[0])
