import json

import pytest
import torch

from gan_zoo.augment import diff_augment, parse_policy
from gan_zoo.checkpoint import load_generator
from gan_zoo.train import TrainConfig, train_gan
from latentwalk.errors import ConfigError

TINY = dict(
    resolution=32,
    batch=4,
    channel_base=128,
    channel_max=16,
    z_dim=8,
    w_dim=8,
    mapping_layers=1,
    snapshot_kimg=0.008,
    r1_interval=2,
)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(12, 1, 32, 32, generator=g) * 2 - 1
    labels = torch.arange(12) % 2
    return images, labels


def test_diff_augment_is_seeded_and_differentiable():
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    policy = parse_policy("color,translation,cutout")
    a = diff_augment(x, policy, torch.Generator().manual_seed(1))
    b = diff_augment(x, policy, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, x)
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translation_moves_content_and_cutout_zeroes_a_square():
    x = torch.zeros(1, 1, 16, 16)
    x[0, 0, 8, 8] = 1.0
    moved = diff_augment(x, ("translation",), torch.Generator().manual_seed(3))
    assert moved.sum() <= 1.0 and moved.shape == x.shape
    ones = torch.ones(2, 1, 16, 16)
    cut = diff_augment(ones, ("cutout",), torch.Generator().manual_seed(0))
    holes = (cut == 0).sum(dim=[1, 2, 3])
    assert torch.all(holes > 0) and torch.all(holes <= 64)


def test_unknown_augmentation_is_refused():
    with pytest.raises(ConfigError, match="unknown augmentation 'flip'"):
        parse_policy("color,flip")


def test_training_writes_generator_samples_state_and_log(tmp_path, data):
    images, labels = data
    result = train_gan(images, labels, tmp_path / "run", TrainConfig(kimg=0.016, **TINY))
    assert result.kimg == pytest.approx(0.016)
    G = load_generator(result.generator)
    assert G.img_resolution == 32 and G.img_channels == 1 and G.z_dim == 8
    meta = json.loads((tmp_path / "run" / "generator.json").read_text())
    assert meta["provenance"]["trainer"] == "gan_zoo.train" and len(meta["provenance"]["dataset_sha256"]) == 64
    assert (tmp_path / "run" / "samples" / "reals.png").is_file()
    assert len(list((tmp_path / "run" / "samples").glob("fakes_*kimg.png"))) == 2
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["kimg"] for r in log] == [0.008, 0.016] and all("loss_g" in r and "loss_d" in r for r in log)


def test_training_changes_the_generator(tmp_path, data):
    from gan_zoo.train import build_networks

    images, labels = data
    cfg = TrainConfig(kimg=0.016, **TINY)
    before, _ = build_networks(cfg, 1, 0)
    after = load_generator(train_gan(images, labels, tmp_path / "run", cfg).generator)
    z = torch.randn(2, 8)
    assert not torch.allclose(before(z, None), after(z, None))


def test_resume_after_stop_gives_the_same_generator_as_one_run(tmp_path, data):
    images, labels = data
    straight = train_gan(images, labels, tmp_path / "a", TrainConfig(kimg=0.024, **TINY))
    train_gan(images, labels, tmp_path / "b", TrainConfig(kimg=0.008, **TINY))
    resumed = train_gan(images, labels, tmp_path / "b", TrainConfig(kimg=0.024, **TINY), resume=True)
    assert resumed.resumed_from_kimg == pytest.approx(0.008)
    assert straight.generator.read_bytes() == resumed.generator.read_bytes()


def test_resume_with_other_options_is_refused(tmp_path, data):
    images, labels = data
    train_gan(images, labels, tmp_path / "run", TrainConfig(kimg=0.008, **TINY))
    with pytest.raises(ConfigError, match=r"different settings \(lr\)"):
        train_gan(images, labels, tmp_path / "run", TrainConfig(kimg=0.016, lr=0.01, **TINY), resume=True)
    with pytest.raises(ConfigError, match="a different dataset"):
        train_gan(images.flip(0), labels.flip(0), tmp_path / "run", TrainConfig(kimg=0.016, **TINY), resume=True)


def test_non_empty_run_folder_without_resume_is_refused(tmp_path, data):
    images, labels = data
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        train_gan(images, labels, tmp_path / "run", TrainConfig(kimg=0.008, **TINY))


def test_conditional_training_builds_a_labelled_generator(tmp_path, data):
    images, labels = data
    result = train_gan(images, labels, tmp_path / "run", TrainConfig(kimg=0.008, conditional=True, **TINY))
    G = load_generator(result.generator)
    assert G.c_dim == 2
    out = G(torch.randn(2, 8), torch.eye(2))
    assert out.shape == (2, 1, 32, 32)


def test_wrong_image_shape_is_refused(tmp_path, data):
    images, labels = data
    with pytest.raises(ConfigError, match="training images must be"):
        train_gan(images[:, :, :16, :16], labels, tmp_path / "run", TrainConfig(kimg=0.008, **TINY))


@pytest.mark.parametrize("bad", [{"resolution": 48}, {"kimg": 0}, {"split": "dev"}, {"augment": "blur"}])
def test_invalid_training_options_are_refused(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**bad)


def test_conditional_generator_started_from_an_unconditional_one_equals_it_until_trained(tmp_path, data):
    from gan_zoo.train import build_networks, init_generator_from

    images, labels = data
    source = load_generator(train_gan(images, labels, tmp_path / "u", TrainConfig(kimg=0.008, **TINY)).generator)
    G, _ = build_networks(TrainConfig(conditional=True, **TINY), 1, 2)
    kept = init_generator_from(G, source)
    assert kept == ["mapping.embed.weight", "mapping.embed.bias"]  # only the label path is new
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for label in (0, 1):
            c = torch.nn.functional.one_hot(torch.full((3,), label), 2).float()
            torch.testing.assert_close(G.eval()(z, c), source(z, None), atol=1e-5, rtol=0)
    run = train_gan(images, labels, tmp_path / "c", TrainConfig(kimg=0.008, conditional=True, **TINY),
                    init_from=source)  # fmt: skip
    tuned = load_generator(run.generator)
    with torch.no_grad():
        a, b = (tuned(z, torch.nn.functional.one_hot(torch.full((3,), k), 2).float()) for k in (0, 1))
    assert not torch.equal(a, b)  # training gave the label an effect
    wider, _ = build_networks(TrainConfig(conditional=True, **{**TINY, "channel_base": 256}), 1, 2)
    with pytest.raises(ConfigError, match="synthesis network differs"):
        init_generator_from(wider, source)


def test_the_discriminator_benchmark_trains_a_fresh_d_against_a_fixed_generator(monkeypatch):
    """benchmarks/bench_d_augment.py: D must leave chance when real and generated images are easy to tell apart."""
    from pathlib import Path

    from tiny import tiny_generator

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_d_augment import train_fresh_d

    G = tiny_generator().requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(32, 1, 32, 32, generator=gen) * 2 - 1  # noise: nothing like G's smooth images
    labels = torch.zeros(32, dtype=torch.long)
    learnt = train_fresh_d(G, images, labels, "none", steps=40, channel_base=64, channel_max=8)
    assert learnt["loss"] < 1.2 and learnt["gap"] > 0  # chance: 2 ln 2 = 1.386, gap 0
    again = train_fresh_d(G, images, labels, "none", steps=40, channel_base=64, channel_max=8)
    assert again == learnt  # seeded: the policies of one run see the same batches and initialisation
