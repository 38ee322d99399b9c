"""Compatibility: ``tfjsfs.upath`` moved to :mod:`tfjsfs.fs.upath`.

Kept for universal-pathlib entry points.
"""

from .fs.upath import *  # noqa: F403
from .fs.upath import __all__  # noqa: F401
