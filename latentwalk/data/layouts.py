"""Readers for dataset layouts on disk, each turning a folder into a validated :class:`DatasetIndex`.

Layouts:
    ``native``: our own format, a folder with ``metadata.csv`` (``file, identity, label[, split]``) and an optional
    ``dataset.json`` (``{"label_names": [...], "channels": 1|3}``).
    ``montgomery`` / ``shenzhen``: the NLM chest X-ray sets, ``CXR_png/<MCUCXR|CHNCXR>_<nnnn>_<0|1>.png``.
    ``aptos``: APTOS 2019 blindness detection, ``train.csv`` (``id_code, diagnosis``) + ``train_images/<id_code>.png``.
    ``eyepacs``: Kaggle diabetic retinopathy, ``trainLabels.csv`` (``image, level``) + ``train/<image>.jpeg``.
    ``csv``: any CSV with user-named file, label and (optional) identity columns, plus an image folder.
    ``auto``: pick one of the above from what the folder holds.

Every reader validates the whole input before returning: a problem raises one :class:`DataError` and nothing is
partially returned. Row numbers in messages count the header as row 1, as a spreadsheet shows them.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from latentwalk.data.records import SPLITS, DatasetIndex, ImageRecord
from latentwalk.errors import ConfigError, DataError

__all__ = ["LAYOUTS", "open_dataset", "detect_layout"]

LAYOUTS = ("native", "montgomery", "shenzhen", "aptos", "eyepacs", "csv")  # plus "auto", which detects one of them

DR_LABEL_NAMES = ("no_dr", "mild", "moderate", "severe", "proliferative")
CXR_LABEL_NAMES = ("normal", "tb")
_CXR_PREFIXES = {"MCUCXR": "montgomery", "CHNCXR": "shenzhen"}
_NATIVE_COLUMNS = ("file", "identity", "label", "split")
_MAX_LISTED = 3  # problems named in one message before "and N more"


@dataclass(frozen=True)
class _Table:
    """A parsed CSV: ``rows`` pairs each row's spreadsheet row number (header = 1) with its cells by column."""

    path: Path
    columns: tuple[str, ...]
    rows: tuple[tuple[int, dict[str, str]], ...]


@dataclass(frozen=True)
class _Entry:
    """One image as listed by a layout, before the checks shared by all layouts."""

    file: Path  # absolute, normalised
    identity: str | None
    label: int
    split: str | None = None
    row: int | None = None  # row of the listing CSV, None for folder listings


# --------------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------------


def open_dataset(
    path: str | os.PathLike,
    layout: str = "auto",
    *,
    csv_path: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    file_column: str = "file",
    label_column: str = "label",
    identity_column: str | None = None,
    labels: Sequence[str] | None = None,
    channels: int | None = None,
) -> DatasetIndex:
    """Read a dataset folder into a validated index.

    Args:
        path: the dataset folder (for ``csv``, the image folder or the CSV file itself).
        layout: ``"auto"`` (detect it, see :func:`detect_layout`) or one of :data:`LAYOUTS`.
        csv_path: ``csv`` layout only: the CSV listing the images.
        image_dir: ``csv`` layout only: folder the file column is relative to (default: ``path`` when it is a
            folder, else the CSV's folder).
        file_column: ``csv`` layout only: column holding image paths.
        label_column: ``csv`` layout only: column holding labels (names or integers).
        identity_column: ``csv`` layout only: column holding patient identities; ``None`` = identities unknown.
        labels: ``csv`` layout only: the class names in index order; ``None`` = the sorted distinct values.
        channels: declared image channels (1 gray, 3 colour) for layouts that do not fix them (``csv``, or
            ``native`` without ``channels`` in ``dataset.json``); ``None`` = undeclared.

    Returns:
        :class:`DatasetIndex` with records sorted by file path relative to ``index.root``.

    Raises:
        ConfigError: unknown layout, or an option given that the layout does not use.
        DataError: the folder, its listing or its files are unusable; the message names the file, row or column.
    """
    if layout != "auto" and layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; expected auto or one of {', '.join(LAYOUTS)}")
    if channels not in (None, 1, 3):
        raise ConfigError(f"channels must be 1 (gray) or 3 (colour), got {channels!r}")
    path = _absolute(path)
    if layout == "auto":
        layout = "csv" if csv_path is not None or path.suffix.lower() == ".csv" else detect_layout(path)
    csv_options = {
        "csv_path": csv_path is not None,
        "image_dir": image_dir is not None,
        "file_column": file_column != "file",
        "label_column": label_column != "label",
        "identity_column": identity_column is not None,
        "labels": labels is not None,
    }
    if layout != "csv":
        given = [name for name, is_set in csv_options.items() if is_set]
        if given:
            raise ConfigError(
                f"option {given[0]} only applies to the csv layout, but the layout is {layout!r}; "
                f"drop it or pass layout='csv'"
            )
        _require_folder(path)
    if layout == "csv":
        return _read_csv_layout(
            path,
            csv_path=csv_path,
            image_dir=image_dir,
            file_column=file_column,
            label_column=label_column,
            identity_column=identity_column,
            labels=labels,
            channels=channels,
        )
    reader = _READERS[layout]
    index = reader(path, layout)
    return _declare_channels(index, channels)


