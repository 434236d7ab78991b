"""The strict base of every stage's options (``from_dict`` refuses unknown keys).

The implementation lives in :mod:`gan_zoo.config`, the lower layer, so that ``gan_zoo`` stands alone without importing
latentwalk; this module is the name latentwalk's users and stages import it by. Same objects, not copies:
``except latentwalk.errors.ConfigError`` catches what gan_zoo raises.
"""

from gan_zoo.config import *  # noqa: F403
from gan_zoo.config import __all__  # noqa: F401
