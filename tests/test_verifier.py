"""The independent verification attacker: its equal-error threshold, its errors, and that it repeats bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentwalk.errors import ConfigError, DataError
from latentwalk.evaluate.verifier import (
    AUGMENT_COLOUR,
    AUGMENT_GRAY,
    SiameseVerifier,
    VerifierConfig,
    augment_strength,
    equal_error,
    train_verifier,
    verify,
)


def test_equal_error_rate_and_threshold():
    pos, neg = np.array([0.6, 0.7, 0.8, 0.9]), np.array([0.1, 0.2, 0.3, 0.65])
    eer, t = equal_error(pos, neg)  # at t = 0.65 one positive of four is missed and one negative of four accepted
    assert (eer, t) == (0.25, 0.65)
    eer, t = equal_error(np.array([0.9, 0.8]), np.array([0.1, 0.2]))
    assert eer == 0.0 and 0.2 < t <= 0.8  # separable: no error at the threshold


def test_siamese_scores_are_symmetric_and_identical_images_score_the_bias():
    net = SiameseVerifier(1, 32, width=8, embed_dim=16).eval()
    a, b = torch.rand(3, 1, 32, 32) * 2 - 1, torch.rand(3, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(net(a, b), net(b, a))
        torch.testing.assert_close(net(a, a), net.head.bias.expand(3))


def test_augmentation_defaults_by_channels_and_an_explicit_strength_wins():
    assert augment_strength(VerifierConfig(), 1) == AUGMENT_GRAY
    assert augment_strength(VerifierConfig(), 3) == AUGMENT_COLOUR != AUGMENT_GRAY
    assert augment_strength(VerifierConfig(augment=0.2), 3) == augment_strength(VerifierConfig(augment=0.2), 1) == 0.2
    assert VerifierConfig.from_dict({"augment": None}).augment is None
    with pytest.raises(ConfigError, match="augment"):
        VerifierConfig(augment=-0.1)


def test_errors():
    with pytest.raises(ConfigError, match="verifier epochs"):
        VerifierConfig(epochs=0)
    with pytest.raises(ConfigError, match="verifier lr"):
        VerifierConfig(lr=float("nan"))
    x = torch.zeros(4, 1, 32, 32)
    with pytest.raises(DataError, match="two or more images"):
        train_verifier(x, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(DataError, match="calibrate"):  # one patient with two images: nothing to calibrate with
        verify(x, ["a", "a", "b", "c"], {}, VerifierConfig(epochs=1))


def test_the_attacker_repeats_and_leaves_the_global_rng_alone():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 1, 32, 32, generator=g) * 2 - 1
    patients = [f"p{i // 3}" for i in range(12)]
    cfg = VerifierConfig(epochs=2, width=8, embed_dim=16)
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    first = verify(x, patients, {"q": x[:4]}, cfg)
    assert torch.equal(torch.rand(1), expected)  # the caller's random stream is not consumed
    assert verify(x, patients, {"q": x[:4]}, cfg) == first
    assert first["attacker"]["calibration_images"] == 4 and first["attacker"]["gallery_images"] == 8
    assert set(first["q"]) == {"images", "match_rate", "mean_best_score", "max_best_score"}
