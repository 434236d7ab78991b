import io
import json

import numpy as np
import pytest
from PIL import Image

from latentwalk.data.layouts import open_dataset
from latentwalk.data.records import DatasetIndex, ImageRecord
from latentwalk.data.validate import check_images, format_summary, read_pixels, summarize
from latentwalk.errors import DataError


def _gray(seed=0, size=(20, 16)):
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0]), dtype=np.uint8)


def _colour(seed=0, size=(20, 16)):
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def _index(tmp_path, images, channels=1, identities=None):
    """A native-like index over ``images`` (name -> PIL image or raw bytes), written to ``tmp_path``."""
    records = []
    for i, (name, content) in enumerate(images.items()):
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            content.save(path)
        identity = None if identities is None else identities[i]
        records.append(ImageRecord(path, identity, i % 2))
    return DatasetIndex(tmp_path, "native", tuple(records), ("a", "b"), channels)


def _png_bytes(array, mode=None):
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


def test_check_images_reports_sizes_modes_and_channels(tmp_path):
    index = _index(tmp_path, {"a.png": Image.fromarray(_gray()), "b.png": Image.fromarray(_gray(1, (24, 24)))})
    check = check_images(index)
    assert check.n_images == 2
    assert check.sizes == {(20, 16): 1, (24, 24): 1}
    assert check.modes == {"L": 2}
    assert check.channels == {1: 2} and check.inferred_channels == 1


def test_check_images_passes_on_phantom_datasets(cxr_dataset, fundus_dataset):
    assert check_images(open_dataset(cxr_dataset)).inferred_channels == 1
    assert check_images(open_dataset(fundus_dataset)).inferred_channels == 3


def test_unreadable_image_is_named(tmp_path):
    index = _index(tmp_path, {"ok.png": Image.fromarray(_gray()), "noise.png": b"this is not an image at all"})
    with pytest.raises(DataError, match=r"image .*noise\.png cannot be read as an image"):
        check_images(index)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image_is_named(tmp_path, fmt):
    buf = io.BytesIO()
    Image.fromarray(_colour(size=(64, 64))).save(buf, format=fmt)
    data = buf.getvalue()
    index = _index(tmp_path, {"cut.img": data[: len(data) * 2 // 3]}, channels=3)
    with pytest.raises(DataError, match=r"image .*cut\.img cannot be read as an image .*truncated"):
        check_images(index)


def test_zero_byte_file_is_named(tmp_path):
    index = _index(tmp_path, {"empty.png": b""})
    with pytest.raises(DataError, match=r"image .*empty\.png is empty \(0 bytes\)"):
        check_images(index)


def test_git_lfs_pointer_is_recognised(tmp_path):
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1234\n"
    index = _index(tmp_path, {"ptr.png": pointer})
    with pytest.raises(DataError, match=r"image .*ptr\.png is a git-lfs pointer file.*git lfs pull"):
        check_images(index)


def test_many_problems_give_a_count_and_the_first_three(tmp_path):
    index = _index(tmp_path, {f"e{i}.png": b"" for i in range(5)})
    with pytest.raises(DataError, match=r"5 images in .* are empty \(0 bytes\) \(first 3: e0\.png, e1\.png, e2\.png\)"):
        check_images(index)


def test_colour_image_in_gray_dataset_is_named(tmp_path):
    index = _index(tmp_path, {"g.png": Image.fromarray(_gray()), "c.png": Image.fromarray(_colour())}, channels=1)
    with pytest.raises(DataError, match=r"image .*c\.png is colour but the dataset is declared 1-channel gray"):
        check_images(index)


def test_gray_image_in_colour_dataset_is_named(tmp_path):
    index = _index(tmp_path, {"c.png": Image.fromarray(_colour()), "g.png": Image.fromarray(_gray())}, channels=3)
    with pytest.raises(DataError, match=r"image .*g\.png is gray but the dataset is declared 3-channel colour"):
        check_images(index)


def test_rgb_with_identical_channels_counts_as_gray(tmp_path):
    gray = _gray()
    index = _index(tmp_path, {"rgb.png": Image.fromarray(np.stack([gray] * 3, axis=2))}, channels=1)
    check = check_images(index)
    assert check.modes == {"RGB": 1} and check.channels == {1: 1}
    assert np.array_equal(read_pixels(tmp_path / "rgb.png"), gray)


def test_opaque_rgba_counts_as_rgb_and_transparent_rgba_is_refused(tmp_path):
    rgba = np.concatenate([_colour(), np.full((16, 20, 1), 255, np.uint8)], axis=2)
    (tmp_path / "opaque.png").write_bytes(_png_bytes(rgba, "RGBA"))
    assert read_pixels(tmp_path / "opaque.png").shape == (16, 20, 3)
    rgba[0, 0, 3] = 10
    index = _index(tmp_path, {"clear.png": _png_bytes(rgba, "RGBA")}, channels=3)
    with pytest.raises(DataError, match=r"image .*clear\.png has transparent pixels"):
        check_images(index)


def test_gray_palette_image_counts_as_gray(tmp_path):
    image = Image.fromarray(_gray()).convert("P")
    index = _index(tmp_path, {"p.png": image}, channels=1)
    assert check_images(index).channels == {1: 1}


def test_sixteen_bit_gray_is_scaled_by_its_maximum(tmp_path):
    values = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    (tmp_path / "deep.png").write_bytes(_png_bytes(values))
    assert read_pixels(tmp_path / "deep.png").tolist() == [[0, 64], [128, 255]]


def test_undeclared_channels_must_not_mix_gray_and_colour(tmp_path):
    index = _index(tmp_path, {"g.png": Image.fromarray(_gray()), "c.png": Image.fromarray(_colour())}, channels=None)
    with pytest.raises(DataError, match=r"mixes 1 gray images \(e\.g\. g\.png\) and 1 colour images \(e\.g\. c\.png\)"):
        check_images(index)


def test_read_pixels_raises_for_an_lfs_pointer(tmp_path):
    (tmp_path / "x.png").write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(DataError, match="git lfs pull"):
        read_pixels(tmp_path / "x.png")


def test_summary_is_json_able_and_counts_identities_labels_and_splits(tmp_path):
    images = {f"{i}.png": Image.fromarray(_gray(i)) for i in range(5)}
    index = _index(tmp_path, images, identities=["p1", "p1", "p1", "p2", "p3"])
    index = index.with_splits({"p1": "train", "p2": "val", "p3": "test"})
    summary = summarize(index, check_images(index))
    assert json.loads(json.dumps(summary)) == summary
    assert summary["n_images"] == 5 and summary["n_identities"] == 3
    assert summary["images_per_identity"] == {"min": 1, "median": 1.0, "max": 3}
    assert summary["label_counts"] == {"a": 3, "b": 2}
    assert summary["split_counts"]["train"] == {"a": 2, "b": 1}
    assert summary["sizes"] == {"20x16": 5} and summary["channels_seen"] == {"1": 5}
    text = format_summary(summary)
    assert "5 from 3 identities" in text and "20x16 (5)" in text and "a=3, b=2" in text and "splits     train" in text


def test_summary_without_identities_or_check(tmp_path):
    index = _index(tmp_path, {"a.png": Image.fromarray(_gray())})
    summary = summarize(index)
    assert summary["n_identities"] is None and summary["images_per_identity"] is None and summary["sizes"] is None
    assert "identities unknown" in format_summary(summary)
