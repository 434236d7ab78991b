"""Atomic writes, bounded reads and versioned JSON: the file primitives every stage uses.

The implementation lives in :mod:`gan_zoo.io`, the lower layer, so that ``gan_zoo`` stands alone without importing
latentwalk; this module is the name latentwalk's users and stages import it by. Same objects, not copies:
``except latentwalk.errors.ConfigError`` catches what gan_zoo raises.
"""

from gan_zoo.io import *  # noqa: F403
from gan_zoo.io import __all__  # noqa: F401
