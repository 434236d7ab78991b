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
With ``adversarial_rounds`` > 0 (``plan``, ``ksame-plan``) those rounds come first: each generates candidates and
fine-tunes an identity attacker on them, which the next walk steers against; the gates keep the original guides
(:mod:`latentwalk.generation.adversarial`). The attackers, trained on the real patients, are kept in the private
sidecar's folder while the run lasts, never in ``OUT``, and deleted when it finishes.

Output (``OUT``): ``images/<label>/<id>.png`` (8-bit gray or RGB), ``manifest.csv``, ``run.json`` (written last: its
presence marks a finished run) and ``DATASET_CARD.md``. No real file name, identity or image is written: the
dataset, latents and guides paths in the recorded configuration are withheld (their SHA-256 fingerprints identify
them), and ids are sequential. The patients behind each image go to a private sidecar outside ``OUT``
(:mod:`latentwalk.generation.sidecar`; by default ``<OUT>.private/patients.json``), written by the same merge.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import platform
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from latentwalk.distances import mean_pairwise_distance
from latentwalk.errors import ConfigError, DataError
from latentwalk.gate import SELF_CHECK_MIN, Gate, build_gate, build_label_gate
from latentwalk.generation.adversarial import AdversarialResult, check_attackers, discard_attackers, run_adversarial
from latentwalk.generation.card import dataset_card, round6
from latentwalk.generation.config import (
    GATE_SPLITS,
    METHODS,
    PATH_FIELDS,
    WITHHELD,
    GateConfig,
    GenerateConfig,
    load_config_file,
    parse_keep,
    public_config,
    public_spec,
    resolve_spec_path,
)
from latentwalk.generation.items import (
    Context,
    Item,
    distinct_pairs,
    from_uint8,
    item_file,
    plan_round,
    read_item,
    run_item,
    to_uint8,
    write_item,
)
from latentwalk.generation.sidecar import check_sidecar, patients_behind, sidecar_path, sidecar_source, write_sidecar
from latentwalk.generation.world import DIST_TIMEOUT_ENV, World
from latentwalk.generation.world import world as join_world
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
    "GateConfig",
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
    "PATH_FIELDS",
    "GATE_SPLITS",
    "WITHHELD",
    "DIST_TIMEOUT_ENV",
]

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
    if len(images) == 0 and cfg.gate.label_threshold is None:
        split, images = "train", index.subset("train")
        warnings.warn(
            "the dataset has no validation split: the label gate is calibrated on training images, which the class "
            "guide has seen (a stricter threshold); split the data or pass label_threshold",
            UserWarning,
            stacklevel=3,
        )
    x, y = load_tensors(images, G.img_resolution, channels=G.img_channels, progress=progress)
    return build_label_gate(guides.classifier, x.to(device), y.to(device), threshold=cfg.gate.label_threshold,
                            percentile=cfg.gate.label_percentile, split=split)  # fmt: skip


