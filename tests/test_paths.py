"""latentwalk.paths: linear/slerp paths, PLAN (batched and reference implementations), endpoint helpers."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from tiny import TinyClassifier
from torch import nn

from gan_zoo.stylegan2 import Generator
from latentwalk.endpoints import pair_endpoints, sample_w
from latentwalk.errors import ConfigError, DataError
from latentwalk.paths import (
    PlanConfig,
    learning_rate,
    linear_paths,
    path_objective,
    plan_paths,
    reference_chunk_weights,
    slerp_paths,
)

TOL = dict(rtol=1e-4, atol=1e-5)  # float32 rounding: fused vs unfused modulation, summation order


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return Generator(
        z_dim=8,
        c_dim=0,
        w_dim=8,
        img_resolution=16,
        img_channels=1,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={"channel_base": 64, "channel_max": 8},
    ).eval()


@pytest.fixture(scope="module")
def nets():
    return TinyClassifier(6, seed=1).eval(), TinyClassifier(2, seed=2).eval()


def endpoints(G, n: int, seed: int = 0, plus: bool = False):
    gen = torch.Generator().manual_seed(seed)
    shape = (n, G.num_ws, G.w_dim) if plus else (n, G.w_dim)
    return torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)


def transcribed_reference(G, w_a, w_b, id_net, class_net, n_steps, label, lr=0.1, optim_steps=500):
    """Our literal restatement of ``get_privacy_path`` (perceivelab/PLAN, commit 2d471b0), one W path.

    Endpoints are ``[1, 1, w_dim]`` as the reference takes them. Returns the path ``[n_steps, w_dim]`` and the loss
    of every step.
    """
    w_dim = w_a.shape[-1]
    line = torch.zeros(n_steps, w_dim)
    for i, t in enumerate(torch.linspace(0, 1, n_steps)):
        line[i] = w_a + t * (w_b - w_a)
    inner = line[1:-1].clone().requires_grad_(True)  # the fixed endpoints are left out
    opt = torch.optim.Adam([inner], betas=(0.9, 0.999), lr=lr)
    losses = []
    for _ in range(optim_steps):
        opt.zero_grad()
        imgs = G.synthesis(inner.unsqueeze(1).repeat([1, G.num_ws, 1]), noise_mode="const").clamp(-1, 1)
        if imgs.shape[1] == 1:
            imgs = imgs.repeat(1, 3, 1, 1)
        privacy = 0
        for group in imgs.split(4):
            out = id_net(group)
            uniform = torch.ones(out.shape[1]) / out.shape[1]
            privacy = privacy + F.kl_div(F.log_softmax(out, dim=1), uniform, reduction="batchmean")
        cls = 0
        for group in imgs.split(4):
            out = class_net(group)
            cls = cls + F.cross_entropy(out, torch.tensor(label).repeat(out.shape[0]))
        full = torch.cat([w_a.squeeze(0), inner, w_b.squeeze(0)])
        eq = F.pairwise_distance(full[:-1], full[1:]).square().sum()
        loss = privacy * 0.1 + eq + cls
        losses.append(loss.item())
        loss.backward()
        opt.step()
    return torch.cat([w_a.squeeze(0), inner.detach(), w_b.squeeze(0)]), losses


# ---------------------------------------------------------------------------------------------------------------
# Linear and spherical paths.


@pytest.mark.parametrize("shape", [(3, 8), (3, 5, 8)])
def test_linear_paths_have_both_endpoints_and_even_spacing(shape):
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    p = linear_paths(a, b, 5)
    assert p.shape == (shape[0], 5, *shape[1:])
    assert torch.equal(p[:, 0], a) and torch.equal(p[:, -1], b)
    torch.testing.assert_close(p[:, 2], (a + b) / 2)
    steps = (p[:, 1:] - p[:, :-1]).flatten(2).norm(dim=2)
    torch.testing.assert_close(steps, steps[:, :1].expand_as(steps))


def test_slerp_paths_follow_the_great_circle():
    a = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 1.0, 0.0], [4.0, 0.0, 0.0]])  # orthogonal; parallel (falls back to linear)
    p = slerp_paths(a, b, 3)
    assert p.shape == (2, 3, 3)
    assert torch.equal(p[:, 0], a) and torch.equal(p[:, -1], b)
    torch.testing.assert_close(p[0, 1], torch.tensor([1.0, 1.0, 0.0]) / math.sqrt(2))
    torch.testing.assert_close(p[1, 1], torch.tensor([3.0, 0.0, 0.0]))
    wp = slerp_paths(torch.randn(2, 4, 8), torch.randn(2, 4, 8), 6)  # W+: per layer
    assert wp.shape == (2, 6, 4, 8)


def test_path_helpers_reject_mismatched_endpoints():
    with pytest.raises(ConfigError, match="same shape"):
        linear_paths(torch.zeros(2, 8), torch.zeros(3, 8), 5)
    with pytest.raises(ConfigError, match="n_steps"):
        slerp_paths(torch.zeros(2, 8), torch.zeros(2, 8), 1)


def test_reference_chunk_weights_average_each_chunk_of_four():
    w = reference_chunk_weights(7)
    torch.testing.assert_close(w, torch.tensor([1 / 4] * 4 + [1 / 3] * 3))
    assert reference_chunk_weights(8).sum() == 2


# ---------------------------------------------------------------------------------------------------------------
# PLAN against the reference.


@pytest.mark.parametrize("n_steps", [7, 12])  # 5 and 10 interior points: a last chunk of 1 and of 2 images
def test_objective_matches_reference_statement(G, nets, n_steps):
    id_net, class_net = nets
    a, b = endpoints(G, 1, seed=3)
    ref_path, ref_losses = transcribed_reference(G, a[:, None], b[:, None], id_net, class_net, n_steps, 1, 0.1, 4)
    for p in (*id_net.parameters(), *class_net.parameters(), *G.parameters()):  # the transcription fills them
        p.grad = None
    cfg = PlanConfig(n_steps=n_steps, optim_steps=4)
    res = plan_paths(G, a, b, [1], id_net, class_net, cfg, impl="batched")
    assert res.ws.shape == (1, n_steps, G.w_dim)
    torch.testing.assert_close(res.loss_history["total"][:, 0], torch.tensor(ref_losses), **TOL)
    torch.testing.assert_close(res.ws[0], ref_path, **TOL)
    assert not torch.allclose(res.ws[0], linear_paths(a, b, n_steps)[0])  # the optimisation did move the path
    ref_impl = plan_paths(G, a, b, [1], id_net, class_net, cfg, impl="reference")
    torch.testing.assert_close(ref_impl.ws, res.ws, **TOL)
    torch.testing.assert_close(ref_impl.loss_history["total"][:, 0], torch.tensor(ref_losses), **TOL)
    weighted = 0.1 * res.loss_history["privacy"] + res.loss_history["equidistance"] + res.loss_history["class"]
    torch.testing.assert_close(weighted, res.loss_history["total"])


def test_batched_equals_sequential(G, nets):
    id_net, class_net = nets
    a, b = endpoints(G, 3, seed=4)
    labels = [0, 1, 1]
    cfg = PlanConfig(n_steps=9, optim_steps=5, chunk=5)  # chunks straddle paths
    together = plan_paths(G, a, b, labels, id_net, class_net, cfg)
    for i in range(3):
        alone = plan_paths(G, a[i : i + 1], b[i : i + 1], labels[i : i + 1], id_net, class_net, cfg)
        torch.testing.assert_close(together.ws[i], alone.ws[0], **TOL)
        for term, hist in together.loss_history.items():
            torch.testing.assert_close(hist[:, i], alone.loss_history[term][:, 0], **TOL)
    reference = plan_paths(G, a, b, labels, id_net, class_net, cfg, impl="reference")
    torch.testing.assert_close(together.ws, reference.ws, **TOL)
    one_chunk = plan_paths(G, a, b, labels, id_net, class_net, PlanConfig(n_steps=9, optim_steps=5, chunk=1))
    torch.testing.assert_close(together.ws, one_chunk.ws, **TOL)


def test_w_plus_paths_match_reference_and_keep_endpoints(G, nets):
    id_net, class_net = nets
    a, b = endpoints(G, 2, seed=5, plus=True)
    cfg = PlanConfig(n_steps=6, optim_steps=3)
    batched = plan_paths(G, a, b, [0, 1], id_net, class_net, cfg)
    reference = plan_paths(G, a, b, [0, 1], id_net, class_net, cfg, impl="reference")
    assert batched.ws.shape == (2, 6, G.num_ws, G.w_dim)
    assert torch.equal(batched.ws[:, 0], a) and torch.equal(batched.ws[:, -1], b)
    torch.testing.assert_close(batched.ws, reference.ws, **TOL)
    assert not torch.allclose(batched.ws[:, 1, 0], batched.ws[:, 1, -1])  # layers move independently


@pytest.mark.parametrize("impl", ["batched", "reference"])
def test_plan_path_endpoints_are_fixed_and_networks_untouched(G, nets, impl):
    id_net, class_net = nets
    a, b = endpoints(G, 2, seed=6)
    res = plan_paths(G, a, b, [1, 0], id_net, class_net, PlanConfig(n_steps=5, optim_steps=3), impl=impl)
    assert torch.equal(res.ws[:, 0], a) and torch.equal(res.ws[:, -1], b)
    assert res.steps_run.tolist() == [3, 3] and res.impl == impl
    assert all(p.grad is None for m in (G, id_net, class_net) for p in m.parameters())
    assert not G.training and not id_net.training


def test_zero_steps_return_the_linear_path(G, nets):
    a, b = endpoints(G, 2, seed=7)
    res = plan_paths(G, a, b, [0, 0], *nets, PlanConfig(n_steps=6, optim_steps=0))
    torch.testing.assert_close(res.ws, linear_paths(a, b, 6), rtol=0, atol=0)
    assert res.loss_history["total"].shape == (0, 2)


def test_diagnostics_have_one_value_per_point_and_path(G, nets):
    a, b = endpoints(G, 2, seed=8)
    res = plan_paths(G, a, b, [0, 1], *nets, PlanConfig(n_steps=7, optim_steps=2, chunk=3))
    d = res.diagnostics
    for key in ("id_max_prob", "id_entropy", "class_prob"):
        assert d[key].shape == (2, 7)
    assert d["step_length"].shape == (2, 6)
    assert ((d["id_max_prob"] >= 1 / 6 - 1e-6) & (d["id_max_prob"] <= 1)).all()
    assert ((d["id_entropy"] >= 0) & (d["id_entropy"] <= math.log(6) + 1e-5)).all()
    assert ((d["class_prob"] >= 0) & (d["class_prob"] <= 1)).all()
    torch.testing.assert_close(d["step_length"], (res.ws[:, 1:] - res.ws[:, :-1]).norm(dim=2))
    assert all(h.shape == (2, 2) for h in res.loss_history.values())
    json.dumps(res.to_dict())


# ---------------------------------------------------------------------------------------------------------------
# Early stopping.


class Uniform(nn.Module):
    """An identity network with no evidence at all: every identity equally likely."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=(1, 2, 3))[:, None].mul(0).expand(-1, 6)


