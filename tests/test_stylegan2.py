"""gan_zoo.stylegan2 (generator contract, noise, truncation, training) and gan_zoo.checkpoint (safetensors + JSON)."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
import torch.nn.functional as F

from gan_zoo.checkpoint import checkpoint_paths, load_generator, read_generator_config, save_generator
from gan_zoo.discriminator import Discriminator
from gan_zoo.ops import downsample2d, setup_filter, upsample2d
from gan_zoo.stylegan2 import Generator
from latentwalk.errors import ConfigError, DataError, MissingWeightsError


def tiny_generator(
    resolution: int = 16, channels: int = 1, architecture: str = "skip", c_dim: int = 0, **synthesis
) -> Generator:
    torch.manual_seed(0)
    G = Generator(
        z_dim=8,
        c_dim=c_dim,
        w_dim=8,
        img_resolution=resolution,
        img_channels=channels,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={"channel_base": 4 * resolution, "channel_max": 8, "architecture": architecture, **synthesis},
    )
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
        G.mapping.w_avg.normal_()
    return G.eval()


def latents(n: int = 3, dim: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
@pytest.mark.parametrize(("resolution", "channels"), [(16, 1), (32, 3)])
def test_generator_follows_the_nvidia_contract(architecture, resolution, channels):
    G = tiny_generator(resolution, channels, architecture)
    assert (G.z_dim, G.c_dim, G.w_dim, G.img_resolution, G.img_channels) == (8, 0, 8, resolution, channels)
    expected_num_ws = 2 * resolution.bit_length() - 4  # 2 * log2(R) - 2
    assert G.num_ws == G.mapping.num_ws == G.synthesis.num_ws == expected_num_ws
    assert G.mapping.w_avg.shape == (8,)
    z = latents()
    with torch.no_grad():
        ws = G.mapping(z, None, truncation_psi=1, truncation_cutoff=None)
        img = G.synthesis(ws, noise_mode="const")
        assert ws.shape == (3, G.num_ws, 8)
        assert img.shape == (3, channels, resolution, resolution) and img.dtype == torch.float32
        assert torch.equal(G(z, None, truncation_psi=1, truncation_cutoff=None, noise_mode="const"), img)
    assert [n for n, _ in G.synthesis.named_children()] == [f"b{2**i}" for i in range(2, resolution.bit_length())]


def test_conditional_generator_needs_labels():
    G = tiny_generator(c_dim=3)
    c = torch.eye(3)
    with torch.no_grad():
        assert G(latents(), c).shape == (3, 1, 16, 16)
        assert not torch.equal(G(latents(), c), G(latents(), c.roll(1, dims=0)))
    with pytest.raises(ConfigError, match="conditional"):
        G(latents(), None)


def test_truncation_psi_zero_gives_w_avg():
    G = tiny_generator()
    with torch.no_grad():
        ws = G.mapping(latents(), None, truncation_psi=0)
    assert torch.equal(ws, G.mapping.w_avg.expand_as(ws))


def test_truncation_cutoff_only_touches_the_first_layers():
    G = tiny_generator()
    with torch.no_grad():
        full = G.mapping(latents(), None)
        cut = G.mapping(latents(), None, truncation_psi=0, truncation_cutoff=2)
    assert torch.equal(cut[:, :2], G.mapping.w_avg.expand(3, 2, 8))
    assert torch.equal(cut[:, 2:], full[:, 2:])


def test_w_avg_moves_only_with_update_emas():
    G = tiny_generator().train()
    before = G.mapping.w_avg.clone()
    G.mapping(latents(), None)
    assert torch.equal(G.mapping.w_avg, before)
    G.mapping(latents(), None, update_emas=True)
    assert not torch.equal(G.mapping.w_avg, before)


def test_const_noise_is_deterministic_and_random_noise_follows_the_generator():
    G = tiny_generator()
    ws = G.mapping(latents(), None).detach()
    with torch.no_grad():
        assert torch.equal(G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const"))
        r1 = G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(5))
        r2 = G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(5))
        r3 = G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(6))
        none = G.synthesis(ws, noise_mode="none")
    assert torch.equal(r1, r2)
    assert not torch.equal(r1, r3)
    assert not torch.allclose(none, r1)
    with pytest.raises(ConfigError, match="noise_mode"):
        G.synthesis(ws, noise_mode="fixed")


def test_fused_and_unfused_modulated_convolutions_agree():
    G = tiny_generator(architecture="resnet", channels=3)
    ws = G.mapping(latents(), None).detach()
    with torch.no_grad():
        fused = G.synthesis(ws, fused_modconv=True)
        unfused = G.synthesis(ws, fused_modconv=False)
    torch.testing.assert_close(fused, unfused, rtol=1e-5, atol=1e-5)


def test_fp16_blocks_stay_float32_off_cuda():
    G = tiny_generator(num_fp16_res=2)
    ref = Generator(**dict(G.init_kwargs, synthesis_kwargs=dict(G.init_kwargs["synthesis_kwargs"], num_fp16_res=0)))
    ref.load_state_dict(G.state_dict())
    assert G.synthesis.b16.use_fp16 and G.synthesis.b8.use_fp16 and not G.synthesis.b4.use_fp16
    with torch.no_grad():
        assert torch.equal(G(latents(), None), ref.eval()(latents(), None))


def test_fir_resampling_keeps_a_constant_image_constant():
    f = setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and torch.isclose(f.sum(), torch.tensor(1.0))
    ones = torch.ones(1, 2, 8, 8)
    up, down = upsample2d(ones, f), downsample2d(ones, f)
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.ones(1, 2, 12, 12))
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.ones(1, 2, 2, 2))


def test_unknown_options_are_named():
    with pytest.raises(ConfigError, match="chanel_base"):
        Generator(8, 0, 8, 16, 1, synthesis_kwargs={"chanel_base": 64})
    with pytest.raises(ConfigError, match="architecture"):
        Generator(8, 0, 8, 16, 1, synthesis_kwargs={"architecture": "unet"})
    with pytest.raises(ConfigError, match="power of two"):
        Generator(8, 0, 8, 24, 1)
    with pytest.raises(ConfigError, match=r"z must have shape \[\*, 8\]"):
        tiny_generator()(torch.zeros(2, 7), None)


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
def test_discriminator_gives_one_logit_per_image(architecture):
    torch.manual_seed(0)
    D = Discriminator(c_dim=2, img_resolution=16, img_channels=3, architecture=architecture, channel_base=64,
                      channel_max=8)  # fmt: skip
    logits = D(torch.randn(4, 3, 16, 16), torch.eye(2)[[0, 1, 0, 1]])
    assert logits.shape == (4, 1) and logits.dtype == torch.float32


def test_generator_trains_one_step():
    G = tiny_generator(architecture="skip").train().requires_grad_(True)
    torch.manual_seed(0)
    D = Discriminator(c_dim=0, img_resolution=16, img_channels=1, channel_base=64, channel_max=8)
    opt = torch.optim.Adam(G.parameters(), lr=1e-2)
    before = {n: p.detach().clone() for n, p in G.named_parameters()}
    img = G(latents(4), None, noise_mode="random", generator=torch.Generator().manual_seed(0))
    loss = F.softplus(-D(img, None)).mean()
    loss.backward()
    no_grad = [n for n, p in G.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []
    opt.step()
    assert all(not torch.equal(p, before[n]) for n, p in G.named_parameters())


def test_checkpoint_round_trip_is_bit_identical(tmp_path):
    G = tiny_generator(architecture="resnet", channels=3, conv_clamp=256)
    weights, config = save_generator(G, tmp_path / "g", {"trained_on": "phantom", "seed": 3})
    assert (weights.name, config.name) == ("g.safetensors", "g.json")
    loaded = load_generator(tmp_path / "g.safetensors")
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    with torch.no_grad():
        assert torch.equal(loaded(latents(), None), G(latents(), None))
    meta = read_generator_config(config)
    assert meta["architecture"] == G.init_kwargs and meta["provenance"] == {"trained_on": "phantom", "seed": 3}
    assert meta["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_checkpoint_files_are_byte_identical_for_the_same_generator(tmp_path):
    G = tiny_generator()
    first = save_generator(G, tmp_path / "a", {"seed": 1})
    again = save_generator(load_generator(first[0]), tmp_path / "b", {"seed": 1})
    assert first[0].read_bytes() == again[0].read_bytes()
    assert first[1].read_text().replace('"a.safetensors"', '"b.safetensors"') == again[1].read_text()


def test_checkpoint_in_a_folder_uses_generator_as_name(tmp_path):
    save_generator(tiny_generator(), tmp_path, {})
    assert checkpoint_paths(tmp_path) == (tmp_path / "generator.safetensors", tmp_path / "generator.json")
    assert isinstance(load_generator(tmp_path), Generator)


def test_checkpoint_lists_missing_and_unexpected_keys(tmp_path):
    from safetensors.torch import load_file, save_file

    weights, config = save_generator(tiny_generator(), tmp_path / "g", {})
    state = load_file(weights)
    del state["synthesis.b16.torgb.bias"]
    state["synthesis.b16.extra"] = torch.zeros(1)
    save_file(state, weights)
    meta = json.loads(config.read_text())
    meta["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    config.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"missing keys \['synthesis\.b16\.torgb\.bias'\].*\['synthesis\.b16\.extra'\]"):
        load_generator(weights)


def test_checkpoint_reports_missing_changed_or_foreign_files(tmp_path):
    weights, config = save_generator(tiny_generator(), tmp_path / "g", {})
    weights.write_bytes(weights.read_bytes()[:-8])
    with pytest.raises(DataError, match="checksum"):
        load_generator(weights)
    weights.unlink()
    with pytest.raises(MissingWeightsError, match=r"g\.safetensors"):
        load_generator(config)
    config.unlink()
    with pytest.raises(MissingWeightsError, match=r"g\.json"):
        load_generator(tmp_path / "g")
    with pytest.raises(ConfigError, match="JSON"):
        save_generator(tiny_generator(), tmp_path / "h", {"when": object()})
    assert not list(tmp_path.glob("h.*"))
