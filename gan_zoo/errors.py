"""Exception types raised for users.

Every message is one sentence: what is wrong, what was expected, what was found, and how to fix it. The CLI prints
these without a traceback (``--debug`` shows it); anything else escaping the library is a bug.
"""

from __future__ import annotations

__all__ = [
    "LatentwalkError",
    "ConfigError",
    "DataError",
    "MissingWeightsError",
    "UnsafePickleError",
    "DistributedError",
]


class LatentwalkError(Exception):
    """Base class of every error meant for a user rather than a developer."""


class ConfigError(LatentwalkError, ValueError):
    """An option or configuration value is invalid or inconsistent."""


class DataError(LatentwalkError):
    """An input dataset (images, metadata, layout) is unusable as given."""


class MissingWeightsError(LatentwalkError, FileNotFoundError):
    """A weights file needed offline is absent; the message says which file and where to put it."""


class UnsafePickleError(LatentwalkError):
    """A pickle asked for a global outside the allowlist; nothing from it was executed."""


class DistributedError(LatentwalkError):
    """Another process of a torchrun job failed; the message names its rank and its error."""
