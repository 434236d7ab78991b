"""TSTR utility: metrics match hand and brute-force values, classifiers learn an easy task and not shuffled labels."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from latentwalk.errors import ConfigError, DataError
from latentwalk.evaluate.utility import (
    METRICS,
    UtilityConfig,
    classification_metrics,
    per_sample_loss,
    predict_proba,
    train_classifier,
    tstr,
)

TINY = UtilityConfig(epochs=3, batch=16, lr=3e-3, width=8, embed_dim=16, seeds=(0, 1))


pytestmark = pytest.mark.usefixtures("one_thread")


def _halves(n: int, seed: int, res: int = 16, channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: left half bright; class 1: right half bright; Gaussian noise; ``[n, channels, res, res]``."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.full((n, channels, res, res), -0.6)
    x[y == 0, :, :, : res // 2] = 0.6
    x[y == 1, :, :, res // 2 :] = 0.6
    x = (x + 0.3 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)
    return x, y


def _onehot_probs(pred: list[int], c: int) -> torch.Tensor:
    p = torch.full((len(pred), c), 0.1 / (c - 1))
    p[torch.arange(len(pred)), torch.tensor(pred)] = 0.9
    return p


def _pairwise_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Brute force: share of (positive, negative) pairs ranked right, ties counting 1/2."""
    pos, neg = score[positive], score[~positive]
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p, q in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def _direct_qwk(truth: list[int], pred: list[int], c: int) -> float:
    """Cohen's quadratic weighted kappa written out with loops."""
    n = len(truth)
    observed = [
        [sum(1 for t, p in zip(truth, pred, strict=True) if t == i and p == j) for j in range(c)] for i in range(c)
    ]
    row = [sum(observed[i]) for i in range(c)]
    col = [sum(observed[i][j] for i in range(c)) for j in range(c)]
    num = sum((i - j) ** 2 * observed[i][j] for i in range(c) for j in range(c))
    den = sum((i - j) ** 2 * row[i] * col[j] / n for i in range(c) for j in range(c))
    return 1 - num / den


@pytest.fixture(scope="module")
def easy():
    """Real train, synthetic (same distribution), real test of the halves task: 64 images each."""
    return _halves(64, 1), _halves(64, 2), _halves(64, 3)


@pytest.fixture(scope="module")
def easy_result(easy):
    real, synthetic, test = easy
    return tstr(real, synthetic, test, 2, TINY)


# ----------------------------------------------------------------------------------------------------------------
# Metrics