def detect_layout(path: str | os.PathLike) -> str:
    """Name the layout of a dataset folder from the files it holds.

    Looks, in order, for ``metadata.csv`` (native), ``CXR_png/`` or a folder named ``CXR_png`` (montgomery or
    shenzhen, told apart by the file prefix MCUCXR/CHNCXR), ``train.csv`` + ``train_images/`` (aptos) and
    ``trainLabels.csv`` (eyepacs).

    Raises:
        DataError: the folder is missing or empty, or none of the above is there.
    """
    path = _absolute(path)
    _require_folder(path)
    if (path / "metadata.csv").is_file():
        return "native"
    if (path / "CXR_png").is_dir() or path.name == "CXR_png":
        pngs = _cxr_pngs(_cxr_dir(path))
        prefixes = {_CXR_PREFIXES.get(p.name.split("_", 1)[0]) for p in pngs} - {None}
        return prefixes.pop() if len(prefixes) == 1 else "montgomery"
    if (path / "train.csv").is_file() and (path / "train_images").is_dir():
        return "aptos"
    if (path / "trainLabels.csv").is_file():
        return "eyepacs"
    raise DataError(
        f"cannot tell the layout of {path}: looked for metadata.csv (native), CXR_png/ (montgomery, shenzhen), "
        f"train.csv with train_images/ (aptos) and trainLabels.csv (eyepacs); pass the layout explicitly, or use "
        f"the csv layout with a CSV listing file and label columns"
    )


# --------------------------------------------------------------------------------------------------------------------
# Layout readers
# --------------------------------------------------------------------------------------------------------------------


def _require_folder(path: Path) -> None:
    """Raise :class:`DataError` unless ``path`` is an existing, non-empty folder."""
    if not path.exists():
        raise DataError(f"dataset folder {path} does not exist; check the path")
    if not path.is_dir():
        raise DataError(f"{path} is a file, not a folder; pass the dataset folder (or use the csv layout)")
    if not any(path.iterdir()):
        raise DataError(f"dataset folder {path} is empty; point to the folder that holds the images")


def _read_native(root: Path, layout: str) -> DatasetIndex:
    """Our own layout: ``metadata.csv`` + optional ``dataset.json``."""
    table = _read_table(root / "metadata.csv", hint="the native layout needs metadata.csv with file, identity, label")
    notes: list[str] = []
    allowed = set(_NATIVE_COLUMNS) | {"file_name"}
    for column in table.columns:
        if column not in allowed:
            raise DataError(
                f"unexpected column {column!r} in {table.path}; expected file, identity, label[, split] "
                f"(rename or remove it)"
            )
    if "file" in table.columns and "file_name" in table.columns:
        raise DataError(f"{table.path} has both 'file' and 'file_name' columns; keep one of them")
    file_column = "file_name" if "file_name" in table.columns else "file"
    if file_column == "file_name":
        notes.append("column file_name read as file (Hugging Face imagefolder naming)")
    _require_columns(table, [file_column, "label"])
    declared_names, declared_channels = _read_dataset_json(root / "dataset.json")

    raw_labels = {row: _parse_label_int(cells["label"], row, table) for row, cells in table.rows}
    if declared_names is not None:
        label_names = declared_names
        for row, value in raw_labels.items():
            if value >= len(label_names):
                raise DataError(
                    f"label {value} in row {row} of {table.path} is outside the {len(label_names)} classes declared "
                    f"in dataset.json ({', '.join(label_names)}); fix the row or the label_names"
                )
        remap = {i: i for i in range(len(label_names))}
    else:
        distinct = sorted(set(raw_labels.values()))
        label_names = tuple(str(v) for v in distinct)
        remap = {v: i for i, v in enumerate(distinct)}
        if distinct != list(range(len(distinct))):
            notes.append(
                f"labels {', '.join(label_names)} are not 0..{len(distinct) - 1}: renumbered in that order "
                f"(names keep the original values); add dataset.json with label_names to fix the class indices"
            )

    entries = []
    for row, cells in table.rows:
        identity = cells.get("identity", "") or None
        split = cells.get("split", "") or None
        if split is not None and split not in SPLITS:
            raise DataError(
                f"split {split!r} in row {row} of {table.path} is not one of {', '.join(SPLITS)}; "
                f"fix the row or leave the cell empty"
            )
        file = _relative_file(cells[file_column], root, row, table, file_column, allow_absolute=False)
        entries.append(_Entry(file, identity, remap[raw_labels[row]], split, row))

    missing_identity = sum(e.identity is None for e in entries)
    if "identity" not in table.columns:
        notes.append("no identity column in metadata.csv: patient identities are unknown")
    elif missing_identity:
        notes.append(f"{missing_identity} of {len(entries)} rows have no identity")
    return _build_index(root, layout, entries, table.path, label_names, declared_channels, notes)