@pytest.mark.parametrize("impl", ["batched", "reference"])
def test_early_stop_returns_the_path_that_met_the_criterion(G, nets, impl):
    a, b = endpoints(G, 2, seed=9)
    cfg = PlanConfig(n_steps=6, optim_steps=5, early_stop_id_prob=0.5)
    res = plan_paths(G, a, b, [0, 1], Uniform(), nets[1], cfg, impl=impl)
    assert res.steps_run.tolist() == [0, 0]
    torch.testing.assert_close(res.ws, linear_paths(a, b, 6), rtol=0, atol=0)
    assert torch.isfinite(res.loss_history["total"][0]).all()
    assert torch.isnan(res.loss_history["total"][1:]).all()


def test_early_stop_is_per_path_and_batched_matches_reference(G, nets):
    id_net, class_net = nets
    a, b = endpoints(G, 4, seed=10)
    labels = [0, 1, 0, 1]
    start = plan_paths(G, a, b, labels, id_net, class_net, PlanConfig(n_steps=6, optim_steps=0))
    peak = start.diagnostics["id_max_prob"][:, 1:-1].max(dim=1).values  # [4] per path, interior points
    threshold = float(peak.median())  # some paths meet it at once, some do not
    cfg = PlanConfig(n_steps=6, optim_steps=8, early_stop_id_prob=threshold, log_every=3)
    batched = plan_paths(G, a, b, labels, id_net, class_net, cfg)
    reference = plan_paths(G, a, b, labels, id_net, class_net, cfg, impl="reference")
    assert batched.steps_run.tolist() == reference.steps_run.tolist()
    assert batched.steps_run.min() == 0 and batched.steps_run.max() > 0
    torch.testing.assert_close(batched.ws, reference.ws, **TOL)
    for i, n in enumerate(batched.steps_run.tolist()):
        history = batched.loss_history["total"][:, i]
        assert torch.isfinite(history[: n + 1 if n < 8 else 8]).all() and torch.isnan(history[n + 1 :]).all()