def test_binary_metrics_match_hand_values():
    p1 = torch.tensor([0.1, 0.4, 0.35, 0.8])
    m = classification_metrics(torch.stack([1 - p1, p1], 1), torch.tensor([0, 0, 1, 1]))
    # predictions [0, 0, 0, 1]: one of two positives found, no false positive
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["balanced_accuracy"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["auc"] == pytest.approx(0.75)  # 3 of 4 (positive, negative) pairs ranked right
    assert m["f1"] == pytest.approx(2 * 1 / (2 * 1 + 0 + 1))
    assert m["qwk"] == pytest.approx(0.5)  # Cohen's kappa: (0.75 - 0.5) / (1 - 0.5)
    assert m["n"] == 4


def test_three_class_metrics_match_hand_values():
    truth = [0, 0, 1, 1, 2, 2]
    pred = [0, 1, 1, 1, 2, 0]
    probs = torch.tensor(
        [[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.2, 0.5, 0.3], [0.1, 0.8, 0.1], [0.1, 0.3, 0.6], [0.5, 0.1, 0.4]]
    )
    assert probs.argmax(1).tolist() == pred
    m = classification_metrics(probs, torch.tensor(truth))
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    # per-class F1 = 2TP / (2TP + FP + FN): class 0: 2/4, class 1: 4/5, class 2: 2/3
    assert m["f1"] == pytest.approx((2 / 4 + 4 / 5 + 2 / 3) / 3)
    assert m["qwk"] == pytest.approx(_direct_qwk(truth, pred, 3))
    y = np.array(truth)
    expected_auc = np.mean([_pairwise_auc(probs[:, k].numpy(), y == k) for k in range(3)])
    assert m["auc"] == pytest.approx(expected_auc)
    # class 0 by hand: positives 0.7, 0.3 vs negatives 0.2, 0.1, 0.1, 0.5 -> (4 + 3) / 8
    assert _pairwise_auc(probs[:, 0].numpy(), y == 0) == pytest.approx(7 / 8)


@pytest.mark.parametrize("c", [2, 4])
def test_auc_with_ties_matches_pairwise_count(c):
    gen = torch.Generator().manual_seed(7)
    labels = torch.randint(0, c, (40,), generator=gen)
    probs = torch.randint(0, 4, (40, c), generator=gen).float()  # few distinct values: many ties
    y = labels.numpy()
    if c == 2:
        expected = _pairwise_auc(probs[:, 1].numpy(), y == 1)
    else:
        expected = np.mean([_pairwise_auc(probs[:, k].numpy(), y == k) for k in np.unique(y)])
    assert classification_metrics(probs, labels)["auc"] == pytest.approx(expected, abs=1e-12)


def test_multiclass_auc_averages_over_classes_present_in_labels():
    labels = torch.tensor([0, 0, 2, 2])  # class 1 absent
    probs = torch.tensor([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7], [0.5, 0.1, 0.4]])
    y = labels.numpy()
    expected = (_pairwise_auc(probs[:, 0].numpy(), y == 0) + _pairwise_auc(probs[:, 2].numpy(), y == 2)) / 2
    assert classification_metrics(probs, labels)["auc"] == pytest.approx(expected)


def test_qwk_matches_direct_formula_and_its_extremes():
    gen = torch.Generator().manual_seed(3)
    truth = torch.randint(0, 5, (50,), generator=gen).tolist()
    pred = torch.randint(0, 5, (50,), generator=gen).tolist()
    m = classification_metrics(_onehot_probs(pred, 5), torch.tensor(truth))
    assert m["qwk"] == pytest.approx(_direct_qwk(truth, pred, 5))
    grades = [0, 1, 2, 3, 4, 2, 1]
    assert classification_metrics(_onehot_probs(grades, 5), torch.tensor(grades))["qwk"] == pytest.approx(1.0)
    reversed_ = classification_metrics(_onehot_probs([4, 3, 2, 1, 0], 5), torch.tensor([0, 1, 2, 3, 4]))["qwk"]
    assert reversed_ < 0
    assert reversed_ == pytest.approx(-1.0)


def test_degenerate_inputs_give_none_instead_of_raising():
    one_class = classification_metrics(_onehot_probs([0, 1, 0], 2), torch.tensor([0, 0, 0]))
    assert one_class["auc"] is None
    assert one_class["accuracy"] == pytest.approx(2 / 3)
    assert one_class["balanced_accuracy"] == pytest.approx(2 / 3)
    all_same = classification_metrics(_onehot_probs([0, 0, 0], 2), torch.tensor([0, 0, 0]))
    assert all_same["f1"] is None  # class 1 neither labelled nor predicted
    assert all_same["qwk"] is None  # everything in one class: chance agreement is perfect
    assert all_same["auc"] is None
    assert all_same["accuracy"] == 1.0
    constant = classification_metrics(torch.full((4, 2), 0.5), torch.tensor([0, 1, 0, 1]))
    assert constant["auc"] == pytest.approx(0.5)
    assert constant["qwk"] == pytest.approx(0.0)
    assert constant["f1"] == pytest.approx(0.0)  # ties go to class 0: class 1 never predicted
    single_multiclass = classification_metrics(_onehot_probs([2, 2], 3), torch.tensor([1, 1]))
    assert single_multiclass["auc"] is None
    assert single_multiclass["f1"] == pytest.approx(0.0)
    assert single_multiclass["qwk"] == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("probs", "labels", "match"),
    [
        (torch.empty(0, 2), torch.empty(0, dtype=torch.int64), "at least one image"),
        (torch.rand(3, 2), torch.tensor([0, 1, 2]), r"\[0, 1\]"),
        (torch.rand(3, 2), torch.tensor([0.0, 1.0, 1.0]), "integer class indices"),
        (torch.rand(3, 2), torch.tensor([0, 1]), "matching probs"),
        (torch.rand(3), torch.tensor([0, 1, 1]), r"\[N, C\]"),
        (torch.tensor([[0.5, float("nan")]]), torch.tensor([0]), "NaN"),
    ],
)
def test_classification_metrics_rejects_malformed_input(probs, labels, match):
    with pytest.raises(DataError, match=match):
        classification_metrics(probs, labels)


