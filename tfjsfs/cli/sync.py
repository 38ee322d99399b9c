"""``tfjsfs sync``: make a destination prefix match a source prefix, sending only changes.

See :func:`tfjsfs.model.sync.sync_models` for what is compared and how a
model is published.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .._util.options import parse_options, parse_size
from ..model.sync import CHANGED, DELETED, ERROR, NEW, SyncReport, sync_models
from .arguments import add_command, parse_quantize, storage_options
from .output import close, human_size, progress

__all__ = ["add_parser", "add_sync_arguments", "cmd_sync"]

EXAMPLES = """\
examples:
  tfjsfs sync s3://a/models gs://b/models              mirror, sending only changes
  tfjsfs sync --dry-run --delete ./models s3://b/models  the plan, changing nothing
  tfjsfs sync --include 'vision/*' --json ./models s3://b/models
  tfjsfs sync --scheduler tcp://127.0.0.1:8786 s3://a/models gs://b/models
"""


def add_parser(subparsers: Any) -> None:
    """Add ``sync``."""
    p = add_command(
        subparsers, "sync", cmd_sync, "make DST match SRC, sending only changed shards", EXAMPLES
    )
    add_sync_arguments(p)


def add_sync_arguments(p: argparse.ArgumentParser) -> None:
    """The ``sync`` subcommand's arguments."""
    p.add_argument("src", help="source prefix (or one model folder)")
    p.add_argument("dst", help="destination prefix")
    p.add_argument("-n", "--dry-run", action="store_true", help="print the plan, change nothing")
    p.add_argument("--delete", action="store_true", help="remove DST models absent from SRC")
    p.add_argument(
        "--include", action="append", default=[], metavar="GLOB", help="only these model names"
    )
    p.add_argument(
        "--exclude", action="append", default=[], metavar="GLOB", help="skip these model names"
    )
    p.add_argument(
        "--checksum", action="store_true", help="compare shard bytes, not sizes and ETags"
    )
    p.add_argument("--verify", action="store_true", help="read back what was written")
    p.add_argument("--json", action="store_true", help="JSON report on stdout")
    p.add_argument("--shard-size", type=parse_size, metavar="SIZE", help="re-shard on the way")
    p.add_argument(
        "--quantize", action="append", metavar="DTYPE[=PATTERNS]", help="quantize on the way"
    )
    p.add_argument("--src-option", action="append", metavar="KEY=VALUE", help="source-only option")
    p.add_argument("--dst-option", action="append", metavar="KEY=VALUE", help="dest-only option")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on this Dask scheduler")


def _line(model, dry: bool) -> str | None:
    would = "would " if dry else ""
    if model.action == NEW:
        size = human_size(model.bytes_sent)
        return f"{would}add     {model.name} ({model.shards} shards, {size})"
    if model.action == CHANGED:
        return (
            f"{would}update  {model.name} ({model.sent} of {model.shards} shards, "
            f"{human_size(model.bytes_sent)})"
        )
    if model.action == DELETED:
        return f"{would}delete  {model.name}"
    if model.action == ERROR:
        return f"FAILED  {model.name}: {model.error}"
    return None


def _print(report: SyncReport) -> None:
    for model in report.models:
        line = _line(model, report.dry_run)
        if line is not None:
            print(line, file=sys.stderr if model.action == ERROR else sys.stdout)
    print(report.summary())


def cmd_sync(args: argparse.Namespace) -> int:
    """``tfjsfs sync SRC DST``; exit status 1 when any model failed."""
    if args.scheduler:  # models finish on workers: one bar, in models
        callback = progress(args, "sync", unit="model")
    else:  # bytes: one bar for the run and one per model in flight
        callback = progress(args, "sync", parts=True)
    try:
        report = sync_models(
            args.src,
            args.dst,
            dry_run=args.dry_run,
            delete=args.delete,
            include=args.include,
            exclude=args.exclude,
            checksum=args.checksum,
            verify=args.verify,
            shard_size=args.shard_size,
            quantize=parse_quantize(args.quantize),
            callback=callback,
            scheduler=args.scheduler,
            storage_options=storage_options(args),
            src_options=parse_options(args.src_option),
            dst_options=parse_options(args.dst_option),
        )
    finally:
        close(callback)
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print(report)
    return 0 if report.ok else 1
