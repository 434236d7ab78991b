"""Writers of NVIDIA-format network pickles for tests, with our own modules and no NVIDIA code.

The pickles are written the way NVIDIA's ``torch_utils.persistence`` writes them (checked against a real
stylegan2-ada-pytorch snapshot with ``pickletools``): a top-level dict; every network module pickled as
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with ``meta = {type, version, module_src, class_name,
state}``; ``state`` is the module's ``__dict__`` with ``_parameters``/``_buffers``/``_modules``, numpy float64 gains,
and ``_init_args``/``_init_kwargs`` (``dnnlib.util.EasyDict``) on the networks; tensors via
``torch._utils._rebuild_tensor_v2`` over ``torch.storage._load_from_bytes``.
"""

from __future__ import annotations

import io
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from torch import nn

# Would end the process if anything ever executed it.
DUMMY_SRC = "# stand-in for NVIDIA's module source; a safe reader never runs this\nimport os\nos._exit(99)\n"


class _FakeNvidiaNames:
    """Importable stand-ins for ``torch_utils.persistence`` and ``dnnlib.util`` so that pickle can name them."""

    def __init__(self) -> None:
        def _reconstruct_persistent_obj(meta):  # pragma: no cover - must never be called by the reader
            raise AssertionError("the reader called the pickle's reconstruct function")

        _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
        _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
        self.reconstruct = _reconstruct_persistent_obj
        self.EasyDict = type("EasyDict", (dict,), {"__module__": "dnnlib.util"})
        self.modules = {
            "torch_utils": types.ModuleType("torch_utils"),
            "torch_utils.persistence": types.ModuleType("torch_utils.persistence"),
            "dnnlib": types.ModuleType("dnnlib"),
            "dnnlib.util": types.ModuleType("dnnlib.util"),
        }
        self.modules["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
        self.modules["dnnlib.util"].EasyDict = self.EasyDict

    def easy(self, d: dict) -> dict:
        return self.EasyDict({k: self.easy(v) if isinstance(v, dict) else v for k, v in d.items()})


class NvidiaStylePickler(pickle.Pickler):
    """Pickle nn.Modules as NVIDIA's persistence records; ``overrides`` edits the state of classes by name."""

    def __init__(self, file, names, overrides=None, protocol: int = 4, module_src: str = DUMMY_SRC) -> None:
        super().__init__(file, protocol=protocol)
        self.names = names
        self.overrides = overrides or {}
        self.module_src = module_src

    def reducer_override(self, obj):
        if not isinstance(obj, nn.Module):
            return NotImplemented
        state = dict(obj.__dict__)
        for gain in ("weight_gain", "act_gain"):  # NVIDIA computes these with numpy
            if isinstance(state.get(gain), float):
                state[gain] = np.float64(state[gain])
        if hasattr(obj, "init_kwargs"):
            state["_init_args"] = ()
            state["_init_kwargs"] = self.names.easy(obj.init_kwargs)
        override = self.overrides.get(type(obj).__name__)
        if override is not None:
            override(state)
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=type(obj).__name__, state=state)
        return self.names.reconstruct, (meta,)


def write_nvidia_pickle_file(
    path: Path,
    snapshot: dict,
    monkeypatch: pytest.MonkeyPatch,
    overrides=None,
    protocol: int = 4,
    module_src: str = DUMMY_SRC,
) -> Path:
    """Write ``snapshot`` (a dict of networks and data) to ``path`` in NVIDIA's network-pickle format."""
    names = _FakeNvidiaNames()
    buf = io.BytesIO()
    with monkeypatch.context() as m:
        for mod_name, module in names.modules.items():
            m.setitem(sys.modules, mod_name, module)
        NvidiaStylePickler(buf, names, overrides, protocol, module_src).dump(snapshot)
    path.write_bytes(buf.getvalue())
    return path