def test_path_objective_is_what_the_loss_history_records(G, nets):
    id_net, class_net = nets
    a, b = endpoints(G, 3, seed=11)
    labels = [0, 1, 0]
    cfg = PlanConfig(n_steps=6, optim_steps=4)
    run = plan_paths(G, a, b, labels, id_net, class_net, cfg)
    after3 = plan_paths(G, a, b, labels, id_net, class_net, PlanConfig(n_steps=6, optim_steps=3))
    for name, history in run.loss_history.items():  # the history's row s is the objective before update s
        torch.testing.assert_close(path_objective(G, linear_paths(a, b, 6), labels, id_net, class_net, cfg)[name],
                                   history[0], **TOL)  # fmt: skip
        torch.testing.assert_close(path_objective(G, after3.ws, labels, id_net, class_net, cfg)[name], history[3],
                                   **TOL)  # fmt: skip
    assert (path_objective(G, run.ws, labels, id_net, class_net, cfg)["total"] < run.loss_history["total"][0]).all()


def test_learning_rate_schedules():
    const = PlanConfig(lr=0.2, optim_steps=10)
    assert [learning_rate(const, s) for s in range(10)] == [0.2] * 10  # the reference's: exactly lr
    warm = PlanConfig(lr=0.2, optim_steps=10, warmup_steps=4)
    assert [learning_rate(warm, s) for s in range(5)] == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2])
    cos = PlanConfig(lr=0.2, optim_steps=10, warmup_steps=2, schedule="cosine")
    rates = [learning_rate(cos, s) for s in range(10)]
    assert rates[2] == pytest.approx(0.2) and all(x > y > 0 for x, y in zip(rates[2:-1], rates[3:], strict=True))
    assert rates[-1] == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))


