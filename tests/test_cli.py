import csv
import json

import pytest
from click.testing import CliRunner

from latentwalk.cli import EXIT_USER_ERROR, cli


@pytest.fixture
def runner():
    return CliRunner()


def test_data_phantoms_writes_a_dataset_that_data_check_accepts(runner, tmp_path):
    out = tmp_path / "d"
    done = runner.invoke(
        cli,
        [
            "data",
            "phantoms",
            "--kind",
            "cxr",
            "--out",
            str(out),
            "--identities",
            "6",
            "--per-identity",
            "2",
            "--resolution",
            "32",
            "--seed",
            "3",
        ],
    )
    assert done.exit_code == 0, done.output
    assert "wrote 12 cxr phantoms of 6 patients" in done.output
    done = runner.invoke(cli, ["data", "check", str(out), "--json"])
    assert done.exit_code == 0, done.output
    summary = json.loads(done.output)
    assert summary["n_images"] == 12 and summary["n_identities"] == 6 and summary["channels"] == 1


def test_data_check_exits_2_with_one_line_naming_the_bad_file(runner, cxr_dataset, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(cxr_dataset, broken)
    victim = sorted((broken / "images").rglob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:40])  # truncated PNG
    done = runner.invoke(cli, ["data", "check", str(broken)])
    assert done.exit_code == EXIT_USER_ERROR
    assert victim.name in done.output
    assert "Traceback" not in done.output
    assert len(done.output.strip().splitlines()) == 1


