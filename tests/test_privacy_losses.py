"""latentwalk.privacy_losses and PlanConfig.privacy_loss: each loss lowers what it measures, the two-pass gradient of
the batch-level losses is exact, batched equals reference, targets and options are checked and carried by the config."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from tiny import TinyClassifier

from gan_zoo.stylegan2 import Generator
from latentwalk.errors import ConfigError
from latentwalk.paths import PlanConfig, classifier_input, linear_paths, plan_paths, render_paths
from latentwalk.privacy_losses import (
    PRIVACY_LOSSES,
    interior_targets,
    plugin_mutual_information,
    unbiased_hsic,
    verification_hinge,
    verification_log_odds,
)

TOL = dict(rtol=1e-4, atol=1e-5)  # float32 rounding: chunking, fused vs unfused modulation, summation order
# Adam divides each gradient by its running RMS, so float32 rounding in the smallest gradient entries of a batch term
# grows to ~2e-4 in the path after a few steps (the gradients themselves agree to ~5e-7; a wrong one is off by ~0.1)
ADAM_TOL = dict(rtol=1e-3, atol=1e-4)
N_IDS = 6


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=1, mapping_kwargs={"num_layers": 2},
                     synthesis_kwargs={"channel_base": 64, "channel_max": 8}).eval()  # fmt: skip


@pytest.fixture(scope="module")
def nets():
    return TinyClassifier(N_IDS, seed=1).eval(), TinyClassifier(2, seed=2).eval()


def endpoints(n: int, seed: int = 4):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 8, generator=gen), torch.randn(n, 8, generator=gen)


@torch.no_grad()
def id_logits(G, id_net, ws):
    """The identity guide's logits on every point of ``ws [B, S, w_dim]``: ``[B, S, K]``."""
    images = render_paths(G, ws)  # [B, S, 1, R, R]
    logits = id_net(classifier_input(images.flatten(0, 1), PlanConfig(repeat_gray=True)))
    return logits.view(*ws.shape[:2], -1)


def endpoint_targets(G, id_net, a, b, n_steps):
    """The default targets, restated: the guide's softmax at the endpoints, interpolated -> ``[B, n_int, K]``."""
    ends = id_logits(G, id_net, torch.stack([a, b], dim=1)).softmax(dim=2)  # [B, 2, K]
    return interior_targets(ends, n_steps)


def optimise(G, nets, loss, n_paths=3, n_steps=8, optim_steps=10, **kw):
    a, b = endpoints(n_paths)
    cfg = PlanConfig(n_steps=n_steps, optim_steps=optim_steps, privacy_loss=loss, weights=(1.0, 0.1, 0.0), **kw)
    result = plan_paths(G, a, b, [0, 1, 1][:n_paths], *nets, cfg)
    q = endpoint_targets(G, nets[0], a, b, n_steps).flatten(0, 1)  # [B * n_int, K]
    before = id_logits(G, nets[0], linear_paths(a, b, n_steps))[:, 1:-1].flatten(0, 1)  # [B * n_int, K]
    after = id_logits(G, nets[0], result.ws)[:, 1:-1].flatten(0, 1)
    return result, q, before, after


# ---------------------------------------------------------------------------------------------------------------
# The estimators on known answers.


def test_verification_log_odds_are_the_masked_logsumexp_and_stay_finite():
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0)) * 3
    masked = logits[:, None, :].expand(-1, 4, -1).masked_fill(torch.eye(4, dtype=torch.bool), float("-inf"))
    expected = logits - torch.logsumexp(masked, dim=2)  # [N, K], v(s) = L(s) - logsumexp_{j != s} L(j)
    torch.testing.assert_close(verification_log_odds(logits), expected)
    sure = torch.tensor([[60.0, 0.0, 0.0]])  # softmax is exactly one-hot in float32
    torch.testing.assert_close(verification_log_odds(sure), torch.tensor([[60.0 - math.log(2), -60.0, -60.0]]))
    x = sure.clone().requires_grad_(True)
    verification_hinge(x, torch.tensor([[1.0, 0.0, 0.0]])).sum().backward()
    assert torch.isfinite(x.grad).all()
    uniform = torch.zeros(2, 5)  # at chance every log-odds equals the default margin: no cost
    assert verification_hinge(uniform, torch.full((2, 5), 0.2)).abs().max() < 1e-6


