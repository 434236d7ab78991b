"""Derived seeds: the one place a run's seed becomes the seed of an image, an item, a model or a label.

Every derived seed is a pure function of the run's seed and a key, so results depend neither on batch size, nor on
the order work is dealt out, nor on which other items run in the same process.
"""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = ["derive_seed", "sequence_seed"]


def derive_seed(namespace: str, seed: int, key: Any) -> int:
    """A 63-bit seed from SHA-256 of ``"{namespace}:{seed}:{key}"`` (``key`` any value with a stable ``str``).

    The namespace keeps stages apart (``"latentwalk.invert"``, ``"latentwalk.guides"``, ``"latentwalk.ksame"``): the
    same run seed and key give unrelated numbers in different stages.
    """
    digest = hashlib.sha256(f"{namespace}:{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def sequence_seed(*entropy: int) -> int:
    """A 63-bit seed from integers (numpy's ``SeedSequence``), e.g. a work item's ``(seed, round, label, i)``."""
    import numpy as np

    state = np.random.SeedSequence(list(entropy)).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1
