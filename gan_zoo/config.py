"""What every stage's frozen configuration dataclass shares: plain-dict round trips that refuse unknown keys."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, ClassVar, TypeVar

from gan_zoo.errors import ConfigError

__all__ = ["StageConfig"]

T = TypeVar("T", bound="StageConfig")


class StageConfig:
    """Mixin for ``@dataclass(frozen=True)`` configs: ``to_dict`` and a strict ``from_dict``.

    A misspelt key (``ksame_k=10``) is an error naming it, never a silently ignored default.
    """

    STAGE: ClassVar[str] = "stage"  # word used in error messages ("unknown training option(s) ...")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.STAGE} option(s) {unknown}; expected some of {sorted(known)}")
        return cls(**data)