def test_slerp_start_and_cosine_warmup_schedule_batched_match_reference(G, nets):
    id_net, class_net = nets
    a, b = endpoints(G, 3, seed=12)
    labels = [0, 1, 1]
    cfg = PlanConfig(n_steps=6, optim_steps=6, init="slerp", schedule="cosine", warmup_steps=2, lr=0.3)
    batched = plan_paths(G, a, b, labels, id_net, class_net, cfg)
    reference = plan_paths(G, a, b, labels, id_net, class_net, cfg, impl="reference")
    torch.testing.assert_close(batched.ws, reference.ws, **TOL)
    start = plan_paths(G, a, b, labels, id_net, class_net, replace_cfg(cfg, optim_steps=0))
    torch.testing.assert_close(start.ws, slerp_paths(a, b, 6), rtol=0, atol=0)
    constant = plan_paths(G, a, b, labels, id_net, class_net, replace_cfg(cfg, schedule="constant", warmup_steps=0))
    assert not torch.allclose(constant.ws, batched.ws)  # the schedule changes the path


def replace_cfg(cfg: PlanConfig, **changes) -> PlanConfig:
    return PlanConfig.from_dict({**cfg.to_dict(), **changes})


def test_plateau_stop_is_per_path_and_batched_matches_reference(G, nets):
    id_net, class_net = nets
    a, b = endpoints(G, 4, seed=13)
    labels = [0, 1, 0, 1]
    free = plan_paths(G, a, b, labels, id_net, class_net, PlanConfig(n_steps=6, optim_steps=9, lr=0.05))
    h = free.loss_history["total"]
    gain = (h[1] - h[3]) / h[1].abs()  # [4] relative fall over steps 1..3, the first check (log_every 2)
    tol = float(gain.median())  # some paths plateau at the first check, some do not
    cfg = PlanConfig(n_steps=6, optim_steps=9, lr=0.05, log_every=2, early_stop_plateau=tol)
    batched = plan_paths(G, a, b, labels, id_net, class_net, cfg)
    reference = plan_paths(G, a, b, labels, id_net, class_net, cfg, impl="reference")
    assert batched.steps_run.tolist() == reference.steps_run.tolist()
    stopped = gain < tol
    assert stopped.any() and not stopped.all()
    assert (batched.steps_run[stopped] == 4).all() and (batched.steps_run[~stopped] > 4).all()
    torch.testing.assert_close(batched.ws, reference.ws, **TOL)
    assert torch.isnan(batched.loss_history["total"][4:, stopped]).all()


