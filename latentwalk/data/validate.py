"""Image-level checks of a dataset: every file decodes, has the declared channels, and is a real image.

Channel rules (one place, shared with :func:`latentwalk.data.preprocess.load_image` through :func:`read_pixels`):

* ``1`` and ``L`` are gray; 16-bit and 32-bit gray (``I;16``, ``I``, ``F``) are gray, scaled by the image's own
  maximum to 0..255 (high-bit X-rays often use only 10–12 of their 16 bits).
* ``RGB`` is colour, unless its three channels are identical, then it is gray (X-rays saved as RGB).
* ``RGBA``/``LA``/``PA`` count as ``RGB``/``L`` when the alpha channel is fully opaque; any transparent pixel is an
  error (there is no right background to flatten a medical image onto).
* ``P`` (palette) is expanded to RGBA and follows the rules above (a gray palette is gray);
  ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` and ``RGBX`` are converted to RGB.
* A colour image in a 1-channel dataset is an error (the gray conversion would hide a wrong file); a gray image in a
  3-channel dataset is an error too (fundus photographs are colour; a gray one is a wrong or damaged file). A dataset
  that declares no channel count must not mix gray and colour images.
"""

from __future__ import annotations

import os
import statistics
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latentwalk.data.records import SPLITS, DatasetIndex
from latentwalk.errors import DataError
from latentwalk.io import LFS_POINTER_PREFIX

__all__ = ["ImageCheck", "check_images", "read_pixels", "summarize", "format_summary", "LFS_POINTER_PREFIX"]

_HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_TO_RGBA_MODES = ("P", "PA", "RGBa")
_TO_RGB_MODES = ("CMYK", "YCbCr", "LAB", "HSV", "RGBX")
_MAX_LISTED = 3

# Problem kinds in the order they are reported: (one image, several images, fix for one, fix for several).
_PROBLEMS = {
    "lfs": ("is a git-lfs pointer file, not an image", "are git-lfs pointer files, not images",
            "run `git lfs pull` in the repository that holds it",
            "run `git lfs pull` in the repository that holds them"),
    "empty": ("is empty (0 bytes)", "are empty (0 bytes)", "copy or download it again", "copy or download them again"),
    "unreadable": ("cannot be read as an image", "cannot be read as images",
                   "replace the file (it may be truncated, damaged or not an image)",
                   "replace them (they may be truncated, damaged or not images)"),
    "alpha": ("has transparent pixels", "have transparent pixels",
              "flatten it onto a background or drop the alpha channel",
              "flatten them onto a background or drop the alpha channel"),
    "colour_in_gray": ("is colour but the dataset is declared 1-channel gray",
                       "are colour but the dataset is declared 1-channel gray",
                       "convert it to grayscale or fix the declared channels",
                       "convert them to grayscale or fix the declared channels"),
    "gray_in_colour": ("is gray but the dataset is declared 3-channel colour",
                       "are gray but the dataset is declared 3-channel colour",
                       "replace it (fundus photographs must be colour) or fix the declared channels",
                       "replace them (fundus photographs must be colour) or fix the declared channels"),
}  # fmt: skip


class _ImageProblem(Exception):
    """Internal: why one file is not a usable image (``kind`` is a key of ``_PROBLEMS``)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class ImageCheck:
    """What :func:`check_images` saw.

    Attributes:
        n_images: images opened.
        sizes: ``(width, height)`` in pixels -> number of images.
        modes: PIL mode as stored on disk (``L``, ``RGB``, ``I;16``, ...) -> number of images.
        channels: channels after the module's rules (1 gray, 3 colour) -> number of images.
    """

    n_images: int
    sizes: Counter = field(default_factory=Counter)
    modes: Counter = field(default_factory=Counter)
    channels: Counter = field(default_factory=Counter)

    @property
    def inferred_channels(self) -> int | None:
        """1 or 3 when every image has that many channels, else ``None``."""
        return next(iter(self.channels)) if len(self.channels) == 1 else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: sizes as ``"WxH"`` keys, most frequent first."""
        return {
            "n_images": self.n_images,
            "sizes": {f"{w}x{h}": n for (w, h), n in self.sizes.most_common()},
            "modes": dict(self.modes.most_common()),
            "channels": {str(c): n for c, n in sorted(self.channels.items())},
        }


