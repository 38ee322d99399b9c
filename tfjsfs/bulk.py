"""Compatibility: ``tfjsfs.bulk`` moved to :mod:`tfjsfs.model.bulk`.

Kept for code and docs that import ``tfjsfs.bulk``.
"""

from .model.bulk import *  # noqa: F403
from .model.bulk import __all__  # noqa: F401
