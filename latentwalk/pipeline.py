"""``latentwalk generate``: a synthetic dataset from a generator, guides and the real data, resumable and sharded.

The run is split into *work items*. An item is a fixed number of paths (``paths_per_item``) of one label with its own
seed, derived from ``(seed, round, label, index)``; for ``ksame`` an item is a run of k-same groups. Every candidate
image of an item is passed through the privacy gate (:mod:`latentwalk.gate`) and the item's result (accepted images as
uint8, every candidate's nearest-real distance and decision) is written atomically to ``OUT/.work/items/``. Items are
independent, so a run can be killed at any moment and rerun: finished items are read back, the rest computed, and the
final files are the same bytes as those of an uninterrupted run. Under ``torchrun`` the items of each round are dealt
to the ranks (item ``j`` to rank ``j % world``); every rank writes its own items and rank 0 merges.

Rounds: round 0 plans enough items for ``per_label`` images per label if nothing were rejected; when the gate rejects
some, later rounds (up to ``max_rounds``) plan more items for the labels still short, sized by the acceptance rate so
far. The merge takes, per label, the first ``per_label`` accepted images in (round, item, path, step) order.

Output (``OUT``): ``images/<label>/<id>.png`` (8-bit gray or RGB), ``manifest.csv``, ``run.json`` (written last: its
presence marks a finished run) and ``DATASET_CARD.md``. No real file name, identity or image is written: the
dataset, latents and guides paths in the recorded configuration are withheld (their SHA-256 fingerprints identify
them), and ids are sequential.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from gan_zoo.sampling import has_fused_toggle
from gan_zoo.seeds import sequence_seed
from latentwalk.config import StageConfig
from latentwalk.distances import mean_pairwise_distance
from latentwalk.errors import ConfigError, DataError, DistributedError, LatentwalkError
from latentwalk.gate import GATE_SPACES, Gate, LabelGate, build_gate, build_label_gate
from latentwalk.io import (
    atomic_write_bytes,
    atomic_write_text,
    changed_keys,
    read_json_dict,
    sha256_file,
    write_csv,
    write_json,
)
from latentwalk.outputs import claim_dir, mark_dir, replace_dir
from latentwalk.provenance import versions

__all__ = [
    "METHODS",
    "MANIFEST_COLUMNS",
    "GenerateConfig",
    "GenerateResult",
    "load_config_file",
    "generate",
    "parse_keep",
    "public_config",
    "real_reference",
    "check_guides",
    "resolve_spec_path",
    "dataset_card",
]

METHODS = ("linear", "plan", "ksame", "ksame-plan")
GATE_SPLITS = ("train", "all")
RUN_FORMAT = "latentwalk.synthetic-dataset"
RUN_FORMAT_VERSION = 1
WORK_DIR = ".work"
MANIFEST_COLUMNS = (
    "id",
    "file",
    "label",
    "label_name",
    "method",
    "path_id",
    "step",
    "seed",
    "nearest_real_distance",
    "gate",
)
WITHHELD = "<withheld>"
_SAMPLE_BATCH = 64  # endpoint draws per pass (fixed: the drawn points depend on it)
_MAX_DRAWS_PER_POINT = 1000  # endpoint_filter gives up after this many draws per endpoint wanted
_PAIR_ORDER = 1 << 20  # the "round" slot of the seed that orders ksame-plan's centroid pairs (no real round reaches it)
_MAX_GROWTH = 8  # a top-up round plans at most this many times the items of round 0 for a label


# ---------------------------------------------------------------------------------------------------------------
# Configuration.


@dataclass(frozen=True)
class GenerateConfig(StageConfig):
    """Options of ``latentwalk generate``; the single source of defaults for the API, the TOML file and the flags."""

    STAGE: ClassVar[str] = "generate"

    gan: str = "demo:cxr"  # generator spec (gan_zoo.load): demo:cxr, lite:PATH, stylegan:PATH.pkl, module:...
    guides: str = ""  # guides folder (latentwalk guides train); required
    data: str = ""  # the real dataset folder (labels, patients, the gate's reference images); required
    layout: str = "auto"  # dataset layout (latentwalk data check --help)
    latents: str | None = None  # inverted real latents (latentwalk gan invert); required by ksame and ksame-plan
    method: str = "plan"  # linear | plan | ksame | ksame-plan
    per_label: int = 50  # images wanted per label (class balance); ksame: at most one per k-same group
    n_steps: int = 10  # points per path including both endpoints
    keep: str = "interior"  # path points written: "interior" (not the endpoints), "all", or indices "1,3,5"
    paths_per_item: int = 8  # paths optimised together in one work item (ksame: groups per item)
    seed: int = 0  # every item's seed derives from it
    truncation_psi: float = 1.0  # linear/plan: truncation of the sampled endpoints (1 = off)
    endpoint_filter: bool = True  # linear/plan: keep only drawn endpoints the class guide assigns to the label
    optim_steps: int = 200  # plan/ksame-plan: Adam steps per path (PLAN's reference: 500)
    lr: float = 0.1  # plan/ksame-plan: Adam learning rate
    weights: tuple[float, float, float] = (0.1, 1.0, 1.0)  # plan/ksame-plan: (privacy, equidistance, class)
    chunk: int | None = None  # images per synthesis + classifier pass; None = 64 on CPU/MPS, sized to memory on CUDA
    k: int = 5  # ksame/ksame-plan: minimum patients per group
    ksame_method: str = "greedy"  # ksame/ksame-plan: greedy | kmeans
    ksame_spread: str = "mean"  # ksame/ksame-plan: centroid = mean | restore (members' typical distance from the mean)
    gate_space: str = "identity"  # nearest-real distance space: identity | lpips | ssim
    gate_threshold: float | None = None  # reject below it; None = the gate_percentile of real-to-real distances
    gate_percentile: float = 5.0  # percentile of real nearest-other-patient distances used as the threshold
    gate_split: str = "train"  # real images the gate compares with: train | all
    label_gate: bool = True  # write a candidate only when the class guide gives its label >= label_threshold
    label_threshold: float | None = None  # None = the label_percentile of real validation images' true-label prob.
    label_percentile: float = 5.0  # derived label threshold: this percentile over the real validation split
    max_rounds: int = 4  # rounds of items (later rounds top up labels short after gate rejections)
    device: str = "auto"  # auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps
    amp: bool | None = None  # plan/ksame-plan: bfloat16 autocast; None = on for CUDA, off elsewhere

    def __post_init__(self) -> None:
        for name in ("per_label", "n_steps", "paths_per_item", "optim_steps", "k", "max_rounds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
        for name, low in (("per_label", 1), ("n_steps", 3), ("paths_per_item", 1), ("k", 1), ("max_rounds", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if self.optim_steps < 0:
            raise ConfigError(f"optim_steps must be >= 0, got {self.optim_steps}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.method not in METHODS:
            raise ConfigError(f'unknown method "{self.method}"; expected one of {", ".join(METHODS)}')
        if self.gate_space not in GATE_SPACES:
            raise ConfigError(f'unknown gate_space "{self.gate_space}"; expected one of {", ".join(GATE_SPACES)}')
        if self.gate_split not in GATE_SPLITS:
            raise ConfigError(f'unknown gate_split "{self.gate_split}"; expected one of {", ".join(GATE_SPLITS)}')
        if self.ksame_method not in ("greedy", "kmeans"):
            raise ConfigError(f'unknown ksame_method "{self.ksame_method}"; expected greedy or kmeans')
        if self.ksame_spread not in ("mean", "restore"):
            raise ConfigError(f'unknown ksame_spread "{self.ksame_spread}"; expected mean or restore')
        for name in ("gan", "guides", "data", "layout", "device", "keep"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a string, got {getattr(self, name)!r}")
        if self.latents is not None and not isinstance(self.latents, str):
            raise ConfigError(f"latents must be a path string or None, got {self.latents!r}")
        if self.chunk is not None and (isinstance(self.chunk, bool) or not isinstance(self.chunk, int)):
            raise ConfigError(f"chunk must be an integer >= 1 or None (auto), got {self.chunk!r}")
        if self.chunk is not None and self.chunk < 1:
            raise ConfigError(f"chunk must be >= 1, got {self.chunk}")
        if not isinstance(self.endpoint_filter, bool):
            raise ConfigError(f"endpoint_filter must be true or false, got {self.endpoint_filter!r}")
        if self.amp is not None and not isinstance(self.amp, bool):
            raise ConfigError(f"amp must be true, false or unset (auto), got {self.amp!r}")
        if not isinstance(self.label_gate, bool):
            raise ConfigError(f"label_gate must be true or false, got {self.label_gate!r}")
        if not isinstance(self.label_percentile, (int, float)) or not 0 <= self.label_percentile <= 100:
            raise ConfigError(f"label_percentile must be in [0, 100], got {self.label_percentile!r}")
        lt = self.label_threshold
        if lt is not None and (isinstance(lt, bool) or not isinstance(lt, (int, float)) or not 0 <= lt <= 1):
            raise ConfigError(f"label_threshold must be a probability in [0, 1] or unset (derived), got {lt!r}")
        for name in ("truncation_psi", "lr", "gate_percentile", "label_percentile"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))  # 1 and 1.0 are one configuration
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0 < self.gate_percentile < 100:
            raise ConfigError(f"gate_percentile must be in (0, 100), got {self.gate_percentile}")
        t = self.gate_threshold
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0):
            raise ConfigError(f"gate_threshold must be a number >= 0 or unset (derived), got {t!r}")
        w = tuple(self.weights) if isinstance(self.weights, (tuple, list)) else None
        if w is None or len(w) != 3 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in w):
            raise ConfigError(f"weights must be three numbers (privacy, equidistance, class), got {self.weights!r}")
        object.__setattr__(self, "weights", tuple(float(x) for x in w))
        if t is not None:
            object.__setattr__(self, "gate_threshold", float(t))
        if lt is not None:
            object.__setattr__(self, "label_threshold", float(lt))
        parse_keep(self.keep, self.n_steps)  # raises on a bad selection

    def check_inputs(self) -> None:
        """Raise :class:`ConfigError` when a required input for the method is missing."""
        if not self.guides:
            raise ConfigError("guides is required: a folder written by `latentwalk guides train` (--guides DIR)")
        if not self.data:
            raise ConfigError("data is required: the real dataset the guides were trained on (--data DIR)")
        if self.method in ("ksame", "ksame-plan") and not self.latents:
            raise ConfigError(
                f"method {self.method} needs the inverted real latents (--latents FILE from `latentwalk gan invert`)"
            )


def parse_keep(keep: str, n_steps: int) -> tuple[int, ...]:
    """Path points to write: ``"interior"``, ``"all"`` or comma-separated indices in ``[0, n_steps)``."""
    if not isinstance(keep, str):
        raise ConfigError(f'keep must be "interior", "all" or indices like "1,3,5", got {keep!r}')
    if keep == "interior":
        return tuple(range(1, n_steps - 1))
    if keep == "all":
        return tuple(range(n_steps))
    try:
        steps = tuple(int(part) for part in keep.split(","))
    except ValueError:
        raise ConfigError(f'keep must be "interior", "all" or indices like "1,3,5", got "{keep}"') from None
    if not steps or len(set(steps)) != len(steps) or any(s < 0 or s >= n_steps for s in steps):
        raise ConfigError(f"keep indices must be distinct and in [0, {n_steps}) for n_steps={n_steps}, got {keep}")
    return tuple(sorted(steps))


PATH_FIELDS = ("guides", "data", "latents")  # resolved against the TOML file's folder when relative


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a TOML run file into option values (keys may use ``-`` or ``_``; relative paths are the file's).

    Besides :class:`GenerateConfig`'s fields the file may hold ``out`` (the output folder), returned as given.

    Raises:
        ConfigError: unreadable TOML, unknown keys, or tables (the file is flat: ``key = value`` lines).
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid TOML ({e})") from None
    values = {key.replace("-", "_"): value for key, value in raw.items()}
    tables = sorted(k for k, v in values.items() if isinstance(v, dict))
    if tables:
        raise ConfigError(f"config file {path}: sections {tables} are not used; write every option as key = value")
    GenerateConfig.from_dict({k: v for k, v in values.items() if k != "out"})  # unknown keys, bad values
    for key in PATH_FIELDS:
        if isinstance(values.get(key), str) and values[key] and not Path(values[key]).is_absolute():
            values[key] = str((path.parent / values[key]).resolve())
    gan = values.get("gan")
    if isinstance(gan, str):
        values["gan"] = resolve_spec_path(gan, path.parent)
    return values


def resolve_spec_path(spec: str, base: Path) -> str:
    """Make the path inside a ``lite:``/``stylegan:``/bare-path spec absolute, relative to ``base``."""
    scheme, sep, rest = spec.partition(":")
    if sep and scheme in ("lite", "stylegan"):
        return f"{scheme}:{(base / rest).resolve()}" if not Path(rest).is_absolute() else spec
    if sep and scheme in ("demo", "module"):
        return spec
    return str((base / spec).resolve()) if not Path(spec).is_absolute() else spec


def _public_spec(spec: str) -> str:
    scheme, sep, _ = spec.partition(":")
    if sep and scheme in ("demo", "module"):
        return spec
    return f"{scheme}:{WITHHELD}" if sep and scheme in ("lite", "stylegan") else WITHHELD


def public_config(cfg: GenerateConfig) -> dict[str, Any]:
    """The configuration as written to ``run.json``: paths to private inputs withheld."""
    d = cfg.to_dict()
    d["weights"] = list(cfg.weights)
    for key in PATH_FIELDS:
        if d[key]:
            d[key] = WITHHELD
    d["gan"] = _public_spec(cfg.gan)
    return d


# ---------------------------------------------------------------------------------------------------------------
# Work items.


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
class _Context:
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


def _per_item(ctx: _Context) -> int:
    return ctx.cfg.paths_per_item * len(ctx.keep)


def plan_round(
    ctx: _Context, round_: int, stats: dict[int, tuple[int, int]], planned: dict[int, int] | None = None
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
        first = math.ceil(cfg.per_label / _per_item(ctx))
        if round_ == 0:
            n = first
        else:
            rate = max(accepted / candidates, 0.05) if candidates else 1.0
            n = min(math.ceil(need / (_per_item(ctx) * rate)), _MAX_GROWTH * first)
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


def _distinct_pairs(n_groups: int, seed: int, label: int) -> Tensor:
    """Every unordered pair of ``n_groups`` groups once, ``[n(n-1)/2, 2]``, in an order shuffled by (seed, label)."""
    pairs = torch.combinations(torch.arange(n_groups), r=2)  # [P, 2], i < j
    gen = torch.Generator().manual_seed(item_seed(seed, _PAIR_ORDER, label, 0))
    return pairs[torch.randperm(pairs.shape[0], generator=gen)]


def _endpoints(ctx: _Context, item: Item, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    from latentwalk.paths import sample_w

    cfg, P = ctx.cfg, ctx.cfg.paths_per_item
    if cfg.method in ("linear", "plan"):
        w = sample_w(
            ctx.G,
            2 * P,
            truncation_psi=cfg.truncation_psi,
            generator=gen,
            label=item.label,
            class_net=ctx.guides.classifier if cfg.endpoint_filter else None,
            batch=_SAMPLE_BATCH,
            max_draws=_MAX_DRAWS_PER_POINT * 2 * P,  # a generator may rarely make a label (e.g. a mild DR grade)
        )  # [2P, w_dim]
        return w[0::2], w[1::2]
    cents = ctx.centroids[item.label]  # [groups, ...]
    rows = ctx.pairs[item.label][list(item.groups)]  # [p, 2] distinct group pairs of this item
    return cents[rows[:, 0]], cents[rows[:, 1]]


def _run_item(ctx: _Context, item: Item) -> dict[str, Tensor]:
    """Candidates of one item, their nearest-real distances and gate decisions (accepted images as uint8)."""
    from latentwalk.paths import PlanConfig, linear_paths, plan_paths, render_paths

    cfg = ctx.cfg
    gen = torch.Generator().manual_seed(item.seed)
    if cfg.method == "ksame":
        cents = ctx.centroids[item.label][list(item.groups)]  # [g, ...]
        paths = cents[:, None]  # one "path" of one point per group
        keep: Sequence[int] = (0,)
    else:
        w_a, w_b = _endpoints(ctx, item, gen)
        if cfg.method == "linear" or cfg.optim_steps == 0:
            paths = linear_paths(w_a, w_b, cfg.n_steps)
        else:
            plan_cfg = PlanConfig(
                n_steps=cfg.n_steps,
                optim_steps=cfg.optim_steps,
                lr=cfg.lr,
                weights=cfg.weights,
                chunk=ctx.chunk,
                amp=ctx.amp,
                fused_modconv=False if has_fused_toggle(ctx.G) else None,
            )
            labels = torch.full((w_a.shape[0],), item.label, dtype=torch.long, device=w_a.device)
            paths = plan_paths(ctx.G, w_a, w_b, labels, ctx.guides.identity, ctx.guides.classifier, plan_cfg).ws
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
    return record


def to_uint8(images: Tensor) -> Tensor:
    """[-1, 1] float images to uint8 (round to nearest)."""
    return ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def from_uint8(images: Tensor) -> Tensor:
    return images.float() / 127.5 - 1


def _item_file(work: Path, item: Item) -> Path:
    return work / "items" / f"{item.name}.safetensors"


def _write_item(path: Path, result: dict[str, Tensor], seed: int) -> None:
    from safetensors.torch import save

    atomic_write_bytes(path, save(result, metadata={"seed": str(seed)}))


def _read_item(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(path.read_bytes())
    except (SafetensorError, OSError) as e:
        raise DataError(f"work item {path} is unreadable ({e}); delete it and rerun to recompute it") from e


# ---------------------------------------------------------------------------------------------------------------
# Distributed helpers (torchrun).


@dataclass(frozen=True)
class _World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Run one phase on every rank, then agree on its outcome: when any rank failed, every rank stops with an
        error naming that rank and its message (the failed rank raises its own error), instead of the others
        waiting at the next collective. Also a barrier."""
        if self.size <= 1:
            yield
            return
        import torch.distributed as dist

        error: BaseException | None = None
        try:
            yield
        except Exception as e:  # reported to every rank below, then raised again here
            error = e
        message = None if error is None else (str(error) if isinstance(error, LatentwalkError) else repr(error))
        statuses: list[str | None] = [None] * self.size
        dist.all_gather_object(statuses, message)
        if error is not None:
            raise error
        failed = [(rank, msg) for rank, msg in enumerate(statuses) if msg is not None]
        if failed:
            rank, msg = failed[0]
            raise DistributedError(f"rank {rank} failed during {name}, so every rank stopped: {msg}")


