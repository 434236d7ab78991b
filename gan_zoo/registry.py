"""``gan_zoo.load(spec)``: one registry of generator loaders, keyed by the scheme before the first colon.

==============================  ====================================================================================
spec                            loads
==============================  ====================================================================================
``demo:cxr``, ``demo:fundus``   the demo generators shipped in ``gan_zoo/weights/demo_<kind>.safetensors`` + ``.json``
``lite:PATH``                   our checkpoint (:mod:`gan_zoo.checkpoint`): a run folder holding ``generator.json``,
                                a stem ``runs/g``, or either file ``runs/g.safetensors`` / ``runs/g.json``
``stylegan:PATH.pkl``           an NVIDIA StyleGAN2-ADA or StyleGAN3 (config t or r) network pickle, read as data
                                (:mod:`gan_zoo.nvidia`)
``module:pkg.mod:factory``      ``pkg.mod.factory()``, your own Python code (see below)
``rosinality:PATH.pt``          a rosinality stylegan2-pytorch checkpoint (``g_ema``), read as data
                                (:mod:`gan_zoo.rosinality`)
``PATH``                        a bare path: ``*.pkl`` as ``stylegan:``; ``*.safetensors``, ``*.json``, a folder or
                                a checkpoint stem as ``lite:``
==============================  ====================================================================================

``module:`` imports a module and calls a function in it: it executes your code, which is its purpose (plug in any
architecture), so use it only with code you trust. Checkpoints and pickles, by contrast, are only ever read as data.
The factory takes no arguments and returns either a module that already follows the contract (for example the result
of :func:`gan_zoo.wrap`), which is checked with :func:`gan_zoo.check_generator`, or a plain ``nn.Module`` with a
``z_dim`` attribute (and optionally ``c_dim``) mapping ``z`` to images in [-1, 1], which is wrapped with default
options (``latent='z'``, label as second positional argument).

New schemes register with :func:`register_loader`; :data:`SPECS` lists the spec forms for help texts. Importing
this module does not import torch.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gan_zoo.base import check_generator, is_generator_like, prepare
from gan_zoo.errors import ConfigError, MissingWeightsError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "DEMO_KINDS",
    "SPECS",
    "WEIGHTS_DIR",
    "Loader",
    "register_loader",
    "loaders",
    "parse_spec",
    "load",
]

Loader = Callable[[str, "torch.device"], "nn.Module"]
"""``loader(arg, device) -> generator``: ``arg`` is the spec after ``scheme:``, never empty."""

DEMO_KINDS = ("cxr", "fundus")
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"  # shipped demo weights: demo_<kind>.safetensors + .json
SPECS: list[str] = []  # spec forms of every registered loader, in registration order, for help texts

_SCHEME = re.compile(r"[a-z][a-z0-9_+.-]*")
_SPEC = re.compile(r"([A-Za-z][A-Za-z0-9_+.-]*):(.*)", re.DOTALL)
_PATH_HINT = "or a path to a .pkl, .safetensors or .json file or a run folder"


@dataclass(frozen=True)
class _Entry:
    scheme: str
    loader: Loader
    usage: tuple[str, ...]


_LOADERS: dict[str, _Entry] = {}


def register_loader(
    scheme: str, *, usage: Iterable[str] | None = None, replace: bool = False
) -> Callable[[Loader], Loader]:
    """Decorator registering ``loader(arg, device)`` for specs ``<scheme>:<arg>``.

    Args:
        scheme: lower-case name, e.g. ``"demo"``.
        usage: the spec forms shown in help and errors; default ``["<scheme>:ARG"]``.
        replace: allow replacing an already registered scheme.

    Raises:
        ConfigError: an invalid scheme name, or one already registered without ``replace=True``.

    Example::

        @register_loader("hub", usage=["hub:NAME"])
        def load_hub(arg: str, device: torch.device) -> nn.Module:
            ...
    """
    if not isinstance(scheme, str) or not _SCHEME.fullmatch(scheme):
        raise ConfigError(f"generator spec scheme must be lower-case letters, digits or _+.-, got {scheme!r}")
    if scheme in _LOADERS and not replace:
        raise ConfigError(f'generator spec scheme "{scheme}" is already registered; pass replace=True to override')
    forms = tuple(usage) if usage is not None else (f"{scheme}:ARG",)

    def decorator(loader: Loader) -> Loader:
        old = _LOADERS.get(scheme)
        if old is not None:
            for form in old.usage:
                SPECS.remove(form)
        _LOADERS[scheme] = _Entry(scheme, loader, forms)
        SPECS.extend(forms)
        return loader

    return decorator


def loaders() -> dict[str, tuple[str, ...]]:
    """Registered schemes and their spec forms, ``{"demo": ("demo:cxr", "demo:fundus"), ...}``."""
    return {scheme: entry.usage for scheme, entry in _LOADERS.items()}


def _unknown(spec: str) -> ConfigError:
    return ConfigError(f'unknown generator spec "{spec}"; expected one of {", ".join(SPECS)}, {_PATH_HINT}')


def _bare_path_scheme(text: str) -> str | None:
    p = Path(os.path.expanduser(text))
    suffix = p.suffix.lower()
    if suffix == ".pkl":
        return "stylegan"
    if suffix in (".safetensors", ".json") or p.is_dir() or p.with_name(p.name + ".json").is_file():
        return "lite"
    return None


def parse_spec(spec: str | os.PathLike) -> tuple[str, str]:
    """Split a generator spec into ``(scheme, arg)`` without loading anything; bare paths get their scheme.

    ``"demo:cxr"`` -> ``("demo", "cxr")``; ``"runs/x.pkl"`` -> ``("stylegan", "runs/x.pkl")``; a folder or
    ``*.safetensors``/``*.json`` -> ``("lite", path)``.

    Raises:
        ConfigError: ``unknown generator spec "x"; expected one of demo:cxr, ...``, or a registered scheme with
            nothing after the colon.
    """
    if not isinstance(spec, str | os.PathLike) or not isinstance(text := os.fspath(spec), str):
        raise ConfigError(f"a generator spec must be a string or path, got {type(spec).__name__}")
    match = None if isinstance(spec, os.PathLike) else _SPEC.fullmatch(text)
    if match and match.group(1) in _LOADERS:
        scheme, arg = match.group(1), match.group(2)
        if not arg.strip():
            raise ConfigError(f'generator spec "{text}" is incomplete; expected {" or ".join(_LOADERS[scheme].usage)}')
        return scheme, arg
    scheme = _bare_path_scheme(text) if text.strip() else None
    if scheme is None or scheme not in _LOADERS:
        raise _unknown(text)
    return scheme, text


def load(spec: str | os.PathLike, device: str | torch.device | None = None) -> nn.Module:
    """Load a generator from a spec (see the module docstring) ready for inference.

    Args:
        spec: ``demo:cxr``, ``lite:PATH``, ``stylegan:PATH.pkl``, ``module:pkg.mod:factory`` or a bare path.
        device: ``None`` = CPU (library default); ``"auto"`` = CUDA, then MPS, then CPU (what the CLI passes); or
            an explicit ``"cuda:0"``, ``"mps"``, ``torch.device``. Resolved before any file is read.

    Returns:
        A generator following the contract of :mod:`gan_zoo.base`, on ``device``, in eval mode, with
        ``requires_grad`` off.

    Raises:
        ConfigError: an unknown spec or scheme argument, an unavailable device, or a ``module:`` factory whose
            result does not follow the contract (named).
        MissingWeightsError: the checkpoint, pickle or demo weights are not there (the message says how to get
            them).
        DataError / UnsafePickleError: unreadable files, or a pickle asking for code (see :mod:`gan_zoo.nvidia`).
    """
    from gan_zoo.devices import resolve_device

    target = resolve_device("cpu" if device is None else device)
    scheme, arg = parse_spec(spec)
    G = _LOADERS[scheme].loader(arg, target)
    return prepare(G, target)


# ---------------------------------------------------------------------------------------------------------------
# Built-in loaders.


def _path(arg: str) -> Path:
    return Path(os.path.expanduser(arg))


@register_loader("demo", usage=[f"demo:{kind}" for kind in DEMO_KINDS])
def _load_demo(arg: str, device: torch.device) -> nn.Module:
    if arg not in DEMO_KINDS:
        expected = " or ".join(f"demo:{k}" for k in DEMO_KINDS)
        raise ConfigError(f'unknown demo generator "demo:{arg}"; expected {expected}')
    stem = WEIGHTS_DIR / f"demo_{arg}"
    weights, config = stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")
    if not (weights.is_file() and config.is_file()):
        raise MissingWeightsError(
            f"the demo:{arg} weights are not installed (expected {weights} and {config.name}); train and install "
            f"them with `python scripts/train_demo_gans.py --kind {arg} --out runs/demo-{arg}`"
        )
    from gan_zoo.checkpoint import load_generator

    return load_generator(stem, device)


@register_loader("lite", usage=["lite:PATH"])
def _load_lite(arg: str, device: torch.device) -> nn.Module:
    from gan_zoo.checkpoint import load_generator

    return load_generator(_path(arg), device)


@register_loader("stylegan", usage=["stylegan:PATH.pkl"])
def _load_stylegan(arg: str, device: torch.device) -> nn.Module:
    from gan_zoo.nvidia import load_stylegan_pickle

    return load_stylegan_pickle(_path(arg), key="G_ema", device=device)


@register_loader("module", usage=["module:pkg.mod:factory"])
def _load_module(arg: str, device: torch.device) -> nn.Module:
    from torch import nn

    spec = f"module:{arg}"
    module_name, _, attr = arg.rpartition(":")
    if not module_name or not attr:
        raise ConfigError(f'generator spec "{spec}" must name a module and a factory, as module:pkg.mod:factory')
    try:
        obj = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(
            f'cannot import {module_name!r} for "{spec}" ({e}); install the package or add its folder to PYTHONPATH'
        ) from e
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f'module {module_name!r} has no attribute {attr!r} (from "{spec}")')
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f'"{spec}" names a {type(obj).__name__}, expected a function or class to call')
    G = obj()
    if not isinstance(G, nn.Module):
        raise ConfigError(f'"{spec}" returned a {type(G).__name__}, expected a torch.nn.Module')
    if is_generator_like(G) or hasattr(G, "mapping") or hasattr(G, "synthesis"):
        check_generator(G)  # meant to follow the contract: name what is missing rather than wrap it
        return G
    if hasattr(G, "z_dim"):
        from gan_zoo.wrapping import wrap

        return wrap(G, latent="z", z_dim=G.z_dim, c_dim=getattr(G, "c_dim", 0))
    raise ConfigError(
        f'"{spec}" returned a {type(G).__name__}, which is not a generator: it has neither the contract attributes '
        f"(mapping, synthesis, z_dim, ...) nor a z_dim attribute; return gan_zoo.wrap(your_module, z_dim=...) instead"
    )


@register_loader("rosinality", usage=["rosinality:PATH.pt"])
def _load_rosinality(arg: str, device: torch.device) -> nn.Module:
    from gan_zoo.rosinality import load_rosinality

    return load_rosinality(_path(arg), device=device)
