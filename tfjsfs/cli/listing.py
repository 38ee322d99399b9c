"""``tfjsfs ls`` and ``tfjsfs info``: the models under a prefix, one model's summary."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._util.concurrency import run_sync
from ..format.manifest import ModelJSON
from ..format.summary import summarize, weight_dtypes
from ..io.bundle import read_json_bytes
from ..io.fetch import locate_model_json
from ..io.found import FoundBundle, list_folder
from ..io.resolve import resolve
from ..model.discovery import find_bundles
from .arguments import add_command, storage_options
from .info_html import cmd_info_html
from .output import dump_json, human_size, print_table

__all__ = ["add_parser", "cmd_info", "cmd_ls"]


def add_parser(subparsers: Any) -> None:
    """Add ``ls`` and ``info``."""
    p = add_command(
        subparsers,
        "ls",
        cmd_ls,
        "list every model under a prefix",
        "example:\n  tfjsfs ls s3://b/models/",
    )
    p.add_argument("prefix", help="folder, bucket prefix or model")
    p.add_argument("--json", action="store_true", help="JSON list of models (for scripts)")

    p = add_command(
        subparsers, "info", cmd_info, "summarise one model: layers, inputs, outputs, weights"
    )
    p.add_argument("url", help="model folder or model JSON")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("--no-weights", action="store_true", help="leave out the weight table")
    p.add_argument(
        "--html",
        metavar="FILE",
        help="write the model page (as `tfjsfs serve` shows it) to FILE, self-contained",
    )


def cmd_ls(args: argparse.Namespace) -> int:
    """``tfjsfs ls``: models under a prefix with their summaries."""
    fs, path = resolve(args.prefix, **storage_options(args))
    bundles = run_sync(find_bundles(fs, path, args.prefix))
    records = []
    for b in bundles:
        rec: dict[str, Any] = {"url": b.name, "error": b.error}
        if b.doc is not None:
            info = b.info
            specs = b.doc.weight_specs
            dtypes, quantized = weight_dtypes(specs)
            rec.update(
                format=b.doc.format,
                generatedBy=b.doc.generated_by,
                weights=len(specs),
                shards=sum(len(g.paths) for g in b.doc.weights_manifest),
                bytes=info.weight_data_bytes,
                dtypes=dtypes,
                quantization=quantized,
                **info.to_json(),
            )
        records.append(rec)
    if args.json:
        dump_json(records)
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
        print_table(rows, ["SIZE", "WEIGHTS", "SHARDS", "FORMAT", "URL"], right=(0, 1, 2))
    total = sum(r.get("bytes") or 0 for r in records)
    broken = sum(1 for r in records if r["error"])
    tail = f", {broken} unreadable" if broken else ""
    print(f"{len(records)} model(s), {human_size(total)} of weights{tail}", file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """``tfjsfs info``: topology summary, inputs, outputs and weights of one model."""
    if args.html:
        return cmd_info_html(args)
    fs, path = resolve(args.url, **storage_options(args))

    async def read():
        json_path = await locate_model_json(fs, path)
        raw = await read_json_bytes(fs, json_path)
        doc = ModelJSON.parse(raw, json_path)
        listing = await list_folder(fs, json_path)  # none over HTTP: sizes from the manifest
        return json_path, doc, FoundBundle(args.url, json_path, listing, doc=doc).info

    json_path, doc, info = run_sync(read())
    summary = summarize(doc)
    if args.json:
        dump_json({"url": args.url, "modelJson": json_path, **summary.to_json(), **info.to_json()})
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
    quant = weight_dtypes(summary.weights)[1]
    print(
        f"weights       {len(summary.weights)} ({summary.parameters:,} values, "
        f"{human_size(info.weight_data_bytes)}) in {summary.groups} group(s), "
        f"{summary.shards} shard(s)" + (f"; quantized {','.join(quant)}" if quant else "")
    )
    if summary.layers:
        print(f"\nlayers ({len(summary.layers)})")
        rows = [[layer.name, layer.kind, f"{layer.params:,}"] for layer in summary.layers]
        print_table(rows, ["NAME", "CLASS", "PARAMS"], right=(2,))
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
        print_table(rows, ["NAME", "SHAPE", "DTYPE", "QUANT", "BYTES"], right=(4,))
    return 0


def _shape(shape: Any) -> str:
    if shape is None:
        return "[?]"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
