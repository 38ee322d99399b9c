"""The ``tfjsfs`` command line: list, inspect, copy, move, remove, verify, serve.

One entry point with subcommands (``tfjsfs --help``, ``tfjsfs CMD --help``).
Every URL form tfjsfs accepts works: local paths, ``file://``, ``memory://``,
``s3://``, ``gs://``, ``http(s)://`` (reading), ``tfjs+…://`` and
``tfjs::…``. Results go to stdout, progress bars and errors to stderr. An
error is one line and a non-zero exit status; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from . import __version__
from .errors import TFJSError

__all__ = ["main"]

EPILOG = """\
examples:
  tfjsfs ls s3://bucket/models/                  every bundle under a prefix
  tfjsfs ls --json gs://bucket/models/ | jq .    the same, for scripts
  tfjsfs info ./mnist                            layers, inputs, outputs, weights
  tfjsfs cat ./mnist dense/kernel                one tensor as text
  tfjsfs cat ./mnist dense/kernel -o k.npy       ... or as a .npy file
  tfjsfs cp ./mnist s3://bucket/models/mnist     copy (streamed, verified)
  tfjsfs cp --quantize uint8 ./mnist ./mnist-q   copy and quantize on the way
  tfjsfs cp -r s3://a/models gs://b/models --scheduler tcp://127.0.0.1:8786
  tfjsfs mv gs://b/tmp/m gs://b/models/m         delete the source after a verified copy
  tfjsfs rm -r --dry-run s3://bucket/old/        what would be removed
  tfjsfs verify --values s3://bucket/models/m    deep check; exit status 1 on problems
  tfjsfs scan --csv s3://bucket/models/ > report.csv
  tfjsfs reshard --shard-size 1MiB ./mnist       rewrite a bundle in place
  tfjsfs serve s3://bucket/models --port 8080    serve and receive TF.js models

