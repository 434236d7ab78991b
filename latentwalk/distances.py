"""Image distances for privacy checks: LPIPS as an embedding, exact nearest neighbours, and SSIM.

LPIPS: Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018
(arXiv 1801.03924). :class:`LpipsEmbedding` was matched numerically against ``LPIPS.forward`` of the ``lpips``
package 0.1.4 (github.com/richzhang/PerceptualSimilarity, ``lpips/lpips.py``; read, not copied) for the alex, vgg and
squeeze backbones. LPIPS v0.1 is, per layer ``l`` with features ``f_l`` ``[C_l, H_l, W_l]`` normalised to unit L2
norm over channels at each pixel (the package's ``normalize_tensor``, eps 1e-10 added to the norm) and non-negative
1x1-conv weights ``w_l`` ``[C_l]``::

    d(x, y) = sum_l mean_{h, w} sum_c w_lc * (f_l(x) - f_l(y))[c, h, w] ** 2

so ``e_l(x) = sqrt(w_l / (H_l * W_l)) * f_l(x)``, flattened and concatenated over layers, gives
``d(x, y) = ||e(x) - e(y)||^2`` exactly (up to float32 rounding), and nearest-neighbour search under LPIPS becomes a
squared-Euclidean search over embeddings, with every image passed through the backbone once.

SSIM: Wang et al., "Image quality assessment: from error visibility to structural similarity", IEEE TIP 2004.
:func:`ssim` and :func:`ssim_matrix` were matched numerically against ``structural_similarity`` of scikit-image 0.26.0
(``skimage/metrics/_structural_similarity.py``) called with ``gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=2.0, channel_axis=0`` on float64 ``[C, H, W]`` arrays: an 11-tap Gaussian
(sigma 1.5, truncate 3.5, radius ``int(3.5 * 1.5 + 0.5) = 5``) filters means, variances and the covariance,
``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, and the SSIM map is averaged after cropping 5 pixels on every side. Those
cropped pixels are exactly the ones whose filter window lies inside the image, so scikit-image's ``reflect`` border
never reaches the mean and a "valid" convolution here gives the same number. Multichannel SSIM is the mean over
channels. The computation is in float64 on the images' device.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentwalk.errors import ConfigError, DataError

__all__ = [
    "METRICS",
    "SSIM_SIGMA",
    "SSIM_WIN_SIZE",
    "LpipsEmbedding",
    "Nearest",
    "check_rows",
    "mean_pairwise_distance",
    "pairwise_sq_dists",
    "nearest",
    "ssim",
    "ssim_matrix",
    "ssim_nearest",
    "ssim_nearest_many",
    "ssim_block_images",
    "nearest_in_matrix",
]

METRICS = ("sqeuclidean", "euclidean", "cosine")  # metrics of nearest()
SSIM_SIGMA = 1.5  # standard deviation of the SSIM Gaussian window, pixels (Wang et al. 2004)
SSIM_TRUNCATE = 3.5  # scikit-image's truncation of that Gaussian, in standard deviations
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)  # 5: as scipy.ndimage computes it
SSIM_WIN_SIZE = 2 * SSIM_RADIUS + 1  # 11: images must be at least this large on both sides
SSIM_K1, SSIM_K2 = 0.01, 0.03  # stability constants: C1 = (K1 * data_range)^2, C2 = (K2 * data_range)^2
SSIM_BLOCK_BYTES = 256 << 20  # ssim_nearest's default block: float64 images and moments of both sides below this


# ---------------------------------------------------------------------------------------------------------------
# Input checks.


def _check_images(x: Any, name: str) -> None:
    if not isinstance(x, Tensor):
        raise ConfigError(f"{name} must be a tensor [N, C, H, W], got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ConfigError(f"{name} must be [N, C, H, W] with C = 1 (gray) or 3 (RGB), got shape {list(x.shape)}")
    if not x.is_floating_point():
        raise ConfigError(f"{name} must be floating point images in [-1, 1], got dtype {x.dtype}")


def check_rows(x: Any, name: str) -> None:
    """Raise :class:`ConfigError` unless ``x`` is a floating-point tensor ``[N, D]`` (one vector per row)."""
    if not isinstance(x, Tensor):
        raise ConfigError(f"{name} must be a float tensor [N, D], got {type(x).__name__}")
    if x.dim() != 2:
        raise ConfigError(f"{name} must be a matrix [N, D] with one vector per row, got shape {list(x.shape)}")
    if not x.is_floating_point():
        raise ConfigError(f"{name} must be floating point, got dtype {x.dtype}")


def _check_pair(a: Any, b: Any) -> None:
    check_rows(a, "a")
    check_rows(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ConfigError(f"a and b must have the same row length, got a {list(a.shape)} and b {list(b.shape)}")
    if a.device != b.device:
        raise ConfigError(f"a and b must be on the same device, got {a.device} and {b.device}; move one with .to()")


def _check_positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")


# ---------------------------------------------------------------------------------------------------------------
# LPIPS as an embedding.


class LpipsEmbedding(nn.Module):
    """LPIPS v0.1 as a Euclidean embedding: ``||e(x) - e(y)||^2`` is the LPIPS distance of ``x`` and ``y``.

    ``forward`` keeps autograd with respect to the images (usable in a loss; the linear weights are detached, and, as
    in the ``lpips`` package, the gradient of the per-pixel channel norm is undefined where a feature vector is
    exactly zero); :meth:`embed` runs without gradients, in chunks. The
    distance is that of the network in eval mode: the dropout in front of the linear layers is never applied.
    Gray images are repeated to three channels, as the backbones expect RGB.

    Args:
        net: an ``lpips.LPIPS`` with ``version="0.1"`` and ``lpips=True`` (linear layers), any backbone (alex, vgg,
            squeeze), whose linear-layer weights are non-negative (the package's bundled ones are). It is kept as
            a submodule (``.to()`` moves it) and used as it is: its ``scaling_layer`` and backbone ``net`` are
            called, the linear weights read at each call.

    Raises:
        ConfigError: if ``net`` is not such an ``lpips.LPIPS``.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        import lpips

        if not isinstance(net, lpips.LPIPS):
            raise ConfigError(f"LpipsEmbedding needs an lpips.LPIPS network, got {type(net).__name__}")
        if str(net.version) != "0.1":
            raise ConfigError(
                f"LpipsEmbedding needs LPIPS version 0.1, got version {net.version!r}; build it with version='0.1'"
            )
        if not net.lpips or not hasattr(net, "lins"):
            raise ConfigError("LpipsEmbedding needs LPIPS with linear layers; build it with lpips.LPIPS(lpips=True)")
        if len(net.lins) != net.L:
            raise ConfigError(f"the LPIPS network has {len(net.lins)} linear layers for {net.L} backbone layers")
        for i, lin in enumerate(net.lins):
            w = _lin_weight(lin, i)
            if (w < 0).any():
                raise ConfigError(
                    f"linear layer {i} of the LPIPS network has negative weights, so LPIPS is not a squared distance; "
                    "use the package's calibrated weights (pretrained=True)"
                )
        self.net = net
        self._normalize = lpips.normalize_tensor  # the package's channel normalisation, with its eps

    def forward(self, x: Tensor) -> Tensor:
        """Embed images.

        Args:
            x: ``[N, 1 or 3, H, W]`` float images in [-1, 1] on the network's device (gray is repeated to RGB).
                ``H, W`` must be large enough for the backbone (32 is enough for alex, vgg and squeeze).

        Returns:
            ``[N, D]`` embeddings in the network's dtype (float32), ``D = sum_l C_l * H_l * W_l``.

        Raises:
            ConfigError: if ``x`` is not ``[N, 1 or 3, H, W]`` floating point.
        """
        _check_images(x, "images")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # [N, 3, H, W]
        x = x.to(dtype=_param_dtype(self.net))
        feats = self.net.net(self.net.scaling_layer(x))  # L tensors [N, C_l, H_l, W_l]
        parts = []
        for i, (f, lin) in enumerate(zip(feats, self.net.lins, strict=True)):
            h, w = f.shape[-2:]
            scale = (_lin_weight(lin, i).detach() / (h * w)).sqrt().view(1, -1, 1, 1)  # [1, C_l, 1, 1]
            parts.append((self._normalize(f) * scale).flatten(1))  # [N, C_l * H_l * W_l]
        return torch.cat(parts, dim=1)  # [N, D]

    @torch.no_grad()
    def embed(self, images: Tensor, *, batch: int = 64) -> Tensor:
        """Embed a large set of images ``batch`` at a time, without gradients.

        Each chunk is moved to the network's device and its embeddings back to ``images.device``, so the images
        and the result may stay on the CPU while the network runs on an accelerator.

        Args:
            images: ``[N, 1 or 3, H, W]`` float images in [-1, 1], any device.
            batch: images per backbone pass (bounds the network's memory, not the result).

        Returns:
            ``[N, D]`` float32 on ``images.device`` (the output itself is ``N * D * 4`` bytes: for alex at 256 px
            ``D`` is about 640k).

        Raises:
            ConfigError: bad shape or ``batch``.
        """
        _check_images(images, "images")
        _check_positive_int(batch, "batch")
        device = next(self.net.parameters()).device
        n = images.shape[0]
        if n == 0:
            dim = self(torch.zeros((1, *images.shape[1:]), device=device)).shape[1]
            return torch.zeros((0, dim), dtype=_param_dtype(self.net), device=images.device)
        out: Tensor | None = None
        for start in range(0, n, batch):
            e = self(images[start : start + batch].to(device))  # [b, D]
            if out is None:
                out = torch.empty((n, e.shape[1]), dtype=e.dtype, device=images.device)  # [N, D]
            out[start : start + e.shape[0]] = e.to(images.device)
        assert out is not None
        return out


def _lin_weight(lin: nn.Module, i: int) -> Tensor:
    """The ``[C]`` weights of the 1x1 conv of LPIPS linear layer ``i``."""
    convs = [m for m in lin.modules() if isinstance(m, nn.Conv2d)]
    if len(convs) != 1 or convs[0].weight.shape[0] != 1 or convs[0].weight.shape[2:] != (1, 1):
        raise ConfigError(f"LPIPS linear layer {i} is not a single 1x1 conv to one channel; use lpips.LPIPS as built")
    if convs[0].bias is not None:
        raise ConfigError(f"LPIPS linear layer {i} has a bias, which the lpips package never adds")
    return convs[0].weight.flatten()  # [C]


def _param_dtype(net: nn.Module) -> torch.dtype:
    return next(net.parameters()).dtype


# ---------------------------------------------------------------------------------------------------------------
# Exact squared distances and nearest neighbours.
#
# |a|^2 + |b|^2 - 2 a.b in float32 loses everything to cancellation when |a - b| << |a| (near-copies: the case a
# privacy check is about). Every block is therefore computed in float64 from float64 copies of the row chunks, after
# subtracting the mean row of b (distances do not change under a translation): the cancellation error is then
# ~1e-16 times the squared spread of the rows around that mean rather than their squared norm, far below the float32
# resolution of the distances even for data far from the origin. The direct sum of (a - b)^2 would need
# [chunk, chunk, D] memory and no matrix product.


def _check_finite_rows(values: Tensor, start: int, name: str) -> None:
    """``values`` ``[n]``: one float64 reduction per row, non-finite exactly when the row has a NaN or infinity."""
    bad = ~torch.isfinite(values)
    if bool(bad.any()):
        raise DataError(
            f"row {start + int(bad.nonzero()[0])} of {name} contains NaN or infinite values; remove or fix those rows"
        )


def _mean_row(x: Tensor, chunk: int, name: str) -> Tensor:
    """``[D]`` float64 mean of the rows (zeros for no rows), ``chunk`` rows at a time."""
    total = x.new_zeros(x.shape[1], dtype=torch.float64)
    for start in range(0, x.shape[0], chunk):
        part = x[start : start + chunk].double()  # [n, D]
        _check_finite_rows(part.sum(1), start, name)
        total += part.sum(0)
    return total / max(x.shape[0], 1)


def _rows64(x: Tensor, center: Tensor | None, start: int, name: str) -> tuple[Tensor, Tensor]:
    """float64 copy of rows ``[n, D]`` (centred when ``center`` is given) and their squared norms ``[n]``."""
    x64 = x.double() if center is None else x.double() - center  # never in place: x may be float64 already
    sq = x64.square().sum(1)
    _check_finite_rows(sq, start, name)
    return x64, sq


def _sq_norms(x: Tensor, center: Tensor | None, chunk: int, name: str) -> Tensor:
    """``[N]`` float64 squared norms of the (centred) rows, ``chunk`` rows at a time."""
    parts = [_rows64(x[i : i + chunk], center, i, name)[1] for i in range(0, x.shape[0], chunk)]
    return torch.cat([*parts, x.new_zeros(0, dtype=torch.float64)])


def _block(a64: Tensor, b64: Tensor, a_sq: Tensor, b_sq: Tensor, metric: str) -> Tensor:
    """float64 ``[n, m]`` distances of one block; ``a_sq``, ``b_sq`` are the rows' squared norms."""
    if metric == "cosine":
        cos = (a64 / a_sq.sqrt()[:, None]) @ (b64 / b_sq.sqrt()[:, None]).T  # [n, m]
        return (1.0 - cos).clamp_(0.0, 2.0)
    d = (a_sq[:, None] + b_sq[None, :]).sub_(a64 @ b64.T, alpha=2.0).clamp_min_(0.0)  # [n, m]
    if metric == "euclidean":
        return d.sqrt_()
    if metric == "sqeuclidean":
        return d
    raise AssertionError(f"unchecked metric {metric!r}")


def pairwise_sq_dists(a: Tensor, b: Tensor, *, chunk: int = 1024) -> Tensor:
    """Squared Euclidean distances between all rows of ``a`` and all rows of ``b``.

    Computed blockwise in float64 as ``|a|^2 + |b|^2 - 2 a.b`` on float64 copies of ``chunk`` rows of each, centred
    on the mean row of ``b``, so it agrees with the direct ``((a[:, None] - b[None]) ** 2).sum(-1)`` to float32
    rounding even for near-duplicate rows far from the origin, without the direct form's ``[N, M, D]`` memory.
    Negative rounding residues are clamped to 0.

    Args:
        a: ``[N, D]`` float.
        b: ``[M, D]`` float, same device.
        chunk: rows of ``a`` and of ``b`` per block; beyond the ``[N, M]`` result, memory is about
            ``2 * chunk * D + chunk^2`` float64 values.

    Returns:
        ``[N, M]`` in the promoted dtype of ``a`` and ``b`` (float32 for float32 inputs), on their device.

    Raises:
        ConfigError: shapes, dtypes, devices or ``chunk`` invalid.
        DataError: a row of ``a`` or ``b`` contains NaN or infinity.
    """
    _check_pair(a, b)
    _check_positive_int(chunk, "chunk")
    out = torch.empty((a.shape[0], b.shape[0]), dtype=torch.result_type(a, b), device=a.device)  # [N, M]
    center = _mean_row(b, chunk, "b")  # [D]
    b_sq = _sq_norms(b, center, chunk, "b")  # [M]
    for a0 in range(0, a.shape[0], chunk):
        a64, a_sq = _rows64(a[a0 : a0 + chunk], center, a0, "a")  # [n, D], [n]
        for b0 in range(0, b.shape[0], chunk):
            b64, _ = _rows64(b[b0 : b0 + chunk], center, b0, "b")  # [m, D]
            block = _block(a64, b64, a_sq, b_sq[b0 : b0 + chunk], "sqeuclidean")  # [n, m]
            out[a0 : a0 + a64.shape[0], b0 : b0 + b64.shape[0]] = block
    return out


class Nearest(NamedTuple):
    """The ``k`` nearest rows of ``b`` for each row of ``a``, ascending (unpacks as ``dists, index``)."""

    dists: Tensor  # [N, k] distances in the metric's units, dtype of the inputs
    index: Tensor  # [N, k] int64 rows of b


def mean_pairwise_distance(x: Tensor, *, n: int = 400, seed: int = 0) -> float:
    """Diversity of a set of images: mean Euclidean distance between every pair of up to ``n`` of them.

    Args:
        x: images ``[N, C, H, W]`` (pixels in [-1, 1]) or rows ``[N, D]``, N >= 2.
        n: at most this many rows, drawn without replacement with ``seed`` (the figure is then an estimate).

    Returns:
        The mean over the ``m (m - 1) / 2`` pairs, in float64 (pixel units of ``x``).
    """
    if x.shape[0] < 2:
        raise DataError(f"diversity needs at least 2 images, got {x.shape[0]}")
    pick = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return float(torch.pdist(x[pick].flatten(1).double()).mean())


def _group_codes(
    a_groups: Sequence[Hashable] | None, b_groups: Sequence[Hashable] | None, n: int, m: int, device: torch.device
) -> tuple[Tensor, Tensor, int] | None:
    """Integer codes ``[N]``, ``[M]`` of the groups (equal code = same group) and their count; None without groups."""
    if a_groups is None and b_groups is None:
        return None
    if a_groups is None or b_groups is None:
        raise ConfigError("a_groups and b_groups must be given together (the group of every row of a and of b)")
    for name, groups, rows in (("a_groups", a_groups, n), ("b_groups", b_groups, m)):
        if isinstance(groups, (str, bytes)) or not hasattr(groups, "__len__"):
            raise ConfigError(f"{name} must be a sequence with one group id per row, got {type(groups).__name__}")
        if len(groups) != rows:
            raise ConfigError(f"{name} has {len(groups)} entries for {rows} rows; give one group id per row")
    codes: dict[Hashable, int] = {}
    try:
        a_codes = [codes.setdefault(g, len(codes)) for g in a_groups]
        b_codes = [codes.setdefault(g, len(codes)) for g in b_groups]
    except TypeError as exc:
        raise ConfigError(f"group ids must be hashable (e.g. patient id strings): {exc}") from None
    return (
        torch.tensor(a_codes, dtype=torch.int64, device=device),
        torch.tensor(b_codes, dtype=torch.int64, device=device),
        len(codes),
    )


def nearest(
    a: Tensor,
    b: Tensor,
    *,
    k: int = 1,
    metric: str = "sqeuclidean",
    a_groups: Sequence[Hashable] | None = None,
    b_groups: Sequence[Hashable] | None = None,
    chunk: int = 1024,
) -> Nearest:
    """Exact ``k`` nearest rows of ``b`` for each row of ``a``, optionally only across groups.

    Blocks of ``chunk x chunk`` distances are computed in float64 (see :func:`pairwise_sq_dists`) and merged into a
    running top-k, so memory does not grow with ``M``. Ties are broken towards the lower index of ``b``.

    Args:
        a: ``[N, D]`` float queries.
        b: ``[M, D]`` float candidates, same device.
        k: neighbours per query, ``1 <= k <= M``.
        metric: ``"sqeuclidean"`` (``|a - b|^2``; LPIPS for :class:`LpipsEmbedding` rows), ``"euclidean"``
            (``|a - b|``) or ``"cosine"`` (``1 - cos(a, b)``, in [0, 2]; every row must be non-zero).
        a_groups: group id (e.g. patient id) per row of ``a``; with ``b_groups``, pairs in the same group are never
            neighbours ("nearest image of a *different* patient"). Ids are only compared, never reported.
        b_groups: group id per row of ``b``.
        chunk: rows of ``a`` and of ``b`` per block; memory about ``2 * chunk * D + 2 * chunk^2`` float64 values.

    Returns:
        :class:`Nearest` ``(dists [N, k], index [N, k])``, ascending along ``k``; ``dists`` in the promoted dtype
        of ``a`` and ``b``, ``index`` int64, on their device.

    Raises:
        ConfigError: bad shapes, devices, ``k``, ``metric``, ``chunk``, or groups of the wrong length.
        DataError: fewer than ``k`` rows of ``b`` outside a query's group; a zero row with ``metric="cosine"``; NaN
            or infinity in the inputs.
    """
    _check_pair(a, b)
    _check_positive_int(chunk, "chunk")
    if metric not in METRICS:
        raise ConfigError(f'unknown metric "{metric}"; expected one of {", ".join(METRICS)}')
    _check_positive_int(k, "k")
    n, m = a.shape[0], b.shape[0]
    if k > m:
        raise ConfigError(f"k={k} nearest neighbours asked for, but b has only {m} rows; lower k")
    groups = _group_codes(a_groups, b_groups, n, m, a.device)
    if groups is not None:
        a_codes, b_codes, size = groups
        candidates = m - torch.bincount(b_codes, minlength=size)[a_codes]  # [N] rows of b outside each group
        short = (candidates < k).nonzero()
        if short.numel():
            i = int(short[0])
            raise DataError(
                f"row {i} of a has only {int(candidates[i])} rows of b outside its group, fewer than k={k}; lower k "
                f"or add images of other groups ({short.numel()} rows of a are short)"
            )
    center = None if metric == "cosine" else _mean_row(b, chunk, "b")  # [D]; cosine is not translation invariant
    b_sq = _sq_norms(b, center, chunk, "b")  # [M]
    if metric == "cosine" and bool((b_sq == 0).any()):
        raise DataError(f"row {int((b_sq == 0).nonzero()[0])} of b is all zeros, which has no cosine distance")
    dists = torch.empty((n, k), dtype=torch.result_type(a, b), device=a.device)  # [N, k]
    index = torch.empty((n, k), dtype=torch.int64, device=a.device)  # [N, k]
    for a0 in range(0, n, chunk):
        a64, a_sq = _rows64(a[a0 : a0 + chunk], center, a0, "a")  # [na, D], [na]
        if metric == "cosine" and bool((a_sq == 0).any()):
            raise DataError(f"row {a0 + int((a_sq == 0).nonzero()[0])} of a is all zeros, which has no cosine distance")
        best_d = a64.new_zeros((a64.shape[0], 0))  # [na, <=k] running best, ascending
        best_i = index.new_zeros((a64.shape[0], 0))
        for b0 in range(0, m, chunk):
            b64, _ = _rows64(b[b0 : b0 + chunk], center, b0, "b")  # [nb, D]
            block = _block(a64, b64, a_sq, b_sq[b0 : b0 + chunk], metric)  # [na, nb]
            if groups is not None:
                same = a_codes[a0 : a0 + chunk, None] == b_codes[None, b0 : b0 + chunk]  # [na, nb]
                block.masked_fill_(same, math.inf)
            # a stable sort keeps equal distances in index order; running entries come from earlier (lower) rows
            block_d, block_i = block.sort(dim=1, stable=True)
            cand_d = torch.cat([best_d, block_d[:, :k]], dim=1)  # [na, <=2k]
            cand_i = torch.cat([best_i, block_i[:, :k] + b0], dim=1)
            cand_d, order = cand_d.sort(dim=1, stable=True)
            best_d, best_i = cand_d[:, :k], cand_i.gather(1, order[:, :k])
        dists[a0 : a0 + a64.shape[0]] = best_d
        index[a0 : a0 + a64.shape[0]] = best_i
    return Nearest(dists, index)


# ---------------------------------------------------------------------------------------------------------------
# SSIM.


def _gaussian_window(device: torch.device) -> Tensor:
    """The ``[11]`` float64 normalised Gaussian of scipy.ndimage (sigma 1.5, radius 5)."""
    x = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64, device=device)
    g = torch.exp(-0.5 / SSIM_SIGMA**2 * x**2)
    return g / g.sum()