def _read_cxr(path: Path, layout: str) -> DatasetIndex:
    """NLM Montgomery / Shenzhen: ``CXR_png/<prefix>_<nnnn>_<0|1>.png``."""
    if not (path / "CXR_png").is_dir() and path.name != "CXR_png":
        raise DataError(f"no CXR_png folder in {path}; the {layout} layout expects <root>/CXR_png/*.png")
    folder = _cxr_dir(path)
    root = folder.parent
    notes = ["identity = file stem without the _<label> suffix (one frontal image per patient)"]
    skipped_hidden = sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.suffix.lower() == ".png")
    pngs = _cxr_pngs(folder)
    if not pngs:
        raise DataError(f"no .png images in {folder}; unpack the dataset so that CXR_png holds the images")
    if skipped_hidden:
        notes.append(f"ignored {len(skipped_hidden)} hidden files such as {skipped_hidden[0]}")

    found = Counter(_CXR_PREFIXES.get(p.name.split("_", 1)[0], "other") for p in pngs)
    if found["montgomery"] and found["shenzhen"]:
        raise DataError(
            f"{folder} mixes Montgomery (MCUCXR_*) and Shenzhen (CHNCXR_*) images; keep one dataset per folder"
        )
    actual = "shenzhen" if found["shenzhen"] else "montgomery" if found["montgomery"] else None
    if actual is not None and actual != layout:
        raise DataError(
            f"the images in {folder} are from {actual} ({'CHNCXR' if actual == 'shenzhen' else 'MCUCXR'}_*) but the "
            f"{layout} layout was asked for; pass layout {actual!r} or 'auto'"
        )
    if found["other"]:
        notes.append(
            f"{found['other']} file names do not start with MCUCXR or CHNCXR; read them montgomery-style "
            f"(label = last digit after '_')"
        )

    entries = []
    for png in pngs:
        match = re.fullmatch(r"(.+)_([01])", png.stem)
        if match is None:
            raise DataError(
                f"cannot read a label from {png}: {layout} file names must end in _0 (normal) or _1 (tb); "
                f"rename or remove the file"
            )
        entries.append(_Entry(png, match.group(1), int(match.group(2))))
    return _build_index(root, layout, entries, folder, CXR_LABEL_NAMES, 1, notes)


def _read_aptos(root: Path, layout: str) -> DatasetIndex:
    """APTOS 2019: ``train.csv`` (``id_code, diagnosis``) + ``train_images/<id_code>.png``."""
    table = _read_table(root / "train.csv", hint="the aptos layout needs train.csv with id_code, diagnosis")
    _require_columns(table, ["id_code", "diagnosis"])
    image_dir = root / "train_images"
    if not image_dir.is_dir():
        raise DataError(f"no train_images folder in {root}; the aptos layout expects train_images/<id_code>.png")
    entries = []
    for row, cells in table.rows:
        id_code = _nonempty(cells["id_code"], row, table, "id_code")
        label = _parse_label_int(cells["diagnosis"], row, table, column="diagnosis")
        _check_label_range(label, DR_LABEL_NAMES, row, table, "diagnosis")
        entries.append(_Entry(_normalise(image_dir / f"{id_code}.png"), id_code, label, None, row))
    notes = [
        "APTOS 2019 has no patient ids: identity = id_code, so both eyes of one patient may count as two identities"
    ]
    return _build_index(root, layout, entries, table.path, DR_LABEL_NAMES, 3, notes)


