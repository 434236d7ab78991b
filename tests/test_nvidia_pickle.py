"""gan_zoo.nvidia: NVIDIA network pickles are read as data, never as code.

The fixture pickles are written the way NVIDIA's ``torch_utils.persistence`` writes them (checked against a real
stylegan2-ada-pytorch snapshot with ``pickletools``): a top-level dict; every network module pickled as
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with ``meta = {type, version, module_src, class_name,
state}``; ``state`` is the module's ``__dict__`` with ``_parameters``/``_buffers``/``_modules``, numpy float64 gains,
and ``_init_args``/``_init_kwargs`` (``dnnlib.util.EasyDict``) on the networks; tensors via
``torch._utils._rebuild_tensor_v2`` over ``torch.storage._load_from_bytes``. No NVIDIA code is involved.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from nvidia_format import DUMMY_SRC
from torch import nn

from gan_zoo.discriminator import Discriminator
from gan_zoo.nvidia import PersistentRecord, inspect_pickle, load_stylegan_pickle, read_stylegan_pickle
from gan_zoo.stylegan2 import Generator
from latentwalk.errors import ConfigError, DataError, MissingWeightsError, UnsafePickleError


def _tiny_generator(c_dim: int = 0, architecture: str = "skip", channels: int = 1) -> Generator:
    torch.manual_seed(0)
    G = Generator(
        z_dim=8,
        c_dim=c_dim,
        w_dim=8,
        img_resolution=16,
        img_channels=channels,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={"channel_base": 64, "channel_max": 8, "architecture": architecture, "conv_clamp": 256},
    )
    with torch.no_grad():  # non-zero noise strengths and w_avg so those paths matter
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.7)
        G.mapping.w_avg.normal_()
    return G.eval()


def _snapshot(G: nn.Module, D: nn.Module | None = None) -> dict:
    snap = {"G": G, "G_ema": G, "training_set_kwargs": {"path": "data.zip", "resolution": 16}}
    if D is not None:
        snap["D"] = D
    return snap


@pytest.mark.parametrize(("c_dim", "architecture", "channels"), [(0, "skip", 1), (3, "resnet", 3), (0, "orig", 3)])
def test_round_trip_gives_identical_outputs(write_nvidia_pickle, c_dim, architecture, channels):
    G = _tiny_generator(c_dim, architecture, channels)
    path = write_nvidia_pickle(_snapshot(G))
    loaded = load_stylegan_pickle(path)
    assert isinstance(loaded, Generator) and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    c = torch.eye(3)[[0, 1, 2]] if c_dim else None
    with torch.no_grad():
        assert torch.equal(loaded.mapping(z, c, truncation_psi=0.7), G.mapping(z, c, truncation_psi=0.7))
        assert torch.equal(loaded(z, c, noise_mode="const"), G(z, c, noise_mode="const"))


@pytest.mark.parametrize("protocol", [2, 3, 5])
def test_other_pickle_protocols_load_identically(write_nvidia_pickle, protocol):
    G = _tiny_generator()
    loaded = load_stylegan_pickle(write_nvidia_pickle(_snapshot(G), protocol=protocol))
    with torch.no_grad():
        assert torch.equal(loaded(torch.ones(1, 8), None), G(torch.ones(1, 8), None))


def test_discriminator_entry_loads_with_identical_logits(write_nvidia_pickle):
    torch.manual_seed(0)
    D = Discriminator(c_dim=0, img_resolution=16, img_channels=1, channel_base=64, channel_max=8).eval()
    path = write_nvidia_pickle(_snapshot(_tiny_generator(), D))
    loaded = load_stylegan_pickle(path, key="D")
    img = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(loaded(img, None), D(img, None))


def _stream_globals(path: Path) -> set[str]:
    """Every global a protocol-4 pickle names, read with pickletools (nothing is unpickled)."""
    import pickletools

    names, pushed, memo = set(), [], []
    for op, arg, _ in pickletools.genops(path.read_bytes()):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE"):
            pushed.append(arg)
        elif op.name in ("BINGET", "LONG_BINGET"):
            pushed.append(memo[arg])
        elif op.name == "MEMOIZE":
            memo.append(pushed[-1] if pushed else None)
        elif op.name == "STACK_GLOBAL":
            names.add(f"{pushed[-2]}.{pushed[-1]}")
            pushed.append(None)
        else:
            pushed.append(None)
    return names


def test_fixture_stream_has_nvidia_structure(write_nvidia_pickle):
    path = write_nvidia_pickle(_snapshot(_tiny_generator()))
    names = _stream_globals(path)
    scalar = np.float64(1.0).__reduce__()[0]  # numpy._core.multiarray.scalar (numpy.core... before numpy 2)
    # exactly the globals of a real stylegan2-ada-pytorch snapshot pickled with torch 2.x
    assert names == {
        f"{scalar.__module__}.{scalar.__name__}",
        "torch_utils.persistence._reconstruct_persistent_obj",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_tensor_v2",
        "torch.storage._load_from_bytes",
        "collections.OrderedDict",
        "dnnlib.util.EasyDict",
        "numpy.dtype",
    }
    record = read_stylegan_pickle(path)["G_ema"]
    assert isinstance(record, PersistentRecord) and record.class_name == "Generator"
    assert record.module_src == DUMMY_SRC and record.version == 6
    assert set(record.state["_modules"]) == {"synthesis", "mapping"}


def test_loading_imports_no_nvidia_module(write_nvidia_pickle):
    path = write_nvidia_pickle(_snapshot(_tiny_generator()))
    load_stylegan_pickle(path)
    assert not {"torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"} & set(sys.modules)


def test_inspect_pickle_lists_entries_and_classes(write_nvidia_pickle):
    path = write_nvidia_pickle(_snapshot(_tiny_generator()))
    info = inspect_pickle(path)
    assert info.entries == {"G": "Generator", "G_ema": "Generator", "training_set_kwargs": "dict"}
    assert {"Generator", "MappingNetwork", "SynthesisNetwork", "SynthesisLayer", "ToRGBLayer"} <= set(info.class_names)
    assert info.family == "stylegan2-ada"
    assert info.to_dict()["entries"]["G_ema"] == "Generator"


def _global_call_pickle(module: str, name: str, *args: str) -> bytes:
    """``{'G_ema': module.name(*args)}`` as a raw pickle stream naming ``module.name`` literally."""
    out = b"\x80\x02}X\x05\x00\x00\x00G_emac" + f"{module}\n{name}\n".encode() + b"("
    for a in args:
        raw = a.encode()
        out += b"X" + len(raw).to_bytes(4, "little") + raw
    return out + b"tRs."


@pytest.mark.parametrize(
    ("module", "name", "make_args"),
    [
        ("os", "system", lambda m: [f"touch {m}"]),
        ("posix", "system", lambda m: [f"touch {m}"]),
        ("builtins", "eval", lambda m: [f"open({str(m)!r}, 'w').write('pwned')"]),
        ("builtins", "exec", lambda m: [f"open({str(m)!r}, 'w').write('pwned')"]),
        ("subprocess", "check_call", lambda m: ["touch", str(m)]),
    ],
)
def test_malicious_global_is_refused_before_it_runs(tmp_path, module, name, make_args):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(_global_call_pickle(module, name, *make_args(marker)))
    with pytest.raises(UnsafePickleError, match=rf"{module}\.{name}"):
        load_stylegan_pickle(path)
    assert not marker.exists()


def test_subprocess_popen_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "pwned"
    stream = b"\x80\x02}X\x05\x00\x00\x00G_emacsubprocess\nPopen\n(]X\x05\x00\x00\x00touch"
    stream += b"X" + len(str(marker)).to_bytes(4, "little") + str(marker).encode() + b"e\x85Rs."
    path = tmp_path / "evil.pkl"
    path.write_bytes(stream)
    with pytest.raises(UnsafePickleError, match=r"subprocess\.Popen"):
        inspect_pickle(path)
    assert not marker.exists()


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_malicious_global_deep_inside_a_network_record_is_refused(write_nvidia_pickle, tmp_path):
    marker = tmp_path / "pwned"
    overrides = {"ToRGBLayer": lambda state: state.__setitem__("payload", _Payload(marker))}
    path = write_nvidia_pickle(_snapshot(_tiny_generator()), overrides=overrides)
    with pytest.raises(UnsafePickleError, match=r"posix\.system|os\.system"):
        load_stylegan_pickle(path)
    assert not marker.exists()


def test_tensor_storage_blobs_are_read_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    inner = pickle.dumps(_Payload(marker), protocol=2)
    stream = b"\x80\x02}X\x05\x00\x00\x00G_emactorch.storage\n_load_from_bytes\n"
    stream += b"B" + len(inner).to_bytes(4, "little") + inner + b"\x85Rs."
    path = tmp_path / "evil.pkl"
    path.write_bytes(stream)
    with pytest.raises((DataError, UnsafePickleError)):
        load_stylegan_pickle(path)
    assert not marker.exists()


def _stylegan3_stub() -> nn.Module:
    """Modules named as NVIDIA's StyleGAN3 classes, with no constructor arguments recorded (not gan_zoo.stylegan3)."""
    SynthesisInput = type("SynthesisInput", (nn.Module,), {})
    SynthesisNetwork = type("SynthesisNetwork", (nn.Module,), {})
    Gen = type("Generator", (nn.Module,), {})
    G, G.synthesis = Gen(), SynthesisNetwork()
    G.synthesis.input = SynthesisInput()
    G.synthesis.input.freqs = nn.Parameter(torch.zeros(4, 2))
    return G


