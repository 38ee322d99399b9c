"""``tfjsfs serve``: the model server over a store (:mod:`tfjsfs.server`)."""

from __future__ import annotations

import argparse
from typing import Any

from ..server.app import serve
from ..server.options import add_serve_arguments, serve_options
from .arguments import add_command, storage_options

__all__ = ["add_parser", "cmd_serve"]


def add_parser(subparsers: Any) -> None:
    """Add ``serve`` (its options are the server module's own)."""
    p = add_command(
        subparsers,
        "serve",
        cmd_serve,
        "serve a model store over HTTP for TF.js (loads and uploads)",
        "examples:\n  tfjsfs serve ./models\n"
        "  TFJSFS_TOKEN=… tfjsfs serve s3://b/models --allow-origin http://127.0.0.1:3000",
    )
    add_serve_arguments(p)


def cmd_serve(args: argparse.Namespace) -> int:
    """``tfjsfs serve``: the model server over a store."""
    serve(
        args.store,
        host=args.host,
        port=args.port,
        storage_options=storage_options(args),
        **serve_options(args),
    )
    return 0