def _read_eyepacs(root: Path, layout: str) -> DatasetIndex:
    """Kaggle EyePACS: ``trainLabels.csv`` (``image, level``) + ``<image>.jpeg`` in ``train/``, ``train_images/`` or
    the root."""
    table = _read_table(root / "trainLabels.csv", hint="the eyepacs layout needs trainLabels.csv with image, level")
    _require_columns(table, ["image", "level"])
    names = [_nonempty(cells["image"], row, table, "image") for row, cells in table.rows]
    candidates = [root / "train", root / "train_images", root]
    present = {
        folder: len({f"{n}.jpeg" for n in names} & set(os.listdir(folder))) for folder in candidates if folder.is_dir()
    }
    image_dir = max(present, key=lambda f: present[f]) if present else None
    if image_dir is None or present[image_dir] == 0:
        raise DataError(
            f"none of the {len(names)} images listed in {table.path} (<image>.jpeg) is in {root}/train, "
            f"{root}/train_images or {root}; unpack the images into one of these folders"
        )
    entries = []
    for (row, cells), name in zip(table.rows, names, strict=True):
        match = re.fullmatch(r"(.+)_(left|right)", name)
        if match is None:
            raise DataError(
                f"image {name!r} in row {row} of {table.path} does not end in _left or _right, so its patient is "
                f"unknown; fix the row"
            )
        label = _parse_label_int(cells["level"], row, table, column="level")
        _check_label_range(label, DR_LABEL_NAMES, row, table, "level")
        entries.append(_Entry(_normalise(image_dir / f"{name}.jpeg"), match.group(1), label, None, row))
    notes = [f"identity = patient number before _left/_right; images read from {image_dir}"]
    return _build_index(root, layout, entries, table.path, DR_LABEL_NAMES, 3, notes)


def _read_csv_layout(
    path: Path,
    *,
    csv_path: str | os.PathLike | None,
    image_dir: str | os.PathLike | None,
    file_column: str,
    label_column: str,
    identity_column: str | None,
    labels: Sequence[str] | None,
    channels: int | None,
) -> DatasetIndex:
    """Generic CSV with user-named columns."""
    if csv_path is None:
        if path.suffix.lower() != ".csv":
            raise ConfigError("the csv layout needs csv_path (--csv-path FILE) naming the CSV that lists the images")
        csv_path = path
    csv_file = _absolute(csv_path)
    if image_dir is not None:
        root = _absolute(image_dir)
    else:
        root = path if path.is_dir() else csv_file.parent
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; pass the folder the CSV's file column is relative to")
    if labels is not None:
        labels = tuple(str(name) for name in labels)
        if not labels or len(set(labels)) != len(labels) or not all(labels):
            raise ConfigError(f"labels must be distinct non-empty names, got {list(labels)}")
    table = _read_table(csv_file, hint=f"the csv layout needs a CSV with columns {file_column!r} and {label_column!r}")
    _require_columns(table, [file_column, label_column] + ([identity_column] if identity_column else []))

    raw = {row: _nonempty(cells[label_column], row, table, label_column) for row, cells in table.rows}
    label_names, to_index = _csv_label_mapping(raw, labels, table)
    entries = []
    for row, cells in table.rows:
        identity = (cells[identity_column] or None) if identity_column else None
        file = _relative_file(cells[file_column], root, row, table, file_column, allow_absolute=True)
        entries.append(_Entry(file, identity, to_index[raw[row]], None, row))
    notes = []
    if identity_column is None:
        notes.append("no identity column given: patient identities are unknown (pass --identity-column)")
    elif any(e.identity is None for e in entries):
        notes.append(f"{sum(e.identity is None for e in entries)} of {len(entries)} rows have no identity")
    return _build_index(root, "csv", entries, table.path, label_names, channels, notes)


_READERS: dict[str, Callable[[Path, str], DatasetIndex]] = {
    "native": _read_native,
    "montgomery": _read_cxr,
    "shenzhen": _read_cxr,
    "aptos": _read_aptos,
    "eyepacs": _read_eyepacs,
}


