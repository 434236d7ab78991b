import json

import numpy as np
import pytest
from PIL import Image

from latentwalk.data.layouts import LAYOUTS, detect_layout, open_dataset
from latentwalk.errors import ConfigError, DataError


def _image(path, size=(20, 16), mode="L", seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _native(root, rows, header="file,identity,label", dataset_json=None, make_images=True):
    """A native dataset: ``rows`` are CSV lines (without the header); images made for the first column."""
    for line in rows:
        name = line.split(",")[0]
        if make_images and name:
            _image(root / name)
    _write(root / "metadata.csv", "\n".join([header, *rows]) + "\n")
    if dataset_json is not None:
        _write(root / "dataset.json", json.dumps(dataset_json))
    return root


def _cxr(root, names):
    for i, name in enumerate(names):
        _image(root / "CXR_png" / name, seed=i)
    return root


def _aptos(root, rows):
    _write(root / "train.csv", "id_code,diagnosis\n" + "".join(f"{c},{d}\n" for c, d in rows))
    for i, (code, _) in enumerate(rows):
        _image(root / "train_images" / f"{code}.png", mode="RGB", seed=i)
    return root


def _eyepacs(root, rows, folder="train"):
    _write(root / "trainLabels.csv", "image,level\n" + "".join(f"{n},{lv}\n" for n, lv in rows))
    for i, (name, _) in enumerate(rows):
        img = root / folder / f"{name}.jpeg" if folder else root / f"{name}.jpeg"
        img.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((16, 20, 3), 40 + i, np.uint8), "RGB").save(img, format="JPEG")
    return root


# --------------------------------------------------------------------------------------------------------------------
# native


def test_native_reads_records_labels_identities_and_declared_names(tmp_path):
    root = _native(
        tmp_path / "ds",
        ["b/2.png,p2,1,test", "a/1.png,p1,0,train", "a/0.png,p1,2,"],
        header="file,identity,label,split",
        dataset_json={"label_names": ["low", "mid", "high"], "channels": 1, "name": "x"},
    )
    index = open_dataset(root)
    assert index.layout == "native"
    assert index.label_names == ("low", "mid", "high")
    assert index.channels == 1
    assert [r.file.relative_to(root).as_posix() for r in index.records] == ["a/0.png", "a/1.png", "b/2.png"]
    assert [(r.identity, r.label, r.split) for r in index.records] == [("p1", 2, None), ("p1", 0, "train"),
                                                                       ("p2", 1, "test")]  # fmt: skip
    assert all(r.file.is_absolute() for r in index.records)


def test_native_without_dataset_json_names_labels_by_their_values(tmp_path):
    index = open_dataset(_native(tmp_path, ["x.png,a,1", "y.png,b,0"]))
    assert index.label_names == ("0", "1")
    assert index.channels is None
    assert [r.label for r in index.records] == [1, 0]


def test_native_renumbers_non_contiguous_labels_and_says_so(tmp_path):
    index = open_dataset(_native(tmp_path, ["x.png,a,2", "y.png,b,7"]))
    assert index.label_names == ("2", "7")
    assert [r.label for r in index.records] == [0, 1]
    assert any("renumbered" in n for n in index.notes)


def test_native_accepts_file_name_alias(tmp_path):
    index = open_dataset(_native(tmp_path, ["x.png,a,0"], header="file_name,identity,label"))
    assert index.records[0].file == tmp_path / "x.png"
    assert any("file_name" in n for n in index.notes)


def test_native_without_identity_column_loads_but_require_identities_raises(tmp_path):
    index = open_dataset(_native(tmp_path, ["x.png,0", "y.png,1"], header="file,label"))
    assert [r.identity for r in index.records] == [None, None]
    assert not index.has_identities
    with pytest.raises(DataError, match=r"identity.*metadata\.csv"):
        index.require_identities("splitting")


def test_native_empty_identity_cells_give_none(tmp_path):
    index = open_dataset(_native(tmp_path, ["x.png,,0", "y.png,p,1"]))
    assert [r.identity for r in index.records] == [None, "p"]
    assert any("1 of 2 rows have no identity" in n for n in index.notes)


def test_native_rejects_unknown_column(tmp_path):
    root = _native(tmp_path, ["x.png,a,0"], header="file,identity,lable")
    with pytest.raises(
        DataError, match=r"unexpected column 'lable' in .*metadata\.csv; expected file, identity, label"
    ):
        open_dataset(root)


def test_native_rejects_missing_label_column_and_lists_found_columns(tmp_path):
    root = _native(tmp_path, ["x.png,a"], header="file,identity")
    with pytest.raises(DataError, match=r"missing column 'label' \(found columns: file, identity\)"):
        open_dataset(root)


