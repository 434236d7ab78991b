import csv
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from latentwalk.data.records import DatasetIndex, ImageRecord
from latentwalk.data.splits import assign_splits, check_disjoint, identity_strata, split_identities, write_splits
from latentwalk.errors import ConfigError, DataError

ROOT = Path("/data/ds")


def _index(per_identity):
    """An in-memory index: ``per_identity`` maps identity -> list of labels (one image per label)."""
    records = [
        ImageRecord(ROOT / "images" / f"{identity}_{j}.png", identity, label)
        for identity, labels in per_identity.items()
        for j, label in enumerate(labels)
    ]
    return DatasetIndex(ROOT, "native", tuple(records), ("0", "1", "2"), 1)


def _population(n_per_label=(40, 23, 7), images=3):
    out = {}
    for label, n in enumerate(n_per_label):
        for i in range(n):
            out[f"L{label}P{i:03d}"] = [label] * images
    return out


def test_assigned_splits_are_identity_disjoint():
    index = assign_splits(_index(_population()), seed=1)
    splits_of = {}
    for r in index.records:
        splits_of.setdefault(r.identity, set()).add(r.split)
    assert all(len(s) == 1 for s in splits_of.values())
    check_disjoint(index)


def test_each_stratum_is_split_within_one_of_the_fractions():
    population = _population(n_per_label=(40, 23, 7))
    assignment = split_identities(_index(population), fractions=(0.7, 0.1, 0.2), seed=3)
    for label, n in enumerate((40, 23, 7)):
        got = Counter(assignment[i] for i in population if i.startswith(f"L{label}"))
        for split, fraction in zip(("train", "val", "test"), (0.7, 0.1, 0.2), strict=True):
            assert abs(got[split] - n * fraction) <= 1, (label, split, got)


def test_same_seed_gives_the_same_assignment_whatever_the_record_order():
    index = _index(_population())
    shuffled = replace(index, records=tuple(reversed(index.records)))
    assert split_identities(index, seed=7) == split_identities(shuffled, seed=7)


def test_different_seed_gives_a_different_assignment():
    index = _index(_population())
    assert split_identities(index, seed=0) != split_identities(index, seed=1)


@pytest.mark.parametrize(
    "fractions", [(0.7, 0.3), (0.5, 0.5, 0.5), (1.2, -0.1, -0.1), (0.7, 0.1, float("nan")), (0.7, 0.1, 0.19)]
)
def test_bad_fractions_are_a_config_error(fractions):
    with pytest.raises(ConfigError, match="split fractions must be three non-negative numbers"):
        split_identities(_index({"p": [0]}), fractions=fractions)


def test_fractions_within_tolerance_are_accepted():
    assert set(split_identities(_index(_population()), fractions=(0.7, 0.1, 0.2 + 5e-7)).values()) == {
        "train",
        "val",
        "test",
    }


def test_one_image_per_patient_splits_patients_like_images():
    population = {f"p{i:02d}": [i % 2] for i in range(20)}
    index = assign_splits(_index(population), fractions=(0.5, 0.25, 0.25), seed=0)
    assert Counter(r.split for r in index.records) == {"train": 10, "val": 5, "test": 5}


def test_a_one_patient_stratum_goes_to_train():
    population = {**{f"p{i}": [0] for i in range(10)}, "rare": [2]}
    assert split_identities(_index(population))["rare"] == "train"


def test_stratum_is_the_most_frequent_label_with_ties_to_the_highest():
    index = _index({"tie": [0, 2], "mostly0": [0, 0, 2], "single": [1], "tie3": [2, 1, 0]})
    assert identity_strata(index) == {"tie": 2, "mostly0": 0, "single": 1, "tie3": 2}


def test_zero_fraction_splits_stay_empty():
    assignment = split_identities(_index(_population()), fractions=(0.0, 0.0, 1.0))
    assert set(assignment.values()) == {"test"}


def test_splitting_requires_identities():
    index = DatasetIndex(ROOT, "csv", (ImageRecord(ROOT / "a.png", None, 0),), ("0",), 1)
    with pytest.raises(DataError, match="needs a patient identity for every image"):
        split_identities(index)


def test_check_disjoint_names_the_leaking_patient():
    index = _index({"p1": [0, 0], "p2": [1]})
    records = list(index.records)
    records[0] = replace(records[0], split="train")
    records[1] = replace(records[1], split="test")
    with pytest.raises(DataError, match=r"patient 'p1' .* appears in train \(1 images\) and test \(1 images\)"):
        check_disjoint(replace(index, records=tuple(records)))


def test_write_splits_writes_relative_files_and_splits(tmp_path):
    index = assign_splits(_index(_population(n_per_label=(5, 5, 5), images=1)), seed=0)
    out = tmp_path / "splits.csv"
    write_splits(index, out)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == [r.file.relative_to(ROOT).as_posix() for r in index.records]
    assert [r["split"] for r in rows] == [r.split for r in index.records]
    assert rows[0]["file"].startswith("images/")


def test_controlled_rounding_keeps_every_cell_within_one_of_its_quota_and_totals_exact():
    import math
    import random

    from latentwalk.data.splits import _controlled_rounding

    rng = random.Random(0)
    for _ in range(2000):
        sizes = [rng.randint(1, 12) for _ in range(rng.randint(1, 6))]
        raw = [rng.random() for _ in range(3)]
        fractions = [x / sum(raw) for x in raw]
        table = _controlled_rounding(sizes, fractions)
        assert [sum(row) for row in table] == sizes
        for n, row in zip(sizes, table, strict=True):
            for f, cell in zip(fractions, row, strict=True):
                assert math.floor(n * f + 1e-9) <= cell <= math.ceil(n * f - 1e-9)
        for s, f in enumerate(fractions):
            assert abs(sum(row[s] for row in table) - sum(sizes) * f) < 1


def test_small_val_split_is_not_rounded_away_when_every_stratum_is_small(tmp_path):
    from latentwalk.data.phantoms import PhantomConfig, write_phantom_dataset

    index = write_phantom_dataset(
        PhantomConfig(kind="fundus", identities=20, per_identity=1, resolution=32), tmp_path / "d"
    )
    patients = {s: len({r.identity for r in index.records if r.split == s}) for s in ("train", "val", "test")}
    assert patients == {"train": 14, "val": 2, "test": 4}
