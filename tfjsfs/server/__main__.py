"""``python -m tfjsfs.server``: ``tfjsfs serve`` without the rest of the command line.

The options are :mod:`tfjsfs.server.options`' (the same as ``tfjsfs serve``);
storage options come as ``-o KEY=VALUE``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .._util.options import parse_options
from ..errors import CLIError
from .app import serve
from .options import add_serve_arguments, serve_options

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "python -m tfjsfs.server") -> argparse.ArgumentParser:
    """The command line of :func:`main`: ``tfjsfs serve``'s options."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Serve TF.js models from any fsspec store."
    )
    add_serve_arguments(parser)
    parser.add_argument(
        "-o",
        "--option",
        "--storage-option",
        dest="options",
        action="append",
        metavar="KEY=VALUE",
        help="storage option for the store's filesystem (JSON values, dotted keys nest; "
        "repeatable)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tfjsfs.server [STORE] [--host H] [--port N] …`` (as ``tfjsfs serve``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        storage_options = parse_options(args.options)
        options = serve_options(args)
        serve(args.store, args.host, args.port, storage_options=storage_options, **options)
    except CLIError as exc:  # bad options, or a store that cannot do what they ask
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
