"""Third-party weights (LPIPS, Inception, ...) from explicit paths and the torch cache; never downloaded by default.

The implementation lives in :mod:`gan_zoo.pretrained`, the lower layer, so that ``gan_zoo`` stands alone without
importing latentwalk; this module is the name latentwalk's users and stages import it by. Same objects, not copies:
``except latentwalk.errors.ConfigError`` catches what gan_zoo raises.
"""

from gan_zoo.pretrained import *  # noqa: F403
from gan_zoo.pretrained import __all__  # noqa: F401
