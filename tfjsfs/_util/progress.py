"""Progress reporting: fsspec callbacks, and a tqdm bar when a person is watching.

Loads report bytes through an :class:`fsspec.callbacks.Callback`
(``set_size`` once with the total, then ``relative_update`` per chunk), so
any fsspec-aware progress display works. With ``progress=None`` (the
default) a :class:`fsspec.callbacks.TqdmCallback` bar is shown only when
stderr is a terminal and tqdm is installed; ``progress=True`` forces it,
``progress=False`` never shows one.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from fsspec.callbacks import DEFAULT_CALLBACK, Callback

__all__ = ["progress_callback", "watched"]


def watched() -> bool:
    """Whether a person is probably watching (stderr is a terminal)."""
    stream = sys.stderr
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


def _tqdm_callback(desc: str) -> Callback | None:
    try:
        from fsspec.callbacks import TqdmCallback

        return TqdmCallback(
            tqdm_kwargs={
                "desc": desc,
                "unit": "B",
                "unit_scale": True,
                "unit_divisor": 1024,
                "leave": False,
                "dynamic_ncols": True,
            }
        )
    except ImportError:
        return None


@contextlib.contextmanager
def progress_callback(
    callback: Callback | None = None, progress: bool | None = None, desc: str = "tfjsfs"
) -> Iterator[Callback]:
    """The callback to report to: *callback* if given, else maybe a tqdm bar.

    A bar made here is closed on exit.

    Parameters
    ----------
    callback : fsspec.callbacks.Callback, optional
        The caller's own callback; used as it is.
    progress : bool or None
        Show a tqdm bar: None when stderr is a terminal, True always (if
        tqdm is installed), False never.
    desc : str
        The bar's label.
    """
    if callback is not None and callback is not DEFAULT_CALLBACK:
        yield callback
        return
    bar = None
    if progress or (progress is None and watched()):
        bar = _tqdm_callback(desc)
    if bar is None:
        yield DEFAULT_CALLBACK
        return
    try:
        yield bar
    finally:
        bar.close()
