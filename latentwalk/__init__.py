"""latentwalk: anonymised synthetic medical image datasets from a privacy-preserving walk in a GAN's latent space.

Importing this package does no work: no network, no CUDA, no heavy optional imports.
"""

from __future__ import annotations

from latentwalk.errors import ConfigError, DataError, LatentwalkError, MissingWeightsError, UnsafePickleError

__version__ = "0.1.0.dev0"

__all__ = [
    "__version__",
    "LatentwalkError",
    "ConfigError",
    "DataError",
    "MissingWeightsError",
    "UnsafePickleError",
]
