"""How cost grows with the work: wall time and peak memory of ``generate`` (linear, PLAN) and ``evaluate``.

Two axes, not the full product (issue 18, item 4):

- resolution: 64, 128 and 256 px with 1,000 real images;
- dataset size: 1,000, 5,000 and 20,000 real images at 64 px.

Every cell runs in a fresh Python process (``--child``), so its peak memory is its own: the peak resident set
(``VmHWM`` of ``/proc/self/status``) is reset at every stage boundary (``/proc/self/clear_refs``) and charged to the
innermost stage running, so each stage gets its own peak and the cell's peak is the largest. Stages are timed the
same way, exclusively, by wrapping the library's own step functions in the child (``gan_zoo.load``,
``build_gate``, ``run_item``'s ``plan_paths``, ``_privacy_space``, ``tstr``, ...): the library is not changed and
runs as the CLI runs it.

Inputs, built once and cached under ``--work`` (reruns reuse them): phantom chest X-ray datasets (``cxr``, 4 images
per patient, patients split 70/10/20), guides trained briefly on each (``guide_*`` in ``FULL``), and random
generators of the demo architecture at each resolution (``build_networks``, saved as ``lite:``; ``--arch`` takes
bench_paths' widths). Speed does not depend on training, so random weights and one-epoch guides are fine; the
evaluation is of the linear cell's synthetic set.

    python benchmarks/bench_scaling.py                 # the full grid (~40 min on 2 cores), RESULTS.md `scaling`
    python benchmarks/bench_scaling.py --work ~/.cache/lw-scaling  # keep the phantoms and guides for reruns
    python benchmarks/bench_scaling.py --quick         # tiny sizes, a minute or two, prints only
    python benchmarks/bench_scaling.py --only evaluate --sizes 1000,5000 --no-record   # a part of the grid

Evaluation runs offline with short training (1 epoch per model, one utility seed, no shadow models, 10 KID
subsets, the ground-truth probe 1 epoch: the evaluation does not expose its epochs) in the identity and pixel
spaces; SSIM is off (its exact search costs time quadratic in the images, see the table) and LPIPS and Inception are
skipped when their weights are absent (the table lists every skip evaluate reported). The models evaluate trains
on the real images (the real-data utility baseline, the memorising MIA classifiers, re-identification, the
verifier, the ground-truth probe) cost one pass over the training images per epoch; above ``trained_max_px`` or
``trained_max_n`` they are switched off and their time is extrapolated (linear in images x pixels) from the largest
cell below, as the table says.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_paths import ARCHS  # noqa: E402
from record import summary, write_section  # noqa: E402

TASKS = ("linear", "plan", "evaluate")
FULL = dict(resolutions=(64, 128, 256), sizes=(1000, 5000, 20000), base_size=1000, base_resolution=64,
            per_label=32, paths_per_item=4, n_steps=10, optim_steps=5, guide_epochs=1, guide_width=16, guide_lr=1e-4,
            epochs=1, shadows=0, kid_subsets=10, trained_max_px=64, trained_max_n=5000, timeout=3600)  # fmt: skip
QUICK = dict(resolutions=(32, 64), sizes=(80, 160), base_size=80, base_resolution=32, per_label=4, paths_per_item=2,
             n_steps=4, optim_steps=2, guide_epochs=1, guide_width=8, guide_lr=1e-4, epochs=1, shadows=0,
             kid_subsets=2, trained_max_px=32, trained_max_n=80, timeout=600)  # fmt: skip
PER_PATIENT = 4  # phantom images per patient
# evaluate's stages that train a model on the real images (switched off above trained_max_px / trained_max_n)
TRAINED = ("utility (TSTR)", "MIA: loss attack", "MIA: memorising", "re-identification", "verifier (Siamese)",
           "ground-truth probe")  # fmt: skip
OFF = {"skipped": "off in this bench_scaling cell (a model trained on the real images; time ~ images x pixels)"}

# ---------------------------------------------------------------------------------------------------------------
# Peak memory per stage (child side).


def _status_kb(field: str) -> int:
    """A ``kB`` field of /proc/self/status (VmHWM: peak resident set since the last reset; VmRSS: now)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _reset_peak() -> bool:
    """Reset VmHWM to the current resident set (Linux >= 4.0); False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Stages:
    """Exclusive wall time and peak resident memory per named stage of one process.

    :meth:`wrap` replaces a function or method by one that enters a stage around each call. Time and memory are
    charged to the innermost stage running (``other`` outside every stage): at each stage boundary the peak since
    the previous boundary is read and the peak is reset, so a stage's peak is the largest resident set seen while it
    was the innermost one, and its rise that peak less the resident set when it (re)started: what the stage added
    to what was already held (the allocator keeps freed memory, so a late stage's peak includes earlier stages'
    leftovers; its rise does not). Without a resettable peak, a stage is charged only where it raised the peak.
    """

    def __init__(self) -> None:
        self.stack = ["other"]
        self.seconds: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {}
        self.rise_mb: dict[str, float] = {}
        self.resettable = _reset_peak()
        self._last_hwm = 0
        self._rss = _status_kb("VmRSS")
        self._t = time.perf_counter()

    def _boundary(self) -> None:
        now, hwm = time.perf_counter(), _status_kb("VmHWM")
        top = self.stack[-1]
        self.seconds[top] = self.seconds.get(top, 0.0) + now - self._t
        if self.resettable or hwm > self._last_hwm:
            self.peak_mb[top] = max(self.peak_mb.get(top, 0.0), hwm / 1024)
            self.rise_mb[top] = max(self.rise_mb.get(top, 0.0), (hwm - self._rss) / 1024)
        self._last_hwm = max(self._last_hwm, hwm)
        if self.resettable:
            _reset_peak()
        self._rss = _status_kb("VmRSS")
        self._t = time.perf_counter()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._boundary()
        self.stack.append(name)
        try:
            yield
        finally:
            self._boundary()
            self.stack.pop()

    def wrap(self, owner: Any, attr: str, name: str | Callable[..., str]) -> None:
        """Time every call of ``owner.attr`` (a module function or a class's method) as stage ``name`` (or
        ``name(*args, **kwargs)``)."""
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.stage(name(*args, **kwargs) if callable(name) else name):
                return fn(*args, **kwargs)

        setattr(owner, attr, timed)

    def result(self) -> dict[str, Any]:
        self._boundary()
        return {"seconds": self.seconds, "peak_mb": self.peak_mb, "rise_mb": self.rise_mb,
                "resettable": self.resettable}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# One cell (child side).


def _instrument_generate(st: Stages) -> None:
    import gan_zoo
    import latentwalk.data
    import latentwalk.data.preprocess
    import latentwalk.gate
    import latentwalk.guides
    import latentwalk.paths
    import latentwalk.pipeline as pl

    st.wrap(gan_zoo, "load", "load generator")
    st.wrap(latentwalk.guides, "load_guides", "load guides")
    st.wrap(latentwalk.data, "open_dataset", "index dataset")
    st.wrap(pl, "_check_dataset_size", "check real image sizes")
    st.wrap(latentwalk.data.preprocess, "load_tensors", "load real images")
    st.wrap(pl, "build_gate", "privacy gate fit (real NN)")
    st.wrap(pl, "build_label_gate", "label gate fit")
    st.wrap(pl, "mean_pairwise_distance", "diversity")
    st.wrap(latentwalk.paths, "plan_paths", "PLAN optimisation")
    st.wrap(latentwalk.paths, "render_paths", "render paths")
    st.wrap(latentwalk.gate.Gate, "distances", "gate check (NN to real)")
    st.wrap(pl, "write_item", "write work items")
    st.wrap(pl, "_merge", "merge, PNGs, card")


def _instrument_evaluate(st: Stages, probe_epochs: int, trained: bool) -> None:
    import latentwalk.evaluate.ground_truth as gt
    import latentwalk.evaluate.report
    import latentwalk.evaluate.run as run
    import latentwalk.evaluate.utility
    import latentwalk.guides

    if not trained:  # the real-data baseline of the utility goes with EvalConfig(utility_real=False)
        for name in ("_memorising", "_reidentify", "_verification", "_ground_truth"):
            setattr(run, name, lambda *args, **kwargs: dict(OFF))

    st.wrap(run, "_load", "load images")
    st.wrap(latentwalk.guides, "load_guides", "load guides")
    st.wrap(run, "_privacy_space", lambda space, *a, **k: f"privacy: {space} space (NN)")
    st.wrap(latentwalk.evaluate.utility, "tstr", "utility (TSTR)")
    st.wrap(latentwalk.evaluate.utility, "per_sample_loss", "MIA: loss attack")
    st.wrap(run, "_memorising", "MIA: memorising")
    st.wrap(run, "_reidentify", "re-identification")
    st.wrap(run, "_verification", "verifier (Siamese)")
    st.wrap(run, "_ground_truth", "ground-truth probe")
    st.wrap(run, "_fidelity", "fidelity (FID/KID/PRDC)")
    st.wrap(latentwalk.evaluate.report, "write_report", "report")
    gt.fit_probe = functools.partial(gt.fit_probe, epochs=probe_epochs)  # EvalConfig does not expose its epochs


def _import_everything() -> None:
    """Import what generate and evaluate import lazily (scipy, PIL, lpips, pytorch-fid, safetensors, ...)."""
    import importlib

    for name in ("gan_zoo", "gan_zoo.checkpoint", "gan_zoo.invert", "latentwalk.pipeline", "latentwalk.paths",
                 "latentwalk.guides", "latentwalk.data.preprocess", "latentwalk.evaluate.run",
                 "latentwalk.evaluate.fidelity", "latentwalk.evaluate.privacy", "latentwalk.evaluate.utility",
                 "latentwalk.evaluate.membership", "latentwalk.evaluate.verifier", "latentwalk.evaluate.ground_truth",
                 "latentwalk.evaluate.report", "latentwalk.weights", "safetensors.torch", "PIL.Image", "scipy.stats",
                 "scipy.linalg", "tqdm.auto", "lpips", "pytorch_fid.inception", "pytorch_fid.fid_score",
                 "torchvision.utils", "latentwalk.plots", "matplotlib.pyplot"):  # fmt: skip
        try:
            importlib.import_module(name)
        except ImportError:  # an optional package that is not installed: evaluate skips what needs it
            pass


def pair_costs(resolutions: tuple[int, ...], threads: int) -> dict[str, dict[str, float]]:
    """Microseconds per image pair of the exact nearest-neighbour searches evaluate runs over train x train, on
    random gray images at each resolution: ``1 - SSIM`` (``ssim_nearest``) and pixels (``nearest``, euclidean)."""
    import torch

    from latentwalk.distances import nearest, ssim_nearest

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    out: dict[str, dict[str, float]] = {}
    for r in resolutions:
        scale = (r / 64) ** 2
        q, m = max(8, int(64 / scale)), max(16, int(256 / scale))  # seconds at each size
        a, b = (torch.rand(k, 1, r, r, generator=gen) * 2 - 1 for k in (q, m))
        groups = [str(i % 3) for i in range(m)]
        t0 = time.perf_counter()
        ssim_nearest(a, b, a_groups=groups[:q], b_groups=groups)
        ssim_us = (time.perf_counter() - t0) / (q * m) * 1e6
        fa, fb = (torch.rand(k, r * r, generator=gen) for k in (max(64, int(512 / scale)), 2048))
        t0 = time.perf_counter()
        nearest(fa, fb, metric="euclidean")
        out[str(r)] = {"ssim_us": ssim_us, "pixels_us": (time.perf_counter() - t0) / (fa.shape[0] * 2048) * 1e6}
    return out


def run_cell(cell: dict[str, Any]) -> dict[str, Any]:
    """Run one cell in this (fresh) process; returns seconds and peaks, overall and per stage."""
    import warnings

    import torch

    torch.set_num_threads(cell["threads"])
    warnings.simplefilter("ignore")
    _import_everything()  # module imports are not a stage: the baseline holds them
    base_mb = _status_kb("VmRSS") / 1024
    st = Stages()
    out: dict[str, Any] = {}
    started = time.perf_counter()
    if cell["task"] == "evaluate":
        from latentwalk.evaluate.run import EvalConfig, evaluate

        e, trained = cell["epochs"], cell["trained"]
        _instrument_evaluate(st, e, trained)
        cfg = EvalConfig(guides=cell["guides"], spaces=("identity", "pixels"), utility_epochs=e, utility_seeds=(0,),
                         utility_real=trained, reid_epochs=e, verifier_epochs=e, mia_epochs=e,
                         mia_shadows=cell["shadows"] if trained else 0, kid_subsets=cell["kid_subsets"],
                         device="cpu")  # fmt: skip
        metrics = evaluate(cell["data"], cell["synthetic"], cell["out"], cfg, overwrite=True).metrics
        out["notes"], out["trained"] = metrics.get("notes", []), trained
        out["images"] = metrics["counts"]["synthetic"]
    else:
        from latentwalk.pipeline import GenerateConfig, generate

        _instrument_generate(st)
        cfg = GenerateConfig.from_dict(dict(gan=cell["gan"], guides=cell["guides"], data=cell["data"],
                                            method=cell["task"], per_label=cell["per_label"],
                                            paths_per_item=cell["paths_per_item"], n_steps=cell["n_steps"],
                                            optim_steps=cell["optim_steps"], endpoint_filter=False, max_rounds=1,
                                            device="cpu"))  # fmt: skip
        result = generate(cfg, cell["out"], overwrite=True)
        out["images"] = sum(result.written.values())
    out["wall_s"] = time.perf_counter() - started
    out.update(st.result())
    out["base_mb"] = base_mb
    out["peak_total_mb"] = max(out["peak_mb"].values())
    return out


# ---------------------------------------------------------------------------------------------------------------
# Inputs (parent side, cached under --work).


def _cached(out: Path, build: Callable[[], None]) -> None:
    """Run ``build`` (which writes ``out``) unless the marker ``<out>.done`` says an earlier run finished it; then
    write the marker."""
    marker = out.parent / f"{out.name}.done"
    if marker.is_file():
        return
    build()
    marker.write_text("done\n")


def phantoms(work: Path, resolution: int, n: int) -> Path:
    """A phantom CXR dataset of ``n`` images (``n / 4`` patients) at ``resolution`` px, built once."""
    from latentwalk.data.phantoms import PhantomConfig, write_phantom_dataset

    out = work / "data" / f"cxr-r{resolution}-n{n}"
    cfg = PhantomConfig(kind="cxr", identities=n // PER_PATIENT, per_identity=PER_PATIENT, resolution=resolution)
    _cached(out, lambda: write_phantom_dataset(cfg, out, overwrite=True))
    return out


def guides(work: Path, data: Path, resolution: int, sizes: dict[str, Any], threads: int) -> Path:
    """Guides (compact CNNs of ``guide_width`` channels) trained ``guide_epochs`` epochs at peak learning rate
    ``guide_lr`` on ``data`` at ``resolution`` px, built once. Their cost matters here, not their skill: at the
    default 1e-3, one epoch on 20,000 phantoms kills the identity embedding (every image maps to zero) and the
    identity gate cannot be fitted."""
    import torch

    from latentwalk.data import open_dataset
    from latentwalk.guides import GuideConfig, train_guides

    epochs, width, lr = sizes["guide_epochs"], sizes["guide_width"], sizes["guide_lr"]
    out = work / "guides" / f"{data.name}-e{epochs}-w{width}-lr{lr:g}"
    torch.set_num_threads(threads)
    cfg = GuideConfig(epochs=epochs, width=width, lr=lr)
    _cached(out, lambda: train_guides(open_dataset(data), out, cfg, resolution=resolution,
                                                           channels=1, overwrite=True))  # fmt: skip
    return out


def generator(work: Path, resolution: int, arch: str) -> str:
    """A random generator of ``arch`` (bench_paths' ARCHS) at ``resolution`` px, 2 classes, as a ``lite:`` spec."""
    from gan_zoo.checkpoint import save_generator
    from gan_zoo.train import TrainConfig, build_networks

    stem = work / "gan" / f"{arch}-r{resolution}" / "generator"

    def build() -> None:
        G, _ = build_networks(TrainConfig(resolution=resolution, **ARCHS[arch]), img_channels=1, c_dim=2)
        stem.parent.mkdir(parents=True, exist_ok=True)
        save_generator(G, stem, {"bench_scaling": f"random {arch} weights, seed 0"})

    _cached(stem, build)
    return f"lite:{stem}"


# ---------------------------------------------------------------------------------------------------------------
# The grid (parent side).


def grid(sizes: dict[str, Any], only: tuple[str, ...]) -> list[tuple[str, int, int, str]]:
    """``(axis, resolution, real images, task)`` of every cell, inputs of a linear cell before its evaluation."""
    points = [("resolution", r, sizes["base_size"]) for r in sizes["resolutions"]]
    points += [("dataset", sizes["base_resolution"], n) for n in sizes["sizes"] if n != sizes["base_size"]]
    return [(axis, r, n, task) for axis, r, n in points for task in TASKS if task in only]


def run_child(cell: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run ``cell`` in a fresh interpreter; a failure or a timeout is returned as ``{"error": ...}``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(cell["threads"]), "MKL_NUM_THREADS": str(cell["threads"])}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(cell)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"over the {timeout:.0f} s limit"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {tail[:200]}"}
    return json.loads(lines[-1])


def _top(values: dict[str, float]) -> tuple[str, float]:
    name = max(values, key=values.get)
    return name, values[name]


def _breakdown(res: dict[str, Any], n: int = 4) -> str:
    """The ``n`` longest stages as ``name 12.3 s``."""
    order = sorted(res["seconds"].items(), key=lambda kv: -kv[1])[:n]
    return "; ".join(f"{name} {s:.1f}" for name, s in order if s >= 0.05)


def trained_estimate(
    results: dict[tuple[int, int, str], dict], sizes: dict[str, Any], r: int, n: int
) -> tuple[float, str] | None:
    """For an evaluate cell that ran without the trained stages: their seconds extrapolated (linear in images x
    pixels) from the largest cell below the limits on its axis, and that cell's name; ``None`` otherwise."""
    if r <= sizes["trained_max_px"] and n <= sizes["trained_max_n"]:
        return None
    if r <= sizes["trained_max_px"]:  # too many images: the dataset axis
        refs = [(r, m) for m in (*sizes["sizes"], sizes["base_size"]) if m <= sizes["trained_max_n"]]
    else:  # too many pixels: the resolution axis
        refs = [(q, n) for q in sizes["resolutions"] if q <= sizes["trained_max_px"]]
    refs = [k for k in refs if "error" not in results.get((*k, "evaluate"), {"error": ""})]
    if not refs:
        return None
    q, m = max(refs)
    seconds = sum(results[q, m, "evaluate"]["seconds"].get(stage, 0.0) for stage in TRAINED)
    return seconds * (n / m) * (r / q) ** 2, f"{m:,} images at {q} px"


def row(axis: str, r: int, n: int, task: str, results: dict[tuple[int, int, str], dict], sizes: dict[str, Any]) -> str:
    res = results[r, n, task]
    what = {"linear": "generate linear", "plan": f"generate PLAN ({2 * sizes['paths_per_item']} paths x "
            f"{sizes['optim_steps']} Adam steps)", "evaluate": "evaluate"}[task]  # fmt: skip
    if "images" in res:
        what += f", {res['images']} {'synthetic ' if task == 'evaluate' else ''}images"
    if "error" in res:
        return f"| {axis} | {r} | {n:,} | {what} | – | – | failed: {res['error']} | – | – |"
    t_name, t_s = _top(res["seconds"])
    t_what = f"{t_name} ({100 * t_s / max(res['wall_s'], 1e-9):.0f}%)"
    breakdown = _breakdown(res)
    estimate = trained_estimate(results, sizes, r, n) if task == "evaluate" else None
    if estimate is not None:
        what += ", trained stages off"
        breakdown += f"; trained stages off: ~{estimate[0]:.0f} s est. from {estimate[1]}"
        if estimate[0] > t_s:
            t_what = f"trained stages (~{estimate[0]:.0f} s est.)"
    m_name, m_mb = _top(res["rise_mb"])
    return (
        f"| {axis} | {r} | {n:,} | {what} | {res['wall_s']:.1f} | {res['peak_total_mb']:.0f} | {t_what} | "
        f"{m_name} (+{m_mb:.0f} MB, peak {res['peak_mb'][m_name]:.0f}) | {breakdown} |"
    )


def growth(results: dict[tuple[int, int, str], dict], sizes: dict[str, Any]) -> list[str]:
    """Fitted exponents of peak memory above the interpreter's baseline: ``peak - base ~ N^p`` between the two
    largest datasets, and ``~ pixels^p`` between the two largest resolutions."""
    steps = []
    if len(sizes["sizes"]) >= 2:
        (n1, n2), r0 = sorted(sizes["sizes"])[-2:], sizes["base_resolution"]
        steps.append(("N", (r0, n1), (r0, n2), n2 / n1, f"N {n1:,} -> {n2:,}"))
    if len(sizes["resolutions"]) >= 2:
        (ra, rb), n0 = sorted(sizes["resolutions"])[-2:], sizes["base_size"]
        steps.append(("pixels", (ra, n0), (rb, n0), (rb / ra) ** 2, f"{ra} -> {rb} px"))
    lines = []
    for task in TASKS:
        parts = []
        for unit, k1, k2, ratio, what in steps:
            a, b = results.get((*k1, task)), results.get((*k2, task))
            if not a or not b or "error" in a or "error" in b:
                continue
            da, db = a["peak_total_mb"] - a["base_mb"], b["peak_total_mb"] - b["base_mb"]
            p = math.log(db / da) / math.log(ratio) if da > 0 and db > 0 else float("nan")
            differ = " (trained stages off in the larger only)" if a.get("trained") != b.get("trained") else ""
            parts.append(f"{what}: {da:.0f} -> {db:.0f} MB, ~ {unit}^{p:.2f}{differ}")
        if parts:
            lines.append(f"- {task}: " + "; ".join(parts))
    return lines or ["- (needs two sizes or two resolutions)"]


def limits(pairs: dict[str, Any], sizes: dict[str, Any]) -> str:
    """Where memory grew with the square of the real set and what was done; the quadratic search times projected
    from ``pairs`` (microseconds per pair measured in this run) to the training splits of the dataset axis."""
    if "error" in pairs:
        cost = f"(not measured: {pairs['error']})"
    else:
        r0 = str(sizes["base_resolution"])
        per_px = ", ".join(f"{v['ssim_us']:.0f} us at {r} px" for r, v in pairs.items())
        projections = ", ".join(
            f"{_duration((0.7 * n) ** 2 * pairs[r0]['ssim_us'] / 1e6)} at {n:,} images"
            for n in sorted({*sizes["sizes"], sizes["base_size"]})
        )
        pixels = ", ".join(f"{v['pixels_us']:.2f} us at {r} px" for r, v in pairs.items())
        cost = (
            f"Time stays quadratic: per pair {per_px} here, so one train x train search at {r0} px takes "
            f"{projections} (hence off in this table). Pixel-space searches cost {pixels} per pair."
        )
    n_big = 0.7 * max(sizes["sizes"])
    return f"""\
Where the limits are (memory that grew with the square of the real set, and what was done):

- SSIM nearest neighbours (evaluate's `ssim` space, the `ssim` gate): now blocked (`ssim_nearest`, about 256 MB
  per block; the gate's threshold and self-check share one pass), so memory is linear in the images; before, the
  train x train matrix and its copies needed about 24 bytes x N_train^2 ({24 * n_big**2 / 2**30:.1f} GB at
  {n_big:,.0f} training images). {cost}
- The verifier's calibration (a [held-out images x patients] score matrix and all its negative pairs ranked for
  the AUC, ~50 bytes per pair) and its best scores on held-out and synthetic images: now scored 1,024 rows at a
  time, the AUC counted against the sorted positives (`auc_score_chunked`), the same figures bit for bit.
- Already blocked: Euclidean/cosine nearest neighbours (`nearest`: identity, pixels, LPIPS embeddings, DCR, NNDR,
  identifiability, authenticity, C_T's k-means; chunk x chunk) and PRDC (chunk x N); their time is quadratic
  (three train x train searches per space).
- Left as they are, quadratic in the *patients* P (here P = 0.7 N / 4): the re-identification model's
  probabilities on its held-out images ([P x P] float32, then float64: 12 bytes per pair, the outputs of a P-way
  classifier; {12 * (n_big / 4) ** 2 / 2**20:.0f} MB at {n_big / 4:,.0f} training patients). Synthetic x
  synthetic: the leakage estimate's HSIC kernels (only with --private, off here). The k-same grouping (`ksame`,
  not in this table) holds [patients x groups] distances.
"""


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.0f} h"


