"""Adversarial rounds of ``latentwalk generate``: walk again against an identity attacker retrained on the walk's
own images (``adversarial_rounds``).

The idea is Feutry et al.'s (Feutry, Piantanida, Bengio, Duhamel, "Learning anonymized representations with
adversarial neural networks", arXiv 1802.09386, 2018): a representation is made private against an adversary that is
retrained, in turn, on the representation's current output, so that it cannot keep fooling a fixed classifier.
Here the "representation" is PLAN's walk and the adversary its identity net ``id_net``. Without adversarial rounds
the walk steers against the identity guide φ_id, which never saw a synthetic image; a walk can then hide a patient
from φ_id in ways another classifier trained on such images sees through. For round ``r = 1 .. N``, before the final
generation:

1. *Candidates*: one generation of round-0 size (the items :func:`latentwalk.generation.items.plan_round` plans for
   round 0: ``per_label`` images per label if the gates rejected nothing; no top-up rounds) is walked against the
   current attacker (φ_id in round 1). Its items take their seeds from their own slot, ``(seed, ADVERSARIAL_SLOT + r,
   label, index)``, so ``plan`` walks between endpoints other than those of the final generation and of the other
   rounds. ``ksame-plan``'s endpoints are the centroids of the first pairs of k-same groups whatever the seed, so its
   candidates walk the final round 0's pairs. The candidates pass both gates as in the run; the accepted ones (what a
   release would hold) are kept as work items under ``OUT/.work/adversarial/round-RR/items/`` and never written to
   the dataset.
2. *Labels*: each accepted candidate is labelled with the patient behind it, the argmax of its private-sidecar weights
   (:func:`latentwalk.generation.sidecar.patients_behind`): for ``plan`` the identity guide's likeliest training
   patient at the endpoint nearer in ``t``; for ``ksame-plan`` a member of the nearer group. Ties (``t = 1/2``, the
   members of one group) go to the first patient in sorted order. A candidate whose patient is no training patient
   (a k-same member from outside the train split) has no class of the attacker's and is left out.
3. *Fine-tune*: a copy of the current attacker is trained for ``adversarial_epochs`` epochs on every real training
   image (its patient) plus the labelled candidates of 80 % of the paths (their patients), with the guides' recipe
   (:func:`latentwalk.guides.fit_model`: AdamW, cosine decay, acquisition augmentation; the batch, learning rate,
   weight decay and augmentation recorded in the guides' ``identity.json``), seeded by ``(seed, r)``. The split is
   by path (a candidate item's path, whose images share the patients behind them), seeded, so that no held-out image
   has a sibling the attacker trained on. Its accuracy at naming the patients behind the candidates of the other
   20 % of the paths, before and after, goes to ``run.json`` (``adversarial``): the "before" figure is how well the
   attacker the walk evaded still re-identifies, the "after" one how much a retrained attacker recovers.

The next round, and the final generation, walk against the fine-tuned attacker. The privacy gate, the label gate and
the private sidecar keep the original guides: the gate is the product's safeguard, its threshold and self-check are
calibrated and audited in φ_id's space (``gate.self_check``, ``benchmarks/bench_gate_audit.py``), and an attacker
tuned on synthetic images would move that space away from what the audit measured. Each round costs one more
generation plus a fine-tune.

Where: the attacker is an identity classifier trained on the real training images, its classes the training
patients, so it is never written into ``OUT``: each finished round's attacker is saved with its record (and the run's
fingerprint) in the run's private folder, the private sidecar's (:mod:`latentwalk.generation.sidecar`; by default
``<OUT>.private/adversarial-round-RR-attacker.safetensors``), atomically, readable by its owner only, and recorded as
latentwalk's in that folder's ``.latentwalk-files.json``; a file there latentwalk did not write is refused, never
replaced. The candidate items stay in ``OUT/.work`` (synthetic images; like the run's own work items they carry the
endpoints' patients as class indices, never names), which a finished run deletes; the finished run deletes the
attacker files it recorded too (:func:`discard_attackers`): its figures are in ``run.json``.

Resume: the attacker file is written last (its presence marks the round finished), and every round, the final
generation included, walks against the attacker read back from that file, so a run killed at any point and rerun
writes the same bytes as an uninterrupted one. Only a resumed run reads an earlier attacker back, and only one of its
own fingerprint; a new or overwritten run fine-tunes every round afresh. No patient identifier is written: labels are
class indices in memory, the record holds counts and accuracies only. Under ``torchrun`` the candidate items are
dealt to the ranks like the run's items, rank 0 fine-tunes, and every rank reads the attacker back (the private
folder must be shared, like ``OUT``).
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gan_zoo.seeds import derive_seed
from latentwalk.errors import ConfigError, DataError
from latentwalk.generation.items import (
    Context,
    Item,
    from_uint8,
    item_file,
    item_seed,
    plan_round,
    read_item,
    run_item,
    write_item,
)
from latentwalk.generation.sidecar import is_ours, patients_behind, write_private_file
from latentwalk.generation.world import World
from latentwalk.io import read_json_dict
from latentwalk.outputs import remove_owned_file

__all__ = [
    "ADVERSARIAL_DIR",
    "ADVERSARIAL_SLOT",
    "HELD_OUT_FRACTION",
    "AdversarialResult",
    "adversarial_items",
    "attacker_file",
    "check_attackers",
    "discard_attackers",
    "fine_tune_config",
    "likeliest_patient",
    "round_dir",
    "run_adversarial",
]

ADVERSARIAL_DIR = "adversarial"  # under OUT/.work: the candidate items
ADVERSARIAL_SLOT = 1 << 21  # the seed's "round" slot of candidate items: + r (above items.PAIR_ORDER; no round's)
HELD_OUT_FRACTION = 0.2  # share of the labelled candidates kept out of the fine-tune to measure the attacker
_NAMESPACE = "latentwalk.adversarial"
_RECIPE = ("batch", "lr", "weight_decay", "augment")  # what the fine-tune takes from the guides' identity.json


@dataclass(frozen=True)
class AdversarialResult:
    """The attacker the final walk steers against, and what each round measured.

    Attributes:
        attacker: the last round's fine-tuned identity net (eval mode, ``requires_grad`` off), on the run's device.
        rounds: per round ``{"round", "candidates", "accepted", "unlabelled", "images": {"real", "synthetic",
            "synthetic_held_out"}, "accuracy_before", "accuracy_after"}`` (accuracies ``None`` with no held-out image).
        epochs: fine-tuning epochs per round.
        chance_accuracy: ``1 / n_identities``.
        seconds: wall time of each round (candidates and fine-tune; from the run that finished the round).
    """

    attacker: nn.Module
    rounds: tuple[dict[str, Any], ...]
    epochs: int
    chance_accuracy: float
    seconds: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        """The ``adversarial`` record of ``run.json`` (no timings: they go to its ``execution``)."""
        return {
            "rounds": len(self.rounds),
            "epochs": self.epochs,
            "held_out_fraction": HELD_OUT_FRACTION,
            "chance_accuracy": self.chance_accuracy,
            "candidates": "one round-0 generation per round, seeds (seed, ADVERSARIAL_SLOT + round, label, index), "
            "accepted by both gates; labelled with the argmax of the patients behind each (private sidecar weights)",
            "walk": "each round and the final generation walk against the previous round's fine-tuned attacker",
            "gate": "the privacy gate, the label gate and the private sidecar keep the original guides",
            "per_round": [dict(r) for r in self.rounds],
        }


def round_dir(work: Path, round_: int) -> Path:
    """``OUT/.work/adversarial/round-RR``: the candidate items of adversarial round ``round_`` (>= 1)."""
    return work / ADVERSARIAL_DIR / f"round-{round_:02d}"


def attacker_file(private: Path, round_: int) -> Path:
    """``private/adversarial-round-RR-attacker.safetensors``: the fine-tuned attacker of round ``round_`` in the run's
    private folder ``private`` (safetensors; its record and the run's fingerprint in the metadata)."""
    return private / f"{ADVERSARIAL_DIR}-round-{round_:02d}-attacker.safetensors"


def check_attackers(private: Path, rounds: int) -> None:
    """Refuse, before any work, an attacker file of the run's rounds that latentwalk did not write (or that changed
    since).

    Raises:
        ConfigError: one line naming the file.
    """
    for r in range(1, rounds + 1):
        _refuse_foreign(attacker_file(private, r))


def _refuse_foreign(path: Path) -> None:
    """Raise ConfigError if something latentwalk did not write (or that changed since) stands at ``path``."""
    if path.exists() and not (path.is_file() and is_ours(path)):
        raise ConfigError(
            f"{path} exists and latentwalk did not write it; move it away or choose another private folder "
            "(private_dir / --private-dir)"
        )


def discard_attackers(private: Path, rounds: int) -> None:
    """Delete the attacker files of a finished run's rounds, each only if the folder's ledger records its bytes."""
    for r in range(1, rounds + 1):
        remove_owned_file(attacker_file(private, r))


def adversarial_items(ctx: Context, round_: int) -> list[Item]:
    """The candidate items of adversarial round ``round_``: round 0's items (labels, indices, k-same pairs), named
    with ``round_`` and seeded from the slot ``ADVERSARIAL_SLOT + round_``."""
    slot = ADVERSARIAL_SLOT + round_
    return [
        replace(item, round=round_, seed=item_seed(ctx.cfg.seed, slot, item.label, item.index))
        for item in plan_round(ctx, 0, {}, {})
    ]


def likeliest_patient(weights: dict[str, float]) -> str:
    """The patient of largest weight; ties go to the first in sorted order."""
    return max(sorted(weights), key=lambda p: weights[p])


def fine_tune_config(ctx: Context) -> Any:
    """The guides' recipe (:data:`_RECIPE` from their ``identity.json``) for ``adversarial_epochs``, seeded by the
    run's seed; a :class:`latentwalk.guides.GuideConfig`."""
    from latentwalk.guides import GuideConfig

    recorded = (read_json_dict(Path(ctx.cfg.guides) / "identity.json") or {}).get("config") or {}
    recipe = {k: recorded[k] for k in _RECIPE if k in recorded}
    return GuideConfig(epochs=ctx.cfg.adversarial_epochs, seed=ctx.cfg.seed, **recipe)


def run_adversarial(
    ctx: Context,
    world: World,
    work: Path,
    private: Path,
    fingerprint: str,
    *,
    resume: bool = False,
    say: Any = None,
    progress: bool = False,
) -> AdversarialResult | None:
    """Run (or read back) the ``ctx.cfg.adversarial_rounds`` rounds of the module docstring; ``None`` with none.

    Args:
        ctx: the run's context (its guides are the round-1 attacker; ``ctx`` itself is not changed: set
            ``ctx.id_net = result.attacker`` for the final generation).
        world: this process's rank among the run's.
        work: the run's ``OUT/.work`` folder (the candidate items).
        private: the run's private folder, the private sidecar's (the attackers; call :func:`check_attackers` first).
        fingerprint: the run's fingerprint (as in its ``run.json``); saved with each attacker.
        resume: read back the attacker of a round this run finished earlier (one saved with ``fingerprint``, that
            latentwalk wrote); ``False`` = fine-tune every round afresh.
        say: ``callable(str)`` for one line per round; ``None`` = silent.
        progress: show the fine-tune's epoch bar.

    Raises:
        DataError: an unreadable candidate item or attacker file (the message says which to delete).
        ConfigError: an attacker file in the way that latentwalk did not write.
    """
    cfg = ctx.cfg
    if cfg.adversarial_rounds == 0:
        return None
    net: nn.Module = ctx.guides.identity
    records, seconds = [], []
    for r in range(1, cfg.adversarial_rounds + 1):
        path = attacker_file(private, r)
        if not (resume and _finished(path, fingerprint)):
            started = time.perf_counter()
            walk = replace(ctx, id_net=net)
            with world.phase(f"adversarial round {r}"):
                _candidates(walk, work, r, world)
            with world.phase(f"adversarial fine-tune {r}"):
                if world.rank == 0:
                    _fine_tune(walk, work, path, r, net, fingerprint, started, progress)
        net, record, secs = _load_attacker(ctx, path)
        records.append(record)
        seconds.append(secs)
        if say is not None:
            say(_round_line(record, cfg.adversarial_rounds))
    chance = round(1 / max(1, len(ctx.patients)), 6)
    return AdversarialResult(net, tuple(records), cfg.adversarial_epochs, chance, tuple(seconds))


def _finished(path: Path, fingerprint: str) -> bool:
    """``path`` is an attacker latentwalk wrote (unchanged since) for the run of ``fingerprint``."""
    from safetensors import SafetensorError, safe_open

    if not (path.is_file() and is_ours(path)):
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("run_fingerprint") == fingerprint
    except (SafetensorError, OSError):
        return True  # ours but unreadable: _load_attacker says which file to delete


def _round_line(record: dict[str, Any], rounds: int) -> str:
    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.0%}"

    return (
        f"adversarial round {record['round']}/{rounds}: the attacker names the patient behind "
        f"{pct(record['accuracy_before'])} of {record['images']['synthetic_held_out']} held-out candidates before "
        f"fine-tuning, {pct(record['accuracy_after'])} after"
    )


