"""``tfjsfs info --html FILE URL``: the server's model page as one self-contained file.

For a model in a bucket (or anywhere tfjsfs reads) with no server in front
of it: the same page ``tfjsfs serve`` shows (:func:`tfjsfs.server.pages.model_html`),
with its script inline and every tensor's histogram computed here (a file
opened from disk cannot fetch byte ranges), written atomically.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import tempfile
from typing import Any

from .._util.concurrency import run_sync
from ..format.artifacts import ModelArtifactsInfo
from ..format.layout_view import describe_layout, histogram
from ..format.manifest import ModelJSON
from ..io.bundle import read_json_bytes
from ..io.fetch import locate_model_json
from ..io.location import listing_key
from ..io.resolve import resolve
from ..io.shardurls import resolve_shard_paths
from ..model.api import load_weights
from ..server.modelstore import topology_summary
from ..server.pages import model_html, standalone_page
from .arguments import storage_options

__all__ = ["cmd_info_html", "model_description", "write_model_page"]


async def _read(fs: Any, path: str) -> tuple[str, bytes, dict[str, int]]:
    json_path = await locate_model_json(fs, path)
    raw = await read_json_bytes(fs, json_path)
    try:
        entries = await fs._ls(posixpath.dirname(json_path), detail=True)
    except (OSError, NotImplementedError, ValueError):
        entries = []  # HTTP without listings
    sizes = {listing_key(e["name"]): int(e["size"]) for e in entries if e.get("size") is not None}
    return json_path, raw, sizes


async def _shard_files(fs: Any, doc: ModelJSON, json_path: str, sizes: dict) -> list[dict]:
    files = []
    for paths in resolve_shard_paths(doc, json_path, carry_query=False, strict=False):
        for p in paths:
            size = sizes.get(listing_key(p)) if p else None
            if p and size is None:
                try:
                    size = int((await fs._info(p))["size"])
                except (OSError, KeyError, TypeError, ValueError):
                    size = None
            files.append({"path": posixpath.basename(p or "?"), "size": size, "url": p or ""})
    return files


def model_description(url: str, **options: Any) -> dict[str, Any]:
    """The description the model page is drawn from (as ``GET /models/{name}``),
    for the model at *url*, with each numeric tensor's ``histogram``.

    Raises
    ------
    ModelNotFoundError, ManifestError, WeightDataError
        As loading the model would.
    """
    fs, path = resolve(url, **options)
    json_path, raw, sizes = run_sync(_read(fs, path))
    doc = ModelJSON.parse(raw, json_path)
    shard_files = run_sync(_shard_files(fs, doc, json_path, sizes))
    layout = describe_layout(doc, shard_files)
    values = load_weights(url, **options)
    for item in layout["weights"]:
        item["histogram"] = histogram(values[item["name"]]) if item["name"] in values else None
        item["ranges"] = None
    weight_bytes = sum(f["size"] for f in shard_files if f["size"] is not None)
    info = ModelArtifactsInfo.count(doc.model_topology, doc.weight_specs, weight_bytes)
    return {
        "name": url,
        "url": None,
        "modelUrl": url if url.endswith(".json") else f"{url.rstrip('/')}/model.json",
        "format": doc.format,
        "generatedBy": doc.generated_by,
        "convertedBy": doc.converted_by,
        "weightCount": len(doc.weight_specs),
        "weightBytes": weight_bytes,
        "size": len(raw) + weight_bytes,
        "modelArtifactsInfo": info.to_json(),
        "topology": topology_summary(doc),
        "files": [
            {"path": posixpath.basename(json_path), "size": len(raw), "url": json_path},
            *shard_files,
        ],
        **layout,
    }


def write_model_page(url: str, out: str, **options: Any) -> dict[str, Any]:
    """Write the model page of *url* to the local file *out* (atomically);
    returns the description it was drawn from."""
    description = model_description(url, **options)
    text = standalone_page(f"{url} · TF.js model", model_html(description))
    folder = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=".tfjsfs-", suffix=".html", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # a page to share, not mkstemp's private 0600
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise
    return description


def cmd_info_html(args: argparse.Namespace) -> int:
    """``tfjsfs info --html FILE URL``."""
    options = storage_options(args)
    description = write_model_page(args.url, args.html, **options)
    print(f"wrote {args.html}: model page of {args.url} ({description['weightCount']} weights)")
    return 0