def test_debug_flag_shows_the_underlying_exception(runner, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    done = runner.invoke(cli, ["--debug", "data", "check", str(empty)])
    assert done.exit_code != 0
    from latentwalk.errors import DataError

    assert isinstance(done.exception, DataError)


def test_data_split_writes_patient_disjoint_csv(runner, cxr_dataset, tmp_path):
    out = tmp_path / "splits.csv"
    done = runner.invoke(cli, ["data", "split", str(cxr_dataset), "--out", str(out), "--fractions", "0.5,0.25,0.25"])
    assert done.exit_code == 0, done.output
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 36 and {r["split"] for r in rows} == {"train", "val", "test"}
    patient_of = lambda file: file.split("/")[-1].split("_")[0]  # noqa: E731
    splits_of = {}
    for r in rows:
        splits_of.setdefault(patient_of(r["file"]), set()).add(r["split"])
    assert all(len(s) == 1 for s in splits_of.values())


def test_bad_fraction_text_is_a_user_error(runner, cxr_dataset, tmp_path):
    done = runner.invoke(
        cli, ["data", "split", str(cxr_dataset), "--out", str(tmp_path / "s.csv"), "--fractions", "seventy,30"]
    )
    assert done.exit_code == EXIT_USER_ERROR
    assert "--fractions" in done.output


def test_unknown_option_is_an_error(runner, cxr_dataset):
    done = runner.invoke(cli, ["data", "check", str(cxr_dataset), "--lables", "a,b"])
    assert done.exit_code != 0 and "No such option" in done.output


def test_demo_runs_the_main_job_end_to_end(runner, tmp_path):
    """The whole job at toy sizes: phantoms, demo generator, guides, inversion, k-same, gated PLAN, report."""
    out = tmp_path / "demo"
    done = runner.invoke(cli, ["demo", "--out", str(out), "--patients", "40", "--guide-epochs", "1",
                               "--invert-steps", "2", "--per-label", "4", "--optim-steps", "2",
                               "--eval-epochs", "1"])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "[8/8]" in done.output and "report:" in done.output
    for name in ("data-cxr/metadata.csv", "samples.png", "latents-train.safetensors", "guides/identity.json",
                 "synthetic/manifest.csv", "synthetic/run.json", "synthetic/DATASET_CARD.md", "walk_strip.png",
                 "walk_distance.png", "synthetic.png", "report.md", "demo.json", "evaluation/metrics.json",
                 "evaluation/report.html"):  # fmt: skip
        assert (out / name).is_file(), name
    run = json.loads((out / "synthetic" / "run.json").read_text())
    assert run["config"]["method"] == "ksame-plan" and run["counts"]["written"] == {"normal": 4, "tb": 4}
    report = (out / "report.md").read_text()
    assert "Round 0 of the PLAN run" in report and "![walk](walk_strip.png)" in report


def test_gan_train_cli_trains_on_the_train_split(runner, cxr_dataset, tmp_path):
    out = tmp_path / "run"
    args = ["gan", "train", "--data", str(cxr_dataset), "--out", str(out), "--resolution", "32", "--kimg", "0.008",
            "--batch", "4", "--channel-base", "128", "--channel-max", "16", "--z-dim", "8", "--w-dim", "8",
            "--snapshot-kimg", "0.008"]  # fmt: skip
    done = runner.invoke(cli, args)
    assert done.exit_code == 0, done.output
    train_images = sum(1 for line in (cxr_dataset / "metadata.csv").read_text().splitlines() if line.endswith(",train"))
    assert f"training on {train_images} images (train)" in done.output
    assert (out / "generator.safetensors").is_file() and (out / "generator.json").is_file()
    again = runner.invoke(cli, args)
    assert again.exit_code == EXIT_USER_ERROR and "--resume" in again.output


@pytest.fixture
def tiny_lite(tmp_path):
    import torch

    from gan_zoo.checkpoint import save_generator
    from gan_zoo.stylegan2 import Generator

    torch.manual_seed(0)
    G = Generator(8, 0, 8, 16, 1, mapping_kwargs={"num_layers": 1},
                  synthesis_kwargs={"channel_base": 64, "channel_max": 8})  # fmt: skip
    save_generator(G, tmp_path / "g" / "generator", {"test": True})
    return tmp_path / "g"


def test_gan_info_and_sample_read_a_lite_checkpoint(runner, tiny_lite, tmp_path):
    done = runner.invoke(cli, ["gan", "info", f"lite:{tiny_lite}", "--json"])
    assert done.exit_code == 0, done.output
    info = json.loads(done.output)
    assert info["img_resolution"] == 16 and info["z_dim"] == 8
    out_a, out_b = tmp_path / "a.png", tmp_path / "b.png"
    for out in (out_a, out_b):
        done = runner.invoke(cli, ["gan", "sample", "--gan", f"lite:{tiny_lite}", "--out", str(out), "--n", "4"])
        assert done.exit_code == 0, done.output
    assert out_a.read_bytes() == out_b.read_bytes()
    from PIL import Image

    assert Image.open(out_a).size == (4 * 17 + 1, 18)  # one row of four 16 px samples, 1 px padding


def test_unknown_generator_spec_is_a_one_line_error(runner):
    done = runner.invoke(cli, ["gan", "info", "bogus:thing"])
    assert done.exit_code == EXIT_USER_ERROR
    assert 'unknown generator spec "bogus:thing"' in done.output


def test_gan_invert_cli_writes_latents_for_the_chosen_split(runner, tiny_lite, tmp_path):
    from latentwalk.data import PhantomConfig, write_phantom_dataset

    data = tmp_path / "d16"
    write_phantom_dataset(PhantomConfig(identities=4, per_identity=1, resolution=32), data)
    # the tiny generator is 16 px; images are resized to it
    out = tmp_path / "lat.safetensors"
    args = ["gan", "invert", "--gan", f"lite:{tiny_lite}", "--data", str(data), "--out", str(out), "--steps", "3",
            "--perceptual", "ms-gradient", "--split", "all"]  # fmt: skip
    done = runner.invoke(cli, args)
    assert done.exit_code == 0, done.output
    from latentwalk.invert import load_latents

    ids, ws, meta = load_latents(out)
    assert len(ids) == 4 and ws.shape[0] == 4 and "wrote 4 latents (w)" in done.output
    again = runner.invoke(cli, args)
    assert again.exit_code == EXIT_USER_ERROR


def test_gan_convert_turns_a_pickle_into_a_lite_checkpoint_with_the_same_outputs(runner, write_nvidia_pickle, tmp_path):
    import torch

    import gan_zoo
    from gan_zoo.stylegan2 import Generator

    torch.manual_seed(0)
    G = Generator(8, 0, 8, 16, 1, mapping_kwargs={"num_layers": 1},
                  synthesis_kwargs={"channel_base": 64, "channel_max": 8}).eval()  # fmt: skip
    pkl = write_nvidia_pickle({"G": G, "G_ema": G})
    done = runner.invoke(cli, ["gan", "convert", str(pkl), "--out", str(tmp_path / "conv")])
    assert done.exit_code == 0, done.output
    converted = gan_zoo.load(f"lite:{tmp_path / 'conv'}")
    z = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(converted(z, None), G(z, None))
    meta = json.loads((tmp_path / "conv" / "generator.json").read_text())
    assert meta["provenance"]["source_sha256"] and str(tmp_path) not in json.dumps(meta)


def test_guides_train_cli_writes_both_models_and_prints_validation_accuracy(runner, cxr_dataset, tmp_path):
    out = tmp_path / "guides"
    done = runner.invoke(cli, ["guides", "train", "--data", str(cxr_dataset), "--out", str(out), "--epochs", "2"])
    assert done.exit_code == 0, done.output
    assert "identity accuracy on held-out images" in done.output and "class accuracy on validation" in done.output
    for role in ("identity", "class"):
        assert (out / f"{role}.safetensors").is_file() and (out / f"{role}.json").is_file()
    from latentwalk.guides import load_guides

    loaded = load_guides(out)
    assert loaded.contract.resolution == 32 and loaded.n_identities > 1


def test_ksame_cli_writes_centroids_that_generate_would_walk_and_the_k_check(runner, chain, tmp_path):
    """The k-same stage as a command: the file holds the same centroids generate computes, and the proof of k."""
    import json

    import torch

    import gan_zoo
    from latentwalk.data import open_dataset
    from latentwalk.ksame import KSameConfig, latent_centroids

    out = tmp_path / "ks.safetensors"
    args = ["ksame", "--gan", chain["gan"], "--data", chain["data"], "--latents", chain["latents"], "--k", "2",
            "--out", str(out), "--device", "cpu"]  # fmt: skip
    done = runner.invoke(cli, args)
    assert done.exit_code == 0, done.output
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["k_check"]["passed"] and info["k_check"]["min_patients_per_group"] >= 2
    assert min(info["grouping"]["group_patients"]) >= 2
    text = out.with_suffix(".json").read_text()
    index = open_dataset(chain["data"])
    assert not any(r.identity in text for r in index.records)  # no patient identity in the file
    assert chain["data"] not in text and chain["root"].name not in text  # nor a path
    from safetensors.torch import load_file

    stored = load_file(out)
    G = gan_zoo.load(chain["gan"])
    labels = sorted(set(stored["labels"].tolist()))
    expected, _, _ = latent_centroids(chain["latents"], G, index, labels, KSameConfig(k=2))
    for label in labels:
        assert torch.equal(stored["centroids"][stored["labels"] == label], expected[label])
    assert runner.invoke(cli, args).exit_code == EXIT_USER_ERROR  # never over an existing file without --overwrite
    assert runner.invoke(cli, [*args, "--overwrite"]).exit_code == 0
    bad = runner.invoke(cli, [*args[:-4], "--k", "1000", "--out", str(tmp_path / "k1000.safetensors")])
    assert bad.exit_code == EXIT_USER_ERROR and "k=1000" in bad.output, bad.output