# --------------------------------------------------------------------------------------------------------------------
# Shared steps
# --------------------------------------------------------------------------------------------------------------------


def _build_index(
    root: Path,
    layout: str,
    entries: list[_Entry],
    source: Path,
    label_names: Sequence[str],
    channels: int | None,
    notes: list[str],
) -> DatasetIndex:
    """Check duplicates and existence of the listed files, then sort them into a :class:`DatasetIndex`."""
    if not entries:
        raise DataError(f"{source} lists no images; add at least one image")
    seen: dict[Path, _Entry] = {}
    duplicates: list[tuple[_Entry, _Entry]] = []
    for entry in entries:
        if entry.file in seen:
            duplicates.append((seen[entry.file], entry))
        else:
            seen[entry.file] = entry
    if duplicates:
        first, again = duplicates[0]
        more = f" ({len(duplicates) - 1} more files are listed twice)" if len(duplicates) > 1 else ""
        raise DataError(
            f"file {_rel(first.file, root)!r} is listed twice in {source} (rows {first.row} and {again.row}){more}; "
            f"remove the duplicate rows"
        )
    missing = [e for e in entries if not e.file.is_file()]
    if len(missing) == 1:
        where = f" (row {missing[0].row} of {source})" if missing[0].row is not None else ""
        raise DataError(
            f"image {_rel(missing[0].file, root)!r}{where} does not exist under {root}; fix the path or remove the row"
        )
    if missing:
        shown = ", ".join(repr(_rel(e.file, root)) for e in missing[:_MAX_LISTED])
        raise DataError(
            f"{len(missing)} images listed in {source} do not exist under {root} (first {_MAX_LISTED}: {shown}); "
            f"check the image folder and the paths in the CSV"
        )
    records = sorted(
        (ImageRecord(file=e.file, identity=e.identity, label=e.label, split=e.split) for e in entries),
        key=lambda r: _rel(r.file, root),
    )
    return DatasetIndex(
        root=root,
        layout=layout,
        records=tuple(records),
        label_names=tuple(label_names),
        channels=channels,
        notes=tuple(notes),
    )


def _declare_channels(index: DatasetIndex, channels: int | None) -> DatasetIndex:
    """Apply a user's channel declaration, refusing one that contradicts the layout or ``dataset.json``."""
    if channels is None or channels == index.channels:
        return index
    if index.channels is not None:
        raise ConfigError(
            f"channels={channels} contradicts the {index.layout} layout of {index.root}, which has "
            f"{index.channels}-channel images; drop the option"
        )
    return replace(index, channels=channels)


def _read_table(path: Path, hint: str) -> _Table:
    """Parse a UTF-8 (optionally BOM) comma-separated file with a header line; blank lines are skipped."""
    if not path.is_file():
        raise DataError(f"{path} not found; {hint}")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            rows = []
            for cells in reader:
                if not any(c.strip() for c in cells):
                    continue
                rows.append((reader.line_num, cells))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot parse {path} as CSV ({exc}); save it as UTF-8 comma-separated text") from exc
    if header is None or not any(c.strip() for c in header):
        raise DataError(f"{path} is empty; {hint} and one row per image")
    columns = tuple(c.strip() for c in header)
    if len(columns) == 1 and (";" in columns[0] or "\t" in columns[0]):
        raise DataError(f"{path} is not comma-separated (header {columns[0]!r}); save it with commas between columns")
    if not all(columns):
        raise DataError(f"{path} has an unnamed column in its header ({', '.join(columns)}); name or remove it")
    repeated = [c for c, n in Counter(columns).items() if n > 1]
    if repeated:
        raise DataError(f"column {repeated[0]!r} appears twice in the header of {path}; keep one")
    parsed = []
    for row, cells in rows:
        if len(cells) != len(columns):
            raise DataError(
                f"row {row} of {path} has {len(cells)} fields but the header has {len(columns)}; fix the row "
                f"(quote values that contain commas)"
            )
        parsed.append((row, {c: v.strip() for c, v in zip(columns, cells, strict=True)}))
    if not parsed:
        raise DataError(f"{path} has a header but no rows; {hint} and one row per image")
    return _Table(path=path, columns=columns, rows=tuple(parsed))


def _require_columns(table: _Table, required: Sequence[str]) -> None:
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(
            f"{table.path} is missing column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
            f"(found columns: {', '.join(table.columns)}); add or rename the column"
        )


