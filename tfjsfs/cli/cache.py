"""``tfjsfs cache ls|rm|prune``: the local cache of remote models (:mod:`tfjsfs.model.cache`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from .._util.options import parse_size
from ..errors import CLIError
from ..format.summary import human_size
from ..model.cache import CacheEntry, cache_dir, cache_entries, prune_cache, remove_cached
from .arguments import add_command

__all__ = ["add_parser", "cmd_cache"]

EPILOG = """\
examples:
  tfjsfs cache ls                         cached models, most recently used first
  tfjsfs cache rm https://host/m/model.json
  tfjsfs cache rm --all                   empty the cache
  tfjsfs cache prune --max-size 2GiB      drop least recently used models beyond 2 GiB

The cache lives in --dir, else $TFJSFS_CACHE_DIR, else $XDG_CACHE_HOME/tfjsfs
(~/.cache/tfjsfs). Loads use it with cache=True (or cache="folder").
"""


def _record(entry: CacheEntry) -> dict[str, Any]:
    return {
        "url": entry.url,
        "bytes": entry.size,
        "used": entry.used.isoformat(),
        "path": str(entry.path),
    }


def _print(entries: list[CacheEntry], verb: str) -> None:
    for entry in entries:
        print(f"{verb}{human_size(entry.size):>10}  {entry.used:%Y-%m-%d %H:%M}  {entry.url}")


def _cache(args: argparse.Namespace) -> Any:
    return args.dir or True


def _ls(args: argparse.Namespace) -> int:
    entries = cache_entries(_cache(args))
    if args.json:
        json.dump([_record(e) for e in entries], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    _print(entries, "")
    total = sum(e.size for e in entries)
    print(f"{len(entries)} model(s), {human_size(total)} in {cache_dir(_cache(args))}")
    return 0


def _rm(args: argparse.Namespace) -> int:
    if not args.all and not args.urls:
        raise CLIError("name the model URL(s) to remove, or --all")
    removed = []
    for url in [None] if args.all else args.urls:
        removed.extend(remove_cached(url, _cache(args)))
    _print(removed, "removed ")
    return 0


def _prune(args: argparse.Namespace) -> int:
    if args.max_size is None:
        raise CLIError("prune needs --max-size SIZE (e.g. 2GiB; 0 empties the cache)")
    removed = prune_cache(args.max_size, _cache(args))
    _print(removed, "removed ")
    left = sum(e.size for e in cache_entries(_cache(args)))
    print(f"{len(removed)} model(s) removed, {human_size(left)} left")
    return 0


_ACTIONS: dict[str, Callable[[argparse.Namespace], int]] = {
    "ls": _ls,
    "rm": _rm,
    "prune": _prune,
}


def cmd_cache(args: argparse.Namespace) -> int:
    """``tfjsfs cache``: list, remove or prune cached models."""
    return _ACTIONS[args.action](args)


def add_parser(subparsers: Any) -> None:
    """Add ``cache`` (``ls``, ``rm`` or ``prune``)."""
    p = add_command(
        subparsers,
        "cache",
        cmd_cache,
        "list, remove or prune the local cache of remote models",
        EPILOG,
    )
    p.add_argument("action", choices=sorted(_ACTIONS), help="ls, rm or prune")
    p.add_argument("urls", nargs="*", metavar="URL", help="rm: model JSON URLs (or prefixes)")
    p.add_argument("--all", action="store_true", help="rm: every cached model")
    p.add_argument(
        "--max-size", type=parse_size, metavar="SIZE", help="prune: keep at most this much"
    )
    p.add_argument("--dir", metavar="FOLDER", help="the cache folder (default: see below)")
    p.add_argument("--json", action="store_true", help="ls: JSON records")
