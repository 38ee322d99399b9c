"""Progress reporting: fsspec callbacks, and a tqdm bar when a person is watching.

Loads report bytes through an :class:`fsspec.callbacks.Callback`
(``set_size`` once with the total, then ``relative_update`` per chunk), so
any fsspec-aware progress display works. With ``progress=None`` (the
default) a :class:`fsspec.callbacks.TqdmCallback` bar is shown only when
stderr is a terminal and tqdm is installed; ``progress=True`` forces it,
``progress=False`` never shows one.

A job made of parts (a sync of many models) reports each part through
fsspec's ``Callback.branched`` (:func:`part_progress`): any callback sees the
overall bytes, and :class:`PartBars` also draws one transient bar per part.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from fsspec.callbacks import DEFAULT_CALLBACK, Callback

__all__ = ["PartBars", "part_progress", "progress_callback", "tqdm_callback", "watched"]


def watched() -> bool:
    """Whether a person is probably watching (stderr is a terminal)."""
    stream = sys.stderr
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


def tqdm_callback(
    desc: str, unit: str = "B", *, leave: bool = False, file: Any = None, parts: bool = False
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
    parts : bool
        Also draw a bar for each part of the job (:class:`PartBars`).
    """
    kwargs: dict[str, Any] = {"desc": desc, "unit": unit, "leave": leave, "dynamic_ncols": True}
    if unit == "B":
        kwargs.update(unit_scale=True, unit_divisor=1024)
    if file is not None:
        kwargs["file"] = file
    try:
        from fsspec.callbacks import TqdmCallback  # tqdm is optional (the "cli" extra)

        return PartBars(kwargs, TqdmCallback) if parts else TqdmCallback(tqdm_kwargs=kwargs)
    except ImportError:
        return None


class PartBars(Callback):
    """An overall tqdm bar that opens one transient bar per part of the job.

    ``branched(src, dst, name=...)`` (fsspec's hook for child transfers)
    returns a bar labelled *name* (else the destination's last component)
    that disappears when the part is done; the overall bar stays.

    Parameters
    ----------
    tqdm_kwargs : dict
        The overall bar's tqdm arguments (the part bars share its unit, scale
        and file).
    bar_class : type
        :class:`fsspec.callbacks.TqdmCallback` (passed in: tqdm is optional).
    """

    def __init__(self, tqdm_kwargs: dict[str, Any], bar_class: type[Callback]):
        super().__init__()
        self._kwargs = dict(tqdm_kwargs)
        self._bar_class = bar_class
        self._overall = bar_class(tqdm_kwargs=self._kwargs)

    def call(self, *args: Any, **kwargs: Any) -> None:
        self._overall.size = self.size
        self._overall.absolute_update(self.value)

    def branched(self, path_1: str, path_2: str, **kwargs: Any) -> Callback:
        label = kwargs.get("name") or str(path_2).rstrip("/").rsplit("/", 1)[-1]
        return self._bar_class(tqdm_kwargs={**self._kwargs, "desc": label, "leave": False})

    def close(self) -> None:
        """Close the overall bar."""
        self._overall.close()


class _Part(Callback):
    """One part's progress: its own callback, and the whole job's."""

    def __init__(self, whole: Callback, own: Callback):
        super().__init__()
        self.whole, self.own = whole, own

    def set_size(self, size: int) -> None:
        super().set_size(size)
        self.own.set_size(size)

    def relative_update(self, inc: int = 1) -> None:
        super().relative_update(inc)
        self.own.relative_update(inc)
        self.whole.relative_update(inc)

    def absolute_update(self, value: int) -> None:
        self.relative_update(value - self.value)


@contextlib.contextmanager
def part_progress(whole: Callback, src: str, dst: str, size: int, name: str) -> Iterator[Callback]:
    """The callback for one part of a job (*size* units, e.g. one model of a sync).

    Updates advance both *whole* and the callback ``whole.branched(src, dst,
    name=name)`` returns (a per-part bar for :class:`PartBars`, nothing for a
    plain callback); that one is closed on exit.
    """
    own = whole.branched(src, dst, name=name)
    part = _Part(whole, own)
    part.set_size(size)
    try:
        yield part
    finally:
        closer = getattr(own, "close", None)
        if closer is not None:
            closer()


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
