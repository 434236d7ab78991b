"""From image files to the library's tensors: float32 ``[C, R, R]`` in [-1, 1], 1 channel for X-rays, 3 for fundus.

This is the I/O edge of the image convention: files are decoded by :func:`latentwalk.data.validate.read_pixels`
(same channel rules as the checks), converted to the wanted channel count, cropped square and resized with PIL's
antialiased bicubic filter.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import torch
from torch.utils.data import Dataset

from latentwalk.data.records import DatasetIndex
from latentwalk.data.validate import read_pixels
from latentwalk.errors import ConfigError, DataError

__all__ = ["CROPS", "load_image", "fundus_crop", "to_tensor", "default_crop", "ImageFolderDataset", "load_tensors"]

CROPS = ("center", "fundus", "none")
FUNDUS_LAYOUTS = ("aptos", "eyepacs")


def load_image(path: str | os.PathLike, channels: int) -> np.ndarray:
    """Read an image file as ``channels`` channels.

    Gray images become RGB by repeating the channel; colour images become gray by ITU-R 601-2 luma
    (``L = 0.299 R + 0.587 G + 0.114 B``, PIL's ``convert("L")``).

    Args:
        path: image file.
        channels: 1 or 3.

    Returns:
        uint8 array ``[H, W, channels]``, values 0..255.

    Raises:
        ConfigError: ``channels`` is not 1 or 3.
        DataError: the file is not a usable image (see :func:`latentwalk.data.validate.read_pixels`).
    """
    from PIL import Image

    _check_channels(channels)
    pixels = read_pixels(path)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
        if channels == 3:
            pixels = np.repeat(pixels, 3, axis=2)
    elif channels == 1:
        pixels = np.asarray(Image.fromarray(pixels, "RGB").convert("L"))[:, :, None]
    return np.ascontiguousarray(pixels)


def fundus_crop(img: np.ndarray, threshold: float = 10.0) -> np.ndarray:
    """Crop a fundus photograph to its retina disc, pad it square and black out the corners.

    Retina pixels are those whose mean intensity exceeds ``threshold``; the disc is the bounding box of the rows and
    columns holding at least 2% as many retina pixels as the fullest row or column (so stray bright pixels, text
    and scanner marks outside the disc are ignored). The box is padded with black to a centred square, and every
    pixel outside the square's inscribed circle is set to 0. A disc cut off at the top and bottom (common in
    EyePACS) stays whole left to right and is centred vertically.

    Args:
        img: uint8 ``[H, W, C]`` (or ``[H, W]``), values 0..255.
        threshold: mean intensity (0..255) above which a pixel belongs to the retina.

    Returns:
        uint8 ``[S, S, C]`` with ``S = max(disc height, disc width)``; the input unchanged (a copy) when no pixel
        exceeds ``threshold`` (an all-black image).
    """
    img = _as_hwc(img)
    bright = img.mean(axis=2) > threshold
    per_row, per_col = bright.sum(axis=1), bright.sum(axis=0)
    if per_row.max() == 0:
        return img.copy()
    rows = np.flatnonzero(per_row >= max(1.0, 0.02 * per_row.max()))
    cols = np.flatnonzero(per_col >= max(1.0, 0.02 * per_col.max()))
    disc = img[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = disc.shape[:2]
    side = max(h, w)
    out = np.zeros((side, side, img.shape[2]), dtype=np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = disc
    yy, xx = np.ogrid[:side, :side]
    centre = (side - 1) / 2
    outside = (yy - centre) ** 2 + (xx - centre) ** 2 > (side / 2) ** 2
    out[outside] = 0
    return out


def to_tensor(img: np.ndarray, resolution: int, *, crop: str = "center") -> torch.Tensor:
    """Turn a uint8 image into the library's tensor.

    Args:
        img: uint8 ``[H, W, C]`` (C = 1 or 3) or ``[H, W]``, values 0..255.
        resolution: output side ``R`` in pixels.
        crop: ``"center"`` = largest centred square, then resize; ``"fundus"`` = :func:`fundus_crop`, then resize;
            ``"none"`` = resize the whole image to ``R x R`` (aspect ratio not kept).

    Returns:
        float32 ``[C, R, R]`` in [-1, 1] (0 -> -1, 255 -> 1), resized with PIL's antialiased bicubic filter.

    Raises:
        ConfigError: unknown ``crop`` or a ``resolution`` below 1.
    """
    from PIL import Image

    if crop not in CROPS:
        raise ConfigError(f"unknown crop {crop!r}; expected one of {', '.join(CROPS)}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ConfigError(f"resolution must be a positive integer number of pixels, got {resolution!r}")
    img = _as_hwc(img)
    if crop == "fundus":
        img = fundus_crop(img)
    elif crop == "center":
        h, w = img.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        img = img[top : top + side, left : left + side]
    if img.shape[:2] != (resolution, resolution):
        mode = "L" if img.shape[2] == 1 else "RGB"
        pil = Image.fromarray(np.ascontiguousarray(img[:, :, 0] if mode == "L" else img), mode)
        resized = np.asarray(pil.resize((resolution, resolution), Image.Resampling.BICUBIC))
        img = resized[:, :, None] if mode == "L" else resized
    tensor = (
        torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).to(torch.float32)
    )  # [C, R, R], 0..255
    return tensor.div_(127.5).sub_(1.0)


def default_crop(index: DatasetIndex, channels: int) -> str:
    """``"fundus"`` for colour images of a fundus layout (aptos, eyepacs), else ``"center"``."""
    return "fundus" if channels == 3 and index.layout in FUNDUS_LAYOUTS else "center"


class ImageFolderDataset(Dataset):
    """Map-style dataset over a :class:`DatasetIndex`.

    Items are ``(image, label, i)``: image float32 ``[C, R, R]`` in [-1, 1], the class index, and the item's
    position ``i`` in this dataset (to look the record up in :attr:`records` without exposing file names).

    Args:
        index: the dataset.
        resolution: output side ``R`` in pixels.
        channels: 1 or 3; ``None`` = ``index.channels``, or 1 when undeclared.
        crop: one of :data:`CROPS`; ``None`` = :func:`default_crop`.
        split: keep only this split (or these splits); ``None`` = every record.

    Raises:
        ConfigError: bad ``channels``, ``crop`` or ``resolution``.
        DataError: the selected split holds no images.
    """

    def __init__(
        self,
        index: DatasetIndex,
        resolution: int,
        channels: int | None = None,
        crop: str | None = None,
        split: str | Iterable[str] | None = None,
    ) -> None:
        self.channels = channels if channels is not None else (index.channels or 1)
        _check_channels(self.channels)
        self.crop = crop if crop is not None else default_crop(index, self.channels)
        if self.crop not in CROPS:
            raise ConfigError(f"unknown crop {self.crop!r}; expected one of {', '.join(CROPS)}")
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
            raise ConfigError(f"resolution must be a positive integer number of pixels, got {resolution!r}")
        self.resolution = resolution
        self.index = index.subset(split) if split is not None else index
        if not len(self.index):
            raise DataError(
                f"no images in split {split!r} of {index.root}; assign splits first (latentwalk data split) or "
                f"choose another split"
            )
        self.records = self.index.records
        self.label_names = self.index.label_names

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        record = self.records[i]
        image = to_tensor(load_image(record.file, self.channels), self.resolution, crop=self.crop)
        return image, record.label, i


def load_tensors(
    index: DatasetIndex,
    resolution: int,
    *,
    channels: int | None = None,
    crop: str | None = None,
    split: str | Iterable[str] | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a small dataset into memory.

    Args:
        index, resolution, channels, crop, split: as for :class:`ImageFolderDataset`.
        progress: show a tqdm bar (hidden anyway when stderr is not a terminal).

    Returns:
        ``(images, labels)``: float32 ``[N, C, R, R]`` in [-1, 1] and int64 ``[N]``, in index order.
    """
    from tqdm.auto import tqdm

    dataset = ImageFolderDataset(index, resolution, channels=channels, crop=crop, split=split)
    images = torch.empty(len(dataset), dataset.channels, resolution, resolution, dtype=torch.float32)
    labels = torch.empty(len(dataset), dtype=torch.int64)
    for i in tqdm(range(len(dataset)), desc="loading images", unit="img", disable=None if progress else True):
        images[i], labels[i], _ = dataset[i]
    return images, labels


def _check_channels(channels: int) -> None:
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ConfigError(f"channels must be 1 (gray) or 3 (colour), got {channels!r}")


def _as_hwc(img: np.ndarray) -> np.ndarray:
    """Check a uint8 image and give it a channel axis: ``[H, W]`` -> ``[H, W, 1]``."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ConfigError(f"expected a uint8 image (0..255), got dtype {img.dtype}")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3) or 0 in img.shape:
        raise ConfigError(f"expected an image [H, W, C] with C = 1 or 3, got shape {tuple(img.shape)}")
    return img
