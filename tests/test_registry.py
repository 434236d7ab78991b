"""gan_zoo.load: one loader registry for demo:, lite:, stylegan:, module: specs and bare paths."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import torch
from torch import nn

import gan_zoo
from gan_zoo import registry
from gan_zoo.checkpoint import save_generator
from gan_zoo.stylegan2 import Generator
from gan_zoo.wrapping import WrappedGenerator
from latentwalk.errors import ConfigError, MissingWeightsError

EXPECTED_SPECS = "demo:cxr, demo:fundus, lite:PATH, stylegan:PATH.pkl, module:pkg.mod:factory, rosinality:PATH.pt"


def _tiny_generator(c_dim: int = 0) -> Generator:
    torch.manual_seed(0)
    G = Generator(
        z_dim=8,
        c_dim=c_dim,
        w_dim=8,
        img_resolution=16,
        img_channels=1,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={"channel_base": 64, "channel_max": 8},
    )
    with torch.no_grad():
        G.mapping.w_avg.normal_()
    return G  # left in training mode with gradients on: load() must switch both off


def _same_outputs(a: nn.Module, b: nn.Module) -> bool:
    """Bit-identical images; both in eval mode (training mode picks the unfused modulated convolution)."""
    a.eval(), b.eval()
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(a(z, None, truncation_psi=0.7), b(z, None, truncation_psi=0.7))


def _assert_ready(G: nn.Module) -> None:
    assert not G.training and not any(m.training for m in G.modules())
    assert not any(p.requires_grad for p in G.parameters())


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    """``write(source) -> module name`` of a fresh importable module in ``tmp_path``, removed afterwards."""
    names: list[str] = []

    def write(source: str) -> str:
        name = f"lw_factories_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        monkeypatch.syspath_prepend(str(tmp_path))
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


def test_lite_round_trip_loads_from_folder_stem_either_file_and_bare_paths(tmp_path):
    G = _tiny_generator()
    weights, config = save_generator(G, tmp_path)  # tmp_path/generator.safetensors + .json
    stem = tmp_path / "generator"
    specs = [f"lite:{tmp_path}", f"lite:{stem}", f"lite:{weights}", f"lite:{config}", str(tmp_path), weights, config]
    for spec in specs:
        loaded = gan_zoo.load(spec)
        assert isinstance(loaded, Generator), spec
        _assert_ready(loaded)
        assert _same_outputs(loaded, G), spec
    assert registry.parse_spec(str(stem)) == ("lite", str(stem))  # a stem with a .json beside it


def test_stylegan_pickle_loads_by_scheme_and_by_bare_path(tmp_path, write_nvidia_pickle):
    G = _tiny_generator().eval()
    path = write_nvidia_pickle({"G": G, "G_ema": G, "kimg": 1})
    for spec in (f"stylegan:{path}", str(path)):
        loaded = gan_zoo.load(spec)
        assert isinstance(loaded, Generator)
        _assert_ready(loaded)
        assert _same_outputs(loaded, G)


def test_missing_stylegan_pickle_is_a_missing_weights_error(tmp_path):
    with pytest.raises(MissingWeightsError, match="network pickle not found"):
        gan_zoo.load(f"stylegan:{tmp_path / 'absent.pkl'}")


def test_module_spec_uses_a_contract_generator_as_is(factory_module):
    name = factory_module(
        """
        import torch
        from gan_zoo.stylegan2 import Generator

        def make():
            torch.manual_seed(0)
            return Generator(8, 0, 8, 16, 1, {"num_layers": 2}, {"channel_base": 64, "channel_max": 8}).train()
        """
    )
    G = gan_zoo.load(f"module:{name}:make")
    assert isinstance(G, Generator)
    _assert_ready(G)


def test_module_spec_wraps_a_plain_module_with_a_z_dim(factory_module):
    name = factory_module(
        """
        import torch
        from torch import nn

        class Decoder(nn.Module):
            z_dim = 8

            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(8, 64)

            def forward(self, z):
                return torch.tanh(self.fc(z)).view(-1, 1, 8, 8)

        class Factories:
            @staticmethod
            def decoder():
                return Decoder()
        """
    )
    G = gan_zoo.load(f"module:{name}:Factories.decoder")
    assert isinstance(G, WrappedGenerator) and (G.num_ws, G.img_resolution, G.img_channels) == (1, 8, 1)
    _assert_ready(G)
    z = torch.randn(2, 8)
    with torch.no_grad():
        torch.testing.assert_close(G(z, None), G.synthesis.module(z))


@pytest.mark.parametrize(
    ("source", "attr", "message"),
    [
        ("from torch import nn\ndef make():\n    return nn.Linear(2, 2)\n", "make", "is not a generator"),
        ("def make():\n    return 3\n", "make", "returned a int, expected a torch.nn.Module"),
        ("x = 3\n", "make", "has no attribute 'make'"),
        ("x = 3\n", "x", "names a int, expected a function or class"),
    ],
)
def test_module_spec_names_what_is_wrong(factory_module, source, attr, message):
    name = factory_module(source)
    with pytest.raises(ConfigError, match=message):
        gan_zoo.load(f"module:{name}:{attr}")


def test_module_spec_checks_a_factory_result_that_breaks_the_contract(factory_module):
    name = factory_module(
        """
        import torch
        from gan_zoo.stylegan2 import Generator

        def make():
            G = Generator(8, 0, 8, 16, 1, {"num_layers": 2}, {"channel_base": 64, "channel_max": 8})
            G.img_resolution = 32  # claims more than it renders
            return G
        """
    )
    with pytest.raises(ConfigError, match=r"expected \[2, 1, 32, 32\] \(img_channels=1, img_resolution=32\)"):
        gan_zoo.load(f"module:{name}:make")


def test_module_spec_errors_for_unimportable_modules_and_malformed_specs():
    with pytest.raises(ConfigError, match="cannot import 'no_such_pkg_lw.gens'"):
        gan_zoo.load("module:no_such_pkg_lw.gens:make")
    with pytest.raises(ConfigError, match="must name a module and a factory"):
        gan_zoo.load("module:just_a_module")


def test_missing_demo_weights_say_how_to_train_them(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path / "weights")
    with pytest.raises(MissingWeightsError) as err:
        gan_zoo.load("demo:fundus")
    message = str(err.value)
    assert "demo:fundus weights are not installed" in message
    assert "python scripts/train_demo_gans.py --kind fundus --out runs/demo-fundus" in message


def test_installed_demo_weights_load(tmp_path, monkeypatch):
    G = _tiny_generator()
    save_generator(G, tmp_path / "demo_cxr")
    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path)
    loaded = gan_zoo.load("demo:cxr", device="cpu")
    _assert_ready(loaded)
    assert _same_outputs(loaded, G)


def test_unknown_demo_kind_is_named():
    with pytest.raises(ConfigError, match='unknown demo generator "demo:mri"; expected demo:cxr or demo:fundus'):
        gan_zoo.load("demo:mri")


@pytest.mark.parametrize("spec", ["x", "foo:bar", "runs/generator.ckpt", ""])
def test_unknown_spec_lists_the_accepted_forms(spec):
    with pytest.raises(ConfigError) as err:
        gan_zoo.load(spec)
    assert str(err.value).startswith(f'unknown generator spec "{spec}"; expected one of {EXPECTED_SPECS}')


def test_spec_without_argument_is_incomplete():
    with pytest.raises(ConfigError, match='generator spec "lite:" is incomplete; expected lite:PATH'):
        gan_zoo.load("lite:")


def test_an_unknown_device_is_refused_before_reading_files(tmp_path):
    with pytest.raises(ConfigError, match='unknown device "gpu0"'):
        gan_zoo.load(f"lite:{tmp_path / 'absent'}", device="gpu0")


def test_native_bfloat16_is_read_from_the_cpu_flags(monkeypatch, tmp_path):
    import builtins

    from gan_zoo.devices import native_bfloat16

    assert native_bfloat16("cuda") and not native_bfloat16("mps")
    real_open = builtins.open
    for flags, expected in (("fpu avx512f avx512_bf16 sse", True), ("fpu amx_bf16 amx_tile", True),
                            ("fpu avx512f avx512bw sse", False)):  # fmt: skip
        info = tmp_path / "cpuinfo"
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        monkeypatch.setattr(builtins, "open", lambda path, *a, _i=info, **k: real_open(
            _i if path == "/proc/cpuinfo" else path, *a, **k))  # fmt: skip
        assert native_bfloat16("cpu") is expected
    monkeypatch.setattr(builtins, "open", lambda *a, **k: (_ for _ in ()).throw(OSError("no /proc")))
    assert native_bfloat16("cpu") is False


def test_bare_paths_get_their_scheme_from_the_suffix():
    assert registry.parse_spec("runs/net.PKL") == ("stylegan", "runs/net.PKL")
    assert registry.parse_spec("runs/g.safetensors") == ("lite", "runs/g.safetensors")
    assert registry.parse_spec(Path("runs/g.json")) == ("lite", "runs/g.json")
    assert registry.parse_spec("demo:cxr") == ("demo", "cxr")
    assert gan_zoo.SPECS == EXPECTED_SPECS.split(", ")


def test_register_loader_adds_a_scheme_and_refuses_duplicates(monkeypatch):
    monkeypatch.setattr(registry, "_LOADERS", dict(registry._LOADERS))
    monkeypatch.setattr(registry, "SPECS", list(registry.SPECS))

    @registry.register_loader("toy", usage=["toy:SEED"])
    def _load_toy(arg: str, device: torch.device) -> nn.Module:
        torch.manual_seed(int(arg))
        return _tiny_generator()

    assert registry.SPECS[-1] == "toy:SEED"
    G = gan_zoo.load("toy:3")
    _assert_ready(G)
    with pytest.raises(ConfigError, match='scheme "toy" is already registered'):
        registry.register_loader("toy")
    with pytest.raises(ConfigError, match="lower-case letters"):
        registry.register_loader("Bad Scheme")


def test_describe_a_loaded_generator(tmp_path):
    G = _tiny_generator()
    save_generator(G, tmp_path)
    info = gan_zoo.describe(gan_zoo.load(tmp_path))
    assert {k: info[k] for k in ("z_dim", "c_dim", "w_dim", "num_ws", "img_resolution", "img_channels")} == {
        "z_dim": 8,
        "c_dim": 0,
        "w_dim": 8,
        "num_ws": G.num_ws,
        "img_resolution": 16,
        "img_channels": 1,
    }
    assert info["num_parameters"] == sum(p.numel() for p in G.parameters())
    assert info["class"] == "gan_zoo.stylegan2.Generator" and info["device"] == "cpu"
