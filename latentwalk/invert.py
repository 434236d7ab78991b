"""Inversion of a dataset into a generator: resumable batches, one safetensors file of latents + its JSON.

The projection of image tensors is :mod:`gan_zoo.invert` (it knows generators, not datasets); this module reads a
dataset's images batch by batch, projects them with :class:`gan_zoo.invert.Projector`, and writes what ``generate``,
``ksame`` and the benchmarks read back with :func:`load_latents`. Command: ``latentwalk gan invert``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gan_zoo.devices import device_of
from gan_zoo.invert import InvertConfig, Projector, check_projectable, finite_or_none, generator_sha256
from latentwalk.data.preprocess import ImageFolderDataset
from latentwalk.errors import ConfigError, DataError
from latentwalk.io import atomic_write_bytes, changed_keys, load_checked_safetensors, read_versioned_json, write_json
from latentwalk.outputs import claim_file, record_file

__all__ = ["LATENTS_FORMAT", "LATENTS_FORMAT_VERSION", "invert_dataset", "load_latents"]

LATENTS_FORMAT = "latentwalk.gan_zoo.invert.latents"  # the name files were written with since v1; kept for them
LATENTS_FORMAT_VERSION = 1


def _record_id(record: Any, root: Path) -> str:
    try:
        return Path(record.file).relative_to(root).as_posix()
    except ValueError as e:
        raise DataError(f"image {record.file} is outside the dataset folder {root}; rebuild the index") from e


def _partial_dir(out_file: Path) -> Path:
    return out_file.with_name(out_file.name + ".partial")


def _write_batch(path: Path, ids: list[str], ws: Tensor, mse: Tensor, perceptual: Tensor) -> None:
    from safetensors.torch import save

    tensors = {"ws": ws.cpu().contiguous(), "mse": mse.cpu().contiguous(), "perceptual": perceptual.cpu().contiguous()}
    atomic_write_bytes(path, save(tensors, metadata={"ids": json.dumps(ids)}))


def _read_batch(path: Path, ids: list[str]) -> dict[str, Tensor]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            stored = json.loads((f.metadata() or {}).get("ids", "null"))
            tensors = {name: f.get_tensor(name) for name in ("ws", "mse", "perceptual")}
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as e:
        raise DataError(f"finished batch {path} is unreadable ({e}); delete it and rerun to recompute it") from e
    if stored != ids:
        raise DataError(f"finished batch {path} holds other images than expected; delete {path.parent} and rerun")
    return tensors


def invert_dataset(
    G: nn.Module,
    index: Any,
    out_file: str | os.PathLike,
    cfg: InvertConfig | None = None,
    *,
    ids: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    lpips_net: nn.Module | None = None,
    overwrite: bool = False,
) -> Path:
    """Project a dataset's images and write their latents, resumably.

    Writes ``out_file`` (``.safetensors``: one float32 ``[num_ws, w_dim]`` tensor per image, keyed by its id = its
    path relative to ``index.root``) and ``<stem>.json`` (config, perceptual term used, generator SHA-256, per-id
    label, identity, mse and perceptual error). Both hold per-patient information: keep them as private as the data.

    Each finished batch is written atomically to ``<out_file>.partial/batch_XXXXX.safetensors``; rerunning the same
    call skips finished batches (the result is identical to an uninterrupted run), merges, and removes the folder.
    Each image's latent noise is seeded by ``(cfg.seed, id)``, so results depend neither on the batch size nor on
    which ids are selected.

    Args:
        G: generator with NVIDIA's contract; only read (copied first when ``device`` differs from its own).
        index: :class:`latentwalk.data.records.DatasetIndex`; images are loaded at ``G.img_resolution`` with
            ``G.img_channels`` channels and the layout's default crop (as :func:`latentwalk.data.load_tensors`), batch
            by batch.
        out_file: ``*.safetensors`` path.
        cfg: options; ``None`` = defaults.
        ids: invert only these ids (any order; processed in index order); ``None`` = every image.
        device: where to run; ``None`` = G's device.
        progress: show tqdm bars.
        lpips_net: see :func:`gan_zoo.invert.invert`.
        overwrite: replace an existing ``out_file`` that latentwalk wrote (:mod:`latentwalk.outputs`).

    Returns:
        ``out_file``.

    Raises:
        ConfigError: bad ``out_file`` suffix, existing output without ``overwrite`` or not written by latentwalk, an
            output inside the dataset, unknown or repeated ids, or a
            partial folder made with a different configuration.
        DataError: unreadable images or partial batches.
        MissingWeightsError: see :func:`gan_zoo.invert.invert`.
    """
    cfg = cfg if cfg is not None else InvertConfig()
    check_projectable(G)
    out_file = Path(out_file)
    if out_file.suffix != ".safetensors":
        raise ConfigError(
            f"latents file {out_file} must end in .safetensors; e.g. {out_file.with_suffix('.safetensors')}"
        )
    meta_file = out_file.with_suffix(".json")
    partial = _partial_dir(out_file)
    for target in (out_file, meta_file):  # never onto a file latentwalk did not write, never inside the dataset
        claim_file(target, overwrite=overwrite, inputs={"dataset": index.root})

    sub, sel_ids = _select(index, ids)
    dataset = ImageFolderDataset(sub, G.img_resolution, channels=G.img_channels)

    run_device = torch.device(device) if device is not None else device_of(G)
    if device_of(G) != run_device:
        G = copy.deepcopy(G).to(run_device)
    s = Projector(G, cfg, lpips_net=lpips_net)
    _start_or_resume(partial, _partial_plan(G, cfg, s, sub, sel_ids))

    ws, mse, perceptual = _project_batches(s, dataset, sub, sel_ids, partial, cfg.batch, run_device, progress)
    _finish(out_file, meta_file, G, index, sub, sel_ids, ws, mse, perceptual, cfg, s)
    record_file(out_file)
    record_file(meta_file)
    shutil.rmtree(partial)
    return out_file


def _select(index: Any, ids: Sequence[str] | None) -> tuple[Any, list[str]]:
    """The index restricted to ``ids`` (all images when None), in index order, and the ids of its images."""
    root = Path(index.root)
    all_ids = [_record_id(r, root) for r in index.records]
    if ids is not None:
        wanted = list(ids)
        if len(set(wanted)) != len(wanted):
            raise ConfigError("ids contains repeated entries; give each image id once")
        unknown = sorted(set(wanted) - set(all_ids))
        if unknown:
            raise ConfigError(f"unknown image id(s) {unknown[:5]} (ids are paths relative to {root}); check the list")
        keep = set(wanted)
    else:
        keep = set(all_ids)
    chosen = [i for i, rid in enumerate(all_ids) if rid in keep]
    if not chosen:
        raise DataError(f"no images to invert in {root}; the index is empty")
    sub = replace(index, records=tuple(index.records[i] for i in chosen))
    sel_ids = [all_ids[i] for i in chosen]
    return sub, sel_ids


def _partial_plan(G: nn.Module, cfg: InvertConfig, s: Projector, sub: Any, sel_ids: list[str]) -> dict[str, Any]:
    """What the partial batches depend on (``plan.json``): a partial folder with another plan is refused."""
    plan = {
        "format": LATENTS_FORMAT + ".partial",
        "config": cfg.to_dict(),
        "perceptual_used": s.perceptual_used,
        "generator_sha256": generator_sha256(G),
        "ids_sha256": hashlib.sha256(json.dumps(sel_ids).encode()).hexdigest(),
    }
    if s.uses_labels:  # a conditional G starts each image at its label's mean w: labels shape the result
        plan["labels_sha256"] = hashlib.sha256(json.dumps([r.label for r in sub.records]).encode()).hexdigest()
    return plan


def _project_batches(
    s: Projector,
    dataset: ImageFolderDataset,
    sub: Any,
    sel_ids: list[str],
    partial: Path,
    batch: int,
    run_device: torch.device,
    progress: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Project the batches not yet in ``partial`` and write each there; returns every ``(ws, mse, perceptual)``."""
    from tqdm.auto import tqdm

    batches = [list(range(i, min(i + batch, len(sel_ids)))) for i in range(0, len(sel_ids), batch)]
    paths = [partial / f"batch_{b:05d}.safetensors" for b in range(len(batches))]
    done = sum(len(rows) for rows, p in zip(batches, paths, strict=True) if p.is_file())
    bar = tqdm(total=len(sel_ids), initial=done, desc="inverting", unit="img", disable=None if progress else True)
    with bar:
        for rows, path in zip(batches, paths, strict=True):
            if path.is_file():
                continue
            images = torch.stack([dataset[i][0] for i in rows]).to(run_device)  # [B, C, R, R]
            batch_ids = [sel_ids[i] for i in rows]
            labels = torch.tensor([sub.records[i].label for i in rows]) if s.uses_labels else None
            ws, mse, perceptual = s.project(images, batch_ids, labels=labels, progress=progress)
            _write_batch(path, batch_ids, ws, mse, perceptual)
            bar.update(len(rows))

    parts = [_read_batch(p, [sel_ids[i] for i in rows]) for rows, p in zip(batches, paths, strict=True)]
    ws = torch.cat([p["ws"] for p in parts])  # [N, num_ws, w_dim]
    mse = torch.cat([p["mse"] for p in parts])
    perceptual = torch.cat([p["perceptual"] for p in parts])
    return ws, mse, perceptual


