"""Training the built-in StyleGAN2 generator on a small medical dataset.

The recipe of StyleGAN2-ADA (Karras et al., NeurIPS 2020) cut down for a few hundred images: non-saturating logistic
loss, lazy R1 regularisation of the discriminator on real images, an exponential moving average of the generator
(``G_ema``, the network that is saved and used), and differentiable augmentation (DiffAugment) in front of the
discriminator against over-fitting. Float16 blocks (``fp16_res``) run on CUDA only.

A run folder holds:

- ``generator.safetensors`` + ``generator.json``: ``G_ema`` after the latest snapshot (the usable generator);
- ``state.safetensors`` + ``state.json``: everything needed to resume (G, D, G_ema, optimiser moments, random
  generator state, images seen), written atomically at each snapshot, JSON last as the commit mark;
- ``samples/fakes_<kimg>kimg.png``: a fixed-latent sample grid at each snapshot, ``samples/reals.png``;
- ``log.jsonl``: losses and speed per snapshot.

Rerunning the same command with ``resume=True`` continues from the last snapshot; a run differs from an
uninterrupted one only by the floating-point non-determinism of the device.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_zoo.augment import diff_augment, parse_policy
from gan_zoo.checkpoint import load_state_dict_strict, save_generator
from gan_zoo.config import StageConfig
from gan_zoo.discriminator import Discriminator
from gan_zoo.errors import ConfigError
from gan_zoo.io import atomic_write_bytes, atomic_write_text, changed_keys, write_json
from gan_zoo.sampling import save_grid
from gan_zoo.stylegan2 import Generator

__all__ = ["TrainConfig", "TrainResult", "build_networks", "train_gan", "dataset_fingerprint"]

STATE_VERSION = 1


@dataclass(frozen=True)
class TrainConfig(StageConfig):
    """Options of one training run; the single source of defaults for the API and ``latentwalk gan train``.

    The defaults make a small network (about 0.8 M parameters each for G and D at 64 px) that trains at tens of
    images per second on a laptop CPU; raise ``channel_base``/``channel_max`` on a GPU.
    """

    STAGE: ClassVar[str] = "training"

    resolution: int = 64  # training resolution in pixels (power of two, 32-256); images are resized to it
    kimg: float = 100.0  # training length: thousands of real images shown to the discriminator
    batch: int = 16  # images per step
    seed: int = 0  # seeds initialisation, latents, batches and augmentation
    z_dim: int = 128  # input latent size
    w_dim: int = 128  # intermediate latent (W) size
    mapping_layers: int = 4  # fully connected layers in the mapping network
    channel_base: int = 1024  # feature maps at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 128  # cap on feature maps per layer
    conditional: bool = False  # class-conditional G and D (c_dim = number of labels); False = unconditional
    lr: float = 0.0025  # Adam learning rate of G and D
    r1_gamma: float | None = None  # R1 weight; None = 0.0002 * resolution**2 / batch (NVIDIA's heuristic)
    r1_interval: int = 16  # lazy regularisation: R1 every this many steps
    ema_kimg: float | None = None  # G_ema half-life in kimg; None = batch * 10 / 32
    ema_rampup: float = 0.05  # half-life ramp-up as a fraction of images seen; 0 = off
    augment: str = "color,translation,cutout"  # DiffAugment policy; "none" = off
    snapshot_kimg: float = 5.0  # save generator, state and a sample grid every this many kimg
    split: str | None = "train"  # dataset split to train on (held-out patients stay unseen); None = all images
    fp16_res: int = 0  # number of highest-resolution blocks in float16 on CUDA (0 = float32 everywhere)

    def __post_init__(self) -> None:
        r = self.resolution
        if r < 32 or r > 256 or r & (r - 1):
            raise ConfigError(f"resolution must be a power of two between 32 and 256, got {r}")
        for name in ("kimg", "lr", "snapshot_kimg"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("batch", "z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max", "r1_interval"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0 or self.fp16_res < 0:
            raise ConfigError("seed and fp16_res must be >= 0")
        if self.r1_gamma is not None and self.r1_gamma < 0:
            raise ConfigError(f"r1_gamma must be >= 0, got {self.r1_gamma}")
        if self.split not in (None, "train", "val", "test"):
            raise ConfigError(f'split must be train, val, test or None, got "{self.split}"')
        parse_policy(self.augment)

    @property
    def gamma(self) -> float:
        return self.r1_gamma if self.r1_gamma is not None else 0.0002 * self.resolution**2 / self.batch

    @property
    def ema_half_life_kimg(self) -> float:
        return self.ema_kimg if self.ema_kimg is not None else self.batch * 10 / 32


@dataclass(frozen=True)
class TrainResult:
    """What a run produced: the generator files, images seen and wall time of this call."""

    generator: Path
    kimg: float
    seconds: float
    resumed_from_kimg: float


def build_networks(cfg: TrainConfig, img_channels: int, c_dim: int) -> tuple[Generator, Discriminator]:
    """The generator and discriminator of ``cfg`` (seeded by ``cfg.seed``), float32 on the CPU."""
    torch.manual_seed(cfg.seed)  # parameter initialisation only; training draws from its own generator
    conv_clamp = 256 if cfg.fp16_res > 0 else None
    G = Generator(
        z_dim=cfg.z_dim,
        c_dim=c_dim,
        w_dim=cfg.w_dim,
        img_resolution=cfg.resolution,
        img_channels=img_channels,
        mapping_kwargs={"num_layers": cfg.mapping_layers},
        synthesis_kwargs={
            "channel_base": cfg.channel_base,
            "channel_max": cfg.channel_max,
            "num_fp16_res": cfg.fp16_res,
            "conv_clamp": conv_clamp,
        },
    )
    D = Discriminator(
        c_dim=c_dim,
        img_resolution=cfg.resolution,
        img_channels=img_channels,
        channel_base=cfg.channel_base,
        channel_max=cfg.channel_max,
        num_fp16_res=cfg.fp16_res,
        conv_clamp=conv_clamp,
    )
    return G, D


def init_generator_from(G: Generator, source: nn.Module) -> list[str]:
    """Start ``G`` from a trained generator of the same synthesis architecture (fine-tuning, e.g. unconditional ->
    class-conditional); returns the names of the tensors that were *not* copied (kept at their initialisation).

    Every tensor of the same name and shape is copied. When ``G`` is conditional and ``source`` is not, the first
    mapping layer takes ``[z, embed(c)]`` instead of ``z``: its ``z`` columns are copied and its label columns are set
    to zero, so the new generator starts out as exactly the source (the label has no effect until training gives it
    one).

    Raises:
        ConfigError: the synthesis networks differ (resolution, channels, widths), or ``w_dim``/``z_dim`` differ.
    """
    src = source.state_dict()
    own = G.state_dict()
    for attr in ("z_dim", "w_dim", "img_resolution", "img_channels"):
        if getattr(G, attr) != getattr(source, attr, None):
            raise ConfigError(
                f"cannot start from that generator: its {attr} is {getattr(source, attr, None)}, this run's is "
                f"{getattr(G, attr)}; give matching --resolution/--z-dim/--w-dim"
            )
    mismatch = [k for k in own if k.startswith("synthesis.") and (k not in src or src[k].shape != own[k].shape)]
    if mismatch:
        raise ConfigError(f"cannot start from that generator: its synthesis network differs ({mismatch[:3]} ...)")
    kept = []
    with torch.no_grad():
        for name, tensor in own.items():
            if name in src and src[name].shape == tensor.shape:
                tensor.copy_(src[name])
            elif name == "mapping.fc0.weight" and name in src and src[name].shape[1] == G.z_dim:
                # [w_dim, z_dim + embed]: label columns start at zero; the layer's weight gain is 1/sqrt(fan-in), so
                # the copied columns are scaled by sqrt(new fan-in / old fan-in) to give the same outputs
                tensor.zero_()
                tensor[:, : G.z_dim].copy_(src[name] * math.sqrt(tensor.shape[1] / G.z_dim))
            else:
                kept.append(name)
    return kept


def dataset_fingerprint(images: Tensor, labels: Tensor) -> str:
    """SHA-256 of the training tensors: names which data a generator saw without naming any file or patient."""
    h = hashlib.sha256()
    h.update(images.detach().cpu().contiguous().numpy().tobytes())
    h.update(labels.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------------------
# Training steps


def _latents(cfg: TrainConfig, n: int, c_dim: int, n_labels: int, gen: torch.Generator, device) -> tuple:
    z = torch.randn(n, cfg.z_dim, generator=gen).to(device)
    if c_dim == 0:
        return z, None
    c = F.one_hot(torch.randint(0, n_labels, (n,), generator=gen), n_labels).float().to(device)
    return z, c


def _noise_gen(gen: torch.Generator, device: torch.device) -> torch.Generator | None:
    """Noise inputs draw from the run's generator on the CPU (reproducible); on accelerators from the device's."""
    return gen if device.type == "cpu" else None


def _d_step(G, D, opt_d, real, real_c, z, c, policy, gen, gamma, r1_every: int | None) -> dict[str, float]:
    """One discriminator update; with ``r1_every`` set, also the lazy R1 penalty on the reals."""
    with torch.no_grad():
        fake = G(z, c, noise_mode="random", generator=_noise_gen(gen, z.device))
    loss_fake = F.softplus(D(diff_augment(fake, policy, gen), c)).mean()
    loss_real = F.softplus(-D(diff_augment(real, policy, gen), real_c)).mean()
    opt_d.zero_grad(set_to_none=True)
    (loss_fake + loss_real).backward()
    opt_d.step()
    out = {"loss_d": (loss_fake + loss_real).item()}
    if r1_every:
        real_ = real.detach().requires_grad_(True)
        logits = D(diff_augment(real_, policy, gen), real_c)
        (grad,) = torch.autograd.grad(logits.sum(), real_, create_graph=True)
        penalty = grad.square().sum(dim=[1, 2, 3]).mean()
        opt_d.zero_grad(set_to_none=True)
        (penalty * (gamma / 2) * r1_every).backward()
        opt_d.step()
        out["r1"] = penalty.item()
    return out


def _g_step(G, D, opt_g, z, c, policy, gen) -> dict[str, float]:
    fake = G(z, c, noise_mode="random", update_emas=True, generator=_noise_gen(gen, z.device))
    loss = F.softplus(-D(diff_augment(fake, policy, gen), c)).mean()
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    opt_g.step()
    return {"loss_g": loss.item()}


@torch.no_grad()
def _update_ema(G: nn.Module, G_ema: nn.Module, cfg: TrainConfig, images_seen: int) -> None:
    half_life = cfg.ema_half_life_kimg * 1000
    if cfg.ema_rampup > 0:
        half_life = min(half_life, images_seen * cfg.ema_rampup)
    beta = 0.5 ** (cfg.batch / max(half_life, 1e-8))
    for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
        p_ema.copy_(p.lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
        b_ema.copy_(b)


# ----------------------------------------------------------------------------------------------------------------
# Snapshots


def _flatten_optimizer(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], list]:
    tensors, groups = {}, opt.state_dict()["param_groups"]
    for idx, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"{prefix}.{idx}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    return tensors, groups


def _restore_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, Tensor], groups: list) -> None:
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            idx, name = key[len(prefix) + 1 :].split(".", 1)
            state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": groups})


def _save_state(out: Path, nets: dict[str, nn.Module], opts: dict[str, torch.optim.Optimizer], gen, info: dict) -> None:
    from safetensors.torch import save

    tensors: dict[str, Tensor] = {}
    for name, net in nets.items():
        tensors.update({f"{name}.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()})
    groups = {}
    for name, opt in opts.items():
        flat, groups[name] = _flatten_optimizer(name, opt)
        tensors.update(flat)
    tensors["rng"] = gen.get_state().clone()
    blob = save(tensors)
    atomic_write_bytes(out / "state.safetensors", blob)
    info = dict(info, param_groups=groups, state_sha256=hashlib.sha256(blob).hexdigest(), version=STATE_VERSION)
    write_json(out / "state.json", info)  # last: the commit mark of a snapshot


def _load_state(out: Path, nets, opts, gen) -> dict:
    from safetensors.torch import load

    info = json.loads((out / "state.json").read_text())
    blob = (out / "state.safetensors").read_bytes()
    if hashlib.sha256(blob).hexdigest() != info.get("state_sha256"):
        raise ConfigError(f"{out / 'state.safetensors'} does not match state.json (torn snapshot?); start a new run")
    tensors = load(blob)
    for name, net in nets.items():
        prefix = name + "."
        load_state_dict_strict(
            net,
            {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)},
            f"{out / 'state.safetensors'} ({name})",
        )
    for name, opt in opts.items():
        _restore_optimizer(name, opt, tensors, info["param_groups"][name])
    gen.set_state(tensors["rng"])
    return info


# ----------------------------------------------------------------------------------------------------------------
# Driver


@dataclass
class _Run:
    """The state of one training run that snapshots write and a resume reads back."""

    out: Path
    cfg: TrainConfig
    fingerprint: str
    n_images: int
    n_labels: int
    provenance: dict[str, Any]
    nets: dict[str, nn.Module] = field(default_factory=dict)
    opts: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    gen: torch.Generator | None = None
    grid: tuple = ()
    images_seen: int = 0
    step: int = 0
    stats: dict[str, float] = field(default_factory=dict)
    t0: float = 0.0
    seen_at_t0: int = 0


def _check_training_data(images: Tensor, labels: Tensor, cfg: TrainConfig) -> None:
    if images.ndim != 4 or images.shape[2:] != (cfg.resolution, cfg.resolution) or images.shape[1] not in (1, 3):
        raise ConfigError(
            f"training images must be [N, 1 or 3, {cfg.resolution}, {cfg.resolution}], got {list(images.shape)}"
        )
    if len(images) < 2 or len(labels) != len(images):
        raise ConfigError(f"need at least 2 images with one label each, got {len(images)} images, {len(labels)} labels")


def _open_run(run: _Run, *, resume: bool, overwrite: bool) -> None:
    """Claim the run folder (:mod:`gan_zoo.outputs`); on ``resume`` load the last snapshot after checking that it
    was made with the same settings (``kimg`` aside) and the same data."""
    from gan_zoo.outputs import claim_dir, mark_dir, replace_dir

    out, cfg = run.out, run.cfg
    if claim_dir(out, overwrite=overwrite, resumable="gan train", resume=resume) == "replace":
        replace_dir(out)
    if resume and (out / "state.json").is_file():
        info = _load_state(out, run.nets, run.opts, run.gen)
        saved = TrainConfig.from_dict(info["config"])
        diff = changed_keys(saved.to_dict(), cfg.to_dict(), ignore=["kimg"])
        if diff or info["fingerprint"] != run.fingerprint:
            what = f"different settings ({', '.join(diff)})" if diff else "a different dataset"
            raise ConfigError(
                f"{out} holds a run with {what}; resume with the same options (only --kimg may change) or choose "
                "a new --out"
            )
        run.images_seen, run.step = info["images_seen"], info["step"]
    mark_dir(out, "gan train", files=(), patterns=_RUN_PATTERNS)
    (out / "samples").mkdir(exist_ok=True)


def _track(run: _Run, values: dict[str, float]) -> None:
    """Running averages of the step's losses; a non-finite one stops the run with a message."""
    for k, v in values.items():
        if not math.isfinite(v):
            raise ConfigError(f"training diverged at {run.images_seen / 1000:.1f} kimg ({k} = {v}); lower --lr")
        run.stats[k] = v if k not in run.stats else 0.98 * run.stats[k] + 0.02 * v


