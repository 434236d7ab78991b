"""gan_zoo.rosinality: rosinality stylegan2-pytorch checkpoints are read as data onto our StyleGAN2 modules.

The fixtures are made here, by hand, without rosinality's code: a seeded tiny generator of ours is written out under
their state_dict names and shapes (``rosinality_state``, the inverse of the loader's mapping, written from reading
their ``model.py`` at commit bef283a1c24087da704d16c30abc8e36e63efa0e), saved the way their ``train.py`` and
``convert_weight.py`` save (``torch.save`` of a dict with ``g_ema``, ``latent_avg``, ``args``, ...). A 4-px
generator is also checked against a forward pass written out in the test from their layers' definitions. The
comparison with their own code (max abs difference < 1e-5) is run outside the repository; see the module docstring.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import gan_zoo
from gan_zoo.base import check_generator
from gan_zoo.rosinality import (
    FAMILY,
    RosinalityArchitecture,
    infer_architecture,
    load_rosinality,
    read_rosinality_checkpoint,
)
from gan_zoo.stylegan2 import Generator
from latentwalk.cli import EXIT_USER_ERROR, cli
from latentwalk.errors import ConfigError, DataError, MissingWeightsError, UnsafePickleError

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = dict(rtol=1e-5, atol=1e-5)  # their conv scale is folded into our weights: (w / s) * s rounds
LR_MLP = 0.01


def tiny_ours(
    resolution: int = 16, img_channels: int = 3, seed: int = 0, n_mlp: int = 2, taps: tuple = (1, 3, 3, 1)
) -> Generator:
    """Our generator with rosinality's options (skip, [1, 3, 3, 1], lr 0.01), every parameter non-trivial."""
    torch.manual_seed(seed)
    G = Generator(8, 0, 8, resolution, img_channels, mapping_kwargs={"num_layers": n_mlp, "lr_multiplier": LR_MLP},
                  synthesis_kwargs={"channel_base": 64, "channel_max": 8, "resample_filter": list(taps)})  # fmt: skip
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith(("noise_strength", ".bias")):
                p.normal_(0, 0.3)
        G.mapping.w_avg.normal_()
    return G.eval()