def _candidates(ctx: Context, work: Path, round_: int, world: World) -> None:
    """This rank's share of the round's candidate items (item ``j`` to rank ``j % world``), finished ones kept."""
    folder = round_dir(work, round_)
    for j, item in enumerate(adversarial_items(ctx, round_)):
        path = item_file(folder, item)
        if j % world.size == world.rank and not path.is_file():
            write_item(path, run_item(ctx, item), item.seed)


def _labelled(ctx: Context, work: Path, round_: int) -> tuple[Tensor, Tensor, Tensor, dict[str, int]]:
    """The round's accepted candidates ``[n, C, R, R]`` float in [-1, 1] (the bytes the gates saw), the attacker's
    class of the patient behind each ``[n]`` int64, the path each lies on ``[n]`` int64 (numbered over the round's
    ``(item, path)`` pairs), and counts (candidates, accepted, unlabelled)."""
    position = {p: i for i, p in enumerate(ctx.patients)}
    images, targets, paths = [], [], []
    counts = {"candidates": 0, "accepted": 0, "unlabelled": 0}
    path_of: dict[tuple[int, int], int] = {}
    for n_item, item in enumerate(adversarial_items(ctx, round_)):
        rec = read_item(item_file(round_dir(work, round_), item))
        accepted = rec["accepted"].bool()
        counts["candidates"] += int(accepted.numel())
        for kept, c in enumerate(torch.nonzero(accepted).flatten().tolist()):
            counts["accepted"] += 1
            who = likeliest_patient(patients_behind(ctx, item, rec, c)["patients"])
            if who not in position:
                counts["unlabelled"] += 1
                continue
            images.append(rec["images"][kept])
            targets.append(position[who])
            paths.append(path_of.setdefault((n_item, int(rec["path"][c])), len(path_of)))
    if not images:
        res, ch = ctx.G.img_resolution, ctx.G.img_channels
        empty = torch.zeros(0, dtype=torch.int64)
        return torch.zeros(0, ch, res, res), empty, empty, counts
    long = torch.int64
    return from_uint8(torch.stack(images)), torch.tensor(targets, dtype=long), torch.tensor(paths, dtype=long), counts


