"""``latentwalk evaluate``: is a synthetic dataset useful, and does it betray the real patients?

R = real training images (the members: the generator and guides learnt from them), H = real held-out images (the
test split: patients nobody trained on), S = the synthetic images. Every figure lands in ``metrics.json``; the report
(``report.md``, a self-contained ``report.html``) shows the summary, grids of synthetic images beside their nearest
real ones, and the metric definitions.
"""

from __future__ import annotations

import csv
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from latentwalk.config import StageConfig
from latentwalk.errors import ConfigError, DataError, MissingWeightsError
from latentwalk.spaces import EVAL_SPACES, embedder
from latentwalk.spaces import SPACES as REGISTRY

__all__ = ["SPACES", "EvalConfig", "EvalResult", "read_synthetic", "evaluate", "leakage_of"]

SPACES = EVAL_SPACES  # the registry's (latentwalk.spaces)


@dataclass(frozen=True)
class EvalConfig(StageConfig):
    """Options of ``latentwalk evaluate``; the single source of defaults for the API and the CLI."""

    STAGE: ClassVar[str] = "evaluation"

    guides: str | None = None  # guides folder: identity space, domain features for FID/PRDC; None = skip those
    layout: str = "auto"  # real dataset layout
    spaces: tuple[str, ...] = SPACES  # distance spaces for the privacy metrics (lpips needs AlexNet's weights)
    collision_percentile: float = 5.0  # collision threshold: this percentile of real nearest-other-patient distances
    utility_epochs: int = 30  # classifier epochs, per seed and source
    utility_seeds: tuple[int, ...] = (0, 1, 2)
    utility_real: bool = True  # also train on the real training split (the baseline row; same for every synthetic set)
    reid_epochs: int = 30  # epochs of the independent re-identification model
    reid_seed: int = 101  # its seed (the guides use 0 by default)
    verifier_epochs: int = 80  # epochs of the independent Siamese verification attacker (latentwalk.evaluate.verifier)
    verifier_seed: int = 303  # its seed
    mia_epochs: int = 60  # memorising-regime classifiers (no augmentation, no weight decay): epochs to convergence
    mia_shadows: int = 4  # shadow models of the calibrated (offline LiRA) attack; 0 = the loss attack only
    lpips_weights: str | None = None  # AlexNet backbone file for LPIPS; None = $LATENTWALK_WEIGHTS_DIR / torch cache
    inception_weights: str | None = None  # pt_inception-2015-12-05-6726825d.pth; None = search; absent = skipped
    kid_subsets: int = 100
    private: str | None = None  # private sidecar of the generate run (its patients.json, or the folder holding it):
    # adds the leakage estimate (latentwalk.evaluate.leakage); None = none (a sidecar is never looked for)
    seed: int = 0
    device: str = "auto"

    def recorded(self) -> dict[str, Any]:
        """The config as ``metrics.json`` records it: :meth:`to_dict` with the guides' and the private sidecar's
        paths withheld (``"<given>"`` or ``None``)."""
        return {**self.to_dict(), "guides": "<given>" if self.guides else None,
                "private": "<given>" if self.private else None}  # fmt: skip

    def __post_init__(self) -> None:
        spaces = tuple(self.spaces) if isinstance(self.spaces, (list, tuple)) else None
        if not spaces or any(s not in SPACES for s in spaces):
            raise ConfigError(f"spaces must be some of {', '.join(SPACES)}, got {self.spaces!r}")
        object.__setattr__(self, "spaces", spaces)
        seeds = tuple(self.utility_seeds) if isinstance(self.utility_seeds, (list, tuple)) else None
        if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
            raise ConfigError(f"utility_seeds must be one or more integers >= 0, got {self.utility_seeds!r}")
        object.__setattr__(self, "utility_seeds", seeds)
        for name in ("utility_epochs", "reid_epochs", "verifier_epochs", "mia_epochs", "kid_subsets", "verifier_seed",
                     "mia_shadows"):  # fmt: skip
            value = getattr(self, name)
            low = 0 if name in ("verifier_seed", "mia_shadows") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        if not isinstance(self.utility_real, bool):
            raise ConfigError(f"utility_real must be true or false, got {self.utility_real!r}")
        if self.private is not None and (not isinstance(self.private, str) or not self.private):
            raise ConfigError(f"private must be the path of a private sidecar (patients.json), got {self.private!r}")
        if not (isinstance(self.collision_percentile, (int, float)) and 0 < self.collision_percentile < 100):
            raise ConfigError(f"collision_percentile must be in (0, 100), got {self.collision_percentile!r}")


