"""Offline resolution of third-party weight files (LPIPS backbones, the FID Inception network).

Order of search: an explicit path > ``$LATENTWALK_WEIGHTS_DIR/<file>`` > ``torch.hub.get_dir()/checkpoints/<file>``.
Nothing is ever downloaded: an absent file is a :class:`~latentwalk.errors.MissingWeightsError` naming where to put
it. The SHA-256 prefix embedded in the canonical file name (``vgg16-397923af.pth``) is checked the way torch.hub's
``check_hash`` does, so a truncated or substituted file is refused before any network is built from it.

``lpips.LPIPS`` and pytorch-fid's ``InceptionV3`` download inside their constructors; :func:`lpips_model` resolves
the backbone first, builds ``lpips.LPIPS(pnet_rand=True)`` (no download) and copies the resolved torchvision
weights into it. The linear calibration layers (``lin0``...) ship inside the lpips package and need no file.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latentwalk.errors import ConfigError, DataError, MissingWeightsError
from latentwalk.io import LFS_POINTER_PREFIX, reject_placeholder, sha256_file

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
]

ENV_VAR = "LATENTWALK_WEIGHTS_DIR"
_HASH_RE = re.compile(r"-([a-f0-9]+)\.")  # torch.hub's HASH_REGEX: the hex run between the last '-' and a '.'


@dataclass(frozen=True)
class WeightsFile:
    """A weights file the library knows by name."""

    what: str  # human name used in messages, e.g. "LPIPS VGG16 backbone"
    option: str  # CLI option that takes an explicit path, e.g. "--lpips-weights"


KNOWN_WEIGHTS: dict[str, WeightsFile] = {
    "alexnet-owt-7be5be79.pth": WeightsFile("LPIPS AlexNet backbone", "--lpips-weights"),
    "vgg16-397923af.pth": WeightsFile("LPIPS VGG16 backbone", "--lpips-weights"),
    "pt_inception-2015-12-05-6726825d.pth": WeightsFile("Inception for FID", "--inception-weights"),
}

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
            f"{info.what} weights not found: expected {name} at {where}. Place {name} there or pass {info.option} PATH."
        )
    prefix = hash_prefix(name)
    if verify_hash and prefix:
        check_hash(found, prefix)
    return found


def load_state_dict(file: Path, kind: str) -> dict[str, Any]:
    """The tensors of a plain ``state_dict`` file (``torch.load(weights_only=True)``: nothing in it is executed).

    Args:
        file: the weights file.
        kind: what it should hold, for the error messages (e.g. ``"torchvision state_dict"``).

    Raises:
        DataError: the file cannot be read as a weights-only pickle, or holds something other than a dict.
    """
    import torch

    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types; all mean "not a plain state_dict"
        raise DataError(f"{file} is not a readable {kind} ({type(e).__name__}: {e})") from e
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