storage options:
  -o/--option KEY=VALUE (repeatable) passes options to the filesystem, e.g.
  -o endpoint_url=http://127.0.0.1:9000 -o anon=true; dotted keys nest
  (-o client_kwargs.region_name=eu-west-1); values are JSON when they parse.
  fsspec's own configuration also applies (FSSPEC_S3_ENDPOINT_URL=…, or
  ~/.config/fsspec/*.json).
"""


# ------------------------------------------------------------------ helpers


class CLIError(Exception):
    """A user-facing error with a one-line message."""


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_options(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``["a=1", "b.c=x"]`` → ``{"a": 1, "b": {"c": "x"}}``."""
    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise CLIError(f"storage option {pair!r} is not KEY=VALUE")
        *parents, leaf = key.split(".")
        target = out
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise CLIError(f"storage option {key!r} conflicts with another option")
        target[leaf] = _value(raw)
    return out


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_size(text: str) -> int:
    """``"4MiB"`` → 4194304; ``"512k"`` → 512000; ``"100"`` → 100."""
    raw = text.strip().lower().replace(" ", "")
    number = raw.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = raw[len(number) :]
    try:
        value = float(number) * _SIZE_UNITS[unit]
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4MiB, 512k, 100)") from None
    if value <= 0 or value != int(value):
        raise argparse.ArgumentTypeError(
            f"size must be a positive whole number of bytes: {text!r}"
        )
    return int(value)


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
    from .summary import human_size as fmt

    return fmt(nbytes)


def _show_progress(args: argparse.Namespace) -> bool:
    if args.quiet:
        return False
    return bool(args.progress) or sys.stderr.isatty()


def progress(args: argparse.Namespace, desc: str, unit: str = "B") -> Any:
    """A tqdm progress callback on stderr, or a silent one when not wanted."""
    from fsspec.callbacks import NoOpCallback

    if not _show_progress(args):
        return NoOpCallback()
    try:
        from fsspec.callbacks import TqdmCallback

        kwargs = {"desc": desc, "unit": unit, "leave": True, "file": sys.stderr}
        if unit == "B":
            kwargs.update(unit_scale=True, unit_divisor=1024)
        return TqdmCallback(tqdm_kwargs=kwargs)
    except ImportError:  # tqdm is the "cli" extra
        return NoOpCallback()


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
    from fsspec.asyn import get_loop, sync

    from .manage import find_bundles
    from .paths import resolve

    fs, path = resolve(args.prefix, **_opts(args))
    bundles = sync(get_loop(), find_bundles, fs, path, args.prefix)
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
    from fsspec.asyn import get_loop, sync

    from .errors import ModelNotFoundError
    from .fetch import locate_model_json
    from .manage import BundleListing
    from .manifest import ModelJSON
    from .paths import resolve
    from .summary import summarize
    from .transfer import norm

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
        listing = {norm(e["name"].rstrip("/")): e for e in entries}
        return json_path, doc, BundleListing(args.url, json_path, listing, doc=doc).info()

    json_path, doc, info = sync(get_loop(), read)
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
    from .manage import copy_model, move_model

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
    from . import bulk
    from .manage import remove_model

    opts = _copy_options(args)
    if move:
        opts["verify"] = True
    if args.dry_run:
        found = bulk._discover(args.src, {**opts["storage_options"], **opts["src_options"]})
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
            **opts["storage_options"],
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
            remove_model(row.src, **{**opts["storage_options"], **opts["src_options"]})
        print(f"{'moved' if move else 'copied'} {row.src} -> {row.dst} ({human_size(row.bytes)})")
    done = len(frame) - failed
    total = int(frame.loc[frame.ok, "bytes"].sum()) if len(frame) else 0
    print(
        f"{done} of {len(frame)} model(s) {'moved' if move else 'copied'}, {human_size(total)}",
        file=sys.stderr,
    )
    return 1 if failed else 0


def cmd_cp(args: argparse.Namespace, move: bool = False) -> int:
    if args.recursive:
        return _copy_many(args, move=move)
    if args.scheduler:
        raise CLIError("--scheduler needs -r (a whole prefix)")
    opts = _copy_options(args)
    if move:
        opts.pop("verify")
    return _copy_one(args, args.src, args.dst, opts, move=move)


def cmd_mv(args: argparse.Namespace) -> int:
    return cmd_cp(args, move=True)


def _bundle_urls(prefix: str, opts: dict[str, Any]) -> list[str]:
    from . import bulk

    return [b.url for b in bulk._discover(prefix, opts)]


def cmd_rm(args: argparse.Namespace) -> int:
    from .manage import remove_model, remove_model_files

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
            files = remove_model_files(url, **opts)
            print(f"would remove {url} ({len(files)} files: model JSON first)")
            for f in files:
                print(f"  {f}")
            continue
        info = remove_model(url, **opts)
        print(f"removed {url} ({human_size(info.weight_data_bytes)})")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify import verify_model

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
            bad = [p for p in problems if p.level == "error" or args.strict]
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
        print("no models found", file=sys.stderr)
        return 1
    return 1 if failed else 0


def _verify_cluster(args: argparse.Namespace, opts: dict[str, Any]) -> int:
    from . import bulk

    targets = args.urls[0] if args.recursive and len(args.urls) == 1 else list(args.urls)
    if args.recursive and len(args.urls) > 1:
        targets = [u for prefix in args.urls for u in _bundle_urls(prefix, opts)]
    callback = progress(args, "verify", unit="model")
    try:
        frame = bulk.verify_all(
            targets, args.scheduler, values=args.values, progress=callback, **opts
        )
    finally:
        _close(callback)
    failed = 0
    for row in frame.itertuples():
        bad = bool(row.errors) or (args.strict and bool(row.warnings))
        failed += bad
        if not args.json:
            print(f"{'FAIL' if bad else 'OK  '} {row.url}")
            for message in [*row.errors, *row.warnings]:
                print(f"  {message}")
    if args.json:
        _dump_json(frame.to_dict(orient="records"))
    return 1 if failed else 0


def cmd_cat(args: argparse.Namespace) -> int:
    import numpy as np

    from .api import load_weights

    value = load_weights(args.url, [args.weight], storage_options=_opts(args))[args.weight]
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
    from .manage import copy_model

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
    print(f"wrote {result.url} ({len(result.files) - 1} shard(s), {size} of weights, verified)")
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    from . import bulk

    callback = progress(args, "scan", unit="model")
    try:
        frame = bulk.scan(
            args.prefix, args.scheduler, values=args.values, progress=callback, **_opts(args)
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
    try:
        from .server import serve
    except ImportError as exc:
        raise CLIError(f"the model server is not available: {exc}") from None
    options: dict[str, Any] = {"storage_options": _opts(args)}
    if args.token:
        options["token"] = args.token
    if args.read_token:
        options["read_token"] = args.read_token
    if args.max_upload is not None:
        options["max_upload_bytes"] = args.max_upload
    if args.reshard is not None:
        options["reshard"] = args.reshard
    serve(args.store, host=args.host, port=args.port, **options)
    return 0


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

    p = add(
        "cp",
        cmd_cp,
        "copy models between stores (streamed, verified, never torn)",
        "examples:\n  tfjsfs cp ./m s3://b/models/m\n  tfjsfs cp -r s3://a/models gs://b/models",
    )
    _copy_args(p)
    p = add("mv", cmd_mv, "move models (the source is deleted after a verified copy)")
    _copy_args(p)

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
    p.add_argument("--values", action="store_true", help="decode weights, require finite floats")
    p.add_argument("--strict", action="store_true", help="warnings fail too")
    p.add_argument("--allow-outside", action="store_true", help="accept shards outside the folder")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on this Dask scheduler")

    p = add(
        "cat",
        cmd_cat,
        "print one tensor as text, or write it as .npy",
        "examples:\n  tfjsfs cat ./m dense/kernel\n  tfjsfs cat ./m dense/kernel -o k.npy",
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

    p = add("serve", cmd_serve, "serve a model store over HTTP for TF.js (loads and uploads)")
    p.add_argument("store", help="store URL, e.g. s3://bucket/models or ./models")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--token", help="bearer token required for uploads and deletes")
    p.add_argument("--read-token", help="bearer token required for reads")
    p.add_argument("--max-upload", type=parse_size, metavar="SIZE", help="largest upload")
    p.add_argument(
        "--reshard",
        type=parse_size,
        nargs="?",
        const=4 * 1024 * 1024,
        metavar="SIZE",
        help="store uploads in the converter layout (4MiB shards, or SIZE)",
    )
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