@dataclass(frozen=True)
class EvalResult:
    """Where the report went and the metrics as written to ``metrics.json``."""

    out_dir: Path
    metrics: dict[str, Any]


# ---------------------------------------------------------------------------------------------------------------
# Inputs.


def read_synthetic(folder: str | os.PathLike) -> tuple[Tensor, Tensor, list[dict[str, str]]]:
    """A synthetic dataset written by ``latentwalk generate`` (or any ``images/<label>/*.png`` folder).

    Returns:
        ``(images [N, C, R, R] float32 in [-1, 1], labels [N] int64, manifest rows)`` in manifest order (or sorted
        file order without a manifest).

    Raises:
        DataError: no images, unreadable files, mixed sizes or channels, or a manifest naming absent files.
    """
    import numpy as np
    from PIL import Image

    root = Path(folder)
    manifest = root / "manifest.csv"
    if manifest.is_file():
        with manifest.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        for column in ("file", "label"):
            if rows and column not in rows[0]:
                raise DataError(f"{manifest} has no '{column}' column; it is not a latentwalk manifest")
    else:
        files = sorted((root / "images").glob("*/*.png"))
        rows = [{"file": p.relative_to(root).as_posix(), "label": p.parent.name} for p in files]
    if not rows:
        raise DataError(f"no synthetic images in {root}; expected manifest.csv and images/<label>/*.png")
    images, labels = [], []
    for row in rows:
        path = root / row["file"]
        try:
            with Image.open(path) as im:
                arr = np.array(im)
        except (OSError, ValueError) as e:
            raise DataError(f"synthetic image {path} is missing or unreadable ({e})") from None
        t = torch.from_numpy(arr)
        images.append((t[None] if t.ndim == 2 else t.permute(2, 0, 1)[:3]).float() / 127.5 - 1)
        try:
            labels.append(int(row["label"]))
        except ValueError:
            raise DataError(f"{manifest}: label {row['label']!r} of {row['file']} is not a class index") from None
    shapes = {tuple(t.shape) for t in images}
    if len(shapes) != 1:
        raise DataError(f"synthetic images in {root} have different shapes {sorted(shapes)}; they must share one")
    return torch.stack(images), torch.tensor(labels, dtype=torch.long), rows


@dataclass
class _Data:
    train: Tensor  # [R, C, H, W]
    train_labels: Tensor
    train_patients: list[str]
    holdout: Tensor  # [H, C, H, W]
    holdout_labels: Tensor
    syn: Tensor
    syn_labels: Tensor
    rows: list[dict[str, str]]
    label_names: tuple[str, ...]
    holdout_split: str
    ground_truth: dict[str, Any] | None = None  # patient -> identity parameters (phantoms' ground_truth.json)


def _load(real_dir: Path, syn_dir: Path, cfg: EvalConfig, progress: bool) -> _Data:
    from latentwalk.data import open_dataset
    from latentwalk.data.preprocess import load_tensors
    from latentwalk.evaluate.ground_truth import patient_parameters, read_ground_truth

    syn, syn_labels, rows = read_synthetic(syn_dir)
    index = open_dataset(real_dir, cfg.layout)
    res, ch = syn.shape[-1], syn.shape[1]
    train = index.subset("train")
    if len(train) == 0:
        raise DataError(f"{real_dir} has no train split; split it first (latentwalk data split)")
    train.require_identities("the evaluation (members and re-identification)")
    split = "test" if len(index.subset("test")) else "val"
    holdout = index.subset(split)
    if len(holdout) == 0:
        raise DataError(f"{real_dir} has neither a test nor a val split for held-out (non-member) patients")
    if int(syn_labels.max()) >= len(index.label_names) or int(syn_labels.min()) < 0:
        raise DataError(
            f"synthetic labels go up to {int(syn_labels.max())} but the real dataset has {len(index.label_names)} "
            "classes; evaluate against the dataset the synthetic set was made from"
        )
    x_tr, y_tr = load_tensors(train, res, channels=ch, progress=progress)
    x_ho, y_ho = load_tensors(holdout, res, channels=ch, progress=progress)
    truth = read_ground_truth(index.root)
    if truth is not None:
        ids, matrix, _ = patient_parameters(truth)
        truth = dict(zip(ids, matrix, strict=True))
    return _Data(x_tr, y_tr, [r.identity for r in train.records], x_ho, y_ho, syn, syn_labels, rows,
                 tuple(index.label_names), split, truth)  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Spaces.


