"""latentwalk evaluate end to end: a synthetic set made of copies of training images must be caught."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from latentwalk.errors import DataError
from latentwalk.evaluate.run import EvalConfig, evaluate, read_synthetic

FAST = dict(
    utility_epochs=2,
    utility_seeds=(0,),
    reid_epochs=2,
    verifier_epochs=100,
    mia_epochs=3,
    mia_shadows=2,
    kid_subsets=5,
    spaces=("identity", "ssim", "pixels"),
)


def _write_synthetic(out: Path, files: list[Path], labels: list[int]) -> Path:
    """A synthetic-dataset folder (images/<label>/<id>.png + manifest.csv) holding the given image files."""
    rows = []
    for n, (src, label) in enumerate(zip(files, labels, strict=True)):
        rel = f"images/{label}/s{n:04d}.png"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(src.read_bytes())
        rows.append({"id": f"s{n:04d}", "file": rel, "label": label})
    with (out / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "file", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return out


@pytest.fixture(scope="module")
def guides_dir(cxr_dataset, tmp_path_factory):
    from latentwalk.data import open_dataset
    from latentwalk.guides import GuideConfig, train_guides

    out = tmp_path_factory.mktemp("eval-guides") / "guides"
    train_guides(open_dataset(cxr_dataset), out, GuideConfig(epochs=2), resolution=32, channels=1)
    return out


def _split_files(dataset: Path, split: str) -> tuple[list[Path], list[int]]:
    from latentwalk.data import open_dataset

    records = open_dataset(dataset).subset(split).records
    return [r.file for r in records], [r.label for r in records]


def test_copies_of_training_images_are_caught_and_unseen_patients_are_not(cxr_dataset, guides_dir, tmp_path):
    files, labels = _split_files(cxr_dataset, "train")
    copies = _write_synthetic(tmp_path / "copies", files, labels)
    cfg = EvalConfig(guides=str(guides_dir), **FAST)
    m = evaluate(cxr_dataset, copies, tmp_path / "report-copies", cfg).metrics
    for space in ("identity", "pixels"):
        p = m["privacy"][space]
        assert p["collisions"]["count"] == len(files)  # every copy sits on its original (distance 0)
        assert p["mml"]["mml"] == pytest.approx(0.0, abs=1e-6)
        assert p["dcr"]["p_closer"] > 0.95
        assert p["identifiability"] > 0.9 and p["authenticity"]["authentic_fraction"] < 0.05
        assert p["mia_generator"]["auc"] > 0.9
    assert m["privacy"]["ssim"]["collisions"] == len(files)
    assert m["reidentification"]["n_syn"] == len(files)
    v = m["verification"]  # the independent attacker flags the copies far more often than unseen patients
    assert v["synthetic"]["images"] == len(files) and v["attacker"]["patients"] == len(files) // 3
    assert v["synthetic"]["match_rate"] >= 0.6 and v["synthetic"]["match_rate"] > v["heldout"]["match_rate"] + 0.2
    g = m["ground_truth"]  # and so does the anatomy read back from the images (phantoms: ground_truth.json)
    assert g["synthetic"]["images"] == len(files) and g["patients"] == len(files) // 3
    assert (
        g["synthetic"]["leak_fraction"] >= 0.6
        and g["synthetic"]["leak_fraction"] > g["heldout"]["heldout_fraction"] + 0.3
    )

    # held-out patients' images as the "synthetic" set: unseen patients, so no collisions and no membership signal
    files_h, labels_h = _split_files(cxr_dataset, "test")
    unseen = _write_synthetic(tmp_path / "unseen", files_h, labels_h)
    m2 = evaluate(cxr_dataset, unseen, tmp_path / "report-unseen", cfg).metrics
    assert m2["privacy"]["pixels"]["collisions"]["count"] < len(files_h)
    assert m2["privacy"]["pixels"]["mia_generator"]["auc"] < m["privacy"]["pixels"]["mia_generator"]["auc"]
    assert m2["privacy"]["pixels"]["dcr"]["p_closer"] == pytest.approx(0.5)  # the held-out set itself
    assert m2["verification"]["synthetic"]["match_rate"] == m2["verification"]["heldout"]["match_rate"]
    assert m2["verification"]["attacker"] == v["attacker"]  # trained once per process, the same bits
    mem = m2["membership_inference_memorising"]
    assert set(mem["classifier_trained_on_real"]) == {"loss", "calibrated"}
    assert m2["ground_truth"]["synthetic"]["leak_fraction"] == m2["ground_truth"]["heldout"]["heldout_fraction"]


def test_report_files_and_cli(cxr_dataset, guides_dir, tmp_path):
    from click.testing import CliRunner

    from latentwalk.cli import cli

    files, labels = _split_files(cxr_dataset, "train")
    syn = _write_synthetic(tmp_path / "syn", files[::2], labels[::2])
    out = tmp_path / "report"
    done = CliRunner().invoke(cli, ["evaluate", "--real", str(cxr_dataset), "--synthetic", str(syn), "--out",
                                    str(out), "--guides", str(guides_dir), "--spaces", "identity,pixels",
                                    "--utility-epochs", "2", "--utility-seeds", "0,1",
                                    "--reid-epochs", "2"])  # fmt: skip
    assert done.exit_code == 0, done.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["privacy"]) == {"identity", "pixels"}
    assert set(metrics["utility"]["mean"]) == {"real", "synthetic"}
    assert "class_guide" in metrics["fidelity"] and metrics["fidelity"]["class_guide"]["extractor"]
    assert set(metrics["membership_inference"]) == {"classifier_trained_on_real", "classifier_trained_on_synthetic"}
    assert any("Inception" in n for n in metrics["notes"])  # no weights offline: said, not hidden
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for needle in ("## Summary", "C_T" if "data_copying" in metrics["privacy"]["identity"] else "mmL", "TSTR"):
        assert needle in md
    assert html.count("data:image/png;base64,") == md.count("![")  # every picture embedded
    assert 'src="nearest_pairs.png"' not in html
    for name in ("nearest_pairs.png", "dcr_hist.png", "synthetic_grid.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_read_synthetic_refuses_broken_folders(tmp_path):
    with pytest.raises(DataError, match="no synthetic images"):
        read_synthetic(tmp_path)
    (tmp_path / "manifest.csv").write_text("id,file,label\ns1,images/0/s1.png,0\n")
    with pytest.raises(DataError, match="missing or unreadable"):
        read_synthetic(tmp_path)
    from PIL import Image

    (tmp_path / "images" / "0").mkdir(parents=True)
    Image.new("L", (16, 16)).save(tmp_path / "images" / "0" / "s1.png")
    images, labels, rows = read_synthetic(tmp_path)
    assert images.shape == (1, 1, 16, 16) and labels.tolist() == [0] and torch.all(images == -1)