def table(
    order: list[tuple[str, int, int, str]],
    results: dict[tuple[int, int, str], dict],
    sizes: dict[str, Any],
    threads: int,
    notes: list[str],
    pairs: dict[str, Any],
) -> str:
    rows = [
        "| axis | px | real images | task | wall s | peak MB | stage dominating time | stage dominating memory | "
        "longest stages (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows += [row(axis, r, n, task, results, sizes) for axis, r, n, task in order]
    off = "\n".join(f"- {note}" for note in sorted(set(notes))) or "- none"
    return (
        f"## Scaling: wall time and peak memory of generate and evaluate (CPU, {threads} thread(s))\n\n"
        f"Phantom CXR data ({PER_PATIENT} images per patient, 70/10/20 patient split), guides (compact CNNs of "
        f"width {sizes['guide_width']}; the library's default is 32) trained {sizes['guide_epochs']} epoch(s) at "
        f"peak learning rate {sizes['guide_lr']:g} (at the default 1e-3 one epoch on 20,000 phantoms kills the "
        "identity embedding and the identity gate stops with a DataError), "
        f"random demo-width generators (2 classes). Generate: {sizes['per_label']} images per label, "
        f"{sizes['paths_per_item']} paths per item, paths of {sizes['n_steps']} points, identity gate and label "
        f"gate, no endpoint filter, one round; PLAN {sizes['optim_steps']} Adam steps. Evaluate (of the linear "
        f"cell's set): identity and pixel spaces, {sizes['epochs']} epoch per trained model, one utility seed, "
        f"{sizes['shadows']} shadow model(s), {sizes['kid_subsets']} KID subsets; above {sizes['trained_max_px']} px "
        f"or {sizes['trained_max_n']:,} images the models trained on the real images ({', '.join(TRAINED)}) are "
        "off and their time is extrapolated. Each cell runs in a fresh process; peak = largest resident set "
        "(VmHWM); a stage's time and peak are charged to the innermost stage running and its rise is its peak less "
        "the resident set when it started (what it added); 'other' is time outside the wrapped stages (hashing, "
        "config, folders). The default (real) run trains each model 30-80 epochs, so there the trained stages "
        "dominate evaluate by far more.\n\n"
        + "\n".join(rows)
        + "\n\nPeak memory growth (peak minus the process's resident set after imports):\n\n"
        + "\n".join(growth(results, sizes))
        + "\n\nSwitched off or skipped (as evaluate reported it):\n\n"
        + f"- SSIM space (quadratic time, see below)\n{off}\n\n"
        + limits(pairs, sizes)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes; prints only unless --record")
    parser.add_argument("--work", type=Path, default=None, help="cache of phantoms, guides, generators (default: temp)")
    parser.add_argument("--only", default=",".join(TASKS), help="tasks to run: linear,plan,evaluate")
    parser.add_argument("--sizes", default=None, help="real-image counts of the dataset axis, e.g. 1000,5000")
    parser.add_argument("--resolutions", default=None, help="resolutions of the resolution axis, e.g. 64,128")
    parser.add_argument("--arch", choices=sorted(ARCHS), default="demo", help="generator widths (as bench_paths)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch threads per cell")
    parser.add_argument("--record", action="store_true", help="with --quick: write RESULTS.md anyway")
    parser.add_argument("--no-record", action="store_true", help="print only; do not touch RESULTS.md")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        cell = json.loads(args.child)
        out = pair_costs(tuple(cell["resolutions"]), cell["threads"]) if cell["task"] == "pairs" else run_cell(cell)
        print(json.dumps(out), flush=True)
        return

    sizes = dict(QUICK if args.quick else FULL)
    if args.sizes:
        sizes["sizes"] = tuple(int(s) for s in args.sizes.split(","))
    if args.resolutions:
        sizes["resolutions"] = tuple(int(s) for s in args.resolutions.split(","))
    only = tuple(t for t in args.only.split(",") if t)
    if any(t not in TASKS for t in only):
        parser.error(f"--only takes some of {', '.join(TASKS)}, got {args.only}")
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lw-scaling-")))
        order = grid(sizes, only)
        results, notes = measure(work, order, sizes, args.arch, args.threads)
    pairs = run_child({"task": "pairs", "threads": args.threads, "resolutions": sorted(sizes["resolutions"])}, 600)
    body = table(order, results, sizes, args.threads, notes, pairs)
    print(body)
    if args.work is not None:  # every stage of every cell, for a closer look
        cells = [{"axis": a, "px": r, "real_images": n, "task": t, **results[r, n, t]} for a, r, n, t in order]
        (args.work / "scaling.json").write_text(json.dumps(cells, indent=1))
    ok = [res for res in results.values() if "error" not in res]
    if ok:
        worst = max(ok, key=lambda r: r["peak_total_mb"])
        summary(f"scaling: {len(ok)} cells, largest peak {worst['peak_total_mb']:.0f} MB, "
                f"longest cell {max(r['wall_s'] for r in ok):.0f} s")  # fmt: skip
    if (not args.quick or args.record) and not args.no_record:
        write_section("scaling", body)


def measure(
    work: Path, order: list[tuple[str, int, int, str]], sizes: dict[str, Any], arch: str, threads: int
) -> tuple[dict[tuple[int, int, str], dict], list[str]]:
    """Build the inputs of every cell (cached), run the cells; returns the results by ``(px, N, task)`` and the
    notes evaluate wrote (skipped spaces and extractors)."""
    results: dict[tuple[int, int, str], dict] = {}
    notes: list[str] = []
    for axis, r, n, task in order:
        t0 = time.perf_counter()
        data = phantoms(work, r, n)
        cell = dict(task=task, threads=threads, data=str(data), out=str(work / "runs" / f"{task}-r{r}-n{n}"),
                    guides=str(guides(work, data, r, sizes, threads)),
                    gan=generator(work, r, arch), trained=r <= sizes["trained_max_px"] and n <= sizes["trained_max_n"],
                    synthetic=str(work / "runs" / f"linear-r{r}-n{n}"))  # fmt: skip
        cell.update({k: sizes[k] for k in ("per_label", "paths_per_item", "n_steps", "optim_steps", "epochs",
                                           "shadows", "kid_subsets")})  # fmt: skip
        if task == "evaluate" and not (work / "runs" / f"linear-r{r}-n{n}" / "run.json").is_file():
            run_child({**cell, "task": "linear", "out": cell["synthetic"]}, sizes["timeout"])  # its input, unmeasured
        prep = time.perf_counter() - t0
        results[r, n, task] = res = run_child(cell, sizes["timeout"])
        notes += res.get("notes", [])
        print(f"{axis} {r} px, {n} real, {task}: inputs {prep:.0f} s, " + (
            res["error"] if "error" in res else f"{res['wall_s']:.1f} s, peak {res['peak_total_mb']:.0f} MB"
        ), flush=True)  # fmt: skip
    return results, notes


if __name__ == "__main__":
    main()
