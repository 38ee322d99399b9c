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
from ..errors import CLIError, TFJSError
from . import cache, checking, copying, listing, serving, sync, tensor
from .arguments import add_common

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

#: the modules that add subcommands, in ``--help`` order
COMMAND_MODULES = (listing, tensor, copying, sync, checking, serving, cache)

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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation tools).

    Each command module adds its own subcommands (``add_parser(subparsers)``);
    this only assembles them, families in the order ``--help`` lists them.
    """
    parser = argparse.ArgumentParser(
        prog="tfjsfs",
        description="TensorFlow.js model bundles on any fsspec store: list, inspect, copy, "
        "move, remove, verify and serve them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tfjsfs {__version__}")
    add_common(parser, top=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.add_parser(subparsers)
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
        return int(args.func(args) or 0)
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