def test_native_rejects_label_outside_declared_names(tmp_path):
    root = _native(tmp_path, ["x.png,a,0", "y.png,b,2"], dataset_json={"label_names": ["normal", "tb"]})
    with pytest.raises(DataError, match=r"label 2 in row 3 of .*metadata\.csv is outside the 2 classes"):
        open_dataset(root)


def test_native_rejects_non_integer_label(tmp_path):
    with pytest.raises(DataError, match=r"label 'tb' in row 2 of .*metadata\.csv is not a class index"):
        open_dataset(_native(tmp_path, ["x.png,a,tb"]))


def test_native_rejects_unknown_split_value(tmp_path):
    root = _native(tmp_path, ["x.png,a,0,training"], header="file,identity,label,split")
    with pytest.raises(DataError, match=r"split 'training' in row 2 .* not one of train, val, test"):
        open_dataset(root)


def test_native_rejects_duplicate_files_naming_both_rows(tmp_path):
    root = _native(tmp_path, ["x.png,a,0", "y.png,b,1", "./x.png,c,1"])
    with pytest.raises(DataError, match=r"file 'x\.png' is listed twice in .*metadata\.csv \(rows 2 and 4\)"):
        open_dataset(root)


def test_native_rejects_a_missing_file_by_name_and_row(tmp_path):
    root = _native(tmp_path, ["x.png,a,0", "gone.png,b,1"], make_images=False)
    _image(tmp_path / "x.png")
    with pytest.raises(DataError, match=r"image 'gone\.png' \(row 3 of .*metadata\.csv\) does not exist"):
        open_dataset(root)


def test_native_counts_many_missing_files_and_shows_first_three(tmp_path):
    root = _native(tmp_path, [f"m{i}.png,p{i},0" for i in range(5)], make_images=False)
    with pytest.raises(DataError, match=r"5 images listed in .* do not exist .*'m0\.png', 'm1\.png', 'm2\.png'\)"):
        open_dataset(root)


def test_native_rejects_empty_metadata_csv(tmp_path):
    _image(tmp_path / "x.png")
    _write(tmp_path / "metadata.csv", "")
    with pytest.raises(DataError, match=r"metadata\.csv is empty"):
        open_dataset(tmp_path)


def test_native_rejects_metadata_csv_without_rows(tmp_path):
    _write(tmp_path / "metadata.csv", "file,identity,label\n")
    with pytest.raises(DataError, match=r"metadata\.csv has a header but no rows"):
        open_dataset(tmp_path)


def test_native_rejects_unparseable_csv(tmp_path):
    (tmp_path / "metadata.csv").write_bytes(b"file,identity,label\n\xff\xfe\x00bad,\x81,0\n")
    with pytest.raises(DataError, match=r"cannot parse .*metadata\.csv as CSV"):
        open_dataset(tmp_path)


def test_native_rejects_row_with_wrong_field_count(tmp_path):
    root = _native(tmp_path, ["x.png,a,0,extra"])
    with pytest.raises(DataError, match=r"row 2 of .*metadata\.csv has 4 fields but the header has 3"):
        open_dataset(root)


def test_native_rejects_semicolon_separated_csv(tmp_path):
    _write(tmp_path / "metadata.csv", "file;identity;label\nx.png;a;0\n")
    with pytest.raises(DataError, match="not comma-separated"):
        open_dataset(tmp_path)


def test_native_rejects_bad_dataset_json(tmp_path):
    root = _native(tmp_path, ["x.png,a,0"], dataset_json={"label_names": ["a"], "channels": 2})
    with pytest.raises(DataError, match=r"channels in .*dataset\.json must be 1 \(gray\) or 3"):
        open_dataset(root)


# --------------------------------------------------------------------------------------------------------------------
# folder-level errors


def test_open_dataset_rejects_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"dataset folder .*nowhere does not exist"):
        open_dataset(tmp_path / "nowhere")


@pytest.mark.parametrize("layout", ["auto", "native", "aptos"])
def test_open_dataset_rejects_empty_folder(tmp_path, layout):
    with pytest.raises(DataError, match=rf"dataset folder {tmp_path} is empty"):
        open_dataset(tmp_path, layout)


def test_auto_detection_lists_what_it_looked_for(tmp_path):
    _image(tmp_path / "loose.png")
    with pytest.raises(DataError, match=r"metadata\.csv \(native\), CXR_png/.*train\.csv.*trainLabels\.csv"):
        open_dataset(tmp_path)


def test_unknown_layout_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown layout 'imagenet'"):
        open_dataset(tmp_path, "imagenet")


def test_csv_options_with_another_layout_are_refused(tmp_path):
    root = _native(tmp_path, ["x.png,a,0"])
    with pytest.raises(ConfigError, match="label_column only applies to the csv layout"):
        open_dataset(root, "native", label_column="dx")


