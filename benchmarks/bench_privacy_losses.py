"""The walk's privacy losses side by side (issue 14): KL-uniform (PLAN's reference), IRENE's plug-in mutual
information, a verification hinge and HSIC, each as PLAN's privacy term, with Linear as the no-privacy baseline.

    python benchmarks/bench_privacy_losses.py --benchmark tb --threads 1
    python benchmarks/bench_privacy_losses.py --benchmark dr --threads 1
    python benchmarks/bench_privacy_losses.py --benchmark tb --quick   # minutes: a smoke run, RESULTS.md untouched

Reuses the dataset, guides and training latents of ``scripts/bench_paper.py`` (``benchmarks/results/<benchmark>/``;
run that first), so the KL-uniform row is the paper table's PLAN row with a fresh set. Each row: ``latentwalk
generate`` (method ``plan``, or ``linear``; gates off as in the paper table) with its private sidecar of the patients
behind each image, then ``latentwalk evaluate`` with that sidecar: utility (TSTR), the independent verifier's match
rate, ground-truth leakage, and the leakage estimate (plug-in MI between the verifier's predicted patient and the
patients behind each image, with its permutation null; HSIC).

Equal push: the losses live on different scales (KL is summed over each path's interior images, MI is one number
in [0, 1]), so one weight would compare a loss with itself switched off. Each loss's privacy weight is set so that
the norm of its gradient with respect to the path points, at the linear paths of a fixed sample of endpoints, equals
that of KL-uniform at PLAN's weight 0.1 (the weights are printed in the table). The sample is walked in batches of
generate's ``paths_per_item`` (8), as a work item walks its paths together, and the norm averaged over the batches:
the batch-level terms (MI, HSIC) are one value per batch, so their gradient depends on the batch size. The class and
equidistance weights stay 1. One more row, KL-uniform with ``--adversarial-rounds`` (default 1), walks against an
identity attacker retrained on its own candidates (``generate --adversarial-rounds``). ``--resume`` reuses finished
sets and their evaluations; ``--rows`` runs only the rows named and carries the others over from the table already
in ``--out`` (the table says which). ``--leakage-only`` recomputes the leakage columns of the rows in ``--out``'s
record (those named by ``--rows``, or all) with the current estimator and re-renders the table from the record.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from gan_zoo.io import read_json_dict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_paper import PAPER_WALK  # noqa: E402  # the paper table's walk, so the KL row is its PLAN row

KINDS = {"tb": "cxr", "dr": "fundus"}
LOSSES = ("kl_uniform", "mi", "verification", "hsic")
NAMES = {
    "linear": "Linear (no privacy term)",
    "kl_uniform": "PLAN, KL-uniform (reference)",
    "mi": "PLAN, plug-in MI (IRENE)",
    "verification": "PLAN, verification hinge",
    "hsic": "PLAN, HSIC",
    "kl_uniform_adversarial": "PLAN, KL-uniform, {rounds} adversarial round{s}",
}
ADVERSARIAL = "kl_uniform_adversarial"  # the row of --adversarial-rounds: Feutry's idea applied to the walk
FULL = dict(per_label=100, optim_steps=100, eval_epochs=15, seeds=(0, 1, 2), mia_epochs=60, mia_shadows=4,
            calibration_paths=16)  # fmt: skip
QUICK = dict(per_label=4, optim_steps=2, eval_epochs=1, seeds=(0,), mia_epochs=2, mia_shadows=0,
             calibration_paths=8)  # fmt: skip
# calibration_paths: a multiple of generate's paths_per_item (8): the calibration walks them in batches of that size
BASE_WEIGHT = 0.1  # PLAN's privacy weight for KL-uniform


def privacy_grad_norm(
    loss: str, G: Any, guides: Any, n_paths: int, n_steps: int, seed: int, batch: int | None = None
) -> float:
    """Norm of the privacy term's gradient w.r.t. the interior points of linear paths between sampled endpoints,
    averaged over batches of ``batch`` paths walked together.

    The same endpoints for every loss (seeded); labels alternate over the guide's classes; targets are the identity
    guide's softmax at the endpoints, as ``plan_paths`` takes them when it is given none. The ``n_paths`` sampled
    paths are split into consecutive batches of ``batch`` (``None``: one batch of all), as generate walks
    ``paths_per_item`` paths together in a work item: a batch-level term (``mi``, ``hsic``) is one value per batch,
    so its gradient depends on the batch size, and the calibration must see generate's. The norm of each batch's
    gradient is taken separately and the mean returned (``n_paths`` must be a multiple of ``batch``).
    """
    batch = n_paths if batch is None else batch
    if batch < 1 or n_paths % batch:
        raise ValueError(f"calibration paths ({n_paths}) must be a positive multiple of the batch ({batch})")
    import torch.nn.functional as F

    from latentwalk.endpoints import sample_w
    from latentwalk.paths import (
        PlanConfig,
        classifier_input,
        linear_paths,
        reference_chunk_weights,
        render_ws,
        resolve_repeat_gray,
    )
    from latentwalk.privacy_losses import IMAGE_LOSSES, batch_privacy, image_privacy, interior_targets

    gen = torch.Generator().manual_seed(seed)
    n_labels = int(getattr(G, "c_dim", 0) or 0) or 1
    ends = [sample_w(G, 2, generator=gen, label=i % n_labels if G.c_dim else None) for i in range(n_paths)]
    w = torch.stack(ends)  # [P, 2, w_dim]
    cfg = PlanConfig(repeat_gray=resolve_repeat_gray(None, guides.identity))
    num_ws = int(G.num_ws)
    id_net = guides.identity

    def logits(points: torch.Tensor) -> torch.Tensor:  # [n, w_dim] -> [n, K]
        return id_net(classifier_input(render_ws(G, points[:, None].expand(-1, num_ws, -1), None), cfg))

    with torch.no_grad():
        q_ends = F.softmax(logits(w.flatten(0, 1)).float(), dim=1).view(n_paths, 2, -1)  # [P, 2, K]
    norms = []
    for s in range(0, n_paths, batch):
        wb = w[s : s + batch]  # [B, 2, w_dim]
        x = linear_paths(wb[:, 0], wb[:, 1], n_steps)[:, 1:-1].detach().requires_grad_(True)  # [B, n_int, w_dim]
        n_int = x.shape[1]
        q = interior_targets(q_ends[s : s + batch], n_steps).flatten(0, 1)  # [B * n_int, K]
        with torch.enable_grad():
            lg = logits(x.flatten(0, 1))
            if loss in IMAGE_LOSSES:
                weights = reference_chunk_weights(n_int, lg.device).repeat(batch)  # [B * n_int]
                term = (weights * image_privacy(loss, lg, q, None)).sum()
            else:
                term = batch_privacy(loss, lg, q) * batch  # the per-path scale plan_paths gives it
            (grad,) = torch.autograd.grad(term, [x])
        norms.append(float(grad.norm()))
    return sum(norms) / len(norms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmark", choices=sorted(KINDS), required=True)
    parser.add_argument("--source", type=Path, default=None,
                        help="bench_paper's folder with data/, guides/, latents-train.safetensors "
                             "(default benchmarks/results/<benchmark>)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="default benchmarks/results/privacy-losses-<benchmark>")
    parser.add_argument("--losses", default=",".join(LOSSES), help="comma-separated subset of " + ",".join(LOSSES))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--resume", action="store_true",
                        help="reuse finished synthetic sets, and their evaluations where run with the same "
                             "settings")  # fmt: skip
    parser.add_argument("--rows", default=None,
                        help="comma-separated rows to run (linear, the losses, " + ADVERSARIAL + "; default all): "
                             "the others are carried over from the table already in --out")  # fmt: skip
    parser.add_argument("--adversarial-rounds", type=int, default=1,
                        help="rounds of the KL-uniform row with adversarial rounds (generate --adversarial-rounds); "
                             "0: no such row")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-record", action="store_true", help="do not touch RESULTS.md")
    parser.add_argument("--leakage-only", action="store_true",
                        help="recompute only the leakage columns of the recorded rows (those of --rows, or all; "
                             "their sets and evaluations reused) and re-render the table")  # fmt: skip
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    losses = [s for s in args.losses.split(",") if s]
    unknown = sorted(set(losses) - set(LOSSES))
    if unknown:
        parser.error(f"unknown loss(es) {unknown}; expected some of {list(LOSSES)}")
    keys = ["linear", *losses] + ([ADVERSARIAL] if args.adversarial_rounds > 0 else [])
    chosen = keys if args.rows is None else [r for r in args.rows.split(",") if r]
    if not set(chosen) <= set(keys):
        parser.error(f"unknown row(s) {sorted(set(chosen) - set(keys))}; expected some of {keys}")

    import gan_zoo
    from latentwalk.devices import resolve_device
    from latentwalk.evaluate.run import evaluate
    from latentwalk.guides import load_guides
    from latentwalk.pipeline import GenerateConfig, generate

    sizes = QUICK if args.quick else FULL
    kind = KINDS[args.benchmark]
    if args.leakage_only:  # then re-rendered from the record, every row carried
        _recompute_leakage(args, sizes, None if args.rows is None else set(chosen))
        chosen = []
    source, out = _folders(args)
    data_dir, guides_dir, latents = source / "data", source / "guides", source / "latents-train.safetensors"
    for need in (data_dir / "dataset.json", guides_dir / "identity.json", latents):
        if not need.is_file():
            quick = " --quick" if args.quick else ""
            sys.exit(f"error: {need} is missing; run scripts/bench_paper.py --benchmark {args.benchmark}{quick} "
                     "first (this benchmark reuses its data, guides and latents)")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    device = resolve_device(args.device)
    spec = f"demo:{kind}"
    G = gan_zoo.load(spec, device=device)
    guides = load_guides(guides_dir, device=device)
    defaults = GenerateConfig()  # the rows below keep its n_steps and paths_per_item
    n_steps, per_item = defaults.plan.n_steps, defaults.paths_per_item

    t0 = time.perf_counter()
    paths = sizes["calibration_paths"]
    norms = {loss: privacy_grad_norm(loss, G, guides, paths, n_steps, args.seed, per_item) for loss in losses}
    ref = norms.get("kl_uniform") or privacy_grad_norm("kl_uniform", G, guides, paths, n_steps, args.seed, per_item)
    weights = {loss: BASE_WEIGHT * ref / norms[loss] if norms[loss] > 0 else BASE_WEIGHT for loss in losses}
    calib_s = round(time.perf_counter() - t0, 1)
    print("privacy weights (equal gradient norm to KL-uniform at 0.1):", json.dumps(weights), flush=True)

    calibration = {"paths": paths, "batch": per_item}
    rows: list[tuple[str, str, dict[str, Any]]] = [("linear", "linear", {})]
    rows += [(loss, "plan", {"privacy_loss": loss, "weights": [weights[loss], 1.0, 1.0]}) for loss in losses]
    if args.adversarial_rounds > 0:
        rows.append((ADVERSARIAL, "plan", {"privacy_loss": "kl_uniform", "weights": [BASE_WEIGHT, 1.0, 1.0],
                                           "adversarial_rounds": args.adversarial_rounds}))  # fmt: skip
    results: dict[str, Any] = {}
    carry = args.resume or args.rows is not None or args.leakage_only
    earlier_run = (read_json_dict(out / "metrics.json") or {}) if carry else {}
    earlier = earlier_run.get("rows") or {}
    if not chosen and not earlier:
        parser.error(f"--rows names no row and {out / 'metrics.json'} holds no table to re-render")
    from_record: set[str] = set()  # rows carried from that run's record
    listed = {key for key, _, _ in rows}
    rows += [(key, "", {}) for key in earlier if key not in listed]  # an earlier table's rows this run does not list
    for key, method, extra in rows:
        row_dir = out / "rows" / key
        if key not in chosen or key not in listed:  # not asked for: the earlier run's row, when it has one
            if key in earlier:
                ecfg = _eval_config(args, sizes, guides_dir, row_dir / "private", key == "linear")
                results[key] = _checked_carry(key, earlier[key], ecfg, row_dir / "synthetic")
                from_record.add(key)
            continue
        gcfg = GenerateConfig.from_dict(dict(
            gan=spec, guides=str(guides_dir), data=str(data_dir), latents=str(latents), method=method,
            per_label=sizes["per_label"], optim_steps=sizes["optim_steps"], gate_threshold=0.0, label_gate=False,
            seed=args.seed, device=args.device, endpoint_filter=not args.quick, **{**PAPER_WALK, **extra},
        ))  # fmt: skip
        t0 = time.perf_counter()
        gen = generate(gcfg, row_dir / "synthetic", overwrite=not args.resume, private_dir=row_dir / "private")
        gen_s = time.perf_counter() - t0
        ecfg = _eval_config(args, sizes, guides_dir, row_dir / "private", key == "linear")
        carried, metrics = _finished_row(row_dir, ecfg, earlier.get(key), gen.already_done)
        if carried is not None:  # --resume: the earlier run's record of this finished row
            results[key] = carried
            from_record.add(key)
            print(f"  row {key}: set and evaluation reused", flush=True)
            continue
        from_folder = metrics is not None
        if metrics is None:
            metrics = evaluate(data_dir, row_dir / "synthetic", row_dir / "evaluation", ecfg, overwrite=True).metrics
        images, record = sum(gen.written.values()), _run_record(row_dir / "synthetic")
        results[key] = {"metrics": metrics, "images": images, "generate_seconds": round(gen_s, 1),
                        "reused": bool(gen.already_done), "carried": from_folder, "leakage_recomputed": False,
                        "set_fingerprint": record.get("fingerprint"),
                        "paths": _paths(row_dir / "synthetic"), "calibration": calibration,
                        "weights": extra.get("weights"),
                        "adversarial_rounds": extra.get("adversarial_rounds", 0),
                        "adversarial": record.get("adversarial")}  # fmt: skip
        print(f"  row {key}: {time.perf_counter() - t0:.0f}s", flush=True)

    wall = round(time.perf_counter() - started, 1)
    for key, row in results.items():  # rows recorded before paths were counted: from their set, when on disk
        if row.get("paths") is None:
            row["paths"] = _paths(out / "rows" / key / "synthetic")
        if row.get("set_seconds") is None:  # the generate run that wrote the set (a reused set's own time)
            execution = _run_record(out / "rows" / key / "synthetic").get("execution", {})
            row["set_seconds"], row["set_resumed"] = execution.get("seconds"), bool(execution.get("resumed"))
    kept = [_name(k, r) for k, r in results.items() if r.get("carried")]
    note = (f"Resumed: the rows {', '.join(kept)} come from an earlier run (sets and evaluations with the same "
            "settings reused). " if kept else "")  # fmt: skip
    carried = [k for k in results if k in from_record]  # in the table's order
    for key in carried:  # a record from before the per-row flag: its flag covers the rows that run did not run
        ran_then = earlier.get(key, {}).get("carried") is False
        results[key].setdefault("leakage_recomputed", bool(earlier_run.get("leakage_recomputed")) and not ran_then)
    recomputed = [_name(k, results[k]) for k in carried if results[k]["leakage_recomputed"]]
    if recomputed:
        note += f"The leakage columns of {', '.join(recomputed)} were recomputed with `--leakage-only`. "
    # a record from before the per-row calibration: its run's (before generate's batches: all paths as one batch)
    was = earlier_run.get("calibration") or {"paths": sizes["calibration_paths"], "batch": None}
    for key, row in results.items():
        row.setdefault("calibration", was if key in from_record else calibration)
    calibrated = [k for k, r in results.items() if k not in ("linear", "kl_uniform", ADVERSARIAL)]  # not KL: 0.1
    for cal in sorted({json.dumps(results[k]["calibration"], sort_keys=True) for k in calibrated}):
        if json.loads(cal) == calibration:
            continue
        names = [
            _name(k, results[k]) for k in calibrated if json.dumps(results[k]["calibration"], sort_keys=True) == cal
        ]
        cal = json.loads(cal)
        walked = "one batch" if cal.get("batch") is None else f"batches of {cal['batch']}"
        note += (f"The privacy weights of {', '.join(names)} were calibrated by their run on {cal.get('paths')} "
                 f"endpoint pairs walked in {walked}; the calibration below is this run's. ")  # fmt: skip
    if results and len(from_record) == len(results):  # no row ran: the table is re-rendered
        wall = 0.0  # the rows' own times are in their column
        note += "No row ran in this run (the table re-rendered). "
    elif kept:
        note += "The wall time is this run's. "
    body = _table(args, results, weights, norms, calib_s, wall, kind, note, calibration=calibration)
    (out / "table.md").write_text(body + "\n")
    record = {"rows": results, "weights": weights, "grad_norms": norms, "calibration_seconds": calib_s,
              "calibration": calibration, "wall_seconds": wall, "leakage_recomputed": bool(recomputed)}  # fmt: skip
    (out / "metrics.json").write_text(json.dumps(record, indent=2))
    print(body)
    if not (args.quick or args.no_record):
        from record import write_section

        cmd = "python benchmarks/bench_privacy_losses.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        write_section(f"privacy-losses-{args.benchmark}", body, cmd=cmd)


def _folders(args: Any) -> tuple[Path, Path]:
    """``(source, out)``: bench_paper's folder this run reuses and this run's own."""
    quick = "-quick" if args.quick else ""
    results = ROOT / "benchmarks" / "results"
    source = args.source or results / (args.benchmark + quick)
    return source, args.out or results / f"privacy-losses-{args.benchmark}{quick}"


def _run_record(folder: Path) -> dict[str, Any]:
    """The synthetic set's ``run.json`` (``{}`` when unreadable)."""

    return read_json_dict(folder / "run.json") or {}