DIST_TIMEOUT_ENV = "LATENTWALK_DIST_TIMEOUT"  # seconds a rank waits for the others at a collective (default 1800)


def _dist_timeout() -> float:
    text = os.environ.get(DIST_TIMEOUT_ENV, "1800")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{DIST_TIMEOUT_ENV} must be a positive number of seconds, got {text!r}")
    return value


@contextlib.contextmanager
def _world(device_name: str) -> Iterator[_World]:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1 (gloo on CPU, NCCL on CUDA)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        yield _World()
        return
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_name != "cpu" and torch.cuda.is_available()
    created = not dist.is_initialized()
    if created:
        if cuda:
            torch.cuda.set_device(local)
        timeout = datetime.timedelta(seconds=_dist_timeout())
        dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=timeout)
    try:
        yield _World(dist.get_rank(), dist.get_world_size(), local)
    finally:
        if created:
            dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------------------------
# Setup: inputs, checks, gate.


def _guides_fingerprint(folder: Path) -> dict[str, str]:
    return {
        name: sha256_file(folder / name)
        for name in ("identity.safetensors", "identity.json", "class.safetensors", "class.json")
        if (folder / name).is_file()
    }


def _check_dataset_size(index: Any, resolution: int) -> None:
    from PIL import Image

    small = []
    for record in index.records:
        with Image.open(record.file) as im:
            if min(im.size) < resolution:
                small.append(im.size)
    if small:
        raise ConfigError(
            f"{len(small)} real image(s) are smaller than the generator's {resolution} px (e.g. {small[0][0]}x"
            f"{small[0][1]}); the gate would compare with upsampled copies: use a generator of their resolution"
        )