def _embedders(cfg: EvalConfig, guides: Any, device: torch.device, notes: list[str]) -> dict[str, Callable]:
    out: dict[str, Callable] = {}
    for space in cfg.spaces:
        if space == "identity":
            if guides is None:
                notes.append("identity space skipped: no --guides given")
                continue
            emb = embedder(space, guides=guides, device=device, chunk=128)
            out[space] = lambda x, emb=emb: emb(x).double().cpu()
        elif space == "lpips":
            from latentwalk.weights import lpips_model

            try:
                net = lpips_model("alex", cfg.lpips_weights, device=device)
            except MissingWeightsError as e:
                if cfg.lpips_weights:  # a file that was named must exist
                    raise
                notes.append(f"LPIPS space skipped: {e}")
                continue
            emb = embedder(space, lpips_net=net, device=device, chunk=128)
            out[space] = lambda x, emb=emb: emb(x).double().cpu()
        elif space == "pixels":
            out[space] = lambda x: x.flatten(1).double()
        else:
            out[space] = lambda x: x  # ssim works on images
    return out


# ---------------------------------------------------------------------------------------------------------------
# The run.


def evaluate(
    real_dir: str | os.PathLike,
    synthetic_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: EvalConfig | None = None,
    *,
    walk_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
) -> EvalResult:
    """Evaluate ``synthetic_dir`` against the real dataset ``real_dir``; write the report to ``out_dir``.

    Args:
        real_dir: the real dataset (with train and test splits and patient identities).
        synthetic_dir: the output of ``latentwalk generate`` (or any ``images/<label>/*.png`` folder).
        out_dir: report folder, built aside and moved into place at the end; an earlier report there is replaced
            only with ``overwrite`` (:mod:`latentwalk.outputs`); never inside or around an input.
        cfg: options; ``None`` = defaults.
        walk_dir: optional output of ``latentwalk walk`` whose linear-vs-PLAN distance plot joins the report.
        overwrite: replace an earlier latentwalk report in ``out_dir``.
        progress: progress bars.
        echo: ``callable(str)`` for one-line messages.

    Returns:
        :class:`EvalResult`.

    Raises:
        DataError: unusable datasets.
        ConfigError: bad options, or a report folder inside one of the datasets.
        MissingWeightsError: an explicitly named weights file that does not exist (weights only searched for and
            not found skip their space or extractor, with a note in the report).
    """
    from latentwalk.devices import resolve_device
    from latentwalk.outputs import claim_dir, staged_dir

    cfg = EvalConfig() if cfg is None else cfg
    say = echo if echo is not None else (lambda _m: None)
    started = time.perf_counter()
    device = resolve_device(cfg.device)

    final = Path(out_dir)
    inputs = {"real dataset": real_dir, "synthetic dataset": synthetic_dir, "guides": cfg.guides,
              "private sidecar": cfg.private}  # fmt: skip
    claim_dir(final, overwrite=overwrite, inputs=inputs)  # before the slow work
    with staged_dir(final, "evaluate", overwrite=overwrite, inputs=inputs) as out:
        metrics = _evaluate(Path(real_dir), Path(synthetic_dir), out, cfg, walk_dir, progress, say, started, device)
    say(f"report: {final / 'report.md'} and {final / 'report.html'}; figures: {final / 'metrics.json'}")
    return EvalResult(final, metrics)


def leakage_of(
    real_dir: str | os.PathLike, synthetic_dir: str | os.PathLike, cfg: EvalConfig, progress: bool = False
) -> dict[str, Any]:
    """Only the leakage estimate of :func:`evaluate` (``metrics["leakage"]``, the same figures for the same options),
    without the other measurements and without writing anything; the verifier is trained once per process.

    Raises:
        ConfigError: ``cfg.private`` is not given. DataError: as :func:`evaluate`.
    """
    from latentwalk.devices import resolve_device

    if cfg.private is None:
        raise ConfigError("the leakage estimate needs the generate run's private sidecar (EvalConfig.private)")
    data = _load(Path(real_dir), Path(synthetic_dir), cfg, progress)
    behind = _read_private(cfg, data, Path(synthetic_dir))
    return _leakage(data, cfg, resolve_device(cfg.device), progress, behind)