def _snapshot(run: _Run) -> None:
    """Write the sample grid, the log line, the generator and the resumable state (state.json last)."""
    out, cfg = run.out, run.cfg
    with torch.no_grad():
        fakes = run.nets["G_ema"](*run.grid, noise_mode="const")
    kimg = run.images_seen / 1000
    save_grid(fakes, out / "samples" / f"fakes_{kimg:010.3f}kimg.png", nrow=8)
    seconds = time.perf_counter() - run.t0
    record = {
        "kimg": round(kimg, 3),
        "images_per_s": round((run.images_seen - run.seen_at_t0) / max(seconds, 1e-9), 2),
        **{k: round(v, 5) for k, v in run.stats.items()},
    }
    with open(out / "log.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    save_generator(
        run.nets["G_ema"],
        out / "generator",
        {
            "trainer": "gan_zoo.train",
            "train_config": cfg.to_dict(),
            "kimg": round(kimg, 3),
            "dataset_sha256": run.fingerprint,
            "n_images": run.n_images,
            "label_count": run.n_labels,
            **run.provenance,
        },
    )
    info = {"config": cfg.to_dict(), "images_seen": run.images_seen, "step": run.step, "fingerprint": run.fingerprint}
    _save_state(out, run.nets, run.opts, run.gen, info)
    run.t0, run.seen_at_t0 = time.perf_counter(), run.images_seen


