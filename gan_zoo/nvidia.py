"""Read NVIDIA StyleGAN2-ADA and StyleGAN3 network pickles as data, into our own modules (:mod:`gan_zoo.stylegan2`,
:mod:`gan_zoo.stylegan3`).

NVIDIA's ``network-snapshot-*.pkl`` files (github.com/NVlabs/stylegan2-ada-pytorch) are ``pickle.dump`` of a dict
such as ``{'G': ..., 'D': ..., 'G_ema': ..., 'augment_pipe': ..., 'training_set_kwargs': {...}}``. Each network is
stored by ``torch_utils.persistence`` as a call ``_reconstruct_persistent_obj(meta)`` where ``meta`` holds the bare
class name (``'Generator'``), the full source text of the module that defined it (``module_src``), and the object's
``__dict__`` (``state``): its constructor arguments (``_init_args``, ``_init_kwargs``) and the ``nn.Module``
dictionaries ``_parameters``, ``_buffers`` and ``_modules`` (sub-networks, stored the same way). Loading them the
usual way imports NVIDIA's packages and ``exec``s ``module_src``.

Here the file is read by a :class:`pickle.Unpickler` whose ``find_class`` knows only an allowlist of data
constructors (tensors, storages read with ``torch.load(weights_only=True)``, ordered dicts, plain numeric numpy
scalars and arrays). ``_reconstruct_persistent_obj`` is answered by a function that returns the record as a
:class:`PersistentRecord` and runs nothing; ``module_src`` is kept as text and never executed. Any other global
(``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) raises :class:`UnsafePickleError` when the unpickler
reaches it, before it could be called. The network is then rebuilt as our :class:`~gan_zoo.stylegan2.Generator`
(or :class:`~gan_zoo.discriminator.Discriminator`) from the recorded constructor arguments, and the recorded module tree
is flattened into a state_dict and loaded with ``strict=True``.

StyleGAN3 pickles (github.com/NVlabs/stylegan3, configs ``t`` and ``r``) are the same format: their records name the
classes of ``training/networks_stylegan3.py`` (``Generator``, ``MappingNetwork``, ``SynthesisNetwork``,
``SynthesisInput``, ``SynthesisLayer``, ``FullyConnectedLayer``) and hold numpy arrays (layer sizes) and numpy
float64 scalars (cutoffs), which the allowlist above already reads; no global was added for them. A generator whose
record tree contains ``SynthesisInput`` is rebuilt as :class:`gan_zoo.stylegan3.Generator` from the recorded
arguments (NVIDIA's flat synthesis options gathered into ``synthesis_kwargs``).
"""

from __future__ import annotations

import collections
import inspect
import math
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from gan_zoo.checkpoint import build_checked
from gan_zoo.discriminator import Discriminator
from gan_zoo.errors import ConfigError, DataError, LatentwalkError, MissingWeightsError, UnsafePickleError
from gan_zoo.io import reject_placeholder
from gan_zoo.safe_load import bounded_torch_load, check_object_graph
from gan_zoo.stylegan2 import Generator
from gan_zoo.stylegan3 import MAPPING_KWARGS as SG3_MAPPING_KWARGS
from gan_zoo.stylegan3 import SYNTHESIS_KWARGS as SG3_SYNTHESIS_KWARGS
from gan_zoo.stylegan3 import Generator as StyleGAN3Generator
from gan_zoo.stylegan3 import config_name

__all__ = [
    "ALLOWED_GLOBALS",
    "PersistentRecord",
    "PickleInfo",
    "load_stylegan_pickle",
    "inspect_pickle",
    "read_stylegan_pickle",
]

_SUPPORTED = {"Generator": Generator, "Discriminator": Discriminator}
_STYLEGAN3_MARKERS = ("SynthesisInput",)  # classes only StyleGAN3's generator has