def test_plugin_mutual_information_is_zero_when_independent_and_one_when_exact():
    onehot = F.one_hot(torch.arange(4).repeat(3), 4).float()  # 12 images, 4 patients equally often
    assert plugin_mutual_information(onehot, onehot).item() == pytest.approx(1.0, abs=1e-5)
    assert plugin_mutual_information(torch.full((12, 4), 0.25), onehot).item() == pytest.approx(0.0, abs=1e-6)
    half = 0.5 * onehot + 0.125  # a blurred guess carries part of the information
    assert 0 < plugin_mutual_information(half, onehot).item() < 1


def test_unbiased_hsic_is_song_et_al_and_zero_for_constant_features():
    gen = torch.Generator().manual_seed(0)
    f, q = torch.randn(7, 3, generator=gen), torch.rand(7, 4, generator=gen).softmax(1)
    m, sigma = 7, 1.3
    k = torch.exp(-torch.cdist(f, f).square() / (2 * sigma**2)).fill_diagonal_(0)
    l = (q @ q.T).fill_diagonal_(0)  # noqa: E741
    one = torch.ones(m)
    song = (torch.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((m - 1) * (m - 2))
            - 2 / (m - 2) * (one @ k @ l @ one)) / (m * (m - 3))  # fmt: skip
    torch.testing.assert_close(unbiased_hsic(f, q, sigma), song)
    assert unbiased_hsic(torch.ones(7, 3), q).abs() < 1e-6
    with pytest.raises(ConfigError, match="at least 4"):
        unbiased_hsic(f[:3], q[:3])


# ---------------------------------------------------------------------------------------------------------------
# Each loss lowers what it claims.


def test_mi_paths_carry_less_identity_information_than_the_linear_path(G, nets):
    result, q, before, after = optimise(G, nets, "mi")
    mi_before = plugin_mutual_information(before.softmax(1), q)
    mi_after = plugin_mutual_information(after.softmax(1), q)
    assert mi_after < 0.5 * mi_before
    history = result.loss_history["privacy"]
    assert torch.equal(history[:, 0], history[:, 1])  # the batch value, shared by the paths
    torch.testing.assert_close(history[0, 0], mi_before, **TOL)


def test_verification_paths_lower_the_endpoint_patients_log_odds(G, nets):
    result, q, before, after = optimise(G, nets, "verification")
    assert verification_hinge(after, q).mean() < 0.5 * verification_hinge(before, q).mean()
    top = q.argmax(dim=1, keepdim=True)  # the endpoint patient of each image's nearer endpoint
    assert verification_log_odds(after).gather(1, top).max() < verification_log_odds(before).gather(1, top).max()
    assert (result.loss_history["privacy"][-1] < result.loss_history["privacy"][0]).all()


def test_hsic_paths_lower_the_hsic_estimate(G, nets):
    _, q, before, after = optimise(G, nets, "hsic")
    assert unbiased_hsic(after, q) < 0.75 * unbiased_hsic(before, q)


def test_kl_uniform_is_the_default_and_ignores_targets(G, nets):
    assert PlanConfig().privacy_loss == "kl_uniform" and PlanConfig().verification_margin is None
    assert PlanConfig.from_dict({}).to_dict()["privacy_loss"] == "kl_uniform"
    a, b = endpoints(2)
    cfg = PlanConfig(n_steps=6, optim_steps=3)
    plain = plan_paths(G, a, b, [0, 1], *nets, cfg)
    targets = torch.rand(2, 2, N_IDS, generator=torch.Generator().manual_seed(1)).softmax(2)
    given = plan_paths(G, a, b, [0, 1], *nets, cfg, targets=targets)
    assert torch.equal(plain.ws, given.ws)
    assert all(torch.equal(plain.loss_history[k], given.loss_history[k]) for k in plain.loss_history)


