"""latentwalk.weights: offline resolution (explicit path > env var > torch.hub cache), hash checks, LPIPS loading."""

from __future__ import annotations

import hashlib

import pytest
import torch

from gan_zoo import pretrained as weights
from gan_zoo.pretrained import KNOWN_WEIGHTS, WeightsFile, check_hash, hash_prefix, lpips_model, resolve_weights
from latentwalk.errors import ConfigError, DataError, MissingWeightsError

VGG = "vgg16-397923af.pth"


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path, monkeypatch):
    """No real weights dir or torch cache leaks into a test; the verified-hash memo starts empty."""
    monkeypatch.delenv(weights.ENV_VAR, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(weights, "_VERIFIED", {})


def tiny_known_file(folder, monkeypatch, payload: bytes = b"tiny weights") -> str:
    """Write a tiny file whose name carries the right SHA-256 prefix and register it as a known weights file."""
    name = f"tiny-{hashlib.sha256(payload).hexdigest()[:8]}.pth"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(payload)
    monkeypatch.setitem(KNOWN_WEIGHTS, name, WeightsFile("Tiny test", "--tiny-weights", "tiny", "https://x/" + name))
    monkeypatch.setitem(weights.FETCH_NAMES, "tiny", name)
    return name


def test_hash_prefix_follows_torch_hub_naming():
    assert hash_prefix("vgg16-397923af.pth") == "397923af"
    assert hash_prefix("pt_inception-2015-12-05-6726825d.pth") == "6726825d"
    assert hash_prefix("alexnet-owt-7be5be79.pth") == "7be5be79"
    assert hash_prefix("weights.pth") is None


def test_resolve_finds_a_file_with_the_right_hash_in_the_env_dir(tmp_path, monkeypatch):
    name = tiny_known_file(tmp_path / "w", monkeypatch)
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path / "w"))
    assert resolve_weights(name) == tmp_path / "w" / name


def test_resolve_falls_back_to_the_torch_hub_cache(tmp_path, monkeypatch):
    name = tiny_known_file(tmp_path / "torch_home" / "hub" / "checkpoints", monkeypatch)
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path / "empty"))
    assert resolve_weights(name) == tmp_path / "torch_home" / "hub" / "checkpoints" / name


def test_resolve_refuses_a_file_whose_hash_does_not_match_its_name(tmp_path, monkeypatch):
    (tmp_path / VGG).write_bytes(b"not the vgg weights")
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path))
    with pytest.raises(DataError, match=r"vgg16-397923af\.pth has SHA-256 .* expected a digest starting with 397923af"):
        resolve_weights(VGG)
    assert resolve_weights(VGG, verify_hash=False) == tmp_path / VGG


def test_resolve_refuses_empty_and_git_lfs_pointer_files(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path))
    (tmp_path / VGG).write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        resolve_weights(VGG)
    (tmp_path / VGG).write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1\n")
    with pytest.raises(DataError, match="git-lfs pointer"):
        resolve_weights(VGG)


def test_missing_weights_error_names_every_place_searched_and_the_option(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path / "w"))
    with pytest.raises(MissingWeightsError) as err:
        resolve_weights(VGG)
    hub = tmp_path / "torch_home" / "hub" / "checkpoints" / VGG
    assert str(err.value) == (
        f"LPIPS VGG16 backbone weights not found: expected {VGG} at {tmp_path / 'w' / VGG} or {hub}. "
        f"Place {VGG} there, pass --lpips-weights PATH, or run `latentwalk weights fetch lpips-vgg` (needs a network)."
    )
    with pytest.raises(MissingWeightsError, match=r"Inception for FID weights not found.*--inception-weights PATH"):
        resolve_weights("pt_inception-2015-12-05-6726825d.pth")


def test_explicit_path_wins_over_env_dir_and_is_the_only_place_searched(tmp_path, monkeypatch):
    name = tiny_known_file(tmp_path / "env", monkeypatch)
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path / "env"))
    explicit = tmp_path / "explicit" / "renamed.pth"
    explicit.parent.mkdir()
    explicit.write_bytes(b"tiny weights")
    assert resolve_weights(name, explicit) == explicit
    assert resolve_weights(name, tmp_path / "env") == tmp_path / "env" / name  # a folder holding the file
    with pytest.raises(MissingWeightsError, match=r"expected tiny-.* at .*nowhere\.pth\. Place"):
        resolve_weights(name, tmp_path / "nowhere.pth")


