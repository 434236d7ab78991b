"""k-same grouping: the k guarantee on any data, known answers, identity handling, errors."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from latentwalk.errors import ConfigError, DataError
from latentwalk.ksame import KSameConfig, KSameResult, check_k_anonymity, group_latents


def _random_data(seed: int, n_images: int = 60, n_patients: int = 25, n_labels: int = 2, shape=(3, 4)):
    """Latents with several images per patient and one label per patient (every patient gets >= 1 image)."""
    g = torch.Generator().manual_seed(seed)
    patient = torch.cat([torch.arange(n_patients), torch.randint(0, n_patients, (n_images - n_patients,), generator=g)])
    patient = patient[torch.randperm(n_images, generator=g)]
    patient_label = torch.randint(0, n_labels, (n_patients,), generator=g)
    ws = torch.randn(n_images, *shape, generator=g)
    ids = [f"patient-{int(p):03d}" for p in patient]
    labels = [int(patient_label[p]) for p in patient]
    return ws, ids, labels


def _line(xs, label=0):
    ws = torch.tensor(xs, dtype=torch.float32)[:, None]  # W latents [N, 1]
    return ws, [f"p{i}" for i in range(len(xs))], [label] * len(xs)


def _members(result: KSameResult, ids) -> list[set[str]]:
    return [{ids[i] for i in g.tolist()} for g in result.groups]


@pytest.mark.parametrize("method", ["greedy", "kmeans"])
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_ksame_guarantee_holds_on_random_data(method, k):
    for seed in range(6):
        ws, ids, labels = _random_data(seed, n_images=40 + 7 * seed, n_patients=14 + 3 * seed, n_labels=2)
        per_label = {lab: len({i for i, lb in zip(ids, labels, strict=True) if lb == lab}) for lab in set(labels)}
        if min(per_label.values()) < k:
            with pytest.raises(DataError, match="fewer than k"):
                group_latents(ws, ids, labels, KSameConfig(k=k, method=method, seed=seed))
            continue
        result = group_latents(ws, ids, labels, KSameConfig(k=k, method=method, seed=seed))
        check_k_anonymity(result, ids, k, labels=labels)
        for g, label, members in zip(result.groups, result.group_labels, _members(result, ids), strict=True):
            assert len(members) >= k
            assert {labels[i] for i in g.tolist()} == {label}
        # the number of groups is floor(patients / k) per label: leftovers join groups, never form their own
        assert len(result) == sum(n // k for n in per_label.values())


@pytest.mark.parametrize("method", ["greedy", "kmeans"])
def test_ksame_guarantee_holds_when_patients_have_mixed_labels(method):
    for seed in range(4):
        ws, ids, _ = _random_data(seed, n_images=70, n_patients=24, n_labels=1)
        labels = torch.randint(0, 2, (len(ids),), generator=torch.Generator().manual_seed(seed)).tolist()
        with pytest.warns(UserWarning, match="several labels"):
            result = group_latents(ws, ids, labels, KSameConfig(k=3, method=method, seed=seed))
        check_k_anonymity(result, ids, 3, labels=labels)
        assert result.diagnostics["mixed_label_patients"] > 0


def test_groups_never_mix_labels():
    ws, ids, labels = _random_data(3, n_images=80, n_patients=30, n_labels=3)
    for method in ("greedy", "kmeans"):
        result = group_latents(ws, ids, labels, KSameConfig(k=3, method=method))
        for g, label in zip(result.groups, result.group_labels, strict=True):
            assert {labels[i] for i in g.tolist()} == {label}
        assert list(result.group_labels) == sorted(result.group_labels)


def test_check_k_anonymity_catches_hand_broken_results():
    ws, ids, labels = _random_data(1, n_images=50, n_patients=20, n_labels=1)
    good = group_latents(ws, ids, labels, KSameConfig(k=3))
    check_k_anonymity(good, ids, 3, labels=labels)
    groups = list(good.groups)

    def broken(**changes):
        return dataclasses.replace(good, **changes)

    with pytest.raises(DataError, match=r"group 0 \(label 0\) has \d+ distinct identities"):
        check_k_anonymity(good, ids, 50)
    # an image dropped from its group
    with pytest.raises(DataError, match="in no group"):
        check_k_anonymity(broken(groups=(groups[0][1:], *groups[1:])), ids, 3)
    # an image in two groups
    with pytest.raises(DataError, match=r"image \d+ is in group 0 and in group 1"):
        check_k_anonymity(broken(groups=(groups[0], torch.cat([groups[1], groups[0][:1]]), *groups[2:])), ids, 3)
    # a patient's images split over two groups: move one image of a multi-image patient
    counts = {i: ids.count(i) for i in ids}
    multi = next(i for i in groups[0].tolist() if counts[ids[i]] > 1)
    moved = (groups[0][groups[0] != multi], torch.cat([groups[1], torch.tensor([multi])]), *groups[2:])
    with pytest.raises(DataError, match="split across group"):
        check_k_anonymity(broken(groups=moved), ids, 3)
    # two groups merged, one too small left: fewer than k
    small = groups[0][:1]
    rest = torch.cat([groups[0][1:], groups[1]])
    with pytest.raises(DataError, match="fewer than k=3"):
        check_k_anonymity(broken(groups=(small, rest, *groups[2:])), ids, 3)
    # recorded identities that do not match the images
    with pytest.raises(DataError, match="recorded identities"):
        check_k_anonymity(broken(group_identities=(good.group_identities[1], *good.group_identities[1:])), ids, 3)
    # bookkeeping lengths
    with pytest.raises(DataError, match="group_labels"):
        check_k_anonymity(broken(group_labels=good.group_labels[1:]), ids, 3)
    with pytest.raises(DataError, match="outside"):
        check_k_anonymity(broken(groups=(torch.cat([groups[0], torch.tensor([999])]), *groups[1:])), ids, 3)
    # a group whose label is not its patients' label
    with pytest.raises(DataError, match="must not mix labels"):
        check_k_anonymity(broken(group_labels=(1, *good.group_labels[1:])), ids, 3, labels=labels)
    with pytest.raises(ConfigError):
        check_k_anonymity(good, ids, 0)


def test_greedy_reproduces_hand_computed_line_example():
    # x = 0 1 2 3 10 11 12, k = 3. Summed distances: 12 has the largest (45) -> {10, 11, 12}. Left 0..3: 0 and 3
    # tie at 6, the first in sorted-identity order (p0) wins -> {0, 1, 2}. Patient 3 is left over and joins the
    # nearest centroid (1 vs 11) -> {0, 1, 2, 3}.
    ws, ids, labels = _line([0, 1, 2, 3, 10, 11, 12])
    result = group_latents(ws, ids, labels, KSameConfig(k=3, method="greedy"))
    assert [g.tolist() for g in result.groups] == [[4, 5, 6], [0, 1, 2, 3]]
    assert result.group_identities == (("p4", "p5", "p6"), ("p0", "p1", "p2", "p3"))
    torch.testing.assert_close(result.centroids, torch.tensor([[11.0], [1.5]]))
    # k = 2 on 0 1 2 3 10 11: 11 (sum 39) pairs with 10; then 0 and 3 tie (6) -> {0, 1}; then {2, 3}
    ws, ids, labels = _line([0, 1, 2, 3, 10, 11])
    result = group_latents(ws, ids, labels, KSameConfig(k=2))
    assert [g.tolist() for g in result.groups] == [[4, 5], [0, 1], [2, 3]]


def test_greedy_leftover_joins_nearest_centroid_not_nearest_member():
    # x = 0 10 7.5 5.5 6.2, k = 2. Sums: 0 has the largest (29.2) -> {0, 5.5}; left 10 7.5 6.2: sums 6.3 3.8 5.1
    # -> {10, 7.5}; 6.2 is left over. Its nearest member is 5.5 (group A) but its nearest centroid is 8.75 (group
    # B; A's is 2.75), so it joins B.
    ws, ids, labels = _line([0, 10, 7.5, 5.5, 6.2])
    result = group_latents(ws, ids, labels, KSameConfig(k=2))
    assert [g.tolist() for g in result.groups] == [[0, 3], [1, 2, 4]]
    torch.testing.assert_close(result.centroids, torch.tensor([[2.75], [(10 + 7.5 + 6.2) / 3]]))


def test_patients_with_several_images_are_never_split():
    ws, ids, labels = _random_data(7, n_images=90, n_patients=20, n_labels=2)
    for method in ("greedy", "kmeans"):
        result = group_latents(ws, ids, labels, KSameConfig(k=3, method=method))
        group_of = {}
        for g, idx in enumerate(result.groups):
            for i in idx.tolist():
                assert group_of.setdefault(ids[i], g) == g
        assert sorted(torch.cat(result.groups).tolist()) == list(range(len(ids)))


def test_one_patient_counts_once_however_many_images():
    # patient "a" has 5 images, "b" and "c" one each: only 3 patients, so k = 4 is impossible even with 7 images
    ws = torch.randn(7, 2, 3)
    ids = ["a"] * 5 + ["b", "c"]
    with pytest.raises(DataError, match=r"label 0 has 3 distinct patient\(s\) \(7 image\(s\)\), fewer than k=4"):
        group_latents(ws, ids, [0] * 7, KSameConfig(k=4))
    result = group_latents(ws, ids, [0] * 7, KSameConfig(k=3))
    assert len(result) == 1 and result.group_identities == (("a", "b", "c"),)


def test_centroid_is_mean_over_patients_of_patient_means():
    ws, ids, labels = _random_data(5, n_images=45, n_patients=18, n_labels=2, shape=(4, 6))
    for method in ("greedy", "kmeans"):
        result = group_latents(ws, ids, labels, KSameConfig(k=4, method=method))
        for g, members, centroid in zip(result.groups, result.group_identities, result.centroids, strict=True):
            idx = g.tolist()
            means = [ws[[i for i in idx if ids[i] == m]].double().mean(0) for m in members]
            torch.testing.assert_close(centroid, torch.stack(means).mean(0).float())
    # with one image per patient this is the plain mean of the group's latents
    ws, ids, labels = _random_data(2, n_images=20, n_patients=20, n_labels=1)
    result = group_latents(ws, ids, labels, KSameConfig(k=5))
    for g, centroid in zip(result.groups, result.centroids, strict=True):
        torch.testing.assert_close(centroid, ws[g].mean(0))


def test_w_and_w_plus_shapes_are_kept():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(24, 8, generator=g)  # W: [N, w_dim]
    ids = [f"p{i % 12}" for i in range(24)]
    labels = [0] * 24
    r_w = group_latents(w, ids, labels, KSameConfig(k=3))
    assert r_w.centroids.shape == (4, 8)
    w_plus_broadcast = w[:, None, :].repeat(1, 5, 1)  # W broadcast to W+: [N, num_ws, w_dim]
    r_b = group_latents(w_plus_broadcast, ids, labels, KSameConfig(k=3))
    assert r_b.centroids.shape == (4, 5, 8)
    assert [t.tolist() for t in r_b.groups] == [t.tolist() for t in r_w.groups]  # same distances up to sqrt(5)
    torch.testing.assert_close(r_b.centroids, r_w.centroids[:, None, :].expand(-1, 5, -1))  # still broadcast
    w_plus = torch.randn(24, 5, 8, generator=g, dtype=torch.float64)
    r_p = group_latents(w_plus, ids, labels, KSameConfig(k=3, method="kmeans"))
    assert r_p.centroids.shape == (4, 5, 8) and r_p.centroids.dtype == torch.float64


@pytest.mark.parametrize("method", ["greedy", "kmeans"])
def test_grouping_is_deterministic_and_independent_of_row_order(method):
    ws, ids, labels = _random_data(11, n_images=70, n_patients=30, n_labels=2)
    cfg = KSameConfig(k=4, method=method, seed=3)
    a = group_latents(ws, ids, labels, cfg)
    b = group_latents(ws.clone(), list(ids), list(labels), cfg)
    assert [g.tolist() for g in a.groups] == [g.tolist() for g in b.groups]
    assert torch.equal(a.centroids, b.centroids)
    # shuffling the rows changes indices, not the partition of patients
    perm = torch.randperm(len(ids), generator=torch.Generator().manual_seed(0))
    c = group_latents(ws[perm], [ids[i] for i in perm], [labels[i] for i in perm], cfg)
    assert c.group_identities == a.group_identities
    torch.testing.assert_close(c.centroids, a.centroids)


def test_kmeans_seed_is_used_and_recorded():
    ws, ids, labels = _random_data(4, n_images=60, n_patients=40, n_labels=1)
    runs = [group_latents(ws, ids, labels, KSameConfig(k=3, method="kmeans", seed=s)) for s in range(4)]
    assert len({r.group_identities for r in runs}) > 1
    info = runs[0].diagnostics["per_label"]["0"]
    assert info["groups"] == 13 and 1 <= info["rounds"] <= 100
    assert info["stop"] in ("converged", "no_improvement", "max_iter") and info["sum_of_squares"] > 0


def test_kmeans_sizes_are_at_least_k_with_clustered_data():
    # two tight clusters of 7 and 2 patients, k = 3: 3 groups; the small cluster must borrow patients
    g = torch.Generator().manual_seed(0)
    ws = torch.cat([torch.randn(7, 4, generator=g) * 0.01, 10 + torch.randn(2, 4, generator=g) * 0.01])
    ids = [f"p{i}" for i in range(9)]
    result = group_latents(ws, ids, [0] * 9, KSameConfig(k=3, method="kmeans"))
    assert sorted(len(m) for m in result.group_identities) == [3, 3, 3]


def test_mixed_label_patient_goes_to_majority_label_with_ties_to_higher():
    ws = torch.randn(10, 2, 3)
    # "a": labels 0, 0, 1 -> 0; "b": labels 0, 1 -> tie -> 1; others single-labelled
    ids = ["a", "a", "a", "b", "b", "c", "d", "e", "f", "g"]
    labels = [0, 0, 1, 0, 1, 0, 0, 1, 1, 1]
    with pytest.warns(UserWarning, match="2 patient"):
        result = group_latents(ws, ids, labels, KSameConfig(k=3))
    label_of = {m: lab for ms, lab in zip(result.group_identities, result.group_labels, strict=True) for m in ms}
    assert label_of["a"] == 0 and label_of["b"] == 1
    assert result.diagnostics["mixed_label_patients"] == 2 and result.diagnostics["relabelled_images"] == 2
    with pytest.raises(DataError, match="several labels"):
        group_latents(ws, ids, labels, KSameConfig(k=2, mixed_labels="error"))


def test_to_dict_has_no_identities_or_membership():
    ws, ids, labels = _random_data(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = group_latents(ws, ids, labels, KSameConfig(k=3))
    text = repr(result.to_dict())
    assert "patient-" not in text
    d = result.to_dict()
    assert d["n_groups"] == len(result) and sum(d["group_images"]) == len(ids)
    assert d["config"] == KSameConfig(k=3).to_dict()


def test_ksame_raises_if_fewer_than_k_identities():
    ws, ids, labels = _line([0, 1, 2, 3, 4, 5])
    labels = [0, 0, 0, 0, 1, 1]
    with pytest.raises(DataError, match=r"label 1 has 2 distinct patient\(s\) \(2 image\(s\)\), fewer than k=3"):
        group_latents(ws, ids, labels, KSameConfig(k=3))


def test_label_with_images_but_no_patients_is_an_error():
    ws = torch.randn(7, 4)
    ids = ["a", "a", "a", "b", "c", "d", "e"]
    labels = [0, 0, 1, 0, 0, 0, 0]  # label 1 exists only as a minority image of patient "a"
    with pytest.warns(UserWarning), pytest.raises(DataError, match="label 1 has 1 image"):
        group_latents(ws, ids, labels, KSameConfig(k=2))


@pytest.mark.parametrize(
    "identities, match",
    [(None, "no patient identities"), ([], "no patient identities"), (["a", "b"], "got 2 identities for 4")],
)
def test_latents_without_identities_are_refused(identities, match):
    with pytest.raises(DataError, match=match):
        group_latents(torch.randn(4, 3), identities, [0] * 4, KSameConfig(k=1))


def test_bad_inputs_are_refused():
    ws, ids = torch.randn(4, 3), ["a", "b", "c", "d"]
    with pytest.raises(DataError, match="no labels"):
        group_latents(ws, ids, None, KSameConfig(k=1))
    with pytest.raises(DataError, match="got 3 labels for 4"):
        group_latents(ws, ids, [0, 0, 0], KSameConfig(k=1))
    with pytest.raises(DataError, match="labels must be integers"):
        group_latents(ws, ids, [0, 0, 0.5, 0], KSameConfig(k=1))
    with pytest.raises(DataError, match="non-empty identity"):
        group_latents(ws, ["a", "", "c", "d"], [0] * 4, KSameConfig(k=1))
    with pytest.raises(DataError, match="non-finite"):
        group_latents(torch.tensor([[0.0], [float("nan")], [1.0], [2.0]]), ids, [0] * 4, KSameConfig(k=1))
    with pytest.raises(DataError, match="N = 0"):
        group_latents(torch.empty(0, 3), [], [], KSameConfig(k=1))
    with pytest.raises(DataError, match="float tensor"):
        group_latents(torch.zeros(4, dtype=torch.long), ids, [0] * 4, KSameConfig(k=1))
    assert len(group_latents(ws, ids, torch.tensor([0, 1, 0, 1]), KSameConfig(k=2))) == 2  # tensor labels are fine


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 0}, "k must be"),
        ({"k": True}, "k must be"),
        ({"k": 2.0}, "k must be"),
        ({"method": "kmedoids"}, 'unknown k-same method "kmedoids"'),
        ({"distance": "cosine"}, "unknown k-same distance"),
        ({"seed": -1}, "seed must be"),
        ({"max_iter": 0}, "max_iter must be"),
        ({"mixed_labels": "drop"}, "mixed_labels"),
    ],
)
def test_config_is_validated(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        KSameConfig(**kwargs)


def test_config_from_dict_refuses_unknown_keys():
    assert KSameConfig.from_dict({"k": 7, "method": "kmeans"}) == KSameConfig(k=7, method="kmeans")
    with pytest.raises(ConfigError, match="unknown k-same option"):
        KSameConfig.from_dict({"ksame_k": 10})


def test_restored_spread_puts_each_centroid_at_its_members_mean_distance_on_the_same_ray():
    gen = torch.Generator().manual_seed(0)
    ws = torch.randn(40, 6, generator=gen, dtype=torch.float64)  # one image per patient: patient latent = its w
    ids = [f"p{i}" for i in range(40)]
    labels = [i % 2 for i in range(40)]
    plain = group_latents(ws, ids, labels, KSameConfig(k=4))
    restored = group_latents(ws, ids, labels, KSameConfig(k=4, spread="restore"))
    assert [g.tolist() for g in plain.groups] == [g.tolist() for g in restored.groups]
    center = ws.mean(0)
    for g, c0, c1 in zip(plain.groups, plain.centroids, restored.centroids, strict=True):
        members = (ws[g] - center).norm(dim=1).mean()
        assert float((c1 - center).norm()) == pytest.approx(float(members), rel=1e-9)
        assert float((c0 - center).norm()) < float(members)  # averaging shrank it
        cos = torch.nn.functional.cosine_similarity((c1 - center)[None], (c0 - center)[None])
        assert float(cos) == pytest.approx(1.0, abs=1e-12)  # same direction from the mean
    check_k_anonymity(restored, ids, 4, labels=labels)
    with pytest.raises(ConfigError, match="spread"):
        KSameConfig(spread="wide")
