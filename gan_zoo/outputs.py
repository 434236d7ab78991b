"""Who owns an output: the one rule every latentwalk command follows before it writes, replaces or deletes anything.

- **Nothing is written onto, inside or around an input.** An output that equals an input, lies inside an input
  folder (a dataset, a guides folder, a run folder read from) or contains one is refused before any work.
- **A folder latentwalk writes carries a marker**, ``.latentwalk-output.json``: the command that wrote it, the exact
  files it wrote (relative POSIX paths) and, for folders that fill up while a command runs (``generate``, ``gan
  train``, ``demo``), patterns of the files it is still writing. A subfolder with a marker of its own answers for
  itself.
- **A single file latentwalk writes** (a split CSV, a sample grid, a latents file) is recorded with its SHA-256 in
  ``.latentwalk-files.json`` beside it.
- **Replacing needs both**: ``overwrite`` and ownership. A folder is replaced only when its marker accounts for every
  file in it (a ``thesis.txt`` dropped into an old output keeps the whole folder safe); a file only when its bytes
  still hash to what latentwalk recorded (a file the user edited is theirs now). Without ``overwrite`` an existing
  non-empty output is refused, ours or not.
- **Writability is checked before slow work** by creating and removing a probe file in the nearest existing
  folder, so ``--out /proc/x`` or a read-only disk is one clear error, not a traceback hours later.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from gan_zoo.errors import ConfigError
from gan_zoo.io import atomic_write_bytes, read_json_dict, sha256_file, write_json

__all__ = [
    "MARKER",
    "LEDGER",
    "check_apart",
    "check_writable",
    "foreign_files",
    "claim_dir",
    "mark_dir",
    "replace_dir",
    "staged_dir",
    "claim_file",
    "write_owned_file",
    "record_file",
    "remove_owned_file",
]

MARKER = ".latentwalk-output.json"
LEDGER = ".latentwalk-files.json"
_MARKER_FORMAT = "latentwalk-output"
_LEDGER_FORMAT = "latentwalk-files"
_STAGE_SUFFIX = ".partial"

Inputs = Mapping[str, "str | os.PathLike | None"]


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(path))


def check_apart(out: str | os.PathLike, inputs: Inputs | None = None, *, what: str = "output") -> None:
    """Refuse an output that equals, lies inside or contains one of ``inputs`` (name -> path; ``None`` skipped).

    Raises:
        ConfigError: naming the input it overlaps.
    """
    target = _real(out)
    for name, value in (inputs or {}).items():
        if value is None or str(value) == "":
            continue
        src = _real(value)
        if target == src:
            raise ConfigError(f"the {what} {out} is the {name} input itself; write it elsewhere")
        if src in target.parents and src.is_dir():
            raise ConfigError(f"the {what} {out} lies inside the {name} input {value}; write it elsewhere")
        if target in src.parents:
            raise ConfigError(f"the {what} {out} contains the {name} input {value}; write it elsewhere")


def check_writable(out: str | os.PathLike) -> None:
    """Prove that ``out`` can be created: a probe file in its nearest existing folder is made and removed.

    Raises:
        ConfigError: a file stands where a folder of the path should be, or nothing can be written there.
    """
    path = _real(out)
    base = path if path.is_dir() else path.parent
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        raise ConfigError(f"cannot write {out}: {base} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".latentwalk-probe.", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"cannot write under {base} ({e.strerror or e}); choose a writable output path") from None


def _read_marker(folder: Path) -> dict[str, Any] | None:
    marker = read_json_dict(folder / MARKER)
    if marker is None or marker.get("format") != _MARKER_FORMAT:
        return None
    return marker


def foreign_files(folder: str | os.PathLike) -> list[str]:
    """Files under ``folder`` that latentwalk did not write, as relative POSIX paths (empty list: all ours).

    A folder without a marker owns nothing; a subfolder with a marker of its own is judged by that marker.
    """
    folder = Path(folder)
    marker = _read_marker(folder)
    files = set(marker.get("files") or ()) if marker else set()
    patterns = tuple(marker.get("patterns") or ()) if marker else ()
    foreign: list[str] = []
    for root, dirs, names in os.walk(folder):
        here = Path(root)
        rel_root = here.relative_to(folder)
        keep = []
        for d in sorted(dirs):
            sub = here / d
            if sub.is_symlink():
                names.append(d)  # a link is judged like a file: never followed
            elif (sub / MARKER).is_file() and _read_marker(sub) is not None:
                foreign += [f"{(rel_root / d).as_posix()}/{f}" for f in foreign_files(sub)]
            else:
                keep.append(d)
        dirs[:] = keep
        for name in sorted(names):
            rel = (rel_root / name).as_posix()
            if rel == MARKER or rel in files or any(fnmatch.fnmatchcase(rel, p) for p in patterns):
                continue
            foreign.append(rel)
    return foreign


def _describe_foreign(foreign: list[str]) -> str:
    more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
    return ", ".join(foreign[:3]) + more


def claim_dir(
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    inputs: Inputs | None = None,
    resumable: str | None = None,
    resume: bool = False,
) -> str:
    """Check, before any work, that the folder ``out`` may be written; nothing is changed.

    Args:
        out: the output folder.
        overwrite: replace an existing non-empty output that latentwalk wrote.
        inputs: name -> path of everything the command reads; the output must stay apart from each.
        resumable: the command whose earlier (perhaps unfinished) folder this call may continue (``"gan train"``,
            ``"generate"``).
        resume: continue such a folder (``gan train --resume``; ``generate`` always resumes).

    Returns:
        ``"new"`` (absent, or no file in it), ``"replace"`` (ours, ``overwrite`` given) or ``"resume"``.

    Raises:
        ConfigError: one sentence: a file in the way, an overlap with an input, an unwritable place, a non-empty
            folder without ``overwrite``, or a folder holding files latentwalk did not write (named).
    """
    path = Path(out)
    check_apart(path, inputs)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output path {out} is a file; give a folder path")
    check_writable(path)
    if not path.is_dir() or not any(p.is_file() or p.is_symlink() for p in path.rglob("*")):
        return "new"  # nothing in it (empty folders at most) that anyone could lose
    marker = _read_marker(path)
    foreign = foreign_files(path)
    if foreign:
        if marker is None:
            raise ConfigError(
                f"output folder {out} is not empty and latentwalk did not write it ({_describe_foreign(foreign)}); "
                "choose a new folder"
            )
        raise ConfigError(
            f"output folder {out} holds files latentwalk did not write ({_describe_foreign(foreign)}); move them "
            "away or choose a new folder"
        )
    if overwrite:
        return "replace"
    command = (marker or {}).get("command")
    if resumable is not None and command == resumable:
        if resume:
            return "resume"
        raise ConfigError(
            f"output folder {out} holds an earlier latentwalk {command}; pass --resume to continue it, --overwrite "
            "to replace it, or choose a new folder"
        )
    raise ConfigError(
        f"output folder {out} holds an earlier latentwalk {command or 'output'}; choose a new folder or pass "
        "--overwrite to replace it"
    )


def mark_dir(
    out: str | os.PathLike, command: str, *, files: Iterable[str] | None = None, patterns: Iterable[str] = ()
) -> None:
    """Write the ownership marker of ``out``.

    Args:
        command: the command that wrote the folder (``"data phantoms"``, ``"generate"``, ...).
        files: relative POSIX paths of the files written; ``None`` = every file there now (subfolders that carry
            a marker of their own excepted).
        patterns: fnmatch patterns (``*`` crosses ``/``) of files the command is still writing.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = _inventory(out) if files is None else files
    marker = {"format": _MARKER_FORMAT, "format_version": 1, "command": command, "files": sorted(set(files)),
              "patterns": sorted(set(patterns))}  # fmt: skip
    write_json(out / MARKER, marker)