def test_explicit_path_is_checked_against_the_canonical_hash(tmp_path, monkeypatch):
    name = tiny_known_file(tmp_path / "env", monkeypatch)
    other = tmp_path / "other.pth"
    other.write_bytes(b"other content")
    with pytest.raises(DataError, match="expected a digest starting with"):
        resolve_weights(name, other)


def test_unknown_weights_name_is_a_config_error():
    with pytest.raises(ConfigError, match='unknown weights file "resnet.pth"; expected one of'):
        resolve_weights("resnet.pth")


def test_check_hash_accepts_a_matching_prefix(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc")
    check_hash(f, hashlib.sha256(b"abc").hexdigest()[:10])
    with pytest.raises(DataError):
        check_hash(tmp_path / "x.bin", "0000")  # the memo of passed checks is per prefix


def test_lpips_model_raises_missing_weights_before_building_anything(monkeypatch):
    import lpips

    def boom(*args, **kwargs):
        raise AssertionError("lpips.LPIPS must not be built when the backbone is missing")

    monkeypatch.setattr(lpips, "LPIPS", boom)
    with pytest.raises(MissingWeightsError, match="LPIPS AlexNet backbone weights not found"):
        lpips_model("alex")
    with pytest.raises(ConfigError, match="unknown LPIPS network"):
        lpips_model("squeeze")


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_model_loads_the_backbone_from_the_resolved_file(tmp_path, net):
    import torchvision

    torch.manual_seed(123)
    tv = torchvision.models.alexnet() if net == "alex" else torchvision.models.vgg16()
    features = {k: v for k, v in tv.state_dict().items() if k.startswith("features.")}  # the classifier is unused
    path = tmp_path / weights.LPIPS_BACKBONES[net]
    torch.save(features, path)
    with pytest.raises(DataError, match="expected a digest"):  # a random network is not the published file
        lpips_model(net, weights=tmp_path)
    model = lpips_model(net, weights=tmp_path, verify_hash=False)
    loaded = model.net.state_dict()
    assert len(loaded) == len(features)
    for key, value in loaded.items():
        assert torch.equal(value, features["features." + key.split(".", 1)[1]]), key
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    lins = {k: v for k, v in model.state_dict().items() if k.startswith("lin") and not k.startswith("lins.")}
    import lpips

    shipped = torch.load(lpips.__path__[0] + f"/weights/v0.1/{net}.pth", map_location="cpu", weights_only=True)
    assert lins and all(torch.equal(lins[k], shipped[k]) for k in lins)  # calibrated linear layers, not random
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert model(x, x).abs().max() == 0
    assert model(x, x.flip(0)).view(-1).gt(0).all()


def test_lpips_model_rejects_a_file_without_backbone_tensors(tmp_path):
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, path)
    with pytest.raises(DataError, match=r"lacks backbone tensors \['features.0.bias'"):
        lpips_model("alex", weights=path, verify_hash=False)
    path.write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable torchvision state_dict"):
        lpips_model("alex", weights=path, verify_hash=False)


def test_sha256_file_reads_in_blocks_and_matches_hashlib(tmp_path):
    import hashlib
    import os

    from latentwalk.io import sha256_file

    data = os.urandom(3 * (1 << 20) + 123)  # several 1 MiB blocks and a partial one
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_weights_fetch_downloads_checks_the_hash_and_installs_atomically(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from latentwalk.cli import cli

    mirror = tmp_path / "mirror"
    name = tiny_known_file(mirror, monkeypatch)
    monkeypatch.setenv(weights.MIRROR_ENV, mirror.as_uri())  # file:// — tests never touch the network
    dest = tmp_path / "cache"
    path, fetched = weights.fetch_weights("tiny", dest)
    assert fetched and path == dest / name and path.read_bytes() == b"tiny weights"
    assert weights.fetch_weights("tiny", dest) == (path, False)
    monkeypatch.setenv(weights.ENV_VAR, str(dest))
    assert resolve_weights(name) == path  # fetched into the place the commands search
    (mirror / name).write_bytes(b"tampered with")  # the mirror now serves another file under the same name
    other = tmp_path / "other"
    with pytest.raises(DataError, match="SHA-256"):
        weights.fetch_weights("tiny", other)
    assert not other.exists() or list(other.iterdir()) == []  # nothing installed, no temporary file left
    done = CliRunner().invoke(cli, ["weights", "fetch", "tiny", "--dest", str(dest)])
    assert done.exit_code == 0 and "already present" in done.output
    bad = CliRunner().invoke(cli, ["weights", "fetch", "tiny", "--dest", str(other)])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1 and "SHA-256" in bad.output
    with pytest.raises(ConfigError, match="unknown weights"):
        weights.fetch_weights("nope", dest)
