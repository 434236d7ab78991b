"""Distances against independent references: the lpips package, scipy's cdist, numpy, scikit-image's SSIM."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from latentwalk.distances import (
    LpipsEmbedding,
    nearest,
    nearest_in_matrix,
    pairwise_sq_dists,
    ssim,
    ssim_block_images,
    ssim_matrix,
    ssim_nearest,
    ssim_nearest_many,
)
from latentwalk.errors import ConfigError, DataError

RES = 32


def _build_lpips(net: str, seed: int = 0, **kwargs):
    """``lpips.LPIPS`` with a seeded random backbone and the package's bundled linear weights (no download)."""
    import lpips

    with torch.random.fork_rng(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's deprecation of `pretrained=`
        torch.manual_seed(seed)
        return lpips.LPIPS(pnet_rand=True, net=net, verbose=False, **kwargs)


@pytest.fixture(scope="module", params=["alex", "vgg", "squeeze"])
def lpips_net(request):
    return _build_lpips(request.param)


@pytest.fixture(scope="module")
def squeeze_net():
    return _build_lpips("squeeze")


def _structured(channels: int, res: int = RES) -> torch.Tensor:
    """Four structured images in [-1, 1]: a ramp, a disk, a checkerboard, and the ramp plus a little noise."""
    g = torch.Generator().manual_seed(7)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, res), torch.linspace(-1, 1, res), indexing="ij")
    ramp = xx
    disk = torch.where(xx**2 + yy**2 < 0.4, 0.8, -0.6)
    checker = ((torch.arange(res)[:, None] // 4 + torch.arange(res)[None] // 4) % 2).float() * 1.6 - 0.8
    noisy = (ramp + 0.1 * torch.randn(res, res, generator=g)).clamp(-1, 1)
    imgs = torch.stack([ramp, disk, checker, noisy])[:, None]  # [4, 1, R, R]
    if channels == 3:
        imgs = torch.cat([imgs, imgs.flip(-1), -imgs], dim=1)  # [4, 3, R, R], channels differ
    return imgs


def _images(channels: int, n_random: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    rand = torch.rand(n_random, channels, RES, RES, generator=g) * 2 - 1
    return torch.cat([rand, _structured(channels)])  # [n_random + 4, C, R, R]


# ---------------------------------------------------------------------------------------------------------------
# LPIPS embedding.


@pytest.mark.parametrize("channels", [1, 3])
def test_lpips_embedding_distances_equal_lpips_package_for_all_pairs(lpips_net, channels):
    x = _images(channels)  # [8, C, R, R]
    n = x.shape[0]
    emb = LpipsEmbedding(lpips_net)
    with torch.no_grad():
        e = emb(x).double()  # [8, D]
        x3 = x.repeat(1, 3, 1, 1) if channels == 1 else x
        ref = lpips_net(x3.repeat_interleave(n, 0), x3.repeat(n, 1, 1, 1)).flatten().view(n, n).double()
    ours = ((e[:, None] - e[None]) ** 2).sum(-1)  # [8, 8]
    assert ref.max() > 1e-2  # the comparison is not between near-zero numbers
    assert (ours - ref).abs().max() <= 1e-5


def test_lpips_embedding_treats_gray_as_repeated_rgb(squeeze_net):
    x = _images(1)
    emb = LpipsEmbedding(squeeze_net)
    with torch.no_grad():
        torch.testing.assert_close(emb(x), emb(x.repeat(1, 3, 1, 1)), rtol=0, atol=0)


def test_lpips_embed_in_chunks_equals_one_forward_without_grad(squeeze_net):
    x = _images(3)
    emb = LpipsEmbedding(squeeze_net)
    whole = emb(x)
    chunked = emb.embed(x, batch=3)
    assert not chunked.requires_grad
    assert chunked.dtype == torch.float32 and chunked.shape == whole.shape
    torch.testing.assert_close(chunked, whole.detach(), rtol=1e-6, atol=1e-7)
    assert emb.embed(x[:0]).shape == (0, whole.shape[1])


def test_lpips_embedding_forward_keeps_gradients(squeeze_net):
    x = _images(3)[:2].requires_grad_(True)
    emb = LpipsEmbedding(squeeze_net)
    e = emb(x)
    ((e[0] - e[1]) ** 2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("shape", [(2, 2, RES, RES), (2, 4, RES, RES), (3, RES, RES), (2, 1, 3, RES, RES)])
def test_lpips_embedding_rejects_images_that_are_not_gray_or_rgb_nchw(squeeze_net, shape):
    with pytest.raises(ConfigError, match=r"\[N, C, H, W\]"):
        LpipsEmbedding(squeeze_net)(torch.zeros(shape))


def test_lpips_embedding_rejects_nets_it_cannot_express():
    with pytest.raises(ConfigError, match="lpips.LPIPS"):
        LpipsEmbedding(torch.nn.Conv2d(3, 1, 1))
    with pytest.raises(ConfigError, match="linear layers"):
        LpipsEmbedding(_build_lpips("squeeze", lpips=False))
    net = _build_lpips("squeeze")
    with torch.no_grad():
        net.lins[2].model[-1].weight[0, 0] = -0.5
    with pytest.raises(ConfigError, match="negative weights"):
        LpipsEmbedding(net)


# ---------------------------------------------------------------------------------------------------------------
# Squared distances and nearest neighbours.


def _rows(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_pairwise_sq_dists_matches_brute_force_in_chunks():
    a, b = _rows(7, 50, 0), _rows(9, 50, 1)
    ref = cdist(a.double().numpy(), b.double().numpy(), "sqeuclidean")
    for chunk in (1, 3, 4096):
        out = pairwise_sq_dists(a, b, chunk=chunk)
        assert out.shape == (7, 9) and out.dtype == torch.float32
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-6)


def test_pairwise_sq_dists_is_exact_for_near_duplicates_far_from_the_origin():
    # |a|^2 ~ 1e6 and |a - b|^2 ~ 1e-4: float32 |a|^2 + |b|^2 - 2ab would be off by ~0.1, all noise
    base = 300.0 + _rows(4, 64, 2)
    b = base + 1e-3 * _rows(4, 64, 3)
    ref = ((base.double()[:, None] - b.double()[None]) ** 2).sum(-1).numpy()
    out = pairwise_sq_dists(base, b).double().numpy()
    np.testing.assert_allclose(np.diag(out), np.diag(ref), rtol=1e-5)
    np.testing.assert_allclose(out, ref, rtol=1e-5)
    assert pairwise_sq_dists(base, base).diagonal().abs().max() <= 1e-9


def test_pairwise_sq_dists_matches_direct_computation_on_lpips_embeddings(squeeze_net):
    with torch.no_grad():
        e = LpipsEmbedding(squeeze_net)(_images(3))
    direct = ((e[:, None] - e[None]) ** 2).sum(-1)  # float32, the direct form
    out = pairwise_sq_dists(e, e, chunk=3)
    off = ~torch.eye(e.shape[0], dtype=torch.bool)
    assert ((out - direct).abs() / direct)[off].max() <= 1e-5


def test_pairwise_sq_dists_rejects_bad_inputs():
    a = _rows(3, 5, 0)
    with pytest.raises(ConfigError, match="same row length"):
        pairwise_sq_dists(a, _rows(3, 6, 1))
    with pytest.raises(ConfigError, match=r"\[N, D\]"):
        pairwise_sq_dists(a[0], a)
    with pytest.raises(ConfigError, match="floating point"):
        pairwise_sq_dists(a.long(), a.long())
    with pytest.raises(ConfigError, match="chunk"):
        pairwise_sq_dists(a, a, chunk=0)
    bad = a.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(DataError, match="row 1 of a contains NaN"):
        pairwise_sq_dists(bad, a)
    bad[1, 2] = float("inf")
    with pytest.raises(DataError, match="row 1 of b contains NaN or infinite"):
        pairwise_sq_dists(a, bad, chunk=1)


def test_pairwise_sq_dists_and_nearest_leave_float64_inputs_unchanged():
    a, b = _rows(3, 5, 0).double(), _rows(4, 5, 1).double() + 10
    a0, b0 = a.clone(), b.clone()
    assert pairwise_sq_dists(a, b).dtype == torch.float64
    nearest(a, b, k=2)
    assert torch.equal(a, a0) and torch.equal(b, b0)


def _brute_nearest(a, b, k, metric, a_groups=None, b_groups=None):
    d = cdist(a.double().numpy(), b.double().numpy(), metric)
    if a_groups is not None:
        d[np.asarray(a_groups)[:, None] == np.asarray(b_groups)[None, :]] = np.inf
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, idx, axis=1), idx


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "cosine"])
@pytest.mark.parametrize("k", [1, 3])
def test_nearest_matches_brute_force_argsort(metric, k):
    a, b = _rows(11, 16, 4), _rows(13, 16, 5)
    ref_d, ref_i = _brute_nearest(a, b, k, metric)
    for chunk in (4, 1024):
        d, i = nearest(a, b, k=k, metric=metric, chunk=chunk)
        assert d.shape == i.shape == (11, k) and i.dtype == torch.int64
        np.testing.assert_array_equal(i.numpy(), ref_i)
        np.testing.assert_allclose(d.numpy(), ref_d, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("k", [1, 2])
def test_nearest_excludes_pairs_in_the_same_group(k):
    a, b = _rows(10, 8, 6), _rows(12, 8, 7)
    a_groups = [f"p{i % 4}" for i in range(10)]
    b_groups = [f"p{i % 3}" for i in range(12)]
    ref_d, ref_i = _brute_nearest(a, b, k, "sqeuclidean", a_groups, b_groups)
    d, i = nearest(a, b, k=k, a_groups=a_groups, b_groups=b_groups, chunk=5)
    np.testing.assert_array_equal(i.numpy(), ref_i)
    np.testing.assert_allclose(d.numpy(), ref_d, rtol=1e-5)
    assert all(a_groups[r] != b_groups[c] for r in range(10) for c in i[r].tolist())
    unrestricted = nearest(a, b, k=k).index
    assert (unrestricted != i).any()  # the exclusion changed something


def test_nearest_finds_a_copy_unless_it_is_the_same_patient():
    b = _rows(6, 10, 8)
    a = b[[4]].clone()
    d, i = nearest(a, b)
    assert i.item() == 4 and d.item() <= 1e-9
    d, i = nearest(a, b, a_groups=["x"], b_groups=["u", "v", "w", "y", "x", "z"])
    assert i.item() != 4 and d.item() > 1.0


def test_nearest_breaks_ties_towards_the_lower_index():
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [5.0, 5.0]])
    _, i = nearest(torch.tensor([[0.0, 1.0]]), b, k=3, chunk=2)
    assert i.tolist() == [[1, 2, 3]]