def _read_dataset_json(path: Path) -> tuple[tuple[str, ...] | None, int | None]:
    """``(label_names, channels)`` declared in ``dataset.json``, ``None`` where absent; other keys are ignored."""
    if not path.exists():
        return None, None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot parse {path} as JSON ({exc}); fix the file or remove it") from exc
    if not isinstance(meta, dict):
        raise DataError(f'{path} must hold a JSON object such as {{"label_names": [...], "channels": 1}}')
    names = meta.get("label_names")
    if names is not None:
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise DataError(f"label_names in {path} must be a non-empty list of non-empty strings, got {names!r}")
        if len(set(names)) != len(names):
            raise DataError(f"label_names in {path} repeats a name ({names}); make the names distinct")
        names = tuple(names)
    channels = meta.get("channels")
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise DataError(f"channels in {path} must be 1 (gray) or 3 (colour), got {channels!r}")
    return names, channels


def _csv_label_mapping(
    raw: dict[int, str], labels: tuple[str, ...] | None, table: _Table
) -> tuple[tuple[str, ...], dict[str, int]]:
    """Class names and value -> index for a generic CSV.

    With ``labels``, values must be one of the names, or (only when no name looks like an integer) an integer index
    into them. Without, the names are the distinct values, sorted numerically when all are integers.
    """
    values = set(raw.values())
    if labels is None:
        if all(_is_int(v) for v in values):
            by_number: dict[int, list[str]] = {}
            for v in values:
                by_number.setdefault(int(v), []).append(v)
            numbers = sorted(by_number)
            names = tuple(str(n) for n in numbers)
            return names, {v: i for i, n in enumerate(numbers) for v in by_number[n]}
        names = tuple(sorted(values))
        return names, {v: i for i, v in enumerate(names)}
    to_index = {name: i for i, name in enumerate(labels)}
    if not any(_is_int(name) for name in labels):
        to_index.update({str(i): i for i in range(len(labels))})
    for row, value in raw.items():
        if value not in to_index:
            raise DataError(
                f"label {value!r} in row {row} of {table.path} is not one of {list(labels)}; "
                f"pass --labels or fix the row"
            )
    return labels, to_index


def _parse_label_int(value: str, row: int, table: _Table, column: str = "label") -> int:
    if not _is_int(value) or int(value) < 0:
        raise DataError(
            f"{column} {value!r} in row {row} of {table.path} is not a class index (an integer >= 0); fix the row"
        )
    return int(value)


def _check_label_range(label: int, names: Sequence[str], row: int, table: _Table, column: str) -> None:
    if label >= len(names):
        raise DataError(
            f"{column} {label} in row {row} of {table.path} is outside 0..{len(names) - 1} "
            f"({', '.join(names)}); fix the row"
        )


def _nonempty(value: str, row: int, table: _Table, column: str) -> str:
    if not value:
        raise DataError(f"row {row} of {table.path} has an empty {column!r} cell; fill it or remove the row")
    return value


def _relative_file(value: str, root: Path, row: int, table: _Table, column: str, *, allow_absolute: bool) -> Path:
    """The absolute path of a file cell, read relative to ``root`` (backslashes accepted as separators)."""
    value = _nonempty(value, row, table, column).replace("\\", "/")
    if Path(value).is_absolute() and not allow_absolute:
        raise DataError(f"file {value!r} in row {row} of {table.path} is an absolute path; give it relative to {root}")
    return _normalise(root / value)


def _cxr_dir(path: Path) -> Path:
    return path if path.name == "CXR_png" and not (path / "CXR_png").is_dir() else path / "CXR_png"


def _cxr_pngs(folder: Path) -> list[Path]:
    """Visible ``.png`` files directly in ``folder`` (``Thumbs.db``, ``._*`` resource forks and the like skipped)."""
    return sorted(
        _normalise(p)
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() == ".png" and not p.name.startswith(".")
    )


def _is_int(value: str) -> bool:
    return re.fullmatch(r"[+-]?\d+", value) is not None


def _absolute(path: str | os.PathLike) -> Path:
    return _normalise(Path(path).expanduser())


def _normalise(path: Path) -> Path:
    """Absolute path with ``.``/``..`` collapsed, without resolving symlinks (so links inside a dataset stay put)."""
    return Path(os.path.normpath(os.path.abspath(path)))


def _rel(file: Path, root: Path) -> str:
    return Path(os.path.relpath(file, root)).as_posix()
