"""The utility ladder: where between the real images and the written dataset does a classifier stop learning the
disease?

    python benchmarks/bench_utility.py --benchmark tb     # writes the RESULTS.md section utility-ladder-tb
    python benchmarks/bench_utility.py --benchmark dr     # utility-ladder-dr
    python benchmarks/bench_utility.py --benchmark tb --quick   # minutes; prints only

One dataset (the phantom default of that kind), one generator (``demo:<kind>`` or ``--gan``), guides and the
inverted training latents are made once; then one image set per stage of the chain, each with the same number of
images per label, and for each the same TSTR recipe (``latentwalk.evaluate.utility``: compact CNN, fixed epochs,
several seeds, tested on the real test split of unseen patients). No row is tuned on its own.

Rows: (a) the real training images; (b) G's reconstructions of them (inverted latents, real labels); (c) random
samples of G labelled by the class guide's argmax (by their conditioning, for a conditional G); (c1) straight lines
and (c2) PLAN paths between two such samples of one label (what ``generate --method linear|plan`` walks); (d)
straight lines between inverted latents of two training patients of one label (interior points); (e) PLAN paths
between the same endpoints; (f) the k-same centroids (k = 5, each rendered once); (g) straight lines and (h) PLAN
paths between two k-same centroids of one label; (f') and (g') the same with the centroids' spread restored
(``KSameConfig(spread="restore")``).

Per row also: how often the class guide agrees with the assigned label, diversity (mean pairwise pixel distance of
the set relative to the real training images'), PRDC recall and coverage and FID on the class guide's embedding
(the domain embedding; FID at this n is biased upward: compare rows, not papers).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from latentwalk.errors import ConfigError

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from record import summary, write_section  # noqa: E402

from latentwalk.distances import mean_pairwise_distance  # noqa: E402

KINDS = {"tb": "cxr", "dr": "fundus"}
FULL = dict(guide_epochs=30, invert_steps=50, per_label=100, optim_steps=100, n_steps=10, eval_epochs=15,
            seeds=(0, 1, 2))  # fmt: skip
QUICK = dict(guide_epochs=1, invert_steps=2, per_label=6, optim_steps=2, n_steps=4, eval_epochs=1, seeds=(0, 1))


def _take(images: torch.Tensor, labels: torch.Tensor, per_label: int, n_labels: int, seed: int = 0):
    """At most ``per_label`` images of each label, drawn without replacement (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    keep = []
    for c in range(n_labels):
        rows = (labels == c).nonzero().flatten()
        keep.append(rows[torch.randperm(len(rows), generator=gen)[:per_label]])
    keep = torch.cat(keep)
    return images[keep], labels[keep]


def _pairs(groups: dict[int, list[int]], per_label: int, n_interior: int, seed: int) -> list[tuple[int, int, int]]:
    """(a, b, label) pairs of distinct members of one label, enough for ``per_label`` interior points each."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    need = -(-per_label // n_interior)
    for label, rows in sorted(groups.items()):
        if len(rows) < 2:
            continue
        for _ in range(need):
            i, j = torch.randperm(len(rows), generator=gen)[:2].tolist()
            out.append((rows[i], rows[j], label))
    return out


class Ladder:
    """Everything the rows share: data, generator, guides, latents, the TSTR recipe."""

    def __init__(self, kind: str, spec: str | None, sizes: dict, work: Path, progress: bool, echo) -> None:
        import gan_zoo
        from gan_zoo.invert import InvertConfig
        from latentwalk.data import load_tensors
        from latentwalk.data.phantoms import PhantomConfig, write_phantom_dataset
        from latentwalk.guides import GuideConfig, load_guides, train_guides
        from latentwalk.invert import invert_dataset, load_latents

        self.sizes, self.echo, self.times = sizes, echo, {}
        t = time.perf_counter()
        index = write_phantom_dataset(PhantomConfig(kind=kind), work / "data")
        self.G = gan_zoo.load(spec or f"demo:{kind}")
        res, ch = self.G.img_resolution, self.G.img_channels
        self.label_names = index.label_names
        self.n_labels = len(index.label_names)
        train, test = index.subset("train"), index.subset("test")
        self.train_x, self.train_y = load_tensors(train, res, channels=ch)
        self.test_x, self.test_y = load_tensors(test, res, channels=ch)
        self.times["data"] = time.perf_counter() - t
        t = time.perf_counter()
        train_guides(index, work / "guides", GuideConfig(epochs=sizes["guide_epochs"], seed=0), resolution=res,
                     channels=ch, progress=progress)  # fmt: skip
        self.guides = load_guides(work / "guides")
        self.times["guides"] = time.perf_counter() - t
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            invert_dataset(self.G, train, work / "lat.safetensors",
                           InvertConfig(space=sizes.get("space", "w"), steps=sizes["invert_steps"], batch=64, seed=0),
                           progress=progress)  # fmt: skip
        ids, ws, meta = load_latents(work / "lat.safetensors")
        self.ws = ws
        self.ws_labels = torch.tensor([int(meta["items"][i]["label"]) for i in ids])
        self.ws_patients = [str(meta["items"][i]["identity"]) for i in ids]
        self.times["inversion"] = time.perf_counter() - t
        with torch.no_grad():
            self.real_feats = self._embed(self.train_x)
        self.real_div = mean_pairwise_distance(self.train_x)

    # -- measurements

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.guides.classifier.embed(p) for p in x.split(256)]).double()

    def guide_labels(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([self.guides.classifier(p).argmax(1) for p in x.split(256)])

    def score(self, name: str, x: torch.Tensor, y: torch.Tensor, seconds: float) -> dict:
        from latentwalk.evaluate import fidelity, utility

        cfg = utility.UtilityConfig(epochs=self.sizes["eval_epochs"], seeds=tuple(self.sizes["seeds"]))
        res = utility.tstr(None, (x, y), (self.test_x, self.test_y), self.n_labels, cfg)
        with torch.no_grad():
            feats = self._embed(x)
        row = {
            "row": name,
            "images": len(x),
            "acc": res.mean["synthetic"]["accuracy"],
            "acc_std": res.std["synthetic"]["accuracy"],
            "bacc": res.mean["synthetic"]["balanced_accuracy"],
            "bacc_std": res.std["synthetic"]["balanced_accuracy"],
            "agree": float((self.guide_labels(x) == y).double().mean()),
            "diversity": mean_pairwise_distance(x) / self.real_div,
            "seconds": seconds,
        }
        if len(x) > 5:
            p = fidelity.prdc(self.real_feats, feats, k=5)
            row.update(recall=p["recall"], coverage=p["coverage"])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row["fid"] = fidelity.frechet_distance(self.real_feats, feats)
        self.echo(_format(row))
        return row

    # -- image sets

    def render(self, ws: torch.Tensor) -> torch.Tensor:
        """Images of latents ``[N, w_dim]`` (W) or ``[N, num_ws, w_dim]`` (W+)."""
        from latentwalk.paths import render_paths

        with torch.no_grad():
            return render_paths(self.G, ws[:, None]).flatten(0, 1)

    def samples(self, per_label: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Random samples of G, ``per_label`` of each label: labelled by the conditioning for a conditional G, else
        by the class guide's argmax (a label the guide rarely gives may stay short)."""
        from latentwalk.endpoints import sample_w

        gen = torch.Generator().manual_seed(seed)
        if int(getattr(self.G, "c_dim", 0)) > 0:
            with torch.no_grad():
                xs = [self.render(sample_w(self.G, per_label, generator=gen, label=c)) for c in range(self.n_labels)]
            ys = [torch.full((per_label,), c) for c in range(self.n_labels)]
            return torch.cat(xs), torch.cat(ys)
        xs, ys = [], []
        counts = torch.zeros(self.n_labels, dtype=torch.long)
        for _ in range(max(8, 4 * per_label * self.n_labels // 64)):  # a label the guide rarely gives stays short
            if bool((counts >= per_label).all()):
                break
            with torch.no_grad():
                x = self.render(sample_w(self.G, 64, generator=gen))
            y = self.guide_labels(x)
            for c in range(self.n_labels):
                rows = (y == c).nonzero().flatten()[: max(0, per_label - int(counts[c]))]
                xs.append(x[rows])
                ys.append(y[rows])
                counts[c] += len(rows)
        return torch.cat(xs), torch.cat(ys)

    def sampled_endpoints(self, per_label: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``per_label`` pairs of random W points of each label, drawn as ``generate`` draws them: with the label as
        conditioning (conditional G), else kept when the class guide gives that label."""
        from latentwalk.endpoints import sample_w

        gen = torch.Generator().manual_seed(seed)
        conditional = int(getattr(self.G, "c_dim", 0)) > 0
        a, b, labels = [], [], []
        for c in range(self.n_labels):
            net = None if conditional else self.guides.classifier
            try:
                w = sample_w(self.G, 2 * per_label, generator=gen, label=c, class_net=net, batch=64,
                             max_draws=1000 * 2 * per_label)  # fmt: skip
            except ConfigError:  # a toy guide (--quick) that never gives this label: draw freely
                w = sample_w(self.G, 2 * per_label, generator=gen, label=c if conditional else None, batch=64)
            a.append(w[0::2])
            b.append(w[1::2])
            labels.append(torch.full((per_label,), c))
        return torch.cat(a), torch.cat(b), torch.cat(labels)

    def paths(self, w_a: torch.Tensor, w_b: torch.Tensor, labels: torch.Tensor, plan: bool) -> torch.Tensor:
        from latentwalk.paths import PlanConfig, linear_paths, plan_paths

        n = self.sizes["n_steps"]
        if plan:
            cfg = PlanConfig(n_steps=n, optim_steps=self.sizes["optim_steps"])
            ws = plan_paths(self.G, w_a, w_b, labels, self.guides.identity, self.guides.classifier, cfg).ws
        else:
            ws = linear_paths(w_a, w_b, n)
        from latentwalk.paths import render_paths

        with torch.no_grad():
            images = render_paths(self.G, ws.detach())[:, 1:-1]  # interior points: [B, n - 2, C, R, R]
        return images.flatten(0, 1), labels.repeat_interleave(n - 2)


def _format(row: dict) -> str:
    def pm(m, s):
        return "–" if m is None else (f"{100 * m:.1f} ± {100 * s:.1f}" if s is not None else f"{100 * m:.1f}")

    cells = [row["row"], str(row["images"]), pm(row["acc"], row["acc_std"]), pm(row["bacc"], row["bacc_std"]),
             f"{row['agree']:.2f}", f"{row['diversity']:.2f}",
             f"{row['recall']:.2f}" if "recall" in row else "–", f"{row['coverage']:.2f}" if "coverage" in row else "–",
             f"{row['fid']:.1f}" if "fid" in row else "–", f"{row['seconds']:.0f}"]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def run(ladder: Ladder, per_label: int, seed: int = 0) -> list[dict]:
    from latentwalk.ksame import KSameConfig, group_latents

    L = ladder
    rows = []
    t = time.perf_counter()
    rows.append(L.score("(a) real training images", *_take(L.train_x, L.train_y, per_label, L.n_labels), 0.0))

    t = time.perf_counter()
    recon = L.render(L.ws)
    rows.append(L.score("(b) G's reconstructions of them", *_take(recon, L.ws_labels, per_label, L.n_labels),
                        time.perf_counter() - t))  # fmt: skip

    t = time.perf_counter()
    sx, sy = L.samples(per_label, seed)
    how = "conditioning labels" if int(getattr(L.G, "c_dim", 0)) > 0 else "class-guide labels"
    rows.append(L.score(f"(c) random samples of G, {how}", sx, sy, time.perf_counter() - t))

    n_interior = L.sizes["n_steps"] - 2
    e_a, e_b, e_lab = L.sampled_endpoints(-(-per_label // n_interior), seed)
    for name, plan in (("(c1) lines between random samples of one label", False),
                       ("(c2) PLAN between the same samples (generate --method plan)", True)):  # fmt: skip
        t = time.perf_counter()
        x, y = L.paths(e_a, e_b, e_lab, plan)
        rows.append(L.score(name, *_take(x, y, per_label, L.n_labels), time.perf_counter() - t))

    by_label = {c: (L.ws_labels == c).nonzero().flatten().tolist() for c in range(L.n_labels)}
    pairs = _pairs(by_label, per_label, n_interior, seed)
    w_a = L.ws[[a for a, _, _ in pairs]]
    w_b = L.ws[[b for _, b, _ in pairs]]
    labels = torch.tensor([c for _, _, c in pairs])
    for name, plan in (("(d) lines between inverted latents", False), ("(e) PLAN between the same endpoints", True)):
        t = time.perf_counter()
        x, y = L.paths(w_a, w_b, labels, plan)
        rows.append(L.score(name, *_take(x, y, per_label, L.n_labels), time.perf_counter() - t))

    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ks = group_latents(L.ws, L.ws_patients, L.ws_labels.tolist(), KSameConfig(k=5))
        spread = group_latents(L.ws, L.ws_patients, L.ws_labels.tolist(), KSameConfig(k=5, spread="restore"))
    cen, cen_y = ks.centroids, torch.tensor(ks.group_labels)
    rows.append(L.score("(f) k-same centroids (k=5)", L.render(cen), cen_y, time.perf_counter() - t))
    rows.append(L.score("(f') the same, spread restored", L.render(spread.centroids), cen_y, 0.0))
    groups = {c: (cen_y == c).nonzero().flatten().tolist() for c in range(L.n_labels)}
    cpairs = _pairs(groups, per_label, n_interior, seed)
    if cpairs:
        c_a = cen[[a for a, _, _ in cpairs]]
        c_b = cen[[b for _, b, _ in cpairs]]
        c_lab = torch.tensor([c for _, _, c in cpairs])
        s_a = spread.centroids[[a for a, _, _ in cpairs]]
        s_b = spread.centroids[[b for _, b, _ in cpairs]]
        for name, plan, a, b in (
            ("(g) lines between k-same centroids", False, c_a, c_b),
            ("(g') the same, spread restored", False, s_a, s_b),
            ("(h) PLAN between k-same centroids", True, c_a, c_b),
        ):
            t = time.perf_counter()
            x, y = L.paths(a, b, c_lab, plan)
            rows.append(L.score(name, *_take(x, y, per_label, L.n_labels), time.perf_counter() - t))
    return rows


def main() -> None:
    from gan_zoo.invert import SPACES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", choices=sorted(KINDS), default="tb")
    parser.add_argument("--gan", default=None, help="generator spec (default: demo:<kind>)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes; print only")
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--tag", default=None, help="record as section utility-ladder-<benchmark>-<tag> (a variant)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--invert-steps", type=int, default=None, help="inversion steps per image (default 50)")
    parser.add_argument("--space", choices=SPACES, default="w", help="inversion space (default w)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = dict(QUICK if args.quick else FULL)
    if args.invert_steps:
        sizes["invert_steps"] = args.invert_steps
    sizes["space"] = args.space
    started = time.perf_counter()
    header = (
        "| row | images | TSTR accuracy % | balanced acc. % | class guide agrees | diversity vs real | recall | "
        "coverage | FID (class-guide emb.) | seconds |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    print(header, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        ladder = Ladder(KINDS[args.benchmark], args.gan, sizes, Path(tmp), False, lambda s: print(s, flush=True))
        rows = run(ladder, sizes["per_label"])
    wall = time.perf_counter() - started
    stages = ", ".join(f"{k} {v:.0f}s" for k, v in ladder.times.items())
    gan = args.gan or f"demo:{KINDS[args.benchmark]}"
    body = "\n".join(
        [
            f"## Utility ladder ({args.benchmark.upper()}): phantom {KINDS[args.benchmark]} (default size), generator "
            f"`{gan}`",
            "",
            f"Wall time {wall / 60:.1f} min ({stages}). Every row: at most {sizes['per_label']} images per label, the "
            f"same TSTR recipe (compact CNN, {sizes['eval_epochs']} epochs, seeds {list(sizes['seeds'])}), tested on "
            f"the real test split ({len(ladder.test_x)} images of unseen patients). Inversion: {sizes['invert_steps']} "
            f"steps in {sizes['space'].upper()}. Paths: {sizes['n_steps']} points, "
            f"interior points kept; PLAN {sizes['optim_steps']} Adam steps, the reference's loss weights. Diversity: "
            "mean pairwise pixel distance relative to the real training images'. Recall, coverage (PRDC, k = 5) and "
            "FID on the class guide's embedding against the real training images.",
            "",
            header,
            *(_format(r) for r in rows),
        ]
    )
    print(body)
    first, last = rows[0], rows[-1]
    summary(f"utility ladder {args.benchmark}: real {100 * first['acc']:.1f}%, last row ({last['row']}) "
            f"{100 * last['acc']:.1f}%")  # fmt: skip
    if not (args.quick or args.no_record):
        write_section(f"utility-ladder-{args.benchmark}" + (f"-{args.tag}" if args.tag else ""), body)


if __name__ == "__main__":
    main()
