"""gan_zoo.stylegan3 and StyleGAN3 network pickles (configs t and r): contract, loading as data, conversion, refusals,
and the downstream chain (inversion in W and W+, ``latentwalk generate``).

Every fixture is made with our own modules (tests/nvidia_format.py writes them as NVIDIA's persistence records); no
NVIDIA code is involved. Equality with NVIDIA's own network was measured outside the test suite (see the
gan_zoo.stylegan3 docstring).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from tiny import tiny_stylegan3 as tiny_sg3

import gan_zoo
from gan_zoo.alias_free import design_lowpass_filter, filtered_lrelu, upfirdn2d_ref
from gan_zoo.base import check_generator
from gan_zoo.nvidia import inspect_pickle, load_stylegan_pickle, read_stylegan_pickle
from gan_zoo.ops import setup_filter, upfirdn2d
from gan_zoo.stylegan3 import Generator
from latentwalk.cli import cli
from latentwalk.errors import ConfigError, DataError, UnsafePickleError

pytestmark = pytest.mark.usefixtures("one_thread")


def labels(n: int, c_dim: int) -> torch.Tensor | None:
    return torch.eye(c_dim)[torch.arange(n) % c_dim] if c_dim else None


def latents(n: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 8, generator=torch.Generator().manual_seed(seed))


def _snapshot(G: Generator) -> dict:
    return {"G": G, "G_ema": G, "D": None, "training_set_kwargs": {"path": "data.zip", "resolution": G.img_resolution}}


CASES = [("t", 0, 1), ("t", 3, 3), ("r", 0, 3), ("r", 3, 1)]


# ------------------------------------------------------------------------------------------------ the network


@pytest.mark.parametrize(("config", "c_dim", "channels"), CASES)
def test_generator_follows_the_contract(config, c_dim, channels):
    G = tiny_sg3(config, c_dim, channels)
    check_generator(G)
    assert (G.z_dim, G.c_dim, G.w_dim, G.img_resolution, G.img_channels) == (8, c_dim, 8, 16, channels)
    assert G.num_ws == G.mapping.num_ws == G.synthesis.num_ws == 4 + 2
    assert G.family == "stylegan3" and G.config == config
    assert G.source_info["config"]["name"] == config
    names = G.synthesis.layer_names
    assert len(names) == 5 and names[-1] == f"L4_16_{channels}" and names[0].startswith("L0_")
    kernel = {"t": 3, "r": 1}[config]
    assert getattr(G.synthesis, names[0]).weight.shape[-1] == kernel
    assert getattr(G.synthesis, names[0]).down_radial == (config == "r")
    z, c = latents(), labels(3, c_dim)
    with torch.no_grad():
        ws = G.mapping(z, c)
        img = G.synthesis(ws, noise_mode="const")
        assert ws.shape == (3, 6, 8) and img.shape == (3, channels, 16, 16) and img.dtype == torch.float32
        assert torch.equal(G(z, c), img)


def test_noise_mode_is_accepted_and_ignored_and_outputs_are_deterministic():
    G = tiny_sg3()
    z = latents()
    with torch.no_grad():
        ws = G.mapping(z, None)
        outs = [G.synthesis(ws, noise_mode=mode) for mode in ("const", "random", "none", "const")]
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    with pytest.raises(ConfigError, match="noise_mode"):
        G.synthesis(ws, noise_mode="loud")
    with torch.no_grad():  # one image alone or in a batch: equal up to the batch-wide style pre-normalisation
        assert torch.allclose(G.synthesis(ws[:1]), outs[0][:1], atol=1e-6)


def test_truncation_pulls_towards_w_avg_and_respects_the_cutoff():
    G = tiny_sg3()
    z = latents()
    with torch.no_grad():
        ws = G.mapping(z, None)
        assert torch.equal(G.mapping(z, None, truncation_psi=0), G.mapping.w_avg.expand(3, 6, 8))
        half = G.mapping(z, None, truncation_psi=0.5)
        assert torch.allclose(half, G.mapping.w_avg + 0.5 * (ws - G.mapping.w_avg), atol=1e-6)
        cut = G.mapping(z, None, truncation_psi=0, truncation_cutoff=2)
    assert torch.equal(cut[:, :2], G.mapping.w_avg.expand(3, 2, 8)) and torch.equal(cut[:, 2:], ws[:, 2:])


def test_labels_condition_the_output_and_are_required():
    G = tiny_sg3("t", c_dim=3)
    z = latents(1).expand(3, 8)
    with torch.no_grad():
        img = G(z, torch.eye(3))
    assert not torch.allclose(img[0], img[1]) and not torch.allclose(img[1], img[2])
    with pytest.raises(ConfigError, match="conditional"):
        G(z, None)


def test_update_emas_moves_the_averages_only_when_asked():
    G = tiny_sg3()
    before = {k: v.clone() for k, v in G.state_dict().items()}
    with torch.no_grad():
        G(latents(), None)
        assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())
        G(latents(), None, update_emas=True)
    moved = [k for k, v in G.state_dict().items() if not torch.equal(before[k], v)]
    assert "mapping.w_avg" in moved and sum(k.endswith("magnitude_ema") for k in moved) == 5


def test_gradients_reach_w_for_inversion():
    G = tiny_sg3("r").requires_grad_(False)
    ws = G.mapping(latents(2), None).detach().requires_grad_(True)
    G.synthesis(ws).square().mean().backward()
    assert ws.grad is not None and torch.isfinite(ws.grad).all() and ws.grad.abs().sum() > 0


def test_a_network_is_built_on_the_meta_device_without_memory():
    with torch.device("meta"):
        G = Generator(512, 0, 512, 256, 3, synthesis_kwargs={"conv_kernel": 1, "use_radial_filters": True})
    first = getattr(G.synthesis, G.synthesis.layer_names[0])
    assert G.num_ws == 16 and first.weight.is_meta and first.weight.shape == (512, 512, 1, 1)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"filter_size": 10**6}, "filter_size"),
        ({"conv_kernel": 0}, "conv_kernel"),
        ({"num_critical": 4}, "num_critical"),
        ({"first_stopband": 1e-9}, "transition band"),
        ({"margin_size": -1}, "margin_size"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_architectures_are_refused_with_one_line(change, match):
    with pytest.raises(ConfigError, match=match) as err:
        Generator(8, 0, 8, 16, 1, synthesis_kwargs={"num_layers": 4, **change})
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------ the ops


def test_upfirdn2d_ref_equals_the_stylegan2_op_for_2d_filters():
    x = torch.randn(2, 3, 9, 9, generator=torch.Generator().manual_seed(0))
    f = setup_filter([1, 3, 3, 1])
    for up, down, pad in [(2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)), (1, 1, (-1, 2, 0, -2))]:
        ours = upfirdn2d_ref(x, f, up=up, down=down, padding=pad, gain=up * up)
        assert torch.allclose(ours, upfirdn2d(x, f, up=up, down=down, padding=pad, gain=up * up), atol=1e-6)
    sep = torch.tensor([0.25, 0.5, 0.25])  # a separable filter equals its outer product
    assert torch.allclose(upfirdn2d_ref(x, sep, up=2, gain=4), upfirdn2d_ref(x, torch.outer(sep, sep), up=2, gain=4),
                          atol=1e-6)  # fmt: skip


def test_filtered_lrelu_is_bias_upsample_activation_downsample():
    x = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    b = torch.tensor([0.5, -0.5])
    fu, fd = design_lowpass_filter(12, 2.0, 3.0, 16), design_lowpass_filter(12, 2.0, 3.0, 16, radial=True)
    pad = [11, 10, 11, 10]
    y = filtered_lrelu(x, fu, fd, b, up=2, down=2, padding=pad, gain=2.0, slope=0.2, clamp=0.3)
    up = upfirdn2d_ref(x + b.reshape(1, 2, 1, 1), fu, up=2, padding=pad, gain=4)
    by_hand = upfirdn2d_ref((torch.nn.functional.leaky_relu(up, 0.2) * 2).clamp(-0.3, 0.3), fd, down=2)
    assert y.shape == (1, 2, 8, 8) and torch.allclose(y, by_hand, atol=1e-7)
    assert filtered_lrelu(x, fu, None, b, up=2, padding=pad, gain=2.0, clamp=0.3).abs().max() <= 0.3
    linear = filtered_lrelu(x, None, None, b, padding=0, gain=1, slope=1)
    assert torch.equal(linear, x + b.reshape(1, 2, 1, 1))


def test_filter_design_matches_scipy():
    signal = pytest.importorskip("scipy.signal")
    special = pytest.importorskip("scipy.special")
    for numtaps, cutoff, width, fs in [(12, 2.0, 3.3, 16), (24, 4.5, 2.1, 32), (12, 16.0, 6.6, 64)]:
        ref = torch.as_tensor(signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs), dtype=torch.float32)
        assert torch.equal(design_lowpass_filter(numtaps, cutoff, width, fs), ref)
    numtaps, cutoff, width, fs = 12, 8.0, 8.0, 64  # StyleGAN3-R's jinc filter, written as NVIDIA does with scipy
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    f = special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    w = np.kaiser(numtaps, signal.kaiser_beta(signal.kaiser_atten(numtaps, width / (fs / 2))))
    f *= np.outer(w, w)
    ref = torch.as_tensor(f / f.sum(), dtype=torch.float32)
    assert torch.allclose(design_lowpass_filter(numtaps, cutoff, width, fs, radial=True), ref, atol=1e-7)
    assert design_lowpass_filter(1, cutoff, width, fs) is None
    with pytest.raises(ConfigError, match="taps"):
        design_lowpass_filter(10_000, cutoff, width, fs)


# ------------------------------------------------------------------------------------------------ NVIDIA pickles


@pytest.mark.parametrize(("config", "c_dim", "channels"), CASES)
def test_pickle_loads_as_data_with_identical_outputs(write_nvidia_pickle, config, c_dim, channels):
    G = tiny_sg3(config, c_dim, channels)
    path = write_nvidia_pickle(_snapshot(G))
    loaded = gan_zoo.load(f"stylegan:{path}")
    assert isinstance(loaded, Generator) and not loaded.training and loaded.config == config
    assert not any(p.requires_grad for p in loaded.parameters())
    assert loaded.init_kwargs == G.init_kwargs
    z, c = latents(), labels(3, c_dim)
    with torch.no_grad():
        for psi, cutoff in [(1, None), (0.7, None), (0.5, 3)]:
            ws = G.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff)
            assert torch.equal(loaded.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff), ws)
            assert torch.equal(loaded.synthesis(ws), G.synthesis(ws))
    assert not {"torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"} & set(sys.modules)


def test_fixture_records_look_like_nvidia_stylegan3_records(write_nvidia_pickle):
    path = write_nvidia_pickle(_snapshot(tiny_sg3("r")))
    record = read_stylegan_pickle(path)["G_ema"]
    kwargs = record.state["_init_kwargs"]
    assert "synthesis_kwargs" not in kwargs and kwargs["conv_kernel"] == 1 and kwargs["use_radial_filters"] is True
    layer = record.state["_modules"]["synthesis"].state["_modules"]["L0_20_16"]
    assert isinstance(layer.state["in_size"], np.ndarray) and layer.state["in_size"].dtype == np.int64
    assert type(layer.state["in_cutoff"]) is float  # numpy float64 in the file, a plain float once read
    info = inspect_pickle(path)
    assert (info.family, info.config) == ("stylegan3", "r")
    assert {"Generator", "MappingNetwork", "SynthesisNetwork", "SynthesisInput", "SynthesisLayer",
            "FullyConnectedLayer"} <= set(info.class_names)  # fmt: skip


def test_convert_and_info_round_trip(write_nvidia_pickle, tmp_path):
    G = tiny_sg3("r", c_dim=3, channels=3)
    pkl = write_nvidia_pickle(_snapshot(G))
    runner = CliRunner()
    info = runner.invoke(cli, ["gan", "info", f"stylegan:{pkl}", "--json"])
    assert info.exit_code == 0, info.output
    facts = json.loads(info.output)
    assert facts["family"] == "stylegan3" and facts["config"]["name"] == "r" and facts["num_ws"] == 6
    done = runner.invoke(cli, ["gan", "convert", str(pkl), "--out", str(tmp_path / "conv")])
    assert done.exit_code == 0, done.output
    meta = json.loads((tmp_path / "conv" / "generator.json").read_text())
    assert meta["format"] == "latentwalk.gan_zoo.stylegan3.Generator" and meta["architecture"] == G.init_kwargs
    assert meta["provenance"]["source"] == "stylegan3 pickle" and meta["provenance"]["stylegan3"]["name"] == "r"
    converted = gan_zoo.load(f"lite:{tmp_path / 'conv'}")
    assert isinstance(converted, Generator)
    z, c = latents(), labels(3, 3)
    with torch.no_grad():
        assert torch.equal(converted(z, c, truncation_psi=0.7), G(z, c, truncation_psi=0.7))
    again = json.loads(runner.invoke(cli, ["gan", "info", f"lite:{tmp_path / 'conv'}", "--json"]).output)
    assert again["family"] == "stylegan3" and again["config"]["name"] == "r"


@pytest.mark.parametrize(
    ("change", "match"),
    [({"filter_size": 10**6}, "filter_size must be an integer"), ({"architecture": "skip"}, "architecture"),
     ({"channel_max": 32}, "does not match the architecture")],
)  # fmt: skip
def test_lite_checkpoints_with_bad_stylegan3_architectures_are_refused(tmp_path, change, match):
    from gan_zoo.checkpoint import save_generator

    _, config = save_generator(tiny_sg3("r"), tmp_path / "generator", {})
    meta = json.loads(config.read_text())
    meta["architecture"]["synthesis_kwargs"].update(change)
    config.write_text(json.dumps(meta))
    with pytest.raises((ConfigError, DataError), match=match):
        gan_zoo.load(f"lite:{tmp_path}")


def _set(key, value):
    return lambda state: state["_init_kwargs"].__setitem__(key, value)


def _drop_buffer(name):
    def drop(state):
        state["_buffers"] = {k: v for k, v in state["_buffers"].items() if k != name}

    return drop


def _reshape_buffer(name):
    def reshape(state):
        state["_buffers"] = dict(state["_buffers"], **{name: torch.zeros(3, 3)})

    return reshape


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"Generator": _set("magnitude_ema_gamma", 0.5)}, ConfigError, r"does not know: \['magnitude_ema_gamma'\]"),
        ({"Generator": lambda s: s["_init_kwargs"]["mapping_kwargs"].__setitem__("embed_features", 4)}, ConfigError,
         "mapping_kwargs.embed_features"),
        ({"Generator": lambda s: s["_init_kwargs"].pop("w_dim")}, ConfigError, r"arguments \['w_dim'\]"),
        ({"Generator": _set("filter_size", 10**9)}, ConfigError, "filter_size"),
        ({"Generator": _set("channel_max", 10**9)}, ConfigError, "channel_max"),
        ({"Generator": _set("w_dim", 20000)}, ConfigError, "outside the accepted range"),
        ({"Generator": _set("channel_max", 16)}, DataError, r"does not match the architecture: missing keys"),
        ({"SynthesisLayer": _drop_buffer("magnitude_ema")}, DataError, r"missing keys \[.*magnitude_ema"),
        ({"SynthesisInput": _reshape_buffer("freqs")}, DataError, r"wrong shape.*synthesis\.input\.freqs"),
        ({"Generator": lambda s: s.__setitem__("_init_args", tuple(range(7)))}, ConfigError, "positional"),
        ({"Generator": lambda s: s.__setitem__("_init_kwargs", [1, 2])}, ConfigError, "expected a tuple and a dict"),
    ],
)  # fmt: skip
def test_malformed_records_are_refused_with_one_line(write_nvidia_pickle, overrides, error, match):
    path = write_nvidia_pickle(_snapshot(tiny_sg3()), overrides=overrides)
    with pytest.raises(error, match=match) as err:
        load_stylegan_pickle(path)
    assert "\n" not in str(err.value)


def test_a_stylegan3_sub_network_is_not_built_as_a_generator(write_nvidia_pickle):
    G = tiny_sg3()
    path = write_nvidia_pickle({"G_ema": G.synthesis})
    with pytest.raises(ConfigError, match="StyleGAN3 SynthesisNetwork"):
        load_stylegan_pickle(path)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("where", ["SynthesisInput", "SynthesisLayer", "Generator"])
def test_a_hostile_payload_in_a_stylegan3_record_runs_nothing(write_nvidia_pickle, tmp_path, where):
    marker = tmp_path / "pwned"
    overrides = {where: lambda state: state.__setitem__("in_size", _Payload(marker))}
    path = write_nvidia_pickle(_snapshot(tiny_sg3("r")), overrides=overrides)
    for read in (load_stylegan_pickle, inspect_pickle):
        with pytest.raises(UnsafePickleError, match=r"posix\.system|os\.system"):
            read(path)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------ downstream


@pytest.fixture(scope="module")
def sg3_pickle(tmp_path_factory, monkeypatch_module):
    from nvidia_format import write_nvidia_pickle_file

    G = tiny_sg3("t", c_dim=0, channels=1, resolution=32)
    path = tmp_path_factory.mktemp("sg3") / "network-snapshot-000010.pkl"
    return write_nvidia_pickle_file(path, _snapshot(G), monkeypatch_module)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as m:
        yield m


@pytest.mark.parametrize("space", ["w", "w+"])
def test_inversion_in_w_and_w_plus(sg3_pickle, cxr_dataset, tmp_path, space):
    out = tmp_path / f"lat-{space}.safetensors"
    args = ["gan", "invert", "--gan", f"stylegan:{sg3_pickle}", "--data", str(cxr_dataset), "--out", str(out),
            "--space", space, "--steps", "2", "--perceptual", "ms-gradient", "--split", "train"]  # fmt: skip
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    from latentwalk.invert import load_latents

    ids, ws, _ = load_latents(out)
    assert len(ids) > 0 and list(ws.shape[1:]) == [6, 8] and torch.isfinite(ws).all()  # [num_ws, w_dim] per image
    assert torch.equal(ws, ws[:, :1].expand_as(ws)) == (space == "w")  # W: one w broadcast; W+: one per layer


def test_generate_end_to_end_with_plan(sg3_pickle, chain, tmp_path):
    out = tmp_path / "synthetic"
    args = ["generate", "--gan", f"stylegan:{sg3_pickle}", "--guides", chain["guides"], "--data", chain["data"],
            "--method", "plan", "--per-label", "2", "--n-steps", "4", "--paths-per-item", "1", "--optim-steps", "2",
            "--no-endpoint-filter", "--no-label-gate", "--gate-threshold", "0", "--device", "cpu",
            "--out", str(out)]  # fmt: skip
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    rows = (out / "manifest.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 and len(list((out / "images").rglob("*.png"))) == 4
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["gan"] == "stylegan:<withheld>" and run["config"]["method"] == "plan"
