"""Offline resolution of third-party weight files (LPIPS backbones, the FID Inception network).

Order of search: an explicit path > ``$LATENTWALK_WEIGHTS_DIR/<file>`` > ``torch.hub.get_dir()/checkpoints/<file>``.
Nothing is ever downloaded: an absent file is a :class:`~gan_zoo.errors.MissingWeightsError` naming where to put
it. The SHA-256 prefix embedded in the canonical file name (``vgg16-397923af.pth``) is checked the way torch.hub's
``check_hash`` does, so a truncated or substituted file is refused before any network is built from it.

``lpips.LPIPS`` and pytorch-fid's ``InceptionV3`` download inside their constructors; :func:`lpips_model` resolves
the backbone first, builds ``lpips.LPIPS(pnet_rand=True)`` (no download) and copies the resolved torchvision
weights into it. The linear calibration layers (``lin0``...) ship inside the lpips package and need no file.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gan_zoo.errors import ConfigError, DataError, MissingWeightsError
from gan_zoo.io import LFS_POINTER_PREFIX, reject_placeholder, sha256_file

__all__ = [
    "ENV_VAR",
    "KNOWN_WEIGHTS",
    "LPIPS_BACKBONES",
    "WeightsFile",
    "candidate_paths",
    "hash_prefix",
    "load_state_dict",
    "lpips_model",
    "resolve_weights",
    "check_hash",
    "FETCH_NAMES",
    "MIRROR_ENV",
    "fetch_weights",
]

ENV_VAR = "LATENTWALK_WEIGHTS_DIR"
_HASH_RE = re.compile(r"-([a-f0-9]+)\.")  # torch.hub's HASH_REGEX: the hex run between the last '-' and a '.'


@dataclass(frozen=True)
class WeightsFile:
    """A weights file the library knows by name."""

    what: str  # human name used in messages, e.g. "LPIPS VGG16 backbone"
    option: str  # CLI option that takes an explicit path, e.g. "--lpips-weights"
    key: str  # name for `latentwalk weights fetch`, e.g. "lpips-vgg"
    url: str  # canonical download address (the one torchvision / pytorch-fid use)


KNOWN_WEIGHTS: dict[str, WeightsFile] = {
    "alexnet-owt-7be5be79.pth": WeightsFile(
        "LPIPS AlexNet backbone", "--lpips-weights", "lpips-alex",
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    ),
    "vgg16-397923af.pth": WeightsFile(
        "LPIPS VGG16 backbone", "--lpips-weights", "lpips-vgg",
        "https://download.pytorch.org/models/vgg16-397923af.pth",
    ),
    "pt_inception-2015-12-05-6726825d.pth": WeightsFile(
        "Inception for FID", "--inception-weights", "inception",
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    ),
}  # fmt: skip
FETCH_NAMES: dict[str, str] = {info.key: name for name, info in KNOWN_WEIGHTS.items()}  # "lpips-vgg" -> file name
MIRROR_ENV = "LATENTWALK_WEIGHTS_MIRROR"  # a base URL (or file:// folder) serving the same file names
_MAX_DOWNLOAD = 1 << 30  # the largest known file (VGG16) is 528 MB

LPIPS_BACKBONES: dict[str, str] = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}

# Checks passed in this process: (resolved path, size, mtime_ns, prefix) -> True. Hashing VGG16 (528 MB) takes ~1 s.
_VERIFIED: dict[tuple[str, int, int, str], bool] = {}


def hash_prefix(name: str) -> str | None:
    """The SHA-256 prefix embedded in a file name (``vgg16-397923af.pth`` -> ``"397923af"``), or ``None``."""
    m = _HASH_RE.search(name)
    return m.group(1) if m else None


def check_hash(path: str | os.PathLike, prefix: str) -> None:
    """Check that the SHA-256 of ``path`` starts with ``prefix`` (as torch.hub's ``check_hash``).

    Raises:
        DataError: the file is empty, a git-lfs pointer, or its digest does not start with ``prefix``.
    """
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, prefix)
    if _VERIFIED.get(key):
        return
    with open(path, "rb") as f:
        reject_placeholder(path, f.read(len(LFS_POINTER_PREFIX)), "weights file")
    digest = sha256_file(path)
    if not digest.startswith(prefix):
        raise DataError(
            f"weights file {path} has SHA-256 {digest[:12]}..., expected a digest starting with {prefix}; "
            f"the file is corrupt or a different checkpoint, replace it with the original"
        )
    _VERIFIED[key] = True


def candidate_paths(name: str) -> list[Path]:
    """Where :func:`resolve_weights` looks for ``name`` without an explicit path, in order."""
    import torch.hub

    paths = []
    env = os.environ.get(ENV_VAR)
    if env:
        paths.append(Path(env).expanduser() / name)
    paths.append(Path(torch.hub.get_dir()) / "checkpoints" / name)
    return paths


def resolve_weights(name: str, path: str | os.PathLike | None = None, *, verify_hash: bool = True) -> Path:
    """Find a known weights file offline.

    Args:
        name: canonical file name, a key of :data:`KNOWN_WEIGHTS` (e.g. ``"vgg16-397923af.pth"``).
        path: explicit file, or a folder holding ``name``; when given, no other place is searched.
        verify_hash: check the SHA-256 prefix in ``name`` against the file's content (default on; off only for
            tests or deliberately substituted weights).

    Returns:
        Path of an existing, verified file.

    Raises:
        ConfigError: ``name`` is not a known weights file.
        MissingWeightsError: the file is in none of the places searched (the message lists them).
        DataError: the file is empty, a git-lfs pointer, or fails the hash check.
    """
    info = KNOWN_WEIGHTS.get(name)
    if info is None:
        raise ConfigError(f'unknown weights file "{name}"; expected one of {", ".join(sorted(KNOWN_WEIGHTS))}')
    if path is not None:
        p = Path(path).expanduser()
        candidates = [p / name] if p.is_dir() else [p]
    else:
        candidates = candidate_paths(name)
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        where = " or ".join(str(c) for c in candidates)
        raise MissingWeightsError(
            f"{info.what} weights not found: expected {name} at {where}. Place {name} there, pass {info.option} PATH, "
            f"or run `latentwalk weights fetch {info.key}` (needs a network)."
        )
    prefix = hash_prefix(name)
    if verify_hash and prefix:
        check_hash(found, prefix)
    return found


def load_state_dict(file: Path, kind: str) -> dict[str, Any]:
    """The tensors of a plain ``state_dict`` file (``torch.load(weights_only=True)``: nothing in it is executed; what
    it declares is checked against its size first, :func:`gan_zoo.safe_load.bounded_torch_load`).

    Args:
        file: the weights file.
        kind: what it should hold, for the error messages (e.g. ``"torchvision state_dict"``).

    Raises:
        DataError: the file cannot be read as a weights-only pickle, or holds something other than a dict.
    """
    from gan_zoo.safe_load import bounded_torch_load

    state = bounded_torch_load(file, str(file), kind)
    if not isinstance(state, dict):
        raise DataError(f"{file} holds a {type(state).__name__}, expected a {kind}")
    return state


def lpips_model(
    net: str = "vgg",
    weights: str | os.PathLike | None = None,
    device: Any = None,
    *,
    verify_hash: bool = True,
) -> Any:
    """LPIPS v0.1 with its torchvision backbone loaded from a local file; never touches the network.

    Args:
        net: ``"vgg"`` (VGG16, the usual choice for projection) or ``"alex"`` (AlexNet, faster).
        weights: explicit backbone file (torchvision state_dict) or a folder holding it; ``None`` = search
            ``$LATENTWALK_WEIGHTS_DIR`` then the torch.hub cache (see :func:`resolve_weights`).
        device: target device; ``None`` = CPU.
        verify_hash: check the file's SHA-256 prefix (see :func:`resolve_weights`).

    Returns:
        ``lpips.LPIPS`` in eval mode with ``requires_grad`` off; call it on two ``[N, 3, H, W]`` batches in
        [-1, 1] to get ``[N, 1, 1, 1]`` distances.

    Raises:
        ConfigError: unknown ``net``.
        MissingWeightsError: the backbone file is absent.
        DataError: the file fails the hash check, is not a readable state_dict, or lacks backbone tensors.
    """
    if net not in LPIPS_BACKBONES:
        raise ConfigError(f'unknown LPIPS network "{net}"; expected one of {", ".join(sorted(LPIPS_BACKBONES))}')
    file = resolve_weights(
        LPIPS_BACKBONES[net], weights, verify_hash=verify_hash
    )  # before anything that could download
    state = load_state_dict(file, "torchvision state_dict")

    import lpips

    with warnings.catch_warnings():  # torchvision's deprecation notes about `pretrained=False` inside lpips
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    _load_backbone(model.net, state, file)
    return model.to(device or "cpu").eval().requires_grad_(False)


def _load_backbone(backbone: Any, state: dict[str, Any], file: Path) -> None:
    """Copy torchvision ``features.<i>.<param>`` tensors into lpips' ``slice<k>.<i>.<param>`` modules, strictly."""
    import torch

    own = backbone.state_dict()
    wanted = {key: "features." + key.split(".", 1)[1] for key in own}  # slice3.6.weight -> features.6.weight
    missing = sorted(src for src in wanted.values() if src not in state)
    if missing:
        raise DataError(f"{file} lacks backbone tensors {missing}; it is not the expected torchvision checkpoint")
    bad = [
        f"{src} {list(state[src].shape)} vs {list(own[key].shape)}"
        for key, src in wanted.items()
        if state[src].shape != own[key].shape
    ]
    if bad:
        raise DataError(f"{file} has backbone tensors of the wrong shape (file vs network): {bad}")
    with torch.no_grad():
        backbone.load_state_dict({key: state[src] for key, src in wanted.items()}, strict=True)