# ----------------------------------------------------------------------------------------------------------------
# Configuration


def test_utility_config_round_trips_through_json_and_refuses_unknown_keys():
    cfg = UtilityConfig(epochs=5, seeds=(3, 1))
    back = UtilityConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    assert back.seeds == (3, 1)
    with pytest.raises(ConfigError, match="epoch"):
        UtilityConfig.from_dict({"epoch": 5})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"arch": "vgg"}, "unknown utility classifier architecture"),
        ({"seeds": ()}, "seeds"),
        ({"seeds": (0, 0)}, "distinct"),
        ({"seeds": (-1,)}, "seeds"),
        ({"seeds": 3}, "seeds"),
        ({"epochs": 0}, "epochs"),
        ({"batch": 1}, "batch"),
        ({"lr": 0.0}, "lr"),
        ({"augment": 5.0}, "augment"),
    ],
)
def test_utility_config_rejects_invalid_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        UtilityConfig(**kwargs)


# ----------------------------------------------------------------------------------------------------------------
# Training, prediction, losses


def test_train_classifier_is_repeatable_per_seed_and_differs_across_seeds(easy):
    (x, y), _, _ = easy
    cfg = UtilityConfig(epochs=1, batch=16, width=8, embed_dim=16)
    a, b, c = (train_classifier(x, y, 2, cfg, seed) for seed in (0, 0, 1))
    assert not a.training
    for (ka, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), ka
    assert any(not torch.equal(va, vc) for va, vc in zip(a.state_dict().values(), c.state_dict().values(), strict=True))


def test_predict_proba_and_per_sample_loss_agree_with_the_logits(easy_result, easy):
    _, _, (x, y) = easy
    model = easy_result.models["real"]
    model.train()  # the helpers run in eval mode and restore the caller's mode
    probs = predict_proba(model, x, batch=10)
    losses = per_sample_loss(model, x, y, batch=7)
    assert model.training
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert probs.shape == (64, 2)
    assert torch.allclose(probs.sum(1), torch.ones(64))
    assert torch.allclose(probs, logits.softmax(1), atol=1e-6)
    assert losses.shape == (64,)
    assert torch.allclose(losses, torch.nn.functional.cross_entropy(logits, y, reduction="none"), atol=1e-5)
    assert (losses >= 0).all()
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        per_sample_loss(model, x, torch.full((64,), 2))
    with pytest.raises(DataError, match="non-empty"):
        predict_proba(model, x[:0])


def test_train_classifier_accepts_resnet18():
    x, y = _halves(8, 0, res=16, channels=3)
    model = train_classifier(x, y, 2, UtilityConfig(arch="resnet18", epochs=1, batch=4, embed_dim=8), seed=0)
    assert predict_proba(model, x).shape == (8, 2)


# ----------------------------------------------------------------------------------------------------------------
# TSTR


def test_tstr_learns_the_easy_task_from_real_and_from_same_distribution_synthetic(easy_result):
    assert easy_result.sources == ("real", "synthetic")
    for source in ("real", "synthetic"):
        assert easy_result.mean[source]["accuracy"] > 0.9
        assert easy_result.mean[source]["auc"] > 0.9
        for row in easy_result.per_seed[source]:
            assert row["accuracy"] > 0.9
            assert row["n"] == 64
    assert set(easy_result.models) == {"real", "synthetic"}
    assert not easy_result.models["synthetic"].training
    assert easy_result.n_images == {"real": 64, "synthetic": 64, "real_test": 64}