def test_nearest_raises_if_fewer_than_k_rows_outside_the_group():
    a, b = _rows(3, 4, 9), _rows(4, 4, 10)
    with pytest.raises(DataError, match="row 1 of a has only 1 rows of b outside its group, fewer than k=2"):
        nearest(a, b, k=2, a_groups=["p", "q", "p"], b_groups=["p", "q", "q", "q"])


def test_nearest_rejects_bad_arguments():
    a, b = _rows(3, 4, 11), _rows(4, 4, 12)
    with pytest.raises(ConfigError, match="only 4 rows"):
        nearest(a, b, k=5)
    with pytest.raises(ConfigError, match="k must be"):
        nearest(a, b, k=0)
    with pytest.raises(ConfigError, match='unknown metric "l1"'):
        nearest(a, b, metric="l1")
    with pytest.raises(ConfigError, match="together"):
        nearest(a, b, a_groups=["p"] * 3)
    with pytest.raises(ConfigError, match="b_groups has 3 entries for 4 rows"):
        nearest(a, b, a_groups=["p"] * 3, b_groups=["q"] * 3)
    zero = b.clone()
    zero[2] = 0
    with pytest.raises(DataError, match="row 2 of b is all zeros"):
        nearest(a, zero, metric="cosine")
    with pytest.raises(DataError, match="row 2 of a is all zeros"):
        nearest(zero[:3], b, metric="cosine", chunk=2)
    nan = b.clone()
    nan[3, 0] = float("nan")
    for metric in ("sqeuclidean", "cosine"):
        with pytest.raises(DataError, match="row 3 of b contains NaN"):
            nearest(a, nan, metric=metric)


