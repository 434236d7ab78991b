"""The private sidecar of ``latentwalk generate``: the real patients behind each synthetic image.

The shareable output folder holds no patient identifier. The data holder may still want to know, per synthetic
image, which real patients it came from, to measure afterwards how much of them an attacker can read back from the
image (``latentwalk evaluate --private``, :mod:`latentwalk.evaluate.leakage`). That record names real patients, so
it is written *outside* the output folder: by default to the sibling folder ``<OUT>.private/patients.json``
(``generate(private_dir=...)`` chooses another folder; never one inside ``OUT``), readable by its owner only, and
recorded as latentwalk's in the folder's ``.latentwalk-files.json`` (:mod:`latentwalk.outputs`): a file there that
latentwalk did not write is never replaced. Neither its path nor its content enters ``run.json`` or the card.

Checked before any work (:func:`check_sidecar`): the private folder must be writable (a default ``<OUT>.private``
beside an ``OUT`` whose parent is read-only is one error asking for ``--private-dir``), and a sidecar already there is
replaced only by a rerun of the output it belongs to (``output``, its output folder's real path; for a sidecar
without one, its ``run_fingerprint`` against the run ``OUT`` holds). Two runs pointed at one ``--private-dir`` are
refused instead of replacing each other's sidecar, ``--overwrite`` or not: ``--overwrite`` replaces what latentwalk
wrote for *this* output. The check is repeated just before the sidecar is written (a run started meanwhile).

Who is behind an image (``source``):

* ``"ksame-groups"`` (``ksame``, ``ksame-plan``): the endpoints are means of k-same groups, so the patients behind an
  image are the members of its groups. The image at step ``s`` of a path from group A to group B (``t = s / (n_steps
  - 1)``) gives each member of A the weight ``(1 - t) / |A|`` and each member of B ``t / |B|``; a ``ksame`` image
  gives each member of its group ``1 / |group|``.
* ``"identity-guide"`` (``linear``, ``plan``): the endpoints are sampled from the generator, so no real patient is
  behind them by construction. Recorded instead is the training patient the identity guide rates most likely at
  each endpoint (with that probability), weighted ``1 - t`` and ``t``: a proxy, not a provenance.

Format (JSON, key-sorted)::

    {"format": "latentwalk.private-patients", "format_version": 1, "method": "ksame-plan",
     "source": "ksame-groups", "run_fingerprint": "<run.json's fingerprint>", "output": "/abs/path/of/OUT",
     "private": "<a warning>", "images": {"s0_000001": {"patients": {"<identity>": 0.25, ...}, "t": 0.333333}, ...}}

``images`` is keyed by the manifest's ids: the sidecar is written by the same merge that decides them, from the
work items a resumed run reads back, so it matches ``manifest.csv`` of the finished run. Entries of the identity
guide add ``endpoint_confidence`` (its probability for the patient at each end). Weights of an image sum to 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from latentwalk.errors import ConfigError, DataError
from latentwalk.generation.items import Context, Item
from latentwalk.io import read_json_dict, read_versioned_json, sha256_file
from latentwalk.outputs import LEDGER, check_apart, claim_file, record_file

_FIX = "(private_dir / --private-dir)"

__all__ = [
    "SIDECAR_FORMAT",
    "SIDECAR_FORMAT_VERSION",
    "SIDECAR_FILE",
    "SOURCES",
    "sidecar_path",
    "sidecar_source",
    "check_sidecar",
    "check_owner",
    "patients_behind",
    "write_sidecar",
    "read_sidecar",
    "is_ours",
    "write_private_file",
]

SIDECAR_FORMAT = "latentwalk.private-patients"
SIDECAR_FORMAT_VERSION = 1
SIDECAR_FILE = "patients.json"
PRIVATE_SUFFIX = ".private"  # the default folder: <OUT>.private beside the output folder
SOURCES = {"ksame": "ksame-groups", "ksame-plan": "ksame-groups", "linear": "identity-guide", "plan": "identity-guide"}
_WARNING = (
    "PRIVATE: names the real patients behind each synthetic image. Keep it with the real data; never share it with "
    "the synthetic dataset."
)


def sidecar_path(out: str | os.PathLike, private_dir: str | os.PathLike | None = None) -> Path:
    """Where the sidecar of the output folder ``out`` goes: ``private_dir/patients.json``, by default
    ``<OUT>.private/patients.json`` beside ``out``."""
    if private_dir is not None:
        return Path(private_dir) / SIDECAR_FILE
    absolute = Path(os.path.abspath(out))
    return absolute.with_name(absolute.name + PRIVATE_SUFFIX) / SIDECAR_FILE


def sidecar_source(method: str) -> str:
    """``"ksame-groups"`` or ``"identity-guide"``: who the sidecar of ``method`` names (module docstring)."""
    if method not in SOURCES:
        raise ConfigError(f'unknown generation method "{method}"; expected one of {", ".join(SOURCES)}')
    return SOURCES[method]


def is_ours(path: Path) -> bool:
    """``path`` is a file latentwalk wrote and nobody changed since (its ledger entry, :mod:`latentwalk.outputs`)."""
    files = (read_json_dict(path.parent / LEDGER) or {}).get("files")
    if not isinstance(files, dict) or path.name not in files:
        return False
    return files[path.name] == sha256_file(path)


def _output_id(out: str | os.PathLike) -> str:
    """The identity of an output folder a sidecar records: its real absolute path."""
    return os.path.realpath(out)


def _check_private_folder(folder: Path) -> None:
    """Prove that the private folder can be created and written: a probe file in its nearest existing folder.

    Raises:
        ConfigError: one line naming the folder and asking for another (``--private-dir``).
    """
    base = Path(os.path.realpath(folder))
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        raise ConfigError(f"cannot create the private folder {folder}: {base} is a file; pass a writable folder "
                          f"outside the output folder {_FIX}")  # fmt: skip
    try:
        fd, probe = tempfile.mkstemp(prefix=".latentwalk-probe.", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(
            f"cannot write the private sidecar's folder {folder} (in {base}: {e.strerror or e}); pass a writable "
            f"folder outside the output folder {_FIX}"
        ) from None


def check_owner(path: Path, out: str | os.PathLike, fingerprint: str | None) -> None:
    """Refuse a sidecar at ``path`` that latentwalk did not write, or that belongs to another output than ``out``.

    Args:
        path: the sidecar file; nothing to check when absent.
        out: this run's output folder.
        fingerprint: the fingerprint of the run ``out`` holds (finished or not; ``None`` for none): it decides for
            a sidecar that records no output folder (written before sidecars recorded one).

    Raises:
        ConfigError: one line naming the file, and the output it belongs to when it records one.
    """
    if not path.is_file():
        return
    if not is_ours(path):
        raise ConfigError(
            f"{path} exists and latentwalk did not write it; move it away or choose another private folder {_FIX}"
        )
    record = read_json_dict(path) or {}
    recorded = record.get("output")
    if isinstance(recorded, str) and recorded:
        if recorded == _output_id(out):
            return
        other = f"the output {recorded}"
    elif fingerprint is not None and record.get("run_fingerprint") == fingerprint:
        return
    else:
        other = f"another generate run (fingerprint {str(record.get('run_fingerprint'))[:12]})"
    raise ConfigError(
        f"the private sidecar {path} belongs to {other}, not to {out}: runs must not share a private folder; pass a "
        f"different private folder for {out} {_FIX}"
    )


def check_sidecar(
    path: Path,
    out: str | os.PathLike,
    *,
    replace: bool,
    inputs: Mapping[str, str | os.PathLike | None],
    fingerprint: str | None = None,
) -> None:
    """Refuse, before any work, a sidecar path inside the output folder or an input, an unwritable private folder,
    or a sidecar there that is taken.

    Args:
        path: the sidecar file (:func:`sidecar_path`).
        out: the shareable output folder; the sidecar must lie outside it.
        replace: an earlier sidecar of this output's may be replaced (``overwrite``, or a resumed run).
        inputs: name -> path of what the run reads (the sidecar stays apart from each).
        fingerprint: the fingerprint of the run ``out`` holds already (its ``run.json`` or unfinished work; ``None``
            for none), for :func:`check_owner`.

    Raises:
        ConfigError: one line: inside ``out`` or an input, a private folder that cannot be created or written, a
            file there latentwalk did not write (or that changed since), another output's sidecar (even with
            ``replace``), an earlier sidecar of this output's without ``replace``, a folder in the way.
    """
    real_out, real = Path(os.path.realpath(out)), Path(os.path.realpath(path))
    if real_out == real or real_out in real.parents:
        raise ConfigError(
            f"the private sidecar {path} would lie inside the shareable output folder {out}; choose a private folder "
            f"outside it {_FIX}"
        )
    check_apart(path, inputs, what="private sidecar")
    if path.is_dir():
        raise ConfigError(f"the private sidecar {path} is a folder; move it away or choose another private folder "
                          f"{_FIX}")  # fmt: skip
    _check_private_folder(path.parent)
    check_owner(path, out, fingerprint)
    claim_file(path, overwrite=replace, inputs=inputs)


def _weights(parts: Sequence[tuple[Sequence[str], float]]) -> dict[str, float]:
    """``{identity: weight}`` from ``(patients, share)`` parts, each share split evenly among its patients."""
    out: dict[str, float] = {}
    for patients, share in parts:
        for patient in patients:
            out[patient] = out.get(patient, 0.0) + share / len(patients)
    return {p: round(w, 9) for p, w in sorted(out.items()) if w > 0}


def patients_behind(ctx: Context, item: Item, rec: Mapping[str, Tensor], c: int) -> dict[str, Any]:
    """The sidecar entry of candidate ``c`` of ``item`` (its work record ``rec``): the patients behind the image.

    Raises:
        DataError: a ``linear``/``plan`` work item written before endpoints were rated (an older latentwalk).
    """
    cfg = ctx.cfg
    path_no, step = int(rec["path"][c]), int(rec["step"][c])
    if cfg.method == "ksame":
        return {"patients": _weights([(ctx.members[item.label][item.groups[path_no]], 1.0)])}
    t = step / (cfg.plan.n_steps - 1) if cfg.plan.n_steps > 1 else 0.0
    if cfg.method == "ksame-plan":
        a, b = ctx.pairs[item.label][item.groups[path_no]].tolist()
        groups = ctx.members[item.label]
        return {"patients": _weights([(groups[a], 1.0 - t), (groups[b], t)]), "t": round(t, 6)}
    if "endpoint_patient" not in rec:
        raise DataError(
            f"work item {item.name} was written by an older latentwalk without its endpoints' patients; delete "
            f"OUT/.work/items/{item.name}.safetensors and rerun to recompute it"
        )
    a, b = rec["endpoint_patient"][path_no].tolist()
    entry: dict[str, Any] = {"patients": _weights([((ctx.patients[a],), 1.0 - t), ((ctx.patients[b],), t)])}
    entry["t"] = round(t, 6)
    entry["endpoint_confidence"] = [round(float(x), 6) for x in rec["endpoint_confidence"][path_no]]
    return entry


def write_sidecar(
    path: Path,
    *,
    out: str | os.PathLike,
    method: str,
    fingerprint: str,
    images: Mapping[str, dict[str, Any]],
) -> None:
    """Write the sidecar atomically, readable by its owner only, and record it as latentwalk's
    (call :func:`check_sidecar` first; :func:`check_owner` is repeated here, for a run started meanwhile).

    Args:
        path: the sidecar file.
        out: the output folder the sidecar belongs to (its real path is recorded).
        method: the generation method.
        fingerprint: the run's fingerprint (as in its ``run.json``), which ties the sidecar to the run.
        images: manifest id -> :func:`patients_behind` entry, for every written image.

    Raises:
        ConfigError: a file at ``path`` latentwalk did not write, or another output's sidecar.
    """
    check_owner(path, out, fingerprint)
    record = {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_FORMAT_VERSION,
        "private": _WARNING,
        "method": method,
        "source": sidecar_source(method),
        "run_fingerprint": fingerprint,
        "output": _output_id(out),
        "images": dict(images),
    }
    write_private_file(path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` in the run's private folder: atomically (a temporary file there, then
    ``os.replace``), readable by its owner only from the first byte, and recorded as latentwalk's in the folder's
    ledger (:mod:`latentwalk.outputs`). A missing folder is created for its owner only."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)  # a folder of our own: its owner only
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    record_file(path)


def read_sidecar(path: str | os.PathLike, ids: Sequence[str], fingerprint: str | None = None) -> dict[str, Any]:
    """Read a sidecar (its file, or the folder holding ``patients.json``) for the synthetic images ``ids``.

    Args:
        path: ``patients.json`` or its folder.
        ids: the manifest ids of the synthetic images, in order.
        fingerprint: the synthetic set's run fingerprint (its ``run.json``), when it has one: must match.

    Returns:
        The sidecar's record, with ``images`` reduced to ``ids`` in their order (a list of ``{identity: weight}``).

    Raises:
        DataError: not a sidecar, another run's sidecar, or ids the sidecar does not name.
    """
    path = Path(path)
    file = path / SIDECAR_FILE if path.is_dir() else path
    if not file.is_file():
        raise DataError(f"no private sidecar at {file}; pass the patients.json latentwalk generate wrote")
    fix = "pass the patients.json latentwalk generate wrote"
    record = read_versioned_json(file, SIDECAR_FORMAT, SIDECAR_FORMAT_VERSION, what="private sidecar", fix=fix)
    if fingerprint is not None and record.get("run_fingerprint") != fingerprint:
        raise DataError(f"the private sidecar {file} belongs to another generate run than the synthetic set; pass "
                        "the one written with it")  # fmt: skip
    images = record.get("images")
    if not isinstance(images, dict):
        raise DataError(f"{file} has no images table; {fix}")
    missing = [i for i in ids if i not in images]
    if missing:
        raise DataError(f"the private sidecar {file} does not name {len(missing)} of the {len(ids)} synthetic images "
                        f"(first: {missing[0]}); pass the sidecar written with this synthetic set")  # fmt: skip
    return {**record, "images": [dict(images[i]["patients"]) for i in ids]}
