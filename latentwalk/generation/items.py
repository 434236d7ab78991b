"""Work items of ``latentwalk generate``: what one item computes (its paths, images and gate decisions), how items
are planned per round, seeded, and stored in ``OUT/.work/items/`` (see :mod:`latentwalk.pipeline`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gan_zoo.sampling import has_fused_toggle
from gan_zoo.seeds import sequence_seed
from latentwalk.errors import DataError
from latentwalk.gate import Gate, LabelGate
from latentwalk.generation.config import GenerateConfig
from latentwalk.io import atomic_write_bytes

__all__ = [
    "Item",
    "Context",
    "item_seed",
    "plan_round",
    "run_item",
    "item_file",
    "write_item",
    "read_item",
    "to_uint8",
    "from_uint8",
    "distinct_pairs",
    "per_item",
    "endpoint_patients",
]

SAMPLE_BATCH = 64  # endpoint draws per pass (fixed: the drawn points depend on it)
MAX_DRAWS_PER_POINT = 1000  # endpoint_filter gives up after this many draws per endpoint wanted
PAIR_ORDER = 1 << 20  # the "round" slot of the seed that orders ksame-plan's centroid pairs (no real round reaches it)
MAX_GROWTH = 8  # a top-up round plans at most this many times the items of round 0 for a label


@dataclass(frozen=True)
class Item:
    """One unit of work: ``paths_per_item`` paths (or k-same groups) of one label."""

    round: int
    label: int
    index: int
    seed: int
    groups: tuple[int, ...] = ()  # ksame: indices of the label's groups rendered by this item

    @property
    def name(self) -> str:
        return f"r{self.round:02d}-l{self.label:03d}-i{self.index:05d}"


def item_seed(seed: int, round_: int, label: int, index: int) -> int:
    """A 63-bit seed for an item, independent of how items are dealt to processes."""
    return sequence_seed(seed, round_, label, index)


@dataclass
class Context:
    cfg: GenerateConfig
    G: Any
    guides: Any
    gate: Gate
    labels: tuple[int, ...]
    label_names: tuple[str, ...]
    keep: tuple[int, ...]
    chunk: int
    amp: bool
    device: torch.device
    label_gate: LabelGate | None = None  # None = off
    centroids: dict[int, Tensor] = field(default_factory=dict)  # ksame/ksame-plan: per label [groups, ...]
    pairs: dict[int, Tensor] = field(default_factory=dict)  # ksame-plan: per label [pairs, 2] distinct group pairs
    ksame_summary: dict[str, Any] | None = None
    # In memory only, for the private sidecar (latentwalk.generation.sidecar); never written into the output folder:
    members: dict[int, tuple[tuple[str, ...], ...]] = field(default_factory=dict)  # ksame*: per label, per group,
    # the identities of its patients (the centroids' order)
    patients: tuple[str, ...] = ()  # linear/plan: the identity guide's classes (latentwalk.guides.identity_classes)
    id_net: Any = None  # the identity net PLAN's walk steers against; None = guides.identity. Adversarial rounds
    # (latentwalk.generation.adversarial) set a fine-tuned attacker here; the gates and the sidecar keep the guides


def per_item(ctx: Context) -> int:
    return ctx.cfg.paths_per_item * len(ctx.keep)


def plan_round(
    ctx: Context, round_: int, stats: dict[int, tuple[int, int]], planned: dict[int, int] | None = None
) -> list[Item]:
    """Items of round ``round_`` given ``stats[label] = (accepted, candidates)`` and ``planned[label]`` (items) of
    the earlier rounds.

    ``ksame`` renders each group once, in round 0 (at most ``per_label`` groups per label). ``ksame-plan`` walks each
    distinct pair of a label's groups at most once (a path between the same centroids is the same path): item ``j``
    of a label takes the next ``paths_per_item`` pairs, and no item is planned once the pairs are used up.
    """
    cfg, items, planned = ctx.cfg, [], planned or {}
    per = cfg.paths_per_item
    for label in ctx.labels:
        accepted, candidates = stats.get(label, (0, 0))
        if cfg.method == "ksame":
            if round_ > 0:
                continue  # one image per group: there is nothing more to draw
            n_groups = min(ctx.centroids[label].shape[0], cfg.per_label)
            for j, start in enumerate(range(0, n_groups, per)):
                groups = tuple(range(start, min(start + per, n_groups)))
                items.append(Item(0, label, j, item_seed(cfg.seed, 0, label, j), groups))
            continue
        need = cfg.per_label - accepted
        if need <= 0:
            continue
        first = math.ceil(cfg.per_label / per_item(ctx))
        if round_ == 0:
            n = first
        else:
            rate = max(accepted / candidates, 0.05) if candidates else 1.0
            n = min(math.ceil(need / (per_item(ctx) * rate)), MAX_GROWTH * first)
        if cfg.method == "ksame-plan":
            done = planned.get(label, 0) * per  # pairs taken by earlier rounds
            n_pairs = ctx.pairs[label].shape[0]
            n = min(n, math.ceil(max(0, n_pairs - done) / per))
            for j in range(n):
                rows = tuple(range(done + j * per, min(done + (j + 1) * per, n_pairs)))
                items.append(Item(round_, label, j, item_seed(cfg.seed, round_, label, j), rows))
            continue
        items.extend(Item(round_, label, j, item_seed(cfg.seed, round_, label, j)) for j in range(n))
    return items


def distinct_pairs(n_groups: int, seed: int, label: int) -> Tensor:
    """Every unordered pair of ``n_groups`` groups once, ``[n(n-1)/2, 2]``, in an order shuffled by (seed, label)."""
    pairs = torch.combinations(torch.arange(n_groups), r=2)  # [P, 2], i < j
    gen = torch.Generator().manual_seed(item_seed(seed, PAIR_ORDER, label, 0))
    return pairs[torch.randperm(pairs.shape[0], generator=gen)]


def endpoints(ctx: Context, item: Item, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    from latentwalk.endpoints import sample_w

    cfg, P = ctx.cfg, ctx.cfg.paths_per_item
    if cfg.method in ("linear", "plan"):
        w = sample_w(
            ctx.G,
            2 * P,
            truncation_psi=cfg.truncation_psi,
            generator=gen,
            label=item.label,
            class_net=ctx.guides.classifier if cfg.endpoint_filter else None,
            batch=SAMPLE_BATCH,
            max_draws=MAX_DRAWS_PER_POINT * 2 * P,  # a generator may rarely make a label (e.g. a mild DR grade)
        )  # [2P, w_dim]
        return w[0::2], w[1::2]
    cents = ctx.centroids[item.label]  # [groups, ...]
    rows = ctx.pairs[item.label][list(item.groups)]  # [p, 2] distinct group pairs of this item
    return cents[rows[:, 0]], cents[rows[:, 1]]


def run_item(ctx: Context, item: Item) -> dict[str, Tensor]:
    """Candidates of one item, their nearest-real distances and gate decisions (accepted images as uint8)."""
    from latentwalk.paths import linear_paths, plan_paths, render_paths

    cfg = ctx.cfg
    gen = torch.Generator().manual_seed(item.seed)
    if cfg.method == "ksame":
        cents = ctx.centroids[item.label][list(item.groups)]  # [g, ...]
        paths = cents[:, None]  # one "path" of one point per group
        keep: Sequence[int] = (0,)
        ends = None
    else:
        w_a, w_b = endpoints(ctx, item, gen)
        ends = torch.stack([w_a, w_b], 1) if cfg.method in ("linear", "plan") else None  # [P, 2, ...] sampled
        if cfg.method == "linear" or cfg.plan.optim_steps == 0:
            paths = linear_paths(w_a, w_b, cfg.plan.n_steps)
        else:
            fused = False if has_fused_toggle(ctx.G) else None
            plan_cfg = replace(cfg.plan, chunk=ctx.chunk, amp=ctx.amp, fused_modconv=fused)
            labels = torch.full((w_a.shape[0],), item.label, dtype=torch.long, device=w_a.device)
            id_net = ctx.guides.identity if ctx.id_net is None else ctx.id_net
            paths = plan_paths(ctx.G, w_a, w_b, labels, id_net, ctx.guides.classifier, plan_cfg).ws
        keep = ctx.keep
    images = render_paths(ctx.G, paths[:, list(keep)].contiguous(), chunk=ctx.chunk)  # [P, S, C, R, R]
    n_paths, n_keep = images.shape[:2]
    u8 = to_uint8(images.flatten(0, 1))  # [P*S, C, R, R]
    seen = from_uint8(u8).to(ctx.device)  # both gates see exactly the bytes written
    dist = ctx.gate.distances(seen)
    private = ctx.gate.accept(dist).cpu()
    record = {
        "path": torch.arange(n_paths).repeat_interleave(n_keep),
        "step": torch.tensor(list(keep), dtype=torch.long).repeat(n_paths),
        "distance": dist,
        "private": private.to(torch.uint8),
    }
    ok = private
    if ctx.label_gate is not None:
        prob = ctx.label_gate.probabilities(seen, item.label)
        labelled = ctx.label_gate.accept(prob)
        record["label_prob"] = prob
        record["labelled"] = labelled.to(torch.uint8)
        ok = ok & labelled
    record["accepted"] = ok.to(torch.uint8)
    record["images"] = u8[ok.to(u8.device)].cpu().contiguous()
    if ends is not None:
        record["endpoint_patient"], record["endpoint_confidence"] = endpoint_patients(ctx, ends)
    return record


def endpoint_patients(ctx: Context, ends: Tensor) -> tuple[Tensor, Tensor]:
    """The training patient the identity guide rates most likely at each end of each path, and that probability.

    Sampled endpoints show no real patient by construction; this is the patient they look most like to the guide,
    for the private sidecar. Indices only (classes of :func:`latentwalk.guides.identity_classes`), never names.

    Args:
        ends: the two ends of each path ``[P, 2, w_dim]`` or ``[P, 2, num_ws, w_dim]``.

    Returns:
        ``(patient index [P, 2] int64, its softmax probability [P, 2] float32)``, on the CPU.
    """
    from latentwalk.paths import render_paths

    images = render_paths(ctx.G, ends.contiguous(), chunk=ctx.chunk)  # [P, 2, C, R, R]
    seen = from_uint8(to_uint8(images.flatten(0, 1))).to(ctx.device)  # the bytes an image there would have
    with torch.no_grad():
        prob = torch.cat([ctx.guides.identity(part).float().softmax(1) for part in seen.split(ctx.chunk)])
    conf, who = prob.max(1)  # [2P]
    return who.view(-1, 2).cpu(), conf.view(-1, 2).cpu()


def to_uint8(images: Tensor) -> Tensor:
    """[-1, 1] float images to uint8 (round to nearest)."""
    return ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def from_uint8(images: Tensor) -> Tensor:
    return images.float() / 127.5 - 1


def item_file(work: Path, item: Item) -> Path:
    return work / "items" / f"{item.name}.safetensors"


def write_item(path: Path, result: dict[str, Tensor], seed: int) -> None:
    from safetensors.torch import save

    atomic_write_bytes(path, save(result, metadata={"seed": str(seed)}))


def read_item(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(path.read_bytes())
    except (SafetensorError, OSError) as e:
        raise DataError(f"work item {path} is unreadable ({e}); delete it and rerun to recompute it") from e