# ---------------------------------------------------------------------------------------------------------------
# SSIM.


def _skimage_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> float:
    from skimage.metrics import structural_similarity

    return structural_similarity(
        x.double().numpy(),
        y.double().numpy(),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=data_range,
        channel_axis=0,
    )


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matrix_matches_skimage_for_all_pairs(channels):
    x = _images(channels, n_random=2, seed=1)  # [6, C, R, R]
    g = torch.Generator().manual_seed(2)
    y = torch.cat([x[[5, 1]] + 0.2 * torch.randn(2, channels, RES, RES, generator=g), x[[3]]]).clamp(-1, 1)
    ref = np.array([[_skimage_ssim(xi, yj) for yj in y] for xi in x])
    assert ref.max() - ref.min() > 0.5  # pairs from unrelated to identical
    for chunk in (1, 4, 64):
        out = ssim_matrix(x, y, chunk=chunk)
        assert out.shape == (6, 3) and out.dtype == torch.float64
        np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-5)


def test_ssim_nearest_matches_skimage_and_skips_same_group_pairs():
    x = _images(1, n_random=2, seed=4)  # [6, 1, R, R]
    ref = np.array([[1.0 - _skimage_ssim(xi, xj) for xj in x] for xi in x])  # [6, 6]
    d, i = ssim_nearest(x, x)
    assert i.tolist() == list(range(6)) and d.abs().max() < 1e-5  # each image is its own nearest
    groups = ["p0", "p0", "p1", "p1", "p2", "p2"]
    same = np.array([[a == b for b in groups] for a in groups])
    masked = np.where(same, np.inf, ref)
    d, i = ssim_nearest(x, x, a_groups=groups, b_groups=groups)
    assert i.tolist() == masked.argmin(axis=1).tolist()
    assert all(groups[j] != groups[k] for k, j in enumerate(i.tolist()))
    np.testing.assert_allclose(d.numpy(), masked.min(axis=1), rtol=0, atol=1e-5)
    with pytest.raises(ConfigError, match="given together"):
        ssim_nearest(x, x, a_groups=groups)


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_nearest_in_blocks_equals_the_full_matrix_minimum_with_groups_and_ties(channels):
    """The blocked search never holds N x M, yet gives the bits of the full matrix's row minima: same distances, the
    first of tied columns (duplicates in b, also across blocks), inf and index 0 for a row with no other group."""
    g = torch.Generator().manual_seed(7)
    a = torch.rand(7, channels, RES, RES, generator=g) * 2 - 1
    y = torch.rand(4, channels, RES, RES, generator=g) * 2 - 1
    b = torch.cat([y, y[[2, 0]], a[[1]], y[[2]]])  # [8, C, R, R]: exact duplicates tie; b[6] is a copy of a[1]
    a_groups = ["p0", "p1", "p1", "p2", "p3", "p4", "p9"]
    b_groups = ["p0", "p2", "p3", "p1", "p4", "p0", "p3", "p2"]
    b_all = ["p9"] * len(b_groups)  # with these, row 6 (group p9) has no candidate at all
    full = 1.0 - ssim_matrix(a, b)  # [7, 8]
    ref_plain = nearest_in_matrix(full)
    ref_grouped = nearest_in_matrix(full, a_groups=a_groups, b_groups=b_groups)
    ref_none = nearest_in_matrix(full, a_groups=a_groups, b_groups=b_all)
    assert torch.isinf(ref_none[0][6]) and int(ref_none[1][6]) == 0
    assert int(ref_plain[1][1]) == 6  # the copy
    for chunk in (1, 2, 3, 5, None):
        for ref, groups in ((ref_plain, None), (ref_grouped, (a_groups, b_groups)), (ref_none, (a_groups, b_all))):
            kwargs = {} if groups is None else {"a_groups": groups[0], "b_groups": groups[1]}
            d, i = ssim_nearest(a, b, chunk=chunk, **kwargs)
            assert torch.equal(d, ref[0]) and torch.equal(i, ref[1]), (chunk, groups)


