"""``tfjsfs cp``, ``mv``, ``rm``, ``quantize`` and ``reshard``: bundles copied,
moved, removed or rewritten (one model, or every model under a prefix)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._util.options import parse_options, parse_size
from ..errors import CLIError
from ..model import bulk
from ..model.copying import copy_model, move_model
from ..model.removal import remove_model, remove_model_files
from .arguments import add_command, parse_quantize, storage_options
from .output import close, human_size, progress, short

__all__ = ["add_parser", "bundle_urls", "cmd_cp", "cmd_mv", "cmd_rewrite", "cmd_rm"]


def _copy_arguments(p: argparse.ArgumentParser) -> None:
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


def add_parser(subparsers: Any) -> None:
    """Add ``cp``, ``mv``, ``rm``, ``quantize`` and ``reshard``."""
    p = add_command(
        subparsers,
        "cp",
        cmd_cp,
        "copy models between stores (streamed, verified, never torn)",
        "examples:\n  tfjsfs cp ./m s3://b/models/m\n  tfjsfs cp -r s3://a/models gs://b/models",
    )
    _copy_arguments(p)
    p = add_command(
        subparsers, "mv", cmd_mv, "move models (the source is deleted after a verified copy)"
    )
    _copy_arguments(p)

    p = add_command(
        subparsers,
        "rm",
        cmd_rm,
        "remove models (model JSON first, then shards)",
        "examples:\n  tfjsfs rm s3://b/models/m\n  tfjsfs rm -r --dry-run s3://b/old/",
    )
    p.add_argument("urls", nargs="+", metavar="URL")
    p.add_argument("-r", "--recursive", action="store_true", help="every model under each URL")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed")

    for name, helptext in (
        ("quantize", "rewrite a model with quantized weights (in place unless DST)"),
        ("reshard", "rewrite a model with another shard size (in place unless DST)"),
    ):
        p = add_command(subparsers, name, cmd_rewrite, helptext)
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


def _copy_one(args, src: str, dst: str, opts: dict, *, move: bool = False) -> int:

    if args.dry_run:
        print(f"would {'move' if move else 'copy'} {src} -> {dst}")
        return 0
    callback = progress(args, f"{'mv' if move else 'cp'} {short(src)}")
    try:
        result = (move_model if move else copy_model)(src, dst, callback=callback, **opts)
    finally:
        close(callback)
    size = human_size(result.model_artifacts_info.weight_data_bytes)
    verb = "moved" if move else "copied"
    checked = "" if opts.get("verify", True) is False else ", verified"
    print(f"{verb} {src} -> {dst} ({len(result.files)} files, {size}{checked})")
    return 0


def _copy_options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "overwrite": args.overwrite,
        "shard_size": args.shard_size,
        "quantize": parse_quantize(args.quantize),
        "verify": not args.no_verify,
        "storage_options": storage_options(args),
        "src_options": parse_options(args.src_option),
        "dst_options": parse_options(args.dst_option),
    }
    if getattr(args, "dequantize", False):
        opts["dequantize"] = True
    return opts


def _copy_many(args: argparse.Namespace, *, move: bool) -> int:

    opts = _copy_options(args)
    if move:
        opts["verify"] = True
    if args.dry_run:
        found = bulk.discover(args.src, {**opts["storage_options"], **opts["src_options"]})
        for b in found:
            print(
                f"would {'move' if move else 'copy'} {b.name} -> "
                f"{bulk.destination(args.src, args.dst, b.name)}"
            )
        return 0
    callback = progress(args, "models", unit="model")
    try:
        frame = bulk.copy_all(
            args.src,
            args.dst,
            args.scheduler,
            overwrite=opts["overwrite"],
            shard_size=opts["shard_size"],
            quantize=opts["quantize"],
            verify=opts["verify"],
            progress=callback,
            src_options=opts["src_options"],
            dst_options=opts["dst_options"],
            storage_options=opts["storage_options"],
        )
    finally:
        close(callback)
    failed = 0
    for row in frame.itertuples():
        if not row.ok:
            failed += 1
            print(f"FAILED {row.src}: {row.error}", file=sys.stderr)
            continue
        if move:
            remove_model(
                row.src, storage_options={**opts["storage_options"], **opts["src_options"]}
            )
        print(f"{'moved' if move else 'copied'} {row.src} -> {row.dst} ({human_size(row.bytes)})")
    done = len(frame) - failed
    total = int(frame.loc[frame.ok, "bytes"].sum()) if len(frame) else 0
    print(
        f"{done} of {len(frame)} model(s) {'moved' if move else 'copied'}, {human_size(total)}",
        file=sys.stderr,
    )
    return 1 if failed else 0


def cmd_cp(args: argparse.Namespace, move: bool = False) -> int:
    """``tfjsfs cp``: copy a model (or, with ``-r``, every model under a prefix)."""
    if args.recursive:
        return _copy_many(args, move=move)
    if args.scheduler:
        raise CLIError("--scheduler needs -r (a whole prefix)")
    opts = _copy_options(args)
    if move:
        opts.pop("verify")
    return _copy_one(args, args.src, args.dst, opts, move=move)


def cmd_mv(args: argparse.Namespace) -> int:
    """``tfjsfs mv``: copy, verify, then delete the source."""
    return cmd_cp(args, move=True)


def bundle_urls(prefix: str, opts: dict[str, Any]) -> list[str]:

    return [b.name for b in bulk.discover(prefix, opts)]


def cmd_rm(args: argparse.Namespace) -> int:
    """``tfjsfs rm``: remove models, model.json first."""
    opts = storage_options(args)
    targets = []
    for url in args.urls:
        if args.recursive:
            found = bundle_urls(url, opts)
            if not found:
                print(f"no models under {url}", file=sys.stderr)
            targets.extend(found)
        else:
            targets.append(url)
    for url in targets:
        if args.dry_run:
            files = remove_model_files(url, storage_options=opts)
            print(f"would remove {url} ({len(files)} files: model JSON first)")
            for f in files:
                print(f"  {f}")
            continue
        info = remove_model(url, storage_options=opts)
        print(f"removed {url} ({human_size(info.weight_data_bytes)})")
    return 0


def cmd_rewrite(args: argparse.Namespace) -> int:
    """``tfjsfs quantize`` / ``tfjsfs reshard``: rewrite a bundle."""
    dst = args.dst or args.url
    quantize = None
    if args.command == "quantize":
        quantize = {args.dtype: args.weights} if args.weights else args.dtype
    shard_size = getattr(args, "shard_size", None)
    callback = progress(args, f"{args.command} {short(args.url)}")
    try:
        result = copy_model(
            args.url,
            dst,
            overwrite=args.dst is None or args.overwrite,
            shard_size=shard_size,
            quantize=quantize,
            dequantize=getattr(args, "dequantize", False),
            callback=callback,
            storage_options=storage_options(args),
        )
    finally:
        close(callback)
    size = human_size(result.model_artifacts_info.weight_data_bytes)
    where = dst if args.dst else f"{dst} (in place)"
    print(f"rewrote {where}: {len(result.files) - 1} shard(s), {size} of weights, verified")
    return 0
