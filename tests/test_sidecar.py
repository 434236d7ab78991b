"""generate's private sidecar: the patients behind each image, outside the shareable folder, resumable, owned."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from tiny import crash_after

from latentwalk.errors import ConfigError
from latentwalk.pipeline import GenerateConfig, generate

TOKEN = "ZQXJV7SECRET"  # in every patient identifier, real file name and the dataset's folder name of secret_chain


def _cfg(chain, **kw) -> GenerateConfig:
    base = dict(gan=chain["gan"], guides=chain["guides"], data=chain["data"], latents=chain["latents"],
                method="linear", per_label=3, n_steps=4, paths_per_item=1, optim_steps=2, k=2,
                endpoint_filter=False, label_gate=False, gate_threshold=0.0, device="cpu")  # fmt: skip
    base.update(kw)
    return GenerateConfig.from_dict(base)


def _manifest(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def secret_chain(chain, cxr_dataset, tmp_path_factory):
    """The chain's generator and guides on a copy of the CXR phantoms whose patient identifiers, file names and
    folder all carry TOKEN (so that a byte scan cannot miss them); its training latents inverted anew."""
    import gan_zoo
    from gan_zoo.invert import InvertConfig
    from latentwalk.data import open_dataset
    from latentwalk.invert import invert_dataset
    from latentwalk.io import write_csv

    root = tmp_path_factory.mktemp("secret")
    data = root / f"{TOKEN}-dataset"
    with (cxr_dataset / "metadata.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    renamed = []
    for r in rows:
        identity = f"{TOKEN}-patient-{r['identity'][1:]}"  # p0007 -> ...-0007: the sorted order is kept
        rel = Path(r["file"]).with_name(Path(r["file"]).name.replace(r["identity"], identity)).as_posix()
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cxr_dataset / r["file"], data / rel)
        renamed.append({**r, "file": rel, "identity": identity})
    write_csv(data / "metadata.csv", list(rows[0]), renamed)
    shutil.copyfile(cxr_dataset / "dataset.json", data / "dataset.json")
    index = open_dataset(data)
    invert_dataset(gan_zoo.load(chain["gan"]), index.subset("train"), root / "lat.safetensors",
                   InvertConfig(steps=2, perceptual="none"))  # fmt: skip
    return {**chain, "data": str(data), "latents": str(root / "lat.safetensors"), "root": root,
            "identities": sorted({r.identity for r in index.records}),
            "train": sorted({r.identity for r in index.subset("train").records})}  # fmt: skip


def _assert_nothing_shareable_names_them(chain, out: Path, sidecar: Path) -> None:
    """No file under OUT (any byte) holds a patient identifier, a real file name, the dataset's path or the
    sidecar's; the sidecar (outside OUT) does hold identifiers: the scan would see them."""
    secrets = [*chain["identities"], TOKEN, chain["data"], str(chain["root"]), str(sidecar), str(sidecar.parent)]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files and any(p.name == ".latentwalk-output.json" for p in files)  # hidden files are scanned too
    for path in files:
        blob = path.read_bytes()
        found = [s for s in secrets if s.encode() in blob or s.lower().encode() in blob.lower()]
        assert not found, f"{path.relative_to(out)} holds {found}"
    assert TOKEN.encode() in sidecar.read_bytes()  # the positive control
    assert out.resolve() not in sidecar.resolve().parents


def test_ksame_plan_sidecar_names_the_members_of_each_images_groups_and_nothing_shareable_does(secret_chain, tmp_path):
    from latentwalk.invert import load_latents
    from latentwalk.ksame import KSameConfig, group_latents

    out = tmp_path / "synthetic"
    result = generate(_cfg(secret_chain, method="ksame-plan", per_label=4), out)
    sidecar = tmp_path / "synthetic.private" / "patients.json"
    side = json.loads(sidecar.read_text())
    rows = _manifest(out)
    assert rows and sorted(side["images"]) == sorted(r["id"] for r in rows)
    assert len(rows) == sum(result.written.values())
    assert side["source"] == "ksame-groups" and side["run_fingerprint"] == result.run["fingerprint"]
    assert (sidecar.stat().st_mode & 0o777) == 0o600
    # the groups, recomputed from the latents without the pipeline
    ids, ws, meta = load_latents(secret_chain["latents"])
    patients = [meta["items"][i]["identity"] for i in ids]
    groups = group_latents(ws, patients, [meta["items"][i]["label"] for i in ids], KSameConfig(k=2))
    by_label: dict[int, list[tuple[str, ...]]] = {}
    for members, label in zip(groups.group_identities, groups.group_labels, strict=True):
        by_label.setdefault(label, []).append(members)
    pair_of_path: dict[str, tuple] = {}
    for r in rows:
        t = int(r["step"]) / 3  # 4-point paths
        weights = side["images"][r["id"]]["patients"]
        assert sum(weights.values()) == pytest.approx(1.0) and side["images"][r["id"]]["t"] == pytest.approx(t)
        matches = [
            (a, b)
            for a in by_label[int(r["label"])]
            for b in by_label[int(r["label"])]
            if a != b and weights == pytest.approx({**{p: (1 - t) / len(a) for p in a}, **{p: t / len(b) for p in b}})
        ]
        assert len(matches) == 1, (r, weights)  # the members of its two groups, (1 - t)/|A| and t/|B| each
        assert pair_of_path.setdefault(r["path_id"], matches[0]) == matches[0]  # one pair per path
    _assert_nothing_shareable_names_them(secret_chain, out, sidecar)
    run = json.loads((out / "run.json").read_text())
    assert run["private_sidecar"] == {"source": "ksame-groups", "location": "<withheld>"}
    assert "private file" in (out / "DATASET_CARD.md").read_text()

    # ksame: one image per group, its members weighing 1/|group| each
    generate(_cfg(secret_chain, method="ksame", per_label=4), tmp_path / "ksame")
    side = json.loads((tmp_path / "ksame.private" / "patients.json").read_text())
    rows = _manifest(tmp_path / "ksame")
    assert rows and sorted(side["images"]) == sorted(r["id"] for r in rows)
    shown = [tuple(side["images"][r["id"]]["patients"]) for r in rows]
    for r, members in zip(rows, shown, strict=True):
        assert members in by_label[int(r["label"])]
        assert side["images"][r["id"]]["patients"] == pytest.approx({p: 1 / len(members) for p in members})
    assert len(set(shown)) == len(shown)  # every group once


