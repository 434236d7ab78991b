"""CUDA paths that the CPU suite cannot reach: PLAN under bfloat16 autocast, ``generate`` under torchrun, the trainer's
float16 blocks, chunk sizing from free memory.

Every test here is marked ``gpu`` and skipped without CUDA; ``scripts/gpu_check.sh`` runs them (``pytest -m gpu``) on
a lent GPU. Tolerances were set from a CPU emulation of the same reduced precision (bfloat16 autocast on the CPU;
``block_dtype`` forced to float16 on the CPU), with a margin of 3-10x for the CUDA kernels' own rounding; each test
states its bound and why.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tiny import TinyClassifier

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture
def ieee_float32():
    """Plain float32 on the float32 side of a comparison: cuDNN runs float32 convolutions in TF32 by default (a 10-bit
    mantissa, as float16's), which would blur the reference the reduced-precision side is measured against."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


# ---------------------------------------------------------------------------------------------------------------
# PLAN: bfloat16 autocast + channels-last vs float32, same device.


def test_plan_under_bfloat16_autocast_follows_the_float32_paths(ieee_float32):
    """8 paths of 8 points, 20 Adam steps, chunk 16 (3 chunks per step), tiny 16 px G, on CUDA.

    Bounds, from a CPU emulation (bfloat16 autocast on the CPU) over 10 seeds:
    - objective at step 0 (both sides evaluate the same linear paths; only the precision differs): per path within 3 %
      relative (measured <= 1 %: bfloat16 keeps 8 bits of mantissa);
    - final objective summed over the paths within 5 % relative (measured <= 1.9 %);
    - paths: ``||d_bf16 - d_fp32|| <= 0.5 ||d_fp32||`` over all paths, ``d`` = displacement from the linear path
      (measured 0.13-0.27). Per coordinate the paths are *not* close: Adam's normalised steps turn rounding on
      coordinates with a near-zero gradient into full steps of either sign, so a per-coordinate bound would test
      Adam, not autocast; a broken autocast gradient (wrong sign, zero, NaN) moves the paths elsewhere entirely;
    - the bfloat16 run lowers the objective by at least half as much as the float32 run (measured: equally).
    """
    from gan_zoo.stylegan2 import Generator
    from latentwalk.paths import PlanConfig, linear_paths, plan_paths

    dev = torch.device("cuda")
    torch.manual_seed(0)
    G = Generator(8, 0, 8, 16, 1, mapping_kwargs={"num_layers": 2},
                  synthesis_kwargs={"channel_base": 64, "channel_max": 8})  # fmt: skip
    G = G.eval().requires_grad_(False).to(dev)
    id_net = TinyClassifier(6, seed=1).eval().requires_grad_(False).to(dev)
    class_net = TinyClassifier(2, seed=2).eval().requires_grad_(False).to(dev)
    gen = torch.Generator().manual_seed(0)
    w_a, w_b = torch.randn(8, 8, generator=gen).to(dev), torch.randn(8, 8, generator=gen).to(dev)
    labels = [0, 1] * 4
    base = dict(n_steps=8, optim_steps=20, chunk=16, repeat_gray=True)
    fp32 = plan_paths(G, w_a, w_b, labels, id_net, class_net, PlanConfig(**base), impl="batched")
    bf16 = plan_paths(G, w_a, w_b, labels, id_net, class_net, PlanConfig(**base, amp=True, channels_last=True),
                      impl="batched")  # fmt: skip

    assert bf16.ws.dtype == torch.float32 and bf16.ws.device.type == "cuda"
    assert torch.isfinite(bf16.ws).all()
    for name, h in bf16.loss_history.items():
        assert torch.isfinite(h).all(), name
    for name, d in bf16.diagnostics.items():
        assert torch.isfinite(d).all(), name
    assert torch.equal(bf16.ws[:, 0], w_a) and torch.equal(bf16.ws[:, -1], w_b)
    t32, t16 = fp32.loss_history["total"], bf16.loss_history["total"]  # [steps, paths]
    torch.testing.assert_close(t16[0], t32[0], rtol=0.03, atol=0.0)
    assert abs(float(t16[-1].sum() / t32[-1].sum()) - 1) <= 0.05, (t16[-1], t32[-1])
    lin = linear_paths(w_a, w_b, 8)
    d32, d16 = fp32.ws - lin, bf16.ws - lin  # [paths, n_steps, w_dim]
    assert float((d16 - d32).norm() / d32.norm()) <= 0.5
    drop32, drop16 = float(t32[0].sum() - t32[-1].sum()), float(t16[0].sum() - t16[-1].sum())
    assert drop32 > 0 and drop16 >= 0.5 * drop32, (drop32, drop16)


# ---------------------------------------------------------------------------------------------------------------
# generate: torchrun, one process, CUDA; auto chunk from free memory.


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _generate_args(chain, out: Path) -> list[str]:
    return ["-m", "latentwalk", "--quiet", "generate", "--gan", chain["gan"], "--guides", chain["guides"],
            "--data", chain["data"], "--method", "plan", "--per-label", "4", "--n-steps", "4",
            "--paths-per-item", "1", "--optim-steps", "3", "--chunk", "64", "--no-endpoint-filter",
            "--no-label-gate", "--device", "cuda", "--out", str(out)]  # fmt: skip


def _max_pixel_difference(a: Path, b: Path) -> int:
    import numpy as np
    from PIL import Image

    worst = 0
    for p in sorted((a / "images").rglob("*.png")):
        q = b / p.relative_to(a)
        if q.is_file():
            x, y = np.asarray(Image.open(p)).astype(int), np.asarray(Image.open(q)).astype(int)
            worst = max(worst, int(np.abs(x - y).max()) if x.shape == y.shape else 255)
    return worst


def _assert_same_dataset(a: Path, b: Path) -> None:
    """Byte-identical files, ``run.json`` less its ``execution`` block; on a difference, say how large it is (one
    pixel level would point at CUDA non-determinism, not at the sharding)."""
    fa = {p.relative_to(a).as_posix(): p for p in sorted(a.rglob("*")) if p.is_file()}
    fb = {p.relative_to(b).as_posix(): p for p in sorted(b.rglob("*")) if p.is_file()}
    assert sorted(fa) == sorted(fb)
    for name, pa in fa.items():
        if name == "run.json":
            ra, rb = json.loads(pa.read_text()), json.loads(fb[name].read_text())
            ra.pop("execution"), rb.pop("execution")
            assert ra == rb
        else:
            assert pa.read_bytes() == fb[name].read_bytes(), (
                f"{name} differs; largest pixel difference over all images: {_max_pixel_difference(a, b)} levels"
            )


def test_torchrun_one_process_on_cuda_equals_a_plain_cuda_run(chain, tmp_path):
    """``torchrun --nproc-per-node 1`` on CUDA writes the files of a plain one-process CUDA run (PLAN in bfloat16, as
    generate runs it on CUDA by default).

    With one process torchrun sets ``WORLD_SIZE=1`` and :func:`latentwalk.generation.world.world` joins no process
    group, by design: this covers the launcher's environment on CUDA, not NCCL, which needs two GPUs (NCCL refuses two
    ranks on one device).
    """
    plain = subprocess.run([sys.executable, *_generate_args(chain, tmp_path / "plain")], env=_env(),
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert plain.returncode == 0, plain.stderr[-3000:]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
           *_generate_args(chain, tmp_path / "torchrun")]  # fmt: skip
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_dataset(tmp_path / "plain", tmp_path / "torchrun")
    for name in ("plain", "torchrun"):
        run = json.loads((tmp_path / name / "run.json").read_text())
        assert run["execution"]["processes"] == 1 and run["execution"]["device"].startswith("cuda")
        assert run["config"]["amp"] is True and run["config"]["chunk"] == 64
        with (tmp_path / name / "manifest.csv").open(newline="") as f:
            assert len(list(csv.DictReader(f))) > 0


MIB = 1 << 20
CHUNK_BYTES = 24 * MIB  # the documented sizing: half the free memory at ~24 MB per image, multiples of 8, in [16, 512]


def _expected_chunk(free: int) -> int:
    return int(min(512, max(16, free // 2 // CHUNK_BYTES // 8 * 8)))


@pytest.mark.parametrize("free_gib", [None, 5], ids=["all-free-memory", "5-GiB-free"])
def test_auto_chunk_on_cuda_follows_free_memory(chain, tmp_path, free_gib):
    """``chunk`` left unset on CUDA: ``run.json`` records the pass size sized from free memory.

    ``None``: whatever this GPU has free (512, the cap, whenever 24 GiB or more are free); ``5``: a blocker tensor
    leaves about 5 GiB free, so the chunk must come out near 104 (5120 MiB / 2 / 24 MiB, down to a multiple of 8), well
    under the cap. Bound: between the value expected from the free memory measured just before ``generate`` and 16 less
    (768 MiB of slack for what ``generate`` allocates before it sizes the chunk: generator, guides, real images).
    """
    from latentwalk.pipeline import GenerateConfig, generate

    dev = torch.device("cuda")
    x = torch.randn(64, 64, device=dev)  # load cuBLAS and cuDNN before measuring: their first call takes memory
    F.conv2d(x[None, None], torch.ones(1, 1, 3, 3, device=dev)).sum().item()
    (x @ x).sum().item()
    blocker = None
    try:
        torch.cuda.empty_cache()
        if free_gib is not None:
            free, _ = torch.cuda.mem_get_info(dev)
            if free < (free_gib + 2) * (1 << 30):
                pytest.skip(f"needs more than {free_gib + 2} GiB of free GPU memory, {free / (1 << 30):.1f} GiB free")
            blocker = torch.empty(free - free_gib * (1 << 30), dtype=torch.uint8, device=dev)
        free, _ = torch.cuda.mem_get_info(dev)
        expected = _expected_chunk(free)
        cfg = GenerateConfig.from_dict(dict(gan=chain["gan"], guides=chain["guides"], data=chain["data"],
                                            method="linear", per_label=2, n_steps=4, endpoint_filter=False,
                                            label_gate=False, device="cuda"))  # fmt: skip
        result = generate(cfg, tmp_path / "out")
    finally:
        del blocker
        torch.cuda.empty_cache()
    chunk = result.run["config"]["chunk"]
    recorded = json.loads((tmp_path / "out" / "run.json").read_text())["config"]["chunk"]
    assert recorded == chunk and chunk % 8 == 0
    assert expected - 16 <= chunk <= expected + 8, (chunk, expected, free / MIB)
    if free_gib is not None:
        assert 80 <= chunk <= 104


# ---------------------------------------------------------------------------------------------------------------
# The trainer's float16 blocks.

TINY = dict(resolution=32, batch=4, channel_base=128, channel_max=16, z_dim=8, w_dim=8, mapping_layers=1,
            snapshot_kimg=0.008, r1_interval=2)  # fmt: skip


@pytest.fixture(scope="module")
def train_data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(12, 1, 32, 32, generator=g) * 2 - 1, torch.arange(12) % 2


def test_float16_blocks_match_float32_blocks_at_initialisation(ieee_float32):
    """``fp16_res=2``: G's 16 and 32 px blocks and D's 32 and 16 px blocks run in float16 on CUDA; their outputs are
    float32 and close to the same modules run with ``force_fp32=True``.

    Bounds: G relative L2 error <= 5e-3 and max |diff| <= 3e-2 (CPU float16 emulation: 5e-4 and 3.3e-3 on images of
    max |x| 3.4); D logits within 1e-2 absolute (emulation: 1.3e-4).
    """
    from gan_zoo.train import TrainConfig, build_networks

    dev = torch.device("cuda")
    G, D = build_networks(TrainConfig(fp16_res=2, **TINY), 1, 0)
    G, D = G.eval().to(dev), D.eval().to(dev)
    assert [b.use_fp16 for b in (G.synthesis.b4, G.synthesis.b8, G.synthesis.b16, G.synthesis.b32)] == [
        False, False, True, True]  # fmt: skip
    z = torch.randn(16, 8, generator=torch.Generator().manual_seed(0)).to(dev)
    img = (torch.rand(16, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(dev)
    with torch.no_grad():
        half, full = G(z, None), G(z, None, force_fp32=True)
        logits_half, logits_full = D(img, None), D(img, None, force_fp32=True)
    assert half.dtype == torch.float32 and logits_half.dtype == torch.float32
    assert torch.isfinite(half).all() and torch.isfinite(logits_half).all()
    assert not torch.equal(half, full), "the float16 blocks did not run in float16"
    assert float((half - full).norm() / full.norm()) <= 5e-3
    assert float((half - full).abs().max()) <= 3e-2
    torch.testing.assert_close(logits_half, logits_full, rtol=0.0, atol=1e-2)


def _train(data, out: Path, fp16_res: int) -> list[dict]:
    from gan_zoo.train import TrainConfig, train_gan

    images, labels = data
    with torch.random.fork_rng(devices=[torch.cuda.current_device()]):
        torch.cuda.manual_seed(0)  # G's random noise comes from the CUDA generator: the same noise on both runs
        train_gan(images, labels, out, TrainConfig(kimg=0.016, fp16_res=fp16_res, **TINY), device="cuda")
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_training_with_float16_blocks_stays_finite_and_tracks_float32(train_data, tmp_path, ieee_float32):
    """4 steps of batch 4 on CUDA (2 lazy R1 steps: double backward through the float16 blocks), ``fp16_res=2`` vs
    ``fp16_res=0`` from the same initialisation, batches, augmentation and noise.

    Bounds: every logged loss finite; ``loss_d`` and ``loss_g`` per snapshot within 2 % relative, ``r1`` within 10 %
    (CPU float16 emulation: 1e-4 relative on all three; the margin covers Adam turning rounding into steps of either
    sign on near-zero gradients, and ``conv_clamp`` 256, which fp16_res > 0 turns on). The saved generator still runs
    its float16 blocks on CUDA: float32 output within 5e-3 relative L2 of ``force_fp32``.
    """
    from gan_zoo.checkpoint import load_generator

    log16 = _train(train_data, tmp_path / "fp16", fp16_res=2)
    log32 = _train(train_data, tmp_path / "fp32", fp16_res=0)
    assert [r["kimg"] for r in log16] == [0.008, 0.016] == [r["kimg"] for r in log32]
    for r16, r32 in zip(log16, log32, strict=True):
        for key in ("loss_d", "loss_g", "r1"):
            assert math.isfinite(r16[key]), (key, r16)
        assert r16["loss_d"] == pytest.approx(r32["loss_d"], rel=0.02)
        assert r16["loss_g"] == pytest.approx(r32["loss_g"], rel=0.02)
        assert r16["r1"] == pytest.approx(r32["r1"], rel=0.10)
    G = load_generator(tmp_path / "fp16" / "generator.safetensors").eval().to("cuda")
    assert G.synthesis.b32.use_fp16
    z = torch.randn(8, 8, generator=torch.Generator().manual_seed(2)).to("cuda")
    with torch.no_grad():
        half, full = G(z, None), G(z, None, force_fp32=True)
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    assert float((half - full).norm() / full.norm()) <= 5e-3
