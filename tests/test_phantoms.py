import csv
import hashlib
import json

import numpy as np
import pytest

from latentwalk.data import phantoms
from latentwalk.data.phantoms import PhantomConfig, generate_phantoms, render_phantom, write_phantom_dataset
from latentwalk.errors import ConfigError


def _tree_digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("kind", ["cxr", "fundus"])
def test_same_seed_gives_byte_identical_files(tmp_path, kind):
    cfg = PhantomConfig(kind=kind, identities=4, per_identity=2, resolution=32, seed=11)
    write_phantom_dataset(cfg, tmp_path / "a")
    write_phantom_dataset(cfg, tmp_path / "b")
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")


def test_different_seed_gives_different_images():
    a = render_phantom(PhantomConfig(seed=1, identities=2), 0, 0).pixels
    b = render_phantom(PhantomConfig(seed=2, identities=2), 0, 0).pixels
    assert not np.array_equal(a, b)


@pytest.mark.parametrize(("kind", "shape"), [("cxr", (48, 48)), ("fundus", (48, 48, 3))])
def test_phantoms_have_the_declared_shape_and_dtype(kind, shape):
    ph = render_phantom(PhantomConfig(kind=kind, identities=2, resolution=48), 1, 0)
    assert ph.pixels.shape == shape and ph.pixels.dtype == np.uint8
    assert ph.pixels.std() > 10  # not blank


def test_render_is_independent_of_order():
    cfg = PhantomConfig(kind="fundus", identities=3, per_identity=2, resolution=32)
    streamed = list(generate_phantoms(cfg))
    assert np.array_equal(streamed[5].pixels, render_phantom(cfg, 2, 1).pixels)


def test_class_weights_give_exact_proportions_over_patients():
    cfg = PhantomConfig(kind="cxr", identities=20, per_identity=1, resolution=32, class_weights=(3, 1))
    labels = [ph.label for ph in generate_phantoms(cfg)]
    assert labels.count(0) == 15 and labels.count(1) == 5


@pytest.mark.parametrize("kind", ["cxr", "fundus"])
def test_images_of_one_patient_are_nearer_each_other_than_to_other_patients(kind):
    cfg = PhantomConfig(kind=kind, identities=16, per_identity=3, resolution=32, seed=5)
    images = list(generate_phantoms(cfg))
    x = np.stack([ph.pixels.astype(np.float32).ravel() / 255 for ph in images])
    ids = np.array([ph.identity for ph in images])
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    same = ids[:, None] == ids[None]
    np.fill_diagonal(same, False)
    off_diag = ~np.eye(len(ids), dtype=bool)
    assert d[same].mean() < 0.8 * d[off_diag & ~same].mean()
    np.fill_diagonal(d, np.inf)
    nn_same = (ids[d.argmin(1)] == ids).mean()
    chance = (cfg.per_identity - 1) / (len(ids) - 1)
    assert nn_same > 5 * chance


def test_tb_lesions_exist_exactly_for_tb_patients(tmp_path):
    cfg = PhantomConfig(kind="cxr", identities=10, per_identity=1, resolution=32)
    out = tmp_path / "d"
    write_phantom_dataset(cfg, out)
    truth = json.loads((out / "ground_truth.json").read_text())
    labels = {img["identity"]: img["label"] for img in truth["images"].values()}
    for pid, patient in truth["patients"].items():
        assert bool(patient["lesions"]) == (labels[pid] == 1)


def test_fundus_lesion_load_grows_with_grade():
    cfg = PhantomConfig(kind="fundus", identities=25, per_identity=2, resolution=32, seed=2)
    load = {g: [] for g in range(5)}
    for ph in generate_phantoms(cfg):
        lesions = ph.params["lesions"]
        load[ph.label].append(sum(len(v) for v in lesions.values()))
    means = [np.mean(load[g]) for g in range(5) if load[g]]
    assert load[0] and all(n == 0 for n in load[0])
    assert means == sorted(means)


def test_fundus_eyes_of_one_patient_are_mirrored_with_different_trees():
    cfg = PhantomConfig(kind="fundus", identities=2, per_identity=2, resolution=64)
    a, b = render_phantom(cfg, 0, 0), render_phantom(cfg, 0, 1)
    assert {a.params["eye"], b.params["eye"]} == {"left", "right"}
    # the optic disc (brightest region) sits on opposite halves of the image
    col = lambda img: np.argmax(img.pixels.astype(float).sum(axis=(0, 2)).ravel())  # noqa: E731
    assert (col(a) < 32) != (col(b) < 32)


def test_one_image_per_patient_works(tmp_path):
    index = write_phantom_dataset(PhantomConfig(identities=10, per_identity=1, resolution=32), tmp_path / "d")
    assert len(index) == 10 and len(index.identities()) == 10


def test_written_dataset_has_metadata_split_and_card(tmp_path):
    out = tmp_path / "d"
    index = write_phantom_dataset(PhantomConfig(kind="fundus", identities=10, per_identity=2, resolution=32), out)
    with open(out / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["file", "identity", "label", "split"]
    assert len(rows) == 20 and all((out / r["file"]).is_file() for r in rows)
    assert all(r["file"].startswith(f"images/{r['label']}/") for r in rows)
    splits_of = {}
    for r in rows:
        splits_of.setdefault(r["identity"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits_of.values())
    info = json.loads((out / "dataset.json").read_text())
    assert info["channels"] == 3 and info["label_names"][0] == "no_dr" and info["resolution"] == 32
    assert index.channels == 3 and len(index) == 20


def test_refuses_a_non_empty_output_folder(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        write_phantom_dataset(PhantomConfig(identities=2, per_identity=1, resolution=32), tmp_path / "d")
    assert (tmp_path / "d" / "keep.txt").read_text() == "x"


def test_a_crash_midway_leaves_no_output(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = phantoms.render_phantom

    def flaky(cfg, p, j):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(cfg, p, j)

    monkeypatch.setattr(phantoms, "render_phantom", flaky)
    with pytest.raises(KeyboardInterrupt):
        write_phantom_dataset(PhantomConfig(identities=4, per_identity=1, resolution=32), tmp_path / "d")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "mri"}, "unknown phantom kind"),
        ({"identities": 1}, "identities"),
        ({"per_identity": 0}, "per_identity"),
        ({"resolution": 16}, "resolution"),
        ({"class_weights": (1, 1, 1)}, "class_weights"),
        ({"split": (0.5, 0.5, 0.5)}, "split"),
    ],
)
def test_invalid_config_is_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        PhantomConfig(**kwargs)