def test_cpu_bfloat16_autocast_reaches_the_float32_objective(G, nets):
    id_net, class_net = nets
    a, b = endpoints(G, 4, seed=14)
    labels = [0, 1, 0, 1]
    cfg = PlanConfig(n_steps=6, optim_steps=20)
    full = plan_paths(G, a, b, labels, id_net, class_net, cfg)
    half = plan_paths(G, a, b, labels, id_net, class_net, replace_cfg(cfg, amp=True))
    assert half.ws.dtype == torch.float32  # float32 master latents
    assert not torch.equal(half.ws, full.ws)  # autocast did run in bfloat16
    start = path_objective(G, linear_paths(a, b, 6), labels, id_net, class_net, cfg)["total"]
    f32 = path_objective(G, full.ws, labels, id_net, class_net, cfg)["total"]
    b16 = path_objective(G, half.ws, labels, id_net, class_net, cfg)["total"]
    torch.testing.assert_close(b16, f32, rtol=0.02, atol=0.0)  # within 2 % of the float32 walk's objective
    assert (start - b16 > 0.5 * (start - f32)).all()  # and most of its descent


# ---------------------------------------------------------------------------------------------------------------
# Errors.


def test_plan_paths_rejects_bad_inputs(G, nets):
    id_net, class_net = nets
    a, b = endpoints(G, 2)
    cfg = PlanConfig(n_steps=4, optim_steps=1)
    with pytest.raises(ConfigError, match="same shape"):
        plan_paths(G, a, b[:1], [0, 0], id_net, class_net, cfg)
    with pytest.raises(ConfigError, match=r"\[B, 8\] \(W\)"):
        plan_paths(G, a[:, :4], b[:, :4], [0, 0], id_net, class_net, cfg)
    with pytest.raises(ConfigError, match="one per path"):
        plan_paths(G, a, b, [0], id_net, class_net, cfg)
    with pytest.raises(ConfigError, match="labels must be < 2"):
        plan_paths(G, a, b, [0, 2], id_net, class_net, cfg)
    with pytest.raises(ConfigError, match="integers"):
        plan_paths(G, a, b, torch.tensor([0.0, 1.0]), id_net, class_net, cfg)
    with pytest.raises(ConfigError, match="unknown PLAN implementation"):
        plan_paths(G, a, b, [0, 0], id_net, class_net, cfg, impl="fast")
    with pytest.raises(ConfigError, match="needs CUDA"):
        plan_paths(G, a, b, [0, 0], id_net, class_net, PlanConfig(channels_last=True))
    with pytest.raises(ConfigError, match="batched"):
        plan_paths(G, a, b, [0, 0], id_net, class_net, PlanConfig(amp=True), impl="reference")
    with pytest.raises(ConfigError, match="can never be reached"):
        plan_paths(G, a, b, [0, 0], id_net, class_net, PlanConfig(early_stop_id_prob=0.1))
    with pytest.raises(ConfigError, match="NaN"):
        plan_paths(G, a * float("nan"), b, [0, 0], id_net, class_net, cfg)
    with pytest.raises(ConfigError, match="classifier failed"):
        plan_paths(G, a, b, [0, 0], TinyClassifier(6, 0, in_channels=1), class_net, cfg)


