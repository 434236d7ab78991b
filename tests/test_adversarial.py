"""generate's adversarial rounds: the walk steers against an identity attacker fine-tuned on the walk's own images,
the gates keep the original guides, a killed run resumes to the same bytes, nothing in OUT names a patient."""

from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest
import torch
from test_pipeline import _same_dataset
from test_sidecar import TOKEN, _assert_nothing_shareable_names_them, secret_chain  # noqa: F401 (a fixture)
from tiny import crash_after

from latentwalk.errors import ConfigError
from latentwalk.pipeline import GenerateConfig, generate

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(chain, **kw) -> GenerateConfig:
    base = dict(gan=chain["gan"], guides=chain["guides"], data=chain["data"], latents=chain["latents"],
                method="plan", per_label=3, n_steps=4, paths_per_item=1, optim_steps=2, k=2, endpoint_filter=False,
                label_gate=False, gate_threshold=0.0, device="cpu", adversarial_rounds=1,
                adversarial_epochs=2)  # fmt: skip
    base.update(kw)
    return GenerateConfig.from_dict(base)


def _digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode() + state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def adversarial_run(secret_chain, tmp_path_factory):  # noqa: F811
    """One uninterrupted plan run with one adversarial round on the secret chain; every PLAN call's id_net recorded
    (its weights' digest, and whether the round's attacker file existed then and the digest of its weights)."""
    from safetensors.torch import load_file

    import latentwalk.paths as paths

    out = tmp_path_factory.mktemp("adversarial") / "synthetic"
    attacker = out.parent / "synthetic.private" / "adversarial-round-01-attacker.safetensors"
    calls: list[dict[str, str | None]] = []
    real_plan = paths.plan_paths

    def spy(G, w_a, w_b, labels, id_net, class_net, cfg, *args, **kwargs):
        saved = _digest(load_file(attacker)) if attacker.is_file() else None
        if saved is not None:  # owner-only, recorded as latentwalk's in the private folder's ledger
            ledger = json.loads((attacker.parent / ".latentwalk-files.json").read_text())["files"]
            assert (attacker.stat().st_mode & 0o777) == 0o600 and attacker.name in ledger
        calls.append({"id_net": _digest(id_net.state_dict()), "attacker": saved})
        return real_plan(G, w_a, w_b, labels, id_net, class_net, cfg, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(paths, "plan_paths", spy)
        result = generate(_cfg(secret_chain), out)
    return {"out": out, "result": result, "calls": calls, "chain": secret_chain}


def test_adversarial_options_are_validated_and_recorded_only_when_set(tmp_path):
    from click.testing import CliRunner

    from latentwalk.cli import cli
    from latentwalk.pipeline import load_config_file

    plain = GenerateConfig()
    assert plain.adversarial_rounds == 0 and plain.adversarial_epochs == 5
    assert not any(k.startswith("adversarial") for k in plain.to_dict())  # old run folders keep their record
    cfg = GenerateConfig.from_dict({"adversarial_rounds": 2})
    assert cfg.to_dict()["adversarial_rounds"] == 2 and "adversarial_epochs" not in cfg.to_dict()
    both = GenerateConfig.from_dict({"method": "ksame-plan", "adversarial_rounds": 1, "adversarial_epochs": 3})
    assert GenerateConfig.from_dict(both.to_dict()) == both and both.to_dict()["adversarial_epochs"] == 3
    for bad, match in [
        ({"method": "linear", "adversarial_rounds": 1}, r"adversarial_rounds applies to methods plan and ksame-plan"),
        ({"method": "ksame", "adversarial_rounds": 1}, "not ksame;"),
        ({"adversarial_rounds": -1}, "adversarial_rounds must be >= 0"),
        ({"adversarial_rounds": 1.5}, "adversarial_rounds must be an integer"),
        ({"adversarial_rounds": True}, "adversarial_rounds must be an integer"),
        ({"adversarial_rounds": 1, "adversarial_epochs": 0}, "adversarial_epochs must be >= 1"),
        ({"adversarial_epochs": 3}, "adversarial_epochs applies only with adversarial_rounds >= 1"),
        ({"adversarial_rounds": 1, "optim_steps": 0}, "adversarial_rounds needs optim_steps >= 1"),
    ]:
        with pytest.raises(ConfigError, match=match) as err:
            GenerateConfig.from_dict(bad)
        assert "\n" not in str(err.value)
    assert GenerateConfig.from_dict({"method": "linear", "adversarial_rounds": 0}).adversarial_rounds == 0
    toml = tmp_path / "run.toml"
    toml.write_text("adversarial-rounds = 2\nadversarial_epochs = 4\n")  # top level, like max_rounds
    values = load_config_file(toml)
    assert (values["adversarial_rounds"], values["adversarial_epochs"]) == (2, 4)
    toml.write_text("[plan]\nadversarial_rounds = 2\n")
    with pytest.raises(ConfigError, match=r"unknown option 'adversarial_rounds' in \[plan\]"):
        load_config_file(toml)
    shown = CliRunner().invoke(cli, ["generate", "--help"]).output
    assert "--adversarial-rounds" in shown and "--adversarial-epochs" in shown


def test_one_adversarial_round_runs_end_to_end_and_records_the_attackers_accuracy(adversarial_run):
    run, out = adversarial_run["result"].run, adversarial_run["out"]
    assert run["config"]["adversarial_rounds"] == 1 and run["config"]["adversarial_epochs"] == 2
    adv = run["adversarial"]
    assert adv["rounds"] == 1 and adv["epochs"] == 2 and adv["held_out_fraction"] == 0.2
    (r1,) = adv["per_round"]
    assert r1["round"] == 1 and r1["candidates"] == 2 * 2 * 2  # 2 labels x 2 one-path items x 2 interior points
    assert r1["accepted"] == r1["candidates"] and r1["unlabelled"] == 0  # gate_threshold 0 accepts everything
    assert r1["images"]["synthetic"] + r1["images"]["synthetic_held_out"] == r1["accepted"]
    assert r1["images"]["synthetic_held_out"] == 2 and r1["images"]["real"] > 0  # 1 of 4 paths of 2 images
    assert 0 <= r1["accuracy_before"] <= 1 and 0 <= r1["accuracy_after"] <= 1
    assert adv["chance_accuracy"] == pytest.approx(1 / len(adversarial_run["chain"]["train"]), abs=1e-6)
    assert len(run["execution"]["adversarial_seconds"]) == 1  # timings only where runs may differ
    assert "Adversarial rounds: 1" in (out / "DATASET_CARD.md").read_text()
    assert not (out / ".work").exists() and sum(adversarial_run["result"].written.values()) == 6
    private = out.parent / "synthetic.private"  # the finished run deleted its attacker, and its ledger entry
    assert sorted(p.name for p in private.iterdir()) == [".latentwalk-files.json", "patients.json"]
    assert list(json.loads((private / ".latentwalk-files.json").read_text())["files"]) == ["patients.json"]


def test_the_final_walk_steers_against_the_fine_tuned_attacker(adversarial_run):
    from latentwalk.guides import load_guides

    guide = _digest(load_guides(adversarial_run["chain"]["guides"]).identity.state_dict())
    calls = adversarial_run["calls"]
    candidates = [c for c in calls if c["attacker"] is None]
    final = [c for c in calls if c["attacker"] is not None]
    assert len(candidates) == 4 and len(final) == 4  # one round-0 generation each: 2 labels x 2 one-path items
    assert all(c["id_net"] == guide for c in candidates)  # round 1 walks against the identity guide
    assert all(c["id_net"] == c["attacker"] != guide for c in final)  # the final walk: the saved attacker


def test_the_gates_keep_the_original_guides(adversarial_run):
    from PIL import Image

    from gan_zoo import load
    from latentwalk.data import open_dataset
    from latentwalk.gate import build_gate
    from latentwalk.guides import load_guides
    from latentwalk.pipeline import real_reference

    chain, out = adversarial_run["chain"], adversarial_run["out"]
    G, guides = load(chain["gan"]), load_guides(chain["guides"])
    real, patients = real_reference(open_dataset(chain["data"]), G)
    gate = build_gate("identity", real, patients, guides=guides, threshold=0.0)
    with (out / "manifest.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    images = torch.stack([torch.from_numpy(np.array(Image.open(out / r["file"]))) for r in rows])
    distances = gate.distances(images[:, None].float() / 127.5 - 1)  # gray [N, 1, R, R] in [-1, 1]
    recorded = torch.tensor([float(r["nearest_real_distance"]) for r in rows])
    assert torch.allclose(distances.float(), recorded, rtol=1e-4, atol=1e-6)  # φ_id's distances, not the attacker's
    assert adversarial_run["result"].run["gate"]["space"] == "identity"
    side = json.loads((out.parent / "synthetic.private" / "patients.json").read_text())
    assert side["source"] == "identity-guide" and set(side["images"]) == {r["id"] for r in rows}


def test_an_adversarial_run_writes_no_patient_identifier_into_out(adversarial_run):
    out = adversarial_run["out"]
    run_text = (out / "run.json").read_text()
    assert TOKEN not in run_text and "adversarial" in run_text
    sidecar = out.parent / "synthetic.private" / "patients.json"
    _assert_nothing_shareable_names_them(adversarial_run["chain"], out, sidecar)


@pytest.mark.parametrize("where", ["candidates", "final"])
def test_a_run_killed_mid_adversarial_round_resumes_to_the_same_bytes(adversarial_run, tmp_path, monkeypatch, where):
    import latentwalk.generation.adversarial as adversarial
    import latentwalk.pipeline as pipeline

    module = adversarial if where == "candidates" else pipeline
    real_run = module.run_item
    crash_after_one = crash_after(1, real_run)

    cfg, out = _cfg(adversarial_run["chain"]), tmp_path / "synthetic"
    monkeypatch.setattr(module, "run_item", crash_after_one)
    with pytest.raises(KeyboardInterrupt):
        generate(cfg, out)
    monkeypatch.setattr(module, "run_item", real_run)
    round_1 = out / ".work" / "adversarial" / "round-01"
    attacker = tmp_path / "synthetic.private" / "adversarial-round-01-attacker.safetensors"
    assert attacker.is_file() == (where == "final")
    if where == "final":
        assert (attacker.stat().st_mode & 0o777) == 0o600
    assert len(list((round_1 / "items").iterdir())) == (1 if where == "candidates" else 4)
    assert not [p for p in out.rglob("*.safetensors") if "items" not in p.parts]  # no attacker in OUT
    for path in (p for p in out.rglob("*") if p.is_file()):  # the work folder of a killed run names nobody either
        assert TOKEN.encode() not in path.read_bytes(), path
    result = generate(cfg, out)
    assert result.resumed and not attacker.exists()
    _same_dataset(adversarial_run["out"], out)


def test_an_attacker_file_latentwalk_did_not_write_is_refused_before_any_work(secret_chain, tmp_path):  # noqa: F811
    private = tmp_path / "synthetic.private"
    private.mkdir()
    (private / "adversarial-round-01-attacker.safetensors").write_bytes(b"theirs")
    with pytest.raises(ConfigError, match="latentwalk did not write it") as err:
        generate(_cfg(secret_chain), tmp_path / "synthetic")
    assert "\n" not in str(err.value) and not (tmp_path / "synthetic").exists()
    assert (private / "adversarial-round-01-attacker.safetensors").read_bytes() == b"theirs"


def test_the_held_out_candidates_are_whole_paths():
    from latentwalk.generation.adversarial import _split

    paths = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4, 4, 5, 6, 6, 7, 8, 9, 9])  # 10 paths, 1 to 3 images each
    fit, held = _split(paths, seed=3, round_=1)
    assert sorted(fit.tolist() + held.tolist()) == list(range(len(paths)))
    assert not set(paths[fit].tolist()) & set(paths[held].tolist())  # no path on both sides
    assert len(set(paths[held].tolist())) == 2  # 20 % of the paths
    again = _split(paths, seed=3, round_=1)
    assert torch.equal(again[0], fit) and torch.equal(again[1], held)
    assert [len(x) for x in _split(torch.tensor([0, 0, 0]), 0, 1)] == [3, 0]  # one path: nothing to hold out


