"""Fidelity metrics: FID against pytorch-fid, KID and PRDC against brute-force references, offline Inception."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from latentwalk.errors import ConfigError, DataError, MissingWeightsError
from latentwalk.evaluate import fidelity
from latentwalk.evaluate.fidelity import (
    INCEPTION_WEIGHTS,
    InceptionFeatures,
    features,
    fidelity_report,
    frechet_distance,
    kernel_inception_distance,
    prdc,
)


def _gaussians(seed: int, n: int, m: int, d: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Two sets from different Gaussians: ``a ~ N(0, I)``, ``b ~ N(shift, A A^T)``."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, d))
    mix = np.eye(d) + 0.3 * rng.normal(size=(d, d))
    b = rng.normal(size=(m, d)) @ mix + shift
    return a, b


# ---------------------------------------------------------------------------------------------------------------
# FID.


@pytest.mark.filterwarnings("ignore:The `disp` argument:DeprecationWarning")  # SciPy >= 1.16, inside pytorch-fid
def test_frechet_distance_equals_pytorch_fid():
    from pytorch_fid.fid_score import calculate_frechet_distance

    a, b = _gaussians(0, 200, 150, 16, shift=0.4)
    expected = calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_matches_eigenvalue_formula():
    # Tr((S1 S2)^(1/2)) = sum of square roots of the (real, non-negative) eigenvalues of S1 S2.
    a, b = _gaussians(1, 300, 250, 8, shift=-0.2)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eig = np.linalg.eigvals(s1 @ s2).real
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eig).sum()
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_is_zero_for_identical_sets_and_grows_with_mean_shift():
    a, _ = _gaussians(2, 200, 2, 16)
    assert abs(frechet_distance(a, a)) < 1e-8
    delta = np.linspace(-1.0, 1.0, 16)
    # Equal covariances: FID = ||delta||^2 exactly.
    assert frechet_distance(a, a + delta) == pytest.approx(float(delta @ delta), rel=1e-6)
    assert frechet_distance(a, a + 2 * delta) == pytest.approx(4 * float(delta @ delta), rel=1e-6)


def test_frechet_distance_rejects_bad_inputs():
    a, b = _gaussians(3, 20, 20, 4)
    with pytest.raises(DataError, match="at least 2"):
        frechet_distance(a[:1], b)
    with pytest.raises(DataError, match="different feature sizes"):
        frechet_distance(a, b[:, :3])
    with pytest.raises(DataError, match="2-D"):
        frechet_distance(a[:, :, None], b)
    a[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        frechet_distance(a, b)


def test_frechet_distance_warns_when_samples_do_not_exceed_dimension():
    a, b = _gaussians(4, 40, 40, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frechet_distance(a, b)  # n > D: no warning
    with pytest.warns(UserWarning, match="biased"):
        frechet_distance(a[:16], b[:16])


# ---------------------------------------------------------------------------------------------------------------
# KID.


def _cubic(x: np.ndarray, y: np.ndarray) -> float:
    return (float(x @ y) / x.shape[0] + 1.0) ** 3


def _mmd2_brute_force(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012, eq. 3) with explicit loops over pairs."""
    m = len(x)
    xx = sum(_cubic(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(_cubic(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    xy = sum(_cubic(x[i], y[j]) for i, j in itertools.product(range(m), range(m))) / (m * m)
    return xx + yy - 2 * xy


def test_kid_on_full_sets_equals_brute_force_mmd2():
    a, b = _gaussians(5, 30, 30, 8, shift=0.3)
    out = kernel_inception_distance(a, b, subsets=1, subset_size=30)
    assert out["mean"] == pytest.approx(_mmd2_brute_force(a, b), rel=1e-10)
    assert out["std"] == 0.0


def test_kid_subsets_are_drawn_as_torch_fidelity_draws_them():
    a, b = _gaussians(6, 30, 40, 6, shift=0.2)
    rng = np.random.RandomState(7)
    values = []
    for _ in range(3):
        ia = rng.choice(30, 12, replace=False)
        ib = rng.choice(40, 12, replace=False)
        values.append(_mmd2_brute_force(a[ia], b[ib]))
    out = kernel_inception_distance(a, b, subsets=3, subset_size=12, seed=7)
    assert out["mean"] == pytest.approx(np.mean(values), rel=1e-10)
    assert out["std"] == pytest.approx(np.std(values), rel=1e-8)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_shifted_ones():
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    same = kernel_inception_distance(a, b, subsets=20, subset_size=200)
    shifted = kernel_inception_distance(a, b + 0.5, subsets=20, subset_size=200)
    assert abs(same["mean"]) < 0.01
    assert shifted["mean"] > 0.1
    assert shifted["mean"] > 10 * (abs(same["mean"]) + same["std"])


def test_kid_is_seeded_and_caps_the_subset_size():
    a, b = _gaussians(9, 30, 50, 4)
    first = kernel_inception_distance(a, b, subsets=5, subset_size=20, seed=3)
    assert kernel_inception_distance(a, b, subsets=5, subset_size=20, seed=3) == first
    assert kernel_inception_distance(a, b, subsets=5, subset_size=20, seed=4)["mean"] != first["mean"]
    assert kernel_inception_distance(a, b, subsets=2)["subset_size"] == 30
    with pytest.raises(ConfigError):
        kernel_inception_distance(a, b, subset_size=1)
    with pytest.raises(ConfigError):
        kernel_inception_distance(a, b, subsets=0)


# ---------------------------------------------------------------------------------------------------------------
# PRDC.


def _prdc_brute_force(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """Naeem et al. 2020 by the definitions, with explicit loops and sorting."""

    def dist(u, v):
        return math.sqrt(sum((p - q) ** 2 for p, q in zip(u, v, strict=True)))

    def radius(x, i):  # distance to the k-th nearest other point of the same set
        return sorted(dist(x[i], x[j]) for j in range(len(x)) if j != i)[k - 1]

    r_real = [radius(real, i) for i in range(len(real))]
    r_fake = [radius(fake, j) for j in range(len(fake))]
    d = [[dist(real[i], fake[j]) for j in range(len(fake))] for i in range(len(real))]
    n, m = len(real), len(fake)
    precision = sum(any(d[i][j] < r_real[i] for i in range(n)) for j in range(m)) / m
    recall = sum(any(d[i][j] < r_fake[j] for j in range(m)) for i in range(n)) / n
    density = sum(d[i][j] < r_real[i] for i in range(n) for j in range(m)) / (k * m)
    coverage = sum(min(d[i]) < r_real[i] for i in range(n)) / n
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


@pytest.mark.parametrize("chunk", [1024, 7])
def test_prdc_matches_brute_force_reference(monkeypatch, chunk):
    monkeypatch.setattr(fidelity, "_PRDC_CHUNK", chunk)  # 7: several blocks, last one partial
    rng = np.random.default_rng(10)
    real = rng.normal(size=(40, 5))
    fake = np.concatenate([rng.normal(size=(30, 5)) * 0.7, rng.normal(size=(20, 5)) + 2.5])
    for k in (1, 3, 5):
        got = prdc(real, fake, k=k)
        expected = _prdc_brute_force(real, fake, k)
        assert 0 < expected["precision"] < 1 and 0 < expected["coverage"] < 1  # a non-trivial case
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, abs=1e-9), (k, key)


def test_prdc_of_identical_sets_is_perfect_and_of_distant_sets_is_zero():
    rng = np.random.default_rng(11)
    real = rng.normal(size=(60, 8))
    same = prdc(real, real.copy(), k=5)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    assert same["density"] == pytest.approx(1.0)
    far = prdc(real, real + 100.0, k=5)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_needs_more_than_k_samples():
    rng = np.random.default_rng(12)
    with pytest.raises(DataError, match="at least 6"):
        prdc(rng.normal(size=(5, 3)), rng.normal(size=(20, 3)), k=5)
    with pytest.raises(ConfigError):
        prdc(rng.normal(size=(20, 3)), rng.normal(size=(20, 3)), k=0)


# ---------------------------------------------------------------------------------------------------------------
# features() and the report.


class _Embedder(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.Dropout(0.5))

    def embed(self, x):
        return self.body(x)

    def forward(self, x):
        return self.body(x)[:, :3, None]  # [B, 3, 1]: trailing dims get flattened


def test_features_runs_in_eval_mode_without_grad_and_restores_the_mode():
    torch.manual_seed(0)
    net = _Embedder().train()
    with torch.no_grad():
        net.body[2].running_mean.fill_(0.5)  # eval-mode BN differs visibly from train-mode BN
    x = torch.randn(10, 1, 4, 4)
    got = features(x, net.embed, batch=3)
    assert net.training
    assert got.dtype == torch.float64 and got.device.type == "cpu" and got.shape == (10, 8)
    assert not got.requires_grad
    with torch.no_grad():
        expected = net.eval().body(x).double()
    torch.testing.assert_close(got, expected)
    assert features(x, net, batch=4).shape == (10, 3)
    assert not net.training  # the caller's eval() above is kept
    assert torch.equal(features(x, lambda b: b.flatten(1), batch=4), x.flatten(1).double())


def test_features_rejects_bad_extractor_output():
    with pytest.raises(ConfigError, match=r"\[B, D\]"):
        features(torch.zeros(4, 2), lambda b: b[:1])
    with pytest.raises(DataError):
        features(torch.zeros(0, 2), lambda b: b)


def test_fidelity_report_is_labelled_and_consistent_with_the_metrics():
    a, b = _gaussians(13, 50, 40, 6, shift=0.3)
    rep = fidelity_report(a, b, extractor_name="toy", kid_subsets=4, seed=1, k=3)
    assert rep["extractor"] == "toy" and rep["n_real"] == 50 and rep["n_fake"] == 40 and rep["dim"] == 6
    assert rep["fid"] == pytest.approx(frechet_distance(a, b))
    assert rep["kid"] == kernel_inception_distance(a, b, subsets=4, seed=1)
    assert rep["prdc"] == prdc(a, b, k=3)
    assert any("KID subsets of 40" in note for note in rep["notes"])
    with pytest.raises(ConfigError, match="extractor_name"):
        fidelity_report(a, b, extractor_name=" ")


# ---------------------------------------------------------------------------------------------------------------
# Inception, offline.


def test_inception_features_without_weights_raises_missing_weights(monkeypatch, tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "torch").mkdir()
    monkeypatch.setenv("LATENTWALK_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MissingWeightsError, match=INCEPTION_WEIGHTS):
        InceptionFeatures()


@pytest.fixture(scope="module")
def random_inception_file(tmp_path_factory):
    """pytorch-fid's FID Inception architecture with seeded random weights, saved under the canonical name."""
    import pytorch_fid.inception as pfi
    from torchvision.models.inception import Inception3

    with pytest.MonkeyPatch.context() as mp, torch.random.fork_rng():
        torch.manual_seed(0)
        mp.setattr(pfi, "load_state_dict_from_url", lambda *args, **kwargs: {})  # no download, no weights
        mp.setattr(Inception3, "load_state_dict", lambda self, *args, **kwargs: None)  # keep the random init
        net = pfi.fid_inception_v3()
        for module in net.modules():
            if isinstance(module, nn.Conv2d):  # keep activations at unit scale through ~100 layers
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("inception") / INCEPTION_WEIGHTS
    torch.save(net.state_dict(), path)
    return path


def test_inception_features_from_a_local_file(random_inception_file):
    import pytorch_fid.inception as pfi

    loader = pfi.load_state_dict_from_url
    ext = InceptionFeatures(random_inception_file, verify_hash=False)
    assert pfi.load_state_dict_from_url is loader  # restored after construction
    gen = torch.Generator().manual_seed(1)
    gray = torch.rand(2, 1, 64, 64, generator=gen) * 2 - 1
    rgb = torch.rand(2, 3, 64, 64, generator=gen) * 2 - 1

    f_gray, f_rgb = ext(gray), ext(rgb, batch=1)
    assert f_gray.shape == f_rgb.shape == (2, 2048)
    assert f_gray.dtype == torch.float64 and f_gray.device.type == "cpu"
    assert f_gray.abs().max() > 1e-3 and not torch.equal(f_gray[0], f_gray[1])
    assert torch.equal(ext(gray), f_gray)  # deterministic
    torch.testing.assert_close(ext(gray.repeat(1, 3, 1, 1)), f_gray, rtol=1e-6, atol=0)

    # [-1, 1] reaches pytorch-fid's blocks unchanged: resize to 299, no rescaling, then the four blocks.
    with torch.no_grad():
        x = F.interpolate(rgb, size=(299, 299), mode="bilinear", align_corners=False)
        for block in ext.model.blocks:
            x = block(x)
    torch.testing.assert_close(f_rgb, x.flatten(1).double(), rtol=1e-4, atol=1e-6)

    with pytest.raises(DataError, match=r"\[-1, 1\]"):
        ext(rgb * 127.5 + 127.5)


def test_inception_features_refuses_wrong_or_unverified_files(random_inception_file, tmp_path):
    with pytest.raises(DataError, match="SHA-256"):
        InceptionFeatures(random_inception_file)  # random weights do not carry the canonical hash
    bad = tmp_path / INCEPTION_WEIGHTS
    torch.save({"fc.weight": torch.zeros(1)}, bad)
    with pytest.raises(DataError, match="does not fit"):
        InceptionFeatures(bad, verify_hash=False)
