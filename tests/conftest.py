"""Shared fixtures: offline guard, tiny phantom datasets, CPU device."""

from __future__ import annotations

import ipaddress
import socket

import pytest

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _loopback_only(address) -> None:
    host = address[0] if isinstance(address, tuple) else None
    if host is None:  # AF_UNIX paths
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        if host == "localhost":
            return
    raise RuntimeError(f"tests must not touch the network (attempted connection to {address!r})")


def _guarded_connect(self, address):
    _loopback_only(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    _loopback_only(address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Fail any test that opens a connection to anything but this machine."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny models: tiny convolutions gain nothing from more threads, and lose a
    lot on a busy machine. Opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def device():
    import torch

    return torch.device("cpu")


@pytest.fixture(scope="session")
def cxr_dataset(tmp_path_factory):
    """A small native-format phantom CXR dataset: 12 patients x 3 images at 32 px."""
    from latentwalk.data.phantoms import PhantomConfig, write_phantom_dataset

    out = tmp_path_factory.mktemp("cxr") / "data"
    write_phantom_dataset(PhantomConfig(kind="cxr", identities=12, per_identity=3, resolution=32, seed=3), out)
    return out


@pytest.fixture(scope="session")
def fundus_dataset(tmp_path_factory):
    """A small native-format phantom fundus dataset: 10 patients x 2 images at 32 px."""
    from latentwalk.data.phantoms import PhantomConfig, write_phantom_dataset

    out = tmp_path_factory.mktemp("fundus") / "data"
    write_phantom_dataset(PhantomConfig(kind="fundus", identities=10, per_identity=2, resolution=32, seed=4), out)
    return out


@pytest.fixture
def write_nvidia_pickle(monkeypatch, tmp_path):
    """``write(snapshot_dict, name="network-snapshot.pkl", overrides=None, protocol=4, module_src=...) -> Path``."""
    from nvidia_format import DUMMY_SRC, write_nvidia_pickle_file

    def write(snapshot, name="network-snapshot.pkl", overrides=None, protocol=4, module_src=DUMMY_SRC):
        return write_nvidia_pickle_file(tmp_path / name, snapshot, monkeypatch, overrides, protocol, module_src)

    return write


@pytest.fixture(scope="session")
def chain(cxr_dataset, tmp_path_factory):
    """A tiny 32-px generator, guides trained for one epoch, and inverted training latents, on the CXR fixture."""
    from tiny import tiny_generator

    from gan_zoo.checkpoint import save_generator
    from gan_zoo.invert import InvertConfig
    from latentwalk.data import open_dataset
    from latentwalk.guides import GuideConfig, train_guides
    from latentwalk.invert import invert_dataset

    root = tmp_path_factory.mktemp("chain")
    G = tiny_generator()
    save_generator(G, root / "g" / "generator", {"test": True})
    index = open_dataset(cxr_dataset)
    train_guides(index, root / "guides", GuideConfig(epochs=1), resolution=32, channels=1)
    invert_dataset(G, index.subset("train"), root / "lat.safetensors", InvertConfig(steps=2, perceptual="none"))
    return {"gan": f"lite:{root / 'g'}", "guides": str(root / "guides"), "data": str(cxr_dataset),
            "latents": str(root / "lat.safetensors"), "root": root}  # fmt: skip