def test_layouts_constant_lists_every_reader():
    assert set(LAYOUTS) == {"native", "montgomery", "shenzhen", "aptos", "eyepacs", "csv"}


# --------------------------------------------------------------------------------------------------------------------
# NLM chest X-rays


def test_montgomery_reads_label_and_identity_from_file_names(tmp_path):
    root = _cxr(tmp_path, ["MCUCXR_0002_1.png", "MCUCXR_0001_0.png"])
    (root / "CXR_png" / "Thumbs.db").write_bytes(b"\x00junk")
    index = open_dataset(root, "montgomery")
    assert index.root == tmp_path
    assert [(r.file.name, r.identity, r.label) for r in index.records] == [
        ("MCUCXR_0001_0.png", "MCUCXR_0001", 0),
        ("MCUCXR_0002_1.png", "MCUCXR_0002", 1),
    ]
    assert index.label_names == ("normal", "tb") and index.channels == 1


def test_cxr_accepts_the_cxr_png_folder_itself(tmp_path):
    _cxr(tmp_path, ["CHNCXR_0001_0.png", "CHNCXR_0002_1.png"])
    index = open_dataset(tmp_path / "CXR_png")
    assert index.layout == "shenzhen" and index.root == tmp_path and len(index) == 2


def test_cxr_rejects_file_without_label_suffix(tmp_path):
    _cxr(tmp_path, ["MCUCXR_0001_0.png", "MCUCXR_0002.png"])
    with pytest.raises(DataError, match=r"MCUCXR_0002\.png.* must end in _0 \(normal\) or _1 \(tb\)"):
        open_dataset(tmp_path)


def test_cxr_reads_unknown_prefix_montgomery_style_and_notes_it(tmp_path):
    _cxr(tmp_path, ["XRAY_01_1.png", "XRAY_02_0.png"])
    index = open_dataset(tmp_path)
    assert index.layout == "montgomery"
    assert [r.label for r in index.records] == [1, 0]
    assert any("do not start with MCUCXR or CHNCXR" in n for n in index.notes)


def test_cxr_refuses_the_other_dataset_name(tmp_path):
    _cxr(tmp_path, ["CHNCXR_0001_0.png"])
    with pytest.raises(DataError, match="from shenzhen .* pass layout 'shenzhen'"):
        open_dataset(tmp_path, "montgomery")


def test_cxr_ignores_hidden_resource_forks(tmp_path):
    _cxr(tmp_path, ["MCUCXR_0001_0.png"])
    (tmp_path / "CXR_png" / "._MCUCXR_0001_0.png").write_bytes(b"\x00\x05\x16\x07")
    index = open_dataset(tmp_path)
    assert len(index) == 1 and any("hidden" in n for n in index.notes)


# --------------------------------------------------------------------------------------------------------------------
# fundus sets


def test_aptos_uses_id_code_as_identity_and_notes_it(tmp_path):
    index = open_dataset(_aptos(tmp_path, [("ffa47f6a7bf4", 4), ("000c1434d8d7", 2)]))
    assert index.layout == "aptos" and index.channels == 3
    assert index.label_names == ("no_dr", "mild", "moderate", "severe", "proliferative")
    assert [(r.identity, r.label) for r in index.records] == [("000c1434d8d7", 2), ("ffa47f6a7bf4", 4)]
    assert any("no patient ids" in n for n in index.notes)


def test_aptos_rejects_grade_outside_zero_to_four(tmp_path):
    root = _aptos(tmp_path, [("a1", 0), ("b2", 5)])
    with pytest.raises(DataError, match=r"diagnosis 5 in row 3 of .*train\.csv is outside 0\.\.4"):
        open_dataset(root)


def test_aptos_rejects_missing_columns(tmp_path):
    _write(tmp_path / "train.csv", "id,grade\na,0\n")
    (tmp_path / "train_images").mkdir()
    with pytest.raises(DataError, match=r"missing columns 'id_code', 'diagnosis' \(found columns: id, grade\)"):
        open_dataset(tmp_path, "aptos")


@pytest.mark.parametrize("folder", ["train", "train_images", ""])
def test_eyepacs_parses_patient_and_finds_the_image_folder(tmp_path, folder):
    rows = [("10_left", 0), ("10_right", 2), ("13_left", 4), ("7_right", 1)]
    index = open_dataset(_eyepacs(tmp_path, rows, folder))
    assert index.layout == "eyepacs" and index.channels == 3
    by_name = {r.file.name: (r.identity, r.label) for r in index.records}
    assert by_name == {"10_left.jpeg": ("10", 0), "10_right.jpeg": ("10", 2), "13_left.jpeg": ("13", 4),
                       "7_right.jpeg": ("7", 1)}  # fmt: skip
    assert all(r.file.parent == (tmp_path / folder if folder else tmp_path) for r in index.records)
    assert sorted(index.identities()) == ["10", "13", "7"]


