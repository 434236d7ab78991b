import subprocess
import sys

import pytest

PROBE = r"""
import socket, sys
def refuse(*a, **k):
    raise SystemExit("import opened a socket")
socket.socket.connect = refuse
socket.create_connection = refuse
import latentwalk, gan_zoo, latentwalk.cli
heavy = sorted(m for m in ("lpips", "matplotlib", "skimage", "pytorch_fid", "scipy") if m in sys.modules)
assert not heavy, f"importing latentwalk pulled in {heavy}"
if "torch" in sys.modules:
    import torch
    assert not torch.cuda.is_initialized(), "importing latentwalk initialised CUDA"
print("ok", latentwalk.__version__)
"""


def test_import_opens_no_socket_touches_no_cuda_and_loads_no_heavy_module():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok ")


def test_python_dash_m_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "latentwalk", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "latentwalk" in done.stdout


def test_every_public_name_resolves_to_the_stage_function_it_names():
    import latentwalk
    from latentwalk.evaluate.run import evaluate
    from latentwalk.pipeline import generate

    missing = [n for n in latentwalk.__all__ if getattr(latentwalk, n, None) is None]
    assert not missing
    assert latentwalk.generate is generate and latentwalk.evaluate_dataset is evaluate
    assert "plan_paths" in dir(latentwalk)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        latentwalk.nope  # noqa: B018
