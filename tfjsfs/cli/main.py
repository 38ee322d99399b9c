"""The ``tfjsfs`` command line: list, inspect, copy, move, remove, verify, serve.

One entry point with subcommands (``tfjsfs --help``, ``tfjsfs CMD --help``).
Every URL form tfjsfs accepts works: local paths, ``file://``, ``memory://``,
``s3://``, ``gs://``, ``http(s)://`` (reading), ``tfjs+…://`` and
``tfjs::…``. Results go to stdout, progress bars and errors to stderr. An
error is one line and a non-zero exit status; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from .. import __version__
from .._util.options import parse_size
from ..errors import CLIError, TFJSError
from ..server.options import add_serve_arguments
from .cache import add_cache_parser
from .commands import (
    cmd_cat,
    cmd_cp,
    cmd_info,
    cmd_ls,
    cmd_mv,
    cmd_rewrite,
    cmd_rm,
    cmd_scan,
    cmd_serve,
    cmd_verify,
)
from .info_html import cmd_info_html
from .sync import EXAMPLES as SYNC_EXAMPLES
from .sync import add_sync_arguments, cmd_sync

__all__ = ["main"]

EPILOG = """\
examples:
  tfjsfs ls s3://bucket/models/                  every bundle under a prefix
  tfjsfs ls --json gs://bucket/models/ | jq .    the same, for scripts
  tfjsfs info ./mnist                            layers, inputs, outputs, weights
  tfjsfs cat ./mnist dense/kernel                one tensor as text
  tfjsfs cat ./mnist dense/kernel -O k.npy       ... or as a .npy file
  tfjsfs cp ./mnist s3://bucket/models/mnist     copy (streamed, verified)
  tfjsfs cp --quantize uint8 ./mnist ./mnist-q   copy and quantize on the way
  tfjsfs cp -r s3://a/models gs://b/models --scheduler tcp://127.0.0.1:8786
  tfjsfs sync --delete s3://a/models gs://b/models  send only what changed
  tfjsfs mv gs://b/tmp/m gs://b/models/m         delete the source after a verified copy
  tfjsfs rm -r --dry-run s3://bucket/old/        what would be removed
  tfjsfs verify --values s3://bucket/models/m    deep check; exit status 1 on problems
  tfjsfs scan --csv s3://bucket/models/ > report.csv
  tfjsfs reshard --shard-size 1MiB ./mnist       rewrite a bundle in place
  tfjsfs serve s3://bucket/models --port 8080    serve and receive TF.js models
  tfjsfs cache ls                                models kept by loads with cache=True

