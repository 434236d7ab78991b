"""Datasets: the embedded phantoms, readers for the public layouts, validation, splits and preprocessing.

Names from :mod:`latentwalk.data.preprocess` (which needs torch) load on first use, so importing this package stays
light.
"""

from __future__ import annotations

import importlib
from typing import Any

from latentwalk.data.layouts import LAYOUTS, detect_layout, open_dataset
from latentwalk.data.phantoms import (
    KINDS,
    LABEL_NAMES,
    PhantomConfig,
    PhantomImage,
    render_phantom,
    write_phantom_dataset,
)
from latentwalk.data.records import SPLITS, DatasetIndex, ImageRecord
from latentwalk.data.splits import assign_splits, check_disjoint, split_identities, write_splits
from latentwalk.data.validate import ImageCheck, check_images, format_summary, summarize

_LAZY = {
    name: "latentwalk.data.preprocess"
    for name in (
        "CROPS",
        "ImageFolderDataset",
        "default_crop",
        "fundus_crop",
        "load_image",
        "load_tensors",
        "to_tensor",
    )
}

__all__ = [
    "LAYOUTS",
    "detect_layout",
    "open_dataset",
    "KINDS",
    "LABEL_NAMES",
    "PhantomConfig",
    "PhantomImage",
    "render_phantom",
    "write_phantom_dataset",
    "SPLITS",
    "DatasetIndex",
    "ImageRecord",
    "assign_splits",
    "check_disjoint",
    "split_identities",
    "write_splits",
    "ImageCheck",
    "check_images",
    "format_summary",
    "summarize",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'latentwalk.data' has no attribute {name!r}")