# ---------------------------------------------------------------------------------------------------------------
# The batched implementation: exact two-pass gradient, equal to the reference.


@pytest.mark.parametrize("loss", ["mi", "hsic"])
def test_two_pass_gradient_does_not_depend_on_chunk(G, nets, loss):
    a, b = endpoints(2, seed=5)
    cfg = PlanConfig(n_steps=7, optim_steps=3, privacy_loss=loss, weights=(1.0, 1.0, 1.0), chunk=64)
    one_chunk = plan_paths(G, a, b, [0, 1], *nets, cfg)  # 10 images, each pass in one chunk
    chunked = plan_paths(G, a, b, [0, 1], *nets, replace(cfg, chunk=1))
    torch.testing.assert_close(chunked.ws, one_chunk.ws, **ADAM_TOL)
    for term, hist in one_chunk.loss_history.items():
        torch.testing.assert_close(chunked.loss_history[term], hist, **ADAM_TOL)
    assert not torch.allclose(one_chunk.ws, linear_paths(a, b, 7))


def test_mi_term_has_a_per_path_scale(G, nets):
    """A path and its copy are the same empirical distribution as the path alone: times 2 paths, each copy gets the
    gradient the path gets alone (the batch term is multiplied by the number of paths)."""
    a, b = endpoints(1, seed=8)
    cfg = PlanConfig(n_steps=6, optim_steps=3, privacy_loss="mi", weights=(1.0, 1.0, 1.0))
    alone = plan_paths(G, a, b, [0], *nets, cfg)
    twice = plan_paths(G, a.repeat(2, 1), b.repeat(2, 1), [0, 0], *nets, cfg)
    torch.testing.assert_close(twice.ws, alone.ws.repeat(2, 1, 1), **ADAM_TOL)
    torch.testing.assert_close(twice.loss_history["privacy"], alone.loss_history["privacy"].repeat(1, 2), **ADAM_TOL)


@pytest.mark.parametrize("loss", PRIVACY_LOSSES)
def test_batched_single_path_equals_reference(G, nets, loss):
    a, b = endpoints(1, seed=6)
    cfg = PlanConfig(n_steps=8, optim_steps=3, privacy_loss=loss, weights=(1.0, 1.0, 1.0), chunk=4)
    batched = plan_paths(G, a, b, [1], *nets, cfg)  # mi, hsic: two passes, three chunks of the 6 images
    reference = plan_paths(G, a, b, [1], *nets, cfg, impl="reference")  # mi, hsic: plain autograd over the path
    tol = ADAM_TOL if loss in ("mi", "hsic") else TOL
    torch.testing.assert_close(batched.ws, reference.ws, **tol)
    for term, hist in reference.loss_history.items():
        torch.testing.assert_close(batched.loss_history[term], hist, **tol)


def test_verification_batched_equals_reference_for_several_paths(G, nets):
    a, b = endpoints(3, seed=7)
    targets = torch.rand(3, 2, N_IDS, generator=torch.Generator().manual_seed(2)).softmax(2)
    cfg = PlanConfig(n_steps=7, optim_steps=3, privacy_loss="verification", verification_margin=-2.0, chunk=4)
    batched = plan_paths(G, a, b, [0, 1, 1], *nets, cfg, targets=targets)  # chunks straddle paths
    reference = plan_paths(G, a, b, [0, 1, 1], *nets, cfg, impl="reference", targets=targets)
    torch.testing.assert_close(batched.ws, reference.ws, **TOL)
    torch.testing.assert_close(batched.loss_history["privacy"], reference.loss_history["privacy"], **TOL)
    default = plan_paths(G, a, b, [0, 1, 1], *nets, cfg)  # targets from the guide: another walk
    assert not torch.allclose(default.ws, batched.ws)


# ---------------------------------------------------------------------------------------------------------------
# Errors and configuration.