def _filter(x: Tensor, g: Tensor) -> Tensor:
    """Separable Gaussian, valid region only: ``[..., H, W] -> [..., H - 10, W - 10]``."""
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    y = x.reshape(-1, 1, h, w)  # [B, 1, H, W]
    y = F.conv2d(y, g.view(1, 1, -1, 1))  # [B, 1, H - 10, W] (along H, as scipy's first axis)
    y = F.conv2d(y, g.view(1, 1, 1, -1))  # [B, 1, H - 10, W - 10]
    return y.reshape(*lead, h - 2 * SSIM_RADIUS, w - 2 * SSIM_RADIUS)


def _ssim_checks(x: Any, y: Any, data_range: Any) -> None:
    _check_images(x, "x")
    _check_images(y, "y")
    if x.shape[1:] != y.shape[1:]:
        raise ConfigError(f"x and y must have the same [C, H, W], got {list(x.shape)} and {list(y.shape)}")
    if x.device != y.device:
        raise ConfigError(f"x and y must be on the same device, got {x.device} and {y.device}; move one with .to()")
    if min(x.shape[-2:]) < SSIM_WIN_SIZE:
        raise ConfigError(
            f"SSIM needs images of at least {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE} pixels (its Gaussian window), "
            f"got {x.shape[-2]}x{x.shape[-1]}; upsample the images or compare larger ones"
        )
    if isinstance(data_range, bool) or not isinstance(data_range, (int, float)) or not 0 < data_range < math.inf:
        raise ConfigError(f"data_range must be a finite number > 0 (2.0 for images in [-1, 1]), got {data_range!r}")


