"""Generator checkpoints as data: ``<name>.safetensors`` (the state_dict) + ``<name>.json`` (architecture, provenance).

The JSON holds the exact constructor arguments of :class:`~gan_zoo.stylegan2.Generator` (or, with the format
``latentwalk.gan_zoo.stylegan3.Generator``, of :class:`~gan_zoo.stylegan3.Generator`), the format version, the
SHA-256 of the weights file and a free-form ``provenance`` dict (training data, seeds, source pickle, ...). Both files
are written atomically, weights first, so a crash leaves either a complete checkpoint or no JSON. Loading never
unpickles anything and loads the state_dict with ``strict=True``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gan_zoo.errors import ConfigError, DataError, MissingWeightsError
from gan_zoo.io import atomic_write_bytes, load_checked_safetensors, read_model_bytes, read_versioned_json, write_json
from gan_zoo.stylegan2 import Generator
from gan_zoo.stylegan3 import Generator as StyleGAN3Generator

__all__ = [
    "FORMAT",
    "STYLEGAN3_FORMAT",
    "FORMAT_VERSION",
    "checkpoint_paths",
    "save_generator",
    "load_generator",
    "read_generator_config",
    "load_state_dict_strict",
    "check_architecture",
    "build_checked",
]

FORMAT = "latentwalk.gan_zoo.stylegan2.Generator"
FORMAT_VERSION = 1
STYLEGAN3_FORMAT = "latentwalk.gan_zoo.stylegan3.Generator"
_CLASSES: dict[str, type[nn.Module]] = {FORMAT: Generator, STYLEGAN3_FORMAT: StyleGAN3Generator}
_DEFAULT_NAME = "generator"


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(weights, config)`` paths for a checkpoint given as a stem, either file, or a folder.

    ``runs/g`` and ``runs/g.safetensors`` and ``runs/g.json`` all give ``(runs/g.safetensors, runs/g.json)``; an
    existing folder ``runs/`` gives ``runs/generator.safetensors`` and ``runs/generator.json``.
    """
    p = Path(path)
    if p.is_dir():
        p = p / _DEFAULT_NAME
    elif p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def load_state_dict_strict(module: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """``module.load_state_dict(state, strict=True)``, with every missing/unexpected key or bad shape named.

    Raises:
        DataError: naming ``where``, the missing and unexpected keys, or the tensors whose shapes differ.
    """
    _compare_state(module.state_dict(), state, where)
    module.load_state_dict(state, strict=True)


# Sane ranges of the integer options a generator file may record (inclusive); anything else is refused before a module
# is built. Memory is bounded separately: the module is first built on the meta device and its shapes compared with
# the tensors the file holds.
_INT_RANGES = {
    "z_dim": (0, 8192), "c_dim": (0, 65536), "w_dim": (1, 8192), "img_resolution": (4, 8192),
    "img_channels": (1, 16), "num_layers": (1, 64), "embed_features": (0, 65536), "layer_features": (1, 65536),
    "channel_base": (1, 1 << 26), "channel_max": (1, 65536), "num_fp16_res": (0, 16), "kernel_size": (1, 15),
    "cmap_dim": (0, 65536), "mbstd_group_size": (0, 1024), "mbstd_num_channels": (0, 1024),
    "freeze_layers": (0, 64), "mapping_layers": (1, 64), "channels_max": (1, 65536), "num_ws": (1, 256),
}  # fmt: skip
_MAX_LIST = 64  # resample filters have 4 taps; nothing a generator records is a long list


def check_architecture(kwargs: Any, where: str, _key: str = "") -> None:
    """Refuse recorded constructor arguments outside sane ranges (negative or absurd sizes, non-finite numbers).

    Raises:
        ConfigError: naming the argument, its value and the accepted range.
    """
    if isinstance(kwargs, dict):
        for key, value in kwargs.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where}: an architecture option has a non-text name {key!r}")
            check_architecture(value, where, key)
        return
    if isinstance(kwargs, list | tuple):
        if len(kwargs) > _MAX_LIST:
            raise ConfigError(f"{where}: {_key} has {len(kwargs)} entries; at most {_MAX_LIST} are accepted")
        for value in kwargs:
            check_architecture(value, where, _key)
        return
    if isinstance(kwargs, bool) or kwargs is None or isinstance(kwargs, str):
        return
    if isinstance(kwargs, int):
        lo, hi = _INT_RANGES.get(_key, (0, 1 << 26))
        if not lo <= kwargs <= hi:
            raise ConfigError(f"{where}: {_key or 'a value'} = {kwargs} is outside the accepted range {lo}..{hi}")
        return
    if isinstance(kwargs, float):
        if not math.isfinite(kwargs):
            raise ConfigError(f"{where}: {_key or 'a value'} = {kwargs} is not a finite number")
        return
    raise ConfigError(f"{where}: {_key or 'a value'} is a {type(kwargs).__name__}, not a number, text or list")