def _inventory(folder: Path) -> list[str]:
    """Every file under ``folder`` (not the marker, not inside subfolders that carry their own marker)."""
    found: list[str] = []
    for root, dirs, names in os.walk(folder):
        here = Path(root)
        dirs[:] = [d for d in sorted(dirs) if not (here / d / MARKER).is_file()]
        found += [(here / n).relative_to(folder).as_posix() for n in names]
    return [f for f in found if f != MARKER]


def replace_dir(out: str | os.PathLike) -> None:
    """Delete the folder ``out`` after checking once more that every file in it is latentwalk's.

    Raises:
        ConfigError: a file latentwalk did not write appeared in the meantime (nothing is deleted).
    """
    path = Path(out)
    if not path.exists():
        return
    foreign = foreign_files(path)
    if foreign:
        raise ConfigError(f"output folder {out} holds files latentwalk did not write ({_describe_foreign(foreign)})")
    shutil.rmtree(path)


@contextlib.contextmanager
def staged_dir(
    out: str | os.PathLike, command: str, *, overwrite: bool = False, inputs: Inputs | None = None
) -> Iterator[Path]:
    """Build a folder in a hidden staging folder beside ``out``; mark it and move it into place only on success.

    ``out`` is claimed first (:func:`claim_dir`); on any exception the staging folder is removed and ``out`` is left
    as it was.
    """
    claim_dir(out, overwrite=overwrite, inputs=inputs)
    out = Path(out)
    parent = _real(out).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=_STAGE_SUFFIX, dir=parent))
    except OSError as e:
        raise ConfigError(f"cannot write under {parent} ({e.strerror or e}); choose a writable output folder") from e
    try:
        yield stage
        mark_dir(stage, command)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if out.exists():
        replace_dir(out)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(stage, 0o777 & ~mask)  # mkdtemp makes a 0700 folder
    os.replace(stage, out)


