"""Privacy metrics on constructed cases with known answers: copies must be caught, fresh samples must pass."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from latentwalk.errors import ConfigError, DataError
from latentwalk.evaluate.privacy import (
    auc_score,
    auc_score_chunked,
    authenticity,
    best_threshold_accuracy,
    collisions,
    data_copying,
    dcr,
    identifiability,
    mia_distance,
    mia_loss,
    mml,
    nearest_real,
    nndr,
    reidentification,
)

D, CLUSTERS, N = 8, 10, 400
METRIC = "euclidean"
COLLIDE = 1e-2  # euclidean collision threshold: copies sit at ~3e-4, fresh samples at > 0.3


def _mixture(n: int, centers: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """``n`` samples of a Gaussian mixture with unit-variance components at ``centers`` ``[C, D]``."""
    idx = torch.randint(centers.shape[0], (n,), generator=g)
    return centers[idx] + torch.randn(n, centers.shape[1], generator=g)  # [n, D]


@pytest.fixture(scope="module")
def sets() -> dict[str, torch.Tensor]:
    """Train, held-out, near-copies of train (+1e-4 noise) and fresh samples of the same mixture."""
    g = torch.Generator().manual_seed(0)
    centers = 4 * torch.randn(CLUSTERS, D, generator=g)  # [C, D]
    train = _mixture(N, centers, g)
    return {
        "train": train,
        "holdout": _mixture(N, centers, g),
        "copies": train + 1e-4 * torch.randn(train.shape, generator=g),
        "fresh": _mixture(N, centers, g),
        "wide": centers[torch.randint(CLUSTERS, (N,), generator=g)] + 2 * torch.randn(N, D, generator=g),
    }


# ---------------------------------------------------------------------------------------------------------------
# Copies and fresh samples.


def test_near_copies_of_training_images_are_flagged_by_every_metric(sets):
    train, holdout, syn = sets["train"], sets["holdout"], sets["copies"]
    col = collisions(syn, train, METRIC, COLLIDE)
    assert col["count"] == N and col["n_real_collided"] == N
    assert mml(syn, train, METRIC)["mml"] < 1e-3
    d = dcr(syn, train, holdout, METRIC)
    assert d["p_closer"] > 0.99 and d["share_below_holdout_p05"] > 0.99
    assert d["syn_median"] < 1e-3 * d["holdout_median"]
    assert nndr(syn, train, METRIC)["syn_median"] < 0.01
    assert identifiability(train, syn, METRIC) > 0.95
    assert authenticity(train, syn, METRIC)["authentic_fraction"] < 0.05
    ct = data_copying(train, holdout, syn, n_cells=5)
    assert ct["c_t"] < -3 and ct["n_cells_used"] == 5
    assert all(z < -3 for z in ct["cell_z"])
    mia = mia_distance(train, holdout, syn, METRIC)
    assert mia["auc"] > 0.9 and mia["accuracy"] > 0.9


def test_fresh_samples_of_the_training_distribution_pass(sets):
    train, holdout, syn = sets["train"], sets["holdout"], sets["fresh"]
    assert collisions(syn, train, METRIC, COLLIDE)["count"] == 0
    d = dcr(syn, train, holdout, METRIC)
    assert 0.4 < d["p_closer"] < 0.6  # null sd of this AUC is about 0.02
    assert d["share_below_holdout_p05"] < 0.12
    assert 0.8 < d["syn_median"] / d["holdout_median"] < 1.25
    assert identifiability(train, syn, METRIC) < 0.65
    assert authenticity(train, syn, METRIC)["authentic_fraction"] > 0.35
    ct = data_copying(train, holdout, syn, n_cells=5)
    assert abs(ct["c_t"]) < 2  # under the null each cell's Z_U is ~N(0, 1), so C_T has sd ~1/sqrt(5)
    mia = mia_distance(train, holdout, syn, METRIC)
    assert 0.35 < mia["auc"] < 0.65 and mia["accuracy"] < 0.65


def test_data_copying_is_positive_for_an_underfitting_generator(sets):
    # components twice as wide as the data's: synthetic points lie farther from the training set than test points
    ct = data_copying(sets["train"], sets["holdout"], sets["wide"], n_cells=5)
    assert ct["c_t"] > 3


def test_data_copying_one_cell_matches_a_brute_force_z(sets):
    train, test, syn = sets["train"][:60], sets["holdout"][:50], sets["fresh"][:40]
    l_test = cdist(test.numpy(), train.numpy()).min(1)  # [n]
    l_syn = cdist(syn.numpy(), train.numpy()).min(1)  # [m]
    n, m = l_test.size, l_syn.size
    u = (l_syn[:, None] > l_test[None]).sum() + 0.5 * (l_syn[:, None] == l_test[None]).sum()
    z = (u - n * m / 2) / math.sqrt(n * m * (n + m + 1) / 12)
    ct = data_copying(train, test, syn, n_cells=1, min_syn_per_cell=1)
    assert ct["c_t"] == pytest.approx(z, rel=1e-5)
    assert ct["cell_n_train"] == [60] and ct["cell_n_test"] == [50] and ct["cell_n_syn"] == [40]


def test_data_copying_is_deterministic_for_a_seed_and_skips_sparse_cells(sets):
    train, holdout, syn = sets["train"], sets["holdout"], sets["fresh"][:60]
    a = data_copying(train, holdout, syn, n_cells=8, seed=3, min_syn_per_cell=10)
    b = data_copying(train, holdout, syn, n_cells=8, seed=3, min_syn_per_cell=10)
    assert a == b
    assert sum(a["cell_n_train"]) == N and sum(a["cell_n_test"]) == N and sum(a["cell_n_syn"]) == 60
    kept = [n >= 10 for n in a["cell_n_syn"]]
    assert [z is not None for z in a["cell_z"]] == kept and a["n_cells_used"] == sum(kept) < 8
    with pytest.raises(DataError, match="min_syn_per_cell"):
        data_copying(train, holdout, syn, n_cells=8, min_syn_per_cell=61)


def test_data_copying_cosine_cells_use_directions(sets):
    ct = data_copying(sets["train"], sets["holdout"], sets["copies"], metric="cosine", n_cells=4)
    assert ct["c_t"] < -3


# ---------------------------------------------------------------------------------------------------------------
# Known answers of the small functions.


def test_auc_score_chunked_is_auc_score_exactly_however_the_negatives_are_cut():
    rng = np.random.default_rng(3)
    pos = rng.integers(0, 20, 37).astype(np.float64) / 4  # many ties, within and across the sets
    neg = rng.integers(0, 20, 101).astype(np.float64) / 4
    expected = auc_score(pos, neg)
    for cut in (1, 7, 100, 101, 500):
        chunks = [torch.tensor(neg[i : i + cut]) for i in range(0, neg.size, cut)]
        assert auc_score_chunked(torch.tensor(pos), [np.zeros(0), *chunks]) == expected  # bit for bit
    with pytest.raises(DataError, match="scores_neg is empty"):
        auc_score_chunked(pos, [np.zeros(0)])
    with pytest.raises(DataError, match="NaN"):
        auc_score_chunked(pos, [np.array([0.1, np.nan])])


def test_auc_score_equals_brute_force_pair_count_with_ties():
    rng = np.random.default_rng(1)
    pos, neg = rng.integers(0, 5, 37).astype(float), rng.integers(0, 5, 53).astype(float)
    brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (37 * 53)
    assert auc_score(pos, neg) == pytest.approx(brute, abs=1e-12)
    assert auc_score(torch.tensor(pos), list(neg)) == pytest.approx(brute, abs=1e-12)
    assert auc_score([1.0, 1.0], [1.0]) == 0.5
    assert auc_score([2.0, 3.0], [0.0, 1.0]) == 1.0 and auc_score([0.0], [1.0]) == 0.0


def test_best_threshold_accuracy_equals_brute_force_over_thresholds():
    rng = np.random.default_rng(2)
    pos, neg = rng.integers(0, 8, 41).astype(float), rng.integers(0, 6, 29).astype(float)  # many ties
    best = max(0.5 * ((pos >= t).mean() + (neg < t).mean()) for t in [*np.concatenate([pos, neg]), math.inf])
    assert best_threshold_accuracy(pos, neg) == pytest.approx(best, abs=1e-12)
    assert best_threshold_accuracy([3.0, 2.0], [1.0, 2.5]) == 0.75
    assert best_threshold_accuracy([1.0, 1.0], [1.0, 0.0]) == 0.75  # a tied score cannot be split


def test_best_threshold_accuracy_is_one_when_separable_and_half_on_identical_distributions():
    assert best_threshold_accuracy([2.0, 3.0, 4.0], [0.0, 1.0]) == 1.0
    assert best_threshold_accuracy([0.0, 1.0], [2.0, 3.0]) == 0.5  # direction is fixed: higher score = positive
    g = torch.Generator().manual_seed(3)
    acc = best_threshold_accuracy(torch.randn(2000, generator=g), torch.randn(2000, generator=g))
    assert 0.5 <= acc < 0.56


def test_mia_loss_lower_loss_means_member_and_confidence_reverses_it():
    members, nonmembers = [0.1, 0.2, 0.3], [0.25, 0.9, 1.5, 2.0]
    out = mia_loss(members, nonmembers)
    assert out["auc"] == pytest.approx(11 / 12, abs=1e-6) and out["accuracy"] == pytest.approx(0.875)
    assert out["n_members"] == 3 and out["n_nonmembers"] == 4
    conf = mia_loss(members, nonmembers, signal="confidence")
    assert conf["auc"] == pytest.approx(1 / 12, abs=1e-6) and conf["accuracy"] == 0.5


def test_mml_and_collisions_known_answers():
    real = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    syn = torch.tensor([[0.0, 1.0], [3.0, 4.0], [6.0, 8.0]])
    assert nearest_real(syn, real, METRIC).tolist() == [1.0, 0.0, 5.0]
    assert mml(syn, real, METRIC) == {"mml": 2.0, "median": 1.0, "min": 0.0, "max": 5.0, "n_syn": 3, "n_real": 2}
    none = collisions(syn, real, METRIC, 0.0, n_pairs=2)  # strictly below 0: nothing, but pairs are still listed
    assert none["count"] == 0 and none["closest_pairs"] == [(1, 1, 0.0), (0, 0, 1.0)]
    some = collisions(syn, real, METRIC, 1.5)
    assert some["count"] == 2 and some["fraction"] == pytest.approx(2 / 3, rel=1e-5)
    assert some["closest_pairs"] == [(1, 1, 0.0), (0, 0, 1.0), (2, 1, 5.0)]


def test_nndr_known_answer_in_the_metric_units():
    train, syn, holdout = torch.tensor([[0.0], [1.0], [3.0]]), torch.tensor([[0.25]]), torch.tensor([[2.0]])
    out = nndr(syn, train, METRIC, holdout=holdout)
    assert out["syn_median"] == pytest.approx(1 / 3, rel=1e-5) and out["holdout_median"] == 1.0
    assert nndr(syn, train, "sqeuclidean")["syn_mean"] == pytest.approx(1 / 9, rel=1e-5)


def test_second_image_of_the_same_patient_is_not_an_other_real_neighbour():
    # two patients with two near-identical images each; one synthetic image near each patient
    train = torch.tensor([[0.0], [0.01], [10.0], [10.01]])
    syn = torch.tensor([[0.1], [10.1]])
    patients = ["a", "a", "b", "b"]
    assert identifiability(train, syn, METRIC) == 0.0  # the sibling image (0.01 away) is nearer than any synthetic
    assert identifiability(train, syn, METRIC, train_groups=patients) == 1.0  # the other patient is ~10 away
    assert authenticity(train, syn, METRIC)["authentic_fraction"] == 1.0
    grouped = authenticity(train, syn, METRIC, train_groups=np.array(patients))
    assert grouped["authentic_fraction"] == 0.0 and grouped["n_unauthentic"] == 2


def test_identifiability_counts_only_strictly_closer_synthetic_images():
    train = torch.tensor([[0.0], [1.0], [5.0]])
    syn = torch.tensor([[0.0], [2.0]])  # r0: 0 < 1 yes; r1: 1 < 1 no (tie); r5: 3 < 4 yes
    assert identifiability(train, syn, METRIC) == pytest.approx(2 / 3, rel=1e-5)


def test_authenticity_counts_a_tie_as_unauthentic():
    train, syn = torch.tensor([[0.0], [1.0], [7.0]]), torch.tensor([[2.0], [4.5]])
    # s=2: r=1, d(s, r)=1 = d(r, 0) -> unauthentic; s=4.5: r=7 (2.5 away), r's other real is 6 away -> unauthentic
    out = authenticity(train, syn, METRIC)
    assert out["n_unauthentic"] == 2
    assert authenticity(train, torch.tensor([[3.0]]), METRIC)["n_authentic"] == 1  # r=1: 2 away, its other real 1


def test_reidentification_known_answers():
    held = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7]], dtype=torch.float64)
    patient = [0, 1, 2, 2]  # rows 0, 1, 3 identified correctly with confidences 0.8, 0.6, 0.7: reference 0.7
    syn = np.array([[0.9, 0.05, 0.05], [0.1, 0.7, 0.2], [0.4, 0.3, 0.3], [0.34, 0.33, 0.33], [0.95, 0.03, 0.02]])
    out = reidentification(syn, held, patient)
    assert out["heldout_top1_accuracy"] == 0.75 and out["heldout_n_correct"] == 3
    assert out["heldout_mean_top1_confidence"] == pytest.approx(0.65)
    assert out["reference_confidence"] == pytest.approx(0.7)
    assert out["syn_mean_top1_confidence"] == pytest.approx(0.658)
    assert out["syn_match_rate"] == 0.6 and out["syn_n_matched"] == 3  # 0.9, 0.7 (equal counts), 0.95
    assert out["syn_n_patients_matched"] == 2 and out["chance_confidence"] == pytest.approx(1 / 3, rel=1e-5)
    wrong = reidentification(syn, held, torch.tensor([1, 0, 1, 0]))
    assert wrong["heldout_top1_accuracy"] == 0.0 and wrong["syn_match_rate"] is None
    assert wrong["reference_confidence"] is None and wrong["syn_n_matched"] == 0


# ---------------------------------------------------------------------------------------------------------------
# Input errors.

_X = torch.zeros(4, 3) + torch.arange(4.0)[:, None]
_X2 = torch.zeros(5, 2)
_P = np.full((2, 3), 1 / 3)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: mml(_X[:0], _X, METRIC), DataError, "syn has no rows"),
        (lambda: mml(_X, _X2, METRIC), ConfigError, "features per row"),
        (lambda: mml(_X, _X, "manhattan"), ConfigError, "unknown metric"),
        (lambda: mml(_X.numpy(), _X, METRIC), ConfigError, "must be a float tensor"),
        (lambda: mml(_X.long(), _X, METRIC), ConfigError, "floating point"),
        (lambda: dcr(_X, _X, _X2, METRIC), ConfigError, "holdout has 2 features"),
        (lambda: collisions(_X, _X, METRIC, -1.0), ConfigError, "threshold"),
        (lambda: nndr(_X, _X[:1], METRIC), DataError, "at least 2 training"),
        (lambda: identifiability(_X, _X, METRIC, train_groups=["a"]), ConfigError, "1 entries for 4 rows"),
        (lambda: authenticity(_X, _X, METRIC, train_groups=["a"] * 4), DataError, "only one patient"),
        (lambda: data_copying(_X, _X, _X, n_cells=5), ConfigError, "n_cells=5 exceeds"),
        (lambda: data_copying(_X, _X, _X, min_syn_per_cell=0), ConfigError, "min_syn_per_cell"),
        (lambda: mia_distance(_X, _X[:0], _X, METRIC), DataError, "nonmembers has no rows"),
        (lambda: auc_score([], [1.0]), DataError, "scores_pos is empty"),
        (lambda: auc_score([[1.0]], [1.0]), ConfigError, "1-D"),
        (lambda: best_threshold_accuracy([1.0], [math.nan]), DataError, "NaN"),
        (lambda: mia_loss([1.0], [2.0], signal="logit"), ConfigError, "unknown signal"),
        (lambda: reidentification(_P * 2, _P, [0, 1]), DataError, "sums to 2"),
        (lambda: reidentification(_P[:, :2] * 1.5, _P, [0, 1]), ConfigError, "classes"),
        (lambda: reidentification(_P, _P, [0, 3]), ConfigError, "only K=3"),
        (lambda: reidentification(_P, _P, [0.5, 1]), ConfigError, "integer patient indices"),
        (lambda: reidentification(_P, _P, [0]), ConfigError, r"\[H\] = \[2\]"),
    ],
)
def test_bad_inputs_raise_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()