def test_bad_targets_and_unknown_losses_are_config_errors(G, nets):
    a, b = endpoints(2)
    cfg = PlanConfig(n_steps=6, optim_steps=1, privacy_loss="mi")
    good = torch.full((2, 2, N_IDS), 1 / N_IDS)
    negative = good.clone()
    negative[1, 0, :2] += torch.tensor([-0.5, 0.5])  # still sums to 1
    for bad, match in [
        (good[:, :, :4], r"targets must have shape \[2, 2, 6\]"),
        (good[:1], r"targets must have shape \[2, 2, 6\]"),
        (good * 2, "sum to 1"),
        (negative, ">= 0"),
        (good.clone().fill_(float("nan")), "finite"),
        (torch.ones(2, 2, N_IDS, dtype=torch.long), "floating point"),
        ([[0.5, 0.5]], "must be a tensor"),
    ]:
        with pytest.raises(ConfigError, match=match):
            plan_paths(G, a, b, [0, 1], *nets, cfg, targets=bad)
    with pytest.raises(ConfigError, match='unknown privacy_loss "entropy"; expected one of kl_uniform, mi'):
        PlanConfig(privacy_loss="entropy")
    with pytest.raises(ConfigError, match="hsic needs n_steps >= 6"):
        PlanConfig(n_steps=5, privacy_loss="hsic")
    with pytest.raises(ConfigError, match="verification_margin"):
        PlanConfig(verification_margin=float("inf"))
    assert PlanConfig(verification_margin=1).verification_margin == 1.0


def test_generate_config_carries_the_options_and_reads_records_without_them(tmp_path):
    from latentwalk.generation.config import RECORDED_IF_SET, GenerateConfig, load_config_file, public_config
    from latentwalk.io import changed_keys

    cfg = GenerateConfig.from_dict({"privacy_loss": "verification", "verification_margin": -1.5})
    assert (cfg.plan.privacy_loss, cfg.plan.verification_margin) == ("verification", -1.5)
    record = json.loads(json.dumps(public_config(cfg)))
    assert record["privacy_loss"] == "verification" and record["verification_margin"] == -1.5
    assert GenerateConfig.from_dict(cfg.to_dict()) == cfg
    # a record written before the options existed lacks them: it is the record of the default run now
    default = GenerateConfig()
    assert {"privacy_loss", "verification_margin"} <= set(RECORDED_IF_SET)  # and the options added after them
    old = {k: v for k, v in default.flat_options().items() if k not in RECORDED_IF_SET}
    assert default.to_dict() == old and GenerateConfig.from_dict(old) == default
    assert changed_keys(old, public_config(replace(default, gan="demo:cxr"))) == []
    assert changed_keys(old, public_config(cfg)) == ["privacy_loss", "verification_margin"]
    toml = tmp_path / "run.toml"
    toml.write_text('[plan]\nprivacy-loss = "hsic"\nverification_margin = 0.5\n')
    values = load_config_file(toml)
    assert GenerateConfig.from_dict(values).plan.privacy_loss == "hsic"
    with pytest.raises(ConfigError, match=r"privacy_loss belongs in the \[plan\] table"):
        toml.write_text('privacy_loss = "mi"\n')
        load_config_file(toml)
    with pytest.raises(ConfigError, match="unknown privacy_loss"):
        GenerateConfig.from_dict({"privacy_loss": "kl"})


def test_generate_flags_set_the_privacy_loss(monkeypatch, tmp_path):
    from click.testing import CliRunner

    import latentwalk.pipeline
    from latentwalk.cli import cli

    seen = []

    class Done:
        already_done = True

    monkeypatch.setattr(latentwalk.pipeline, "generate", lambda cfg, out, **kw: seen.append(cfg) or Done())
    args = ["generate", "--out", str(tmp_path / "out"), "--privacy-loss", "mi", "--verification-margin", "-0.5"]
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    assert (seen[0].plan.privacy_loss, seen[0].plan.verification_margin) == ("mi", -0.5)
    done = CliRunner().invoke(cli, ["generate", "--out", str(tmp_path / "out"), "--privacy-loss", "entropy"])
    assert done.exit_code != 0 and "kl_uniform" in done.output