def fetch_weights(
    key: str, dest: str | os.PathLike | None = None, *, progress: bool = False, timeout: float = 60.0
) -> tuple[Path, bool]:
    """Download one known weights file into the cache that :func:`resolve_weights` searches; the only download.

    The file is streamed to a temporary file beside its destination, its SHA-256 is computed on the way and must
    start with the prefix in its canonical name (as torch.hub's ``check_hash``); only then is it moved into place.
    A file already present and passing the check is kept.

    Args:
        key: ``lpips-alex``, ``lpips-vgg`` or ``inception`` (:data:`FETCH_NAMES`).
        dest: folder to write to; ``None`` = ``$LATENTWALK_WEIGHTS_DIR`` when set, else the torch hub cache.
        progress: show a byte progress bar.
        timeout: seconds without an answer before giving up.

    Returns:
        ``(path, downloaded)``: where the file is, and whether it was fetched now (``False``: already there).

    Raises:
        ConfigError: unknown ``key``, or a destination that cannot be written.
        DataError: the server sent no file, more than 1 GiB, or a file whose SHA-256 does not match.
    """
    import hashlib
    import tempfile
    import urllib.error
    import urllib.request

    from tqdm.auto import tqdm

    from gan_zoo.outputs import check_writable

    name = FETCH_NAMES.get(key)
    if name is None:
        raise ConfigError(f'unknown weights "{key}"; expected one of {", ".join(sorted(FETCH_NAMES))} or all')
    folder = Path(dest).expanduser() if dest is not None else candidate_paths(name)[0].parent
    target = folder / name
    prefix = hash_prefix(name) or ""
    if target.is_file():
        with contextlib.suppress(DataError):
            check_hash(target, prefix)
            return target, False
    check_writable(target)
    folder.mkdir(parents=True, exist_ok=True)
    mirror = os.environ.get(MIRROR_ENV)
    url = f"{mirror.rstrip('/')}/{name}" if mirror else KNOWN_WEIGHTS[name].url
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".download", dir=folder)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=None if progress else True) as bar:
                size = 0
                for block in iter(lambda: response.read(1 << 20), b""):
                    size += len(block)
                    if size > _MAX_DOWNLOAD:
                        raise DataError(f"{url} sent more than {_MAX_DOWNLOAD:,} bytes; not the expected {name}")
                    digest.update(block)
                    out.write(block)
                    bar.update(len(block))
        if size == 0:
            raise DataError(f"{url} sent an empty file; try again later")
        if not digest.hexdigest().startswith(prefix):
            raise DataError(
                f"{url} sent a file with SHA-256 {digest.hexdigest()[:12]}..., expected one starting with {prefix}; "
                "nothing was installed"
            )
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError) as e:
        raise DataError(f"could not download {name} from {url} ({getattr(e, 'reason', e)}); check the network") from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return target, True