def _start_or_resume(partial: Path, plan: dict[str, Any]) -> None:
    """Create the partial folder with its plan, or check that an existing one was made with the same plan."""
    plan_file = partial / "plan.json"
    if plan_file.is_file():
        try:
            old = json.loads(plan_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{plan_file} is unreadable ({e}); delete {partial} to start over") from e
        if old != plan:
            diff = changed_keys(old, plan)
            raise ConfigError(
                f"the unfinished run in {partial} used different settings ({', '.join(diff)}); rerun with the same "
                f"options to resume it, or delete {partial} to start over"
            )
        return
    partial.mkdir(parents=True, exist_ok=True)
    write_json(plan_file, plan)


def _finish(
    out_file: Path,
    meta_file: Path,
    G: nn.Module,
    index: Any,
    sub: Any,
    ids: list[str],
    ws: Tensor,
    mse: Tensor,
    perceptual: Tensor,
    cfg: InvertConfig,
    s: Projector,
) -> None:
    """Write the merged latents, then the JSON (the commit mark), atomically."""
    from safetensors.torch import save

    blob = save(
        {rid: ws[i].contiguous() for i, rid in enumerate(ids)},
        # one key only: safetensors writes metadata in hash-map order, and the file must be byte-reproducible
        metadata={"format": f"{LATENTS_FORMAT}/v{LATENTS_FORMAT_VERSION}"},
    )
    items = {}
    for i, (rid, record) in enumerate(zip(ids, sub.records, strict=True)):
        items[rid] = {
            "label": record.label,
            "label_name": index.label_names[record.label] if 0 <= record.label < len(index.label_names) else None,
            "identity": record.identity,
            "mse": float(mse[i]),
            "perceptual": finite_or_none(perceptual[i]),
        }
    finite = perceptual[torch.isfinite(perceptual)]
    architecture = getattr(G, "init_kwargs", None)
    meta = {
        "format": LATENTS_FORMAT,
        "format_version": LATENTS_FORMAT_VERSION,
        "latents_file": out_file.name,
        "latents_sha256": hashlib.sha256(blob).hexdigest(),
        "config": cfg.to_dict(),
        "perceptual_used": s.perceptual_used,
        "generator": {
            "sha256": generator_sha256(G),
            "architecture": architecture if isinstance(architecture, dict) else None,
            "num_ws": G.num_ws,
            "w_dim": G.w_dim,
            "img_resolution": G.img_resolution,
            "img_channels": G.img_channels,
        },
        "w_statistics": {"samples": cfg.w_avg_samples, "w_std": s.w_std},
        "dataset": {"root": str(index.root), "layout": index.layout, "label_names": list(index.label_names)},
        "summary": {
            "images": len(ids),
            "mse_mean": float(mse.mean()),
            "perceptual_mean": float(finite.mean()) if len(finite) else None,
        },
        "ids": ids,
        "items": items,
    }
    atomic_write_bytes(out_file, blob)
    write_json(meta_file, meta)


def load_latents(path: str | os.PathLike) -> tuple[list[str], Tensor, dict[str, Any]]:
    """Read latents written by :func:`invert_dataset`.

    Args:
        path: the ``.safetensors`` file, its ``.json``, or their common stem.

    Returns:
        ``(ids, ws, meta)``: ids in the written order, float32 ``ws [N, num_ws, w_dim]`` in that order, and the JSON.

    Raises:
        DataError: a file is absent, unreadable, of another format, or the two files do not match.
    """
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    latents, meta_file = stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")
    for f in (latents, meta_file):
        if not f.is_file():
            raise DataError(f"latents file {f} not found; write it with invert_dataset (latentwalk gan invert)")
    meta = read_versioned_json(
        meta_file, LATENTS_FORMAT, LATENTS_FORMAT_VERSION, what="latents file", fix="rerun the inversion"
    )
    blob = latents.read_bytes()
    tensors = load_checked_safetensors(blob, latents, str(meta.get("latents_sha256")), meta_file.name)
    ids = meta.get("ids")
    if not isinstance(ids, list) or sorted(ids) != sorted(tensors):
        raise DataError(f"{latents} and {meta_file.name} list different images; rerun the inversion")
    ws = torch.stack([tensors[i] for i in ids]) if ids else torch.empty(0)
    return ids, ws, meta