def test_eyepacs_rejects_image_without_eye_suffix(tmp_path):
    root = _eyepacs(tmp_path, [("10_left", 0), ("11", 1)])
    with pytest.raises(DataError, match=r"image '11' in row 3 .* does not end in _left or _right"):
        open_dataset(root)


def test_eyepacs_without_images_says_where_it_looked(tmp_path):
    _write(tmp_path / "trainLabels.csv", "image,level\n1_left,0\n")
    with pytest.raises(DataError, match=r"none of the 1 images .* is in .*train, .*train_images"):
        open_dataset(tmp_path)


# --------------------------------------------------------------------------------------------------------------------
# generic csv


def test_csv_layout_reads_named_columns_with_string_labels(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        _image(tmp_path / "imgs" / name)
    csv_file = _write(tmp_path / "labels.csv", "path,dx,patient\na.png,tb,P1\nb.png,normal,P2\nc.png,tb,\n")
    index = open_dataset(
        tmp_path / "imgs", "csv", csv_path=csv_file, file_column="path", label_column="dx", identity_column="patient"
    )
    assert index.layout == "csv" and index.root == tmp_path / "imgs"
    assert index.label_names == ("normal", "tb")
    assert [(r.file.name, r.identity, r.label) for r in index.records] == [
        ("a.png", "P1", 1),
        ("b.png", "P2", 0),
        ("c.png", None, 1),
    ]


def test_csv_layout_sorts_integer_labels_numerically(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        _image(tmp_path / name)
    csv_file = _write(tmp_path / "l.csv", "file,label\na.png,10\nb.png,2\nc.png,02\n")
    index = open_dataset(csv_file)
    assert index.label_names == ("2", "10")
    assert [r.label for r in index.records] == [1, 0, 0]
    assert any("identities are unknown" in n for n in index.notes)


def test_csv_layout_uses_declared_labels_in_their_order(tmp_path):
    _image(tmp_path / "a.png")
    _image(tmp_path / "b.png")
    csv_file = _write(tmp_path / "l.csv", "file,label\na.png,tb\nb.png,0\n")
    index = open_dataset(tmp_path, "csv", csv_path=csv_file, labels=["normal", "tb"])
    assert index.label_names == ("normal", "tb")
    assert [r.label for r in index.records] == [1, 0]  # "0" read as an index into the declared names


def test_csv_layout_rejects_label_outside_declared_set(tmp_path):
    _image(tmp_path / "a.png")
    csv_file = _write(tmp_path / "l.csv", "file,label\na.png,covid\n")
    with pytest.raises(DataError, match=r"label 'covid' in row 2 of .*l\.csv is not one of \['normal', 'tb'\]"):
        open_dataset(tmp_path, "csv", csv_path=csv_file, labels=["normal", "tb"])


def test_csv_layout_rejects_missing_named_column(tmp_path):
    _image(tmp_path / "a.png")
    csv_file = _write(tmp_path / "l.csv", "file,label\na.png,x\n")
    with pytest.raises(DataError, match=r"missing column 'patient' \(found columns: file, label\)"):
        open_dataset(tmp_path, "csv", csv_path=csv_file, identity_column="patient")


def test_csv_layout_without_csv_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="csv_path"):
        open_dataset(tmp_path, "csv")


# --------------------------------------------------------------------------------------------------------------------
# auto-detection


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda p: _native(p, ["x.png,a,0"]), "native"),
        (lambda p: _cxr(p, ["MCUCXR_0001_0.png"]), "montgomery"),
        (lambda p: _cxr(p, ["CHNCXR_0001_1.png"]), "shenzhen"),
        (lambda p: _aptos(p, [("abc", 1)]), "aptos"),
        (lambda p: _eyepacs(p, [("1_left", 1)]), "eyepacs"),
    ],
)
def test_auto_detects_every_layout(tmp_path, build, expected):
    build(tmp_path)
    assert detect_layout(tmp_path) == expected
    assert open_dataset(tmp_path).layout == expected


def test_auto_with_csv_path_reads_the_csv_layout(tmp_path):
    _image(tmp_path / "a.png")
    csv_file = _write(tmp_path / "l.csv", "file,label\na.png,x\n")
    assert open_dataset(tmp_path, csv_path=csv_file).layout == "csv"


def test_channels_option_declares_or_contradicts(tmp_path):
    root = _native(tmp_path, ["x.png,a,0"])
    assert open_dataset(root, channels=3).channels == 3
    cxr = _cxr(tmp_path / "cxr", ["MCUCXR_0001_0.png"])
    with pytest.raises(ConfigError, match="contradicts the montgomery layout"):
        open_dataset(cxr, channels=3)