def _evaluate(real_dir, synthetic_dir, out, cfg, walk_dir, progress, say, started, device) -> dict[str, Any]:
    """The body of :func:`evaluate`, writing into the staging folder ``out``; returns the metrics."""
    from latentwalk.evaluate import fidelity, privacy, utility
    from latentwalk.evaluate.report import write_report
    from latentwalk.guides import load_guides

    data = _load(Path(real_dir), Path(synthetic_dir), cfg, progress)
    behind = _read_private(cfg, data, Path(synthetic_dir))  # checked before the slow work
    guides = load_guides(cfg.guides, device=device) if cfg.guides else None
    notes: list[str] = []
    if data.syn.shape[0] < 2:
        raise DataError("the synthetic set has fewer than 2 images; there is nothing to evaluate")
    say(
        f"real: {len(data.train)} training images ({len(set(data.train_patients))} patients), {len(data.holdout)} "
        f"held-out ({data.holdout_split}); synthetic: {len(data.syn)} images"
    )
    metrics: dict[str, Any] = {
        "counts": {
            "train": len(data.train),
            "train_patients": len(set(data.train_patients)),
            "holdout": len(data.holdout),
            "holdout_split": data.holdout_split,
            "synthetic": len(data.syn),
            "synthetic_per_label": {name: int((data.syn_labels == i).sum()) for i, name in enumerate(data.label_names)},
        },
        "label_names": list(data.label_names),
    }

    # privacy in every space
    say("privacy: nearest-real distances, collisions, DCR, NNDR, identifiability, authenticity, C_T, MIA")
    embedders = _embedders(cfg, guides, device, notes)
    spaces: dict[str, Any] = {}
    pairs: dict[str, list] = {}
    dists: dict[str, tuple[list[float], list[float]]] = {}
    for space, embed in embedders.items():
        spaces[space], pairs[space], dists[space] = _privacy_space(space, embed, data, cfg, privacy)
    metrics["privacy"] = spaces

    # utility (TSTR), and the membership-inference attack on the downstream classifier
    say(f"utility: train on real / on synthetic, test on real {data.holdout_split} ({len(cfg.utility_seeds)} seeds)")
    ucfg = utility.UtilityConfig(epochs=cfg.utility_epochs, seeds=cfg.utility_seeds)
    n_classes = len(data.label_names)
    real_train = (data.train, data.train_labels) if cfg.utility_real else None
    real_test = (data.holdout, data.holdout_labels)
    ures = utility.tstr(real_train, (data.syn, data.syn_labels), real_test, n_classes, ucfg, device, progress)
    metrics["utility"] = ures.to_dict()
    mia = {}
    for source, model in ures.models.items():
        member = utility.per_sample_loss(model, data.train, data.train_labels)
        nonmember = utility.per_sample_loss(model, data.holdout, data.holdout_labels)
        mia[f"classifier_trained_on_{source}"] = privacy.mia_loss(member, nonmember)
    metrics["membership_inference"] = mia
    say(f"membership inference, memorising regime: classifiers trained {cfg.mia_epochs} epochs without augmentation, "
        f"{cfg.mia_shadows} shadow models")  # fmt: skip
    metrics["membership_inference_memorising"] = _memorising(data, cfg, device, progress)

    # re-identification with an identity model trained independently of the guides
    say("re-identification: an independent identity model on held-out images and on synthetic images")
    metrics["reidentification"] = _reidentify(data, cfg, device, progress, privacy)
    say("verification: an independent Siamese attacker (Packhäuser et al. 2022) on synthetic and held-out images")
    metrics["verification"] = _verification(data, cfg, device, progress)
    if behind is not None:
        say("leakage: the patients behind each image (private sidecar) against the verifier's reading of it")
        metrics["leakage"] = _leakage(data, cfg, device, progress, behind)
    say("ground truth: the synthetic images' anatomy against the training patients' (phantoms' ground_truth.json)")
    metrics["ground_truth"] = _ground_truth(data, cfg, device, progress)

    # fidelity
    say("fidelity: FID / KID / precision-recall-density-coverage")
    metrics["fidelity"] = _fidelity(data, cfg, guides, device, notes, fidelity)

    metrics["notes"] = notes
    metrics["config"] = cfg.recorded()
    metrics["seconds"] = round(time.perf_counter() - started, 1)
    write_report(out, metrics, data, pairs, dists, walk_dir=walk_dir)
    return metrics