def check_guides(guides: Any, G: Any, index: Any) -> None:
    """Raise :class:`ConfigError` unless ``guides`` fit ``G`` (resolution, channels, labels) and ``index``."""
    from latentwalk.guides import check_contract, identity_classes

    check_contract(guides, G, label_names=index.label_names)
    n_train = len(identity_classes(index))
    if guides.n_identities != n_train:
        raise ConfigError(
            f"the identity guide knows {guides.n_identities} patients but the dataset has {n_train} training "
            "patients; train the guides on this dataset (latentwalk guides train)"
        )


def real_reference(index: Any, G: Any, split: str = "train", progress: bool = False) -> tuple[Tensor, list[str]]:
    """The real images a gate compares with, at the generator's resolution and channels, and their patients.

    Args:
        index: the real :class:`~latentwalk.data.records.DatasetIndex`, with identities.
        G: the generator (``img_resolution``, ``img_channels``).
        split: ``"train"`` (the patients the generator and guides learnt from) or ``"all"``.

    Returns:
        ``(images [M, C, R, R] float32 in [-1, 1] on the CPU, patient identity of each)``; keep both in memory only.

    Raises:
        DataError: no images in ``split``, images without identity.
        ConfigError: images smaller than the generator's resolution.
    """
    from latentwalk.data.preprocess import load_tensors

    if split not in GATE_SPLITS:
        raise ConfigError(f'unknown gate split "{split}"; expected one of {", ".join(GATE_SPLITS)}')
    reference = index if split == "all" else index.subset("train")
    if len(reference) == 0:
        raise DataError(f"the dataset has no {split} images for the gate to compare with; split it first")
    reference.require_identities("the privacy gate")
    _check_dataset_size(reference, G.img_resolution)
    real, _ = load_tensors(reference, G.img_resolution, channels=G.img_channels, progress=progress)
    return real, [r.identity for r in reference.records]