def rosinality_state(G: Generator) -> dict[str, torch.Tensor]:
    """``G`` under rosinality's ``Generator.state_dict()`` names and shapes (their EqualConv2d scale taken out)."""
    sd = {k: v.detach().clone() for k, v in G.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    for i in range(G.mapping.num_layers):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    out["input.input"] = sd["synthesis.b4.const"][None]
    res = G.synthesis.block_resolutions
    convs = [("b4.conv1", "conv1")] + [(f"b{r}.conv{k}", f"convs.{2 * j + k}") for j, r in enumerate(res[1:])
                                       for k in (0, 1)]  # fmt: skip
    for index, (ours, theirs) in enumerate(convs):
        weight = sd[f"synthesis.{ours}.weight"]
        out[f"{theirs}.conv.weight"] = (weight * math.sqrt(weight[0].numel()))[None]
        out[f"{theirs}.conv.modulation.weight"] = sd[f"synthesis.{ours}.affine.weight"]
        out[f"{theirs}.conv.modulation.bias"] = sd[f"synthesis.{ours}.affine.bias"]
        out[f"{theirs}.noise.weight"] = sd[f"synthesis.{ours}.noise_strength"].reshape(1)
        out[f"{theirs}.activate.bias"] = sd[f"synthesis.{ours}.bias"]
        out[f"noises.noise_{index}"] = sd[f"synthesis.{ours}.noise_const"][None, None]
        if ours.endswith("conv0"):
            out[f"{theirs}.conv.blur.kernel"] = sd[f"synthesis.{ours}.resample_filter"] * 4
    for j, r in enumerate(res):
        theirs = "to_rgb1" if r == 4 else f"to_rgbs.{j - 1}"
        out[f"{theirs}.conv.weight"] = sd[f"synthesis.b{r}.torgb.weight"][None]
        out[f"{theirs}.conv.modulation.weight"] = sd[f"synthesis.b{r}.torgb.affine.weight"]
        out[f"{theirs}.conv.modulation.bias"] = sd[f"synthesis.b{r}.torgb.affine.bias"]
        out[f"{theirs}.bias"] = sd[f"synthesis.b{r}.torgb.bias"].reshape(1, -1, 1, 1)
        if r > 4:
            out[f"{theirs}.upsample.kernel"] = sd[f"synthesis.b{r}.resample_filter"] * 4
    return out


def save_checkpoint(path: Path, G: Generator, *, latent_avg: str | None = "flat", **extra) -> Path:
    ckpt = {"g_ema": rosinality_state(G), **extra}
    if latent_avg == "flat":  # convert_weight.py: [style_dim]
        ckpt["latent_avg"] = G.mapping.w_avg.clone()
    elif latent_avg == "row":  # g_ema.mean_latent(n): [1, style_dim]
        ckpt["latent_avg"] = G.mapping.w_avg.clone()[None]
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def ours():
    return tiny_ours()


@pytest.fixture(scope="module")
def ckpt(ours, tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ros") / "050000.pt", ours)


def _z(n: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 8, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------------------
# Loading and equivalence.


def test_checkpoint_loads_with_the_contract_and_its_config(ckpt):
    G = gan_zoo.load(f"rosinality:{ckpt}")
    check_generator(G)
    assert (G.z_dim, G.c_dim, G.w_dim, G.img_resolution, G.img_channels, G.num_ws) == (8, 0, 8, 16, 3, 6)
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    assert G.source_info["family"] == FAMILY == "rosinality stylegan2"
    config = G.source_info["config"]
    assert {k: config[k] for k in ("size", "style_dim", "n_mlp", "n_latent", "key", "w_avg")} == {
        "size": 16, "style_dim": 8, "n_mlp": 2, "n_latent": 6, "key": "g_ema", "w_avg": "latent_avg"}  # fmt: skip
    assert config["channels"] == {"4": 8, "8": 8, "16": 4} and config["blur_kernel"] == [1, 3, 3, 1]
    assert config["channel_multiplier"] is None  # not their 512-channel table: a fork's


def test_outputs_equal_the_generator_the_checkpoint_was_written_from(ours, ckpt):
    G = load_rosinality(ckpt)
    z = _z()
    wplus = torch.randn(3, G.num_ws, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(G.mapping(z, None), ours.mapping(z, None), rtol=0, atol=0)
        torch.testing.assert_close(G.mapping(z, None, truncation_psi=0.6), ours.mapping(z, None, truncation_psi=0.6))
        for mode in ("const", "none"):
            ref = ours.synthesis(wplus, noise_mode=mode)
            torch.testing.assert_close(G.synthesis(wplus, noise_mode=mode), ref, **TOL)
        torch.testing.assert_close(G(z, None, truncation_psi=0.7), ours(z, None, truncation_psi=0.7), **TOL)


def _hand_forward_4px(sd: dict[str, torch.Tensor], z: torch.Tensor, noise: bool) -> torch.Tensor:
    """A 4-px rosinality generator written out from their layer definitions: PixelNorm, EqualLinear (lr 0.01, fused
    lrelu), ConstantInput, StyledConv (modulate, demodulate, noise, FusedLeakyReLU), ToRGB (no demodulation)."""
    x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
    for i in range(1, 3):
        weight, bias = sd[f"style.{i}.weight"], sd[f"style.{i}.bias"]
        x = F.leaky_relu(x @ (weight * (LR_MLP / math.sqrt(x.shape[1]))).T + bias * LR_MLP, 0.2) * math.sqrt(2)

    def style(prefix: str) -> torch.Tensor:
        weight, bias = sd[f"{prefix}.modulation.weight"], sd[f"{prefix}.modulation.bias"]
        return x @ (weight / math.sqrt(weight.shape[1])).T + bias

    images = []
    for n in range(z.shape[0]):
        weight = sd["conv1.conv.weight"][0]
        w = weight / math.sqrt(weight[0].numel()) * style("conv1.conv")[n][None, :, None, None]
        w = w * torch.rsqrt(w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
        h = F.conv2d(sd["input.input"], w, padding=1)
        if noise:
            h = h + sd["conv1.noise.weight"] * sd["noises.noise_0"]
        h = F.leaky_relu(h + sd["conv1.activate.bias"][None, :, None, None], 0.2) * math.sqrt(2)
        weight = sd["to_rgb1.conv.weight"][0]
        w = weight / math.sqrt(weight[0].numel()) * style("to_rgb1.conv")[n][None, :, None, None]
        images.append(F.conv2d(h, w) + sd["to_rgb1.bias"])
    return torch.cat(images)


def test_a_4px_generator_matches_their_layers_written_out(tmp_path):
    path = save_checkpoint(tmp_path / "g4.pt", tiny_ours(resolution=4, seed=3))
    G = load_rosinality(path)
    sd = read_rosinality_checkpoint(path)["g_ema"]
    z = _z(4)
    with torch.no_grad():
        torch.testing.assert_close(G(z, None, noise_mode="const"), _hand_forward_4px(sd, z, noise=True), **TOL)
        torch.testing.assert_close(G(z, None, noise_mode="none"), _hand_forward_4px(sd, z, noise=False), **TOL)


def test_const_noise_is_their_stored_noise_and_deterministic(ckpt):
    G = load_rosinality(ckpt)
    sd = read_rosinality_checkpoint(ckpt)["g_ema"]
    assert torch.equal(G.synthesis.b8.conv1.noise_const, sd["noises.noise_2"][0, 0])
    z = _z()
    with torch.no_grad():
        a, b = G(z, None, noise_mode="const"), G(z, None, noise_mode="const")
        assert torch.equal(a, b) and not torch.allclose(a, G(z, None, noise_mode="none"))
        r1 = G.synthesis(G.mapping(z, None), noise_mode="random", generator=torch.Generator().manual_seed(5))
        r2 = G.synthesis(G.mapping(z, None), noise_mode="random", generator=torch.Generator().manual_seed(5))
        assert torch.equal(r1, r2) and not torch.allclose(r1, a)


@pytest.mark.parametrize("shape", ["flat", "row"])
def test_truncation_moves_towards_latent_avg(ours, tmp_path, shape):
    G = load_rosinality(save_checkpoint(tmp_path / "g.pt", ours, latent_avg=shape))
    assert torch.equal(G.mapping.w_avg, ours.mapping.w_avg)
    z = _z()
    with torch.no_grad():
        ws0 = G.mapping(z, None, truncation_psi=0)
        assert torch.allclose(ws0, ours.mapping.w_avg.expand_as(ws0))
        far = (G.mapping(z, None) - G.mapping.w_avg).norm(dim=-1)
        near = (G.mapping(z, None, truncation_psi=0.5) - G.mapping.w_avg).norm(dim=-1)
        torch.testing.assert_close(near, far * 0.5)


def test_without_latent_avg_w_avg_is_the_seeded_mean_of_mapped_z(ours, tmp_path):
    path = save_checkpoint(tmp_path / "train.pt", ours, latent_avg=None)
    G = load_rosinality(path, w_avg_samples=512)
    z = torch.randn(512, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(G.mapping.w_avg, ours.mapping(z, None)[:, 0].mean(0))
    assert torch.equal(load_rosinality(path, w_avg_samples=512).mapping.w_avg, G.mapping.w_avg)
    assert G.source_info["config"]["w_avg"] == "mean of 512 mapped z (seed 0)"


def test_a_training_checkpoint_with_args_and_optimiser_state_loads_g_ema_or_g(ours, tmp_path):
    other = tiny_ours(seed=7)
    opt = torch.optim.Adam(other.parameters(), lr=0.002, betas=(0.0, 0.99))
    other(_z(2), None).square().mean().backward()
    opt.step()
    args = argparse.Namespace(size=16, latent=8, n_mlp=2, channel_multiplier=2, path="lmdb", mixing=0.9, ckpt=None)
    path = save_checkpoint(tmp_path / "010000.pt", ours, latent_avg=None, g=rosinality_state(other),
                           d={"convs.0.0.weight": torch.ones(2)}, g_optim=opt.state_dict(),
                           d_optim=opt.state_dict(), args=args, ada_aug_p=0.25)  # fmt: skip
    assert isinstance(read_rosinality_checkpoint(path)["args"], argparse.Namespace)
    z = _z()
    with torch.no_grad():
        torch.testing.assert_close(load_rosinality(path).synthesis(ours.mapping(z, None)), ours(z, None), **TOL)
        g = load_rosinality(path, key="g")
        torch.testing.assert_close(g.synthesis(other.mapping(z, None)), other(z, None), **TOL)
    assert g.source_info["config"]["entries"] == ["ada_aug_p", "args", "d", "d_optim", "g", "g_ema", "g_optim"]


def test_a_fork_that_blurs_with_one_other_kernel_everywhere_loads(tmp_path):
    ours = tiny_ours(taps=(1, 2, 1))
    G = load_rosinality(save_checkpoint(tmp_path / "blur.pt", ours))
    assert G.source_info["config"]["blur_kernel"] == [0.25, 0.5, 0.25]
    z = _z()
    with torch.no_grad():
        torch.testing.assert_close(G(z, None), ours(z, None), **TOL)


def test_a_one_channel_fork_loads(tmp_path):
    G = load_rosinality(save_checkpoint(tmp_path / "gray.pt", tiny_ours(img_channels=1, n_mlp=1)))
    assert G.img_channels == 1 and G.mapping.num_layers == 1
    check_generator(G)


# ---------------------------------------------------------------------------------------------------------------
# CLI: convert and info.


def test_gan_convert_writes_a_lite_checkpoint_with_identical_outputs(ckpt, tmp_path):
    runner = CliRunner()
    done = runner.invoke(cli, ["gan", "convert", str(ckpt), "--out", str(tmp_path / "conv")])
    assert done.exit_code == 0, done.output
    G, converted = load_rosinality(ckpt), gan_zoo.load(f"lite:{tmp_path / 'conv'}")
    z = _z()
    with torch.no_grad():
        assert torch.equal(converted(z, None), G(z, None))
        assert torch.equal(converted(z, None, truncation_psi=0.5), G(z, None, truncation_psi=0.5))
    meta = json.loads((tmp_path / "conv" / "generator.json").read_text())
    prov = meta["provenance"]
    assert prov["source"] == "rosinality stylegan2-pytorch checkpoint" and prov["key"] == "g_ema"
    assert prov["rosinality"]["size"] == 16 and prov["source_sha256"] and str(tmp_path) not in json.dumps(meta)


def test_gan_info_shows_the_family_and_config(ckpt):
    runner = CliRunner()
    done = runner.invoke(cli, ["gan", "info", f"rosinality:{ckpt}", "--json"])
    assert done.exit_code == 0, done.output
    info = json.loads(done.output)
    assert info["family"] == "rosinality stylegan2" and info["config"]["n_mlp"] == 2 and info["num_ws"] == 6
    text = runner.invoke(cli, ["gan", "info", f"rosinality:{ckpt}"]).output
    assert "\nfamily " in text and " rosinality stylegan2\n" in text and "\nconfig.size " in text


# ---------------------------------------------------------------------------------------------------------------
# Refusals: one sentence naming what is wrong.


def _broken(tmp_path: Path, ours: Generator, edit) -> Path:
    sd = rosinality_state(ours)
    ckpt = {"g_ema": sd, "latent_avg": ours.mapping.w_avg.clone()}
    edit(ckpt, sd)
    torch.save(ckpt, tmp_path / "bad.pt")
    return tmp_path / "bad.pt"


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (lambda c, s: c.pop("g_ema"), DataError, "has no 'g_ema' entry (it holds ['latent_avg'])"),
        (lambda c, s: s.pop("noises.noise_3"), DataError, "missing keys ['noises.noise_3']"),
        (lambda c, s: s.update({"extra.weight": torch.ones(1)}), DataError, "unexpected keys ['extra.weight']"),
        (lambda c, s: s.update({"convs.1.activate.bias": torch.ones(5)}), DataError,
         "wrong shape (file vs architecture): ['convs.1.activate.bias [5] vs [8]']"),
        (lambda c, s: s.update({"to_rgb1.bias": torch.ones(3, dtype=torch.long)}), DataError, "torch.int64"),
        (lambda c, s: s.update({"style.1.bias": "text"}), DataError, "style.1.bias is a str, expected"),
        (lambda c, s: s.pop("style.1.weight"), DataError, "mapping layers style.N must be numbered 1..n_mlp"),
        (lambda c, s: s.pop("input.input"), DataError, "lacks input.input"),
        (lambda c, s: c.update(latent_avg=torch.ones(3, 8)), DataError, "['latent_avg'] has shape [3, 8]"),
        (lambda c, s: c.update(latent_avg=torch.full([8], math.nan)), DataError, "NaN or infinite"),
        (lambda c, s: s.update({"convs.2.conv.blur.kernel": torch.ones(4, 4)}), ConfigError, "differs from"),
    ],
)  # fmt: skip
def test_malformed_checkpoints_are_refused_with_one_line(ours, tmp_path, edit, error, message):
    with pytest.raises(error) as err:
        load_rosinality(_broken(tmp_path, ours, edit))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_channel_layout_our_generator_cannot_express_is_named():
    arch = RosinalityArchitecture(16, 8, 2, 3, {4: 8, 8: 4, 16: 8}, (0.125, 0.375, 0.375, 0.125))
    with pytest.raises(ConfigError, match=r"x.pt: channels per resolution \{4: 8, 8: 4, 16: 8\} do not follow"):
        arch.generator_kwargs("x.pt")
    assert RosinalityArchitecture(64, 8, 2, 3, {4: 512, 8: 512, 16: 512, 32: 512, 64: 512}, ()).channel_multiplier == 2


def test_absurd_resolution_is_refused_before_building(tmp_path):
    sd = {f"to_rgbs.{i}.conv.weight": torch.zeros(1, 3, 1, 1, 1) for i in range(14)}
    sd["style.1.weight"] = torch.zeros(8, 8)
    with pytest.raises(ConfigError, match="a resolution above 8192 px; refused"):
        infer_architecture(sd, "x.pt")


class _Payload:
    """Pickles as ``os.system(...)``: creating the marker file would prove the file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_asking_for_code_is_refused_and_never_run(ours, tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": rosinality_state(ours), "args": _Payload(marker)}, path)
    with pytest.raises(UnsafePickleError, match=r"asks for (posix|nt)\.system, which a stylegan2-pytorch checkpoint"):
        gan_zoo.load(f"rosinality:{path}")
    assert not marker.exists()
    done = CliRunner().invoke(cli, ["gan", "convert", str(path), "--out", str(tmp_path / "conv")])
    assert done.exit_code == EXIT_USER_ERROR and not marker.exists() and not (tmp_path / "conv").exists()
    assert done.stderr.strip().startswith("Error: ") and "\n" not in done.stderr.strip()


def test_unreadable_files_are_user_errors(tmp_path):
    with pytest.raises(MissingWeightsError, match="rosinality checkpoint not found"):
        gan_zoo.load(f"rosinality:{tmp_path / 'absent.pt'}")
    cases = {
        "empty.pt": (b"", "is empty (0 bytes)"),
        "lfs.pt": (b"version https://git-lfs.github.com/spec/v1\noid sha256:0\n", "git-lfs pointer"),
        "junk.pt": (b"not a checkpoint at all", "is not a readable stylegan2-pytorch checkpoint"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError) as err:
            load_rosinality(tmp_path / name)
        assert message in str(err.value)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(DataError, match="holds a list, expected the dict stylegan2-pytorch saves"):
        load_rosinality(tmp_path / "list.pt")
    with pytest.raises(ConfigError, match="key must be one of"):
        load_rosinality(tmp_path / "list.pt", key="d")


def test_a_storage_larger_than_the_file_is_refused_before_allocating(tmp_path):
    import hostile_files as h

    (tmp_path / "bomb.pt").write_bytes(h.legacy_storage_blob(400_000_000))
    with pytest.raises(DataError, match="declares 1,600,000,000 bytes of tensors but holds"):
        load_rosinality(tmp_path / "bomb.pt")


# ---------------------------------------------------------------------------------------------------------------
# Downstream: inversion and PLAN paths run on a rosinality generator.


def test_inversion_and_plan_paths_run_on_it(ckpt):
    from gan_zoo.invert import InvertConfig, invert
    from latentwalk.paths import PlanConfig, linear_paths, plan_paths, render_paths

    G = gan_zoo.load(f"rosinality:{ckpt}")
    with torch.no_grad():
        targets = G(_z(2, seed=4), None).clamp(-1, 1)
    result = invert(G, targets, InvertConfig(steps=3, batch=2, perceptual="none", w_avg_samples=64))
    assert result.ws.shape == (2, G.num_ws, 8) and torch.isfinite(result.mse).all()

    torch.manual_seed(0)
    id_net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4)).eval()
    class_net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 2)).eval()
    a, b = G.mapping(_z(2, seed=5), None)[:, 0], G.mapping(_z(2, seed=6), None)[:, 0]
    walk = plan_paths(G, a, b, [0, 1], id_net, class_net, PlanConfig(n_steps=5, optim_steps=2))
    assert walk.ws.shape == (2, 5, 8) and not torch.allclose(walk.ws, linear_paths(a, b, 5))
    images = render_paths(G, walk.ws)
    assert images.shape == (2, 5, 3, 16, 16) and images.abs().max() <= 1
