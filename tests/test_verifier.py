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
    calibration_split,
    equal_error,
    fit_verifier,
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


def test_calibration_and_best_scores_in_row_blocks_equal_the_whole_score_matrix(monkeypatch):
    """The attacker's calibration never holds the [images x patients] score matrix (it grows with the square of the
    patients), yet every figure is the one the whole matrix gives."""
    import latentwalk.evaluate.verifier as verifier_module
    from latentwalk.evaluate.privacy import auc_score

    monkeypatch.setattr(verifier_module, "SCORE_ROWS", 2)  # 5 calibration images: blocks of 2, 2 and 1
    g = torch.Generator().manual_seed(1)
    x = torch.rand(15, 1, 32, 32, generator=g) * 2 - 1
    patients = [f"p{i // 3}" for i in range(15)]
    ver, attacker = fit_verifier(x, patients, VerifierConfig(epochs=1, width=8, embed_dim=16))
    pid = torch.tensor([sorted(set(patients)).index(p) for p in patients])
    held, _ = calibration_split(pid)
    cal = ver.patient_scores(x[held], chunk=2)  # [5, 5]: the same 2-query passes as the blocks
    own, rows = pid[held], torch.arange(len(held))
    others = cal.clone()
    others[rows, own] = float("-inf")
    present, absent = cal.max(1).values.numpy(), others.max(1).values.numpy()
    eer, threshold = equal_error(present, absent)
    assert attacker["verification_auc"] == round(auc_score(cal[rows, own], cal[torch.isfinite(others)]), 6)
    assert attacker["precision_at_1"] == round(float((cal.argmax(1) == own).float().mean()), 6)
    assert (attacker["eer"], ver.threshold) == (round(eer, 6), threshold)
    assert attacker["member_match_rate"] == round(float((present >= threshold).mean()), 6)
    assert torch.equal(ver.best_scores(x), ver.patient_scores(x, chunk=2).max(1).values)
