"""Atomic file and folder writes: a crash leaves either the finished file or nothing, never half a file."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gan_zoo.errors import DataError, MissingWeightsError

__all__ = [
    "LFS_POINTER_PREFIX",
    "reject_placeholder",
    "read_model_bytes",
    "read_versioned_json",
    "read_json_dict",
    "sha256_file",
    "atomic_write_bytes",
    "atomic_write_text",
    "write_json",
    "write_csv",
    "load_checked_safetensors",
    "changed_keys",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; a shared dataset must be readable as usual
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


LFS_POINTER_PREFIX = b"version https://git-lfs"  # a git-lfs pointer checked out instead of the file itself


def reject_placeholder(path: str | os.PathLike, head: bytes, what: str) -> None:
    """Raise :class:`DataError` when a file's first bytes ``head`` show an empty file or a git-lfs pointer."""
    if not head:
        raise DataError(f"{what} {path} is empty (0 bytes); copy the file again")
    if head.startswith(LFS_POINTER_PREFIX):
        raise DataError(f"{what} {path} is a git-lfs pointer file, not the file itself; run `git lfs pull`")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (large checkpoints never sit in memory whole)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_model_bytes(path: str | os.PathLike, what: str, missing_hint: str) -> bytes:
    """The bytes of a weights file, refusing absent, empty and git-lfs pointer files with one clear sentence.

    Raises:
        MissingWeightsError: ``{what} {path} not found; {missing_hint}``.
        DataError: empty file or git-lfs pointer.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"{what} {path} not found; {missing_hint}")
    blob = path.read_bytes()
    reject_placeholder(path, blob[: len(LFS_POINTER_PREFIX)], what)
    return blob


def read_json_dict(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON object in ``path``, or ``None`` when the file is absent, unreadable, not JSON or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError: invalid JSON or undecodable text
        return None
    return data if isinstance(data, dict) else None


def read_versioned_json(path: str | os.PathLike, fmt: str, max_version: int, *, what: str, fix: str) -> dict:
    """Read a JSON sidecar of ours: a dict whose ``format`` is ``fmt`` and ``format_version`` <= ``max_version``.

    Args:
        what: what the file is, for messages ("generator checkpoint", "latents file").
        fix: what to do when it is unreadable ("rerun the inversion").

    Raises:
        DataError: invalid JSON, another format, or a newer or missing format version.
    """
    path = Path(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path} is not valid JSON ({e}); {fix}") from e
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise DataError(f"{path} is not a {what} (expected format {fmt!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > max_version:
        raise DataError(f"{path} has format_version {version!r}; this version reads up to {max_version}")
    return meta


def load_checked_safetensors(blob: bytes, path: str | os.PathLike, expected_sha256: str | None, sidecar: str) -> dict:
    """The tensors of a safetensors file's bytes, after checking them against the SHA-256 its JSON sidecar records.

    Args:
        blob: the file's bytes (read with :func:`read_model_bytes`).
        path: the file, for messages.
        expected_sha256: the checksum recorded in the sidecar; ``None`` = not recorded (skip the check).
        sidecar: the sidecar's name, for messages (``"generator.json"``).

    Raises:
        DataError: a checksum mismatch (changed or truncated file) or bytes that are not safetensors.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    if expected_sha256 is not None and hashlib.sha256(blob).hexdigest() != expected_sha256:
        raise DataError(f"{path} does not match the checksum in {sidecar}; it was changed or truncated")
    try:
        return load(blob)
    except SafetensorError as e:
        raise DataError(f"{path} is not a readable safetensors file ({e})") from e


def changed_keys(old: Any, new: Any, *, ignore: Iterable[str] = ()) -> list[str]:
    """The keys whose values differ between two records of a run's settings, sorted; a key holding a dict on both
    sides is compared key by key and named ``key.sub``. Both sides go through JSON first, so a tuple equals the list
    it was written as. The one comparison behind every "resume with the same settings" message (inversion, training,
    generation); ``ignore`` names top-level keys that may differ (e.g. options resolved at run time).
    """

    def same(a: Any, b: Any) -> bool:  # JSON text: tuple == list, NaN == NaN
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)

    old, new = json.loads(json.dumps(old)), json.loads(json.dumps(new))
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [] if same(old, new) else ["(whole record)"]
    skip, missing = set(ignore), object()
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, missing), new.get(key, missing)
        if key in skip or (a is not missing and b is not missing and same(a, b)):
            continue
        inner = changed_keys(a, b) if isinstance(a, dict) and isinstance(b, dict) else []
        out += [f"{key}.{sub}" for sub in inner] if inner else [key]
    return out