# what a training run writes (gan_zoo.outputs): snapshots, samples, the log, the finished generator
_RUN_PATTERNS = ("state.safetensors", "state.json", "generator.safetensors", "generator.json", "log.jsonl", "DONE",
                 ".*.tmp", "samples/*.png", "samples/.*.tmp")  # fmt: skip


def train_gan(
    images: Tensor,
    labels: Tensor,
    out: str | os.PathLike,
    cfg: TrainConfig = TrainConfig(),
    *,
    n_labels: int | None = None,
    device=None,
    resume: bool = False,
    overwrite: bool = False,
    init_from: nn.Module | None = None,
    progress: bool = False,
    provenance: dict[str, Any] | None = None,
) -> TrainResult:
    """Train a generator on ``images`` and write the run folder ``out`` (see the module docstring).

    Args:
        images: real training images ``[N, C, R, R]`` float32 in [-1, 1], ``R == cfg.resolution``, C = 1 or 3.
        labels: class index per image ``[N]`` int64 (used when ``cfg.conditional``; recorded otherwise).
        out: run folder; must be empty or absent unless ``resume`` or ``overwrite`` (and then written by latentwalk:
            :mod:`gan_zoo.outputs`).
        n_labels: number of classes (default ``labels.max() + 1``).
        device: torch device (``None`` = CPU).
        resume: continue from ``out/state.json``; the configuration must equal the saved one except ``kimg``.
        overwrite: replace an earlier run in ``out``.
        init_from: a trained generator to start G (and its EMA) from (:func:`init_generator_from`); ignored when
            resuming from a snapshot. D starts fresh.
        provenance: extra facts recorded in ``generator.json`` (e.g. the dataset's name); never file names.

    Returns:
        :class:`TrainResult` with the path of ``generator.safetensors``.

    Raises:
        ConfigError: bad shapes, a non-empty ``out`` without ``resume``, or a resume with a different configuration.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    device = torch.device("cpu") if device is None else torch.device(device)
    _check_training_data(images, labels, cfg)
    n_labels = int(labels.max()) + 1 if n_labels is None else n_labels
    c_dim = n_labels if cfg.conditional else 0
    policy = parse_policy(cfg.augment)
    run = _Run(out, cfg, dataset_fingerprint(images, labels), len(images), n_labels, provenance or {})

    G, D = build_networks(cfg, images.shape[1], c_dim)
    if init_from is not None:
        init_generator_from(G, init_from)
    G, D = G.to(device).train(), D.to(device).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    ratio = cfg.r1_interval / (cfg.r1_interval + 1)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(0.0, 0.99), eps=1e-8)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr * ratio, betas=(0.0, 0.99**ratio), eps=1e-8)
    run.nets, run.opts = {"G": G, "D": D, "G_ema": G_ema}, {"opt_g": opt_g, "opt_d": opt_d}
    gen = run.gen = torch.Generator().manual_seed(cfg.seed)
    _open_run(run, resume=resume, overwrite=overwrite)
    start_kimg = run.images_seen / 1000

    grid_gen = torch.Generator().manual_seed(cfg.seed + 1)
    run.grid = _latents(cfg, 32, c_dim, n_labels, grid_gen, device)
    if not (out / "samples" / "reals.png").exists():
        pick = torch.randperm(len(images), generator=grid_gen)[:32]
        save_grid(images[pick], out / "samples" / "reals.png", nrow=8)

    total = int(cfg.kimg * 1000)
    snapshot_every = int(cfg.snapshot_kimg * 1000)
    next_snapshot = (run.images_seen // snapshot_every + 1) * snapshot_every
    labels_device = labels.to(device)
    started = time.perf_counter()
    run.t0, run.seen_at_t0 = started, run.images_seen
    bar = tqdm(total=total, initial=min(run.images_seen, total), unit="img", desc="train gan", disable=not progress)
    try:
        while run.images_seen < total:
            idx = torch.randint(0, len(images), (cfg.batch,), generator=gen)
            real = images[idx].to(device)
            real_c = F.one_hot(labels_device[idx.to(device)], n_labels).float() if c_dim else None
            z, c = _latents(cfg, cfg.batch, c_dim, n_labels, gen, device)
            r1_every = cfg.r1_interval if cfg.gamma > 0 and run.step % cfg.r1_interval == 0 else None
            d_stats = _d_step(G, D, opt_d, real, real_c, z, c, policy, gen, cfg.gamma, r1_every)
            z, c = _latents(cfg, cfg.batch, c_dim, n_labels, gen, device)
            g_stats = _g_step(G, D, opt_g, z, c, policy, gen)
            run.images_seen += cfg.batch
            run.step += 1
            _update_ema(G, G_ema, cfg, run.images_seen)
            _track(run, {**d_stats, **g_stats})
            bar.update(cfg.batch)
            bar.set_postfix({k: f"{v:.3f}" for k, v in run.stats.items()}, refresh=False)
            if run.images_seen >= next_snapshot or run.images_seen >= total:
                _snapshot(run)
                next_snapshot += snapshot_every
    finally:
        bar.close()
    if not (out / "generator.json").exists():  # resumed a finished run with the same kimg
        _snapshot(run)
    images_seen = run.images_seen
    atomic_write_text(out / "DONE", f"{images_seen / 1000:.3f} kimg\n")
    return TrainResult(out / "generator.safetensors", images_seen / 1000, time.perf_counter() - started, start_kimg)