def test_plan_config_validates():
    assert PlanConfig().weights == (0.1, 1.0, 1.0) and PlanConfig().n_steps == 50
    assert PlanConfig.from_dict({"weights": [1, 2, 3]}).weights == (1.0, 2.0, 3.0)
    for bad in ({"n_steps": 2}, {"weights": (1.0, 1.0)}, {"weights": (1, -1, 1)}, {"lr": 0}, {"chunk": 0}):
        with pytest.raises(ConfigError):
            PlanConfig(**bad)
    with pytest.raises(ConfigError, match="early_stop_id_prob"):
        PlanConfig(early_stop_id_prob=1.5)
    with pytest.raises(ConfigError, match="early_stop_plateau"):
        PlanConfig(early_stop_plateau=1.0)
    with pytest.raises(ConfigError, match='unknown schedule "step"; expected one of constant, cosine'):
        PlanConfig(schedule="step")
    with pytest.raises(ConfigError, match='unknown init "cubic"'):
        PlanConfig(init="cubic")
    with pytest.raises(ConfigError, match="warmup_steps"):
        PlanConfig(warmup_steps=-1)
    with pytest.raises(ConfigError, match="unknown PLAN path option"):
        PlanConfig.from_dict({"nsteps": 10})


def test_training_mode_batch_norm_is_warned_and_recorded(G, nets):
    a, b = endpoints(G, 1)
    bn_net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.LazyLinear(6)).train()
    with pytest.warns(UserWarning, match="batch-norm"):
        res = plan_paths(G, a, b, [0], bn_net, nets[1], PlanConfig(n_steps=4, optim_steps=1))
    assert "id_net" in res.notes[0]


# ---------------------------------------------------------------------------------------------------------------
# Endpoints.


class Brightness(nn.Module):
    """Class 1 when the mean pixel is above ``level``, else class 0."""

    def __init__(self, level: float) -> None:
        super().__init__()
        self.level = level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3)) - self.level
        return torch.stack([-m, m], dim=1)


def test_sample_w_draws_truncated_points_and_filters_by_class(G):
    w = sample_w(G, 5, truncation_psi=0.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(w, G.mapping.w_avg.expand(5, -1))
    gen = torch.Generator().manual_seed(1)
    imgs_w = sample_w(G, 64, truncation_psi=1.0, generator=gen, batch=64)
    assert imgs_w.shape == (64, G.w_dim)
    with torch.no_grad():
        level = float(G.synthesis(imgs_w[:, None].expand(-1, G.num_ws, -1)).clamp(-1, 1).mean(dim=(1, 2, 3)).median())
        net = Brightness(level)
        kept = sample_w(G, 6, generator=torch.Generator().manual_seed(2), label=1, class_net=net, batch=8)
        imgs = G.synthesis(kept[:, None].expand(-1, G.num_ws, -1)).clamp(-1, 1).repeat(1, 3, 1, 1)
    assert (net(imgs).argmax(dim=1) == 1).all()
    with pytest.raises(ConfigError, match="kept only 0 of 16"):
        sample_w(G, 2, generator=torch.Generator().manual_seed(3), label=1, class_net=Brightness(2.0), max_draws=16)
    with pytest.raises(ConfigError, match="pass label"):
        sample_w(G, 2, class_net=net)


def test_pair_endpoints_pairs_distinct_points_of_one_label():
    ws = torch.arange(10.0)[:, None].expand(-1, 4)  # row i is all i
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 1])
    pairs = pair_endpoints(ws, labels, 50, generator=torch.Generator().manual_seed(0))
    assert pairs.w_a.shape == pairs.w_b.shape == (50, 4)
    assert (labels[pairs.index_a] == labels[pairs.index_b]).all()
    assert (pairs.index_a != pairs.index_b).all()
    assert torch.equal(pairs.labels, labels[pairs.index_a])
    assert torch.equal(pairs.w_a[:, 0].long(), pairs.index_a)
    with pytest.raises(DataError, match=r"label\(s\) \[3\]"):
        pair_endpoints(ws, torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3]), 5)
    with pytest.raises(ConfigError, match="shape"):
        pair_endpoints(ws, labels[:5], 5)
