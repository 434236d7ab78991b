"""The leakage estimate: plug-in MI and unbiased HSIC against permutation nulls, and evaluate --private."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from latentwalk.errors import ConfigError, DataError
from latentwalk.evaluate.leakage import (
    estimate_leakage,
    gaussian_kernel,
    hsic_unbiased,
    joint,
    leakage,
    normalised_mi,
    patient_matrix,
)


def _one_hot(index: torch.Tensor, k: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(index, k).double()


def _independent(n: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Q one-hot at random patients, P a random softmax, an embedding: all drawn independently."""
    gen = torch.Generator().manual_seed(seed)
    q = _one_hot(torch.randint(k, (n,), generator=gen), k)
    p = (2 * torch.randn(n, k, generator=gen, dtype=torch.float64)).softmax(1)
    return q, p, torch.randn(n, 3, generator=gen)


def _dependent(n: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """P leans towards the patient behind each image; the embedding carries it, with noise."""
    gen = torch.Generator().manual_seed(seed)
    who = torch.randint(k, (n,), generator=gen)
    q = _one_hot(who, k)
    p = (torch.randn(n, k, generator=gen, dtype=torch.float64) + 2 * q).softmax(1)
    embedding = torch.randn(n, k, generator=gen) + 2 * q.float()
    return q, p, embedding


def test_mi_of_independent_patients_and_attacker_lies_within_the_null():
    q, p, emb = _independent(300, 6, seed=1)
    r = leakage(q.to_sparse(), p, emb, permutations=100, bootstrap=50, seed=0)
    for name in ("soft", "hard"):
        f = r["mi"][name]
        assert f["mi"] <= f["null_p95"] and f["p_value"] > 0.05
        assert abs(f["excess"]) < 0.02 and f["ci95"][0] == 0.0  # the interval reaches down to no leakage
    assert r["hsic"]["p_value"] > 0.05 and abs(r["hsic"]["normalised"]) < 0.05


def test_bias_corrected_mi_lies_in_its_interval_and_below_the_biased_plug_in():
    # few images per patient pair: the plug-in MI of independent data sits well above 0
    q, p, emb = _independent(60, 20, seed=4)
    r = leakage(q.to_sparse(), p, emb, permutations=20, bootstrap=200, seed=0)
    for name in ("soft", "hard"):
        f = r["mi"][name]
        assert f["mi"] > 0.1 and f["null_mean"] > 0.1  # the bias, seen by the null too
        assert f["mi_corrected"] < f["mi"] - 0.05  # resamples repeat images and raise the plug-in further
        assert f["ci95"][0] <= f["mi_corrected"] <= f["ci95"][1]
    with pytest.raises(ConfigError, match="bootstrap"):
        leakage(q.to_sparse(), p, emb, permutations=20, bootstrap=0)


def test_mi_is_one_when_the_attacker_names_the_patient_behind_every_image():
    k = 8
    who = torch.arange(400) % k  # every patient behind equally many images
    q = _one_hot(who, k)
    r = leakage(q.to_sparse(), q.clone(), q.float(), permutations=50, bootstrap=50, seed=0)
    for name in ("soft", "hard"):
        f = r["mi"][name]
        assert f["mi"] == pytest.approx(1.0) and f["p_value"] == pytest.approx(1 / 51, abs=1e-6)
        assert f["null_p95"] < 0.1 and f["ci95"][1] == 1.0
    assert r["hsic"]["p_value"] == pytest.approx(1 / 51, abs=1e-6) and r["hsic"]["normalised"] > 0.9


def test_mi_is_normalised_to_the_unit_interval():
    gen = torch.Generator().manual_seed(3)
    for k in (2, 5, 40):
        for concentration in (0.01, 1.0, 100.0):
            j = (torch.rand(k, k, generator=gen, dtype=torch.float64) * concentration).exp()
            j = j / j.sum()
            assert 0.0 <= normalised_mi(j) <= 1.0
        assert normalised_mi(torch.eye(k, dtype=torch.float64) / k) == pytest.approx(1.0)
        assert normalised_mi(torch.full((k, k), 1 / k**2, dtype=torch.float64)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(DataError, match="two or more"):
        normalised_mi(torch.ones(1, 1, dtype=torch.float64))


def test_permutation_p_values_are_small_for_dependent_and_large_for_independent_data():
    for seed in range(3):
        dep = leakage(*_dependent(120, 6, seed), permutations=100, bootstrap=20, seed=seed)
        ind = leakage(*_independent(120, 6, seed), permutations=100, bootstrap=20, seed=seed)
        for r, small in ((dep, True), (ind, False)):
            p_values = [r["mi"]["soft"]["p_value"], r["mi"]["hard"]["p_value"], r["hsic"]["p_value"]]
            assert all(p < 0.02 for p in p_values) if small else all(p > 0.05 for p in p_values), (seed, p_values)
        assert dep["mi"]["soft"]["mi"] > dep["mi"]["soft"]["null_p95"]


def test_the_figures_repeat_for_a_seed():
    q, p, emb = _dependent(60, 4, seed=0)
    assert leakage(q, p, emb, permutations=20, bootstrap=20, seed=5) == leakage(q, p, emb, permutations=20,
                                                                              bootstrap=20, seed=5)  # fmt: skip


def test_joint_fast_paths_equal_the_dense_reference():
    gen = torch.Generator().manual_seed(0)
    n, k = 30, 5
    q = torch.rand(n, k, generator=gen, dtype=torch.float64) * (torch.rand(n, k, generator=gen) < 0.4)
    q[:, 0] += 0.1
    q = q / q.sum(1, keepdim=True)
    p = torch.randn(n, k, generator=gen, dtype=torch.float64).softmax(1)
    torch.testing.assert_close(joint(q.to_sparse(), p), q.T @ p / n)
    order = torch.randperm(n, generator=gen)
    inverse = torch.argsort(order)
    torch.testing.assert_close(joint(q.to_sparse(), p, order=order), q[inverse].T @ p / n)  # row i meets P[order[i]]
    counts = torch.bincount(torch.randint(n, (n,), generator=gen), minlength=n)
    torch.testing.assert_close(joint(q.to_sparse(), p, counts=counts), (q * counts[:, None]).T @ p / n)
    top = p.argmax(1)
    torch.testing.assert_close(joint(q.to_sparse(), top, order=order), q[inverse].T @ _one_hot(top, k) / n)


def _sparse_patients(n: int, k: int, per_image: int, seed: int) -> torch.Tensor:
    """Q ``[n, k]`` dense: ``per_image`` random patients (of k) behind each image with random weights summing to 1."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.zeros(n, k, dtype=torch.float64)
    for i in range(n):
        who = torch.randperm(k, generator=gen)[:per_image]
        q[i, who] = torch.rand(per_image, generator=gen, dtype=torch.float64) + 0.1
    return q / q.sum(1, keepdim=True)


def test_mi_on_the_support_of_q_equals_the_dense_k_by_k_table_for_every_draw():
    from latentwalk.evaluate.leakage import cluster_counts, cluster_order, support

    gen = torch.Generator().manual_seed(0)
    n, k = 24, 40
    q = _sparse_patients(n, k, 2, seed=1)  # 2 of 40 patients behind each of 24 images: some rows stay empty
    p = (2 * torch.randn(n, k, generator=gen, dtype=torch.float64)).softmax(1)
    clusters = torch.arange(n) // 3  # paths of 3 images
    qs, rows = support(q.to_sparse())
    assert rows.tolist() == torch.nonzero(q.sum(0) > 0).squeeze(1).tolist() and len(rows) < k
    draws = [{}, {"order": cluster_order(clusters, gen)}, {"counts": cluster_counts(clusters, gen)}]
    for view in (p, p.argmax(1)):  # soft and hard (one-hot at the top patient)
        pd = p if view.dtype != torch.long else _one_hot(view, k)
        for draw in draws:
            qd = q if "order" not in draw else q[torch.argsort(draw["order"])]  # row i meets P[order[i]]
            weight = torch.ones(n, dtype=torch.float64) if "counts" not in draw else draw["counts"].double()
            dense = (qd * weight[:, None]).T @ pd / weight.sum()  # [K, K], the reference
            on_support = joint(qs, view, patients=k, **draw)  # [|S|, K]
            assert on_support.shape == (len(rows), k)
            torch.testing.assert_close(on_support, dense[rows], rtol=1e-12, atol=1e-15)
            outside = torch.ones(k, dtype=torch.bool)
            outside[rows] = False
            assert not dense[outside].any()  # every row off the support is zero: it adds nothing to the MI
            assert normalised_mi(on_support) == pytest.approx(normalised_mi(dense), rel=1e-12, abs=1e-15)
            assert normalised_mi(joint(q.to_sparse(), view, **draw)) == pytest.approx(normalised_mi(dense), rel=1e-12)


def test_leakage_figures_on_the_support_equal_those_of_the_dense_table(monkeypatch):
    import latentwalk.evaluate.leakage as lk

    gen = torch.Generator().manual_seed(2)
    n, k = 36, 30
    q = _sparse_patients(n, k, 3, seed=3)
    p = (torch.randn(n, k, generator=gen, dtype=torch.float64) + 2 * q).softmax(1)
    emb, clusters = torch.randn(n, 4, generator=gen), torch.arange(n) // 4
    fast = leakage(q.to_sparse(), p, emb, clusters=clusters, permutations=30, bootstrap=30, seed=7)
    # the dense reference: every one of the K patients a row of J, Q densified for HSIC
    monkeypatch.setattr(lk, "support", lambda q: (q.coalesce(), torch.arange(q.shape[1])))
    dense = leakage(q.to_sparse(), p, emb, clusters=clusters, permutations=30, bootstrap=30, seed=7)
    assert fast == dense


def test_leakage_over_twenty_thousand_patients_never_builds_a_k_by_k_table(monkeypatch):
    import time

    import latentwalk.evaluate.leakage as lk

    n, k = 64, 20_000  # the K x K table would be 3.2 GB of float64
    gen = torch.Generator().manual_seed(0)
    q = torch.zeros(n, k, dtype=torch.float64)
    ends = torch.randint(k, (n // 8, 2), generator=gen).repeat_interleave(8, 0)  # 8 paths of 8 images, 2 ends each
    t = (torch.arange(n) % 8 / 7).double()
    q[torch.arange(n), ends[:, 0]] += 1 - t
    q[torch.arange(n), ends[:, 1]] += t
    p = torch.randn(n, k, generator=gen, dtype=torch.float64).softmax(1)
    shapes = []
    real_mi = lk.normalised_mi

    def spy(j):
        shapes.append(tuple(j.shape))
        return real_mi(j)

    monkeypatch.setattr(lk, "normalised_mi", spy)
    started = time.perf_counter()
    r = leakage(q.to_sparse(), p, torch.randn(n, 8, generator=gen), clusters=torch.arange(n) // 8, permutations=20,
                bootstrap=20, seed=0)  # fmt: skip
    seconds = time.perf_counter() - started
    nnz = int((q > 0).sum())
    assert len(shapes) == 2 * (1 + 20 + 20) and all(rows <= min(nnz, 16) and cols == k for rows, cols in shapes)
    assert 0 <= r["mi"]["soft"]["mi"] <= 1 and r["hsic"]["images"] == n
    assert seconds < 30, seconds  # a [K, K] table per draw would take minutes (and 3.2 GB each)


def test_unbiased_hsic_is_zero_on_average_for_independent_samples_and_follows_song_et_al():
    gen = torch.Generator().manual_seed(0)
    values = []
    for _ in range(200):
        x, y = torch.randn(12, 2, generator=gen), torch.randn(12, 2, generator=gen)
        values.append(hsic_unbiased(gaussian_kernel(x)[0], (y @ y.T).double()))
    mean, sd = float(torch.tensor(values).mean()), float(torch.tensor(values).std())
    assert abs(mean) < 3 * sd / math.sqrt(len(values))  # unbiased: no drift away from 0 (the biased one is > 0)
    # eq. 5 of Song et al. (2012), written out with matrix products
    k, _ = gaussian_kernel(torch.randn(9, 3, generator=gen))
    y = torch.randn(9, 2, generator=gen, dtype=torch.float64)
    l = y @ y.T  # noqa: E741
    kt, lt, one, m = k - torch.diag(k.diag()), l - torch.diag(l.diag()), torch.ones(9, dtype=torch.float64), 9
    ref = (torch.trace(kt @ lt) + (one @ kt @ one) * (one @ lt @ one) / ((m - 1) * (m - 2))
           - 2 / (m - 2) * (one @ kt @ lt @ one)) / (m * (m - 3))  # fmt: skip
    assert hsic_unbiased(k, l) == pytest.approx(float(ref), rel=1e-9)


def test_patient_matrix_keeps_training_patients_and_renormalises():
    behind = [{"a": 0.5, "b": 0.5}, {"x": 1.0}, {"b": 0.25, "x": 0.75}]
    q, kept, known = patient_matrix(behind, ["a", "b", "c"])
    assert kept.tolist() == [0, 2] and known.tolist() == [1.0, 0.0, 0.25]
    torch.testing.assert_close(q.to_dense(), torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64))


def test_estimate_leakage_skips_without_two_images_of_known_patients():
    out = estimate_leakage([{"x": 1.0}, {"a": 1.0}], ["a", "b"], torch.zeros(2, 2), torch.zeros(2, 3))
    assert "skipped" in out and out["images"] == 1 and out["images_without_known_patient"] == 1
    with pytest.raises(DataError, match="do not match"):
        estimate_leakage([{"a": 1.0}], ["a", "b"], torch.zeros(2, 2), torch.zeros(2, 3))


# ---------------------------------------------------------------------------------------------------------------
# latentwalk evaluate --private

CHEAP = dict(spaces=("pixels",), utility_epochs=1, utility_seeds=(0,), utility_real=False, reid_epochs=1,
             verifier_epochs=2, mia_epochs=1, mia_shadows=0, kid_subsets=2)  # fmt: skip


@pytest.fixture(scope="module")
def no_truth_dataset(cxr_dataset, tmp_path_factory) -> Path:
    """The CXR phantoms without ground_truth.json: evaluate skips its slow anatomy probe."""
    import shutil

    out = tmp_path_factory.mktemp("no-truth") / "data"
    shutil.copytree(cxr_dataset, out, ignore=shutil.ignore_patterns("ground_truth.json"))
    return out


def _copies_with_sidecar(dataset: Path, out: Path, private: Path) -> None:
    """A synthetic folder of copies of training images (manifest ids) and a sidecar naming each one's patient."""
    from latentwalk.data import open_dataset
    from latentwalk.generation.sidecar import write_sidecar

    records = open_dataset(dataset).subset("train").records[::2]
    rows, behind = [], {}
    for n, r in enumerate(records):
        rel = f"images/{r.label}/s{r.label}_{n:06d}.png"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(r.file.read_bytes())
        rows.append({"id": f"s{r.label}_{n:06d}", "file": rel, "label": r.label})
        behind[rows[-1]["id"]] = {"patients": {r.identity: 1.0}}
    with (out / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "file", "label"])
        writer.writeheader()
        writer.writerows(rows)
    write_sidecar(private / "patients.json", out=out, method="ksame", fingerprint="f" * 64, images=behind)


def test_evaluate_reports_leakage_only_with_a_private_sidecar(no_truth_dataset, tmp_path):
    from latentwalk.evaluate.run import EvalConfig, evaluate

    cxr_dataset = no_truth_dataset
    syn, private = tmp_path / "syn", tmp_path / "syn.private"
    _copies_with_sidecar(cxr_dataset, syn, private)
    plain = evaluate(cxr_dataset, syn, tmp_path / "plain", EvalConfig(**CHEAP)).metrics
    assert "leakage" not in plain
    assert "Leakage of the patients" not in (tmp_path / "plain" / "report.md").read_text()

    metrics = evaluate(cxr_dataset, syn, tmp_path / "report", EvalConfig(**CHEAP, private=str(private))).metrics
    lk = metrics["leakage"]
    assert lk["images"] == len(list(syn.rglob("*.png"))) and lk["images_without_known_patient"] == 0
    assert lk["source"] == "ksame-groups" and lk["patients"] == metrics["counts"]["train_patients"]
    for name in ("soft", "hard"):
        f = lk["mi"][name]
        assert 0 <= f["mi"] <= 1 and 0 < f["p_value"] <= 1 and 0 <= f["ci95"][0] <= f["ci95"][1] <= 1
    assert 0 < lk["hsic"]["p_value"] <= 1 and lk["hsic"]["images"] == lk["images"]
    written = (tmp_path / "report" / "metrics.json").read_text()
    assert json.loads(written)["leakage"] == lk
    assert metrics["config"]["private"] == "<given>" and str(private) not in written  # the sidecar's path withheld
    assert "Leakage of the patients behind the images" in (tmp_path / "report" / "report.md").read_text()

    # a sidecar of another generate run than the synthetic set is refused before any training
    (syn / "run.json").write_text(json.dumps({"fingerprint": "0" * 64}))
    with pytest.raises(DataError, match="another generate run"):
        evaluate(cxr_dataset, syn, tmp_path / "other", EvalConfig(**CHEAP, private=str(private)))


def test_evaluate_cli_passes_private_and_never_looks_for_one(cxr_dataset, tmp_path, monkeypatch):
    from click.testing import CliRunner

    import latentwalk.evaluate.run as run
    from latentwalk.cli import cli

    seen = []
    monkeypatch.setattr(run, "evaluate", lambda real, syn, out, cfg, **kw: seen.append(cfg))
    syn, private = tmp_path / "syn", tmp_path / "syn.private"
    _copies_with_sidecar(cxr_dataset, syn, private)
    base = ["evaluate", "--real", str(cxr_dataset), "--synthetic", str(syn), "--out", str(tmp_path / "r")]
    for extra in ([], ["--private", str(private)], ["--private", str(private / "patients.json")]):
        done = CliRunner().invoke(cli, base + extra)
        assert done.exit_code == 0, done.output
    assert [c.private for c in seen] == [None, str(private), str(private / "patients.json")]
    done = CliRunner().invoke(cli, base + ["--private", str(tmp_path / "absent")])
    assert done.exit_code != 0 and "does not exist" in done.output


def _paths(n_paths: int, per_path: int, k: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Images in paths: one patient behind every image of a path and one attacker reading per path (plus a little
    noise), drawn independently of each other — no leakage, but strong structure within each path."""
    gen = torch.Generator().manual_seed(seed)
    who = torch.randint(k, (n_paths,), generator=gen).repeat_interleave(per_path)
    reading = (3 * torch.randn(n_paths, k, generator=gen, dtype=torch.float64)).repeat_interleave(per_path, 0)
    p = (reading + 0.1 * torch.randn(len(who), k, generator=gen, dtype=torch.float64)).softmax(1)
    embedding = reading.float() + 0.1 * torch.randn(len(who), k, generator=gen)
    return _one_hot(who, k), p, embedding, torch.arange(n_paths).repeat_interleave(per_path)


def test_the_null_permutes_whole_paths_so_path_structure_alone_is_not_leakage():
    for seed in range(3):
        q, p, emb, clusters = _paths(30, 8, 20, seed)
        naive = leakage(q, p, emb, permutations=100, bootstrap=20, seed=seed)
        paths = leakage(q, p, emb, clusters=clusters, permutations=100, bootstrap=20, seed=seed)
        assert naive["mi"]["soft"]["p_value"] < 0.05  # image-level shuffles: a false alarm
        assert paths["mi"]["soft"]["p_value"] > 0.05 and paths["mi"]["hard"]["p_value"] > 0.05, seed
        assert paths["mi"]["soft"]["mi"] == naive["mi"]["soft"]["mi"]  # the estimate itself does not change
    for seed in range(3):  # now the reading follows the patient behind the path: leakage, found at path level too
        q, p, emb, clusters = _paths(60, 4, 5, seed)
        leaky = (p.log() + 3 * q).softmax(1)
        r = leakage(q, leaky, emb, clusters=clusters, permutations=100, bootstrap=20, seed=0)
        assert r["mi"]["soft"]["p_value"] < 0.03 and r["mi"]["soft"]["mi"] > r["mi"]["soft"]["null_p95"], seed


def test_path_clusters_group_the_images_of_a_path_of_an_item():
    from latentwalk.evaluate.leakage import path_clusters

    rows = [{"seed": "7", "path_id": "0"}, {"seed": "7", "path_id": "0"}, {"seed": "7", "path_id": "1"},
            {"seed": "8", "path_id": "0"}, {"seed": "", "path_id": ""}, {}]  # fmt: skip
    assert path_clusters(rows).tolist() == [0, 0, 1, 2, 3, 4]