def test_stylegan3_record_without_its_arguments_is_refused_by_name(write_nvidia_pickle):
    path = write_nvidia_pickle({"G_ema": _stylegan3_stub()})
    with pytest.raises(ConfigError, match=r"does not record the StyleGAN3 generator arguments \['z_dim'"):
        load_stylegan_pickle(path)
    assert inspect_pickle(path).family == "stylegan3"


def test_malicious_global_inside_a_stylegan3_record_is_refused(write_nvidia_pickle, tmp_path):
    marker = tmp_path / "pwned"
    overrides = {"SynthesisInput": lambda state: state.__setitem__("bandwidth", _Payload(marker))}
    path = write_nvidia_pickle({"G_ema": _stylegan3_stub()}, overrides=overrides)
    for read in (load_stylegan_pickle, inspect_pickle, read_stylegan_pickle):
        with pytest.raises(UnsafePickleError, match=r"posix\.system|os\.system"):
            read(path)
    assert not marker.exists()


def test_stylegan3_pickles_need_no_new_global(write_nvidia_pickle):
    """NVIDIA's StyleGAN3 records add numpy int64 arrays (layer sizes) and float64 scalars (cutoffs) to what
    StyleGAN2-ADA pickles hold; a pickle written by NVlabs/stylegan3's training loop (torch 2.x, numpy 2) names exactly
    the globals below, all of them already on the allowlist."""
    from tiny import tiny_stylegan3

    from gan_zoo.nvidia import ALLOWED_GLOBALS

    path = write_nvidia_pickle({"G_ema": tiny_stylegan3("r")})
    array = np.zeros(2).__reduce__()[0]  # numpy._core.multiarray._reconstruct (numpy.core... before numpy 2)
    scalar = np.float64(1.0).__reduce__()[0]
    numpy_names = {f"{f.__module__}.{f.__name__}" for f in (array, scalar)} | {"numpy.dtype", "numpy.ndarray"}
    assert _stream_globals(path) == numpy_names | {
        "torch_utils.persistence._reconstruct_persistent_obj",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_tensor_v2",
        "torch.storage._load_from_bytes",
        "collections.OrderedDict",
        "dnnlib.util.EasyDict",
    }
    assert _stream_globals(path) <= set(ALLOWED_GLOBALS)