def _training_images(ctx: Context) -> tuple[Tensor, Tensor]:
    """The real training images at the generator's resolution and channels, and their patients' classes."""
    from latentwalk.data import open_dataset
    from latentwalk.data.preprocess import load_tensors

    train = open_dataset(ctx.cfg.data, ctx.cfg.layout).subset("train")
    position = {p: i for i, p in enumerate(ctx.patients)}
    images, _ = load_tensors(train, ctx.G.img_resolution, channels=ctx.G.img_channels)
    return images, torch.tensor([position[r.identity] for r in train.records], dtype=torch.int64)


def _split(paths: Tensor, seed: int, round_: int) -> tuple[Tensor, Tensor]:
    """Seeded (fine-tune rows, held-out rows) of candidates by path: of the ``g`` distinct values of ``paths`` ``[n]``
    (the path of each candidate), ``round(0.2 g)`` are held out with all their candidates, at least 1 when g >= 2."""
    groups = torch.unique(paths)  # sorted
    gen = torch.Generator().manual_seed(derive_seed(_NAMESPACE, seed, f"held-out:{round_}"))
    order = torch.randperm(len(groups), generator=gen)
    n_held = 0 if len(groups) < 2 else max(1, round(HELD_OUT_FRACTION * len(groups)))
    held = torch.isin(paths, groups[order[:n_held]])
    return torch.nonzero(~held).flatten(), torch.nonzero(held).flatten()


