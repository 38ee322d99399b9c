"""What every command shares on its way in: common flags, storage options,
quantization specs, and :func:`add_command`, how a command module registers
its subparser.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from .._util.options import parse_options

__all__ = ["add_command", "add_common", "parse_quantize", "storage_options"]

Command = Callable[[argparse.Namespace], int]


def add_common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``-o/--option``, ``--debug``, ``-q/--quiet`` and ``--progress``.

    They are accepted before the command (*top*) and after it; after it they
    default to "not given" so they do not mask the ones before it.
    """
    sup = None if top else argparse.SUPPRESS
    parser.add_argument(
        "-o",
        "--option",
        dest="options" if top else "options_sub",
        action="append",
        metavar="KEY=VALUE",
        help="storage option for the filesystem (repeatable)",
    )
    parser.add_argument(
        "--debug", action="store_true", default=sup or False, help="show tracebacks"
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-q", "--quiet", action="store_true", default=sup or False, help="no progress bars"
    )
    group.add_argument(
        "--progress",
        action="store_true",
        default=sup or False,
        help="progress bars even when stderr is not a terminal",
    )


def add_command(
    subparsers: Any, name: str, func: Command, help: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    """Add subcommand *name* running *func*, with the common flags; returns its parser."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=help,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser, top=False)
    parser.set_defaults(func=func)
    return parser


def storage_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``-o KEY=VALUE`` options given before and after the command."""
    return parse_options([*(args.options or []), *(getattr(args, "options_sub", None) or [])])


def parse_quantize(specs: Sequence[str] | None) -> Any:
    """``["uint8"]`` → ``"uint8"``; ``["uint8=dense*", "float16"]`` → mapping."""
    if not specs:
        return None
    if len(specs) == 1 and "=" not in specs[0]:
        return specs[0]
    plan: dict[str, Any] = {}
    for spec in specs:
        dtype, sep, patterns = spec.partition("=")
        plan[dtype] = patterns.split(",") if sep else True
    return plan
