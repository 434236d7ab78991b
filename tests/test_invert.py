"""gan_zoo.invert: batched projection into W/W+, its schedule, offline perceptual term, resumable dataset runs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from gan_zoo import invert as inv
from gan_zoo.invert import (
    InversionResult,
    InvertConfig,
    invert,
    lr_at,
    ms_gradient_distance,
    noise_at,
)
from gan_zoo.stylegan2 import Generator
from latentwalk.errors import ConfigError, DataError, MissingWeightsError
from latentwalk.invert import invert_dataset, load_latents

ROUNDING = 5e-4  # float32 rounding differences by batch size, after a dozen Adam steps
FAST = dict(steps=12, w_avg_samples=500, perceptual="ms-gradient", init_noise=0.5)


def tiny_generator(channels: int = 1, c_dim: int = 0) -> Generator:
    torch.manual_seed(0)
    G = Generator(
        z_dim=16,
        c_dim=c_dim,
        w_dim=16,
        img_resolution=16,
        img_channels=channels,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={"channel_base": 256, "channel_max": 32},
    )
    return G.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def G():
    return tiny_generator()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _no_lpips_weights(tmp_path, monkeypatch):
    """No weights dir and an empty torch cache: "auto" must fall back, never download."""
    monkeypatch.setenv("LATENTWALK_WEIGHTS_DIR", str(tmp_path / "no_weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def images_from_known_w(G: Generator, n: int = 4, seed: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ws = G.mapping(z, None)  # [n, num_ws, w_dim]
        return G.synthesis(ws, noise_mode="const").clamp(-1, 1), ws


def random_images(n: int = 5, channels: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, channels, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ---------------------------------------------------------------------------------------------------------------
# Config and schedule.


def test_config_defaults_and_round_trip():
    cfg = InvertConfig()
    assert (cfg.space, cfg.steps, cfg.lr, cfg.batch, cfg.perceptual) == ("w", 300, 0.1, 32, "auto")
    assert InvertConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match=r"unknown inversion option\(s\) \['stepz'\]"):
        InvertConfig.from_dict({"stepz": 3})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"space": "s"}, 'unknown latent space "s"'),
        ({"perceptual": "vgg"}, 'unknown perceptual loss "vgg"'),
        ({"steps": 0}, "steps must be >= 1"),
        ({"steps": 2.5}, "steps must be an integer"),
        ({"batch": True}, "batch must be an integer"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"lr": float("nan")}, "lr must be a finite number"),
        ({"lr_rampdown": 1.5}, "lr_rampdown must be a fraction"),
        ({"noise_ramp": 0.0}, "noise_ramp must be a fraction"),
        ({"prior_weight": -1.0}, "prior_weight must be >= 0"),
        ({"init_noise": -0.1}, "init_noise must be >= 0"),
        ({"w_avg_samples": 1}, "w_avg_samples must be >= 2"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"pixel_weight": 0.0, "perceptual": "none"}, "nothing to fit"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        InvertConfig(**kwargs)


def test_schedule_ramps_up_holds_and_cosine_ramps_down_like_nvidia():
    cfg = InvertConfig(steps=100, lr=0.1, lr_rampup=0.05, lr_rampdown=0.25)
    assert lr_at(0, cfg) == 0.0
    assert lr_at(2, cfg) == pytest.approx(0.1 * 2 / 5)
    assert lr_at(50, cfg) == pytest.approx(0.1)
    assert lr_at(75, cfg) == pytest.approx(0.1)
    assert lr_at(90, cfg) == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(0.4 * math.pi)))
    assert lr_at(99, cfg) < 0.001
    assert noise_at(0, cfg) == pytest.approx(cfg.init_noise)
    assert noise_at(30, cfg) == pytest.approx(cfg.init_noise * (1 - 0.3 / 0.75) ** 2)
    assert noise_at(75, cfg) == 0.0 and noise_at(99, cfg) == 0.0


def test_ms_gradient_distance_is_per_image_and_zero_only_for_equal_images():
    x, y = random_images(3), random_images(3, seed=2)
    d = ms_gradient_distance(x, y)
    assert d.shape == (3,) and (d > 0).all()
    assert torch.equal(ms_gradient_distance(x, x), torch.zeros(3))
    assert torch.allclose(ms_gradient_distance(x[1:2], y[1:2]), d[1:2])  # no mixing across the batch
    shifted = x + 0.5  # a constant offset has no gradient, only the pixel terms see it
    assert torch.allclose(ms_gradient_distance(shifted, x), torch.full((3,), 0.25))


# ---------------------------------------------------------------------------------------------------------------
# Projection.


def test_inverting_images_generated_from_known_w_cuts_the_error_substantially(G):
    targets, _ = images_from_known_w(G)
    w_mean, _ = inv.w_statistics(G, 2000, 0)
    with torch.no_grad():
        start = G.synthesis(w_mean.expand(4, G.num_ws, -1), noise_mode="const").clamp(-1, 1)
    start_mse = (start - targets).square().mean((1, 2, 3))
    res = invert(G, targets, InvertConfig(steps=100, w_avg_samples=2000, perceptual="ms-gradient"))
    assert isinstance(res, InversionResult)
    assert res.ws.shape == (4, G.num_ws, G.w_dim) and res.mse.shape == res.perceptual.shape == (4,)
    assert res.mse.mean() < 0.2 * start_mse.mean()
    assert (res.mse < 0.5 * start_mse).all()
    with torch.no_grad():  # the reported error is the error of the returned latents
        again = G.synthesis(res.ws, noise_mode="const").clamp(-1, 1)
    assert torch.allclose((again - targets).square().mean((1, 2, 3)), res.mse, atol=1e-6)


@pytest.mark.parametrize("space", ["w", "w+", "z"])
def test_batched_inversion_equals_one_image_at_a_time(G, space):
    x = random_images(5)
    cfg = InvertConfig(space=space, batch=5, **FAST)
    batched = invert(G, x, cfg)
    single = [invert(G, x[i : i + 1], cfg, keys=[i]) for i in range(5)]
    # Equal up to float32 rounding: convolutions round differently by batch size (~1e-6 in the images) and Adam's
    # normalised steps carry that into the latents (measured <= 6e-5 after 12 steps). Any coupling between images
    # (shared noise, a batch statistic in the loss) moves latents by ~0.1 or more.
    torch.testing.assert_close(batched.ws, torch.cat([r.ws for r in single]), atol=ROUNDING, rtol=0)
    torch.testing.assert_close(batched.mse, torch.cat([r.mse for r in single]), atol=1e-5, rtol=0)
    uneven = invert(G, x, InvertConfig(space=space, batch=2, **FAST))  # batches of 2, 2, 1
    torch.testing.assert_close(batched.ws, uneven.ws, atol=ROUNDING, rtol=0)
    coupled = invert(G, x, cfg, keys=[0, 10, 11, 12, 13])  # other noise for 4 images: far from rounding
    assert (coupled.ws[1:] - batched.ws[1:]).abs().max() > 100 * ROUNDING


def test_w_space_rows_are_identical_and_w_plus_rows_differ(G):
    x = random_images(2)
    w = invert(G, x, InvertConfig(space="w", **FAST)).ws
    assert torch.equal(w, w[:, :1].expand_as(w))
    wp = invert(G, x, InvertConfig(space="w+", **FAST)).ws
    assert wp.shape == w.shape
    assert not torch.allclose(wp, wp[:, :1].expand_as(wp))


def test_inversion_is_deterministic_given_seed_and_keys(G):
    x = random_images(3)
    cfg = InvertConfig(**FAST)
    a, b = invert(G, x, cfg), invert(G, x, cfg)
    assert torch.equal(a.ws, b.ws) and torch.equal(a.mse, b.mse)
    assert not torch.equal(invert(G, x, InvertConfig(**{**FAST, "seed": 1})).ws, a.ws)
    assert not torch.equal(invert(G, x, cfg, keys=["a", "b", "c"]).ws, a.ws)  # keys seed the noise
    with pytest.raises(ConfigError, match="one key per image"):
        invert(G, x, cfg, keys=[0, 1])
    with pytest.raises(ConfigError, match="keys must be distinct"):
        invert(G, x, cfg, keys=[0, 1, 1])


def test_rgb_images_invert_with_an_rgb_generator():
    G3 = tiny_generator(channels=3)
    targets, _ = images_from_known_w(G3, n=2)
    res = invert(G3, targets, InvertConfig(**FAST))
    assert res.ws.shape == (2, G3.num_ws, G3.w_dim) and torch.isfinite(res.mse).all()


def test_conditional_generator_statistics_use_random_labels():
    G3 = tiny_generator(c_dim=3)
    w_mean, w_std = inv.w_statistics(G3, 300, 0)
    assert w_mean.shape == (16,) and w_std > 0
    res = invert(G3, random_images(1), InvertConfig(**FAST))
    assert res.ws.shape == (1, G3.num_ws, 16)


def test_bad_images_are_refused_with_the_expected_shape(G):
    cfg = InvertConfig(**FAST)
    with pytest.raises(ConfigError, match=r"images must be a tensor \[N, 1, 16, 16\].*got \[2, 3, 16, 16\]"):
        invert(G, random_images(2, channels=3), cfg)
    with pytest.raises(ConfigError, match=r"got \[2, 1, 32, 32\]"):
        invert(G, torch.zeros(2, 1, 32, 32), cfg)
    with pytest.raises(ConfigError, match=r"got \[1, 16, 16\]"):
        invert(G, torch.zeros(1, 16, 16), cfg)
    with pytest.raises(ConfigError, match="images is empty"):
        invert(G, torch.zeros(0, 1, 16, 16), cfg)
    with pytest.raises(DataError, match=r"must be in \[-1, 1\]"):
        invert(G, torch.full((1, 1, 16, 16), 255.0), cfg)
    with pytest.raises(ConfigError, match="needs a generator with NVIDIA's contract"):
        invert(torch.nn.Linear(2, 2), random_images(1), cfg)


# ---------------------------------------------------------------------------------------------------------------
# Perceptual term: offline fallback and LPIPS.


def test_auto_falls_back_to_ms_gradient_and_records_it_when_lpips_weights_are_absent(G):
    with pytest.warns(UserWarning, match="LPIPS backbone weights not found"):
        res = invert(G, random_images(1), InvertConfig(**{**FAST, "perceptual": "auto"}))
    assert res.perceptual_used == "ms-gradient (LPIPS backbone weights not found: vgg16-397923af.pth)"
    assert torch.isfinite(res.perceptual).all()


def test_explicit_lpips_without_weights_is_an_error_not_a_fallback(G):
    with pytest.raises(MissingWeightsError, match="LPIPS AlexNet backbone weights not found"):
        invert(G, random_images(1), InvertConfig(**{**FAST, "perceptual": "lpips-alex"}))


def test_perceptual_none_reports_nan_and_null(G):
    res = invert(G, random_images(2), InvertConfig(**{**FAST, "perceptual": "none"}))
    assert res.perceptual_used == "none" and torch.isnan(res.perceptual).all()
    assert res.to_dict()["perceptual"] == [None, None]


@pytest.fixture(scope="module")
def lpips_alex():
    import warnings

    import lpips

    torch.manual_seed(0)
    with warnings.catch_warnings():  # torchvision's deprecation notes about lpips' `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        return lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()


def test_cached_lpips_targets_equal_the_lpips_forward(lpips_alex):
    x, y = random_images(3, channels=1), random_images(3, channels=1, seed=2)
    term = inv._Lpips(lpips_alex, "lpips-alex")
    assert term.cached
    expected = lpips_alex(term.prepare(x), term.prepare(y)).view(3)
    assert torch.allclose(term.distance(x, term.targets(y)), expected, atol=1e-6)


def test_lpips_network_passed_in_is_used(G, lpips_alex):
    x = random_images(2)
    cfg = InvertConfig(**{**FAST, "perceptual": "auto", "steps": 4})
    res = invert(G, x, cfg, lpips_net=lpips_alex)
    assert res.perceptual_used == "lpips-alex (network given by the caller)"
    with torch.no_grad():
        synth = G.synthesis(res.ws, noise_mode="const").clamp(-1, 1)
        up = torch.nn.functional.interpolate  # gray -> RGB, 16 px -> 64 px (AlexNet needs >= 32 px)
        expected = lpips_alex(*(up(t.repeat(1, 3, 1, 1), size=(64, 64), mode="bilinear") for t in (synth, x)))
    assert torch.allclose(res.perceptual, expected.view(2), atol=1e-6)
    with pytest.raises(ConfigError, match='LPIPS "alex" network but perceptual is "lpips-vgg"'):
        invert(G, x, InvertConfig(**{**FAST, "perceptual": "lpips-vgg"}), lpips_net=lpips_alex)
    with pytest.raises(ConfigError, match="perceptual term is off"):
        invert(G, x, InvertConfig(**{**FAST, "perceptual": "none"}), lpips_net=lpips_alex)


# ---------------------------------------------------------------------------------------------------------------
# Dataset level.


@pytest.fixture(scope="module")
def cxr_index(cxr_dataset):
    from latentwalk.data.layouts import open_dataset

    return open_dataset(cxr_dataset)


def seven_ids(index) -> list[str]:
    return [r.file.relative_to(index.root).as_posix() for r in index.records][::5][:7]


DATA_CFG = InvertConfig(batch=3, **FAST)


def test_invert_dataset_writes_latents_and_json_keyed_by_relative_path(G, cxr_index, tmp_path):
    ids = seven_ids(cxr_index)
    out = invert_dataset(G, cxr_index, tmp_path / "lat.safetensors", DATA_CFG, ids=list(reversed(ids)))
    got_ids, ws, meta = load_latents(out)
    assert got_ids == ids  # index order whatever order was asked
    assert ws.shape == (7, G.num_ws, G.w_dim)
    assert not (tmp_path / "lat.safetensors.partial").exists()
    assert meta["config"] == DATA_CFG.to_dict() and meta["perceptual_used"] == "ms-gradient"
    assert meta["generator"]["sha256"] == inv.generator_sha256(G)
    records = {r.file.relative_to(cxr_index.root).as_posix(): r for r in cxr_index.records}
    for rid in ids:
        item = meta["items"][rid]
        assert item["label"] == records[rid].label and item["identity"] == records[rid].identity
        assert item["mse"] >= 0 and item["perceptual"] >= 0
    assert json.loads((tmp_path / "lat.json").read_text())["ids"] == ids
    # the same images through invert() with ids as keys give the same latents (batch composition is irrelevant)
    from latentwalk.data.preprocess import load_tensors

    images, _ = load_tensors(cxr_index, 16, channels=1)
    all_ids = list(records)
    rows = [all_ids.index(i) for i in ids]
    direct = invert(G, images[rows], InvertConfig(**{**DATA_CFG.to_dict(), "batch": 7}), keys=ids)
    torch.testing.assert_close(direct.ws, ws, atol=ROUNDING, rtol=0)


def test_invert_dataset_resume_after_interruption_is_identical(G, cxr_index, tmp_path, monkeypatch):
    ids = seven_ids(cxr_index)
    reference = invert_dataset(G, cxr_index, tmp_path / "ref.safetensors", DATA_CFG, ids=ids)
    real = inv._invert_batch
    calls = []

    def interrupted(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt("simulated kill after the first batch")
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(inv, "_invert_batch", interrupted)
    out = tmp_path / "run.safetensors"
    with pytest.raises(KeyboardInterrupt):
        invert_dataset(G, cxr_index, out, DATA_CFG, ids=ids)
    partial = tmp_path / "run.safetensors.partial"
    assert sorted(p.name for p in partial.iterdir()) == ["batch_00000.safetensors", "plan.json"]
    assert not out.exists()

    with pytest.raises(ConfigError, match=r"used different settings \(config.steps\)"):
        invert_dataset(G, cxr_index, out, InvertConfig(**{**DATA_CFG.to_dict(), "steps": 13}), ids=ids)

    redone = []

    def counting(*args, **kwargs):
        redone.append(len(args[3]))
        return real(*args, **kwargs)

    monkeypatch.setattr(inv, "_invert_batch", counting)
    invert_dataset(G, cxr_index, out, DATA_CFG, ids=ids)
    assert redone == [3, 1]  # the finished first batch was not recomputed
    assert not partial.exists()
    ref_ids, ref_ws, ref_meta = load_latents(reference)
    got_ids, got_ws, meta = load_latents(out)
    assert got_ids == ref_ids and torch.equal(got_ws, ref_ws)
    assert meta["items"] == ref_meta["items"]


def test_invert_dataset_refuses_bad_requests(G, cxr_index, tmp_path):
    with pytest.raises(ConfigError, match=r"must end in \.safetensors"):
        invert_dataset(G, cxr_index, tmp_path / "lat.pt", DATA_CFG)
    with pytest.raises(ConfigError, match="unknown image id"):
        invert_dataset(G, cxr_index, tmp_path / "lat.safetensors", DATA_CFG, ids=["nope.png"])
    ids = seven_ids(cxr_index)[:1]
    with pytest.raises(ConfigError, match="repeated"):
        invert_dataset(G, cxr_index, tmp_path / "lat.safetensors", DATA_CFG, ids=ids * 2)
    out = invert_dataset(G, cxr_index, tmp_path / "lat.safetensors", DATA_CFG, ids=ids)
    with pytest.raises(ConfigError, match="pass --overwrite"):
        invert_dataset(G, cxr_index, out, DATA_CFG, ids=ids)
    invert_dataset(G, cxr_index, out, DATA_CFG, ids=ids, overwrite=True)


def test_load_latents_detects_a_changed_file(G, cxr_index, tmp_path):
    out = invert_dataset(G, cxr_index, tmp_path / "lat.safetensors", DATA_CFG, ids=seven_ids(cxr_index)[:2])
    out.write_bytes(out.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(DataError, match="does not match the checksum"):
        load_latents(tmp_path / "lat")
    with pytest.raises(DataError, match="not found"):
        load_latents(tmp_path / "missing.safetensors")


def test_conditional_inversion_starts_each_image_at_its_labels_mean_w():
    from gan_zoo.invert import class_w_means, w_statistics

    G = tiny_generator(c_dim=2)
    images = torch.rand(4, 1, G.img_resolution, G.img_resolution, generator=torch.Generator().manual_seed(0)) * 2 - 1
    labels = torch.tensor([0, 1, 1, 0])
    cfg = InvertConfig(steps=1, lr=1e-9, perceptual="none", batch=4)  # one negligible step: the start point
    means = class_w_means(G, cfg.w_avg_samples, cfg.seed)
    assert not torch.allclose(means[0], means[1])
    ws = invert(G, images, cfg, labels=labels).ws[:, 0]  # [4, w_dim]
    torch.testing.assert_close(ws, means[labels], atol=1e-5, rtol=0)
    unlabelled = invert(G, images, cfg).ws[:, 0]
    torch.testing.assert_close(unlabelled, w_statistics(G, cfg.w_avg_samples, cfg.seed)[0].expand(4, -1),
                               atol=1e-5, rtol=0)  # fmt: skip
    with pytest.raises(ConfigError, match="labels must lie"):
        invert(G, images, cfg, labels=torch.tensor([0, 1, 2, 0]))


def test_z_inversion_keeps_each_latent_on_the_mapping_output_of_its_label():
    from gan_zoo.invert import item_seed

    G = tiny_generator(c_dim=2)
    gen = torch.Generator().manual_seed(3)
    z_true = torch.randn(3, G.z_dim, generator=gen)
    labels = torch.tensor([0, 1, 1])
    c = torch.nn.functional.one_hot(labels, 2).float()
    with torch.no_grad():
        targets = G.synthesis(G.mapping(z_true, c), noise_mode="const").clamp(-1, 1)
    cfg = InvertConfig(space="z", steps=60, lr=0.05, perceptual="ms-gradient", batch=3)
    res = invert(G, targets, cfg, labels=labels)
    # the start: each image's seeded z under its own label
    z0 = torch.stack([torch.randn(G.z_dim, generator=torch.Generator().manual_seed(item_seed(cfg.seed, i)))
                      for i in range(3)])  # fmt: skip
    with torch.no_grad():
        start = G.synthesis(G.mapping(z0, c), noise_mode="const").clamp(-1, 1)
    start_mse = (start - targets).square().mean((1, 2, 3))
    assert (res.mse < 0.5 * start_mse).all(), (res.mse, start_mse)
    assert torch.equal(res.ws, res.ws[:, :1].expand_as(res.ws))  # a mapping output: one w broadcast to all layers
    # one negligible step returns the mapping of the start z under each image's own label
    still = invert(G, targets, InvertConfig(space="z", steps=1, lr=1e-9, perceptual="none", batch=3), labels=labels)
    with torch.no_grad():
        torch.testing.assert_close(still.ws, G.mapping(z0, c), atol=1e-5, rtol=0)
        assert not torch.allclose(still.ws, G.mapping(z0, 1 - c), atol=1e-3)
    with pytest.raises(ConfigError, match="needs each image's label"):
        invert(G, targets, cfg)
    unconditional = tiny_generator()
    out = invert(unconditional, targets, InvertConfig(space="z", steps=2, perceptual="none", batch=3))
    assert out.ws.shape == (3, unconditional.num_ws, unconditional.w_dim)
