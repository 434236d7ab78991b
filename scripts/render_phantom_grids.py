"""Render the phantom grids shown in README.md: rows are patients, columns are images of that patient.

    python scripts/render_phantom_grids.py --out docs

cxr: three normal and three TB patients; fundus: one patient per DR grade. Default dataset settings (64 px, seed 0).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from latentwalk.data.phantoms import LABEL_NAMES, PhantomConfig, render_phantom  # noqa: E402


def pick_patients(cfg: PhantomConfig, per_label: dict[int, int]) -> list[int]:
    """First patients with each wanted label (label of their first image), ``per_label[label]`` of them, by label."""
    wanted = dict(per_label)
    chosen = []
    for p in range(cfg.identities):
        label = render_phantom(cfg, p, 0).label
        if wanted.get(label, 0) > 0:
            chosen.append((label, p))
            wanted[label] -= 1
        if not any(wanted.values()):
            break
    return [p for _, p in sorted(chosen)]


def render_grid(kind: str, out: Path, columns: int = 4) -> Path:
    cfg = PhantomConfig(kind=kind, per_identity=columns)
    per_label = {0: 3, 1: 3} if kind == "cxr" else {g: 1 for g in range(5)}
    patients = pick_patients(cfg, per_label)
    fig, axes = plt.subplots(len(patients), columns, figsize=(1.6 * columns, 1.7 * len(patients)), squeeze=False)
    for row, p in enumerate(patients):
        for col in range(columns):
            ph = render_phantom(cfg, p, col)
            ax = axes[row][col]
            ax.imshow(ph.pixels, cmap="gray" if kind == "cxr" else None, vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            eye = f" {ph.params['eye']}" if kind == "fundus" else ""
            ax.set_title(f"{ph.identity}{eye} · {LABEL_NAMES[kind][ph.label]}", fontsize=7)
    fig.suptitle(f"phantom {kind}: {cfg.resolution} px, seed {cfg.seed} (rows = patients)", fontsize=9)
    fig.tight_layout()
    path = out / f"phantoms_{kind}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for kind in ("cxr", "fundus"):
        print(render_grid(kind, args.out))


if __name__ == "__main__":
    main()
