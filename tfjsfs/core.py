"""Compatibility: ``tfjsfs.core`` is now :mod:`tfjsfs.fs.core`.

Kept for entry points and pickles that name ``tfjsfs.core:TFJSFileSystem_<protocol>``.
"""

from typing import Any

from .fs import core as _core
from .fs.core import TFJSFileSystem

__all__ = ["TFJSFileSystem"]


def __getattr__(name: str) -> Any:
    """``TFJSFileSystem_<protocol>`` classes, as :mod:`tfjsfs.fs.core` makes them."""
    return getattr(_core, name)
