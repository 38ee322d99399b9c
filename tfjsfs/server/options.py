"""The options of ``tfjsfs serve`` and ``python -m tfjsfs.server.app``, defined once.

:func:`add_serve_arguments` adds them to an ``argparse`` parser;
:func:`serve_options` turns the parsed arguments into keyword arguments of
:func:`tfjsfs.server.app.serve`. Bearer tokens come from the environment
(``TFJSFS_TOKEN``, ``TFJSFS_READ_TOKEN``, or variables named with
``--token-env``/``--read-token-env``), because a command line is visible to
every user in ``ps``; ``--token``/``--read-token`` still work, with a warning.
An empty token (``--token ""`` or an empty variable) is an error, never "no
token". Importing this module does not import aiohttp.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from .._util.options import parse_size
from ..errors import CLIError

__all__ = [
    "DEFAULT_GRACE_PERIOD",
    "DEFAULT_HOST",
    "DEFAULT_MAX_UPLOADS",
    "DEFAULT_PORT",
    "DEFAULT_REDIRECT_EXPIRY",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "DEFAULT_STORE",
    "DEFAULT_UPLOAD_IDLE_TIMEOUT",
    "READ_TOKEN_ENV",
    "TOKEN_ENV",
    "add_serve_arguments",
    "serve_options",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_STORE = "models"
DEFAULT_SHUTDOWN_TIMEOUT = 60.0
#: Uploads received at once (more get 503 + Retry-After).
DEFAULT_MAX_UPLOADS = 64
#: Seconds an upload body may stay silent before its connection is closed.
DEFAULT_UPLOAD_IDLE_TIMEOUT = 30.0
#: Seconds replaced and deleted weight files stay readable (as ModelStore's default).
DEFAULT_GRACE_PERIOD = 60.0
#: Seconds a ``--redirect-reads`` URL stays valid (as :mod:`.presign`'s default).
DEFAULT_REDIRECT_EXPIRY = 300
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
        "read from the environment; no write token means anyone who can reach the port "
        "may write (a warning says so); a read token alone disables writing; either "
        "token can read; an empty token is an error",
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
    pages = p.add_argument_group(
        "web pages and host names",
        "by default every web page may read, only the server's own pages (and scripts "
        "without an Origin) may write, and the Host header must be this server's address, "
        "a loopback address or localhost",
    )
    cors = pages.add_mutually_exclusive_group()
    cors.add_argument(
        "--allow-origin",
        action="append",
        dest="origins",
        metavar="ORIGIN",
        help="web page origin (e.g. http://127.0.0.1:5173) allowed to read, save and "
        "delete models; then only these origins get CORS (repeatable; '*' allows every "
        "web page to write)",
    )
    cors.add_argument("--no-cors", action="store_true", help="send no CORS headers")
    pages.add_argument(
        "--allow-host",
        action="append",
        dest="hosts",
        metavar="NAME",
        help="host name accepted in the Host header besides the bound address and "
        "localhost, e.g. the name a reverse proxy uses (repeatable)",
    )
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
        "--redirect-reads",
        type=float,
        nargs="?",
        const=DEFAULT_REDIRECT_EXPIRY,
        default=None,
        metavar="SECONDS",
        help="S3/GCS stores: answer weight file GETs with a 307 redirect to a URL the "
        "store presigns, valid SECONDS (default "
        f"{DEFAULT_REDIRECT_EXPIRY}), so bytes flow from the bucket to the client; "
        "model.json is still served here",
    )
    p.add_argument(
        "--no-sendfile",
        dest="sendfile",
        action="store_false",
        help="read and write local files in steps instead of sending them with the "
        "kernel's sendfile (for file systems where sendfile misbehaves)",
    )
    p.add_argument(
        "--max-uploads",
        type=int,
        default=DEFAULT_MAX_UPLOADS,
        metavar="N",
        help="uploads received at once; more get 503 + Retry-After "
        f"(default {DEFAULT_MAX_UPLOADS})",
    )
    p.add_argument(
        "--upload-idle-timeout",
        type=float,
        default=DEFAULT_UPLOAD_IDLE_TIMEOUT,
        metavar="SECONDS",
        help="close an upload whose body sends nothing for this long "
        f"(default {DEFAULT_UPLOAD_IDLE_TIMEOUT:g}; 1 s once shutting down)",
    )
    p.add_argument(
        "--grace-period",
        type=float,
        default=DEFAULT_GRACE_PERIOD,
        metavar="SECONDS",
        help="how long replaced and deleted weight files stay readable, so loads that "
        f"began before the change complete (default {DEFAULT_GRACE_PERIOD:g})",
    )
    p.add_argument(
        "--create-only",
        action="store_true",
        help="uploads never replace a model (as if every one sent If-None-Match: *); "
        "safe across several servers on one store",
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

    Raises
    ------
    CLIError
        An empty token (flag or variable).
    """
    environ = os.environ if environ is None else environ
    tokens = {}
    for key, flag, var in (
        ("token", "--token", args.token_env),
        ("read_token", "--read-token", args.read_token_env),
    ):
        value = getattr(args, key)
        if value is not None:
            if not value.strip():
                raise CLIError(f"{flag} is empty; give a real token or leave the option out")
            warn(f"{flag} is visible to every user of this machine (ps); set ${var} instead")
        elif var in environ:
            value = environ[var]
            if not value.strip():
                raise CLIError(f"${var} is set but empty; give a real token or unset it")
        tokens[key] = value
    if args.no_cors:
        origins: tuple[str, ...] | None = ()
    else:
        origins = tuple(args.origins) if args.origins else None
    options: dict[str, Any] = {
        **tokens,
        "allowed_origins": origins,
        "allowed_hosts": tuple(args.hosts or ()),
        "reshard": args.reshard,
        "spool_dir": args.spool_dir,
        "shutdown_timeout": args.shutdown_timeout,
        "max_uploads": args.max_uploads,
        "upload_idle_timeout": args.upload_idle_timeout,
        "grace_period": args.grace_period,
        "sendfile": args.sendfile,
        "redirect_reads": args.redirect_reads,
        "create_only": args.create_only,
    }
    if args.max_upload_bytes is not None:
        options["max_upload_bytes"] = args.max_upload_bytes
    return options
