"""Who owns an output: the rule every command follows before it writes, replaces or deletes.

The implementation lives in :mod:`gan_zoo.outputs`, the lower layer, so that ``gan_zoo`` stands alone without importing
latentwalk; this module is the name latentwalk's users and stages import it by. Same objects, not copies:
``except latentwalk.errors.ConfigError`` catches what gan_zoo raises.
"""

from gan_zoo.outputs import *  # noqa: F403
from gan_zoo.outputs import __all__  # noqa: F401