def test_a_ksame_plan_run_fine_tunes_on_the_members_behind_its_candidates(secret_chain, tmp_path):  # noqa: F811
    out = tmp_path / "synthetic"
    result = generate(_cfg(secret_chain, method="ksame-plan", per_label=2, adversarial_epochs=1), out)
    (r1,) = result.run["adversarial"]["per_round"]
    assert r1["accepted"] > 0 and r1["unlabelled"] == 0  # the latents are of training patients
    assert r1["images"]["synthetic"] + r1["images"]["synthetic_held_out"] == r1["accepted"]
    _assert_nothing_shareable_names_them(secret_chain, out, tmp_path / "synthetic.private" / "patients.json")


def test_likeliest_patient_breaks_ties_in_sorted_order():
    from latentwalk.generation.adversarial import likeliest_patient

    assert likeliest_patient({"b": 0.5, "a": 0.5}) == "a"
    assert likeliest_patient({"a": 0.25, "c": 0.25, "b": 0.5}) == "b"
    assert likeliest_patient({"z": 1.0}) == "z"


def test_candidate_items_take_round_zeros_plan_with_their_own_seeds():
    from types import SimpleNamespace

    from latentwalk.generation.adversarial import ADVERSARIAL_SLOT, adversarial_items
    from latentwalk.generation.items import item_seed, plan_round

    chain = {"gan": "demo:cxr", "guides": "guides", "data": "data", "latents": None}
    ctx = SimpleNamespace(cfg=_cfg(chain), labels=(0, 1), keep=(1, 2))
    base = plan_round(ctx, 0, {})
    for r in (1, 2):
        items = adversarial_items(ctx, r)
        assert [(i.label, i.index, i.groups) for i in items] == [(i.label, i.index, i.groups) for i in base]
        assert all(i.round == r and i.seed == item_seed(0, ADVERSARIAL_SLOT + r, i.label, i.index) for i in items)
        assert not {i.seed for i in items} & {i.seed for i in base}


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_with_an_adversarial_round(chain, tmp_path):
    import subprocess
    import sys

    from test_pipeline import _cli, _env, _toml

    one = _toml(chain, tmp_path / "one", optim_steps=3, adversarial_rounds=1, adversarial_epochs=2)
    subprocess.run(_cli("generate", "--config", str(one)), env=_env(), check=True, timeout=300)
    two = _toml(chain, tmp_path / "two", optim_steps=3, adversarial_rounds=1, adversarial_epochs=2)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "latentwalk", "--quiet", "generate", "--config", str(two)]  # fmt: skip
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    _same_dataset(tmp_path / "one", tmp_path / "two")
    assert json.loads((tmp_path / "two" / "run.json").read_text())["adversarial"]["rounds"] == 1