@dataclass(frozen=True, eq=False)
class PersistentRecord:
    """One object saved by NVIDIA's ``torch_utils.persistence``, kept as inert data.

    Attributes:
        class_name: the bare class name, e.g. ``'Generator'`` or ``'SynthesisLayer'``.
        version: ``torch_utils.persistence`` format version (6 in stylegan2-ada-pytorch).
        module_src: source text of the defining module; stored, never executed.
        state: the object's ``__dict__``: ``_init_args``, ``_init_kwargs``, ``_parameters``, ``_buffers``,
            ``_modules`` (child records) and plain attributes.
    """

    class_name: str
    version: int | None
    module_src: str = field(repr=False)
    state: dict[str, Any] = field(repr=False)

    def __reduce__(self) -> tuple[Any, ...]:  # copy/pickle by constructor, so __setstate__ is only hit by BUILD
        return PersistentRecord, (self.class_name, self.version, self.module_src, self.state)

    def __setstate__(self, state: Any) -> None:  # a pickle trying to overwrite a record's fields
        raise DataError("malformed network pickle: a persistence record was given extra state")

    def walk(self, prefix: str = "") -> Iterator[tuple[str, PersistentRecord]]:
        """Yield ``(dotted name, record)`` for this record and every descendant record in ``_modules``."""
        yield prefix, self
        for name, child in (self.state.get("_modules") or {}).items():
            if isinstance(child, PersistentRecord):
                yield from child.walk(f"{prefix}.{name}" if prefix else name)


@dataclass(frozen=True)
class PickleInfo:
    """What a network pickle holds, from :func:`inspect_pickle`.

    Attributes:
        path: the file.
        entries: top-level key -> class name (``'Generator'``) or Python type name (``'dict'``).
        class_names: every persistent class name in the file, sorted.
        family: ``'stylegan2-ada'``, ``'stylegan3'`` or ``'unknown'`` (judged from ``G_ema``/``G``).
        config: for StyleGAN3, ``'t'``, ``'r'`` or ``'custom'`` (from the recorded ``conv_kernel`` and
            ``use_radial_filters``); ``None`` otherwise.
    """

    path: str
    entries: dict[str, str]
    class_names: tuple[str, ...]
    family: str
    config: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "entries": dict(self.entries), "class_names": list(self.class_names),
                "family": self.family, "config": self.config}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# The allowlist: every global a StyleGAN2-ADA pickle legitimately names, mapped to a data-only constructor.


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise DataError("malformed network pickle: a persistence record lacks type='class' or class_name")
    state = meta.get("state")
    if not isinstance(state, dict):
        raise DataError(f"malformed network pickle: the record of {meta['class_name']} has no state dict")
    src = meta.get("module_src")
    return PersistentRecord(meta["class_name"], meta.get("version"), src if isinstance(src, str) else "", state)


def _load_storage(data: bytes) -> Any:
    """A tensor storage serialised by ``torch.save`` inside the pickle, read without running code; its declared
    size is checked against the bytes present before anything is allocated (:func:`gan_zoo.safe_load`)."""
    if not isinstance(data, bytes | bytearray):
        raise DataError("malformed network pickle: a tensor storage is not a bytes blob")
    return bounded_torch_load(data, "a tensor storage in the network pickle")


def _int_tuple(x: Any) -> bool:
    return isinstance(x, tuple) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in x)