def _moments(x: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """Local mean and variance ``[N, C, h, w]`` (population, Gaussian-weighted) of float64 images."""
    mu = _filter(x, g)
    return mu, _filter(x * x, g) - mu * mu


def _ssim_mean(mu_x: Tensor, var_x: Tensor, mu_y: Tensor, var_y: Tensor, e_xy: Tensor, data_range: float) -> Tensor:
    """Mean SSIM over the last three dims (channels and valid pixels), broadcasting the leading ones."""
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    cov = e_xy - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return (num / den).mean(dim=(-3, -2, -1))


def ssim(x: Tensor, y: Tensor, *, data_range: float = 2.0) -> Tensor:
    """Mean SSIM of paired images ``x[i]``, ``y[i]`` (Gaussian window, sigma 1.5), as scikit-image computes it.

    Args:
        x: ``[N, C, H, W]`` float images (C = 1 or 3, ``H, W >= 11``), e.g. in [-1, 1].
        y: ``[N, C, H, W]`` float images, same shape and device.
        data_range: ``max - min`` of the pixel scale (2.0 for [-1, 1], 1.0 for [0, 1]).

    Returns:
        ``[N]`` float64 SSIM in [-1, 1] (1 for identical images), on the images' device.

    Raises:
        ConfigError: shapes differ, images smaller than 11x11, or bad ``data_range``.
    """
    _ssim_checks(x, y, data_range)
    if x.shape[0] != y.shape[0]:
        raise ConfigError(f"ssim compares pairs: x and y need the same N, got {x.shape[0]} and {y.shape[0]}")
    g = _gaussian_window(x.device)
    x64, y64 = x.double(), y.double()  # [N, C, H, W]
    mu_x, var_x = _moments(x64, g)  # [N, C, h, w]
    mu_y, var_y = _moments(y64, g)
    return _ssim_mean(mu_x, var_x, mu_y, var_y, _filter(x64 * y64, g), float(data_range))


def ssim_matrix(x: Tensor, y: Tensor, *, data_range: float = 2.0, chunk: int = 64) -> Tensor:
    """Mean SSIM of every pair ``(x[i], y[j])``, as :func:`ssim` would give it.

    Means and variances are filtered once per image; only the cross term ``G * (x_i y_j)`` is filtered per pair,
    ``chunk`` pairs at a time. The result is ``N x M``; for nearest neighbours over large sets use
    :func:`ssim_nearest`, which never holds it.

    Args:
        x: ``[N, C, H, W]`` float images (C = 1 or 3, ``H, W >= 11``).
        y: ``[M, C, H, W]`` float images, same ``[C, H, W]`` and device.
        data_range: ``max - min`` of the pixel scale (2.0 for [-1, 1]).
        chunk: image pairs per filtering pass; memory beyond the per-image moments is about
            ``4 * chunk * C * H * W`` float64 values.

    Returns:
        ``[N, M]`` float64 SSIM, on the images' device.

    Raises:
        ConfigError: shapes differ, images smaller than 11x11, bad ``data_range`` or ``chunk``.
    """
    _ssim_checks(x, y, data_range)
    _check_positive_int(chunk, "chunk")
    g = _gaussian_window(x.device)
    x64, y64 = x.double(), y.double()  # [N, C, H, W], [M, C, H, W]
    return _cross_ssim(x64, *_moments(x64, g), y64, *_moments(y64, g), g, float(data_range), chunk)


def _cross_ssim(
    x64: Tensor,
    mu_x: Tensor,
    var_x: Tensor,
    y64: Tensor,
    mu_y: Tensor,
    var_y: Tensor,
    g: Tensor,
    data_range: float,
    chunk: int,
) -> Tensor:
    """``[n, m]`` float64 SSIM of every pair of float64 images ``x64`` ``[n, C, H, W]``, ``y64`` ``[m, C, H, W]``
    given their moments ``[., C, h, w]``; the cross term is filtered ``chunk`` pairs at a time. Every pair's value is
    computed alone (the passes only batch them), so a block of rows or columns gives the same bits as the whole."""
    n, m = x64.shape[0], y64.shape[0]
    out = torch.empty((n, m), dtype=torch.float64, device=x64.device)  # [n, m]
    rows = max(1, chunk // max(m, 1))  # rows of x per pass
    cols = min(max(m, 1), chunk)  # columns of y per pass
    for i0 in range(0, n, rows):
        i1 = min(i0 + rows, n)
        for j0 in range(0, m, cols):
            j1 = min(j0 + cols, m)
            e_xy = _filter(x64[i0:i1, None] * y64[None, j0:j1], g)  # [r, c, C, h, w]
            out[i0:i1, j0:j1] = _ssim_mean(
                mu_x[i0:i1, None], var_x[i0:i1, None], mu_y[None, j0:j1], var_y[None, j0:j1], e_xy, data_range
            )
    return out


def ssim_block_images(shape: Sequence[int]) -> int:
    """Default images per side of an :func:`ssim_nearest` block for images ``[C, H, W]``: the float64 copy, local
    mean and local variance of every image of both sides' blocks (``2 * 3 * chunk * C * H * W`` values at most)
    stay below :data:`SSIM_BLOCK_BYTES` (1365 at 64 px gray, 85 at 256 px gray, 28 at 256 px RGB)."""
    c, h, w = (int(v) for v in shape[-3:])
    return max(1, SSIM_BLOCK_BYTES // (2 * 3 * c * h * w * 8))


def ssim_nearest(
    a: Tensor,
    b: Tensor,
    *,
    a_groups: Sequence[Hashable] | None = None,
    b_groups: Sequence[Hashable] | None = None,
    data_range: float = 2.0,
    chunk: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Nearest image of ``b`` for each image of ``a`` in ``1 - SSIM``, optionally only across groups.

    Computed in blocks of ``chunk`` images of ``a`` by ``chunk`` images of ``b`` with a running minimum, so memory
    is bounded by the block, never ``N x M``; the result is that of the row-wise minimum of
    ``1 - ssim_matrix(a, b)`` (same values, same index: the first of equal minima, as ``torch.min``).

    Args:
        a: ``[N, C, H, W]`` float images.
        b: ``[M, C, H, W]`` float images, same ``[C, H, W]`` and device.
        a_groups: group id (e.g. patient id) per image of ``a``; with ``b_groups``, pairs in the same group are
            never matched (a row with no other group gets distance ``inf`` and index 0).
        b_groups: group id per image of ``b``.
        data_range: as :func:`ssim_matrix`.
        chunk: images of ``a`` and of ``b`` per block; ``None`` = :func:`ssim_block_images` (blocks of about
            256 MB). Memory is about ``6 * chunk * C * H * W + chunk^2`` float64 values, plus the pair passes of
            :func:`ssim_matrix`.

    Returns:
        ``(distance [N] float64, index [N] int64 into b)``, on the images' device.

    Raises:
        ConfigError: as :func:`ssim_matrix`, a bad ``chunk``, or groups of the wrong length.
    """
    groups = None if a_groups is None and b_groups is None else (a_groups, b_groups)
    return ssim_nearest_many(a, b, [groups], data_range=data_range, chunk=chunk)[0]


def ssim_nearest_many(
    a: Tensor,
    b: Tensor,
    groupings: Sequence[tuple[Sequence[Hashable] | None, Sequence[Hashable] | None] | None],
    *,
    data_range: float = 2.0,
    chunk: int | None = None,
) -> list[tuple[Tensor, Tensor]]:
    """Several :func:`ssim_nearest` searches of ``a`` in ``b`` that differ only in their groups, in one pass over
    the pairs (the SSIM of each pair is computed once).

    Args:
        a, b, data_range, chunk: as :func:`ssim_nearest`.
        groupings: per search, ``(a_groups, b_groups)`` or ``None`` (no exclusion); e.g. ``[(patients, patients),
            (range(M), range(M))]`` for "nearest image of another patient" and "nearest other image" of ``a is b``.

    Returns:
        One ``(distance [N] float64, index [N] int64)`` per grouping, in order.

    Raises:
        ConfigError: as :func:`ssim_nearest`, or no grouping.
    """
    _ssim_checks(a, b, data_range)
    if chunk is not None:
        _check_positive_int(chunk, "chunk")
    if isinstance(groupings, (str, bytes)) or not isinstance(groupings, Sequence) or not groupings:
        raise ConfigError("groupings must be a non-empty list of (a_groups, b_groups) pairs or None")
    n, m = a.shape[0], b.shape[0]
    codes = []
    for grouping in groupings:
        if grouping is not None and (not isinstance(grouping, (tuple, list)) or len(grouping) != 2):
            raise ConfigError(f"each grouping must be (a_groups, b_groups) or None, got {grouping!r}")
        codes.append(None if grouping is None else _group_codes(*grouping, n, m, a.device))
    best: list[tuple[Tensor, Tensor]] = [
        (torch.empty(n, dtype=torch.float64, device=a.device), torch.empty(n, dtype=torch.int64, device=a.device))
        for _ in groupings
    ]
    if n == 0 or m == 0:
        if n and not m:
            raise ConfigError("b has no images: there is no nearest neighbour")
        return best
    size = ssim_block_images(a.shape[1:]) if chunk is None else chunk
    g, dr = _gaussian_window(a.device), float(data_range)
    for i0 in range(0, n, size):
        x64 = a[i0 : i0 + size].double()  # [r, C, H, W]
        mu_x, var_x = _moments(x64, g)  # [r, C, h, w]
        i1 = i0 + x64.shape[0]
        for j0 in range(0, m, size):
            y64 = b[j0 : j0 + size].double()  # [c, C, H, W]
            dist = 1.0 - _cross_ssim(x64, mu_x, var_x, y64, *_moments(y64, g), g, dr, 64)  # [r, c]
            j1 = j0 + y64.shape[0]
            for (best_d, best_i), grouping in zip(best, codes, strict=True):
                block = dist
                if grouping is not None:
                    a_codes, b_codes, _ = grouping
                    block = dist.masked_fill(a_codes[i0:i1, None] == b_codes[None, j0:j1], math.inf)
                _merge_min(best_d[i0:i1], best_i[i0:i1], block, j0, first=j0 == 0)
    return best


def _merge_min(best_d: Tensor, best_i: Tensor, block: Tensor, offset: int, first: bool) -> None:
    """Fold the row minima of ``block`` ``[r, c]`` (columns ``offset + j``) into ``best_d``, ``best_i`` ``[r]`` in
    place, as ``torch.min`` over the concatenated columns would: strictly smaller wins, so the first of equal minima
    is kept; a NaN is the minimum (the first NaN wins), as ``torch.min`` propagates it."""
    d, i = block.min(dim=1)  # [r], first index of the block's minimum
    i = i + offset
    if first:
        best_d.copy_(d)
        best_i.copy_(i)
        return
    better = (d < best_d) | (d.isnan() & ~best_d.isnan())
    best_d.copy_(torch.where(better, d, best_d))
    best_i.copy_(torch.where(better, i, best_i))


def nearest_in_matrix(
    dist: Tensor, *, a_groups: Sequence[Hashable] | None = None, b_groups: Sequence[Hashable] | None = None
) -> tuple[Tensor, Tensor]:
    """Row-wise nearest column of a distance matrix ``[N, M]``, optionally only across groups (a row with no other
    group gets ``inf``): ``(distance [N], index [N])``. The matrix is not modified; with groups a masked copy is made
    (``N x M`` more memory): for large sets use a blocked search (:func:`nearest`, :func:`ssim_nearest`)."""
    groups = _group_codes(a_groups, b_groups, dist.shape[0], dist.shape[1], dist.device)
    if groups is not None:
        a_codes, b_codes, _ = groups
        dist = dist.masked_fill(a_codes[:, None] == b_codes[None, :], math.inf)
    d, i = dist.min(dim=1)
    return d, i
