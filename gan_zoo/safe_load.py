"""Reading untrusted files with bounded memory: what a file declares is checked against the bytes it holds.

``torch.load(weights_only=True)`` runs no code from a file, but it allocates what the file declares before reading
it: a legacy (pre-zip) checkpoint names each storage's element count and torch allocates that many elements before
it reads the bytes, and a zip checkpoint may store deflate-compressed records that inflate to any size. A few
hundred bytes can ask for gigabytes. :func:`bounded_torch_load` reads the declarations first, without building
anything, and refuses a file whose storages need more bytes than the file has (allowing for no compression, which
``torch.save`` never uses); only then is ``torch.load(weights_only=True)`` called.

:func:`check_object_graph` bounds what a restricted unpickler returned: a container that contains itself, or
nesting deeper than any real checkpoint, is refused with one sentence instead of a ``RecursionError`` later.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections.abc import Callable
from typing import Any, BinaryIO

from gan_zoo.errors import DataError

__all__ = ["MAX_DEPTH", "bounded_torch_load", "declared_storage_bytes", "check_object_graph"]

MAX_DEPTH = 200  # a StyleGAN pickle nests about 12 levels; a guides or torchvision state_dict fewer
_MAX_NODES = 5_000_000

# bytes per element of the storage classes a legacy checkpoint names (torch.FloatStorage, ...)
_ELEMENT_SIZE = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
    "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
    "ComplexDoubleStorage": 16, "ComplexFloatStorage": 8, "UntypedStorage": 1,
}  # fmt: skip


class _Stub:
    """Stands for any global while declarations are scanned: calling, setting state or filling it does nothing."""

    def __init__(self, name: str = "") -> None:
        self.name = name

    def __call__(self, *_args: Any, **_kwargs: Any) -> _Stub:
        return _Stub(self.name)

    def __setstate__(self, _state: Any) -> None:
        pass

    def __setitem__(self, _key: Any, _value: Any) -> None:
        pass

    def append(self, _value: Any) -> None:
        pass

    def extend(self, _values: Any) -> None:
        pass

    def add(self, _value: Any) -> None:
        pass


class _DeclarationScanner(pickle.Unpickler):
    """Unpickles with every global replaced by a :class:`_Stub`; collects storage declarations (persistent ids)."""

    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file)
        self.storages: dict[str, int] = {}  # storage key -> declared bytes

    def find_class(self, module: str, name: str) -> Any:
        return _Stub(name)

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            storage_type, key, numel = pid[1], pid[2], pid[4]
            name = storage_type.name if isinstance(storage_type, _Stub) else "UntypedStorage"
            size = _ELEMENT_SIZE.get(name, 16)
            if not isinstance(numel, int) or numel < 0:
                raise DataError("a storage in the file declares an invalid size")
            self.storages[str(key)] = max(self.storages.get(str(key), 0), numel * size)
        return _Stub("storage")


def declared_storage_bytes(f: BinaryIO) -> int:
    """Bytes that ``torch.load`` would allocate for the storages a checkpoint declares (zip or legacy format).

    Args:
        f: the checkpoint, a seekable binary file positioned at its start; only its pickles and zip directory are
            read, never its tensor data.

    Raises:
        DataError: the file is not a torch checkpoint, or a zip entry is compressed (``torch.save`` never
            compresses; a compressed record could inflate to any size).
    """
    start = f.tell()
    head = f.read(4)
    f.seek(start)
    if head == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(f) as zf:
                infos = zf.infolist()
        except (zipfile.BadZipFile, ValueError, OSError) as e:
            raise DataError(f"not a readable zip checkpoint ({e})") from e
        packed = [i.filename for i in infos if i.compress_type != zipfile.ZIP_STORED]
        if packed:
            raise DataError(f"compressed records ({packed[0]}), which torch.save never writes; refused unread")
        return sum(i.file_size for i in infos)
    scanner = _DeclarationScanner(f)
    try:
        for _ in range(4):  # magic number, protocol version, system info, then the object with its storages
            scanner.load()
    except DataError:
        raise
    except Exception as e:  # a truncated or malformed pickle
        raise DataError(f"not a readable torch checkpoint ({type(e).__name__}: {e})") from e
    return sum(scanner.storages.values())


def bounded_torch_load(source: bytes | str | os.PathLike, what: str, kind: str = "torch checkpoint") -> Any:
    """``torch.load(weights_only=True)`` of a file or bytes, after checking that what it declares fits its size.

    Args:
        source: the bytes of a checkpoint, or its path (read by torch itself, not copied into memory first).
        what: what it is, for messages (``"a tensor storage in the network pickle"``, ``"weights file x.pth"``).
        kind: what it should hold, for messages (``"torchvision state_dict"``).

    Raises:
        DataError: declared storages larger than the file, compressed records, or anything torch refuses.
    """
    import torch

    if isinstance(source, str | os.PathLike):
        size = os.path.getsize(source)
        opener: Callable[[], BinaryIO] = lambda: open(source, "rb")  # noqa: E731
    else:
        size = len(source)
        opener = lambda: io.BytesIO(source)  # noqa: E731
    with opener() as f:
        try:
            declared = declared_storage_bytes(f)
        except DataError as e:
            raise DataError(f"{what} is not a readable {kind}: {e}") from e
    if declared > size:
        raise DataError(
            f"{what} declares {declared:,} bytes of tensors but holds {size:,}; it is corrupt or hostile, refused "
            "before allocating anything"
        )
    try:
        with opener() as f:
            return torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError/RuntimeError for refused globals and for corrupt files
        raise DataError(f"{what} is not a readable {kind} (torch.load weights_only: {type(e).__name__}: {e})") from e


def check_object_graph(obj: Any, where: str, children: Callable[[Any], Any] | None = None) -> None:
    """Refuse an unpickled object graph that contains a cycle or nests deeper than :data:`MAX_DEPTH`.

    Args:
        obj: what the unpickler returned.
        where: the file, for messages.
        children: extra rule giving the children of non-container objects (e.g. a record's state), or ``None``.

    Raises:
        DataError: a container that contains itself, nesting deeper than :data:`MAX_DEPTH`, or more than five
            million containers.
    """

    def kids(x: Any) -> list[Any]:
        if isinstance(x, dict):
            return [*x.keys(), *x.values()]
        if isinstance(x, list | tuple | set | frozenset):
            return list(x)
        extra = children(x) if children is not None else None
        return list(extra) if extra is not None else []

    on_path: set[int] = set()
    done: set[int] = set()
    stack: list[tuple[Any, bool]] = [(obj, False)]
    depth = 0
    while stack:
        x, leaving = stack.pop()
        if leaving:
            on_path.discard(id(x))
            done.add(id(x))
            depth -= 1
            continue
        inner = kids(x)
        if not inner and not isinstance(x, dict | list | tuple | set | frozenset):
            continue
        if id(x) in on_path:
            raise DataError(f"{where} holds an object that contains itself; a real checkpoint never does, refused")
        if id(x) in done:
            continue
        depth += 1
        if depth > MAX_DEPTH:
            raise DataError(f"{where} nests objects more than {MAX_DEPTH} levels deep; refused as malformed")
        if len(done) > _MAX_NODES:
            raise DataError(f"{where} holds more than {_MAX_NODES:,} containers; refused as malformed")
        on_path.add(id(x))
        stack.append((x, True))
        stack.extend((k, False) for k in inner)