def _rebuild_tensor(storage: Any, offset: int, size: tuple, stride: tuple, *_ignored: Any) -> torch.Tensor:
    """Tensor view of a storage; requires_grad, backward hooks and metadata are dropped (hooks cannot be data).

    The view must lie inside its storage and may not repeat elements (no zero strides): a tensor never holds more
    elements than the file has bytes for.
    """
    if not isinstance(storage, torch.storage.TypedStorage):
        raise DataError("malformed network pickle: a tensor does not refer to a tensor storage")
    valid = isinstance(offset, int) and offset >= 0 and _int_tuple(size) and _int_tuple(stride)
    if not valid or len(size) != len(stride):
        raise DataError("malformed network pickle: a tensor has an invalid offset, size or stride")
    numel = math.prod(size)
    if numel:
        # elements of the storage, read without TypedStorage's deprecation warning
        have = storage._untyped_storage.nbytes() // torch._utils._element_size(storage.dtype)
        span = offset + sum((n - 1) * st for n, st in zip(size, stride, strict=True)) + 1
        if span > have or numel > have - offset or (numel > 1 and 0 in stride):
            raise DataError(
                f"malformed network pickle: a tensor of shape {list(size)} does not fit its storage of {have} elements"
            )
    return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, collections.OrderedDict())


def _bytearray(source: Any = b"", encoding: Any = None, errors: Any = None) -> bytearray:
    """``bytearray`` from bytes (or latin-1 text, as protocol-2 pickles write it) only: never from a size, which
    would let a 40-byte file allocate any amount of memory."""
    if isinstance(source, bytes | bytearray) and encoding is None:
        return bytearray(source)
    if isinstance(source, str) and encoding in ("latin1", "latin-1") and errors in (None, "strict"):
        return bytearray(source.encode("latin1"))
    raise UnsafePickleError(
        f"network pickle asks for bytearray({type(source).__name__}); only bytes are read, never a size to allocate"
    )


