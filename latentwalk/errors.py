"""The error types of latentwalk: every failure a user can cause is one of these, with a one-line message.

The implementation lives in :mod:`gan_zoo.errors`, the lower layer, so that ``gan_zoo`` stands alone without importing
latentwalk; this module is the name latentwalk's users and stages import it by. Same objects, not copies:
``except latentwalk.errors.ConfigError`` catches what gan_zoo raises.
"""

from gan_zoo.errors import *  # noqa: F403
from gan_zoo.errors import __all__  # noqa: F401
