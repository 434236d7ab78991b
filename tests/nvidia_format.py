"""Writers of NVIDIA-format network pickles for tests, with our own modules and no NVIDIA code.

The pickles are written the way NVIDIA's ``torch_utils.persistence`` writes them (checked against a real
stylegan2-ada-pytorch snapshot with ``pickletools``): a top-level dict; every network module pickled as
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with ``meta = {type, version, module_src, class_name,
state}``; ``state`` is the module's ``__dict__`` with ``_parameters``/``_buffers``/``_modules``, numpy float64 gains,
and ``_init_args``/``_init_kwargs`` (``dnnlib.util.EasyDict``) on the networks; tensors via
``torch._utils._rebuild_tensor_v2`` over ``torch.storage._load_from_bytes``.

Our StyleGAN3 modules (:mod:`gan_zoo.stylegan3`) are written as NVIDIA's ``training/networks_stylegan3.py`` records
(checked against a pickle written by NVlabs/stylegan3 c233a91's training-loop code with ``pickletools``): the
generator's synthesis options flat in ``_init_kwargs``, layer sizes as numpy int64 arrays, sampling rates, cutoffs and
half-widths as numpy float64 scalars.
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


def _as_stylegan3_record(obj: nn.Module, state: dict) -> None:
    """Give the state of one of our StyleGAN3 modules the types NVIDIA's records hold (in place)."""
    name = type(obj).__name__
    if name == "Generator" and "_init_kwargs" in state:  # NVIDIA: Generator(..., mapping_kwargs={}, **synthesis)
        kwargs = dict(state["_init_kwargs"])
        kwargs.update(kwargs.pop("synthesis_kwargs", {}))
        state["_init_kwargs"] = type(state["_init_kwargs"])(kwargs)
        for own in ("family", "config"):  # our additions; NVIDIA's generator has no such attributes
            state.pop(own, None)
    for key in ("size", "in_size", "out_size"):
        if isinstance(state.get(key), tuple):
            state[key] = np.asarray(state[key], dtype=np.int64)
    floats = ("sampling_rate", "bandwidth", "in_cutoff", "out_cutoff", "in_half_width", "out_half_width")
    for key in floats:
        if isinstance(state.get(key), float):
            state[key] = np.float64(state[key])
    state.pop("options", None)  # our SynthesisNetwork's resolved options


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
        if type(obj).__module__ == "gan_zoo.stylegan3":
            _as_stylegan3_record(obj, state)
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
