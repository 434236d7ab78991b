"""Atomic file and folder writes: a crash leaves either the finished file or nothing, never half a file."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from latentwalk.errors import ConfigError

__all__ = ["atomic_write_bytes", "atomic_write_text", "write_json", "write_csv", "staged_dir", "prepare_out_dir"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON atomically; the same object always gives the same bytes."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(path: str | os.PathLike, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write rows (dicts keyed by ``columns``) as a CSV with a header, ``\\n`` line ends, atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="raise")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    atomic_write_text(path, buf.getvalue())


def prepare_out_dir(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Check that ``out`` may be written: absent, an empty folder, or ``overwrite`` is set.

    Raises:
        ConfigError: ``out`` is a file, or a non-empty folder without ``overwrite``, or its parent is not writable.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path {out} is a file; give a folder path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"output folder {out} is not empty; choose a new folder or pass --overwrite")
    parent = out.resolve().parent
    if not parent.exists():
        with contextlib.suppress(OSError):
            parent.mkdir(parents=True, exist_ok=True)
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ConfigError(f"cannot write under {parent}; choose a writable output folder")
    return out


@contextlib.contextmanager
def staged_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder in a hidden staging folder beside ``out`` and move it into place only when the block succeeds.

    On any exception the staging folder is removed and ``out`` is left as it was.
    """
    out = prepare_out_dir(out, overwrite)
    out.resolve().parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.resolve().parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(stage, out)
