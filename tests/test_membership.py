"""Membership inference in the memorising regime: stable confidence logits, and attacks that see memorisation."""

from __future__ import annotations

import torch
from torch import nn

from latentwalk.evaluate.membership import attack, confidence_logits, fit_shadows, memorising_recipe


def test_confidence_logits_are_log_odds_and_stay_finite():
    model = nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.copy_(torch.eye(3, 2) * 200.0)  # logits up to 200: the softmax rounds to exactly 1 in float32
        model.bias.zero_()
    x = torch.tensor([[0.01, -0.02], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([2, 0, 1])
    phi = confidence_logits(model, x, y)
    p = torch.softmax(model(x).double(), 1)[torch.arange(3), y]
    torch.testing.assert_close(phi[0], torch.log(p[0] / (1 - p[0])))
    assert torch.isfinite(phi).all() and phi[1] > 190 and phi[2] > 190


def test_attacks_see_a_memorised_training_set_and_not_an_unrelated_one():
    from latentwalk.evaluate.utility import train_classifier

    g = torch.Generator().manual_seed(0)
    x = torch.rand(48, 1, 16, 16, generator=g) * 2 - 1  # noise images with random labels: only memory fits them
    y = torch.randint(0, 2, (48,), generator=g)
    members, nonmembers = (x[:24], y[:24]), (x[24:], y[24:])
    recipe = memorising_recipe(40, 0)
    shadows = fit_shadows(x, y, 2, 2, 40, 0, "cpu", False)
    memorised = attack(train_classifier(*members, 2, recipe, 0), members, nonmembers, shadows)
    assert memorised["loss"]["auc"] > 0.9 and memorised["calibrated"]["auc"] > 0.85
    other = torch.rand(24, 1, 16, 16, generator=g) * 2 - 1, torch.randint(0, 2, (24,), generator=g)
    unrelated = attack(train_classifier(*other, 2, recipe, 0), members, nonmembers, shadows)
    assert unrelated["loss"]["auc"] < 0.7 and unrelated["calibrated"]["auc"] < 0.7
