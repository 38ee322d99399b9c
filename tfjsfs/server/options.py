"""The options of ``tfjsfs serve`` and ``python -m tfjsfs.server.app``, defined once.

:func:`add_serve_arguments` adds them to an ``argparse`` parser;
:func:`serve_options` turns the parsed arguments into keyword arguments of
:func:`tfjsfs.server.app.serve`. Bearer tokens come from the environment
(``TFJSFS_TOKEN``, ``TFJSFS_READ_TOKEN``, or variables named with
``--token-env``/``--read-token-env``), because a command line is visible to
every user in ``ps``; ``--token``/``--read-token`` still work, with a warning.
Importing this module does not import aiohttp.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from .._util.options import parse_size

__all__ = [
    "DEFAULT_GRACE_PERIOD",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "DEFAULT_STORE",
    "READ_TOKEN_ENV",
    "TOKEN_ENV",
    "add_serve_arguments",
    "serve_options",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_STORE = "models"
DEFAULT_SHUTDOWN_TIMEOUT = 60.0
#: Seconds replaced and deleted weight files stay readable (as ModelStore's default).
DEFAULT_GRACE_PERIOD = 60.0
#: Environment variable holding the write token.
TOKEN_ENV = "TFJSFS_TOKEN"
#: Environment variable holding the read token.
READ_TOKEN_ENV = "TFJSFS_READ_TOKEN"


def add_serve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the server's arguments (store, address, tokens, CORS, limits) to *parser*.

    Storage options (``-o KEY=VALUE``) are left to the caller: the ``tfjsfs``
    command line has them on every subcommand.
    """
    p = parser
    p.add_argument(
        "store",
        nargs="?",
        default=DEFAULT_STORE,
        help=f"store URL or folder, e.g. s3://bucket/models (default ./{DEFAULT_STORE})",
    )
    p.add_argument("--host", default=DEFAULT_HOST, help=f"interface (default {DEFAULT_HOST})")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any)"
    )
    tokens = p.add_argument_group(
        "bearer tokens",
        "read from the environment; unset means open (either token can read)",
    )
    tokens.add_argument(
        "--token-env",
        default=TOKEN_ENV,
        metavar="VAR",
        help=f"environment variable holding the write token (default {TOKEN_ENV})",
    )
    tokens.add_argument(
        "--read-token-env",
        default=READ_TOKEN_ENV,
        metavar="VAR",
        help=f"environment variable holding the read token (default {READ_TOKEN_ENV})",
    )
    tokens.add_argument(
        "--token", help=f"write token (visible in ps: prefer ${TOKEN_ENV})", default=None
    )
    tokens.add_argument(
        "--read-token", help=f"read token (visible in ps: prefer ${READ_TOKEN_ENV})", default=None
    )
    cors = p.add_mutually_exclusive_group()
    cors.add_argument(
        "--allow-origin",
        action="append",
        dest="origins",
        metavar="ORIGIN",
        help="CORS origin allowed to call the server (repeatable; default: any)",
    )
    cors.add_argument("--no-cors", action="store_true", help="send no CORS headers")
    p.add_argument(
        "--max-upload-bytes",
        "--max-upload",
        type=parse_size,
        default=None,
        metavar="SIZE",
        help="largest upload accepted (e.g. 500MiB; default 2GiB)",
    )
    p.add_argument(
        "--reshard",
        type=parse_size,
        nargs="?",
        const=True,
        default=False,
        metavar="SIZE",
        help="store uploads in the converter layout (4MiB shards, or SIZE)",
    )
    p.add_argument("--spool-dir", metavar="DIR", help="folder for spooling large uploads")
    p.add_argument(
        "--grace-period",
        type=float,
        default=DEFAULT_GRACE_PERIOD,
        metavar="SECONDS",
        help="how long replaced and deleted weight files stay readable, so loads that "
        f"began before the change complete (default {DEFAULT_GRACE_PERIOD:g})",
    )
    p.add_argument(
        "--shutdown-timeout",
        type=float,
        default=DEFAULT_SHUTDOWN_TIMEOUT,
        metavar="SECONDS",
        help="on SIGINT/SIGTERM, how long in-flight requests may finish "
        f"(default {DEFAULT_SHUTDOWN_TIMEOUT:g})",
    )
    return parser


def _warn(message: str) -> None:
    print(f"tfjsfs: warning: {message}", file=sys.stderr, flush=True)


def serve_options(
    args: argparse.Namespace,
    environ: Mapping[str, str] | None = None,
    warn: Callable[[str], None] = _warn,
) -> dict[str, Any]:
    """Keyword arguments of :func:`tfjsfs.server.app.serve` from parsed arguments.

    Store, host, port and storage options are not included.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by a parser that :func:`add_serve_arguments` set up.
    environ : mapping, optional
        Where tokens are read (default ``os.environ``).
    warn : callable
        Called with a message when a token was given on the command line.
    """
    environ = os.environ if environ is None else environ
    tokens = {}
    for key, flag, var in (
        ("token", "--token", args.token_env),
        ("read_token", "--read-token", args.read_token_env),
    ):
        value = getattr(args, key)
        if value:
            warn(f"{flag} is visible to every user of this machine (ps); set ${var} instead")
        tokens[key] = value or environ.get(var) or None
    options: dict[str, Any] = {
        **tokens,
        "allowed_origins": () if args.no_cors else tuple(args.origins or ("*",)),
        "reshard": args.reshard,
        "spool_dir": args.spool_dir,
        "shutdown_timeout": args.shutdown_timeout,
        "grace_period": args.grace_period,
    }
    if args.max_upload_bytes is not None:
        options["max_upload_bytes"] = args.max_upload_bytes
    return options