def test_ssim_nearest_many_equals_separate_searches_and_propagates_nan_like_torch_min():
    x = _images(1, n_random=3, seed=5)  # [7, 1, R, R]
    x = torch.cat([x, x[[2]]])  # a duplicate: ties between rows 2 and 7
    patients = ["a", "a", "b", "b", "c", "c", "d", "d"]
    rows = range(len(x))
    many = ssim_nearest_many(x, x, [(patients, patients), (rows, rows), None], chunk=3)
    assert len(many) == 3
    for (d, i), groups in zip(many, [(patients, patients), (rows, rows), None], strict=True):
        kwargs = {} if groups is None else {"a_groups": groups[0], "b_groups": groups[1]}
        ref = nearest_in_matrix(1.0 - ssim_matrix(x, x), **kwargs)
        assert torch.equal(d, ref[0]) and torch.equal(i, ref[1])
    assert many[1][1][2] == 7 and many[1][1][7] == 2  # the nearest *other* image of a duplicate is its twin
    nan = x.clone()
    nan[5, 0, 3, 3] = float("nan")
    d, i = ssim_nearest(x[:2], nan, chunk=2)
    ref = nearest_in_matrix(1.0 - ssim_matrix(x[:2], nan))
    torch.testing.assert_close(d, ref[0], equal_nan=True, rtol=0, atol=0)
    assert torch.equal(i, ref[1])


