"""What the commands print: tables, JSON, sizes and progress bars.

Results go to stdout; progress bars and summaries to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from fsspec.callbacks import NoOpCallback

from .._util.progress import tqdm_callback
from ..format.summary import human_size

__all__ = [
    "close",
    "dump_json",
    "human_size",
    "print_table",
    "progress",
    "short",
    "show_progress",
]


def show_progress(args: argparse.Namespace) -> bool:
    """Whether progress bars are wanted (``--progress``, or stderr is a terminal)."""
    if args.quiet:
        return False
    return bool(args.progress) or sys.stderr.isatty()


def progress(args: argparse.Namespace, desc: str, unit: str = "B", *, parts: bool = False) -> Any:
    """A tqdm progress callback on stderr, or a silent one when not wanted.

    With *parts*, each part of the job (a model of a sync) gets its own bar too.
    """
    if not show_progress(args):
        return NoOpCallback()
    bar = tqdm_callback(desc, unit, leave=True, file=sys.stderr, parts=parts)
    return bar or NoOpCallback()


def close(callback: Any) -> None:
    """Close a progress callback (a no-op for silent ones)."""
    closer = getattr(callback, "close", None)
    if closer is not None:
        closer()


def short(url: str) -> str:
    """The last part of a URL or path, for progress labels."""
    return str(url).rstrip("/").rsplit("/", 1)[-1] or str(url)


def print_table(rows: list[list[str]], header: list[str], right: Sequence[int] = ()) -> None:
    """Print *rows* under *header* in aligned columns (*right*: right-aligned columns)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


def dump_json(value: Any) -> None:
    """Print *value* as indented JSON on stdout."""
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