def _evaluated_as(ecfg: Any) -> dict[str, Any]:
    """``ecfg`` as ``evaluate`` records it in ``metrics.json`` (read back: tuples as lists)."""
    return json.loads(json.dumps(ecfg.recorded()))


def _same_set(row: dict[str, Any], set_dir: Path, evaluation: Path | None = None) -> bool:
    """Was ``row`` (a record, or ``evaluation``'s folder) evaluated on the set now in ``set_dir``? By the set's
    fingerprint where the record has it; else the evaluation must be newer than the set's ``run.json`` (a set
    regenerated after it, e.g. by a run killed during its evaluation, makes it stale). No set on disk (a fresh
    clone holds only the records): trusted."""
    run = set_dir / "run.json"
    if not run.is_file():
        return True
    if row.get("set_fingerprint"):
        return row["set_fingerprint"] == _run_record(set_dir).get("fingerprint")
    if evaluation is None or not (evaluation / "metrics.json").is_file():
        return True
    return (evaluation / "metrics.json").stat().st_mtime >= run.stat().st_mtime


def _checked_carry(key: str, row: dict[str, Any], ecfg: Any, set_dir: Path) -> dict[str, Any]:
    """An earlier table's row carried without running it: refused (exit) unless it was evaluated with ``ecfg``'s
    settings on the set now in ``set_dir``."""
    if row.get("metrics", {}).get("config") != _evaluated_as(ecfg) or not _same_set(row, set_dir):
        sys.exit(f"error: row {key} of the earlier table was evaluated with other settings or on another set; "
                 f"name it in --rows to run it again")  # fmt: skip
    return {**row, "carried": True}