def read_pixels(path: str | os.PathLike) -> np.ndarray:
    """Decode one image under the module's channel rules.

    Args:
        path: image file.

    Returns:
        uint8 array ``[H, W]`` (gray) or ``[H, W, 3]`` (colour), values 0..255.

    Raises:
        DataError: the file is empty, a git-lfs pointer, undecodable or truncated, or has transparent pixels.
    """
    path = Path(path)
    try:
        return _decode(path)[0]
    except _ImageProblem as problem:
        raise DataError(_problem_message(problem.kind, [(path, problem.detail)], path.parent)) from None


def check_images(index: DatasetIndex, *, progress: bool = False) -> ImageCheck:
    """Open every image of ``index`` fully (so truncated files are caught) and check its channels.

    All images are scanned, then the first kind of problem found (LFS pointers, empty files, unreadable files,
    transparency, channel mismatch) is raised, naming the file, or the count and the first three.

    Args:
        index: the dataset; ``index.channels`` (1, 3 or ``None``) is the declared channel count.
        progress: show a tqdm bar (hidden anyway when stderr is not a terminal).

    Returns:
        :class:`ImageCheck` with the sizes, modes and channels seen.

    Raises:
        DataError: see above; one sentence naming the file(s) and the fix.
    """
    from tqdm.auto import tqdm

    problems: dict[str, list[tuple[Path, str]]] = {kind: [] for kind in _PROBLEMS}
    sizes: Counter = Counter()
    modes: Counter = Counter()
    channels: Counter = Counter()
    per_channels: dict[int, list[Path]] = {1: [], 3: []}
    bar = tqdm(index.records, desc="checking images", unit="img", disable=None if progress else True)
    for record in bar:
        try:
            pixels, mode, size = _decode(record.file)
        except _ImageProblem as problem:
            problems[problem.kind].append((record.file, problem.detail))
            continue
        sizes[size] += 1
        modes[mode] += 1
        c = 1 if pixels.ndim == 2 else 3
        channels[c] += 1
        per_channels[c].append(record.file)
    if index.channels == 1:
        problems["colour_in_gray"] = [(f, "") for f in per_channels[3]]
    elif index.channels == 3:
        problems["gray_in_colour"] = [(f, "") for f in per_channels[1]]
    for kind, found in problems.items():
        if found:
            raise DataError(_problem_message(kind, found, index.root))
    if index.channels is None and per_channels[1] and per_channels[3]:
        gray = ", ".join(_rel(f, index.root) for f in per_channels[1][:2])
        colour = ", ".join(_rel(f, index.root) for f in per_channels[3][:2])
        raise DataError(
            f"{index.root} mixes {len(per_channels[1])} gray images (e.g. {gray}) and {len(per_channels[3])} colour "
            f"images (e.g. {colour}) and declares no channel count; declare channels (dataset.json or the channels "
            f"option) or convert the images"
        )
    return ImageCheck(n_images=len(index.records), sizes=sizes, modes=modes, channels=channels)


