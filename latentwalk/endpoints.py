"""Path endpoints drawn from a generator: ``w`` samples kept when the class guide gives them the wanted label
(:func:`sample_w`), and pairs of them per label (:func:`pair_endpoints`) for the walks of :mod:`latentwalk.paths`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentwalk.errors import ConfigError, DataError
from latentwalk.paths import PlanConfig, classifier_input, labels_tensor, render_ws, resolve_repeat_gray

__all__ = ["sample_w", "EndpointPairs", "pair_endpoints"]


def sample_w(
    G: nn.Module,
    n: int,
    *,
    truncation_psi: float = 1.0,
    generator: torch.Generator | None = None,
    label: int | None = None,
    class_net: nn.Module | None = None,
    batch: int = 256,
    max_draws: int | None = None,
    repeat_gray: bool | None = None,
) -> Tensor:
    """Random W points from ``z ~ N(0, I)`` through ``G.mapping`` with truncation, optionally of one class.

    With ``class_net`` and ``label``, each drawn point is rendered (``noise_mode='const'``, clamped, gray repeated
    to 3 channels when ``repeat_gray``) and kept only if ``class_net``'s argmax is ``label``; draws continue in
    batches until ``n`` are kept. A conditional generator (``c_dim > 0``) needs ``label`` and gets it one-hot.

    Args:
        G: generator with NVIDIA's contract; points are made on its device.
        n: points wanted, >= 1.
        truncation_psi: ``w = w_avg + psi (w - w_avg)``; 1 = off.
        generator: CPU random generator for ``z`` (``None`` = torch's default); the result also depends on
            ``batch``.
        label: wanted class, or ``None`` for any.
        class_net: classifier filtering the draws by ``label``; ``None`` = keep every draw.
        batch: points drawn (and rendered) per pass.
        max_draws: give up after this many draws; ``None`` = ``max(100 * n, batch)``.
        repeat_gray: as :attr:`PlanConfig.repeat_gray`.

    Returns:
        ``[n, w_dim]`` float32 on ``G``'s device, in draw order.

    Raises:
        ConfigError: invalid counts, ``class_net`` without ``label``, a conditional generator without ``label``, or
            fewer than ``n`` draws accepted within ``max_draws``.
    """
    for name, value in (("n", n), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    if class_net is not None and label is None:
        raise ConfigError("class_net filters draws by a label: pass label as well")
    c_dim = int(getattr(G, "c_dim", 0))
    if c_dim > 0 and label is None:
        raise ConfigError(f"the generator is conditional (c_dim={c_dim}): pass the label to sample")
    if c_dim > 0 and not 0 <= label < c_dim:
        raise ConfigError(f"label must be in [0, {c_dim}) for this conditional generator, got {label}")
    max_draws = max(100 * n, batch) if max_draws is None else max_draws
    if isinstance(max_draws, bool) or not isinstance(max_draws, int) or max_draws < n:
        raise ConfigError(f"max_draws must be an integer >= n ({n}), got {max_draws!r}")
    param = next(iter(G.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    cfg = PlanConfig(repeat_gray=resolve_repeat_gray(repeat_gray, class_net), fused_modconv=None)
    kept: list[Tensor] = []
    n_kept = drawn = 0
    with torch.no_grad():
        while n_kept < n and drawn < max_draws:
            m = min(batch, max_draws - drawn)
            z = torch.randn(m, int(G.z_dim), generator=generator).to(device)
            c = None
            if c_dim > 0:
                c = F.one_hot(torch.full((m,), label, dtype=torch.long), c_dim).float().to(device)
            ws = G.mapping(z, c, truncation_psi=truncation_psi)  # [m, num_ws, w_dim]
            if class_net is not None:
                pred = class_net(classifier_input(render_ws(G, ws, None), cfg)).argmax(dim=1)  # [m]
                ws = ws[pred == label]
            kept.append(ws[:, 0].float())
            n_kept += ws.shape[0]
            drawn += m
    if n_kept < n:
        raise ConfigError(
            f"class_net kept only {n_kept} of {drawn} draws as label {label}, fewer than the {n} wanted; the "
            "generator rarely makes this class: raise max_draws, lower truncation_psi, or check the label"
        )
    return torch.cat(kept)[:n]


class EndpointPairs(NamedTuple):
    """Same-label pairs of latent points: ``w_a``, ``w_b`` ``[P, ...]``, ``labels [P]``, row indices ``[P]``."""

    w_a: Tensor
    w_b: Tensor
    labels: Tensor
    index_a: Tensor
    index_b: Tensor


def pair_endpoints(
    ws: Tensor, labels: Tensor | Sequence[int], n_pairs: int, generator: torch.Generator | None = None
) -> EndpointPairs:
    """Draw ``n_pairs`` pairs of distinct points with the same label (labels in proportion to their points).

    The first point of a pair is uniform over all points, the second uniform over the other points of its label;
    pairs may repeat when ``n_pairs`` is large.

    Args:
        ws: latent points ``[N, ...]`` (e.g. ``[N, w_dim]`` or ``[N, num_ws, w_dim]``).
        labels: ``[N]`` integer label per point.
        n_pairs: pairs wanted, >= 1.
        generator: CPU random generator (``None`` = torch's default).

    Returns:
        :class:`EndpointPairs` with ``w_a``, ``w_b`` ``[n_pairs, ...]`` on ``ws``'s device, ``labels`` and the row
        indices into ``ws`` (int64, CPU).

    Raises:
        DataError: a label has fewer than 2 points (it cannot form a pair).
        ConfigError: ``labels`` not ``[N]`` integers, or ``n_pairs < 1``.
    """
    if not isinstance(ws, Tensor) or ws.dim() < 2:
        raise ConfigError(f"ws must be a tensor [N, ...] of latent points, got {getattr(ws, 'shape', type(ws))}")
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, int) or n_pairs < 1:
        raise ConfigError(f"n_pairs must be an integer >= 1, got {n_pairs!r}")
    lab = labels_tensor(labels, ws.shape[0], torch.device("cpu"))
    values, counts = torch.unique(lab, return_counts=True)
    lonely = values[counts < 2].tolist()
    if lonely:
        raise DataError(
            f"label(s) {lonely} have fewer than 2 latent points, so no same-label pair exists; sample more points "
            "of those labels or leave them out"
        )
    first = torch.randint(ws.shape[0], (n_pairs,), generator=generator)  # [P]
    second = torch.empty_like(first)
    rank = torch.empty_like(lab)  # position of each point among the points of its label
    for value in values.tolist():  # per label, not per pair
        members = (lab == value).nonzero().squeeze(1)  # [M]
        rank[members] = torch.arange(members.numel())
        rows = (lab[first] == value).nonzero().squeeze(1)  # pairs whose first point has this label
        if rows.numel():
            offset = torch.randint(1, members.numel(), (rows.numel(),), generator=generator)  # never the point itself
            second[rows] = members[(rank[first[rows]] + offset) % members.numel()]
    return EndpointPairs(ws[first.to(ws.device)], ws[second.to(ws.device)], lab[first], first, second)