def _paths(set_dir: Path) -> int | None:
    """Distinct paths in a set's manifest (``None`` without one): the images of one path are not independent."""
    import csv

    try:
        with (set_dir / "manifest.csv").open(newline="") as f:
            return len({(r.get("seed"), r.get("path_id")) for r in csv.DictReader(f)}) or None
    except OSError:
        return None


def _finished_row(
    row_dir: Path, ecfg: Any, earlier: dict[str, Any] | None, set_reused: bool
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``(row, metrics)`` of a row whose set ``--resume`` reused: ``(None, None)`` when its evaluation must run.

    The evaluation in ``row_dir/evaluation`` counts as finished when it ran with ``ecfg`` (as ``evaluate`` records
    its config, paths redacted) on the set now in ``row_dir/synthetic`` (:func:`_same_set`). Then ``row`` is the
    earlier run's record of the row (its ``metrics.json``: it may hold leakage recomputed by ``--leakage-only``, and
    the row's generate time) when that matches too, else ``None`` and ``metrics`` the folder's own (a run stopped
    before its table).
    """
    if not set_reused:
        return None, None
    folder, set_dir = row_dir / "evaluation", row_dir / "synthetic"
    want = _evaluated_as(ecfg)
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return None, None
    if metrics.get("config") != want or not _same_set({}, set_dir, folder):
        return None, None
    if earlier and earlier.get("metrics", {}).get("config") == want and _same_set(earlier, set_dir, folder):
        return {**earlier, "carried": True}, metrics
    return None, metrics


def _eval_config(args: Any, sizes: dict, guides_dir: Path, private: Path, first: bool) -> Any:
    """Evaluate's settings for a row; ``first`` (the Linear row) also trains the real-data utility classifiers."""
    from latentwalk.evaluate.run import EvalConfig

    return EvalConfig(guides=str(guides_dir), spaces=("identity", "pixels"), utility_epochs=sizes["eval_epochs"],
                      utility_seeds=sizes["seeds"], reid_epochs=sizes["eval_epochs"], utility_real=first,
                      verifier_epochs=4 * sizes["eval_epochs"], mia_epochs=sizes["mia_epochs"],
                      mia_shadows=sizes["mia_shadows"], private=str(private), seed=args.seed,
                      device=args.device)  # fmt: skip


def _recompute_leakage(args: Any, sizes: dict, only: set[str] | None) -> None:
    """Recompute the ``leakage`` of the rows of the record in ``--out`` (those in ``only``, or all) with today's
    estimator on their sets and private sidecars, flag them ``leakage_recomputed`` and save the record; the table is
    then re-rendered from it like any carried row (``--rows ''``)."""
    from latentwalk.evaluate.run import leakage_of

    source, out = _folders(args)
    saved = read_json_dict(out / "metrics.json")
    if not saved or not saved.get("rows"):
        sys.exit(f"error: --leakage-only needs a finished table: {out / 'metrics.json'} holds none")
    missing = sorted((only or set()) - set(saved["rows"]))
    if missing:
        sys.exit(f"error: --leakage-only: {out / 'metrics.json'} has no row(s) {missing}")
    for key, row in saved["rows"].items():
        if only is not None and key not in only:
            continue
        t0 = time.perf_counter()
        row_dir = out / "rows" / key
        cfg = _eval_config(args, sizes, source / "guides", row_dir / "private", key == "linear")
        row["metrics"]["leakage"] = leakage_of(source / "data", row_dir / "synthetic", cfg)
        row["leakage_recomputed"] = True
        (out / "metrics.json").write_text(json.dumps(saved, indent=2))  # row by row: a crash keeps what is done
        print(f"  row {key}: leakage recomputed ({time.perf_counter() - t0:.0f}s)", flush=True)


def _name(key: str, row: dict[str, Any]) -> str:
    """The row's name in the table (the adversarial row with its number of rounds)."""
    rounds = row.get("adversarial_rounds", 0)
    return NAMES[key].format(rounds=rounds, s="" if rounds == 1 else "s")


Z_FAMILY = statistics.NormalDist().inv_cdf(1 - 0.05 / 3 / 2)  # 2.394: two-sided 5 % over a row's three privacy
# figures (Bonferroni)


def dominance(ref: dict[str, Any], row: dict[str, Any]) -> tuple[bool, str]:
    """``(dominates, why)``: does ``row`` dominate the reference row (KL-uniform) on privacy at equal utility?

    Equal utility: the row's mean TSTR accuracy is at least the reference's minus the larger of their standard
    deviations over seeds. Privacy, each lower = better, each tested at |z| >= 2.394 (5 % two-sided over the three
    figures, Bonferroni): the independent verifier's match rate on the set and the ground-truth leak fraction by a
    two-proportion z-test with one observation per *path* (``paths``; the images of a path share its endpoints'
    patients and are not independent, so this is conservative; the image count where paths are unknown), and the
    leakage MI by the difference of the two bias-corrected estimates (the plug-ins for a record without them) over
    the combined standard error read off their 95 % CIs, which are around the bias-corrected estimates.
    Dominates = equal utility, worse on no privacy figure, better on at least one.
    """

    def acc(r: dict) -> tuple[float | None, float]:
        u = r["metrics"].get("utility", {})
        mean = u.get("mean", {}).get("synthetic", {}).get("accuracy")
        return mean, u.get("std", {}).get("synthetic", {}).get("accuracy") or 0.0

    def rate(r: dict, figure: str, field: str) -> tuple[float | None, int]:
        f = r["metrics"].get(figure, {}).get("synthetic", {})
        return f.get(field), int(r.get("paths") or f.get("images") or 0)

    def z_lower(a: tuple[float, int], b: tuple[float, int]) -> float:  # z of "b's rate is below a's"
        (pa, na), (pb, nb) = a, b
        pool = (pa * na + pb * nb) / (na + nb)
        se = (pool * (1 - pool) * (1 / na + 1 / nb)) ** 0.5
        return 0.0 if se == 0 else (pa - pb) / se

    (a_ref, s_ref), (a_row, s_row) = acc(ref), acc(row)
    if a_ref is None or a_row is None:
        return False, "no utility figure"
    if a_row < a_ref - max(s_ref, s_row):
        return False, f"lower utility ({100 * a_row:.1f} % vs {100 * a_ref:.1f} %)"
    better, worse = [], []
    for figure, field, label in (("verification", "match_rate", "verifier match rate"),
                                 ("ground_truth", "leak_fraction", "ground-truth leakage")):  # fmt: skip
        a, b = rate(ref, figure, field), rate(row, figure, field)
        if a[0] is None or b[0] is None or not (a[1] and b[1]):
            continue
        z = z_lower(a, b)
        text = f"{label} {b[0]:.3f} vs {a[0]:.3f} (z {z:.1f}, {b[1]} vs {a[1]} paths)"
        if z >= Z_FAMILY:
            better.append(text)
        elif z <= -Z_FAMILY:
            worse.append(text)
    mi_ref = ref["metrics"].get("leakage", {}).get("mi", {}).get("soft", {})
    mi_row = row["metrics"].get("leakage", {}).get("mi", {}).get("soft", {})
    # the interval is around the bias-corrected estimate; a record from before it was kept: the plug-in
    field = "mi_corrected" if "mi_corrected" in mi_ref and "mi_corrected" in mi_row else "mi"
    if None not in (mi_ref.get(field), mi_row.get(field)) and mi_ref.get("ci95") and mi_row.get("ci95"):
        se = sum(((hi - lo) / 3.92) ** 2 for lo, hi in (mi_ref["ci95"], mi_row["ci95"])) ** 0.5
        z = 0.0 if se == 0 else (mi_ref[field] - mi_row[field]) / se
        label = "leakage MI, bias-corrected" if field == "mi_corrected" else "leakage MI"
        text = f"{label} {mi_row[field]:.4f} vs {mi_ref[field]:.4f} (z {z:.1f})"
        if z >= Z_FAMILY:
            better.append(text)
        elif z <= -Z_FAMILY:
            worse.append(text)
    if worse:
        return False, "worse on " + "; ".join(worse)
    if better:
        return True, "better on " + "; ".join(better)
    return False, "no privacy figure differs beyond its noise"


def recommendation(results: dict[str, Any]) -> str:
    """The table's recommendation, from :func:`dominance` of every PLAN row against KL-uniform."""
    ref = results.get("kl_uniform")
    if ref is None:
        return ""
    verdicts = {k: dominance(ref, r) for k, r in results.items() if k not in ("linear", "kl_uniform")}
    lines = [f"{_name(k, results[k])}: {'dominates' if ok else 'does not dominate'} ({why})"
             for k, (ok, why) in verdicts.items()]  # fmt: skip
    winners = [_name(k, results[k]) for k, (ok, _) in verdicts.items() if ok]
    head = (
        "**Recommendation** (scripted: a row dominates KL-uniform when its TSTR accuracy is within the larger seed "
        "std of KL-uniform's, no privacy figure is worse and one is better, each tested at |z| >= 2.39 (5 % over "
        "three figures, Bonferroni) — verifier match rate and ground-truth leakage by a two-proportion z-test with "
        "one observation per path (conservative: a path's images share its endpoints), leakage MI by the "
        "bias-corrected difference over the standard error read off both CIs): "
    )
    if winners:
        return head + f"use {' or '.join(winners)} over KL-uniform on this benchmark. " + "; ".join(lines) + "."
    return (head + "no row dominates KL-uniform on this benchmark, so KL-uniform, PLAN's reference, stays the "
            "default. " + "; ".join(lines) + ".")  # fmt: skip


def _seconds_per_image(r: dict[str, Any]) -> str:
    """Generate's time per image: this run's call, or for a reused set the time its own run recorded (``run.json``
    ``execution.seconds``); marked ``*`` when the set's generate resumed items of an earlier, stopped process (this
    run's or the recorded one), whose time neither holds."""
    seconds = r.get("set_seconds") if r.get("reused") else r.get("generate_seconds")
    mark = "*" if r.get("set_resumed") else ""
    return "–" if seconds is None else f"{seconds / max(r['images'], 1):.2f}{mark}"


def _f(x: Any, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _table(
    args: Any,
    results: dict,
    weights: dict,
    norms: dict,
    calib_s: float,
    wall: float,
    kind: str,
    note: str = "",
    *,
    calibration: dict,
) -> str:
    """The markdown section; ``calibration``: ``{"paths": sampled endpoint pairs, "batch": paths walked together
    (``None``: all at once, as before the calibration followed generate's paths_per_item)}``."""
    if calibration.get("batch") is None:
        walked = "walked together as one batch; generate walks 8 per work item"
    else:
        walked = (f"walked in batches of {calibration['batch']} as generate walks a work item's paths, the norm "
                  "averaged over the batches")  # fmt: skip
    header = ["row", "privacy weight", "images", "TSTR accuracy %", "verifier match rate: set / unseen",
              "GT leakage: set / unseen", "leakage MI (normalised): plug-in / bias-corrected [95 % CI]",
              "MI null 95th pct. / p",
              "HSIC / p", "generate s / image"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---"] * len(header)) + " |"]
    for key, r in results.items():
        m = r["metrics"]
        u = m["utility"]
        acc, sd = u["mean"].get("synthetic", {}).get("accuracy"), u["std"].get("synthetic", {}).get("accuracy")
        v, g, lk = m.get("verification", {}), m.get("ground_truth", {}), m.get("leakage", {})
        mi, hs = lk.get("mi", {}).get("soft", {}), lk.get("hsic", {})
        ci = mi.get("ci95") or [None, None]
        cells = [
            _name(key, r),
            "–" if r["weights"] is None else f"{r['weights'][0]:.3g}",
            str(r["images"]),
            "–" if acc is None else f"{100 * acc:.1f} ± {100 * (sd or 0):.1f}",
            f"{_f(v.get('synthetic', {}).get('match_rate'))} / {_f(v.get('heldout', {}).get('match_rate'))}",
            f"{_f(g.get('synthetic', {}).get('leak_fraction'))} / {_f(g.get('heldout', {}).get('heldout_fraction'))}",
            f"{_f(mi.get('mi'), 4)} / {_f(mi.get('mi_corrected'), 4)} [{_f(ci[0], 4)}, {_f(ci[1], 4)}]",
            f"{_f(mi.get('null_p95'), 4)} / {_f(mi.get('p_value'))}",
            f"{_f(hs.get('hsic'), 4)} / {_f(hs.get('p_value'))}",
            _seconds_per_image(r),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    adversarial = ""
    for key, r in results.items():
        rec = r.get("adversarial")
        if rec:
            per = "; ".join(
                f"round {x['round']}: {_f(x['accuracy_before'])} before, {_f(x['accuracy_after'])} after "
                f"({x['images']['synthetic_held_out']} held-out images)"
                for x in rec["per_round"]
            )
            adversarial += (
                f" {_name(key, r)}: before the final walk, each round walked candidates "
                f"against the current attacker and fine-tuned a copy of it ({rec['epochs']} epochs) on the real "
                "training images plus the candidates of 80 % of the paths, labelled with the patients behind them; "
                "the final walk steers against the last attacker (the gates keep the guides). The attacker's "
                "accuracy at naming the patient behind the held-out 20 % of candidates (chance "
                f"{_f(rec['chance_accuracy'])}): {per}."
            )
    first = (results.get("linear") or next(iter(results.values())))["metrics"]
    real = first["utility"]["mean"].get("real", {}).get("accuracy")
    return (
        f"## Privacy losses of the walk ({args.benchmark.upper()}): phantom {kind} (default size), generator "
        f"`demo:{kind}`\n\n"
        + note
        + (f"Wall time {wall / 60:.1f} min (privacy-weight calibration {calib_s:.0f}s). " if wall else "")
        + "Same dataset, guides, latents "
        f"and sizes as the paper table (method `plan`, {(QUICK if args.quick else FULL)['optim_steps']} Adam steps, "
        "gates off); only the privacy term changes. Privacy weight: set so that the term's gradient norm at the "
        f"linear paths of a fixed sample of {calibration['paths']} endpoint pairs ({walked}) equals KL-uniform's at "
        "0.1 (gradient norms "
        + ", ".join(f"{k} {v:.3g}" for k, v in norms.items())
        + "). The walk's targets for MI, verification and HSIC: the identity guide's softmax at each endpoint. "
        f"Real-trained TSTR accuracy: {_f(None if real is None else 100 * real, 1)} %. Verifier and GT leakage as in "
        "the paper table (independent attacker; anatomy regressor). Leakage MI: plug-in mutual information between "
        "the verifier's predicted patient (softmax over its scores) and the patients behind each image (the private "
        "sidecar: for `plan`/`linear`, the training patient the identity guide rates most likely at each endpoint, "
        "weighted by the path position), normalised by log K: the plug-in, biased upwards when few images fall "
        "in each patient pair, and the bootstrap bias-corrected estimate (the plug-in less the bias its resamples "
        "show) with its basic-bootstrap 95 % CI over paths; a permutation null "
        "(95th percentile, p-value); HSIC with its permutation p-value. Time per image on a shared 2-core CPU (a "
        "set reused from an earlier run: that run's time from its run.json; * a set whose generate resumed items of "
        "an earlier, stopped process: the time of its last part only)."
        + adversarial
        + "\n\n"
        + "\n".join(lines)
        + "\n\n"
        + recommendation(results)
    )


if __name__ == "__main__":
    main()
