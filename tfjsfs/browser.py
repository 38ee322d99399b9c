"""Compatibility: ``tfjsfs.browser`` moved to :mod:`tfjsfs.format.browser`.

Kept for code and docs that import ``tfjsfs.browser``.
"""

from .format.browser import *  # noqa: F403
from .format.browser import __all__  # noqa: F401
