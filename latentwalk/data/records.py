"""The in-memory index of an image dataset: one record per image, whatever the layout on disk."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from latentwalk.errors import DataError

__all__ = ["ImageRecord", "DatasetIndex", "SPLITS"]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset.

    Attributes:
        file: absolute path of the image file.
        identity: patient identifier (``None`` when the layout has none); private, never written to synthetic output.
        label: class index into :attr:`DatasetIndex.label_names`.
        split: ``"train"``, ``"val"``, ``"test"`` or ``None`` when not assigned.
    """

    file: Path
    identity: str | None
    label: int
    split: str | None = None


@dataclass(frozen=True)
class DatasetIndex:
    """A validated list of images with labels, identities and splits.

    Attributes:
        root: folder the dataset was read from.
        layout: layout name it was read with (``native``, ``montgomery``, ``shenzhen``, ``aptos``, ``eyepacs``,
            ``csv``).
        records: one :class:`ImageRecord` per image, in a stable order (sorted by relative file path).
        label_names: names of the classes; ``label`` indexes this tuple.
        channels: declared channels of the images (1 gray, 3 RGB), or ``None`` when the layout does not declare it.
        notes: facts about how the layout was interpreted, shown to the user (e.g. "identity = image").
    """

    root: Path
    layout: str
    records: tuple[ImageRecord, ...]
    label_names: tuple[str, ...]
    channels: int | None = None
    notes: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.records)

    @property
    def has_identities(self) -> bool:
        """True when every record has an identity."""
        return all(r.identity is not None for r in self.records)

    def require_identities(self, step: str) -> None:
        """Raise :class:`DataError` unless every record has an identity; ``step`` names what needs them."""
        missing = sum(r.identity is None for r in self.records)
        if missing:
            raise DataError(
                f"{step} needs a patient identity for every image, but {missing} of {len(self.records)} images in "
                f"{self.root} have none; add an 'identity' column to metadata.csv (or pass --identity-column)"
            )

    def identities(self) -> list[str]:
        """Distinct identities in first-seen order (records without identity are skipped)."""
        return list(dict.fromkeys(r.identity for r in self.records if r.identity is not None))

    def label_counts(self) -> dict[str, int]:
        """Images per label name, in label order."""
        counts = Counter(r.label for r in self.records)
        return {name: counts.get(i, 0) for i, name in enumerate(self.label_names)}

    def split_counts(self) -> dict[str, dict[str, int]]:
        """Images per split and label name (``"unassigned"`` for records without a split)."""
        out: dict[str, dict[str, int]] = {}
        for r in self.records:
            per = out.setdefault(r.split or "unassigned", {n: 0 for n in self.label_names})
            per[self.label_names[r.label]] += 1
        return out

    def subset(self, split: str | Iterable[str]) -> DatasetIndex:
        """The records of one split (or several), as a new index."""
        wanted = {split} if isinstance(split, str) else set(split)
        bad = wanted - set(SPLITS)
        if bad:
            raise DataError(f"unknown split {sorted(bad)}; expected some of {list(SPLITS)}")
        return replace(self, records=tuple(r for r in self.records if r.split in wanted))

    def with_splits(self, assignment: dict[str, str]) -> DatasetIndex:
        """A copy whose records take their split from ``assignment`` (identity -> split)."""
        self.require_identities("assigning identity-disjoint splits")
        return replace(self, records=tuple(replace(r, split=assignment[r.identity]) for r in self.records))