@torch.no_grad()
def _accuracy(net: nn.Module, images: Tensor, targets: Tensor, device: torch.device) -> float | None:
    """Share of ``images`` whose arg-max class is its target; ``None`` without images."""
    if not len(targets):
        return None
    net.eval()
    pred = torch.cat([net(part.to(device)).argmax(1).cpu() for part in images.split(256)])
    return round((pred == targets).float().mean().item(), 6)


def _fine_tune(
    ctx: Context,
    work: Path,
    path: Path,
    round_: int,
    net: nn.Module,
    fingerprint: str,
    started: float,
    progress: bool,
) -> None:
    """Fine-tune a copy of ``net`` on the real training images and the round's labelled candidates; save it with its
    record as the round's attacker file ``path`` in the private folder (rank 0)."""
    from safetensors.torch import save

    from latentwalk.guides import fit_model

    syn_x, syn_y, syn_path, counts = _labelled(ctx, work, round_)
    fit, held = _split(syn_path, ctx.cfg.seed, round_)
    if not len(fit):
        warnings.warn(
            f"adversarial round {round_}: no candidate passed the gates with a training patient behind it, so the "
            "attacker is fine-tuned on real images only (written in run.json)",
            UserWarning,
            stacklevel=3,
        )
    real_x, real_y = _training_images(ctx)
    before = _accuracy(net, syn_x[held], syn_y[held], ctx.device)
    model = copy.deepcopy(net).requires_grad_(True)
    rows = torch.cat([torch.arange(len(real_y)), len(real_y) + fit])
    images, targets = torch.cat([real_x, syn_x]), torch.cat([real_y, syn_y])
    fit_model(model, images, targets, rows, fine_tune_config(ctx), f"adversarial-{round_}", ctx.device, progress)
    model.eval().requires_grad_(False)
    record = {
        "round": round_,
        **counts,
        "images": {"real": len(real_y), "synthetic": len(fit), "synthetic_held_out": len(held)},
        "accuracy_before": before,
        "accuracy_after": _accuracy(model, syn_x[held], syn_y[held], ctx.device),
    }
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"record": json.dumps(record, sort_keys=True), "seconds": f"{time.perf_counter() - started:.3f}",
            "run_fingerprint": fingerprint}  # fmt: skip
    _refuse_foreign(path)  # appeared since check_attackers
    write_private_file(path, save(state, metadata=meta))  # last: the round is finished


def _load_attacker(ctx: Context, path: Path) -> tuple[nn.Module, dict[str, Any], float]:
    """The attacker saved in ``path`` (the identity guide's architecture, its weights), its record and seconds."""
    from safetensors import SafetensorError, safe_open

    from gan_zoo.checkpoint import load_state_dict_strict

    fix = f"delete {path} and rerun to fine-tune that round again"
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        record, seconds = json.loads(meta["record"]), float(meta["seconds"])
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        raise DataError(f"adversarial attacker {path} is unreadable ({e}); {fix}") from e
    model = copy.deepcopy(ctx.guides.identity)
    load_state_dict_strict(model, state, str(path))
    return model.to(ctx.device).eval().requires_grad_(False), record, seconds