def test_ssim_nearest_default_block_is_about_256_mb_and_bad_chunks_are_refused():
    assert ssim_block_images((1, 64, 64)) == 1365 and ssim_block_images((3, 256, 256)) == 28
    x = _images(1)
    with pytest.raises(ConfigError, match="chunk"):
        ssim_nearest(x, x, chunk=0)
    with pytest.raises(ConfigError, match="groupings"):
        ssim_nearest_many(x, x, [])


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_of_pairs_matches_skimage_on_non_square_images(channels):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, channels, 11, 20, generator=g) * 2 - 1  # the smallest height the window allows
    y = (x + 0.3 * torch.randn(3, channels, 11, 20, generator=g)).clamp(-1, 1)
    ref = np.array([_skimage_ssim(a, b) for a, b in zip(x, y, strict=True)])
    np.testing.assert_allclose(ssim(x, y).numpy(), ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(ssim_matrix(x, y).diagonal().numpy(), ref, rtol=0, atol=1e-5)


def test_ssim_with_another_data_range_matches_skimage():
    x = (_images(3, n_random=1)[:3] + 1) / 2  # [0, 1]
    y = x.flip(0)
    ref = np.array([_skimage_ssim(a, b, data_range=1.0) for a, b in zip(x, y, strict=True)])
    np.testing.assert_allclose(ssim(x, y, data_range=1.0).numpy(), ref, rtol=0, atol=1e-5)


def test_ssim_of_identical_images_is_one():
    x = _images(3)
    np.testing.assert_allclose(ssim(x, x).numpy(), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ssim_matrix(x, x).diagonal().numpy(), 1.0, rtol=0, atol=1e-12)


def test_ssim_rejects_bad_inputs():
    x = torch.zeros(2, 1, RES, RES)
    with pytest.raises(ConfigError, match="at least 11x11"):
        ssim(torch.zeros(2, 1, 10, RES), torch.zeros(2, 1, 10, RES))
    with pytest.raises(ConfigError, match="at least 11x11"):
        ssim_matrix(torch.zeros(2, 3, RES, 8), torch.zeros(1, 3, RES, 8))
    with pytest.raises(ConfigError, match="same \\[C, H, W\\]"):
        ssim_matrix(x, torch.zeros(2, 3, RES, RES))
    with pytest.raises(ConfigError, match="same N"):
        ssim(x, torch.zeros(3, 1, RES, RES))
    with pytest.raises(ConfigError, match="C = 1"):
        ssim(torch.zeros(2, 2, RES, RES), torch.zeros(2, 2, RES, RES))
    with pytest.raises(ConfigError, match="data_range"):
        ssim(x, x, data_range=0)
    with pytest.raises(ConfigError, match="chunk"):
        ssim_matrix(x, x, chunk=0)