def _auto_chunk(device: torch.device) -> int:
    """Images per pass: 64 on CPU/MPS; on CUDA about half the free memory at ~24 MB per 256-px image, in [16, 512]."""
    if device.type != "cuda":
        return 64
    free, _ = torch.cuda.mem_get_info(device)
    return int(min(512, max(16, free // 2 // (24 << 20) // 8 * 8)))


@dataclass
class _Setup:
    ctx: Context
    fingerprint: str
    inputs: dict[str, Any]
    gate_images: int
    real_diversity: float  # mean pairwise pixel distance of the real reference images (for the card)
    adversarial: AdversarialResult | None = None  # the adversarial rounds' attacker and figures (None = no rounds)


def _setup(cfg: GenerateConfig, world: World, progress: bool, lpips_net: Any = None) -> _Setup:
    import gan_zoo
    from gan_zoo.invert import generator_sha256
    from latentwalk.data import open_dataset
    from latentwalk.devices import native_bfloat16, resolve_device
    from latentwalk.guides import identity_classes, load_guides

    cfg.check_inputs()
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world.size > 1:
        device = torch.device("cuda", world.local_rank)
    G = gan_zoo.load(cfg.gan, device=device)
    guides_dir = Path(cfg.guides)
    guides = load_guides(guides_dir, device=device)
    index = open_dataset(cfg.data, cfg.layout)
    check_guides(guides, G, index)
    real, patients = real_reference(index, G, cfg.gate.split, progress)
    gate = build_gate(
        cfg.gate.space,
        real.to(device),
        patients,
        guides=guides,
        threshold=cfg.gate.threshold,
        percentile=cfg.gate.percentile,
        lpips_net=lpips_net,
    )
    labels = tuple(range(len(index.label_names)))
    keep = (0,) if cfg.method == "ksame" else parse_keep(cfg.keep, cfg.plan.n_steps)
    amp = native_bfloat16(device) if cfg.amp is None else cfg.amp
    if amp and device.type not in ("cuda", "cpu"):
        raise ConfigError(f"amp needs CUDA or a CPU, but the run is on {device}; leave amp unset or false")
    label_gate = _label_gate(cfg, index, G, guides, device, progress) if cfg.gate.label_gate else None
    ctx = Context(
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
        patients=identity_classes(index),  # in memory only: names for the private sidecar
    )
    inputs: dict[str, Any] = {
        "generator": {"spec": public_spec(cfg.gan), "sha256": generator_sha256(G)},
        "guides": _guides_fingerprint(guides_dir),
        "dataset": {
            "images_sha256": hashlib.sha256(to_uint8(real).numpy().tobytes()).hexdigest(),
            "gate_images": int(real.shape[0]),
        },
    }
    if cfg.method in ("ksame", "ksame-plan"):
        from latentwalk.ksame import latent_centroids

        min_groups = 2 if cfg.method == "ksame-plan" else 1
        centroids, ctx.ksame_summary, inputs["latents_sha256"] = latent_centroids(
            cfg.latents, G, index, labels, cfg.ksame, min_groups=min_groups, members=ctx.members
        )
        ctx.centroids = {label: c.to(device) for label, c in centroids.items()}
        ctx.pairs = {label: distinct_pairs(c.shape[0], cfg.seed, label) for label, c in centroids.items()}
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


def _held_fingerprint(out: Path) -> str | None:
    """The fingerprint of the run ``out`` holds: finished (``run.json``) or unfinished (``.work/config.json``);
    ``None`` for none."""
    run = read_json_dict(out / "run.json")
    if run is not None and run.get("format") == RUN_FORMAT and run.get("fingerprint"):
        return str(run["fingerprint"])
    work = read_json_dict(out / WORK_DIR / "config.json")
    return str(work["fingerprint"]) if work and work.get("fingerprint") else None


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
    """What :func:`generate` wrote: the output folder, images per label, rejected candidates, and run.json; and
    where the private sidecar is (outside the output folder; ``None`` when a finished run's is not there)."""

    out_dir: Path
    written: dict[str, int]
    rejected: dict[str, int]
    run: dict[str, Any]
    resumed: bool = False
    already_done: bool = False
    sidecar: Path | None = None


def _stats(work: Path, items: Sequence[Item]) -> dict[int, tuple[int, int]]:
    stats: dict[int, tuple[int, int]] = {}
    for item in items:
        rec = read_item(item_file(work, item))
        acc, cand = stats.get(item.label, (0, 0))
        stats[item.label] = (acc + int(rec["accepted"].sum()), cand + int(rec["accepted"].numel()))
    return stats


def generate(
    cfg: GenerateConfig,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    private_dir: str | os.PathLike | None = None,
    progress: bool = False,
    lpips_net: Any = None,
    echo: Any = None,
) -> GenerateResult:
    """Generate a synthetic dataset into ``out_dir`` (see the module docstring); resumes an unfinished run there.

    Args:
        cfg: options (paths absolute or relative to the working folder).
        out_dir: output folder: new/empty, an unfinished run of the same configuration (resumed), or a finished one
            (nothing to do).
        overwrite: replace whatever ``out_dir`` holds (and the private sidecar of an earlier run in ``out_dir``).
        private_dir: the folder of the private sidecar (the patients behind each image); ``None`` =
            ``<out_dir>.private``. Outside ``out_dir`` and writable (checked before any work); a ``patients.json``
            there that latentwalk did not write, or that belongs to another output folder, is refused (even with
            ``overwrite``): two runs must not share one.
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
    private = sidecar_path(out, private_dir)
    say = echo if echo is not None else (lambda _msg: None)
    with join_world(cfg.device) as world:
        lead = world.rank == 0
        with world.phase("setup"):
            if lead:
                claim = check_out_dir(out, cfg, overwrite)  # before the slow setup
                check_sidecar(private, out, replace=overwrite or claim == "resume", inputs=_inputs(cfg),
                              fingerprint=_held_fingerprint(out))  # fmt: skip
                check_attackers(private.parent, cfg.adversarial_rounds)
            setup = _setup(cfg, world, progress and lead)
            ctx = setup.ctx
            state = "new"
            if lead:
                state = _open_out(out, cfg, setup.fingerprint, ctx.chunk, overwrite)
        state = _share_state(world, state)
        if state == "done":
            run = read_json_dict(out / "run.json") or {}
            if lead:
                say(f"{out} already holds this finished run; nothing to do")
            sidecar = private if private.is_file() else None
            return GenerateResult(out, run["counts"]["written"], run["counts"]["rejected"], run, already_done=True,
                                  sidecar=sidecar)  # fmt: skip
        work = out / WORK_DIR
        saved = read_json_dict(work / "config.json") or {}
        ctx.chunk = int(saved.get("chunk", ctx.chunk))  # a resumed run keeps the first run's pass size
        if lead:
            say(f"{'resuming' if state == 'resume' else 'starting'} {cfg.method} run in {out}")
            say(f"gate: {ctx.gate.space}, threshold {ctx.gate.threshold:.4g} ({_threshold_origin(ctx.gate)})")
            if ctx.gate.passes_self_check is False:
                warnings.warn(_self_check_message(ctx.gate), UserWarning, stacklevel=2)

        setup.adversarial = run_adversarial(ctx, world, work, private.parent, setup.fingerprint,
                                            resume=state == "resume", say=say if lead else None,
                                            progress=progress and lead)  # fmt: skip
        if setup.adversarial is not None:
            ctx.id_net = setup.adversarial.attacker  # the final walk's; the gates keep the guides
        wanted = len(ctx.labels) * cfg.per_label
        bar = tqdm(total=wanted, desc="generating", unit="img", disable=None if (progress and lead) else True)
        with bar:
            all_items = _run_rounds(ctx, cfg, world, work, bar)

        with world.phase("merge"):
            if lead:
                seconds = time.perf_counter() - started
                run = _merge(ctx, setup, out, all_items, state == "resume", seconds, world.size, private)
                shutil.rmtree(work, ignore_errors=True)
                discard_attackers(private.parent, cfg.adversarial_rounds)  # patient-derived; figures are in run.json
                mark_dir(out, _GENERATE)  # the exact files of the finished run
                say(_summary_line(run, out))
                say(f"patients behind each image: {private} (private: never share it with the dataset)")
        run = read_json_dict(out / "run.json") or {}
        return GenerateResult(out, run["counts"]["written"], run["counts"]["rejected"], run, resumed=state == "resume",
                              sidecar=private)  # fmt: skip


def _share_state(world: World, state: str) -> str:
    """The output folder's state as rank 0 found it, on every rank."""
    if world.size > 1:
        import torch.distributed as dist

        box = [state]
        dist.broadcast_object_list(box, src=0)
        state = box[0]
    return state


def _self_check_message(gate: Gate) -> str:
    """The warning for a gate whose space fails the self-check."""
    return (
        f"the {gate.space} gate cannot tell patients apart: for only "
        f"{gate.same_patient_nearest:.0%} of {gate.self_checked} real images is the nearest other "
        f"real image of the same patient (at least {SELF_CHECK_MIN:.0%} expected), so its threshold "
        "protects nobody; train the guides longer or use another --gate-space (written in the card)"
    )


def _run_rounds(ctx: Context, cfg: GenerateConfig, world: World, work: Path, bar: Any) -> list[Item]:
    """Plan and run the rounds (this rank's share of each, finished items read back); returns every planned item."""
    all_items: list[Item] = []
    rejected = 0
    for round_ in range(cfg.max_rounds):
        planned = {label: sum(i.label == label for i in all_items) for label in ctx.labels}
        items = plan_round(ctx, round_, _stats(work, all_items), planned)
        if not items:
            break
        with world.phase(f"round {round_}"):
            for j, item in enumerate(items):
                path = item_file(work, item)
                if j % world.size != world.rank:
                    continue
                if path.is_file():
                    rec = read_item(path)
                else:
                    rec = run_item(ctx, item)
                    write_item(path, rec, item.seed)
                n_acc = int(rec["accepted"].sum())
                rejected += int(rec["accepted"].numel()) - n_acc
                bar.update(min(n_acc, max(0, bar.total - bar.n)))
                bar.set_postfix(rejected=rejected, refresh=False)
        all_items.extend(items)
    return all_items


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
    ctx: Context,
    setup: _Setup,
    out: Path,
    items: Sequence[Item],
    resumed: bool,
    seconds: float,
    processes: int,
    private: Path,
) -> dict[str, Any]:
    """Select the first ``per_label`` accepted images per label; write images, manifest, the private sidecar
    (``private``, outside ``out``), card and run.json."""
    work = out / WORK_DIR
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
    behind: dict[str, dict[str, Any]] = {}  # id -> the patients behind it (the private sidecar only)
    by_round: dict[int, dict[str, dict[str, int]]] = {}
    for label in ctx.labels:
        name = ctx.label_names[label]
        count = rej = rej_label = cand = 0
        for item in sorted((i for i in items if i.label == label), key=lambda i: (i.round, i.index)):
            rec = read_item(item_file(work, item))
            acc = rec["accepted"].bool()
            off_label = int((rec["labelled"] == 0).sum()) if "labelled" in rec else 0
            rej += int((~acc).sum())
            rej_label += off_label
            cand += int(acc.numel())
            _count_round(by_round, item.round, name, acc, off_label)
            count = _write_accepted(ctx, out, item, rec, count, rows, distances, kept_images, behind)
        written[name], rejected[name], candidates[name] = count, rej, cand
        rejected_label[name] = rej_label
    write_csv(out / "manifest.csv", MANIFEST_COLUMNS, rows)
    write_sidecar(private, out=out, method=ctx.cfg.method, fingerprint=setup.fingerprint, images=behind)
    counts = {"written": written, "rejected": rejected, "rejected_by_label_gate": rejected_label,
              "candidates": candidates}  # fmt: skip
    counts["by_round"] = [{"round": r, **by_round[r]} for r in sorted(by_round)]
    diversity = _diversity(kept_images, setup.real_diversity)
    run = _run_record(ctx, setup, items, counts, distances, resumed, seconds, processes)
    run["diversity"] = diversity
    if setup.adversarial is not None:
        run["adversarial"] = setup.adversarial.to_dict()
        run["execution"]["adversarial_seconds"] = [round(x, 1) for x in setup.adversarial.seconds]
    run["private_sidecar"] = {"source": sidecar_source(ctx.cfg.method), "location": "<withheld>"}
    atomic_write_text(out / "DATASET_CARD.md", dataset_card(run))
    write_json(out / "run.json", run)  # last: marks the run finished
    return run


def _count_round(
    by_round: dict[int, dict[str, dict[str, int]]], round_: int, name: str, acc: Tensor, off_label: int
) -> None:
    """Add an item's candidates, rejections and off-label rejections to its round's counts of label ``name``."""
    r = by_round.setdefault(round_, {"candidates": {}, "rejected": {}, "rejected_by_label_gate": {}})
    r["candidates"][name] = r["candidates"].get(name, 0) + int(acc.numel())
    r["rejected"][name] = r["rejected"].get(name, 0) + int((~acc).sum())
    r["rejected_by_label_gate"][name] = r["rejected_by_label_gate"].get(name, 0) + off_label


def _write_accepted(
    ctx: Context,
    out: Path,
    item: Item,
    rec: dict[str, Tensor],
    count: int,
    rows: list[dict[str, Any]],
    distances: list[float],
    kept_images: list[Tensor],
    behind: dict[str, dict[str, Any]],
) -> int:
    """Write ``item``'s accepted images while its label has fewer than ``per_label``; returns the label's count.
    ``behind`` gets the patients behind each written image, by id (:func:`~latentwalk.generation.sidecar.
    patients_behind`)."""
    cfg, label = ctx.cfg, item.label
    name = ctx.label_names[label]
    acc = rec["accepted"].bool()
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
        behind[sid] = patients_behind(ctx, item, rec, c)
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
    return count


def _diversity(kept_images: list[Tensor], real_diversity: float) -> dict[str, Any] | None:
    """Mean pairwise pixel distance of the written images against the real set's; None below two images."""
    if len(kept_images) < 2:
        return None
    syn = mean_pairwise_distance(from_uint8(torch.stack(kept_images)))
    return {"synthetic": round6(syn), "real": round6(real_diversity),
            "ratio": round6(syn / real_diversity) if real_diversity > 0 else None}  # fmt: skip


def _run_record(
    ctx: Context,
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
            "min": round6(d.min()) if d.size else None,
            "median": round6(np.median(d)) if d.size else None,
            "max": round6(d.max()) if d.size else None,
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