def test_linear_sidecar_names_the_identity_guides_likeliest_training_patient_at_each_end(secret_chain, tmp_path):
    out, vault = tmp_path / "synthetic", tmp_path / "vault"
    generate(_cfg(secret_chain, method="linear", per_label=4), out, private_dir=vault)
    assert not (tmp_path / "synthetic.private").exists()
    sidecar = vault / "patients.json"
    side = json.loads(sidecar.read_text())
    rows = _manifest(out)
    assert rows and sorted(side["images"]) == sorted(r["id"] for r in rows) and side["source"] == "identity-guide"
    ends: dict[str, set] = {}
    for r in rows:
        entry = side["images"][r["id"]]
        t, weights = int(r["step"]) / 3, entry["patients"]
        assert set(weights) <= set(secret_chain["train"]) and 1 <= len(weights) <= 2
        assert sorted(weights.values()) == pytest.approx(sorted([1 - t, t]) if len(weights) == 2 else [1.0])
        assert len(entry["endpoint_confidence"]) == 2 and all(0 < c <= 1 for c in entry["endpoint_confidence"])
        assert ends.setdefault(r["path_id"], set(weights)) == set(weights)  # the same two ends along a path
    _assert_nothing_shareable_names_them(secret_chain, out, sidecar)


def test_the_sidecar_survives_a_resumed_run(chain, tmp_path, monkeypatch):
    import latentwalk.pipeline as pl

    cfg, out, vault = _cfg(chain), tmp_path / "resumed", tmp_path / "vault"
    generate(cfg, tmp_path / "straight")
    straight = (tmp_path / "straight.private" / "patients.json").read_bytes()
    # the same bytes but the output folder each records
    expected = straight.replace(json.dumps(str((tmp_path / "straight").resolve())).encode(),
                                json.dumps(str(out.resolve())).encode())  # fmt: skip
    assert expected != straight
    real_run, real_card = pl.run_item, pl.dataset_card
    crash_after_two = crash_after(2, real_run)

    def crash_in_the_merge(run):  # after the sidecar, before run.json
        raise KeyboardInterrupt

    monkeypatch.setattr(pl, "run_item", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        generate(cfg, out, private_dir=vault)
    assert not (vault / "patients.json").exists()
    monkeypatch.setattr(pl, "run_item", real_run)
    monkeypatch.setattr(pl, "dataset_card", crash_in_the_merge)
    with pytest.raises(KeyboardInterrupt):
        generate(cfg, out, private_dir=vault)  # resumes; dies after writing the sidecar
    assert (vault / "patients.json").is_file() and not (out / "run.json").exists()
    monkeypatch.setattr(pl, "dataset_card", real_card)
    result = generate(cfg, out, private_dir=vault)  # resumes again: replaces its own sidecar
    assert result.resumed and result.sidecar == vault / "patients.json" and result.sidecar.read_bytes() == expected
    assert generate(cfg, out, private_dir=vault).already_done  # a finished run: its sidecar stays as it is
    assert (vault / "patients.json").read_bytes() == expected
    assert not list(out.rglob("patients.json")) and not (tmp_path / "resumed.private").exists()


def test_the_sidecar_refuses_a_foreign_file_and_a_place_inside_the_output(chain, tmp_path):
    from latentwalk.generation.sidecar import write_sidecar

    cfg, out = _cfg(chain), tmp_path / "synthetic"
    foreign = tmp_path / "synthetic.private" / "patients.json"
    foreign.parent.mkdir()
    foreign.write_text("my own notes")
    with pytest.raises(ConfigError, match="exists and latentwalk did not write it") as e:
        generate(cfg, out)
    assert "\n" not in str(e.value) and foreign.read_text() == "my own notes" and not out.exists()
    with pytest.raises(ConfigError, match="did not write it"):
        generate(cfg, out, overwrite=True)  # not even with overwrite
    with pytest.raises(ConfigError, match="inside the shareable output folder"):
        generate(cfg, out, private_dir=out / "private")
    with pytest.raises(ConfigError, match="inside the shareable output folder"):
        generate(cfg, out, private_dir=out)
    with pytest.raises(ConfigError, match="lies inside the data input"):
        generate(cfg, out, private_dir=Path(chain["data"]) / "private")
    ours = tmp_path / "vault" / "patients.json"
    write_sidecar(ours, out=out, method="linear", fingerprint="0" * 64, images={})
    with pytest.raises(ConfigError, match="written by latentwalk earlier.*--overwrite"):
        generate(cfg, out, private_dir=ours.parent)  # an earlier run's sidecar of this OUT, and OUT is a new run
    assert not out.exists()


def test_a_default_private_folder_beside_a_read_only_parent_is_refused_before_any_work(chain, tmp_path, monkeypatch):
    import latentwalk.pipeline as pl

    parent = tmp_path / "readonly"
    out = parent / "synthetic"
    out.mkdir(parents=True)  # OUT itself exists and is writable; its parent, where OUT.private would go, is not
    parent.chmod(0o555)
    try:
        try:
            (parent / "probe").touch()
        except PermissionError:
            pass
        else:
            pytest.skip("chmod does not restrict this user (root)")

        def no_work(*args, **kwargs):
            raise AssertionError("the run's setup started")

        monkeypatch.setattr(pl, "_setup", no_work)
        with pytest.raises(ConfigError, match="--private-dir") as e:
            generate(_cfg(chain), out)
        message = str(e.value)
        assert "\n" not in message and f"{out}.private" in message and "private sidecar" in message
        assert not any(out.iterdir()) and not (parent / "synthetic.private").exists()
        vault = tmp_path / "vault"
        monkeypatch.undo()
        assert generate(_cfg(chain), out, private_dir=vault).sidecar == vault / "patients.json"  # the way out
    finally:
        parent.chmod(0o755)


def test_two_outputs_sharing_a_private_folder_never_replace_each_others_sidecar(chain, tmp_path, monkeypatch):
    import latentwalk.pipeline as pl
    from latentwalk.generation.sidecar import write_sidecar

    cfg, vault = _cfg(chain), tmp_path / "vault"
    first, second = tmp_path / "first", tmp_path / "second"
    real_run = pl.run_item
    monkeypatch.setattr(pl, "run_item", crash_after(1, real_run))
    with pytest.raises(KeyboardInterrupt):
        generate(cfg, second, private_dir=vault)  # the second output: unfinished, no sidecar yet
    monkeypatch.setattr(pl, "run_item", real_run)
    generate(cfg, first, private_dir=vault)  # the first output: finished, its sidecar in the shared folder
    sidecar = vault / "patients.json"
    theirs = sidecar.read_bytes()
    assert json.loads(theirs)["output"] == str(first.resolve())

    for overwrite in (False, True):  # resuming the second output, or replacing it, would replace the first's sidecar
        with pytest.raises(ConfigError, match="belongs to the output .*first.*must not share a private folder") as e:
            generate(cfg, second, overwrite=overwrite, private_dir=vault)
        assert "\n" not in str(e.value) and "--private-dir" in str(e.value)
    third = tmp_path / "third"
    with pytest.raises(ConfigError, match="belongs to the output"):
        generate(cfg, third, overwrite=True, private_dir=vault)  # a new output, even with --overwrite
    assert sidecar.read_bytes() == theirs and not (second / "run.json").exists() and not third.exists()

    # the first output's own reruns keep working: nothing to do, a replacement, a resumed run
    assert generate(cfg, first, private_dir=vault).already_done and sidecar.read_bytes() == theirs
    assert generate(cfg, first, overwrite=True, private_dir=vault).sidecar == sidecar
    assert sidecar.read_bytes() == theirs
    result = generate(cfg, second, private_dir=tmp_path / "own")  # the second resumes with a folder of its own
    assert result.resumed and json.loads(result.sidecar.read_text())["output"] == str(second.resolve())

    # a sidecar of another output that appears while a run is under way is not replaced at its end either
    fourth = tmp_path / "fourth"

    def another_run_finishes(*args, **kwargs):
        if not sidecar.exists():
            write_sidecar(sidecar, out=tmp_path / "elsewhere", method="linear", fingerprint="0" * 64, images={})
        return real_run(*args, **kwargs)

    sidecar.unlink()
    monkeypatch.setattr(pl, "run_item", another_run_finishes)
    with pytest.raises(ConfigError, match="belongs to the output .*elsewhere"):
        generate(cfg, fourth, private_dir=vault)
    assert json.loads(sidecar.read_text())["output"] == str((tmp_path / "elsewhere").resolve())
    assert not (fourth / "run.json").exists()
