import numpy as np
import pytest
import torch
from PIL import Image

from latentwalk.data.preprocess import ImageFolderDataset, fundus_crop, load_image, load_tensors, to_tensor
from latentwalk.data.records import DatasetIndex, ImageRecord
from latentwalk.errors import ConfigError, DataError


def _disc(height, width, centre, radius, colour=(200, 120, 60)):
    """A black canvas with a filled coloured disc, uint8 [H, W, 3]."""
    yy, xx = np.ogrid[:height, :width]
    inside = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2
    img = np.zeros((height, width, 3), np.uint8)
    img[inside] = colour
    return img


def _index(tmp_path, arrays, layout="native", channels=None, splits=None):
    records = []
    for i, array in enumerate(arrays):
        path = tmp_path / f"{i}.png"
        Image.fromarray(array).save(path)
        records.append(ImageRecord(path, f"p{i}", i % 2, None if splits is None else splits[i]))
    return DatasetIndex(tmp_path, layout, tuple(records), ("a", "b"), channels)


def test_load_image_converts_gray_to_rgb_and_back(tmp_path):
    gray = np.arange(16 * 20, dtype=np.uint8).reshape(16, 20)
    Image.fromarray(gray).save(tmp_path / "g.png")
    as_rgb = load_image(tmp_path / "g.png", 3)
    assert as_rgb.shape == (16, 20, 3) and as_rgb.dtype == np.uint8
    assert all(np.array_equal(as_rgb[..., c], gray) for c in range(3))
    assert np.array_equal(load_image(tmp_path / "g.png", 1)[..., 0], gray)

    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 255  # pure red -> luma 0.299 * 255
    Image.fromarray(rgb).save(tmp_path / "c.png")
    as_gray = load_image(tmp_path / "c.png", 1)
    assert as_gray.shape == (8, 8, 1) and int(as_gray[0, 0, 0]) == 76


def test_load_image_rejects_other_channel_counts(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "g.png")
    with pytest.raises(ConfigError, match="channels must be 1"):
        load_image(tmp_path / "g.png", 4)


@pytest.mark.parametrize("crop", ["center", "fundus", "none"])
@pytest.mark.parametrize("channels", [1, 3])
def test_to_tensor_gives_float_chw_in_minus_one_to_one(crop, channels):
    img = np.random.default_rng(0).integers(0, 256, (30, 24, channels), dtype=np.uint8)
    x = to_tensor(img, 16, crop=crop)
    assert x.shape == (channels, 16, 16) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1


def test_to_tensor_maps_black_and_white_to_the_range_ends():
    img = np.zeros((8, 8, 1), np.uint8)
    img[:, 4:] = 255
    x = to_tensor(img, 8, crop="none")
    assert x[0, 0, 0].item() == -1.0 and x[0, 0, 7].item() == 1.0


def test_center_crop_keeps_the_middle_square_and_none_stretches():
    img = np.zeros((10, 30, 1), np.uint8)
    img[:, 10:20] = 255  # white middle square between black margins
    assert to_tensor(img, 10, crop="center").min().item() == 1.0
    assert to_tensor(img, 10, crop="none").min().item() < 0


def test_to_tensor_rejects_unknown_crop_and_bad_resolution():
    img = np.zeros((4, 4, 1), np.uint8)
    with pytest.raises(ConfigError, match="unknown crop 'fill'"):
        to_tensor(img, 4, crop="fill")
    with pytest.raises(ConfigError, match="resolution must be a positive integer"):
        to_tensor(img, 0)


def test_fundus_crop_centres_an_off_centre_disc():
    img = _disc(120, 160, centre=(50, 60), radius=30)
    out = fundus_crop(img)
    assert out.shape[0] == out.shape[1] and abs(out.shape[0] - 61) <= 2
    ys, xs = np.nonzero(out.mean(axis=2) > 10)
    centre = (out.shape[0] - 1) / 2
    assert abs(ys.mean() - centre) < 0.5 and abs(xs.mean() - centre) < 0.5
    assert (ys.size - (img.mean(axis=2) > 10).sum()) <= 4  # the disc survives whole (up to its 1-pixel tips)
    assert (out[0, 0] == 0).all() and (out[-1, -1] == 0).all()


def test_fundus_crop_pads_a_disc_cut_at_top_and_bottom_and_ignores_stray_pixels():
    img = _disc(100, 200, centre=(50, 100), radius=75)  # disc taller than the image: cols 25..175 hold it
    img[0, 0] = img[-1, -1] = img[3, 190] = 255  # stray bright pixels are not the retina
    out = fundus_crop(img)
    assert out.shape[0] == out.shape[1] and abs(out.shape[0] - 151) <= 2
    pad = (out.shape[0] - 100) // 2
    assert (out[: pad - 1] == 0).all() and (out[-(pad - 1) :] == 0).all()  # black padding above and below
    assert (out[out.shape[0] // 2, out.shape[1] // 2] == (200, 120, 60)).all()
    assert (out[0, 0] == 0).all() and (out[-1, -1] == 0).all()


def test_fundus_crop_returns_an_all_black_image_unchanged():
    img = np.zeros((12, 20, 3), np.uint8)
    out = fundus_crop(img)
    assert out.shape == img.shape and not out.any()


def test_image_folder_dataset_items_and_default_crop(tmp_path):
    arrays = [_disc(24, 32, (12, 16), 10) for _ in range(4)]
    index = _index(tmp_path, arrays, layout="aptos", channels=3, splits=["train", "train", "val", "test"])
    dataset = ImageFolderDataset(index, 16)
    assert dataset.crop == "fundus" and dataset.channels == 3 and len(dataset) == 4
    image, label, i = dataset[2]
    assert image.shape == (3, 16, 16) and label == 0 and i == 2
    train = ImageFolderDataset(index, 16, split="train")
    assert len(train) == 2
    assert ImageFolderDataset(index, 16, channels=1).crop == "center"


def test_image_folder_dataset_defaults_to_one_channel_and_center_crop(tmp_path):
    index = _index(tmp_path, [np.full((10, 14), 128, np.uint8)])
    dataset = ImageFolderDataset(index, 8)
    assert dataset.channels == 1 and dataset.crop == "center"
    assert dataset[0][0].shape == (1, 8, 8)


def test_image_folder_dataset_rejects_an_empty_split(tmp_path):
    index = _index(tmp_path, [np.zeros((8, 8), np.uint8)], splits=["train"])
    with pytest.raises(DataError, match="no images in split 'val'"):
        ImageFolderDataset(index, 8, split="val")


def test_load_tensors_stacks_images_and_labels(tmp_path):
    index = _index(tmp_path, [np.full((12, 12), v, np.uint8) for v in (0, 255, 0)], channels=1)
    images, labels = load_tensors(index, 4)
    assert images.shape == (3, 1, 4, 4) and labels.tolist() == [0, 1, 0]
    assert images[0].eq(-1).all() and images[1].eq(1).all()