def _label_gate(cfg: GenerateConfig, index: Any, G: Any, guides: Any, device: torch.device, progress: bool):
    """The label gate, calibrated on the real validation split (the class guide never trained on it); on the
    training split, with a warning, when the dataset has no validation split."""
    import warnings

    from latentwalk.data.preprocess import load_tensors

    split = "val"
    images = index.subset("val")
    if len(images) == 0 and cfg.label_threshold is None:
        split, images = "train", index.subset("train")
        warnings.warn(
            "the dataset has no validation split: the label gate is calibrated on training images, which the class "
            "guide has seen (a stricter threshold); split the data or pass label_threshold",
            UserWarning,
            stacklevel=3,
        )
    x, y = load_tensors(images, G.img_resolution, channels=G.img_channels, progress=progress)
    return build_label_gate(guides.classifier, x.to(device), y.to(device), threshold=cfg.label_threshold,
                            percentile=cfg.label_percentile, split=split)  # fmt: skip


def _auto_chunk(device: torch.device) -> int:
    """Images per pass: 64 on CPU/MPS; on CUDA about half the free memory at ~24 MB per 256-px image, in [16, 512]."""
    if device.type != "cuda":
        return 64
    free, _ = torch.cuda.mem_get_info(device)
    return int(min(512, max(16, free // 2 // (24 << 20) // 8 * 8)))


@dataclass
class _Setup:
    ctx: _Context
    fingerprint: str
    inputs: dict[str, Any]
    gate_images: int
    real_diversity: float  # mean pairwise pixel distance of the real reference images (for the card)


def _setup(cfg: GenerateConfig, world: _World, progress: bool, lpips_net: Any = None) -> _Setup:
    import gan_zoo
    from gan_zoo.invert import generator_sha256
    from latentwalk.data import open_dataset
    from latentwalk.devices import resolve_device
    from latentwalk.guides import load_guides

    cfg.check_inputs()
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world.size > 1:
        device = torch.device("cuda", world.local_rank)
    G = gan_zoo.load(cfg.gan, device=device)
    guides_dir = Path(cfg.guides)
    guides = load_guides(guides_dir, device=device)
    index = open_dataset(cfg.data, cfg.layout)
    check_guides(guides, G, index)
    real, patients = real_reference(index, G, cfg.gate_split, progress)
    gate = build_gate(
        cfg.gate_space,
        real.to(device),
        patients,
        guides=guides,
        threshold=cfg.gate_threshold,
        percentile=cfg.gate_percentile,
        lpips_net=lpips_net,
    )
    labels = tuple(range(len(index.label_names)))
    keep = (0,) if cfg.method == "ksame" else parse_keep(cfg.keep, cfg.n_steps)
    amp = device.type == "cuda" if cfg.amp is None else cfg.amp
    if amp and device.type != "cuda":
        raise ConfigError(f"amp needs CUDA, but the run is on {device}; leave amp unset or false")
    label_gate = _label_gate(cfg, index, G, guides, device, progress) if cfg.label_gate else None
    ctx = _Context(
        cfg,
        G,
        guides,
        gate,
        labels,
        tuple(index.label_names),
        keep,
        cfg.chunk or _auto_chunk(device),
        amp,
        device,
        label_gate,
    )
    inputs: dict[str, Any] = {
        "generator": {"spec": _public_spec(cfg.gan), "sha256": generator_sha256(G)},
        "guides": _guides_fingerprint(guides_dir),
        "dataset": {
            "images_sha256": hashlib.sha256(to_uint8(real).numpy().tobytes()).hexdigest(),
            "gate_images": int(real.shape[0]),
        },
    }
    if cfg.method in ("ksame", "ksame-plan"):
        from latentwalk.ksame import KSameConfig, latent_centroids

        kcfg = KSameConfig(k=cfg.k, method=cfg.ksame_method, spread=cfg.ksame_spread)
        centroids, ctx.ksame_summary, inputs["latents_sha256"] = latent_centroids(
            cfg.latents, G, index, labels, kcfg, min_groups=2 if cfg.method == "ksame-plan" else 1
        )
        ctx.centroids = {label: c.to(device) for label, c in centroids.items()}
        ctx.pairs = {label: _distinct_pairs(c.shape[0], cfg.seed, label) for label, c in centroids.items()}
    runtime = {"device_type": device.type, "amp": amp, "versions": versions()}  # a resume must compute the same
    full = {"config": cfg.to_dict(), "inputs": inputs, "runtime": runtime}
    fingerprint = hashlib.sha256(json.dumps(full, sort_keys=True, default=list).encode()).hexdigest()
    return _Setup(ctx, fingerprint, inputs, int(real.shape[0]), mean_pairwise_distance(real))


# ---------------------------------------------------------------------------------------------------------------
# Output folder states: new, unfinished (resume), finished.


def _diff_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Settings that differ (:func:`latentwalk.io.changed_keys`); chunk and amp unset in the new config were resolved
    at run time in the old one and do not count."""
    return changed_keys(old, new, ignore=[k for k in ("chunk", "amp") if new.get(k) is None])


_GENERATE = "generate"
# what a generate run writes while it runs (see latentwalk.outputs); the marker lists the exact files once it ends
_RUN_PATTERNS = ("images/*/s*_*.png", "images/*/.*.tmp", ".*.tmp", f"{WORK_DIR}/*", "manifest.csv", "run.json",
                 "DATASET_CARD.md")  # fmt: skip


def _inputs(cfg: GenerateConfig) -> dict[str, str | None]:
    """The inputs a run reads (the output stays apart from each); a ``lite:``/bare generator path among them."""
    gan = cfg.gan.split(":", 1)[1] if cfg.gan.startswith(("lite:", "stylegan:")) else cfg.gan
    gan = gan if ":" not in gan and Path(gan).exists() else None
    return {"data": cfg.data, "guides": cfg.guides, "latents": cfg.latents, "generator": gan}


def check_out_dir(out: Path, cfg: GenerateConfig, overwrite: bool = False) -> str:
    """Refuse, before the slow setup, an output folder that overlaps an input, cannot be written, or holds
    something this run may not replace or resume (:func:`latentwalk.outputs.claim_dir`)."""
    return claim_dir(out, overwrite=overwrite, inputs=_inputs(cfg), resumable=_GENERATE, resume=True)


def _open_out(out: Path, cfg: GenerateConfig, fingerprint: str, chunk: int, overwrite: bool) -> str:
    """Prepare ``out`` on rank 0; returns ``"new"``, ``"resume"`` or ``"done"``."""
    claim = check_out_dir(out, cfg, overwrite)
    if claim == "replace":
        replace_dir(out)
    run = read_json_dict(out / "run.json")
    work = out / WORK_DIR / "config.json"
    if out.is_dir() and (out / WORK_DIR).is_dir() and not work.is_file():
        shutil.rmtree(out / WORK_DIR)  # killed before its first record: nothing finished in it
    if run is not None and run.get("format") == RUN_FORMAT:
        if run.get("fingerprint") == fingerprint:
            shutil.rmtree(out / WORK_DIR, ignore_errors=True)  # died after run.json, before the clean-up
            mark_dir(out, _GENERATE)
            return "done"
        diff = _diff_keys(run.get("config", {}), public_config(cfg))
        what = f"other settings ({', '.join(diff)})" if diff else "other inputs (generator, guides, data or latents)"
        raise ConfigError(
            f"{out} holds a finished run made with {what}; choose a new folder or pass --overwrite to replace it"
        )
    if work.is_file():
        old = read_json_dict(work) or {}
        if old.get("fingerprint") != fingerprint:
            diff = _diff_keys(old.get("config", {}), public_config(cfg))
            what = (
                f"different settings ({', '.join(diff)})"
                if diff
                else "different inputs (generator, guides, data, latents) or another device or library version"
            )
            raise ConfigError(
                f"the unfinished run in {out} used {what}; rerun with the same settings to resume it, or pass "
                "--overwrite to start over"
            )
        return "resume"
    mark_dir(out, _GENERATE, files=(), patterns=_RUN_PATTERNS)
    write_json(work, {"fingerprint": fingerprint, "config": public_config(cfg), "chunk": chunk})  # no real paths
    (out / WORK_DIR / "items").mkdir(parents=True, exist_ok=True)
    return "new"


# ---------------------------------------------------------------------------------------------------------------
# The run.


@dataclass(frozen=True)
class GenerateResult:
    """What :func:`generate` wrote: the output folder, images per label, rejected candidates, and run.json."""

    out_dir: Path
    written: dict[str, int]
    rejected: dict[str, int]
    run: dict[str, Any]
    resumed: bool = False
    already_done: bool = False


def _stats(work: Path, items: Sequence[Item]) -> dict[int, tuple[int, int]]:
    stats: dict[int, tuple[int, int]] = {}
    for item in items:
        rec = _read_item(_item_file(work, item))
        acc, cand = stats.get(item.label, (0, 0))
        stats[item.label] = (acc + int(rec["accepted"].sum()), cand + int(rec["accepted"].numel()))
    return stats


def generate(
    cfg: GenerateConfig,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: bool = False,
    lpips_net: Any = None,
    echo: Any = None,
) -> GenerateResult:
    """Generate a synthetic dataset into ``out_dir`` (see the module docstring); resumes an unfinished run there.

    Args:
        cfg: options (paths absolute or relative to the working folder).
        out_dir: output folder: new/empty, an unfinished run of the same configuration (resumed), or a finished one
            (nothing to do).
        overwrite: replace whatever ``out_dir`` holds.
        progress: show a progress bar (rank 0 only).
        lpips_net: an ``lpips.LPIPS`` for ``gate_space="lpips"`` instead of loading AlexNet's weights.
        echo: ``callable(str)`` for one-line messages (rank 0 only); ``None`` = silent.

    Returns:
        :class:`GenerateResult` (on every rank; ``run`` is the content of run.json).

    Raises:
        ConfigError: missing inputs, mismatched guides/generator/dataset/latents, an output folder holding another
            run or something else, an unwritable folder.
        DataError: unusable dataset or latents, too few k-same groups, unreadable work items.
        MissingWeightsError: absent weights (generator, guides, LPIPS backbone).
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    out = Path(out_dir)
    say = echo if echo is not None else (lambda _msg: None)
    with _world(cfg.device) as world:
        lead = world.rank == 0
        with world.phase("setup"):
            if lead:
                check_out_dir(out, cfg, overwrite)  # before the slow setup
            setup = _setup(cfg, world, progress and lead)
            ctx = setup.ctx
            state = "new"
            if lead:
                state = _open_out(out, cfg, setup.fingerprint, ctx.chunk, overwrite)
        if world.size > 1:
            import torch.distributed as dist

            box = [state]
            dist.broadcast_object_list(box, src=0)
            state = box[0]
        if state == "done":
            run = read_json_dict(out / "run.json") or {}
            if lead:
                say(f"{out} already holds this finished run; nothing to do")
            return GenerateResult(out, run["counts"]["written"], run["counts"]["rejected"], run, already_done=True)
        work = out / WORK_DIR
        saved = read_json_dict(work / "config.json") or {}
        ctx.chunk = int(saved.get("chunk", ctx.chunk))  # a resumed run keeps the first run's pass size
        if lead:
            say(f"{'resuming' if state == 'resume' else 'starting'} {cfg.method} run in {out}")
            say(f"gate: {ctx.gate.space}, threshold {ctx.gate.threshold:.4g} ({_threshold_origin(ctx.gate)})")

        wanted = len(ctx.labels) * cfg.per_label
        bar = tqdm(total=wanted, desc="generating", unit="img", disable=None if (progress and lead) else True)
        all_items: list[Item] = []
        rejected = 0
        with bar:
            for round_ in range(cfg.max_rounds):
                planned = {label: sum(i.label == label for i in all_items) for label in ctx.labels}
                items = plan_round(ctx, round_, _stats(work, all_items), planned)
                if not items:
                    break
                with world.phase(f"round {round_}"):
                    for j, item in enumerate(items):
                        path = _item_file(work, item)
                        if j % world.size != world.rank:
                            continue
                        if path.is_file():
                            rec = _read_item(path)
                        else:
                            rec = _run_item(ctx, item)
                            _write_item(path, rec, item.seed)
                        n_acc = int(rec["accepted"].sum())
                        rejected += int(rec["accepted"].numel()) - n_acc
                        bar.update(min(n_acc, max(0, bar.total - bar.n)))
                        bar.set_postfix(rejected=rejected, refresh=False)
                all_items.extend(items)

        with world.phase("merge"):
            if lead:
                seconds = time.perf_counter() - started
                run = _merge(ctx, setup, out, all_items, state == "resume", seconds, world.size)
                shutil.rmtree(work, ignore_errors=True)
                mark_dir(out, _GENERATE)  # the exact files of the finished run
                say(_summary_line(run, out))
        run = read_json_dict(out / "run.json") or {}
        return GenerateResult(out, run["counts"]["written"], run["counts"]["rejected"], run, resumed=state == "resume")


def _threshold_origin(gate: Gate) -> str:
    if gate.derived:
        return f"{gate.percentile:g}th percentile of real nearest-other-patient distances"
    return "given"


def _summary_line(run: dict[str, Any], out: Path) -> str:
    c = run["counts"]
    total = sum(c["written"].values())
    rej = sum(c["rejected"].values())
    line = f"wrote {total} images ({', '.join(f'{k}: {v}' for k, v in c['written'].items())}); gate rejected {rej}"
    short = [k for k, v in c["written"].items() if v < c["wanted_per_label"]]
    if short:
        line += f"; fewer than the {c['wanted_per_label']} wanted for {', '.join(short)} (see DATASET_CARD.md)"
    return line


def _png_bytes(image: Tensor) -> bytes:
    from PIL import Image

    arr = image.permute(1, 2, 0).numpy()  # [R, R, C] uint8
    im = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _merge(
    ctx: _Context,
    setup: _Setup,
    out: Path,
    items: Sequence[Item],
    resumed: bool,
    seconds: float,
    processes: int,
) -> dict[str, Any]:
    """Select the first ``per_label`` accepted images per label; write images, manifest, card and run.json."""
    cfg, work = ctx.cfg, out / WORK_DIR
    images_dir = out / "images"
    if images_dir.exists():
        shutil.rmtree(images_dir)  # an interrupted merge: rewrite every file
    for stale in out.glob(".*.tmp"):  # temporary files of a merge killed mid-write
        stale.unlink()
    rows: list[dict[str, Any]] = []
    written: dict[str, int] = {}
    rejected: dict[str, int] = {}
    rejected_label: dict[str, int] = {}
    candidates: dict[str, int] = {}
    distances: list[float] = []
    kept_images: list[Tensor] = []  # for the diversity figure
    by_round: dict[int, dict[str, dict[str, int]]] = {}
    for label in ctx.labels:
        name = ctx.label_names[label]
        count = rej = rej_label = cand = 0
        for item in sorted((i for i in items if i.label == label), key=lambda i: (i.round, i.index)):
            rec = _read_item(_item_file(work, item))
            acc = rec["accepted"].bool()
            off_label = int((rec["labelled"] == 0).sum()) if "labelled" in rec else 0
            rej += int((~acc).sum())
            rej_label += off_label
            cand += int(acc.numel())
            r = by_round.setdefault(item.round, {"candidates": {}, "rejected": {}, "rejected_by_label_gate": {}})
            r["candidates"][name] = r["candidates"].get(name, 0) + int(acc.numel())
            r["rejected"][name] = r["rejected"].get(name, 0) + int((~acc).sum())
            r["rejected_by_label_gate"][name] = r["rejected_by_label_gate"].get(name, 0) + off_label
            kept = 0
            for c in range(acc.numel()):
                if not acc[c]:
                    continue
                image = rec["images"][kept]
                kept += 1
                if count >= cfg.per_label:
                    continue
                count += 1
                sid = f"s{label}_{count:06d}"
                rel = f"images/{label}/{sid}.png"
                atomic_write_bytes(out / rel, _png_bytes(image))
                kept_images.append(image)
                dist = float(rec["distance"][c])
                distances.append(dist)
                path_no = int(rec["path"][c])
                rows.append(
                    {
                        "id": sid,
                        "file": rel,
                        "label": label,
                        "label_name": name,
                        "method": cfg.method,
                        "path_id": f"{item.name}-g{item.groups[path_no]:04d}"
                        if cfg.method == "ksame"
                        else f"{item.name}-p{path_no:03d}",
                        "step": int(rec["step"][c]),
                        "seed": item.seed,
                        "nearest_real_distance": _fmt(dist),
                        "gate": "pass",
                    }
                )
        written[name], rejected[name], candidates[name] = count, rej, cand
        rejected_label[name] = rej_label
    write_csv(out / "manifest.csv", MANIFEST_COLUMNS, rows)
    counts = {"written": written, "rejected": rejected, "rejected_by_label_gate": rejected_label,
              "candidates": candidates}  # fmt: skip
    counts["by_round"] = [{"round": r, **by_round[r]} for r in sorted(by_round)]
    diversity = None
    if len(kept_images) >= 2:
        syn = mean_pairwise_distance(from_uint8(torch.stack(kept_images)))
        diversity = {"synthetic": _round6(syn), "real": _round6(setup.real_diversity),
                     "ratio": _round6(syn / setup.real_diversity) if setup.real_diversity > 0 else None}  # fmt: skip
    run = _run_record(ctx, setup, items, counts, distances, resumed, seconds, processes)
    run["diversity"] = diversity
    atomic_write_text(out / "DATASET_CARD.md", dataset_card(run))
    write_json(out / "run.json", run)  # last: marks the run finished
    return run


def _run_record(
    ctx: _Context,
    setup: _Setup,
    items: Sequence[Item],
    counts: dict[str, Any],
    distances: list[float],
    resumed: bool,
    seconds: float,
    processes: int,
) -> dict[str, Any]:
    cfg = ctx.cfg
    config = public_config(cfg)
    config["chunk"] = ctx.chunk
    config["amp"] = ctx.amp
    d = np.array(distances) if distances else np.zeros(0)
    return {
        "format": RUN_FORMAT,
        "format_version": RUN_FORMAT_VERSION,
        "fingerprint": setup.fingerprint,
        "config": config,
        "inputs": setup.inputs,
        "versions": versions(),
        "seeds": {"seed": cfg.seed, "items": {i.name: i.seed for i in items}},
        "gate": ctx.gate.to_dict(),
        "label_gate": None if ctx.label_gate is None else ctx.label_gate.to_dict(),
        "counts": {
            "wanted_per_label": cfg.per_label,
            **counts,  # written, rejected (by either gate), rejected_by_label_gate, candidates per label; by_round
            "rounds": 1 + max((i.round for i in items), default=0),
            "items": len(items),
        },
        "nearest_real_distance": {
            "min": _round6(d.min()) if d.size else None,
            "median": _round6(np.median(d)) if d.size else None,
            "max": _round6(d.max()) if d.size else None,
        },
        "ksame": ctx.ksame_summary,
        "label_names": list(ctx.label_names),
        "execution": {  # differs between runs of the same configuration; everything else is reproducible
            "seconds": round(seconds, 1),
            "processes": processes,
            "device": str(ctx.device),
            "resumed": resumed,
            "finished_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "platform": f"{platform.system()} {platform.machine()}; {sys.implementation.name}",
        },
    }


def _round6(x: Any) -> float:
    return float(f"{float(x):.6g}")


_METHOD_TEXT = {
    "linear": "images along straight lines in W between two generated points of the same predicted label (baseline)",
    "plan": "PLAN walks (Pennisi et al., MICCAI 2023): paths between two generated points of the same label, "
    "optimised so that an identity classifier cannot tell which patient an image shows while a class classifier "
    "keeps the label",
    "ksame": "k-same: one image per group of at least k patients, rendered from the mean latent of the group "
    "(k-SALSA style latent averaging, without its texture optimisation)",
    "ksame-plan": "PLAN walks between the mean latents of two k-same groups of the same label: the anchors stand for "
    "at least k patients each, and the walk restores the dataset size k-same alone loses",
}


def dataset_card(run: dict[str, Any]) -> str:
    """``DATASET_CARD.md`` from a run record (deterministic: no timings)."""
    cfg, counts, gate = run["config"], run["counts"], run["gate"]
    total = sum(counts["written"].values())
    lines = [
        "# Synthetic dataset card",
        "",
        f"Synthetic images made by latentwalk {run['versions']['latentwalk']} with the method **{cfg['method']}**: "
        f"{_METHOD_TEXT[cfg['method']]}.",
        "",
        "No real image, file name or patient identifier is stored here. Every image was compared with "
        f"{gate['real_images']} real images of {gate['real_patients']} patients before it was written, and rejected "
        "when it was too close to one of them (below).",
        "",
        "## Contents",
        "",
        "| label | name | images | wanted | candidates | not written | of them off-label (label gate) |",
        "|---|---|---|---|---|---|---|",
    ]
    off = counts.get("rejected_by_label_gate") or {}
    for i, name in enumerate(run["label_names"]):
        lines.append(
            f"| {i} | {name} | {counts['written'][name]} | {counts['wanted_per_label']} | "
            f"{counts['candidates'][name]} | {counts['rejected'][name]} | {off.get(name, 0)} |"
        )
    short = [n for n in run["label_names"] if counts["written"][n] < counts["wanted_per_label"]]
    lines += ["", f"{total} images in all, in `images/<label>/<id>.png`; `manifest.csv` lists them."]
    if short:
        lines.append(
            f"Fewer images than wanted for {', '.join(short)}: "
            + {
                "ksame": "k-same gives one image per group, and the gate may have rejected some.",
                "ksame-plan": "each pair of k-same groups is walked once, so a label with few groups has few paths; "
                "the gate may also have rejected candidates.",
            }.get(cfg["method"], "the gate rejected too many candidates within max_rounds.")
        )
    lines += [
        "",
        "## Method",
        "",
        f"- Generator: `{run['inputs']['generator']['spec']}` (SHA-256 {run['inputs']['generator']['sha256'][:16]}...)",
    ]
    if cfg["method"] in ("linear", "plan", "ksame-plan"):
        lines.append(f"- Paths of {cfg['n_steps']} points; points written: {cfg['keep']}")
    if cfg["method"] in ("plan", "ksame-plan"):
        w = cfg["weights"]
        lines.append(
            f"- PLAN: {cfg['optim_steps']} Adam steps, lr {cfg['lr']}, loss weights privacy {w[0]}, equidistance "
            f"{w[1]}, class {w[2]}"
        )
    if run.get("ksame"):
        k = run["ksame"]
        lines.append(
            f"- k-same: k = {k['config']['k']} ({k['config']['method']}), {k['n_groups']} groups; smallest group "
            f"{min(k['group_patients'])} patients"
        )
    lines += [
        f"- Seed {cfg['seed']}; the same configuration and inputs give the same files (see `run.json`).",
        "",
        "## Privacy figures",
        "",
        f"- Gate space: {gate['space']}; threshold {gate['threshold']:.6g} "
        + (
            f"(the {gate['percentile']:g}th percentile of real-to-nearest-other-patient distances)"
            if gate["threshold_derived"]
            else "(given)"
        ),
        f"- Real images to their nearest other patient: min {gate['real_nearest_other_patient']['min']:.4g}, "
        f"median {gate['real_nearest_other_patient']['median']:.4g}",
    ]
    lg = run.get("label_gate")
    if lg:
        origin = (f"the {lg['percentile']:g}th percentile of the class guide's true-label probability on "
                  f"{lg['real_images']} real {lg['split']} images" if lg["derived"] else "given")  # fmt: skip
        lines.insert(lines.index("## Privacy figures") - 1, f"- Label gate: an image was written only when the class "
                     f"guide gave its label a probability >= {lg['threshold']:.4g} ({origin})")  # fmt: skip
    div = run.get("diversity")
    if div:
        ratio = f" ({100 * div['ratio']:.0f} % of the real set's)" if div.get("ratio") is not None else ""
        text = f"{div['synthetic']:.4g} against {div['real']:.4g} among the real training images{ratio}"
        lines.insert(lines.index("## Privacy figures") - 1, f"- Diversity: mean pairwise pixel distance {text}")
    nd = run["nearest_real_distance"]
    if nd["min"] is not None:
        lines.append(
            f"- Written images to their nearest real image: min {nd['min']:.4g}, median {nd['median']:.4g}, "
            f"max {nd['max']:.4g}"
        )
    lines += [
        "",
        "## Intended use",
        "",
        "Method development, teaching and benchmarking where the real images cannot be shared. Check the utility "
        "(train on these images, test on real ones) and the privacy evaluation before relying on it.",
        "",
        "## Limits",
        "",
        "- The images are only as faithful as the generator: rare findings may be missing or simplified.",
        "- The gate compares with the real images it was given, in one distance space; it does not prove that no "
        "patient can be re-identified. A membership-inference and re-identification evaluation is advised.",
        "- Labels are those the generation aimed for (the class guide's decision), not a clinician's reading.",
        "- Not for diagnosis or clinical decisions.",
        "",
        "## Loading",
        "",
        "```python",
        "from torchvision.datasets import ImageFolder",
        'ds = ImageFolder("images", target_transform=lambda t: int(ds.classes[t]))  # folder name = label index',
        "```",
        "",
        "(`ImageFolder` numbers the folders it finds in string order; the transform gives back the label index, "
        "also when a label has no image or there are ten or more labels.)",
        "",
    ]
    return "\n".join(lines)
