"""The evaluation report: ``metrics.json``, ``report.md`` and a self-contained ``report.html`` (images embedded).

Both documents are built from one list of blocks (headings, paragraphs, tables, images), so they always say the same.
The report shows real images next to their nearest synthetic ones: keep it as private as the real data.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import torch

from latentwalk.io import atomic_write_bytes, atomic_write_text, write_json

__all__ = ["DEFINITIONS", "write_report"]

DEFINITIONS = {
    "mmL": "mean over synthetic images of the distance to the nearest real training image (PLAN's mmL in LPIPS "
    "space); higher = fewer near-copies",
    "collisions": "synthetic images whose nearest real training image is closer than the collision threshold (a low "
    "percentile, 5th by default, of real-to-nearest-other-patient distances)",
    "DCR": "distance to closest record: synthetic-to-training vs held-out-to-training distances; p_closer = "
    "P(d_syn < d_holdout), 0.5 = synthetic images are no closer to the training patients than unseen patients are",
    "NNDR": "nearest-neighbour distance ratio d1/d2 to the two nearest training images; near 0 = next to one image",
    "identifiability": "share of training images whose nearest synthetic image is closer than their nearest other "
    "patient (Yoon et al., ADS-GAN); lower is better",
    "authenticity": "share of synthetic images farther from their nearest real image than that image is from its "
    "nearest other patient (Alaa et al. 2022); higher is better",
    "C_T": "data-copying statistic (Meehan et al. 2020): Z-scored Mann-Whitney test of nearest-training distances, "
    "synthetic vs held-out, per cell of the training data; << 0 (below -3) = copying, ~0 = fine",
    "MIA (generator)": "membership inference through the synthetic set: a query closer to a synthetic image is "
    "called a member; AUC and best-threshold accuracy, 0.5 = ideal",
    "MIA (classifier)": "loss attack on a classifier: lower loss = member (training images) vs non-member (held-out "
    "images); AUC and accuracy, 0.5 = ideal",
    "MIA (memorising)": "the downstream classifier trained to convergence without augmentation (as a typical "
    "user's model) on R or on S; loss attack, and a calibrated attack (offline LiRA, Carlini et al. 2022) whose "
    "shadow models, trained on random halves of R and H, give each image the confidence of a model that did not "
    "see it; AUC, 0.5 = ideal",
    "re-identification": "an identity model trained independently of the guides; match rate = share of synthetic "
    "images it assigns to a training patient as confidently as it re-identifies real held-out images",
    "verifier": "an independent patient-verification attacker (a Siamese network after Packhäuser et al. 2022, its "
    "own architecture and seed, never seen by the walk or the gate); match rate = share of synthetic images whose "
    "best score against the training patients reaches its equal-error threshold, calibrated on real images of "
    "training patients it did not train on; compare with the held-out real patients' rate (people not in the data)",
    "leakage (MI, HSIC)": "with the generate run's private sidecar (--private): the dependence between the real "
    "patients behind each synthetic image and the verifier's reading of it; mutual information of the joint QᵀP/N "
    "normalised by log K (0 = independent, 1 = the attacker names the patient behind every image), soft (its softmax "
    "over patients) and hard (its top patient), against a permutation null (images' patients shuffled; p-value) with "
    "a bootstrap 95 % interval; unbiased HSIC (Song et al. 2012) between its embedding and the patients, with its own "
    "permutation p-value",
    "ground-truth leakage": "phantoms only: a regressor from image to the patient's recorded anatomy "
    "(ground_truth.json), calibrated on real images of training patients it did not train on; share of synthetic "
    "images whose predicted anatomy lies as close to a training patient's true anatomy as another image of that "
    "patient does (95 % of them); compare with the held-out real patients' share (chance)",
    "FID / KID": "Frechet / kernel distance between feature statistics of real training and synthetic images, "
    "labelled with the feature extractor; lower = closer distributions",
    "precision / recall / density / coverage": "k-NN manifold metrics (Naeem et al. 2020): fidelity (precision, "
    "density) and diversity (recall, coverage) of the synthetic features",
    "TSTR": "train on synthetic, test on real: the same classifier recipe trained on the real training split or on "
    "the synthetic set, tested on held-out real patients; mean ± std over seeds",
}


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e-3 or abs(x) >= 1e4 else f"{x:.{digits}f}"
    return str(x)


def _grid_png(images: torch.Tensor, nrow: int) -> bytes:
    from PIL import Image
    from torchvision.utils import make_grid

    grid = make_grid(images.float().clamp(-1, 1), nrow=nrow, padding=2, pad_value=1.0)
    arr = ((grid + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if images.shape[1] == 1 else arr).save(buf, format="PNG")
    return buf.getvalue()


def _hist_png(metrics: dict[str, Any], space: str, d_syn: Any, d_hold: Any) -> bytes:
    from latentwalk.plots import figure_png, pyplot

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=130)
    ax.hist(list(d_hold), bins=30, alpha=0.6, density=True, label="held-out real -> training")
    ax.hist(list(d_syn), bins=30, alpha=0.6, density=True, label="synthetic -> training")
    thr = metrics["privacy"][space]["threshold"]
    ax.axvline(thr, color="crimson", ls="--", lw=1, label=f"collision threshold {thr:.3g}")
    ax.set_xlabel(f"distance to the nearest training image ({space})")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    ax.set_title("Distance to closest record", fontsize=9)
    return figure_png(fig)


def _path_png(rows: list[dict[str, str]]) -> bytes | None:
    """Mean nearest-real distance per path step, when the manifest has paths."""
    from latentwalk.plots import figure_png, pyplot

    plt = pyplot()

    by_step: dict[int, list[float]] = {}
    for r in rows:
        try:
            by_step.setdefault(int(r["step"]), []).append(float(r["nearest_real_distance"]))
        except (KeyError, ValueError, TypeError):
            return None
    if len(by_step) < 2:
        return None
    steps = sorted(by_step)
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=130)
    ax.plot(steps, [sum(by_step[s]) / len(by_step[s]) for s in steps], "o-", ms=3, label="mean")
    ax.plot(steps, [min(by_step[s]) for s in steps], "o--", ms=3, label="min")
    ax.set_xlabel("step along the path")
    ax.set_ylabel("nearest-real distance (gate space)")
    ax.set_title("Written images: distance to the nearest real image by path step", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return figure_png(fig)


def _primary(metrics: dict[str, Any]) -> str | None:
    for space in ("lpips", "identity", "pixels", "ssim"):
        if space in metrics.get("privacy", {}):
            return space
    return None


def _summary_rows(m: dict[str, Any]) -> list[list[str]]:
    rows = []
    for space, p in m.get("privacy", {}).items():
        if space == "ssim":
            rows.append([f"{space}: mmL (1 - SSIM)", _fmt(p["mml"]), f"collisions {p['collisions']}"])
            continue
        ct = p.get("data_copying", {})
        rows += [
            [f"{space}: mmL", _fmt(p["mml"]["mml"]), f"min {_fmt(p['mml']['min'])}"],
            [f"{space}: collisions", f"{p['collisions']['count']} of {p['collisions']['n_syn']}",
             f"threshold {_fmt(p['threshold'])}"],
            [f"{space}: DCR p_closer", _fmt(p["dcr"]["p_closer"]),
             f"median syn {_fmt(p['dcr']['syn_median'])} vs held-out {_fmt(p['dcr']['holdout_median'])}"],
            [f"{space}: identifiability", _fmt(p["identifiability"]), "lower is better"],
            [f"{space}: authenticity", _fmt(p["authenticity"]["authentic_fraction"]), "higher is better"],
            [f"{space}: MIA via synthetic set, AUC", _fmt(p["mia_generator"]["auc"]),
             f"accuracy {_fmt(p['mia_generator']['accuracy'])}"],
        ]  # fmt: skip
        if "c_t" in ct:
            rows.append([f"{space}: C_T", _fmt(ct["c_t"]), f"{ct['n_cells_used']} cell(s)"])
    for name, v in m.get("membership_inference", {}).items():
        rows.append([f"MIA on the {name.replace('_', ' ')}, AUC", _fmt(v["auc"]), f"accuracy {_fmt(v['accuracy'])}"])
    for name, v in m.get("membership_inference_memorising", {}).items():
        if isinstance(v, dict) and "loss" in v:
            cal = v.get("calibrated", {})
            rows.append([f"MIA, memorising {name.replace('_', ' ')}: loss / calibrated AUC",
                         f"{_fmt(v['loss']['auc'])} / {_fmt(cal.get('auc'))}",
                         f"accuracy {_fmt(v['loss']['accuracy'])} / {_fmt(cal.get('accuracy'))}"])  # fmt: skip
    r = m.get("reidentification", {})
    if "syn_match_rate" in r:
        rows.append(["re-identification match rate", _fmt(r["syn_match_rate"]),
                     f"held-out real top-1 accuracy {_fmt(r['heldout_top1_accuracy'])}, chance "
                     f"{_fmt(r['chance_confidence'])}"])  # fmt: skip
    v = m.get("verification", {})
    if "synthetic" in v:
        a = v["attacker"]
        rows.append(["verifier match rate (independent attacker)", _fmt(v["synthetic"]["match_rate"]),
                     f"held-out real patients {_fmt(v['heldout']['match_rate'])}; attacker: membership AUC "
                     f"{_fmt(a['membership_auc'])}, precision@1 {_fmt(a['precision_at_1'])}"])  # fmt: skip
        rows.append(["verifier best score, mean / max", f"{_fmt(v['synthetic']['mean_best_score'])} / "
                     f"{_fmt(v['synthetic']['max_best_score'])}", f"threshold (EER {_fmt(a['eer'])}) "
                     f"{_fmt(a['threshold'])}"])  # fmt: skip
    lk = m.get("leakage", {}).get("mi", {}).get("soft")
    if lk:
        rows.append(["leakage: MI of the patients behind and the verifier's reading", _fmt(lk["mi"]),
                     f"permutation null 95th percentile {_fmt(lk['null_p95'])}, p {_fmt(lk['p_value'])}"])  # fmt: skip
    g = m.get("ground_truth", {})
    if "synthetic" in g:
        cal, floor = g["calibration"], g.get("heldout", {}).get("heldout_fraction")
        rows.append(["ground-truth leakage (anatomy of a training patient)", _fmt(g["synthetic"]["leak_fraction"]),
                     f"held-out real patients {_fmt(floor)}; probe precision@1 {_fmt(cal['precision_at_1'])}, "
                     f"R² {_fmt(cal['r2'])}"])  # fmt: skip
    for key, f in m.get("fidelity", {}).items():
        kid = f"KID {_fmt(f['kid']['mean'])} ± {_fmt(f['kid']['std'])}"
        rows.append([f"FID ({f['extractor']})", _fmt(f["fid"]), kid])
        pr = f["prdc"]
        rows.append([f"precision / recall ({key})", f"{_fmt(pr['precision'])} / {_fmt(pr['recall'])}",
                     f"density {_fmt(pr['density'])}, coverage {_fmt(pr['coverage'])}"])  # fmt: skip
    return rows


def _utility_rows(m: dict[str, Any]) -> list[list[str]]:
    u = m.get("utility", {})
    mean, std = u.get("mean", {}), u.get("std", {})
    rows = []
    for source in ("real", "synthetic"):
        if source not in mean:
            continue
        cells = [f"{_fmt(mean[source].get(k))} ± {_fmt(std[source].get(k))}" for k in METRIC_KEYS]
        rows.append([f"trained on {source}"] + cells)
    return rows


METRIC_KEYS = ("accuracy", "balanced_accuracy", "auc", "f1", "qwk")


def _leakage_blocks(lk: dict[str, Any]) -> list[tuple]:
    """The leakage section: MI (soft, hard) and HSIC against their permutation nulls; or why it was skipped."""
    title = ("h2", "Leakage of the patients behind the images (private sidecar)")
    if "skipped" in lk:
        return [title, ("p", f"Not estimated: {lk['skipped']}.")]
    text = (
        f"{lk['images']} synthetic images with a training patient behind them ({lk['source']}; "
        f"{lk['images_without_known_patient']} without one left out), {lk['patients']} training patients; "
        f"{lk['permutations']} permutations, {lk['bootstrap']} bootstrap resamples, seed {lk['seed']}. The plug-in "
        "MI is biased upwards when few images fall in each patient pair; the bias-corrected value subtracts the bias "
        "its bootstrap resamples show, and the 95 % interval (basic bootstrap over paths) is around it."
    )
    rows = []
    for name in ("soft", "hard"):
        f = lk["mi"][name]
        ci = f"{_fmt(f['ci95'][0])} - {_fmt(f['ci95'][1])}"
        rows.append([f"mutual information, {name} (normalised)", _fmt(f["mi"]), _fmt(f.get("mi_corrected")),
                     _fmt(f["null_mean"]), _fmt(f["null_p95"]), _fmt(f["p_value"]), ci])  # fmt: skip
    h = lk["hsic"]
    if "hsic" in h:
        note = f"n/a (normalised {_fmt(h['normalised'])})"
        rows.append(["HSIC (unbiased), embedding vs patients", _fmt(h["hsic"], 4), "n/a (unbiased)",
                     _fmt(h["null_mean"], 4), _fmt(h["null_p95"], 4), _fmt(h["p_value"]), note])  # fmt: skip
    head = ["measure", "value", "bias-corrected", "null mean", "null 95th pct", "p-value", "95 % interval"]
    return [title, ("p", text), ("table", head, rows)]


def _blocks(metrics: dict[str, Any], images: dict[str, bytes]) -> list[tuple]:
    c = metrics["counts"]
    blocks: list[tuple] = [
        ("h1", "Evaluation of a synthetic dataset"),
        (
            "p",
            f"{c['synthetic']} synthetic images against {c['train']} real training images of {c['train_patients']} "
            f"patients (members) and {c['holdout']} held-out real images ({c['holdout_split']} split, non-members). "
            f"Computed in {metrics['seconds']:.0f} s. This report shows real images: keep it as private as the "
            "data.",
        ),  # fmt: skip
        ("h2", "Summary"),
        ("table", ["measure", "value", "detail"], _summary_rows(metrics)),
        ("h2", "Utility: train on synthetic, test on real"),
        ("table", ["classifier", *METRIC_KEYS], _utility_rows(metrics)),
    ]
    if "leakage" in metrics:
        blocks += _leakage_blocks(metrics["leakage"])
    if "pairs" in images:
        blocks += [("h2", "Closest synthetic images (left) and their nearest real training image (right)"),
                   ("img", "nearest_pairs.png", "closest pairs")]  # fmt: skip
    if "hist" in images:
        blocks += [("h2", "Distance to closest record"), ("img", "dcr_hist.png", "DCR histogram")]
    if "path" in images:
        blocks += [("h2", "Distance along the paths"), ("img", "path_distance.png", "distance by path step")]
    if "walk" in images:
        blocks += [("h2", "Linear vs PLAN walk (same endpoints)"), ("img", "walk_distance.png", "walk distances")]
    if "grid" in images:
        blocks += [("h2", "Synthetic images"), ("img", "synthetic_grid.png", "synthetic images")]
    if metrics.get("notes"):
        blocks += [("h2", "Notes"), ("list", metrics["notes"])]
    blocks += [("h2", "Definitions"), ("list", [f"**{k}**: {v}" for k, v in DEFINITIONS.items()])]
    return blocks


def _md(blocks: list[tuple]) -> str:
    out: list[str] = []
    for b in blocks:
        if b[0] == "h1":
            out += [f"# {b[1]}", ""]
        elif b[0] == "h2":
            out += [f"## {b[1]}", ""]
        elif b[0] == "p":
            out += [b[1], ""]
        elif b[0] == "table":
            out += ["| " + " | ".join(b[1]) + " |", "|" + "---|" * len(b[1])]
            out += ["| " + " | ".join(row) + " |" for row in b[2]] + [""]
        elif b[0] == "img":
            out += [f"![{b[2]}]({b[1]})", ""]
        elif b[0] == "list":
            out += [f"- {item}" for item in b[1]] + [""]
    return "\n".join(out)


def _html(blocks: list[tuple], images: dict[str, bytes], names: dict[str, str]) -> str:
    def inline(text: str) -> str:
        parts = html.escape(text).split("**")
        return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))

    by_file = {names[k]: v for k, v in images.items()}
    body: list[str] = []
    for b in blocks:
        if b[0] in ("h1", "h2"):
            body.append(f"<{b[0]}>{inline(b[1])}</{b[0]}>")
        elif b[0] == "p":
            body.append(f"<p>{inline(b[1])}</p>")
        elif b[0] == "table":
            head = "".join(f"<th>{inline(h)}</th>" for h in b[1])
            rows = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in b[2])
            body.append(f"<table><tr>{head}</tr>{rows}</table>")
        elif b[0] == "img":
            data = base64.b64encode(by_file[b[1]]).decode("ascii")
            body.append(f'<p><img alt="{html.escape(b[2])}" src="data:image/png;base64,{data}"></p>')
        elif b[0] == "list":
            body.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in b[1]) + "</ul>")
    style = (
        "body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}"
        "th{background:#f3f3f3}img{max-width:100%}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>latentwalk evaluation</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(
    out: Path,
    metrics: dict[str, Any],
    data: Any,
    pairs: dict[str, list],
    distances: dict[str, tuple[list[float], list[float]]],
    *,
    walk_dir: Path | None = None,
) -> None:
    """Write ``metrics.json``, the pictures, ``report.md`` and ``report.html`` into ``out``.

    Args:
        out: report folder.
        metrics: everything measured (written as ``metrics.json``).
        data: the loaded images (``syn``, ``train``, ``rows`` of the manifest).
        pairs: per space, the closest ``(synthetic index, training index, distance)`` pairs.
        distances: per space, the nearest-training distances of the synthetic and of the held-out images.
        walk_dir: output of ``latentwalk walk`` whose distance plot joins the report.
    """
    names = {"pairs": "nearest_pairs.png", "hist": "dcr_hist.png", "path": "path_distance.png",
             "walk": "walk_distance.png", "grid": "synthetic_grid.png"}  # fmt: skip
    images: dict[str, bytes] = {}
    space = _primary(metrics)
    if space is not None and pairs.get(space):
        shown = [(s, r) for s, r, _ in pairs[space]]
        tiles = torch.stack([t for s, r in shown for t in (data.syn[s], data.train[r])])
        images["pairs"] = _grid_png(tiles, nrow=2)
    if space is not None and space in distances:
        images["hist"] = _hist_png(metrics, space, *distances[space])
    path_png = _path_png(data.rows)
    if path_png is not None:
        images["path"] = path_png
    if walk_dir is not None and (Path(walk_dir) / "walk_distance.png").is_file():
        images["walk"] = (Path(walk_dir) / "walk_distance.png").read_bytes()
    step = max(1, len(data.syn) // 32)
    images["grid"] = _grid_png(data.syn[::step][:32], nrow=8)
    for key, blob in images.items():
        atomic_write_bytes(out / names[key], blob)
    blocks = _blocks(metrics, images)
    write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "report.md", _md(blocks))
    atomic_write_text(out / "report.html", _html(blocks, images, names))
