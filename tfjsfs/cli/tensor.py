"""``tfjsfs cat``: one tensor of a model, as text or as ``.npy`` bytes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from ..errors import CLIError
from ..model.api import load_weights
from .arguments import add_command, storage_options
from .output import show_progress

__all__ = ["add_parser", "cmd_cat"]


def add_parser(subparsers: Any) -> None:
    """Add ``cat``."""
    p = add_command(
        subparsers,
        "cat",
        cmd_cat,
        "print one tensor as text, or write it as .npy",
        "examples:\n  tfjsfs cat ./m dense/kernel\n  tfjsfs cat ./m dense/kernel -O k.npy",
    )
    p.add_argument("url", help="model folder or model JSON")
    p.add_argument("weight", help="weight name, e.g. dense/kernel")
    p.add_argument("-O", "--output", metavar="FILE", help="write here (.npy → binary)")
    p.add_argument("--npy", action="store_true", help="write .npy bytes (stdout unless -O)")
    p.add_argument("--full", action="store_true", help="print every value")


def cmd_cat(args: argparse.Namespace) -> int:
    """``tfjsfs cat``: one tensor as text or ``.npy``."""
    value = load_weights(
        args.url,
        [args.weight],
        storage_options=storage_options(args),
        progress=show_progress(args),
    )[args.weight]
    as_npy = args.npy or (args.output is not None and args.output.endswith(".npy"))
    if as_npy:
        if args.output in (None, "-"):
            if sys.stdout.isatty():
                raise CLIError("refusing to write .npy bytes to a terminal; use -o FILE")
            np.save(sys.stdout.buffer, value, allow_pickle=value.dtype == object)
            sys.stdout.buffer.flush()
        else:
            with open(args.output, "wb") as f:
                np.save(f, value, allow_pickle=value.dtype == object)
        return 0
    if value.dtype == object:
        value = np.vectorize(_text, otypes=[object])(value) if value.size else value
    threshold = sys.maxsize if args.full else 1000
    with np.printoptions(threshold=threshold, linewidth=100):
        text = np.array2string(value, separator=", ")
    header = f"# {args.weight}: shape {list(value.shape)}, dtype {value.dtype}\n"
    out = header + text + "\n"
    if args.output in (None, "-"):
        sys.stdout.write(out)
    else:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(out)
    return 0


def _text(item: bytes) -> Any:
    try:
        return item.decode("utf-8")
    except UnicodeDecodeError:
        return item