def test_tstr_with_shuffled_synthetic_labels_is_near_chance(easy):
    real, (xs, ys), test = easy
    shuffled = (xs, ys[torch.randperm(len(ys), generator=torch.Generator().manual_seed(5))])
    result = tstr(None, shuffled, test, 2, TINY)
    assert result.sources == ("synthetic",)
    assert "real" not in result.models
    assert result.gap() == {}
    rows = result.per_seed["synthetic"]
    for row in rows:
        assert row["accuracy"] < 0.7
        assert row["balanced_accuracy"] < 0.7
    spread = [m for m in METRICS if len({r[m] for r in rows}) > 1]
    assert spread, "seeds should disagree on some metric, or the std check below is vacuous"
    for metric in spread:
        values = [r[metric] for r in rows]
        assert result.std["synthetic"][metric] == pytest.approx(np.std(values, ddof=1))
        assert result.mean["synthetic"][metric] == pytest.approx(np.mean(values))


def test_tstr_same_seeds_repeat_the_metrics_and_aggregate_mean_and_sample_std(easy_result, easy):
    again = tstr(*easy, 2, TINY)
    first, second = easy_result.to_dict(), again.to_dict()
    first.pop("seconds"), second.pop("seconds")
    assert first == second
    d = json.loads(json.dumps(easy_result.to_dict()))
    assert d["seeds"] == [0, 1]
    assert d["std_ddof"] == 1
    assert d["config"] == TINY.to_dict()
    for source in ("real", "synthetic"):
        rows = d["per_seed"][source]
        assert [r["seed"] for r in rows] == [0, 1]
        for metric in METRICS:
            values = [r[metric] for r in rows]
            assert d["mean"][source][metric] == pytest.approx(np.mean(values))
            assert d["std"][source][metric] == pytest.approx(np.std(values, ddof=1))
    assert d["gap_synthetic_minus_real"]["accuracy"] == pytest.approx(
        d["mean"]["synthetic"]["accuracy"] - d["mean"]["real"]["accuracy"]
    )


def test_tstr_single_seed_has_no_std_and_notes_missing_classes(easy):
    real, (xs, ys), test = easy
    cfg = UtilityConfig(epochs=1, batch=16, width=8, embed_dim=16, seeds=(4,))
    result = tstr(real, (xs[ys == 0], ys[ys == 0]), test, 2, cfg)
    assert result.std["synthetic"]["accuracy"] is None
    assert result.mean["synthetic"]["accuracy"] is not None
    assert any("synthetic has no image of class(es) [1]" in note for note in result.notes)
    assert result.models["synthetic"] is not None


def test_tstr_rejects_malformed_sets_before_training(easy):
    real, synthetic, test = easy
    x, y = synthetic
    bad = [
        ((real, (x[:0], y[:0]), test, 2), DataError, "synthetic is empty"),
        ((real, synthetic, (test[0][:0], test[1][:0]), 2), DataError, "real_test is empty"),
        ((real, (x, y + 1), test, 2), DataError, r"synthetic labels must lie in \[0, 1\]"),
        ((real, (x.expand(-1, 3, -1, -1), y), test, 2), DataError, "differ in channels or resolution"),
        ((real, _halves(64, 2, res=32), test, 2), DataError, "differ in channels or resolution"),
        ((real, (x * 255, y), test, 2), DataError, r"\[-1, 1\]"),
        ((real, (x, y.float()), test, 2), DataError, "integer class indices"),
        ((real, x, test, 2), DataError, "pair of tensors"),
        ((real, (x[:, 0], y), test, 2), DataError, r"\[N, C, R, R\]"),
        ((real, synthetic, test, 1), ConfigError, "n_classes"),
    ]
    for args, error, match in bad:
        with pytest.raises(error, match=match):
            tstr(*args, cfg=TINY)
