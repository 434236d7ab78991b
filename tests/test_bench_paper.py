"""The scripted benchmark run (PLAN's comparison table) end to end at toy sizes: the CI smoke test of issue 7."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(1200)  # three benchmark runs end to end (about 4 min on an idle 2-core machine)
def test_bench_paper_quick_runs_every_row_and_writes_the_table(tmp_path):
    out = tmp_path / "tb"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_paper.py"), "--benchmark", "tb", "--quick",
                           "--out", str(out), "--device", "cpu"], env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    table = (out / "table.md").read_text()
    for row in ("| Real |", "| Linear |", "| PLAN |", "| k-same (k=2) |", "| k-same (k=5) |", "| k-same+PLAN (k=5) |"):
        assert row in table, row
    results = json.loads((out / "metrics.json").read_text())
    assert set(results["rows"]) == {"Linear", "PLAN", "k-same (k=2)", "k-same (k=5)", "k-same+PLAN (k=5)"}
    for row in results["rows"].values():
        assert row["metrics"]["privacy"]["identity"]["mml"]["mml"] >= 0
    first = results["rows"]["Linear"]["metrics"]
    assert "real" in first["utility"]["mean"] and "synthetic" in first["utility"]["mean"]
    assert (out / "rows" / "plan" / "evaluation" / "report.html").is_file()

    # the privacy-loss comparison reuses that run's dataset, guides and latents
    pl = tmp_path / "privacy-losses"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_privacy_losses.py"), "--benchmark", "tb",
                           "--quick", "--source", str(out), "--out", str(pl), "--device", "cpu"], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    table = (pl / "table.md").read_text()
    for row in ("Linear (no privacy term)", "PLAN, KL-uniform (reference)", "PLAN, plug-in MI (IRENE)",
                "PLAN, verification hinge", "PLAN, HSIC", "PLAN, KL-uniform, 1 adversarial round"):  # fmt: skip
        assert f"| {row} |" in table, row
    rows = json.loads((pl / "metrics.json").read_text())["rows"]
    adversarial = rows["kl_uniform_adversarial"]["adversarial"]  # generate's record of the round
    assert adversarial["rounds"] == 1 and len(adversarial["per_round"]) == 1
    assert "before the final walk, each round walked candidates" in table
    for row in rows.values():  # every row was evaluated with its private sidecar
        assert 0 <= row["metrics"]["leakage"]["mi"]["soft"]["mi"] <= 1
    for name in ("linear", "kl_uniform", "mi"):
        assert (pl / "rows" / name / "private" / "patients.json").is_file()
        assert not list((pl / "rows" / name / "synthetic").rglob("patients.json"))
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_privacy_losses.py"), "--benchmark", "tb",
                           "--quick", "--source", str(out), "--out", str(pl), "--device", "cpu", "--leakage-only",
                           "--rows", "linear,mi"], env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    again = json.loads((pl / "metrics.json").read_text())["rows"]
    assert set(again) == set(rows) and {k for k, r in again.items() if r["leakage_recomputed"]} == {"linear", "mi"}
    for key, row in again.items():  # the other rows and columns as they were
        assert row["metrics"]["utility"] == rows[key]["metrics"]["utility"]
        if key not in ("linear", "mi"):
            assert row["metrics"]["leakage"] == rows[key]["metrics"]["leakage"]
        mi = row["metrics"]["leakage"]["mi"]["soft"]
        assert mi["ci95"][0] <= mi["mi_corrected"] <= mi["ci95"][1]
    table = (pl / "table.md").read_text()
    assert "The leakage columns of Linear (no privacy term), PLAN, plug-in MI (IRENE) were recomputed" in table

    # --resume reuses every finished set and its evaluation: the rows come back as recorded, nothing re-evaluated
    marked = json.loads((pl / "metrics.json").read_text())
    marked["rows"]["mi"]["metrics"]["leakage"]["marker"] = "from the record"  # the record wins over the folder
    (pl / "metrics.json").write_text(json.dumps(marked))
    stamps = {p: p.stat().st_mtime_ns for p in pl.glob("rows/*/evaluation/metrics.json")}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_privacy_losses.py"), "--benchmark", "tb",
                           "--quick", "--source", str(out), "--out", str(pl), "--device", "cpu", "--resume"],
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("set and evaluation reused") == len(rows)
    assert {p: p.stat().st_mtime_ns for p in pl.glob("rows/*/evaluation/metrics.json")} == stamps
    resumed = json.loads((pl / "metrics.json").read_text())["rows"]
    assert resumed["mi"]["metrics"]["leakage"]["marker"] == "from the record"
    for key, row in resumed.items():  # the recomputed leakage is carried over
        assert row["metrics"]["leakage"] == marked["rows"][key]["metrics"]["leakage"]
    assert "Resumed: the rows" in (pl / "table.md").read_text()
    assert "were recomputed with `--leakage-only`" in (pl / "table.md").read_text()
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_privacy_losses.py"), "--benchmark", "tb",
                           "--quick", "--source", str(out), "--out", str(pl), "--device", "cpu", "--rows", "ksame"],
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 2 and "unknown row(s) ['ksame']" in done.stderr

    # a set newer than its evaluation (regenerated by a run killed during evaluate) is evaluated again
    os.utime(pl / "rows" / "hsic" / "synthetic" / "run.json")
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_privacy_losses.py"), "--benchmark", "tb",
                           "--quick", "--source", str(out), "--out", str(pl), "--device", "cpu", "--resume"],
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "row hsic: set and evaluation reused" not in done.stdout
    assert done.stdout.count("set and evaluation reused") == len(rows) - 1
    # a row carried by --rows must have been evaluated with this run's settings
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_privacy_losses.py"), "--benchmark", "tb",
                           "--quick", "--source", str(out), "--out", str(pl), "--device", "cpu", "--rows", "",
                           "--seed", "1"], env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 1 and "evaluated with other settings" in done.stderr


def test_gate_audit_quick_fills_every_gate_row(tmp_path):
    out = tmp_path / "audit"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_gate_audit.py"), "--quick", "--seeds",
                           "0,1", "--out", str(out), "--threads", "1"], env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    raw = json.loads((out / "audit.json").read_text())
    assert set(raw) == {"identity", "ssim", "lpips", "verifier", "identity or ssim", "ground truth (reference)"}
    assert set(raw["identity"]) == {"0", "1"} and set(raw["ssim"]) == {"0"}  # SSIM is deterministic: one run
    planted = ("augmented copy", "G reconstruction", "blend alpha=0.1", "blend alpha=0.2", "blend alpha=0.3")
    for name in planted:
        assert len(raw["verifier"]["1"][name]) == 6
    assert "| verifier |" in done.stdout and "false rejections" in done.stdout


def _row(acc: float, std: float, match: float, leak: float, mi: float, ci: tuple[float, float]) -> dict:
    return {"metrics": {"utility": {"mean": {"synthetic": {"accuracy": acc}}, "std": {"synthetic": {"accuracy": std}}},
                        "verification": {"synthetic": {"match_rate": match, "images": 200}},
                        "ground_truth": {"synthetic": {"leak_fraction": leak, "images": 200}},
                        "leakage": {"mi": {"soft": {"mi": mi, "ci95": list(ci)}}}}}  # fmt: skip


def test_privacy_losses_recommendation_names_only_a_row_that_dominates_kl_uniform():
    sys.path.insert(0, str(REPO / "benchmarks"))
    sys.path.insert(0, str(REPO / "scripts"))
    import bench_privacy_losses as bench

    ref = _row(0.89, 0.01, 0.205, 0.0, 0.2256, (0.18, 0.27))
    better = _row(0.885, 0.02, 0.100, 0.0, 0.2200, (0.17, 0.26))  # verifier far lower (z 2.9), utility within std
    assert bench.dominance(ref, better)[0]
    assert not bench.dominance(ref, _row(0.80, 0.02, 0.100, 0.0, 0.22, (0.17, 0.26)))[0]  # utility lost
    noise = _row(0.89, 0.01, 0.190, 0.0, 0.2184, (0.17, 0.25))  # the TB adversarial row: within the noise
    assert bench.dominance(ref, noise) == (False, "no privacy figure differs beyond its noise")
    mixed = _row(0.89, 0.01, 0.100, 0.0, 0.30, (0.28, 0.33))  # verifier better, MI's CI wholly above the reference
    ok, why = bench.dominance(ref, mixed)
    assert not ok and why.startswith("worse on leakage MI")
    text = bench.recommendation({"linear": ref, "kl_uniform": ref, "mi": better, "hsic": noise})
    assert "use PLAN, plug-in MI (IRENE) over KL-uniform" in text and "PLAN, HSIC: does not dominate" in text
    assert "no row dominates" in bench.recommendation({"kl_uniform": ref, "hsic": noise})
    # one observation per path: the same rates over 25 paths of 8 images are within the noise
    assert not bench.dominance({**ref, "paths": 25}, {**better, "paths": 25})[0]
    # the corrected MI is tested when both rows have it: the same plug-ins, the row's corrected one far lower
    with_corrected = {**mixed, "metrics": {**mixed["metrics"], "leakage": {"mi": {"soft": {
        "mi": 0.30, "mi_corrected": 0.10, "ci95": [0.08, 0.12]}}}}}  # fmt: skip
    ref_corrected = {**ref, "metrics": {**ref["metrics"], "leakage": {"mi": {"soft": {
        "mi": 0.2256, "mi_corrected": 0.2250, "ci95": [0.18, 0.27]}}}}}  # fmt: skip
    ok, why = bench.dominance(ref_corrected, with_corrected)
    assert ok and "leakage MI, bias-corrected 0.1000 vs 0.2250" in why


def test_privacy_losses_time_per_image_marks_a_resumed_set():
    sys.path.insert(0, str(REPO / "benchmarks"))
    sys.path.insert(0, str(REPO / "scripts"))
    import bench_privacy_losses as bench

    fresh = {"images": 100, "generate_seconds": 50.0, "reused": False, "set_seconds": 49.0, "set_resumed": False}
    assert bench._seconds_per_image(fresh) == "0.50"
    # this run finished items an earlier, stopped process had begun: its call holds only the last part
    assert bench._seconds_per_image({**fresh, "set_resumed": True}) == "0.50*"
    reused = {**fresh, "reused": True, "generate_seconds": 1.0}  # a finished set: its own run's time
    assert bench._seconds_per_image(reused) == "0.49"
    assert bench._seconds_per_image({**reused, "set_resumed": True}) == "0.49*"
