"""Small hostile generator files that ask for far more memory than they hold, or nest forever (issue: safety).

Each writer makes the file the way an attacker could, with nothing but the standard library and torch's own public
serialisation; none of them is a valid network. Used by the bad-input corpus test and by
``benchmarks/bench_hostile.py`` (peak memory of reading each one).
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import torch

GIB = 1 << 30


class _Reduce:
    """Pickles as ``fn(*args)``."""

    def __init__(self, fn, *args) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def bytearray_bomb(path: Path, size: int = 2 * GIB) -> Path:
    """A 47-byte pickle: ``{'G_ema': bytearray(size)}``."""
    path.write_bytes(pickle.dumps({"G_ema": _Reduce(bytearray, size)}, protocol=2))
    return path


def legacy_storage_blob(numel: int, present: int = 16) -> bytes:
    """A legacy ``torch.save`` of one float storage that declares ``numel`` elements but holds ``present``."""
    sentinel = object()

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel, None) if obj is sentinel else None

    buf = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": sys.byteorder == "little",
                                                   "type_sizes": {"short": 2, "int": 4, "long": 4}}):  # fmt: skip
        pickle.dump(header, buf, protocol=2)
    _Pickler(buf, protocol=2).dump(sentinel)
    pickle.dump(["0"], buf, protocol=2)
    buf.write(struct.pack("<q", numel) + bytes(4 * present))
    return buf.getvalue()


def storage_bomb(path: Path, numel: int = 400_000_000) -> Path:
    """A network pickle whose one tensor storage declares ``numel`` float32 (1.6 GB) and holds 64 bytes."""
    blob = legacy_storage_blob(numel)
    path.write_bytes(pickle.dumps({"G_ema": _Reduce(torch.storage._load_from_bytes, blob)}, protocol=4))
    return path


def compressed_storage(path: Path, numel: int = 1000) -> Path:
    """A network pickle whose storage is a zip checkpoint with deflate-compressed records: ``numel`` float32 zeros
    (375 M of them, 1.5 GB, pack into about 1.5 MB)."""
    buf = io.BytesIO()
    torch.save(torch.zeros(numel).untyped_storage(), buf)
    packed = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    path.write_bytes(pickle.dumps({"G_ema": _Reduce(torch.storage._load_from_bytes, packed.getvalue())}, protocol=4))
    return path


def self_containing_record(path: Path) -> Path:
    """A network pickle (protocol 2, hand-assembled opcodes) whose generator record lists itself as a sub-network."""

    def text(s: str) -> bytes:
        raw = s.encode()
        return b"X" + struct.pack("<I", len(raw)) + raw

    ops = b"\x80\x02}q\x00" + text("G_ema")
    ops += b"ctorch_utils.persistence\n_reconstruct_persistent_obj\n}(" + text("type") + text("class")
    ops += text("version") + b"K\x06" + text("module_src") + text("") + text("class_name") + text("Generator")
    ops += text("state") + b"}q\x01(" + text("_modules") + b"}q\x02uu\x85Rq\x03s"  # record -> top['G_ema']
    ops += b"h\x02" + text("self") + b"h\x03s0."  # modules['self'] = the record itself
    path.write_bytes(ops)
    return path


def wide_generator_record(path: Path, write_nvidia_pickle_file, monkeypatch, w_dim: int = 20000) -> Path:
    """A valid tiny NVIDIA-format pickle whose generator records ``w_dim`` and 2 mapping layers (3.2 GB if built and
    initialised at 20000) over tiny weights."""
    from tiny import tiny_generator

    def widen(state: dict) -> None:
        state["_init_kwargs"]["w_dim"] = w_dim
        state["_init_kwargs"]["mapping_kwargs"]["num_layers"] = 2  # one w_dim x w_dim layer: 1.6 GB at 20000

    return write_nvidia_pickle_file(path, {"G_ema": tiny_generator()}, monkeypatch, overrides={"Generator": widen})


def lite_with_architecture(folder: Path, **changes) -> Path:
    """Our checkpoint (``generator.safetensors`` + ``.json``) of a tiny generator whose JSON records ``changes``."""
    from tiny import tiny_generator

    from gan_zoo.checkpoint import save_generator

    _, config = save_generator(tiny_generator(), folder / "generator", {})
    meta = json.loads(config.read_text())
    meta["architecture"].update(changes)
    config.write_text(json.dumps(meta))
    return folder


def shell_payload(command: str) -> _Reduce:
    """An object that pickles as ``os.system(command)``: run by any reader that unpickles the usual way."""
    import os

    return _Reduce(os.system, command)


def stylegan3_record(path: Path, write_nvidia_pickle_file, monkeypatch, payload=None, **changes) -> Path:
    """A tiny NVIDIA-format StyleGAN3 (config r) pickle whose generator records ``changes`` among its flat synthesis
    options (``channel_base=1 << 24, channel_max=65536``: 65536 channels a layer, tens of GB if built;
    ``filter_size=10**6``: a 2-D radial filter of 10**12 taps if designed), or whose first synthesis layer's state
    holds ``payload`` (an object that pickles as a call, e.g. :func:`shell_payload`)."""
    from tiny import tiny_stylegan3

    def change(state: dict) -> None:
        state["_init_kwargs"].update(changes)

    def plant(state: dict) -> None:
        if payload is not None:
            state["in_size"] = payload

    overrides = {"Generator": change, "SynthesisLayer": plant}
    return write_nvidia_pickle_file(path, {"G_ema": tiny_stylegan3("r")}, monkeypatch, overrides=overrides)
