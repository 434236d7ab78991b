"""The privacy core as the README shows it: guides -> inversion -> k-same -> PLAN between same-label centroids."""

import torch

import gan_zoo
from gan_zoo.invert import InvertConfig
from latentwalk.data import open_dataset
from latentwalk.endpoints import pair_endpoints
from latentwalk.guides import GuideConfig, load_guides, train_guides
from latentwalk.invert import invert_dataset, load_latents
from latentwalk.ksame import KSameConfig, check_k_anonymity, group_latents
from latentwalk.paths import PlanConfig, linear_paths, plan_paths, render_paths


def test_plan_walks_between_ksame_centroids_of_the_demo_generator(cxr_dataset, tmp_path):
    G = gan_zoo.load("demo:cxr")
    index = open_dataset(cxr_dataset)
    train_guides(index, tmp_path / "guides", GuideConfig(epochs=1), resolution=G.img_resolution,
                 channels=G.img_channels)  # fmt: skip
    guides = load_guides(tmp_path / "guides")
    invert_dataset(G, index.subset("train"), tmp_path / "lat.safetensors", InvertConfig(steps=2, perceptual="none"))
    ids, ws, meta = load_latents(tmp_path / "lat.safetensors")
    patients = [meta["items"][i]["identity"] for i in ids]
    labels = [meta["items"][i]["label"] for i in ids]
    groups = group_latents(ws, patients, labels, KSameConfig(k=2))
    check_k_anonymity(groups, patients, 2)
    pairs = pair_endpoints(groups.centroids[:, 0], torch.tensor(groups.group_labels), n_pairs=2,
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    walk = plan_paths(G, pairs.w_a, pairs.w_b, pairs.labels, guides.identity, guides.classifier,
                      PlanConfig(n_steps=5, optim_steps=3))  # fmt: skip
    assert walk.ws.shape == (2, 5, G.w_dim)
    assert torch.equal(walk.ws[:, 0], pairs.w_a) and torch.equal(walk.ws[:, -1], pairs.w_b)
    assert not torch.allclose(walk.ws, linear_paths(pairs.w_a, pairs.w_b, 5))  # the interior moved
    images = render_paths(G, walk.ws)
    assert images.shape == (2, 5, 1, 64, 64) and images.abs().max() <= 1
    assert pairs.labels.tolist() == [groups.group_labels[i] for i in pairs.index_a.tolist()]
