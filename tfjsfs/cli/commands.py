"""The ``tfjsfs`` subcommands, and the helpers they share (option parsing,
progress bars, tables, JSON output). The parser and entry point are in
:mod:`tfjsfs.cli.main`; every command takes the parsed ``argparse.Namespace`` and
returns an exit status.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from fsspec.callbacks import NoOpCallback

from .._util.concurrency import run_sync
from .._util.options import parse_options, parse_size
from .._util.progress import tqdm_callback
from ..errors import CLIError, ModelNotFoundError
from ..format.manifest import ModelJSON
from ..format.summary import human_size as fmt
from ..format.summary import summarize
from ..io.fetch import locate_model_json
from ..io.location import listing_key
from ..io.resolve import resolve
from ..model import bulk
from ..model.api import load_weights
from ..model.manage import (
    BundleListing,
    copy_model,
    find_bundles,
    move_model,
    remove_model,
    remove_model_files,
)
from ..model.verify import failures, verify_model
from ..server.app import serve
from ..server.options import serve_options

__all__ = [
    "CLIError",
    "cmd_cat",
    "cmd_cp",
    "cmd_info",
    "cmd_ls",
    "cmd_mv",
    "cmd_rewrite",
    "cmd_rm",
    "cmd_scan",
    "cmd_serve",
    "cmd_verify",
    "parse_options",
    "parse_quantize",
    "parse_size",
]


# ------------------------------------------------------------------ helpers


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


def human_size(nbytes: int | None) -> str:

    return fmt(nbytes)


def _show_progress(args: argparse.Namespace) -> bool:
    if args.quiet:
        return False
    return bool(args.progress) or sys.stderr.isatty()


def progress(args: argparse.Namespace, desc: str, unit: str = "B") -> Any:
    """A tqdm progress callback on stderr, or a silent one when not wanted."""

    if not _show_progress(args):
        return NoOpCallback()
    return tqdm_callback(desc, unit, leave=True, file=sys.stderr) or NoOpCallback()


def _short(url: str) -> str:
    """The last part of a URL or path, for progress labels."""
    return str(url).rstrip("/").rsplit("/", 1)[-1] or str(url)


def _close(callback: Any) -> None:
    close = getattr(callback, "close", None)
    if close is not None:
        close()


def _opts(args: argparse.Namespace) -> dict[str, Any]:
    return parse_options([*(args.options or []), *(getattr(args, "options_sub", None) or [])])


def _print_table(rows: list[list[str]], header: list[str], right: Sequence[int] = ()) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


def _dump_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


# ----------------------------------------------------------------- commands


def cmd_ls(args: argparse.Namespace) -> int:
    """``tfjsfs ls``: models under a prefix with their summaries."""

    fs, path = resolve(args.prefix, **_opts(args))
    bundles = run_sync(find_bundles(fs, path, args.prefix))
    records = []
    for b in bundles:
        rec: dict[str, Any] = {"url": b.url, "error": b.error}
        if b.doc is not None:
            info = b.info()
            specs = b.doc.weight_specs
            rec.update(
                format=b.doc.format,
                generatedBy=b.doc.generated_by,
                weights=len(specs),
                shards=sum(len(g.paths) for g in b.doc.weights_manifest),
                bytes=info.weight_data_bytes,
                dtypes=sorted({s.dtype for s in specs}),
                quantization=sorted({s.quantization.dtype for s in specs if s.quantization}),
                **info.to_json(),
            )
        records.append(rec)
    if args.json:
        _dump_json(records)
        return 0
    rows = []
    for r in records:
        if r["error"]:
            rows.append(["?", "?", "?", "BROKEN", r["url"] + f"  ({r['error']})"])
            continue
        quant = "+" + ",".join(r["quantization"]) if r["quantization"] else ""
        rows.append(
            [
                human_size(r["bytes"]),
                str(r["weights"]),
                str(r["shards"]),
                (r["format"] or "-") + quant,
                r["url"],
            ]
        )
    if rows:
        _print_table(rows, ["SIZE", "WEIGHTS", "SHARDS", "FORMAT", "URL"], right=(0, 1, 2))
    total = sum(r.get("bytes") or 0 for r in records)
    broken = sum(1 for r in records if r["error"])
    tail = f", {broken} unreadable" if broken else ""
    print(f"{len(records)} model(s), {human_size(total)} of weights{tail}", file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """``tfjsfs info``: topology summary, inputs, outputs and weights of one model."""

    fs, path = resolve(args.url, **_opts(args))

    async def read():
        json_path = await locate_model_json(fs, path)
        try:
            raw = await fs._cat_file(json_path)
        except FileNotFoundError:
            raise ModelNotFoundError(f"{json_path} does not exist") from None
        doc = ModelJSON.parse(raw, json_path)
        try:
            entries = await fs._ls(posixpath.dirname(json_path), detail=True)
        except (OSError, NotImplementedError, ValueError):
            entries = []  # HTTP without listings: sizes from the manifest
        listing = {listing_key(e["name"]): e for e in entries}
        return json_path, doc, BundleListing(args.url, json_path, listing, doc=doc).info()

    json_path, doc, info = run_sync(read())
    summary = summarize(doc)
    if args.json:
        _dump_json(
            {"url": args.url, "modelJson": json_path, **summary.to_json(), **info.to_json()}
        )
        return 0
    print(f"model         {args.url}")
    print(f"format        {summary.format or '-'} ({summary.model_class or 'unknown class'})")
    print(f"generatedBy   {summary.generated_by or '-'}")
    print(f"convertedBy   {summary.converted_by or '-'}")
    for label, tensors in (("inputs", summary.inputs), ("outputs", summary.outputs)):
        text = ", ".join(
            f"{t.name} {_shape(t.shape)}" + (f" {t.dtype}" if t.dtype else "") for t in tensors
        )
        print(f"{label:<14}{text or '-'}")
    quant = sorted({s.quantization.dtype for s in summary.weights if s.quantization})
    print(
        f"weights       {len(summary.weights)} ({summary.parameters:,} values, "
        f"{human_size(info.weight_data_bytes)}) in {summary.groups} group(s), "
        f"{summary.shards} shard(s)" + (f"; quantized {','.join(quant)}" if quant else "")
    )
    if summary.layers:
        print(f"\nlayers ({len(summary.layers)})")
        rows = [[layer.name, layer.kind, f"{layer.params:,}"] for layer in summary.layers]
        _print_table(rows, ["NAME", "CLASS", "PARAMS"], right=(2,))
    if summary.ops:
        ops = ", ".join(f"{op} x{n}" for op, n in summary.ops.items())
        print(f"\nops ({sum(summary.ops.values())} nodes): {ops}")
    if summary.weights and not args.no_weights:
        print(f"\nweights ({len(summary.weights)})")
        rows = [
            [
                s.name,
                _shape(list(s.shape)),
                s.dtype,
                s.quantization.dtype if s.quantization else "-",
                human_size(s.byte_length),
            ]
            for s in summary.weights
        ]
        _print_table(rows, ["NAME", "SHAPE", "DTYPE", "QUANT", "BYTES"], right=(4,))
    return 0


def _shape(shape: Any) -> str:
    if shape is None:
        return "[?]"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _copy_one(args, src: str, dst: str, opts: dict, *, move: bool = False) -> int:

    if args.dry_run:
        print(f"would {'move' if move else 'copy'} {src} -> {dst}")
        return 0
    callback = progress(args, f"{'mv' if move else 'cp'} {_short(src)}")
    try:
        result = (move_model if move else copy_model)(src, dst, callback=callback, **opts)
    finally:
        _close(callback)
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
        "storage_options": _opts(args),
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
                f"would {'move' if move else 'copy'} {b.url} -> "
                f"{bulk.destination(args.src, args.dst, b.url)}"
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
        _close(callback)
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


def _bundle_urls(prefix: str, opts: dict[str, Any]) -> list[str]:

    return [b.url for b in bulk.discover(prefix, opts)]


def cmd_rm(args: argparse.Namespace) -> int:
    """``tfjsfs rm``: remove models, model.json first."""

    opts = _opts(args)
    targets = []
    for url in args.urls:
        if args.recursive:
            found = _bundle_urls(url, opts)
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


def cmd_verify(args: argparse.Namespace) -> int:
    """``tfjsfs verify``: deep checks; exit status 1 when a model has problems."""

    opts = _opts(args)
    if args.scheduler:
        return _verify_cluster(args, opts)
    urls = []
    for url in args.urls:
        urls.extend(_bundle_urls(url, opts) if args.recursive else [url])
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
            _close(callback)
    if args.json:
        _dump_json(results)
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
        targets = [u for prefix in args.urls for u in _bundle_urls(prefix, opts)]
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
        _close(callback)
    failed = 0
    for row in frame.itertuples():
        bad = not row.ok
        failed += bad
        if not args.json:
            print(f"{'FAIL' if bad else 'OK  '} {row.url}")
            for message in [*row.errors, *row.warnings]:
                print(f"  {message}")
    if args.json:
        _dump_json(frame.to_dict(orient="records"))
    return 1 if failed else 0


def cmd_cat(args: argparse.Namespace) -> int:
    """``tfjsfs cat``: one tensor as text or ``.npy``."""

    value = load_weights(
        args.url, [args.weight], storage_options=_opts(args), progress=_show_progress(args)
    )[args.weight]
    as_npy = args.npy or (args.output is not None and args.output.endswith(".npy"))
    if as_npy:
        if args.output in (None, "-"):
            if sys.stdout.isatty():
                raise CLIError("refusing to write .npy bytes to a terminal; use -o FILE")
            np.save(sys.stdout.buffer, value, allow_pickle=value.dtype == object)
            sys.stdout.buffer.flush()
        else:
            with open(args.output, "wb") as f:
                np.save(f, value, allow_pickle=value.dtype == object)
        return 0
    if value.dtype == object:
        value = np.vectorize(_text, otypes=[object])(value) if value.size else value
    threshold = sys.maxsize if args.full else 1000
    with np.printoptions(threshold=threshold, linewidth=100):
        text = np.array2string(value, separator=", ")
    header = f"# {args.weight}: shape {list(value.shape)}, dtype {value.dtype}\n"
    out = header + text + "\n"
    if args.output in (None, "-"):
        sys.stdout.write(out)
    else:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(out)
    return 0


def _text(item: bytes) -> Any:
    try:
        return item.decode("utf-8")
    except UnicodeDecodeError:
        return item


def cmd_rewrite(args: argparse.Namespace) -> int:
    """``tfjsfs quantize`` / ``tfjsfs reshard``: rewrite a bundle."""

    dst = args.dst or args.url
    quantize = None
    if args.command == "quantize":
        quantize = {args.dtype: args.weights} if args.weights else args.dtype
    shard_size = getattr(args, "shard_size", None)
    callback = progress(args, f"{args.command} {_short(args.url)}")
    try:
        result = copy_model(
            args.url,
            dst,
            overwrite=args.dst is None or args.overwrite,
            shard_size=shard_size,
            quantize=quantize,
            dequantize=getattr(args, "dequantize", False),
            callback=callback,
            storage_options=_opts(args),
        )
    finally:
        _close(callback)
    size = human_size(result.model_artifacts_info.weight_data_bytes)
    where = dst if args.dst else f"{dst} (in place)"
    print(f"rewrote {where}: {len(result.files) - 1} shard(s), {size} of weights, verified")
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    """``tfjsfs scan``: one row per bundle, locally or on a Dask cluster."""

    callback = progress(args, "scan", unit="model")
    try:
        frame = bulk.scan(
            args.prefix,
            args.scheduler,
            values=args.values,
            progress=callback,
            storage_options=_opts(args),
        )
    finally:
        _close(callback)
    if args.json:
        _dump_json(frame.to_dict(orient="records"))
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
            _print_table(rows, ["STATUS", "SIZE", "WEIGHTS", "DTYPES", "QUANT", "URL"], (1, 2))
        for r in frame.itertuples():
            for message in r.problems:
                print(f"{r.url}: {message}")
        broken = int((~frame.ok).sum()) if len(frame) else 0
        print(f"{len(frame)} model(s), {broken} with errors", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``tfjsfs serve``: the model server over a store."""
    serve(
        args.store,
        host=args.host,
        port=args.port,
        storage_options=_opts(args),
        **serve_options(args),
    )
    return 0
