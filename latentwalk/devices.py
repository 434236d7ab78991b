"""Device names (auto, cpu, cuda[:N], mps) to torch devices.

The implementation lives in :mod:`gan_zoo.devices`, the lower layer, so that ``gan_zoo`` stands alone without importing
latentwalk; this module is the name latentwalk's users and stages import it by. Same objects, not copies:
``except latentwalk.errors.ConfigError`` catches what gan_zoo raises.
"""

from gan_zoo.devices import *  # noqa: F403
from gan_zoo.devices import __all__  # noqa: F401