storage options:
  -o/--option KEY=VALUE (repeatable) passes options to the filesystem, e.g.
  -o endpoint_url=http://127.0.0.1:9000 -o anon=true; dotted keys nest
  (-o client_kwargs.region_name=eu-west-1); values are JSON when they parse.
  fsspec's own configuration also applies (FSSPEC_S3_ENDPOINT_URL=…, or
  ~/.config/fsspec/*.json).
"""


# ------------------------------------------------------------------ parser


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
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


def _copy_args(p: argparse.ArgumentParser, *, scheduler: bool = True) -> None:
    p.add_argument("src", help="source model (or prefix with -r)")
    p.add_argument("dst", help="destination model folder or .json (or prefix with -r)")
    p.add_argument("-r", "--recursive", action="store_true", help="every model under SRC")
    p.add_argument("--overwrite", action="store_true", help="replace existing destinations")
    p.add_argument("--shard-size", type=parse_size, metavar="SIZE", help="re-shard (e.g. 4MiB)")
    p.add_argument(
        "--quantize",
        action="append",
        metavar="DTYPE[=PATTERNS]",
        help="quantize float32 weights: uint8, uint16 or float16, optionally only "
        "names matching comma-separated patterns (repeatable)",
    )
    p.add_argument("--dequantize", action="store_true", help="store quantized weights as float32")
    p.add_argument("--no-verify", action="store_true", help="skip reading the copy back")
    p.add_argument("--dry-run", action="store_true", help="show what would happen")
    p.add_argument("--src-option", action="append", metavar="KEY=VALUE", help="source-only option")
    p.add_argument("--dst-option", action="append", metavar="KEY=VALUE", help="dest-only option")
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="with -r: run on this Dask scheduler (e.g. tcp://127.0.0.1:8786)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation tools)."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="tfjsfs",
        description="TensorFlow.js model bundles on any fsspec store: list, inspect, copy, "
        "move, remove, verify and serve them.",
        epilog=EPILOG,
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"tfjsfs {__version__}")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, func, help: str, epilog: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, epilog=epilog, formatter_class=fmt)
        _common(p, top=False)
        p.set_defaults(func=func)
        return p

    p = add(
        "ls", cmd_ls, "list every model under a prefix", "example:\n  tfjsfs ls s3://b/models/"
    )
    p.add_argument("prefix", help="folder, bucket prefix or model")
    p.add_argument("--json", action="store_true", help="JSON list of models (for scripts)")

    p = add("info", cmd_info, "summarise one model: layers, inputs, outputs, weights")
    p.add_argument("url", help="model folder or model JSON")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("--no-weights", action="store_true", help="leave out the weight table")
    p.add_argument(
        "--html",
        metavar="FILE",
        help="write the model page (as `tfjsfs serve` shows it) to FILE, self-contained",
    )

    p = add(
        "cp",
        cmd_cp,
        "copy models between stores (streamed, verified, never torn)",
        "examples:\n  tfjsfs cp ./m s3://b/models/m\n  tfjsfs cp -r s3://a/models gs://b/models",
    )
    _copy_args(p)
    p = add("mv", cmd_mv, "move models (the source is deleted after a verified copy)")
    _copy_args(p)

    p = add("sync", cmd_sync, "make DST match SRC, sending only changed shards", SYNC_EXAMPLES)
    add_sync_arguments(p)

    p = add(
        "rm",
        cmd_rm,
        "remove models (model JSON first, then shards)",
        "examples:\n  tfjsfs rm s3://b/models/m\n  tfjsfs rm -r --dry-run s3://b/old/",
    )
    p.add_argument("urls", nargs="+", metavar="URL")
    p.add_argument("-r", "--recursive", action="store_true", help="every model under each URL")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed")

    p = add(
        "verify",
        cmd_verify,
        "check models deeply; exit status 1 when any has errors",
        "examples:\n  tfjsfs verify ./m\n  tfjsfs verify -r --values s3://b/models/",
    )
    p.add_argument("urls", nargs="+", metavar="URL")
    p.add_argument("-r", "--recursive", action="store_true", help="every model under each URL")
    p.add_argument("--values", action="store_true", help="decode every weight; report NaN/inf")
    p.add_argument("--strict", action="store_true", help="warnings fail too")
    p.add_argument("--allow-outside", action="store_true", help="accept shards outside the folder")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on this Dask scheduler")

    p = add(
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

    for name, helptext in (
        ("quantize", "rewrite a model with quantized weights (in place unless DST)"),
        ("reshard", "rewrite a model with another shard size (in place unless DST)"),
    ):
        p = add(name, cmd_rewrite, helptext)
        p.add_argument("url", help="model folder or model JSON")
        p.add_argument("dst", nargs="?", help="write here instead of in place")
        p.add_argument("--overwrite", action="store_true", help="replace an existing DST")
        if name == "quantize":
            p.add_argument("--dtype", required=True, choices=("uint8", "uint16", "float16"))
            p.add_argument(
                "--weights",
                action="append",
                metavar="PATTERN",
                help="only weights matching this fnmatch pattern (repeatable)",
            )
            p.add_argument("--shard-size", type=parse_size, metavar="SIZE", help="also re-shard")
        else:
            p.add_argument("--shard-size", type=parse_size, required=True, metavar="SIZE")

    p = add(
        "scan",
        cmd_scan,
        "summarise and check every model under a prefix (bulk, Dask-capable)",
        "example:\n  tfjsfs scan --scheduler tcp://127.0.0.1:8786 --csv s3://b/models/",
    )
    p.add_argument("prefix")
    p.add_argument("--values", action="store_true", help="also decode every weight")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on this Dask scheduler")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="JSON records")
    out.add_argument("--csv", action="store_true", help="CSV")

    p = add(
        "serve",
        cmd_serve,
        "serve a model store over HTTP for TF.js (loads and uploads)",
        "examples:\n  tfjsfs serve ./models\n"
        "  TFJSFS_TOKEN=… tfjsfs serve s3://b/models --allow-origin http://127.0.0.1:3000",
    )
    add_serve_arguments(p)
    add_cache_parser(add)
    return parser


_API_HINTS = {
    "pass overwrite=True": "use --overwrite",
    "pass allow_outside=True": "use --allow-outside",
}


def _one_line(exc: BaseException) -> str:
    raw = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    text = " ".join(str(raw).split()) or type(exc).__name__
    for api, cli in _API_HINTS.items():
        text = text.replace(api, cli)
    if isinstance(exc, (TFJSError, CLIError)):
        return text
    return f"{type(exc).__name__}: {text}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        func = cmd_info_html if getattr(args, "html", None) else args.func
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("tfjsfs: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        print(f"tfjsfs: error: {_one_line(exc)}", file=sys.stderr)
        return 1