def test_empty_file_is_reported_as_empty(tmp_path):
    path = tmp_path / "net.pkl"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        load_stylegan_pickle(path)


def test_git_lfs_pointer_is_reported_as_such(tmp_path):
    path = tmp_path / "net.pkl"
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 381624121\n")
    with pytest.raises(DataError, match="git-lfs pointer"):
        load_stylegan_pickle(path)


def test_missing_and_truncated_files_raise_user_errors(write_nvidia_pickle, tmp_path):
    with pytest.raises(MissingWeightsError):
        load_stylegan_pickle(tmp_path / "absent.pkl")
    good = write_nvidia_pickle(_snapshot(_tiny_generator()))
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match="could not be read"):
        load_stylegan_pickle(cut)


def test_unknown_constructor_kwargs_are_named(write_nvidia_pickle):
    def add_unknown(state):
        state["_init_kwargs"]["synthesis_kwargs"]["magnitude_ema_beta"] = 0.999

    path = write_nvidia_pickle(_snapshot(_tiny_generator()), overrides={"Generator": add_unknown})
    with pytest.raises(ConfigError, match="magnitude_ema_beta"):
        load_stylegan_pickle(path)


def test_unknown_top_level_kwarg_is_named(write_nvidia_pickle):
    def add_unknown(state):
        state["_init_kwargs"]["fused_modconv_default"] = "inference_only"

    path = write_nvidia_pickle(_snapshot(_tiny_generator()), overrides={"Generator": add_unknown})
    with pytest.raises(ConfigError, match="fused_modconv_default"):
        load_stylegan_pickle(path)


