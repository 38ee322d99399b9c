"""``tfjsfs verify`` and ``tfjsfs scan``: models checked deeply, one by one or in bulk."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..model import bulk
from ..model.verify import failures, verify_model
from .arguments import add_command, storage_options
from .copying import bundle_urls
from .output import close, dump_json, human_size, print_table, progress

__all__ = ["add_parser", "cmd_scan", "cmd_verify"]


def add_parser(subparsers: Any) -> None:
    """Add ``verify`` and ``scan``."""
    p = add_command(
        subparsers,
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

    p = add_command(
        subparsers,
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


def cmd_verify(args: argparse.Namespace) -> int:
    """``tfjsfs verify``: deep checks; exit status 1 when a model has problems."""
    opts = storage_options(args)
    if args.scheduler:
        return _verify_cluster(args, opts)
    urls = []
    for url in args.urls:
        urls.extend(bundle_urls(url, opts) if args.recursive else [url])
    results, failed = [], 0
    callback = progress(args, "verify", unit="model") if len(urls) > 1 else None
    if callback is not None:
        callback.set_size(len(urls))
    try:
        for url in urls:
            problems = verify_model(
                url,
                values=args.values,
                allow_outside=args.allow_outside,
                storage_options=opts,
            )
            bad = failures(problems, args.strict)
            failed += bool(bad)
            results.append(
                {"url": url, "ok": not bad, "problems": [p.to_json() for p in problems]}
            )
            if not args.json:
                print(f"{'OK  ' if not bad else 'FAIL'} {url}")
                for p in problems:
                    print(f"  {p}")
            if callback is not None:
                callback.relative_update(1)
    finally:
        if callback is not None:
            close(callback)
    if args.json:
        dump_json(results)
    if args.recursive and not urls:
        where = ", ".join(args.urls)
        print(
            f"no models found under {where} (looked for model.json files, and <name>.json "
            "files beside weight files named after them)",
            file=sys.stderr,
        )
        return 1
    return 1 if failed else 0


def _verify_cluster(args: argparse.Namespace, opts: dict[str, Any]) -> int:

    targets = args.urls[0] if args.recursive and len(args.urls) == 1 else list(args.urls)
    if args.recursive and len(args.urls) > 1:
        targets = [u for prefix in args.urls for u in bundle_urls(prefix, opts)]
    callback = progress(args, "verify", unit="model")
    try:
        frame = bulk.verify_all(
            targets,
            args.scheduler,
            values=args.values,
            strict=args.strict,
            progress=callback,
            storage_options=opts,
        )
    finally:
        close(callback)
    failed = 0
    for row in frame.itertuples():
        bad = not row.ok
        failed += bad
        if not args.json:
            print(f"{'FAIL' if bad else 'OK  '} {row.url}")
            for message in [*row.errors, *row.warnings]:
                print(f"  {message}")
    if args.json:
        dump_json(frame.to_dict(orient="records"))
    return 1 if failed else 0


def cmd_scan(args: argparse.Namespace) -> int:
    """``tfjsfs scan``: one row per bundle, locally or on a Dask cluster."""
    callback = progress(args, "scan", unit="model")
    try:
        frame = bulk.scan(
            args.prefix,
            args.scheduler,
            values=args.values,
            progress=callback,
            storage_options=storage_options(args),
        )
    finally:
        close(callback)
    if args.json:
        dump_json(frame.to_dict(orient="records"))
    elif args.csv:
        out = frame.copy()
        out["problems"] = out["problems"].map(" | ".join)
        out.to_csv(sys.stdout, index=False)
    else:
        rows = [
            [
                "ok" if r.ok else "BROKEN",
                human_size(r.bytes),
                "?" if r.weights is None else str(int(r.weights)),
                r.dtypes or "-",
                r.quantization or "-",
                r.url,
            ]
            for r in frame.itertuples()
        ]
        if rows:
            print_table(rows, ["STATUS", "SIZE", "WEIGHTS", "DTYPES", "QUANT", "URL"], (1, 2))
        for r in frame.itertuples():
            for message in r.problems:
                print(f"{r.url}: {message}")
        broken = int((~frame.ok).sum()) if len(frame) else 0
        print(f"{len(frame)} model(s), {broken} with errors", file=sys.stderr)
    return 0