def _privacy_space(
    space: str, embed: Callable, data: _Data, cfg: EvalConfig, privacy: Any
) -> tuple[dict, list, tuple[list[float], list[float]]]:
    """Every privacy figure in one space, the closest (synthetic, real) pairs to show, and the nearest-training
    distances of the synthetic and held-out images (for the DCR histogram)."""
    import numpy as np

    patients = data.train_patients
    if space == "ssim":
        from latentwalk.distances import ssim_nearest

        d_syn, i_syn = ssim_nearest(data.syn, data.train)
        d_real, _ = ssim_nearest(data.train, data.train, a_groups=patients, b_groups=patients)
        d_hold, _ = ssim_nearest(data.holdout, data.train)
        threshold = float(np.percentile(d_real.numpy(), cfg.collision_percentile))
        order = torch.argsort(d_syn)[:8]
        result = {
            "metric": "1 - SSIM",
            "mml": float(d_syn.mean()),
            "min": float(d_syn.min()),
            "median": float(d_syn.median()),
            "threshold": threshold,
            "collisions": int((d_syn < threshold).sum()),
            "collision_fraction": float((d_syn < threshold).float().mean()),
            "dcr_holdout_median": float(d_hold.median()),
            "dcr_p_closer": privacy.auc_score(-d_syn, -d_hold),
        }
        return result, [(int(s), int(i_syn[s]), float(d_syn[s])) for s in order], (d_syn.tolist(), d_hold.tolist())
    metric = REGISTRY[space].metric
    e_tr, e_ho, e_sy = embed(data.train), embed(data.holdout), embed(data.syn)
    from latentwalk.distances import nearest

    d_real = nearest(e_tr, e_tr, k=1, metric=metric, a_groups=patients, b_groups=patients)[0][:, 0]
    threshold = float(np.percentile(d_real.numpy(), cfg.collision_percentile))
    col = privacy.collisions(e_sy, e_tr, metric, threshold)
    result = {
        "metric": metric,
        "mml": privacy.mml(e_sy, e_tr, metric),
        "threshold": threshold,
        "collisions": col,
        "dcr": privacy.dcr(e_sy, e_tr, e_ho, metric),
        "nndr": privacy.nndr(e_sy, e_tr, metric, holdout=e_ho),
        "identifiability": privacy.identifiability(e_tr, e_sy, metric, train_groups=patients),
        "authenticity": privacy.authenticity(e_tr, e_sy, metric, train_groups=patients),
        "mia_generator": privacy.mia_distance(e_tr, e_ho, e_sy, metric),
    }
    if space in ("identity", "lpips"):
        try:
            cells = max(1, min(10, len(e_sy) // 20))  # the test needs >= 20 synthetic points in a cell
            result["data_copying"] = privacy.data_copying(e_tr, e_ho, e_sy, metric=metric, n_cells=cells,
                                                          seed=cfg.seed)  # fmt: skip
        except (DataError, ConfigError) as e:
            result["data_copying"] = {"skipped": str(e)}
    d_syn = nearest(e_sy, e_tr, k=1, metric=metric)[0][:, 0].tolist()
    d_hold = nearest(e_ho, e_tr, k=1, metric=metric)[0][:, 0].tolist()
    return result, [(int(s), int(r), float(d)) for s, r, d in col["closest_pairs"]], (d_syn, d_hold)


def _reidentify(data: _Data, cfg: EvalConfig, device: torch.device, progress: bool, privacy: Any) -> dict:
    """Train a fresh identity model (seed ``reid_seed``, wider CNN) on all but one image of each training patient."""
    from latentwalk.evaluate.verifier import calibration_split
    from latentwalk.guides import GuideConfig, build_guide, fit_model

    order = sorted(set(data.train_patients))
    pid = torch.tensor([order.index(p) for p in data.train_patients])
    held_t, train_rows = calibration_split(pid)  # the last image of each patient with at least two images
    if not len(held_t):
        return {"skipped": "every training patient has a single image: no held-out image to calibrate against"}
    gcfg = GuideConfig(epochs=cfg.reid_epochs, seed=cfg.reid_seed, width=48)
    res, ch = data.train.shape[-1], data.train.shape[1]
    with torch.random.fork_rng(devices=[]):  # initial weights from its own seed: the same figures on every run
        torch.manual_seed(cfg.reid_seed)
        model = build_guide("cnn", in_channels=ch, n_classes=len(order), resolution=res, width=48)
    fit_model(model, data.train, pid, train_rows, gcfg, "reid", device, progress)
    model.eval()
    with torch.no_grad():
        probs = lambda x: torch.cat([model(p.to(device)).softmax(1).cpu() for p in x.split(256)])  # noqa: E731
        out = privacy.reidentification(probs(data.syn), probs(data.train[held_t]), pid[held_t])
    out["model"] = f"GuideCNN width 48, seed {cfg.reid_seed}, {cfg.reid_epochs} epochs (independent of the guides)"
    return out


# Attackers and probes that learn from the real data only, kept for the process: a benchmark evaluating several
# synthetic sets against one real dataset trains each once (the same bits as training it again: all are seeded).
_TRAINED: dict[str, Any] = {}


def _trained(what: str, data: _Data, settings: Any, device: torch.device, fit: Callable[[], Any]) -> Any:
    """``fit()``'s result for these real training images, patients, settings and device; computed once."""
    import hashlib

    h = hashlib.sha256(f"{what}|{settings!r}|{device}|{data.train_patients}".encode())
    h.update(data.train.numpy().tobytes())
    key = h.hexdigest()
    if key not in _TRAINED:
        if len(_TRAINED) >= 8:  # a long-lived process evaluating many datasets keeps only the latest few
            _TRAINED.pop(next(iter(_TRAINED)))
        _TRAINED[key] = fit()
    return _TRAINED[key]


def _verifier(data: _Data, cfg: EvalConfig, device: torch.device, progress: bool) -> tuple[Any, dict]:
    """The Siamese attacker, trained once per process for these data and settings (DataError: too few patients)."""
    from latentwalk.evaluate.verifier import VerifierConfig, fit_verifier

    vcfg = VerifierConfig(epochs=cfg.verifier_epochs, seed=cfg.verifier_seed)
    fit = lambda: fit_verifier(data.train, data.train_patients, vcfg, device, progress)  # noqa: E731
    return _trained("verifier", data, vcfg, device, fit)


def _verification(data: _Data, cfg: EvalConfig, device: torch.device, progress: bool) -> dict:
    """The Siamese attacker's strength and its match rates on the synthetic and the held-out real images."""
    from latentwalk.evaluate.verifier import summarize

    try:
        ver, attacker = _verifier(data, cfg, device, progress)
    except DataError as e:
        return {"skipped": str(e)}
    return {"attacker": attacker, "synthetic": summarize(ver, data.syn), "heldout": summarize(ver, data.holdout)}


def _read_private(cfg: EvalConfig, data: _Data, synthetic_dir: Path) -> dict[str, Any] | None:
    """The private sidecar's patients behind each synthetic image (manifest order); ``None`` without ``private``."""
    from latentwalk.generation.sidecar import read_sidecar
    from latentwalk.io import read_json_dict

    if cfg.private is None:
        return None
    ids = [row.get("id") or "" for row in data.rows]
    if not all(ids):
        raise DataError(f"{synthetic_dir} has no manifest.csv with image ids; the private sidecar is matched by id")
    run = read_json_dict(synthetic_dir / "run.json") or {}
    return read_sidecar(cfg.private, ids, fingerprint=run.get("fingerprint"))


def _leakage(data: _Data, cfg: EvalConfig, device: torch.device, progress: bool, behind: dict[str, Any]) -> dict:
    """Mutual information and HSIC between the patients behind each image and the verifier's reading of it."""
    from latentwalk.evaluate.leakage import estimate_leakage, path_clusters
    from latentwalk.evaluate.verifier import patient_order

    try:
        ver, _ = _verifier(data, cfg, device, progress)
    except DataError as e:
        return {"skipped": str(e)}
    logits, embedding = ver.patient_logits(data.syn), ver.embed(data.syn).double().cpu()
    out = estimate_leakage(behind["images"], patient_order(data.train_patients), logits, embedding,
                           clusters=path_clusters(data.rows), seed=cfg.seed)  # fmt: skip
    return {"source": behind.get("source"), "method": behind.get("method"), **out}


def _memorising(data: _Data, cfg: EvalConfig, device: torch.device, progress: bool) -> dict:
    """Loss and calibrated attacks on classifiers trained to convergence on R and on S (evaluate.membership)."""
    from latentwalk.evaluate import membership as mem
    from latentwalk.evaluate.utility import train_classifier

    n_classes = len(data.label_names)
    recipe = mem.memorising_recipe(cfg.mia_epochs, cfg.seed)
    members, nonmembers = (data.train, data.train_labels), (data.holdout, data.holdout_labels)
    shadows = None
    if cfg.mia_shadows:
        pool, labels = torch.cat([data.train, data.holdout]), torch.cat([data.train_labels, data.holdout_labels])
        fit = lambda: mem.fit_shadows(pool, labels, n_classes, cfg.mia_shadows, cfg.mia_epochs, cfg.seed,  # noqa: E731
                                      device, progress)  # fmt: skip
        shadows = _trained("shadows", data, (cfg.mia_shadows, cfg.mia_epochs, cfg.seed, len(pool)), device, fit)
    fit = lambda: train_classifier(*members, n_classes, recipe, cfg.seed, device, progress)  # noqa: E731
    real = _trained("memorising classifier", data, (cfg.mia_epochs, cfg.seed), device, fit)
    syn = train_classifier(data.syn, data.syn_labels, n_classes, recipe, cfg.seed, device, progress)
    return {
        "recipe": f"utility CNN, {cfg.mia_epochs} epochs, no augmentation, no weight decay, seed {cfg.seed}",
        "shadows": cfg.mia_shadows,
        "classifier_trained_on_real": mem.attack(real, members, nonmembers, shadows),
        "classifier_trained_on_synthetic": mem.attack(syn, members, nonmembers, shadows),
    }


def _ground_truth(data: _Data, cfg: EvalConfig, device: torch.device, progress: bool) -> dict:
    """Ground-truth leakage of the synthetic images, with the held-out real patients as the floor."""
    from latentwalk.evaluate.ground_truth import fit_probe

    if data.ground_truth is None:
        return {"skipped": "the real dataset has no ground_truth.json (only phantoms have one)"}
    try:
        fit = lambda: fit_probe(data.train, data.train_patients, data.ground_truth, seed=cfg.seed,  # noqa: E731
                                device=device, progress=progress)  # fmt: skip
        probe = _trained("ground-truth probe", data, cfg.seed, device, fit)
    except DataError as e:
        return {"skipped": str(e)}
    return probe.report(data.syn, data.holdout)


def _fidelity(data: _Data, cfg: EvalConfig, guides: Any, device: torch.device, notes: list[str], fid: Any) -> dict:
    out: dict[str, Any] = {}

    def report(key: str, f_real: Tensor, f_syn: Tensor, name: str) -> None:
        try:
            out[key] = fid.fidelity_report(f_real, f_syn, extractor_name=name, kid_subsets=cfg.kid_subsets,
                                           seed=cfg.seed)  # fmt: skip
        except DataError as e:  # e.g. too few images for the k-NN metrics
            notes.append(f"fidelity on {name} skipped: {e}")

    if guides is not None:
        f_real = fid.features(data.train, guides.classifier.embed)
        f_syn = fid.features(data.syn, guides.classifier.embed)
        report("class_guide", f_real, f_syn, "class guide embedding (domain)")
    try:
        inception = fid.InceptionFeatures(cfg.inception_weights, device=device)
    except MissingWeightsError as e:
        if cfg.inception_weights:  # a file that was named must exist
            raise
        notes.append(f"Inception FID/KID skipped: {e}")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f_real, f_syn = inception(data.train), inception(data.syn)
        report("inception", f_real, f_syn, "InceptionV3 pool3 (pytorch-fid)")
    if not out and guides is None:
        notes.append("fidelity skipped: neither guides nor Inception weights were available")
    return out