def summarize(index: DatasetIndex, check: ImageCheck | None = None) -> dict[str, Any]:
    """A JSON-able description of a dataset.

    Args:
        index: the dataset.
        check: result of :func:`check_images`; adds sizes, modes and channels seen (``None`` entries otherwise).

    Returns:
        dict with ``layout, root, n_images, n_identities`` (``None`` without identities), ``images_per_identity``
        (``{"min", "median", "max"}`` or ``None``), ``label_names``, ``label_counts`` (name -> images),
        ``split_counts`` (split -> name -> images, in train/val/test/unassigned order), ``channels`` (declared),
        ``channels_seen``, ``sizes`` (``"WxH"`` -> images), ``modes``, ``notes``.
    """
    per_identity = None
    n_identities = None
    if index.has_identities and len(index):
        counts = sorted(Counter(r.identity for r in index.records).values())
        n_identities = len(counts)
        per_identity = {"min": counts[0], "median": float(statistics.median(counts)), "max": counts[-1]}
    check_dict = check.to_dict() if check is not None else None
    splits = index.split_counts()
    return {
        "layout": index.layout,
        "root": str(index.root),
        "n_images": len(index),
        "n_identities": n_identities,
        "images_per_identity": per_identity,
        "label_names": list(index.label_names),
        "label_counts": index.label_counts(),
        "split_counts": {s: splits[s] for s in (*SPLITS, "unassigned") if s in splits},
        "channels": index.channels,
        "channels_seen": check_dict["channels"] if check_dict else None,
        "sizes": check_dict["sizes"] if check_dict else None,
        "modes": check_dict["modes"] if check_dict else None,
        "notes": list(index.notes),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable, multi-line text of a :func:`summarize` dict (for the CLI)."""
    lines = [f"dataset    {summary['root']} (layout {summary['layout']})"]
    images = f"images     {summary['n_images']}"
    if summary["n_identities"] is None:
        images += ", identities unknown"
    else:
        per = summary["images_per_identity"]
        images += (
            f" from {summary['n_identities']} identities "
            f"(images per identity: min {per['min']}, median {per['median']:g}, max {per['max']})"
        )
    lines.append(images)
    channels = "undeclared" if summary["channels"] is None else str(summary["channels"])
    if summary.get("channels_seen"):
        seen = ", ".join(f"{n} with {c}" for c, n in summary["channels_seen"].items())
        channels += f" (seen: {seen})"
    lines.append(f"channels   {channels}")
    if summary.get("sizes"):
        sizes = list(summary["sizes"].items())
        shown = ", ".join(f"{s} ({n})" for s, n in sizes[:5])
        lines.append(f"sizes      {shown}" + (f" and {len(sizes) - 5} more" if len(sizes) > 5 else ""))
    if summary.get("modes"):
        lines.append("modes      " + ", ".join(f"{m} ({n})" for m, n in summary["modes"].items()))
    lines.append("labels     " + ", ".join(f"{name}={n}" for name, n in summary["label_counts"].items()))
    for i, (split, per) in enumerate(summary["split_counts"].items()):
        counts = ", ".join(f"{name}={n}" for name, n in per.items())
        lines.append(("splits     " if i == 0 else "           ") + f"{split:<11}{counts}")
    for i, note in enumerate(summary["notes"]):
        lines.append(("notes      " if i == 0 else "           ") + f"- {note}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------------------------


def _decode(path: Path) -> tuple[np.ndarray, str, tuple[int, int]]:
    """``(pixels, stored mode, (width, height))``; raises :class:`_ImageProblem`."""
    from PIL import Image

    try:
        with open(path, "rb") as f:
            head = f.read(len(LFS_POINTER_PREFIX))
    except OSError as exc:
        raise _ImageProblem("unreadable", exc.strerror or str(exc)) from None
    if not head:
        raise _ImageProblem("empty")
    if head.startswith(LFS_POINTER_PREFIX):
        raise _ImageProblem("lfs")
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            im.load()
            return _canonical(im), im.mode, im.size
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError) as exc:
        hint = "; DICOM must be converted to PNG first" if path.suffix.lower() in (".dcm", ".dicom") else ""
        raise _ImageProblem("unreadable", f"{type(exc).__name__}: {exc}{hint}") from None


def _canonical(im: Any) -> np.ndarray:
    """uint8 ``[H, W]`` or ``[H, W, 3]`` from a loaded PIL image, following the module's channel rules."""
    stored = im.mode
    if stored in _HIGH_BIT_MODES:
        values = np.asarray(im, dtype=np.float64)
        top = values.max(initial=0.0)
        scaled = np.zeros(values.shape) if top <= 0 else np.clip(values, 0, None) * (255.0 / top)
        return np.rint(scaled).astype(np.uint8)
    if stored == "1":
        im = im.convert("L")
    elif stored in _TO_RGBA_MODES:
        im = im.convert("RGBA")
    elif stored in _TO_RGB_MODES:
        im = im.convert("RGB")
    if im.mode in ("LA", "RGBA"):
        alpha = np.asarray(im.getchannel("A"))
        if (alpha != 255).any():
            raise _ImageProblem("alpha", f"mode {stored}, {int((alpha != 255).sum())} pixels not opaque")
        im = im.convert("L" if im.mode == "LA" else "RGB")
    if im.mode == "L":
        return np.asarray(im, dtype=np.uint8)
    if im.mode == "RGB":
        rgb = np.asarray(im, dtype=np.uint8)
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return rgb[..., 0].copy()
        return rgb
    raise _ImageProblem("unreadable", f"unsupported image mode {stored}; convert it to 8-bit gray or RGB PNG")


def _problem_message(kind: str, found: list[tuple[Path, str]], root: Path) -> str:
    single, plural, fix_one, fix_many = _PROBLEMS[kind]
    if len(found) == 1:
        file, detail = found[0]
        detail = f" ({detail})" if detail else ""
        return f"image {file} {single}{detail}; {fix_one}"
    shown = ", ".join(_rel(f, root) for f, _ in found[:_MAX_LISTED])
    return f"{len(found)} images in {root} {plural} (first {min(len(found), _MAX_LISTED)}: {shown}); {fix_many}"


def _rel(file: Path, root: Path) -> str:
    return Path(os.path.relpath(file, root)).as_posix()
