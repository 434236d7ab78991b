"""Bad-input corpus: every command refuses bad, hostile or dangerous input with exit code 2 and one line.

Each case runs the real CLI in-process and checks the same four things: exit code 2, exactly one ``Error:`` line on
stderr and no traceback, no output left behind (the output path is as it was, no staging folder beside it), and every
input byte-for-byte unchanged (SHA-256 of each file before and after).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import hostile_files as h
import pytest
from click.testing import CliRunner
from nvidia_format import write_nvidia_pickle_file

from latentwalk.cli import cli

pytestmark = pytest.mark.usefixtures("one_thread")


def _digest(path: Path) -> dict[str, str] | None:
    path = Path(path)
    if not path.exists():
        return None
    if path.is_file():
        return {"": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}  # fmt: skip


def refused(args: list[str], *, inputs=(), out: Path | None = None, match: str | None = None) -> str:
    """Run ``latentwalk ARGS``; assert the four properties above; return the error line."""
    watched = [Path(p) for p in inputs] + ([out] if out is not None else [])
    before = {p: _digest(p) for p in watched}
    siblings = set(out.parent.iterdir()) if out is not None and out.parent.exists() else set()
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    err = result.stderr.strip()
    assert err.startswith("Error: ") and "\n" not in err, err
    assert "Traceback" not in result.output
    if match is not None:
        assert match in err, err
    for path, digest in before.items():
        assert _digest(path) == digest, f"{path} changed"
    if out is not None and out.parent.exists():
        assert set(out.parent.iterdir()) == siblings, "something was left beside the output"
    return err


@pytest.fixture
def user_folder(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.txt").write_text("years of work")
    return folder


@pytest.fixture
def user_file(tmp_path):
    f = tmp_path / "notes.csv"
    f.write_text("a,b\n1,2\n")
    return f


# ------------------------------------------------------------------------------------------------ data


def test_phantoms_onto_a_file(user_file):
    refused(["data", "phantoms", "--out", user_file, "--identities", "4"], out=user_file, match="is a file")


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_phantoms_never_replace_a_folder_latentwalk_did_not_write(user_folder, overwrite):
    refused(["data", "phantoms", "--out", user_folder, "--identities", "4", *overwrite], out=user_folder,
            match="latentwalk did not write it (thesis.txt)")  # fmt: skip


def test_phantoms_under_an_unwritable_place():
    refused(["data", "phantoms", "--out", "/proc/latentwalk-x", "--identities", "4"], match="cannot write under")


def test_phantoms_with_zero_patients(tmp_path):
    refused(["data", "phantoms", "--out", tmp_path / "p", "--identities", "0"], out=tmp_path / "p")


def test_check_a_missing_path(tmp_path):
    refused(["data", "check", tmp_path / "nowhere"], match="does not exist")


def test_check_an_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    refused(["data", "check", tmp_path / "empty"], inputs=[tmp_path / "empty"])


def test_check_a_truncated_metadata_csv(cxr_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(cxr_dataset, data)
    meta = data / "metadata.csv"
    meta.write_bytes(meta.read_bytes()[:40])
    refused(["data", "check", data], inputs=[data])


def test_split_never_replaces_the_datasets_own_metadata(cxr_dataset):
    refused(["data", "split", cxr_dataset, "--out", cxr_dataset / "metadata.csv"], inputs=[cxr_dataset],
            match="inside the dataset")  # fmt: skip


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_split_never_replaces_a_file_latentwalk_did_not_write(cxr_dataset, user_file, overwrite):
    refused(["data", "split", cxr_dataset, "--out", user_file, *overwrite], inputs=[cxr_dataset], out=user_file,
            match="latentwalk did not write it")  # fmt: skip


def test_split_with_bad_fractions(cxr_dataset, tmp_path):
    refused(["data", "split", cxr_dataset, "--out", tmp_path / "s.csv", "--fractions", "a,b"], inputs=[cxr_dataset],
            out=tmp_path / "s.csv")  # fmt: skip


# ------------------------------------------------------------------------------------------------ gan files


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _hostile(kind: str, tmp_path: Path, monkeypatch) -> Path:
    makers = {
        "bytearray": lambda: h.bytearray_bomb(tmp_path / "a.pkl"),
        "storage": lambda: h.storage_bomb(tmp_path / "s.pkl"),
        "compressed": lambda: h.compressed_storage(tmp_path / "z.pkl"),
        "recursion": lambda: h.self_containing_record(tmp_path / "r.pkl"),
        "wide": lambda: h.wide_generator_record(tmp_path / "w.pkl", write_nvidia_pickle_file, monkeypatch),
        "wide-in-range": lambda: h.wide_generator_record(
            tmp_path / "v.pkl", write_nvidia_pickle_file, monkeypatch, w_dim=4000
        ),
        "stylegan3-wide": lambda: h.stylegan3_record(
            tmp_path / "w3.pkl", write_nvidia_pickle_file, monkeypatch, channel_base=1 << 24, channel_max=65536
        ),
        "stylegan3-filter": lambda: h.stylegan3_record(
            tmp_path / "f3.pkl", write_nvidia_pickle_file, monkeypatch, filter_size=10**6
        ),
        "stylegan3-payload": lambda: h.stylegan3_record(
            tmp_path / "p3.pkl", write_nvidia_pickle_file, monkeypatch, payload=h.shell_payload("exit 3")
        ),
        "empty": lambda: _write(tmp_path / "e.pkl", b""),
        "text": lambda: _write(tmp_path / "t.pkl", b"not a pickle"),
        "truncated": lambda: _write(tmp_path / "c.pkl", h.storage_bomb(tmp_path / "s2.pkl").read_bytes()[:90]),
    }
    return makers[kind]()


HOSTILE = {
    "bytearray": "bytearray",
    "storage": "declares",
    "compressed": "compressed",
    "recursion": "contains itself",
    "wide": "outside the accepted range",
    "wide-in-range": "does not match",
    "stylegan3-wide": "does not match",
    "stylegan3-filter": "filter_size must be an integer in 1..32",
    "stylegan3-payload": "system, which a StyleGAN network pickle never needs",
    "empty": "empty",
    "text": "not a binary pickle",
    "truncated": "",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_gan_info_refuses_hostile_and_broken_pickles(kind, tmp_path, monkeypatch):
    path = _hostile(kind, tmp_path, monkeypatch)
    refused(["gan", "info", f"stylegan:{path}"], inputs=[path], match=HOSTILE[kind])


def test_a_stylegan3_record_with_a_payload_runs_nothing(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    path = h.stylegan3_record(tmp_path / "p3.pkl", write_nvidia_pickle_file, monkeypatch,
                              payload=h.shell_payload(f"touch {marker}"))  # fmt: skip
    for args in (["gan", "info", f"stylegan:{path}"], ["gan", "convert", path, "--out", tmp_path / "conv"]):
        refused(args, inputs=[path], out=tmp_path / "conv", match="refused, no code from the file was run")
    assert not marker.exists()


@pytest.mark.parametrize("change", [{"w_dim": 12000}, {"w_dim": 4000}, {"z_dim": -1}, {"img_channels": "three"}])
def test_lite_checkpoints_with_hostile_architectures(change, tmp_path):
    folder = h.lite_with_architecture(tmp_path / "g", **change)
    refused(["gan", "info", f"lite:{folder}"], inputs=[folder])


def test_lite_checkpoint_with_invalid_json(tmp_path):
    folder = h.lite_with_architecture(tmp_path / "g")
    (folder / "generator.json").write_text("{ not json")
    refused(["gan", "info", f"lite:{folder}"], inputs=[folder], match="not valid JSON")


def test_convert_a_hostile_pickle_writes_nothing(tmp_path):
    bomb = h.storage_bomb(tmp_path / "s.pkl")
    refused(["gan", "convert", bomb, "--out", tmp_path / "conv"], inputs=[bomb], out=tmp_path / "conv")


def test_sample_onto_a_file_latentwalk_did_not_write(tmp_path, user_file):
    folder = h.lite_with_architecture(tmp_path / "g")
    refused(["gan", "sample", "--gan", f"lite:{folder}", "--out", user_file, "--n", "2", "--overwrite"],
            out=user_file, match="latentwalk did not write it")  # fmt: skip


def test_invert_never_writes_into_the_dataset(chain, cxr_dataset):
    out = cxr_dataset / "latents.safetensors"
    refused(["gan", "invert", "--gan", chain["gan"], "--data", cxr_dataset, "--out", out, "--steps", "1"],
            inputs=[cxr_dataset], match="inside the dataset")  # fmt: skip


def test_invert_with_the_wrong_suffix(chain, cxr_dataset, tmp_path):
    refused(["gan", "invert", "--gan", chain["gan"], "--data", cxr_dataset, "--out", tmp_path / "lat.pt"],
            inputs=[cxr_dataset], out=tmp_path / "lat.pt", match=".safetensors")  # fmt: skip


def test_train_into_a_users_folder(cxr_dataset, user_folder):
    refused(["gan", "train", "--data", cxr_dataset, "--out", user_folder, "--resolution", "32", "--overwrite"],
            inputs=[cxr_dataset], out=user_folder, match="latentwalk did not write it")  # fmt: skip


def test_train_inside_the_dataset(cxr_dataset):
    refused(["gan", "train", "--data", cxr_dataset, "--out", cxr_dataset / "run", "--resolution", "32"],
            inputs=[cxr_dataset], match="inside the dataset")  # fmt: skip


# ------------------------------------------------------------------------------------------------ guides, generate


def test_guides_never_replace_a_users_folder(cxr_dataset, user_folder):
    refused(["guides", "train", "--data", cxr_dataset, "--out", user_folder, "--resolution", "32", "--epochs", "1",
             "--overwrite"], inputs=[cxr_dataset], out=user_folder, match="latentwalk did not write it")  # fmt: skip


def test_generate_inside_the_data(chain, cxr_dataset):
    refused(["generate", "--gan", chain["gan"], "--guides", chain["guides"], "--data", cxr_dataset, "--method",
             "linear", "--out", cxr_dataset / "synthetic"], inputs=[cxr_dataset, chain["guides"]],
            match="inside the data input")  # fmt: skip


def test_generate_with_images_of_the_wrong_channel_count(chain, fundus_dataset, tmp_path):
    refused(["generate", "--gan", chain["gan"], "--guides", chain["guides"], "--data", fundus_dataset, "--method",
             "linear", "--per-label", "2", "--out", tmp_path / "syn"], inputs=[fundus_dataset, chain["guides"]],
            out=tmp_path / "syn")  # fmt: skip


def test_generate_with_an_unknown_config_key(chain, tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('metod = "plan"\n')
    refused(["generate", "--config", toml, "--out", tmp_path / "syn"], inputs=[toml], out=tmp_path / "syn",
            match="metod")  # fmt: skip


def test_generate_with_a_guides_folder_missing_a_model(chain, tmp_path):
    guides = tmp_path / "guides"
    shutil.copytree(chain["guides"], guides)
    (guides / "class.safetensors").unlink()
    refused(["generate", "--gan", chain["gan"], "--guides", guides, "--data", chain["data"], "--method", "linear",
             "--out", tmp_path / "syn"], inputs=[guides, chain["data"]], out=tmp_path / "syn")  # fmt: skip


# ------------------------------------------------------------------------------------------------ walk, evaluate, demo


def test_walk_inside_the_dataset(chain, cxr_dataset):
    refused(["walk", "--gan", chain["gan"], "--guides", chain["guides"], "--data", cxr_dataset, "--label", "0",
             "--out", cxr_dataset / "walk"], inputs=[cxr_dataset], match="inside the dataset")  # fmt: skip


def test_evaluate_inside_the_real_dataset(cxr_dataset, tmp_path):
    syn = tmp_path / "syn" / "images" / "0"
    syn.mkdir(parents=True)
    refused(["evaluate", "--real", cxr_dataset, "--synthetic", tmp_path / "syn", "--out", cxr_dataset / "report"],
            inputs=[cxr_dataset, tmp_path / "syn"], match="inside the real dataset")  # fmt: skip


def test_evaluate_an_empty_synthetic_folder(cxr_dataset, tmp_path):
    (tmp_path / "syn").mkdir()
    refused(["evaluate", "--real", cxr_dataset, "--synthetic", tmp_path / "syn", "--out", tmp_path / "report"],
            inputs=[cxr_dataset, tmp_path / "syn"], out=tmp_path / "report")  # fmt: skip


def test_demo_never_replaces_a_users_folder(user_folder):
    refused(["demo", "--out", user_folder, "--overwrite"], out=user_folder, match="latentwalk did not write it")


def test_weights_fetch_of_an_unknown_file(tmp_path):
    refused(["weights", "fetch", "nope", "--dest", tmp_path / "w"], out=tmp_path / "w", match="unknown weights")


def test_unknown_option_is_one_line():
    refused(["data", "phantoms", "--bogus"], match="No such option")


def test_the_corpus_has_at_least_thirty_cases():
    import sys

    module = sys.modules[__name__]
    cases = 0
    for name in dir(module):
        fn = getattr(module, name)
        if name.startswith("test_") and name != "test_the_corpus_has_at_least_thirty_cases":
            marks = [m for m in getattr(fn, "pytestmark", []) if m.name == "parametrize"]
            cases += len(marks[0].args[1]) if marks else 1
    assert cases >= 30, cases


def test_demo_refuses_an_unknown_inversion_space_before_writing(tmp_path):
    from latentwalk.demo import DemoConfig, run_demo
    from latentwalk.errors import ConfigError

    with pytest.raises(ConfigError, match='unknown inversion space "q"; expected one of w, w\\+, z'):
        run_demo(tmp_path / "demo", DemoConfig(invert_space="q"))
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("weight", [-1.0, float("nan"), "3", True])
def test_demo_refuses_a_bad_privacy_weight_before_writing(tmp_path, weight):
    from latentwalk.demo import DemoConfig, run_demo
    from latentwalk.errors import ConfigError

    with pytest.raises(ConfigError, match="privacy_weight must be a number >= 0"):
        run_demo(tmp_path / "demo", DemoConfig(privacy_weight=weight))
    assert not (tmp_path / "demo").exists()
