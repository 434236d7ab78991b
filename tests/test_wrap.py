"""gan_zoo.wrap and gan_zoo.base: any z/w -> image module behind NVIDIA's generator contract, checked by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gan_zoo
from gan_zoo.base import check_generator, describe, is_generator_like, prepare
from gan_zoo.stylegan2 import Generator
from gan_zoo.wrapping import WrappedGenerator, wrap
from latentwalk.errors import ConfigError


class Decoder(nn.Module):
    """``z [N, z_dim]`` (+ label ``[N, c_dim]``) -> images ``[N, channels, res, res]`` in [0, 1]."""

    def __init__(self, z_dim: int = 8, channels: int = 1, res: int = 8, c_dim: int = 0, scale: float = 1.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.shape = (channels, res, res)
        self.scale = scale
        self.fc = nn.Linear(z_dim + c_dim, channels * res * res)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = z if c is None else torch.cat([z, c], dim=1)
        return torch.sigmoid(self.fc(x)).view(-1, *self.shape) * self.scale


class KeywordDecoder(Decoder):
    def forward(self, z: torch.Tensor, *, y: torch.Tensor) -> torch.Tensor:  # label only by keyword
        return super().forward(z, y)


def _z(n: int = 4, dim: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def _tiny_generator() -> Generator:
    torch.manual_seed(0)
    return Generator(
        z_dim=8,
        c_dim=0,
        w_dim=8,
        img_resolution=16,
        img_channels=1,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={"channel_base": 64, "channel_max": 8},
    ).eval()


def test_wrapped_zero_one_module_gives_contract_shapes_and_images_in_minus_one_one():
    module = Decoder()
    G = wrap(module, latent="z", z_dim=8, output_range=(0, 1))
    assert isinstance(G, WrappedGenerator) and is_generator_like(G)
    assert (G.z_dim, G.c_dim, G.w_dim, G.num_ws, G.mapping.num_ws) == (8, 0, 8, 1, 1)
    assert (G.img_resolution, G.img_channels) == (8, 1)  # read from one forward
    z = _z()
    with torch.no_grad():
        ws = G.mapping(z, None)
        img = G(z, None)
        assert ws.shape == (4, 1, 8) and torch.equal(ws[:, 0], z)
        assert img.shape == (4, 1, 8, 8) and img.dtype == torch.float32
        assert img.min() >= -1 and img.max() <= 1
        torch.testing.assert_close(img, module(z) * 2 - 1)
        torch.testing.assert_close(G.synthesis(ws, noise_mode="none"), img)


def test_minus_one_one_output_is_used_as_is_and_noise_mode_is_ignored():
    module = Decoder()
    G = wrap(module, z_dim=8)  # default output_range (-1, 1)
    z = _z()
    with torch.no_grad():
        torch.testing.assert_close(G(z, None), module(z))
        assert torch.equal(G(z, None, noise_mode="random"), G(z, None, noise_mode="const"))
    with pytest.raises(ConfigError, match="noise_mode must be one of"):
        G(z, None, noise_mode="fixed")


def test_truncation_psi_zero_gives_the_w_avg_image():
    G = wrap(Decoder(), z_dim=8, output_range=(0, 1))
    assert torch.equal(G.mapping.w_avg, torch.zeros(8))  # the exact mean of z ~ N(0, I)
    z = _z()
    with torch.no_grad():
        avg_image = G.synthesis(G.mapping.w_avg.expand(1, 1, 8))
        truncated = G(z, None, truncation_psi=0)
        assert torch.allclose(truncated, avg_image.expand_as(truncated))
        half = G.mapping(z, None, truncation_psi=0.5)
        torch.testing.assert_close(half[:, 0], 0.5 * z)
        assert torch.equal(G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=0)[:, 0], z)


@pytest.mark.parametrize(("module", "label_arg"), [(Decoder(c_dim=3), None), (KeywordDecoder(c_dim=3), "y")])
def test_labels_reach_the_module_and_survive_truncation(module, label_arg):
    G = wrap(module, z_dim=8, c_dim=3, label_arg=label_arg, output_range=(0, 1))
    assert (G.c_dim, G.w_dim) == (3, 11)  # the one-hot label rides in w
    z, c = _z(3), torch.eye(3)
    with torch.no_grad():
        torch.testing.assert_close(G(z, c), module(z, c) * 2 - 1 if label_arg is None else module(z, y=c) * 2 - 1)
        ws0 = G.mapping(z, c, truncation_psi=0)
        assert torch.equal(ws0[:, 0, 8:], c) and torch.equal(ws0[:, 0, :8], torch.zeros(3, 8))
    torch.testing.assert_close(G.mapping.w_avg[8:], torch.full([3], 1 / 3))
    with pytest.raises(ConfigError, match=r"conditional: c must have shape \[3, 3\], got None"):
        G(z, None)


def test_latent_w_with_a_mapping_estimates_w_avg_from_the_mapping():
    torch.manual_seed(0)
    mapping = nn.Linear(4, 8)
    with torch.no_grad():
        mapping.bias.copy_(torch.arange(8.0))
    module = Decoder(z_dim=8)
    G = wrap(module, latent="w", w_dim=8, z_dim=4, mapping=mapping, output_range=(0, 1))
    assert (G.z_dim, G.w_dim, G.latent) == (4, 8, "w")
    torch.testing.assert_close(G.mapping.w_avg, torch.arange(8.0), atol=0.05, rtol=0)  # E[Wz + b] = b
    z = _z(dim=4)
    with torch.no_grad():
        torch.testing.assert_close(G(z, None), module(mapping(z)) * 2 - 1)
    given = wrap(module, latent="w", w_dim=8, z_dim=4, mapping=mapping, w_avg=torch.ones(8))
    assert torch.equal(given.mapping.w_avg, torch.ones(8))


def test_latent_w_without_a_mapping_feeds_z_as_w():
    G = wrap(Decoder(z_dim=8), latent="w", w_dim=8)
    assert (G.z_dim, G.w_dim) == (8, 8) and torch.equal(G.mapping.w_avg, torch.zeros(8))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "latent='z' needs z_dim"),
        ({"z_dim": 8, "w_dim": 4}, "w_dim must equal z_dim=8, got 4"),
        ({"latent": "w"}, "latent='w' needs w_dim"),
        ({"latent": "w", "w_dim": 8, "mapping": nn.Identity()}, "needs z_dim"),
        ({"z_dim": 8, "mapping": nn.Identity()}, "mapping is only used with latent='w'"),
        ({"latent": "x", "z_dim": 8}, "latent must be 'z' or 'w'"),
        ({"z_dim": 8, "output_range": (0, 255)}, r"output_range must be \(-1, 1\) or \(0, 1\)"),
        ({"z_dim": 8, "label_arg": "c"}, "label_arg='c' given but c_dim=0"),
        ({"z_dim": 8, "c_dim": -1}, "c_dim must be an int >= 0"),
    ],
)
def test_wrap_rejects_inconsistent_options(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        wrap(Decoder(), **kwargs)


def test_wrap_names_the_mismatching_shape():
    expected = r"G.synthesis returned \[2, 3, 8, 8\], expected \[2, 1, 16, 16\] \(img_channels=1, img_resolution=16\)"
    with pytest.raises(ConfigError, match=expected):
        wrap(Decoder(channels=3), z_dim=8, img_channels=1, img_resolution=16)


def test_wrap_says_how_it_called_a_failing_module():
    with pytest.raises(ConfigError, match=r"failed when called as module\(latent\) with latent \[2, 8\]"):
        wrap(Decoder(c_dim=3), z_dim=8)  # forgot c_dim: the module's Linear wants 11 inputs


def test_wrap_rejects_non_image_outputs():
    class Flat(nn.Module):
        def forward(self, z):
            return z.repeat(1, 4)

    with pytest.raises(ConfigError, match=r"returned \[2, 32\] for 2 latents, expected square images"):
        wrap(Flat(), z_dim=8)


def test_wrap_rejects_outputs_on_a_zero_255_scale():
    with pytest.raises(ConfigError, match=r"expected images in \[-1, 1\]"):
        wrap(Decoder(scale=255.0), z_dim=8)


def test_check_leaves_batchnorm_statistics_and_training_flags_untouched():
    module = nn.Sequential(nn.Linear(8, 64), nn.BatchNorm1d(64), nn.Unflatten(1, (1, 8, 8)), nn.Tanh())
    module.train()
    G = wrap(module, z_dim=8)
    assert module.training and module[1].training
    assert torch.equal(module[1].running_mean, torch.zeros(64)) and module[1].num_batches_tracked == 0
    assert not prepare(G).training and not any(p.requires_grad for p in G.parameters())


def test_our_generator_passes_check_generator():
    G = _tiny_generator()
    check_generator(G)
    assert is_generator_like(G) and isinstance(G, gan_zoo.GeneratorLike)


def test_check_generator_names_a_missing_attribute():
    G = wrap(Decoder(), z_dim=8)
    del G.img_channels
    with pytest.raises(ConfigError, match="has no attribute 'img_channels'"):
        check_generator(G)


def test_check_generator_names_wrong_declared_channels():
    G = _tiny_generator()
    G.img_channels = 3
    with pytest.raises(ConfigError, match=r"returned \[2, 1, 16, 16\], expected \[2, 3, 16, 16\] \(img_channels=3"):
        check_generator(G)


def test_check_generator_names_num_ws_and_w_avg_mismatches():
    G = wrap(Decoder(), z_dim=8)
    G.num_ws = 2
    with pytest.raises(ConfigError, match=r"G.mapping.num_ws is 1, expected G.num_ws = 2"):
        check_generator(G)
    G = wrap(Decoder(), z_dim=8)
    G.mapping.w_avg = torch.zeros(5)
    with pytest.raises(ConfigError, match=r"G.mapping.w_avg has shape \[5\], expected \[8\]"):
        check_generator(G)


def test_check_generator_catches_a_truncation_that_ignores_w_avg():
    G = _tiny_generator()
    real_mapping = G.mapping.forward
    G.mapping.forward = lambda z, c, truncation_psi=1, truncation_cutoff=None: real_mapping(z, c)
    with pytest.raises(ConfigError, match="truncation_psi=0"):
        check_generator(G)


def test_describe_reports_the_contract_and_parameter_count():
    G = wrap(Decoder(), z_dim=8)
    info = describe(G)
    assert info["z_dim"] == 8 and info["num_ws"] == 1 and info["img_resolution"] == 8 and info["img_channels"] == 1
    assert info["num_parameters"] == 8 * 64 + 64 and info["device"] == "cpu"
    assert info["class"] == "gan_zoo.wrapping.WrappedGenerator"


def test_package_attribute_wrap_is_the_function_even_after_importing_the_submodule():
    import gan_zoo.wrapping  # noqa: F401

    assert gan_zoo.wrap is wrap and callable(gan_zoo.wrap)
    assert set(gan_zoo.__all__) >= {"load", "wrap", "check_generator", "GeneratorLike", "describe", "SPECS"}
