"""latentwalk: anonymised synthetic medical image datasets from a privacy-preserving walk in a GAN's latent space.

Importing this package does no work: no network, no CUDA, no heavy optional imports. The public API below loads its
module on first use; each stage is one function with its config class (the same options as its command):

    G = gan_zoo.load("demo:cxr")
    index = latentwalk.open_dataset("data/cxr")                                   # latentwalk data check
    latentwalk.train_guides(index, "guides", latentwalk.GuideConfig(),          # latentwalk guides train
                            resolution=G.img_resolution, channels=G.img_channels)
    latentwalk.invert_dataset(G, index.subset("train"), "lat.safetensors")       # latentwalk gan invert
    centroids, summary, _ = latentwalk.latent_centroids("lat.safetensors", G, index, [0, 1], latentwalk.KSameConfig())
    cfg = latentwalk.GenerateConfig(guides="guides", data="data/cxr", latents="lat.safetensors", method="ksame-plan")
    latentwalk.generate(cfg, "synthetic")                                        # latentwalk generate
    latentwalk.evaluate_dataset("data/cxr", "synthetic", "evaluation")           # latentwalk evaluate

``latentwalk.evaluate`` is the evaluation package; its entry point is ``evaluate_dataset`` here.
"""

from __future__ import annotations

import importlib
from typing import Any

from latentwalk.errors import ConfigError, DataError, LatentwalkError, MissingWeightsError, UnsafePickleError

__version__ = "0.1.0.dev0"

_LAZY = {
    # data
    "open_dataset": ("latentwalk.data", "open_dataset"),
    "load_tensors": ("latentwalk.data", "load_tensors"),
    "PhantomConfig": ("latentwalk.data.phantoms", "PhantomConfig"),
    "write_phantom_dataset": ("latentwalk.data.phantoms", "write_phantom_dataset"),
    # guides
    "GuideConfig": ("latentwalk.guides", "GuideConfig"),
    "train_guides": ("latentwalk.guides", "train_guides"),
    "load_guides": ("latentwalk.guides", "load_guides"),
    # inversion
    "invert_dataset": ("latentwalk.invert", "invert_dataset"),
    "load_latents": ("latentwalk.invert", "load_latents"),
    # k-same
    "KSameConfig": ("latentwalk.ksame", "KSameConfig"),
    "group_latents": ("latentwalk.ksame", "group_latents"),
    "latent_centroids": ("latentwalk.ksame", "latent_centroids"),
    "check_k_anonymity": ("latentwalk.ksame", "check_k_anonymity"),
    # walks
    "PlanConfig": ("latentwalk.paths", "PlanConfig"),
    "plan_paths": ("latentwalk.paths", "plan_paths"),
    "linear_paths": ("latentwalk.paths", "linear_paths"),
    "render_paths": ("latentwalk.paths", "render_paths"),
    "compare_walks": ("latentwalk.walk", "compare_walks"),
    # gate, generation
    "build_gate": ("latentwalk.gate", "build_gate"),
    "GateConfig": ("latentwalk.pipeline", "GateConfig"),
    "GenerateConfig": ("latentwalk.pipeline", "GenerateConfig"),
    "generate": ("latentwalk.pipeline", "generate"),
    # evaluation, demo
    "EvalConfig": ("latentwalk.evaluate.run", "EvalConfig"),
    "evaluate_dataset": ("latentwalk.evaluate.run", "evaluate"),
    "DemoConfig": ("latentwalk.demo", "DemoConfig"),
    "run_demo": ("latentwalk.demo", "run_demo"),
}

__all__ = [
    "__version__",
    "LatentwalkError",
    "ConfigError",
    "DataError",
    "MissingWeightsError",
    "UnsafePickleError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value  # cache; later lookups do not come here
        return value
    raise AttributeError(f"module 'latentwalk' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