# ---------------------------------------------------------------------------------------------------------------
# Single files.


def _ledger(folder: Path) -> dict[str, str]:
    data = read_json_dict(folder / LEDGER)
    if data is None or data.get("format") != _LEDGER_FORMAT or not isinstance(data.get("files"), dict):
        return {}
    return {str(k): str(v) for k, v in data["files"].items()}


def claim_file(path: str | os.PathLike, *, overwrite: bool = False, inputs: Inputs | None = None) -> None:
    """Check, before any work, that the file ``path`` may be written; nothing is changed.

    Raises:
        ConfigError: a folder in the way, an overlap with an input, an unwritable place, an existing file without
            ``overwrite``, or an existing file latentwalk did not write (or that changed since).
    """
    path = Path(path)
    check_apart(path, inputs, what="output file")
    if path.is_dir():
        raise ConfigError(f"output file {path} is a folder; give a file path")
    check_writable(path)
    if not path.exists():
        return
    ours = _ledger(path.parent).get(path.name) == sha256_file(path)
    if not ours:
        raise ConfigError(f"{path} exists and latentwalk did not write it; choose another file name")
    if not overwrite:
        raise ConfigError(f"{path} exists (written by latentwalk earlier); pass --overwrite to replace it")


def record_file(path: str | os.PathLike) -> None:
    """Record the file ``path`` (just written by latentwalk) with its SHA-256 in the ledger beside it."""
    path = Path(path)
    files = _ledger(path.parent)
    files[path.name] = sha256_file(path)
    write_json(path.parent / LEDGER, {"format": _LEDGER_FORMAT, "format_version": 1, "files": files})


def write_owned_file(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` atomically to ``path`` and record it as latentwalk's (call :func:`claim_file` first)."""
    atomic_write_bytes(path, data)
    record_file(path)


def remove_owned_file(path: str | os.PathLike) -> bool:
    """Delete the file ``path`` if the ledger beside it records its current bytes, and drop it from the ledger.

    Returns:
        ``True`` when deleted; ``False`` (nothing changed) when absent, unrecorded or changed since it was written.
    """
    path = Path(path)
    files = _ledger(path.parent)
    if not path.is_file() or files.get(path.name) != sha256_file(path):
        return False
    path.unlink()
    del files[path.name]
    write_json(path.parent / LEDGER, {"format": _LEDGER_FORMAT, "format_version": 1, "files": files})
    return True