def build_checked(
    cls: type[nn.Module], kwargs: dict[str, Any], state: dict[str, torch.Tensor], where: str
) -> nn.Module:
    """Build ``cls(**kwargs)`` and load ``state`` into it, strictly, without trusting either first.

    The arguments are range-checked (:func:`check_architecture`), the module is built on the meta device (no
    memory) and its tensor names and shapes are compared with ``state``; the file must hold at least as many bytes
    of tensors as the module needs. Only then is the real module built and loaded. A file that records a huge
    architecture but holds small weights is refused before anything large is allocated.

    Raises:
        ConfigError: arguments out of range or refused by the constructor (named).
        DataError: missing/unexpected tensors, wrong shapes, or weights that repeat one storage to fill the module.
    """
    check_architecture(kwargs, where)
    try:
        with torch.device("meta"):
            probe = cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from e
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError, OverflowError) as e:
        raise ConfigError(f"{where}: invalid architecture ({type(e).__name__}: {e})") from e
    _compare_state(probe.state_dict(), state, where)
    need = sum(t.numel() * t.element_size() for t in probe.state_dict().values())
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in state.values() if t.numel()}
    if need > sum(storages.values()):
        raise DataError(
            f"{where} fills {need:,} bytes of weights from {sum(storages.values()):,}; refused as malformed"
        )
    del probe
    module = cls(**kwargs)
    load_state_dict_strict(module, state, where)
    return module


def _compare_state(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], where: str) -> None:
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise DataError(
            f"{where} does not match the architecture: missing keys {missing}, unexpected keys {unexpected}"
        )
    bad = [f"{k} {list(state[k].shape)} vs {list(v.shape)}" for k, v in own.items() if state[k].shape != v.shape]
    if bad:
        raise DataError(f"{where} has tensors of the wrong shape (file vs architecture): {bad}")


def save_generator(
    G: Generator, path: str | os.PathLike, provenance: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write ``G`` as ``<name>.safetensors`` + ``<name>.json`` (see :func:`checkpoint_paths` for ``path``).

    Args:
        G: our :class:`~gan_zoo.stylegan2.Generator` or :class:`~gan_zoo.stylegan3.Generator`, on any device.
        path: stem (``out/g``), either file name, or an existing folder (files named ``generator.*``).
        provenance: JSON-serialisable facts about where the weights came from; stored as given.

    Returns:
        ``(weights_path, config_path)``.

    Raises:
        ConfigError: ``G`` is not our Generator, or ``provenance`` is not JSON-serialisable (nothing is written).
    """
    fmt = next((f for f, cls in _CLASSES.items() if isinstance(G, cls)), None)
    if fmt is None:
        raise ConfigError(
            f"save_generator needs a gan_zoo.stylegan2.Generator or gan_zoo.stylegan3.Generator, got {type(G).__name__}"
        )
    weights, config = checkpoint_paths(path)
    provenance = dict(provenance or {})
    try:
        json.dumps(provenance)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"provenance must be JSON-serialisable (strings, numbers, lists, dicts): {e}") from e

    from safetensors.torch import save

    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in G.state_dict().items()}
    blob = save(state)  # no safetensors metadata: its key order is not stable, and the JSON says it all
    meta = {
        "format": fmt,
        "format_version": FORMAT_VERSION,
        "architecture": G.init_kwargs,
        "num_ws": G.num_ws,
        "weights_file": weights.name,
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
        "provenance": provenance,
    }
    atomic_write_bytes(weights, blob)
    write_json(config, meta)
    return weights, config


def read_generator_config(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON half of a checkpoint (architecture, provenance, checksum), validated.

    Raises:
        MissingWeightsError: the JSON file is absent.
        DataError: it is not valid JSON, or not a generator checkpoint of a known format version.
    """
    _, config = checkpoint_paths(path)
    if not config.is_file():
        raise MissingWeightsError(
            f"generator config {config} not found; a checkpoint is <name>.safetensors + <name>.json as written "
            f"by save_generator"
        )
    meta = read_versioned_json(
        config,
        _format_of(config),
        FORMAT_VERSION,
        what="generator checkpoint",
        fix="restore it from the saved checkpoint",
    )
    if not isinstance(meta.get("architecture"), dict):
        raise DataError(f"{config} has no 'architecture' object")
    return meta


def _format_of(config: Path) -> str:
    """The generator format a JSON sidecar declares when it is one we read, else :data:`FORMAT` (whose reading then
    reports what is wrong with the file)."""
    try:
        fmt = json.loads(config.read_text(encoding="utf-8")).get("format")
    except (UnicodeDecodeError, ValueError, AttributeError):
        return FORMAT
    return fmt if isinstance(fmt, str) and fmt in _CLASSES else FORMAT


def load_generator(path: str | os.PathLike, device: str | torch.device | None = None) -> Generator | StyleGAN3Generator:
    """Load a checkpoint written by :func:`save_generator`.

    Args:
        path: stem, either file, or a folder holding ``generator.*``.
        device: target device; ``None`` = CPU.

    Returns:
        :class:`~gan_zoo.stylegan2.Generator` (or :class:`~gan_zoo.stylegan3.Generator` for that format) in eval
        mode with ``requires_grad`` off.

    Raises:
        MissingWeightsError: the JSON or safetensors file is absent.
        DataError: empty or git-lfs pointer file, checksum mismatch, unreadable safetensors, or keys/shapes that do
            not match the architecture (listed).
        ConfigError: the recorded architecture is invalid (unknown options named).
    """
    weights, config = checkpoint_paths(path)
    meta = read_generator_config(path)
    blob = read_model_bytes(weights, "generator weights", f"its config {config.name} is present; copy both files")
    state = load_checked_safetensors(blob, weights, meta.get("weights_sha256"), config.name)
    G = build_checked(_CLASSES[meta["format"]], meta["architecture"], state, str(weights))
    return G.to(device or "cpu").eval().requires_grad_(False)
