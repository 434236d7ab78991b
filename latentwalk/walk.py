"""``latentwalk walk``: one linear and one PLAN path between the same two endpoints, as pictures.

The picture users look at first: an image strip (row 1 linear, row 2 PLAN) and a plot of each point's distance to its
nearest real image, with the privacy gate's threshold. A dip of the linear curve below the threshold is a near-copy of
a real patient on the straight path; PLAN's curve should stay above it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from latentwalk.errors import ConfigError
from latentwalk.io import atomic_write_bytes, write_json

__all__ = ["WalkComparison", "compare_walks", "save_walk"]


@dataclass(frozen=True)
class WalkComparison:
    """Both paths, their images and per-point nearest-real distances.

    Attributes:
        label: class label of both paths.
        images: ``{"linear": [S, C, R, R], "plan": [S, C, R, R]}`` float in [-1, 1], CPU.
        distances: ``{"linear": [S], "plan": [S]}`` nearest-real distance of every point (endpoints included).
        class_prob: ``{"linear": [S], "plan": [S]}`` probability of ``label`` by the class guide.
        threshold: the gate threshold, and ``space`` the distance space.
    """

    label: int
    label_name: str
    images: dict[str, Tensor]
    distances: dict[str, Tensor]
    class_prob: dict[str, Tensor]
    threshold: float
    space: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "label_name": self.label_name,
            "space": self.space,
            "threshold": self.threshold,
            "distances": {k: [round(float(x), 6) for x in v] for k, v in self.distances.items()},
            "class_prob": {k: [round(float(x), 6) for x in v] for k, v in self.class_prob.items()},
            "below_threshold": {k: int((v < self.threshold).sum()) for k, v in self.distances.items()},
        }


@torch.no_grad()
def _class_prob(guides: Any, images: Tensor, label: int) -> Tensor:
    return guides.classifier(images).softmax(dim=1)[:, label].float().cpu()


def compare_walks(
    G: Any,
    guides: Any,
    gate: Any,
    label: int,
    *,
    seed: int = 0,
    n_steps: int = 20,
    plan_cfg: Any = None,
    truncation_psi: float = 1.0,
    endpoints: tuple[Tensor, Tensor] | None = None,
    label_names: tuple[str, ...] | None = None,
    endpoint_filter: bool = True,
) -> WalkComparison:
    """Walk linearly and with PLAN between the same two points of class ``label``.

    Args:
        G: generator (contract of :mod:`gan_zoo.base`).
        guides: loaded :class:`latentwalk.guides.Guides` (they steer PLAN and filter the endpoints by class).
        gate: a fitted :class:`latentwalk.gate.Gate` (distances and threshold).
        label: class index of the endpoints.
        seed: seeds the endpoint draw.
        n_steps: points per path, endpoints included.
        plan_cfg: :class:`latentwalk.paths.PlanConfig` (``n_steps`` is replaced); ``None`` = its defaults.
        truncation_psi: truncation of the endpoint draw.
        endpoints: ``(w_a, w_b)`` each ``[1, w_dim]`` instead of drawing them.
        label_names: class names for the record.
        endpoint_filter: keep only drawn endpoints that the class guide assigns to ``label``.

    Raises:
        ConfigError: a label outside the guides' classes.
    """
    from dataclasses import replace

    from latentwalk.endpoints import sample_w
    from latentwalk.paths import PlanConfig, linear_paths, plan_paths, render_paths

    names = tuple(label_names or guides.label_names)
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(guides.label_names):
        raise ConfigError(f"label must be a class index in [0, {len(guides.label_names)}), got {label!r}")
    if endpoints is None:
        gen = torch.Generator().manual_seed(seed)
        net = guides.classifier if endpoint_filter else None
        w = sample_w(G, 2, truncation_psi=truncation_psi, generator=gen, label=label, class_net=net)
        w_a, w_b = w[:1], w[1:]
    else:
        w_a, w_b = endpoints
    cfg = replace(plan_cfg if plan_cfg is not None else PlanConfig(), n_steps=n_steps)
    paths = {
        "linear": linear_paths(w_a, w_b, n_steps),
        "plan": plan_paths(G, w_a, w_b, [label], guides.identity, guides.classifier, cfg).ws,
    }
    images = {k: render_paths(G, v)[0].cpu() for k, v in paths.items()}  # [S, C, R, R]
    device = next(iter(guides.classifier.parameters())).device
    distances = {k: gate.distances(v.to(device)).float() for k, v in images.items()}
    probs = {k: _class_prob(guides, v.to(device), label) for k, v in images.items()}
    return WalkComparison(label, names[label], images, distances, probs, float(gate.threshold), gate.space)


def save_walk(walk: WalkComparison, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``walk_strip.png`` (row 1 linear, row 2 PLAN), ``walk_distance.png`` and ``walk.json`` to ``out_dir``."""
    from torchvision.utils import make_grid

    from latentwalk.plots import figure_png, pyplot

    plt = pyplot()

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = walk.images["linear"].shape[0]
    grid = make_grid(torch.cat([walk.images["linear"], walk.images["plan"]]), nrow=steps, padding=1, pad_value=1.0)
    grid = ((grid.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()

    fig, ax = plt.subplots(figsize=(max(6.0, steps * 0.55), 2.0), dpi=150)
    ax.imshow(grid[..., 0] if walk.images["linear"].shape[1] == 1 else grid, cmap="gray", vmin=0, vmax=255)
    ax.set_yticks([grid.shape[0] * 0.25, grid.shape[0] * 0.75], ["linear", "PLAN"])
    ax.set_xticks([])
    ax.set_title(f"label {walk.label} ({walk.label_name}): the same endpoints, {steps} points per path", fontsize=9)
    strip = figure_png(fig)

    fig, ax = plt.subplots(figsize=(6.0, 3.2), dpi=150)
    x = list(range(steps))
    ax.plot(x, walk.distances["linear"].tolist(), "o-", ms=3, label="linear")
    ax.plot(x, walk.distances["plan"].tolist(), "o-", ms=3, label="PLAN")
    ax.axhline(walk.threshold, color="crimson", ls="--", lw=1, label=f"gate threshold {walk.threshold:.3g}")
    ax.set_xlabel("point along the path")
    ax.set_ylabel(f"distance to nearest real ({walk.space})")
    ax.set_title("Nearest-real distance along the path (higher = further from any patient)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    plot = figure_png(fig)

    files = {"strip": out / "walk_strip.png", "plot": out / "walk_distance.png", "json": out / "walk.json"}
    atomic_write_bytes(files["strip"], strip)
    atomic_write_bytes(files["plot"], plot)
    write_json(files["json"], walk.to_dict())
    return files
