"""Guide classifiers: training writes both models, loading is strict and frozen, the identity model learns."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest
import torch

from latentwalk.data import open_dataset
from latentwalk.errors import ConfigError, DataError, MissingWeightsError
from latentwalk.guides import (
    GuideConfig,
    GuideContract,
    GuideResNet18,
    Guides,
    acquisition_augment,
    build_guide,
    check_contract,
    identity_classes,
    load_guides,
    train_guides,
)

TINY = GuideConfig(epochs=2, batch=8, width=8, embed_dim=16)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cxr_index(cxr_dataset):
    return open_dataset(cxr_dataset)


@pytest.fixture(scope="module")
def trained(cxr_index, tmp_path_factory):
    """Guides trained for 2 epochs on the 12-patient 32 px CXR phantoms: ``(result, folder)``."""
    out = tmp_path_factory.mktemp("guides") / "g"
    return train_guides(cxr_index, out, TINY), out


def _images(n: int = 4, channels: int = 1, res: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, res, res, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_train_guides_writes_both_models_with_metrics(trained, cxr_index):
    result, out = trained
    assert sorted(p.name for p in out.iterdir()) == [
        ".latentwalk-output.json",  # the ownership marker (latentwalk.outputs)
        "class.json",
        "class.safetensors",
        "identity.json",
        "identity.safetensors",
    ]
    assert all(p.is_file() for p in result.files)
    n_ids = len(identity_classes(cxr_index))
    assert result.n_identities == n_ids == len(cxr_index.subset("train").identities())
    assert result.contract == GuideContract(resolution=32, channels=1)
    for role in ("identity", "class"):
        meta = json.loads((out / f"{role}.json").read_text())
        assert meta["role"] == role
        assert meta["contract"] == {"resolution": 32, "channels": 1, "range": [-1.0, 1.0]}
        assert meta["label_names"] == ["normal", "tb"]
        assert meta["n_identities"] == n_ids
        assert meta["config"] == TINY.to_dict()
        assert meta["dataset"]["sha256"] == result.fingerprint
        assert meta["architecture"]["name"] == "cnn"
        assert len(meta["metrics"]["train_loss"]) == TINY.epochs
        assert 0 <= meta["metrics"]["val_accuracy"] <= 1
    id_metrics = result.metrics["identity"]
    # 3 images per patient: one held out each, so every training patient is measured on an unseen image
    assert id_metrics["n_val_images"] == n_ids and id_metrics["n_train_images"] == 2 * n_ids
    assert result.metrics["class"]["n_val_images"] == len(cxr_index.subset("val"))
    assert json.loads(json.dumps(result.to_dict()))["n_identities"] == n_ids


def test_guide_json_holds_no_patient_identifier_or_file_name(trained, cxr_index):
    _, out = trained
    text = "\n".join((out / f"{role}.json").read_text() for role in ("identity", "class"))
    for record in cxr_index.records:
        assert record.identity not in text
        assert record.file.stem not in text and record.file.name not in text
    assert str(cxr_index.root) not in text
    assert not (out / "identities.json").exists()


def test_load_round_trip_gives_identical_logits_and_embeddings(trained, cxr_index):
    from latentwalk.data import load_tensors

    _, out = trained
    x, _ = load_tensors(cxr_index, 32, split="val")
    a, b = load_guides(out), load_guides(out)
    assert isinstance(a, Guides) and a.label_names == ("normal", "tb") and a.contract.resolution == 32
    assert a.metrics["identity"]["val_accuracy"] is not None
    for name in ("identity", "classifier"):
        m1, m2 = getattr(a, name), getattr(b, name)
        assert torch.equal(m1(x), m2(x))
        emb = m1.embed(x)
        assert emb.shape == (len(x), TINY.embed_dim) and torch.equal(emb, m2.embed(x))
        assert torch.allclose(m1.head(emb), m1(x))  # logits are the head of the embedding
    assert a.identity(x).shape == (len(x), a.n_identities)
    assert a.classifier(x).shape == (len(x), 2)


def test_loaded_guides_are_frozen_but_differentiable_in_the_input(trained):
    _, out = trained
    g = load_guides(out)
    for model in (g.identity, g.classifier):
        assert not model.training
        assert not any(p.requires_grad for p in model.parameters())
    x = _images().requires_grad_(True)
    uniform = torch.full((len(x), g.n_identities), 1 / g.n_identities)
    privacy = torch.nn.functional.kl_div(g.identity(x).log_softmax(1), uniform, reduction="batchmean")
    utility = torch.nn.functional.cross_entropy(g.classifier(x), torch.ones(len(x), dtype=torch.long))
    (0.1 * privacy + utility).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()
    assert all(p.grad is None for p in g.identity.parameters())


def test_identity_guide_recognises_held_out_images_of_training_patients(cxr_index, tmp_path):
    cfg = GuideConfig(epochs=60, batch=8, width=16, lr=3e-3, seed=0)
    result = train_guides(cxr_index, tmp_path / "g", cfg)
    ident = result.metrics["identity"]
    assert ident["val_accuracy"] >= 4 * ident["chance_accuracy"], ident  # seed 0: 0.78 vs chance 0.11
    assert result.metrics["class"]["train_accuracy"] >= 0.9


def test_same_seed_gives_identical_weights_and_leaves_global_rng_alone(cxr_index, trained, tmp_path):
    result, out = trained
    state = torch.get_rng_state()
    again = train_guides(cxr_index, tmp_path / "g", TINY)
    assert torch.equal(torch.get_rng_state(), state)
    for role in ("identity", "class"):
        assert (out / f"{role}.safetensors").read_bytes() == (tmp_path / "g" / f"{role}.safetensors").read_bytes()
    assert again.fingerprint == result.fingerprint


def test_patients_with_one_training_image_are_training_only(fundus_dataset, tmp_path):
    index = open_dataset(fundus_dataset)
    train_ids = sorted(index.subset("train").identities())
    single = set(train_ids[:2])
    kept, seen = [], set()
    for r in index.records:  # keep only the first image of two training patients
        if r.identity in single and r.identity in seen:
            continue
        seen.add(r.identity)
        kept.append(r)
    index = dataclasses.replace(index, records=tuple(kept))
    result = train_guides(index, tmp_path / "g", TINY)
    ident = result.metrics["identity"]
    assert result.contract.channels == 3 and result.label_names == index.label_names
    assert ident["single_image_identities"] == 2
    assert ident["n_identities"] == len(train_ids)
    assert ident["n_val_images"] == len(train_ids) - 2  # one held-out image per patient with two images
    assert ident["n_train_images"] == len(train_ids)


def test_out_dir_is_replaced_only_when_latentwalk_wrote_it_and_overwrite_is_given(cxr_index, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("x")
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match="latentwalk did not write it"):
            train_guides(cxr_index, mine, TINY, overwrite=overwrite)
    assert (mine / "thesis.txt").read_text() == "x" and sorted(p.name for p in mine.iterdir()) == ["thesis.txt"]
    out = tmp_path / "g"
    one = dataclasses.replace(TINY, epochs=1)
    train_guides(cxr_index, out, one)
    with pytest.raises(ConfigError, match="pass --overwrite"):
        train_guides(cxr_index, out, one)
    (out / "notes.md").write_text("mine now")  # a file the user added to our output protects the whole folder
    with pytest.raises(ConfigError, match=r"did not write \(notes.md\)"):
        train_guides(cxr_index, out, one, overwrite=True)
    (out / "notes.md").unlink()
    train_guides(cxr_index, out, one, overwrite=True)
    assert (out / "identity.json").is_file()
    with pytest.raises(ConfigError, match="inside the dataset"):
        train_guides(cxr_index, cxr_index.root / "guides", one)


def test_training_needs_a_train_split_with_identities(cxr_index, tmp_path):
    no_split = dataclasses.replace(
        cxr_index, records=tuple(dataclasses.replace(r, split=None) for r in cxr_index.records)
    )
    with pytest.raises(DataError, match="train split"):
        train_guides(no_split, tmp_path / "a", TINY)
    anonymous = dataclasses.replace(
        cxr_index, records=tuple(dataclasses.replace(r, identity=None) for r in cxr_index.records)
    )
    with pytest.raises(DataError, match="identity"):
        train_guides(anonymous, tmp_path / "b", TINY)
    with pytest.raises(ConfigError, match="resolution"):
        train_guides(cxr_index, tmp_path / "c", TINY, resolution=8)
    assert not any((tmp_path / name).exists() for name in "abc")


def test_guide_config_is_validated():
    with pytest.raises(ConfigError, match="epohcs"):
        GuideConfig.from_dict({"epohcs": 3})
    assert GuideConfig.from_dict(TINY.to_dict()) == TINY
    bad = [
        {"arch": "vgg"},
        {"epochs": 0},
        {"batch": 1},
        {"lr": 0},
        {"weight_decay": -1},
        {"augment": -0.5},
        {"augment": 4},
        {"seed": -1},
        {"embed_dim": 0},
        {"id_val_fraction": 1.0},
        {"weights": "resnet.pth"},  # weights need arch resnet18
    ]
    for kwargs in bad:
        with pytest.raises(ConfigError):
            GuideConfig(**kwargs)
    with pytest.raises(ConfigError, match="unknown guide architecture"):
        build_guide("vgg", in_channels=1, n_classes=2, resolution=32)


def test_check_contract_names_resolution_and_channel_mismatch(trained):
    g = load_guides(trained[1])
    check_contract(g, SimpleNamespace(img_resolution=32, img_channels=1))
    with pytest.raises(ConfigError, match="resolution 32 px vs the generator's img_resolution 64"):
        check_contract(g, SimpleNamespace(img_resolution=64, img_channels=1))
    with pytest.raises(ConfigError, match="channels 1 vs the generator's img_channels 3"):
        check_contract(g, SimpleNamespace(img_resolution=32, img_channels=3))
    with pytest.raises(ConfigError, match="label names"):
        check_contract(g, SimpleNamespace(img_resolution=32, img_channels=1), label_names=("a", "b"))


def test_load_guides_errors_are_clear(trained, tmp_path):
    import shutil

    _, out = trained
    with pytest.raises(MissingWeightsError, match="not found"):
        load_guides(tmp_path / "absent")

    def copy(name):
        dst = tmp_path / name
        shutil.copytree(out, dst)
        return dst

    missing = copy("missing")
    (missing / "class.safetensors").unlink()
    with pytest.raises(MissingWeightsError, match="class.safetensors"):
        load_guides(missing)

    changed = copy("changed")
    meta = json.loads((changed / "identity.json").read_text())
    meta["architecture"]["kwargs"]["embed_dim"] = 32
    (changed / "identity.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="wrong shape"):
        load_guides(changed)

    meta["architecture"] = {"name": "vgg", "kwargs": {}}
    (changed / "identity.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match='architecture "vgg"'):
        load_guides(changed)

    tampered = copy("tampered")
    blob = bytearray((tampered / "class.safetensors").read_bytes())
    blob[-1] ^= 1
    (tampered / "class.safetensors").write_bytes(bytes(blob))
    with pytest.raises(DataError, match="checksum"):
        load_guides(tampered)

    lfs = copy("lfs")
    (lfs / "class.safetensors").write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:0\n")
    with pytest.raises(DataError, match="git-lfs"):
        load_guides(lfs)


def test_resnet18_repeats_gray_to_three_channels():
    gray = GuideResNet18(in_channels=1, n_classes=3, resolution=32, embed_dim=8).eval()
    rgb = GuideResNet18(in_channels=3, n_classes=3, resolution=32, embed_dim=8).eval()
    rgb.load_state_dict(gray.state_dict())  # one state_dict serves both: conv1 always has 3 inputs
    x = _images(2, channels=1)
    with torch.no_grad():
        assert torch.allclose(gray(x), rgb(x.repeat(1, 3, 1, 1)), atol=1e-6)
        assert gray.embed(x).shape == (2, 8)
    with pytest.raises(ConfigError, match=r"\[N, 1, R, R\]"):
        gray(x.repeat(1, 3, 1, 1))


def test_resnet18_guides_start_from_given_weights_and_round_trip(fundus_dataset, tmp_path):
    from torchvision.models import resnet18

    index = open_dataset(fundus_dataset)
    torch.manual_seed(1)
    source = resnet18(weights=None).state_dict()
    torch.save(source, tmp_path / "r18.pth")
    cfg = GuideConfig(arch="resnet18", epochs=1, batch=8, embed_dim=8, lr=1e-9, weight_decay=0, weights="r18.pth")
    with pytest.raises(MissingWeightsError, match="r18.pth"):
        train_guides(index, tmp_path / "g0", cfg)
    assert not (tmp_path / "g0").exists()

    cfg = dataclasses.replace(cfg, weights=str(tmp_path / "r18.pth"))
    result = train_guides(index, tmp_path / "g", cfg)
    g = load_guides(tmp_path / "g")
    assert isinstance(g.identity, GuideResNet18) and g.contract.channels == 3
    for model in (g.identity, g.classifier):  # lr 1e-9: the backbone still holds the given weights
        assert torch.allclose(model.backbone.conv1.weight, source["conv1.weight"], atol=1e-6)
    meta = json.loads((tmp_path / "g" / "class.json").read_text())
    assert meta["init_weights"]["file"] == "r18.pth" and len(meta["init_weights"]["sha256"]) == 64
    assert result.n_identities == g.n_identities

    bad = {k: v for k, v in source.items() if k != "conv1.weight"}
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(DataError, match="conv1.weight"):
        train_guides(index, tmp_path / "g2", dataclasses.replace(cfg, weights=str(tmp_path / "bad.pth")))


def test_acquisition_augment_is_seeded_bounded_and_differentiable():
    x = _images(3, channels=3).requires_grad_(True)
    a = acquisition_augment(x, 1.0, torch.Generator().manual_seed(5))
    b = acquisition_augment(x, 1.0, torch.Generator().manual_seed(5))
    c = acquisition_augment(x, 1.0, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    assert acquisition_augment(x, 0.0) is x
    a.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_identity_classes_are_sorted_training_patients(cxr_index):
    names = identity_classes(cxr_index)
    assert list(names) == sorted(cxr_index.subset("train").identities())
    assert not set(names) & set(cxr_index.subset(["val", "test"]).identities())


def test_one_class_in_validation_gives_balanced_accuracy_na_and_a_warning(tmp_path):
    """Two validation images of one class: the class guide's 'balanced accuracy 1.000' would be meaningless."""
    from click.testing import CliRunner

    from latentwalk.cli import cli
    from latentwalk.data import PhantomConfig, write_phantom_dataset

    cfg = PhantomConfig(kind="cxr", identities=10, per_identity=2, resolution=32, split=(0.8, 0.1, 0.1))
    index = write_phantom_dataset(cfg, tmp_path / "d")
    assert len({r.label for r in index.subset("val").records}) == 1  # the situation under test
    with pytest.warns(UserWarning, match="validation split holds only class normal"):
        result = train_guides(index, tmp_path / "g", GuideConfig(epochs=1), resolution=32, channels=1)
    klass = result.metrics["class"]
    assert klass["val_balanced_accuracy"] is None and klass["val_accuracy"] is not None
    with pytest.warns(UserWarning, match="only class normal"):
        done = CliRunner().invoke(cli, ["guides", "train", "--data", str(tmp_path / "d"), "--out",
                                        str(tmp_path / "g2"), "--epochs", "1", "--resolution", "32"])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "(balanced n/a: fewer than two classes in validation)" in done.output
