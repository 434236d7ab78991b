"""latentwalk generate: methods, the privacy gate, resume after kill -9, torchrun sharding, config, errors."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from tiny import crash_after
from tiny import tiny_generator as _tiny_generator

from latentwalk.errors import ConfigError, DataError
from latentwalk.pipeline import MANIFEST_COLUMNS, GateConfig, GenerateConfig, generate, load_config_file, parse_keep

REPO = Path(__file__).resolve().parents[1]


def _cfg(chain, **kw) -> GenerateConfig:
    base = dict(gan=chain["gan"], guides=chain["guides"], data=chain["data"], latents=chain["latents"],
                method="plan", per_label=4, n_steps=4, paths_per_item=1, optim_steps=2, k=2,
                endpoint_filter=False, label_gate=False, device="cpu")  # fmt: skip
    base.update(kw)
    return GenerateConfig.from_dict(base)


def _read_manifest(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _same_dataset(a: Path, b: Path) -> None:
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    for name in fa:
        if name == "run.json":
            ra, rb = json.loads(fa[name]), json.loads(fb[name])
            ra.pop("execution"), rb.pop("execution")
            assert ra == rb
        else:
            assert fa[name] == fb[name], name


@pytest.mark.parametrize("method", ["linear", "plan", "ksame", "ksame-plan"])
def test_each_method_writes_a_loadable_dataset_without_real_identifiers(chain, tmp_path, method):
    from torchvision.datasets import ImageFolder

    from latentwalk.data import open_dataset

    out = tmp_path / "out"
    result = generate(_cfg(chain, method=method, gate_threshold=0.0), out)
    rows = _read_manifest(out)
    assert list(rows[0]) == list(MANIFEST_COLUMNS)
    if method == "ksame":  # one image per group, at most per_label
        assert result.written == {n: min(g, 4) for n, g in _groups_per_label(result.run).items()}
    elif method == "ksame-plan":  # each pair of groups walked once: 2 interior points per 4-point path
        assert result.written == {n: min(g * (g - 1), 4) for n, g in _groups_per_label(result.run).items()}
    else:
        assert result.written == {"normal": 4, "tb": 4}
    assert len(rows) == sum(result.written.values())
    assert {r["method"] for r in rows} == {method}
    for r in rows:
        assert (out / r["file"]).is_file() and r["file"] == f"images/{r['label']}/{r['id']}.png"
        assert float(r["nearest_real_distance"]) >= 0 and r["gate"] == "pass"
    folder = ImageFolder(str(out / "images"))
    assert len(folder) == len(rows)
    assert sorted({folder.classes[t] for _, t in folder.samples}) == sorted({r["label"] for r in rows})
    steps = {int(r["step"]) for r in rows}
    assert steps <= ({0} if method == "ksame" else {1, 2})  # interior points of 4-point paths
    # privacy: no real file name, patient id or dataset path anywhere in the output
    index = open_dataset(chain["data"])
    secrets = {r.identity for r in index.records} | {r.file.name for r in index.records}
    secrets |= {chain["data"], chain["latents"], chain["guides"], str(chain["root"])}
    text = "\n".join(b.decode("latin-1") for b in _files(out).values())
    assert not [s for s in secrets if s in text]
    assert not (out / ".work").exists()
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["data"] == "<withheld>" and run["config"]["gan"] == "lite:<withheld>"
    assert method in (out / "DATASET_CARD.md").read_text()


def test_gate_rejects_near_copies_and_counts_them(chain, tmp_path):
    import gan_zoo
    from latentwalk.data import open_dataset
    from latentwalk.gate import build_gate
    from latentwalk.guides import load_guides
    from latentwalk.pipeline import real_reference

    G = gan_zoo.load(chain["gan"])
    guides = load_guides(chain["guides"])
    real, patients = real_reference(open_dataset(chain["data"]), G)
    for space in ("identity", "ssim"):
        gate = build_gate(space, real, patients, guides=guides, percentile=10)
        assert gate.derived and gate.threshold > 0
        assert gate.threshold == pytest.approx(float(torch.quantile(gate.real_nn, 0.10)), rel=1e-5)
        d = gate.distances(real[:5])  # real images themselves: distance 0 to the reference
        assert d.abs().max() < 1e-5 and not gate.accept(d).any()
    out = tmp_path / "strict"
    result = generate(_cfg(chain, method="linear", gate_threshold=1e9, max_rounds=2), out)
    assert result.written == {"normal": 0, "tb": 0}
    assert result.rejected["normal"] > 0 and result.rejected["tb"] > 0
    assert not list(out.rglob("*.png"))
    assert _read_manifest(out) == []
    assert "Fewer images than wanted" in (out / "DATASET_CARD.md").read_text()


def test_gate_rounds_top_up_labels_after_rejections(chain, tmp_path):
    """A threshold between the candidates' distances rejects some; later rounds make up the count."""
    loose = generate(_cfg(chain, method="linear", per_label=6, gate_threshold=0.0), tmp_path / "loose")
    dists = sorted(float(r["nearest_real_distance"]) for r in _read_manifest(tmp_path / "loose"))
    threshold = dists[len(dists) // 3]
    gated = generate(_cfg(chain, method="linear", per_label=6, gate_threshold=threshold, max_rounds=6),
                     tmp_path / "gated")  # fmt: skip
    rows = _read_manifest(tmp_path / "gated")
    assert all(float(r["nearest_real_distance"]) >= threshold for r in rows)
    assert sum(gated.rejected.values()) > 0
    assert gated.written == {"normal": 6, "tb": 6} and gated.run["counts"]["rounds"] > 1
    assert loose.run["counts"]["rounds"] == 1


def test_resume_refuses_changed_config_and_finishes_identically(chain, tmp_path, monkeypatch):
    import latentwalk.pipeline as pl

    cfg = _cfg(chain, per_label=3)
    generate(cfg, tmp_path / "straight")
    real_run = pl.run_item
    crash_after_two = crash_after(2, real_run)

    monkeypatch.setattr(pl, "run_item", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        generate(cfg, tmp_path / "resumed")
    monkeypatch.setattr(pl, "run_item", real_run)
    assert len(list((tmp_path / "resumed" / ".work" / "items").iterdir())) == 2
    with pytest.raises(ConfigError, match=r"unfinished run .* different settings \(per_label\)"):
        generate(replace(cfg, per_label=4), tmp_path / "resumed")
    result = generate(cfg, tmp_path / "resumed")
    assert result.resumed
    _same_dataset(tmp_path / "straight", tmp_path / "resumed")
    again = generate(cfg, tmp_path / "resumed")
    assert again.already_done
    with pytest.raises(ConfigError, match="holds a finished run made with other settings"):
        generate(replace(cfg, seed=1), tmp_path / "resumed")
    generate(replace(cfg, seed=1), tmp_path / "resumed", overwrite=True)


def _toml(chain, out: Path, **extra) -> Path:
    values = dict(gan=chain["gan"], guides=chain["guides"], data=chain["data"], latents=chain["latents"],
                  method="plan", per_label=6, n_steps=4, paths_per_item=1, optim_steps=30, k=2,
                  endpoint_filter=False, label_gate=False, device="cpu", out=str(out))  # fmt: skip
    values.update(extra)
    from latentwalk.generation.config import TABLES

    home = {field: (table, key) for table, keys in TABLES.items() for key, field in keys.items()}
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items() if k not in home]
    for table in TABLES:  # the walk's, grouping's and gate's options in their tables
        rows = [f"{home[k][1]} = {json.dumps(v)}" for k, v in values.items() if home.get(k, ("",))[0] == table]
        lines += [f"[{table}]", *rows] if rows else []
    path = out.parent / f"{out.name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "latentwalk", "--quiet", *args]


def test_kill_9_mid_run_then_rerun_gives_the_same_files(chain, tmp_path):
    straight = _toml(chain, tmp_path / "straight")
    subprocess.run(_cli("generate", "--config", str(straight)), env=_env(), check=True, timeout=300)
    killed_cfg = _toml(chain, tmp_path / "killed")
    items = tmp_path / "killed" / ".work" / "items"
    proc = subprocess.Popen(_cli("generate", "--config", str(killed_cfg)), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if items.is_dir() and len([p for p in items.iterdir() if p.suffix == ".safetensors"]) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed; give it more work"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "run.json").exists()
    done = subprocess.run(_cli("generate", "--config", str(killed_cfg)), env=_env(), capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stdout
    _same_dataset(tmp_path / "straight", tmp_path / "killed")


def test_torchrun_two_processes_equal_one(chain, tmp_path):
    one = _toml(chain, tmp_path / "one", optim_steps=3)
    subprocess.run(_cli("generate", "--config", str(one)), env=_env(), check=True, timeout=300)
    two = _toml(chain, tmp_path / "two", optim_steps=3)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "latentwalk", "--quiet", "generate", "--config", str(two)]  # fmt: skip
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    _same_dataset(tmp_path / "one", tmp_path / "two")
    run = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run["execution"]["processes"] == 2


def test_config_file_flags_and_round_trip(chain, tmp_path):
    from click.testing import CliRunner

    from latentwalk.cli import cli

    toml = tmp_path / "sub" / "run.toml"
    toml.parent.mkdir()
    (tmp_path / "sub" / "guides").symlink_to(chain["guides"])
    toml.write_text('guides = "guides"\ngan-spec = "x"\n')
    with pytest.raises(ConfigError, match="gan_spec"):
        load_config_file(toml)
    toml.write_text('guides = "guides"\nper-label = 7\nweights = [0.2, 1, 1]\n')
    with pytest.raises(ConfigError, match=r"weights belongs in the \[plan\] table now; write \[plan\] weights"):
        load_config_file(toml)
    toml.write_text('guides = "guides"\nksame_method = "kmeans"\n')
    with pytest.raises(ConfigError, match=r"ksame_method belongs in the \[ksame\] table now; write \[ksame\] method"):
        load_config_file(toml)
    toml.write_text('guides = "guides"\n[walk]\nlr = 1\n')
    with pytest.raises(ConfigError, match=r"unknown table \[walk\]"):
        load_config_file(toml)
    toml.write_text('guides = "guides"\n[gate]\ngate_space = "ssim"\n')
    with pytest.raises(ConfigError, match=r"unknown option 'gate_space' in \[gate\]"):
        load_config_file(toml)
    toml.write_text('guides = "guides"\nper-label = 7\nout = "synth"\n[plan]\nweights = [0.2, 1, 1]\n'
                    '[ksame]\nmethod = "kmeans"\n[gate]\nspace = "ssim"\n')  # fmt: skip
    values = load_config_file(toml)
    assert (values["ksame_method"], values["gate_space"]) == ("kmeans", "ssim")
    assert values["guides"] == str((tmp_path / "sub" / "guides").resolve())
    cfg = GenerateConfig.from_dict({k: v for k, v in values.items() if k != "out"})
    assert cfg.per_label == 7 and cfg.plan.weights == (0.2, 1.0, 1.0)
    assert GenerateConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    # flags override the file; the resolved config lands in run.json
    full = _toml(chain, tmp_path / "cli", per_label=5, optim_steps=1)
    done = CliRunner().invoke(cli, ["generate", "--config", str(full), "--per-label", "2", "--weights", "0.3,1,1"])
    assert done.exit_code == 0, done.output
    run = json.loads((tmp_path / "cli" / "run.json").read_text())
    assert run["config"]["per_label"] == 2 and run["config"]["weights"] == [0.3, 1.0, 1.0]
    assert run["config"]["optim_steps"] == 1 and run["counts"]["written"] == {"normal": 2, "tb": 2}
    assert "wrote 4 images" in done.output


def test_parse_keep():
    assert parse_keep("interior", 5) == (1, 2, 3)
    assert parse_keep("all", 3) == (0, 1, 2)
    assert parse_keep("3,1", 5) == (1, 3)
    for bad in ("1,1", "5", "x", ""):
        with pytest.raises(ConfigError):
            parse_keep(bad, 5)


def test_config_errors():
    with pytest.raises(ConfigError, match="method"):
        GenerateConfig(method="walk")
    with pytest.raises(ConfigError, match="per_label"):
        GenerateConfig(per_label=0)
    with pytest.raises(ConfigError, match="keep"):
        GenerateConfig(keep="0,10")
    with pytest.raises(ConfigError, match="gate_threshold"):
        GateConfig(threshold=-1.0)
    with pytest.raises(ConfigError, match="guides is required"):
        GenerateConfig(data="x").check_inputs()
    with pytest.raises(ConfigError, match="latents"):
        GenerateConfig(data="x", guides="y", method="ksame").check_inputs()


def test_nested_config_and_its_flat_record():
    from latentwalk.ksame import KSameConfig
    from latentwalk.paths import PlanConfig

    plan, ksame = PlanConfig(n_steps=6, optim_steps=3, weights=(2, 1, 1)), KSameConfig(k=3, method="kmeans")
    nested = GenerateConfig(plan=plan, ksame=ksame, gate=GateConfig(space="ssim", split="all"))
    flat = GenerateConfig.from_dict({"n_steps": 6, "optim_steps": 3, "weights": [2, 1, 1], "k": 3,
                                     "ksame_method": "kmeans", "gate_space": "ssim", "gate_split": "all"})  # fmt: skip
    assert nested == flat and GenerateConfig.from_dict(nested.to_dict()) == nested
    # the record run.json holds and a resume compares: the flat names of the flags, in their order
    assert list(nested.to_dict()) == [
        "gan", "guides", "data", "layout", "latents", "method", "per_label", "n_steps", "keep", "paths_per_item",
        "seed", "truncation_psi", "endpoint_filter", "optim_steps", "lr", "weights", "chunk", "k", "ksame_method",
        "ksame_spread", "gate_space", "gate_threshold", "gate_percentile", "gate_split", "label_gate",
        "label_threshold", "label_percentile", "max_rounds", "device", "amp",
    ]  # fmt: skip
    assert nested.to_dict()["gate_space"] == "ssim" and nested.to_dict()["k"] == 3
    # each nested config checks its own fields; generate refuses options it would ignore
    with pytest.raises(ConfigError, match="n_steps must be >= 3"):
        GenerateConfig.from_dict({"n_steps": 2})
    with pytest.raises(ConfigError, match="leave chunk at the default"):
        GenerateConfig(plan=PlanConfig(chunk=8))
    with pytest.raises(ConfigError, match="leave max_iter at the default"):
        GenerateConfig(ksame=KSameConfig(max_iter=3))
    with pytest.raises(ConfigError, match="gate must be a GateConfig"):
        GenerateConfig(gate={"space": "ssim"})
    with pytest.raises(ConfigError, match=r"unknown generate option\(s\) \['gate'\]"):
        GenerateConfig.from_dict({"gate": {"space": "ssim"}})
    with pytest.raises(ConfigError, match="gate_space"):
        GateConfig(space="pixels")


def test_the_walk_options_of_issue_18_are_flat_recorded_only_when_set_and_reach_the_walk(chain, tmp_path, monkeypatch):
    from latentwalk import paths
    from latentwalk.paths import PlanConfig

    default = GenerateConfig()
    assert (default.plan.optim_steps, default.plan.lr, default.plan.schedule) == (50, 0.1, "constant")  # the knee
    assert not {"lr_schedule", "warmup_steps", "path_init", "early_stop_plateau"} & set(default.to_dict())
    options = {"lr_schedule": "cosine", "warmup_steps": 2, "path_init": "slerp", "early_stop_plateau": 0.01}
    cfg = _cfg(chain, **options, amp=True)
    assert (cfg.plan.schedule, cfg.plan.warmup_steps, cfg.plan.init, cfg.plan.early_stop_plateau) == (
        "cosine", 2, "slerp", 0.01)  # fmt: skip
    assert {k: cfg.to_dict()[k] for k in options} == options and GenerateConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="leave early_stop_id_prob at the default"):
        GenerateConfig(plan=PlanConfig(early_stop_id_prob=0.5))
    seen = []
    real = paths.plan_paths
    monkeypatch.setattr(paths, "plan_paths", lambda *a, **k: seen.append(a[6]) or real(*a, **k))
    result = generate(cfg, tmp_path / "out")  # bfloat16 autocast on the CPU, asked for
    assert result.run["config"]["amp"] is True and sum(result.written.values()) == 8
    walked = {(c.schedule, c.warmup_steps, c.init, c.early_stop_plateau, c.amp) for c in seen}
    assert walked == {("cosine", 2, "slerp", 0.01, True)}


def test_generate_flags_and_toml_set_the_walk_options(monkeypatch, tmp_path):
    from click.testing import CliRunner

    import latentwalk.pipeline
    from latentwalk.cli import cli

    seen = []

    class Done:
        already_done = True

    monkeypatch.setattr(latentwalk.pipeline, "generate", lambda cfg, out, **kw: seen.append(cfg) or Done())
    args = ["generate", "--out", str(tmp_path / "out"), "--lr-schedule", "cosine", "--warmup-steps", "3",
            "--path-init", "slerp", "--early-stop-plateau", "0.02", "--amp"]  # fmt: skip
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    plan = seen[0].plan
    assert (plan.schedule, plan.warmup_steps, plan.init, plan.early_stop_plateau, seen[0].amp) == (
        "cosine", 3, "slerp", 0.02, True)  # fmt: skip
    toml = tmp_path / "run.toml"
    toml.write_text('[plan]\nschedule = "cosine"\ninit = "slerp"\nwarmup_steps = 4\nearly_stop_plateau = 0.05\n')
    cfg = GenerateConfig.from_dict(load_config_file(toml))
    assert (cfg.plan.schedule, cfg.plan.init, cfg.plan.warmup_steps, cfg.plan.early_stop_plateau) == (
        "cosine", "slerp", 4, 0.05)  # fmt: skip
    done = CliRunner().invoke(cli, ["generate", "--out", str(tmp_path / "out"), "--lr-schedule", "step"])
    assert done.exit_code != 0 and "cosine" in done.output


def test_input_mismatches_are_clear_errors(chain, cxr_dataset, fundus_dataset, tmp_path):
    from gan_zoo.checkpoint import save_generator
    from gan_zoo.invert import InvertConfig
    from latentwalk.data import open_dataset
    from latentwalk.invert import invert_dataset

    out = tmp_path / "out"
    # generator larger than the real images (32 px): guides contract and dataset size both disagree
    save_generator(_tiny_generator(64), tmp_path / "g64" / "generator", {})
    with pytest.raises(ConfigError, match="guides do not match the generator"):
        generate(_cfg(chain, gan=f"lite:{tmp_path / 'g64'}"), out)
    # guides of another dataset: identity count and label names differ
    with pytest.raises(ConfigError, match="guides do not match|patients"):
        generate(_cfg(chain, data=str(fundus_dataset)), out)
    # same labels, fewer training patients than the guides know
    small = tmp_path / "small"
    from latentwalk.data.phantoms import PhantomConfig, write_phantom_dataset

    write_phantom_dataset(PhantomConfig(kind="cxr", identities=8, per_identity=3, resolution=32, seed=3), small)
    with pytest.raises(ConfigError, match="knows .* patients but the dataset has"):
        generate(_cfg(chain, data=str(small)), out)
    # latents inverted with another generator
    other = tmp_path / "other.safetensors"
    invert_dataset(_tiny_generator(seed=1), open_dataset(cxr_dataset).subset("train"), other,
                   InvertConfig(steps=1, perceptual="none"))  # fmt: skip
    with pytest.raises(ConfigError, match="another generator"):
        generate(_cfg(chain, method="ksame-plan", latents=str(other)), out)
    # too few k-same groups for ksame-plan
    with pytest.raises(DataError, match="k-same group"):
        generate(_cfg(chain, method="ksame-plan", k=3), out)
    # output folder holding something else; unwritable output
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        generate(_cfg(chain), foreign)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot write"):  # works as root too, unlike a read-only folder
        generate(_cfg(chain), blocker / "out")
    assert not out.exists()


def test_real_images_smaller_than_the_generator_are_refused(cxr_dataset):
    from latentwalk.data import open_dataset
    from latentwalk.pipeline import _check_dataset_size

    _check_dataset_size(open_dataset(cxr_dataset), 32)
    with pytest.raises(ConfigError, match=r"smaller than the generator's 64 px \(e.g. 32x32\)"):
        _check_dataset_size(open_dataset(cxr_dataset), 64)


def test_walk_command_writes_strip_plot_and_json(chain, tmp_path):
    from click.testing import CliRunner

    from latentwalk.cli import cli

    out = tmp_path / "walk"
    done = CliRunner().invoke(cli, ["walk", "--gan", chain["gan"], "--guides", chain["guides"], "--data",
                                    chain["data"], "--label", "1", "--seed", "3", "--out", str(out),
                                    "--n-steps", "6", "--optim-steps", "3", "--device", "cpu",
                                    "--no-endpoint-filter"])  # fmt: skip
    assert done.exit_code == 0, done.output
    record = json.loads((out / "walk.json").read_text())
    assert len(record["distances"]["linear"]) == 6 and len(record["distances"]["plan"]) == 6
    assert record["distances"]["linear"][0] == pytest.approx(record["distances"]["plan"][0], abs=1e-5)
    for name in ("walk_strip.png", "walk_distance.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "below the gate threshold" in done.output


def test_ksame_plan_walks_each_centroid_pair_once(chain, tmp_path):
    """Two groups per label make one pair: one path, its interior points, no repeated image however many are asked."""
    import hashlib

    cfg = _cfg(chain, method="ksame-plan", per_label=50, n_steps=5, k=2, gate_threshold=0.0, paths_per_item=2)
    result = generate(cfg, tmp_path / "o")
    n_pairs = {name: g * (g - 1) // 2 for name, g in _groups_per_label(result.run).items()}
    assert result.written == {name: min(50, p * 3) for name, p in n_pairs.items()}  # 3 interior points per path
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "o").rglob("*.png")]
    assert len(digests) == len(set(digests)) == sum(result.written.values())
    assert "each pair of k-same groups is walked once" in (tmp_path / "o" / "DATASET_CARD.md").read_text()


def _groups_per_label(run: dict) -> dict[str, int]:
    names = run["label_names"]
    return {name: run["ksame"]["group_labels"].count(i) for i, name in enumerate(names)}


def test_cli_without_config_file_and_overwrite_only_replaces_our_runs(chain, tmp_path):
    from click.testing import CliRunner

    from latentwalk.cli import cli

    out = tmp_path / "plain"
    args = ["generate", "--gan", chain["gan"], "--guides", chain["guides"], "--data", chain["data"], "--method",
            "linear", "--per-label", "2", "--no-endpoint-filter", "--device", "cpu", "--out", str(out)]  # fmt: skip
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    assert oct((out / "manifest.csv").stat().st_mode & 0o777) != "0o600"  # readable like any file the user writes
    again = CliRunner().invoke(cli, [*args, "--seed", "1", "--overwrite"])
    assert again.exit_code == 0, again.output
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    refused = CliRunner().invoke(cli, [*args[:-1], str(foreign), "--overwrite"])
    assert refused.exit_code == 2 and "latentwalk did not write it" in refused.output
    assert (foreign / "notes.txt").read_text() == "keep me"
    inside = CliRunner().invoke(cli, [*args[:-1], str(Path(chain["data"]) / "synthetic")])
    assert inside.exit_code == 2 and "inside the data input" in inside.output


def test_a_work_folder_killed_before_its_first_record_is_started_over(chain, tmp_path):
    out = tmp_path / "o"
    (out / ".work" / "items").mkdir(parents=True)  # killed between mkdir and the config record
    result = generate(_cfg(chain, per_label=2), out)
    assert not result.resumed and sum(result.written.values()) == 4


def _phase_worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from latentwalk.errors import DistributedError
    from latentwalk.generation.world import World as _World

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    world = _World(rank, 2, rank)
    try:
        with world.phase("merge"):
            if rank == 1:
                raise DataError("disk full")
        Path(out, f"{rank}.txt").write_text("passed")
    except DistributedError as e:
        Path(out, f"{rank}.txt").write_text(f"DistributedError: {e}")
    except DataError as e:
        Path(out, f"{rank}.txt").write_text(f"own: {e}")
    finally:
        dist.destroy_process_group()


def test_a_failed_rank_stops_every_rank_with_its_name(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_phase_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    assert (tmp_path / "1.txt").read_text() == "own: disk full"
    assert (tmp_path / "0.txt").read_text() == (
        "DistributedError: rank 1 failed during merge, so every rank stopped: disk full"
    )


def test_torchrun_stops_every_rank_when_the_lead_refuses_the_output(chain, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("keep")
    cfg = _toml(chain, mine, optim_steps=1)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "latentwalk", "--quiet", "generate", "--config", str(cfg), "--overwrite"]  # fmt: skip
    env = {**_env(), "LATENTWALK_DIST_TIMEOUT": "900"}  # a rank left waiting would hit the 300 s limit below
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "rank 0 failed during setup, so every rank stopped: output folder" in done.stderr, done.stderr[-2000:]
    assert [p.name for p in mine.iterdir()] == ["thesis.txt"] and (mine / "thesis.txt").read_text() == "keep"


def test_label_gate_writes_only_images_whose_label_the_class_guide_confirms(chain, tmp_path):
    import numpy as np

    from latentwalk.data import load_tensors, open_dataset
    from latentwalk.guides import load_guides

    guides = load_guides(chain["guides"])
    index = open_dataset(chain["data"])
    vx, vy = load_tensors(index.subset("val"), 32, channels=1)
    with torch.no_grad():
        p_true = torch.softmax(guides.classifier(vx).double(), 1)[torch.arange(len(vy)), vy]
    expected = round(float(np.percentile(p_true.numpy(), 50.0)), 6)
    result = generate(_cfg(chain, method="linear", per_label=3, label_gate=True, label_percentile=50.0,
                           gate_threshold=0.0, max_rounds=2), tmp_path / "o")  # fmt: skip
    lg = result.run["label_gate"]
    assert lg == {"threshold": expected, "derived": True, "percentile": 50.0, "split": "val",
                  "real_images": len(vy)}  # fmt: skip
    rows = _read_manifest(tmp_path / "o")
    assert rows, "nothing written"
    for row in rows:  # every written PNG, read back, passes the recorded threshold
        img = torch.from_numpy(np.array(__import__("PIL.Image").Image.open(tmp_path / "o" / row["file"])))
        x = img.float()[None, None] / 127.5 - 1
        with torch.no_grad():
            p = torch.softmax(guides.classifier(x).double(), 1)[0, int(row["label"])]
        assert float(p) >= lg["threshold"] - 1e-9
    counts = result.run["counts"]
    assert sum(counts["rejected_by_label_gate"].values()) > 0  # the median threshold rejects about half
    assert counts["by_round"][0]["rejected_by_label_gate"] is not None
    card = (tmp_path / "o" / "DATASET_CARD.md").read_text()
    assert "Label gate" in card and "off-label" in card
    off = generate(_cfg(chain, method="linear", per_label=3, label_gate=True, label_threshold=0.0,
                        gate_threshold=0.0), tmp_path / "p")  # fmt: skip
    assert sum(off.run["counts"]["rejected_by_label_gate"].values()) == 0
    assert off.run["label_gate"]["derived"] is False


def test_run_json_and_card_report_diversity_relative_to_the_real_set(chain, tmp_path):
    from latentwalk.data import load_tensors, open_dataset
    from latentwalk.distances import mean_pairwise_distance

    result = generate(_cfg(chain, method="linear", per_label=4, gate_threshold=0.0), tmp_path / "o")
    div = result.run["diversity"]
    real, _ = load_tensors(open_dataset(chain["data"]).subset("train"), 32, channels=1)
    assert div["real"] == pytest.approx(mean_pairwise_distance(real), rel=1e-5)
    rows = _read_manifest(tmp_path / "o")
    import numpy as np
    from PIL import Image

    written = torch.stack([torch.from_numpy(np.array(Image.open(tmp_path / "o" / r["file"])))[None] for r in rows])
    assert div["synthetic"] == pytest.approx(mean_pairwise_distance(written.float() / 127.5 - 1), rel=1e-5)
    assert div["ratio"] == pytest.approx(div["synthetic"] / div["real"], rel=1e-4)
    assert "Diversity: mean pairwise pixel distance" in (tmp_path / "o" / "DATASET_CARD.md").read_text()


@pytest.mark.parametrize("method", ["plan", "ksame-plan"])
def test_a_class_conditional_generator_runs_end_to_end(chain, cxr_dataset, tmp_path, method):
    """c_dim > 0 through inversion (each image from its label's mean w), endpoints (drawn with the path's label)
    and generation."""
    from gan_zoo.checkpoint import save_generator
    from gan_zoo.invert import InvertConfig
    from gan_zoo.stylegan2 import Generator
    from latentwalk.data import open_dataset
    from latentwalk.invert import invert_dataset, load_latents

    torch.manual_seed(0)
    G = Generator(8, 2, 8, 32, 1, mapping_kwargs={"num_layers": 1},
                  synthesis_kwargs={"channel_base": 64, "channel_max": 8}).eval()  # fmt: skip
    save_generator(G, tmp_path / "g" / "generator", {"test": True})
    lat = tmp_path / "lat.safetensors"
    invert_dataset(G, open_dataset(cxr_dataset).subset("train"), lat, InvertConfig(steps=2, perceptual="none"))
    _, _, meta = load_latents(lat)
    cfg = _cfg(chain, gan=f"lite:{tmp_path / 'g'}", latents=str(lat), method=method, per_label=2, gate_threshold=0.0)
    result = generate(cfg, tmp_path / "o")
    assert result.written == {"normal": 2, "tb": 2}
    assert meta["config"]["steps"] == 2


def test_collapsed_guides_are_named_when_the_identity_gate_is_fitted(monkeypatch):
    import latentwalk.gate as gate_module

    monkeypatch.setattr(gate_module, "_embedder", lambda *a: lambda x: torch.zeros(x.shape[0], 8))
    real = torch.rand(6, 1, 16, 16) * 2 - 1
    with pytest.raises(DataError, match="maps 6 of 6 real images to zero, .* the guides have collapsed; retrain them"):
        gate_module.build_gate("identity", real, ["a", "b", "c"] * 2, guides=object())


def test_a_gate_that_cannot_tell_patients_apart_says_so(chain, tmp_path):
    """The gate's own check on real images: near-identical images per patient pass, patient-blind noise fails, and
    generate warns and writes the failure into the card (issue 13, item 6)."""
    from latentwalk.gate import build_gate

    gen = torch.Generator().manual_seed(0)
    base = torch.rand(6, 1, 32, 32, generator=gen) * 2 - 1
    twins = torch.cat([base, (base + 0.01).clamp(-1, 1)])  # two near-identical images per patient
    patients = [f"p{i}" for i in range(6)] * 2
    good = build_gate("ssim", twins, patients)
    assert good.same_patient_nearest == 1.0 and good.passes_self_check and good.self_checked == 12
    noise = torch.rand(12, 1, 32, 32, generator=gen) * 2 - 1  # a patient's two images share nothing
    blind = build_gate("ssim", noise, patients)
    assert blind.same_patient_nearest < 0.5 and blind.passes_self_check is False
    single = build_gate("ssim", base, [f"p{i}" for i in range(6)])
    assert single.same_patient_nearest is None and single.to_dict()["self_check"]["passed"] is None

    # a run whose gate space fails the check: the warning and the card say so
    import latentwalk.gate as gate_module

    real_build = gate_module.build_gate

    def blind_gate(*args, **kwargs):
        g = real_build(*args, **kwargs)
        return replace(g, same_patient_nearest=0.1)

    import latentwalk.pipeline as pl

    original = pl.build_gate
    pl.build_gate = blind_gate
    try:
        with pytest.warns(UserWarning, match="gate cannot tell patients apart"):
            generate(_cfg(chain, method="linear", per_label=2, gate_threshold=0.0), tmp_path / "blind")
    finally:
        pl.build_gate = original
    card = (tmp_path / "blind" / "DATASET_CARD.md").read_text()
    assert "this space cannot tell patients apart" in card
    run = json.loads((tmp_path / "blind" / "run.json").read_text())
    assert run["gate"]["self_check"]["passed"] is False
