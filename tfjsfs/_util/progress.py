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
from typing import Any

from fsspec.callbacks import DEFAULT_CALLBACK, Callback

__all__ = ["progress_callback", "tqdm_callback", "watched"]


def watched() -> bool:
    """Whether a person is probably watching (stderr is a terminal)."""
    stream = sys.stderr
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


def tqdm_callback(
    desc: str, unit: str = "B", *, leave: bool = False, file: Any = None
) -> Callback | None:
    """A tqdm bar as an fsspec callback, or None when tqdm is not installed.

    Parameters
    ----------
    desc : str
        The bar's label.
    unit : str
        ``"B"`` counts bytes (scaled, 1024-based); anything else counts items.
    leave : bool
        Keep the finished bar on screen.
    file : file object, optional
        Where the bar is drawn (tqdm's default: stderr).
    """
    try:
        from fsspec.callbacks import TqdmCallback  # tqdm is optional (the "cli" extra)
    except ImportError:
        return None
    kwargs: dict[str, Any] = {"desc": desc, "unit": unit, "leave": leave, "dynamic_ncols": True}
    if unit == "B":
        kwargs.update(unit_scale=True, unit_divisor=1024)
    if file is not None:
        kwargs["file"] = file
    try:
        return TqdmCallback(tqdm_kwargs=kwargs)
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
        bar = tqdm_callback(desc)
    if bar is None:
        yield DEFAULT_CALLBACK
        return
    try:
        yield bar
    finally:
        bar.close()