def test_weights_not_matching_the_architecture_list_the_keys(write_nvidia_pickle):
    def drop_bias(state):
        state["_parameters"] = {k: v for k, v in state["_parameters"].items() if k != "bias"}
        state["_buffers"] = dict(state["_buffers"], surplus=torch.zeros(2))

    path = write_nvidia_pickle(_snapshot(_tiny_generator()), overrides={"ToRGBLayer": drop_bias})
    with pytest.raises(DataError, match=r"missing keys \[.*synthesis\.b4\.torgb\.bias.*unexpected keys \[.*surplus"):
        load_stylegan_pickle(path)


def test_absent_key_lists_the_available_ones(write_nvidia_pickle):
    path = write_nvidia_pickle(_snapshot(_tiny_generator()))
    with pytest.raises(DataError, match=r"no 'D' entry.*'G', 'G_ema'"):
        load_stylegan_pickle(path, key="D")


def test_plain_numpy_arrays_are_read_and_object_arrays_refused(write_nvidia_pickle):
    def add_array(state):
        state["filter_taps"] = np.arange(4.0, dtype=np.float32)

    path = write_nvidia_pickle(_snapshot(_tiny_generator()), overrides={"Generator": add_array})
    record = read_stylegan_pickle(path)["G_ema"]
    np.testing.assert_array_equal(record.state["filter_taps"], np.arange(4.0, dtype=np.float32))
    fc0 = record.state["_modules"]["mapping"].state["_modules"]["fc0"]
    assert type(fc0.state["weight_gain"]) is float  # numpy float64 in the file, a plain float here

    def add_objects(state):
        state["objects"] = np.array([None, "x"], dtype=object)

    path = write_nvidia_pickle(_snapshot(_tiny_generator()), name="objects.pkl", overrides={"Generator": add_objects})
    with pytest.raises(UnsafePickleError, match="numpy dtype object"):
        load_stylegan_pickle(path)


def test_stylegan3_repository_stylegan2_pickles_get_that_repository_defaults(write_nvidia_pickle):
    torch.manual_seed(0)
    G = Generator(8, 0, 8, 16, 1, mapping_kwargs={"num_layers": 2, "w_avg_beta": 0.998},
                  synthesis_kwargs={"channel_base": 64, "channel_max": 8, "conv_clamp": 256, "num_fp16_res": 4,
                                    "fused_modconv_default": "inference_only"})  # fmt: skip

    def flatten(state):  # StyleGAN3's train.py passes synthesis options flat and leaves its defaults out
        kw = state["_init_kwargs"]
        synthesis = kw.pop("synthesis_kwargs")
        kw.update(channel_base=synthesis["channel_base"], channel_max=synthesis["channel_max"])
        kw["fused_modconv_default"] = "inference_only"
        kw["mapping_kwargs"].pop("w_avg_beta")

    src = DUMMY_SRC + "# class SynthesisBlock(..., fused_modconv_default=True, ...)\n"
    path = write_nvidia_pickle(_snapshot(G.eval()), overrides={"Generator": flatten}, module_src=src)
    loaded = load_stylegan_pickle(path)
    assert loaded.init_kwargs == G.init_kwargs
    with torch.no_grad():
        assert torch.equal(loaded(torch.ones(2, 8), None), G(torch.ones(2, 8), None))