def _rebuild_parameter(data: Any, *_ignored: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise DataError("malformed network pickle: a parameter does not hold a tensor")
    return data


def _latin1_bytes(text: Any, encoding: Any = "latin1") -> bytes:
    """How protocol-2 pickles spell a bytes object: ``_codecs.encode(text, 'latin1')``; no other codec."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"network pickle asks for _codecs.encode with {encoding!r}; only latin1 bytes are read")
    return text.encode("latin1")


def _numpy_dtype(*args: Any) -> Any:
    import numpy as np

    dtype = np.dtype(*args)
    if dtype.kind not in "biufc":  # bool, int, uint, float, complex; no objects, records or void
        raise UnsafePickleError(f"network pickle asks for a numpy dtype {dtype!s}; only plain numeric dtypes are read")
    return dtype


def _numpy_scalar(dtype: Any, data: Any = None) -> int | float | complex | bool:
    import numpy as np

    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc" or not isinstance(data, bytes):
        raise UnsafePickleError("network pickle asks for a numpy scalar that is not a plain number")
    return np.frombuffer(data, dtype=dtype)[0].item()


def _numpy_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> Any:
    import numpy as np

    if subtype is not np.ndarray:
        raise UnsafePickleError(f"network pickle asks for a numpy array of type {subtype!r}; only ndarray is read")
    return np.ndarray.__new__(np.ndarray, (0,), dtype=np.uint8)  # filled by ndarray.__setstate__ (BUILD)


def _numpy_ndarray() -> Any:
    import numpy as np

    return np.ndarray


_ALLOWED: dict[tuple[str, str], Callable[[], Any]] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): lambda: _reconstruct_persistent_obj,
    ("torch._utils", "_rebuild_tensor_v2"): lambda: _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): lambda: _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): lambda: _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): lambda: _load_storage,
    ("collections", "OrderedDict"): lambda: collections.OrderedDict,
    ("dnnlib.util", "EasyDict"): lambda: dict,
    ("dnnlib", "EasyDict"): lambda: dict,
    ("builtins", "dict"): lambda: dict,
    ("builtins", "list"): lambda: list,
    ("builtins", "tuple"): lambda: tuple,
    ("builtins", "set"): lambda: set,
    ("builtins", "frozenset"): lambda: frozenset,
    ("builtins", "bytearray"): lambda: _bytearray,
    ("_codecs", "encode"): lambda: _latin1_bytes,
    ("numpy", "dtype"): lambda: _numpy_dtype,
    ("numpy", "ndarray"): _numpy_ndarray,
    ("numpy.core.multiarray", "scalar"): lambda: _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): lambda: _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): lambda: _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): lambda: _numpy_reconstruct,
}
ALLOWED_GLOBALS = tuple(sorted(f"{m}.{n}" for m, n in _ALLOWED))


class _AllowlistUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, path: Path) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # protocol <= 2 names builtins the Python 2 way
            module = "builtins"
        make = _ALLOWED.get((module, name))
        if make is None:
            raise UnsafePickleError(
                f"{self._path} asks for {module}.{name}, which a StyleGAN network pickle never needs; refused, "
                f"no code from the file was run. Use a network pickle from a source you trust"
            )
        return make()

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._path} uses pickle persistent ids, which a StyleGAN network pickle never has")


# ---------------------------------------------------------------------------------------------------------------
# Reading.


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise MissingWeightsError(f"network pickle not found: {path}; pass the path of a network-snapshot .pkl")
    with open(path, "rb") as f:
        head = f.read(64)
    reject_placeholder(path, head, "network pickle")
    if head.startswith(b"PK\x03\x04"):
        raise DataError(f"{path} is a zip archive (a torch.save checkpoint?), not a StyleGAN network pickle")
    if not head.startswith(b"\x80"):
        raise DataError(f"{path} is not a binary pickle (it starts with {head[:16]!r}); expected a network .pkl")


def read_stylegan_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Unpickle a network pickle through the allowlist; networks come back as :class:`PersistentRecord`.

    Returns:
        The top-level dict (``'G'``, ``'D'``, ``'G_ema'``, ...); tensors are CPU tensors.

    Raises:
        MissingWeightsError: the file does not exist.
        DataError: empty file, git-lfs pointer, not a pickle, truncated or malformed, or not a dict.
        UnsafePickleError: the file names a global outside the allowlist; that global was not called.
    """
    path = Path(path)
    _check_file(path)
    try:
        with open(path, "rb") as f:
            data = _AllowlistUnpickler(f, path).load()
    except LatentwalkError:
        raise
    except Exception as e:  # anything else the unpickler raises means a truncated or malformed file
        raise DataError(f"{path} could not be read as a StyleGAN network pickle ({type(e).__name__}: {e})") from e
    check_object_graph(data, str(path), children=lambda x: [x.state] if isinstance(x, PersistentRecord) else None)
    if not isinstance(data, dict):
        raise DataError(f"{path} holds a {type(data).__name__}, expected a dict of networks such as 'G_ema'")
    return data


def _family(record: Any) -> str:
    if not isinstance(record, PersistentRecord):
        return "unknown"
    for _, rec in record.walk():
        if rec.class_name in _STYLEGAN3_MARKERS:
            return "stylegan3"
    if any(f"class {marker}(" in record.module_src for marker in _STYLEGAN3_MARKERS):
        return "stylegan3"
    return "stylegan2-ada" if record.class_name == "Generator" else "unknown"


def _describe(data: dict[str, Any], path: Path) -> PickleInfo:
    entries: dict[str, str] = {}
    names: set[str] = set()
    for key, value in data.items():
        if isinstance(value, PersistentRecord):
            entries[str(key)] = value.class_name
            names.update(rec.class_name for _, rec in value.walk())
        else:
            entries[str(key)] = type(value).__name__
    main = data.get("G_ema", data.get("G"))
    family = _family(main)
    config = None
    if family == "stylegan3":
        kwargs = main.state.get("_init_kwargs")
        kwargs = kwargs if isinstance(kwargs, dict) else {}
        config = config_name(kwargs.get("conv_kernel", 3), bool(kwargs.get("use_radial_filters", False)))
    return PickleInfo(str(path), entries, tuple(sorted(names)), family, config)


def inspect_pickle(path: str | os.PathLike) -> PickleInfo:
    """List the entries and classes of a network pickle without building any network (same checks as loading)."""
    return _describe(read_stylegan_pickle(path), Path(path))


# ---------------------------------------------------------------------------------------------------------------
# Rebuilding.


def _from_stylegan3_repository(record: PersistentRecord) -> bool:
    """Whether the network comes from StyleGAN3's repository's own StyleGAN2 (``training/networks_stylegan2.py``).

    That variant takes the synthesis options as flat keyword arguments and has other defaults (``conv_clamp=256``,
    ``num_fp16_res=4``, ``w_avg_beta=0.998``, ``fused_modconv_default=True``). It is recognised from the stored
    source text, which is only searched, never run.
    """
    return "fused_modconv_default" in record.module_src


def _translate_stylegan3_repository(cls: type[nn.Module], kwargs: dict[str, Any]) -> dict[str, Any]:
    if cls is Discriminator:
        return {"num_fp16_res": 4, "conv_clamp": 256, **kwargs}
    top = {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs"}
    flat = {k: v for k, v in kwargs.items() if k not in top}
    out = {k: v for k, v in kwargs.items() if k in top}
    out["mapping_kwargs"] = {"w_avg_beta": 0.998, **dict(kwargs.get("mapping_kwargs") or {})}
    out["synthesis_kwargs"] = {"num_fp16_res": 4, "conv_clamp": 256, "fused_modconv_default": True, **flat}
    return out


def _constructor_kwargs(record: PersistentRecord, cls: type[nn.Module], where: str) -> dict[str, Any]:
    names = [n for n in inspect.signature(cls).parameters if n != "self"]
    args = tuple(record.state.get("_init_args") or ())
    kwargs = dict(record.state.get("_init_kwargs") or {})
    if len(args) > len(names):
        raise ConfigError(f"{where} was built with {len(args)} positional arguments; {cls.__name__} takes {len(names)}")
    for name, value in zip(names, args, strict=False):  # fewer args than names is fine
        kwargs[name] = value
    if _from_stylegan3_repository(record):
        kwargs = _translate_stylegan3_repository(cls, kwargs)
    unknown = sorted(set(kwargs) - set(names))
    if unknown:
        raise ConfigError(
            f"{where} was built with arguments this reader does not know: {unknown}; {cls.__name__} accepts {names}"
        )
    return kwargs


_SG3_TOP = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs")


def _stylegan3_kwargs(record: PersistentRecord, where: str) -> dict[str, Any]:
    """Our :class:`gan_zoo.stylegan3.Generator` arguments from NVIDIA's recorded ones.

    NVIDIA's ``Generator(z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs={}, **synthesis_kwargs)``
    takes the synthesis and layer options flat (``channel_base``, ``magnitude_ema_beta``, ``conv_kernel``, ...);
    they are gathered into ``synthesis_kwargs``. Unknown options are named, not dropped.
    """
    args, kwargs = record.state.get("_init_args") or (), record.state.get("_init_kwargs") or {}
    if not isinstance(args, tuple | list) or not isinstance(kwargs, dict):
        raise ConfigError(f"{where} records its constructor arguments as {type(args).__name__} and "
                          f"{type(kwargs).__name__}, expected a tuple and a dict")  # fmt: skip
    kwargs = dict(kwargs)
    if len(args) > len(_SG3_TOP):
        raise ConfigError(f"{where} was built with {len(args)} positional arguments; a StyleGAN3 Generator takes 6")
    kwargs.update(zip(_SG3_TOP, args, strict=False))
    missing = [k for k in _SG3_TOP[:5] if k not in kwargs]
    if missing:
        raise ConfigError(f"{where} does not record the StyleGAN3 generator arguments {missing}")
    mapping = kwargs.get("mapping_kwargs") or {}
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where} records mapping_kwargs as a {type(mapping).__name__}, expected a dict")
    synthesis = {k: v for k, v in kwargs.items() if k not in _SG3_TOP}
    unknown = sorted(str(k) for k in set(synthesis) - SG3_SYNTHESIS_KWARGS)
    unknown += sorted(f"mapping_kwargs.{k}" for k in set(mapping) - SG3_MAPPING_KWARGS)
    if unknown:
        raise ConfigError(f"{where} was built with StyleGAN3 arguments this reader does not know: {unknown}")
    out = {k: kwargs[k] for k in _SG3_TOP[:5]}
    return {**out, "mapping_kwargs": dict(mapping), "synthesis_kwargs": synthesis}


def _flat_state_dict(record: PersistentRecord, where: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for prefix, rec in record.walk():
        skip = rec.state.get("_non_persistent_buffers_set") or set()
        tensors = list((rec.state.get("_parameters") or {}).items())
        tensors += [(k, v) for k, v in (rec.state.get("_buffers") or {}).items() if k not in skip]
        for name, value in tensors:
            if value is None:
                continue
            if not isinstance(value, torch.Tensor):
                raise DataError(f"{where}: {prefix}.{name} is a {type(value).__name__}, expected a tensor")
            out[f"{prefix}.{name}" if prefix else name] = value
        for name, child in (rec.state.get("_modules") or {}).items():
            if child is not None and not isinstance(child, PersistentRecord):
                raise DataError(f"{where}: sub-network {prefix}.{name} is not a persistent NVIDIA module")
    return out


def load_stylegan_pickle(
    path: str | os.PathLike, key: str = "G_ema", device: str | torch.device | None = None
) -> Generator | StyleGAN3Generator | Discriminator:
    """Load one network of a StyleGAN2-ADA or StyleGAN3 pickle as our module, without NVIDIA's code and without
    running the file.

    Args:
        path: a ``network-snapshot-*.pkl`` from stylegan2-ada-pytorch (TF pickles converted by its ``legacy.py``
            and re-saved are the same format), or from the StyleGAN3 repository trained with ``--cfg=stylegan3-t``,
            ``stylegan3-r`` or ``stylegan2``.
        key: ``'G_ema'`` (the generator to sample from), ``'G'`` or ``'D'``.
        device: where to put the module; ``None`` = CPU.

    Returns:
        :class:`~gan_zoo.stylegan2.Generator`, :class:`~gan_zoo.stylegan3.Generator` (StyleGAN3 pickles) or
        ``Discriminator`` (``'D'``), in eval mode, ``requires_grad`` off, float32, same outputs as NVIDIA's network.

    Raises:
        MissingWeightsError / DataError / UnsafePickleError: see :func:`read_stylegan_pickle`; DataError also when the
            weights do not match the recorded architecture (missing/unexpected keys listed).
        ConfigError: a network class other than Generator/Discriminator, or constructor arguments this reader does
            not know or that are out of range (named).
    """
    path = Path(path)
    data = read_stylegan_pickle(path)
    if key not in data:
        raise DataError(f"{path} has no {key!r} entry; it holds {sorted(map(str, data))}")
    record = data[key]
    where = f"{path} [{key}]"
    if not isinstance(record, PersistentRecord):
        raise DataError(f"{where} is a {type(record).__name__}, not a network saved by NVIDIA's persistence")
    cls = _SUPPORTED.get(record.class_name)
    if _family(record) == "stylegan3":
        if record.class_name != "Generator":
            raise ConfigError(f"{where} is a StyleGAN3 {record.class_name}; this reader builds StyleGAN3 Generators")
        cls, kwargs = StyleGAN3Generator, _stylegan3_kwargs(record, where)
    elif cls is None:
        raise ConfigError(f"{where} is a {record.class_name}; this reader builds {sorted(_SUPPORTED)}")
    else:
        kwargs = _constructor_kwargs(record, cls, where)
    module = build_checked(cls, kwargs, _flat_state_dict(record, where), where)
    return module.to(device or "cpu").eval().requires_grad_(False)
