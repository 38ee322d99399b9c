"""Reading bundles: locate model.json, size the shards, fetch them into one buffer.

The engine knows inner paths and async fsspec filesystems, never URLs.
Whole-model loads fetch every shard concurrently (bounded by ``batch_size``)
straight into its slice of one preallocated buffer; local files are read
with ``readinto``. Every byte count is checked against the manifest.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from fsspec.callbacks import DEFAULT_CALLBACK, Callback

from .codec import string_byte_length
from .concurrency import gather_bounded
from .errors import (
    ManifestError,
    ModelNotFoundError,
    ShardMissingError,
    WeightDataError,
)
from .layouts import json_candidates
from .manifest import ModelJSON, WeightIndex, check_shard_path
from .writer import is_local

__all__ = ["Bundle", "fetch_bundle", "locate_model_json", "open_bundle"]

DEFAULT_BATCH_SIZE = 32


async def locate_model_json(fs: Any, path: str) -> str:
    """The model JSON of the bundle at *path* (a folder or a ``.json`` file).

    Raises
    ------
    ModelNotFoundError
        No JSON file there, or several candidates and none named model.json.
    """
    path = path.rstrip("/")
    if path.endswith(".json"):
        return path
    try:
        names = await fs._ls(path, detail=False)
    except (FileNotFoundError, NotADirectoryError):
        raise ModelNotFoundError(f"no model at {path}: the folder does not exist") from None
    candidates = json_candidates(names)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ModelNotFoundError(f"no model.json (or other .json) in {path}")
    raise ModelNotFoundError(
        f"{path} holds several JSON files and no model.json: "
        + ", ".join(posixpath.basename(c) for c in candidates)
        + "; address the model by its JSON file"
    )


async def read_model_json(fs: Any, json_path: str) -> ModelJSON:
    """Fetch and parse model.json."""
    try:
        data = await fs._cat_file(json_path)
    except FileNotFoundError:
        raise ModelNotFoundError(f"{json_path} does not exist") from None
    return ModelJSON.parse(data, json_path)


@dataclass
class Bundle:
    """A located bundle: its model.json and the inner path of every shard."""

    json_path: str
    doc: ModelJSON
    shard_paths: list[list[str]]

    @property
    def folder(self) -> str:
        """The folder holding model.json."""
        return posixpath.dirname(self.json_path)


def resolve_shard_paths(
    doc: ModelJSON, json_path: str, *, allow_outside: bool = False
) -> list[list[str]]:
    """Inner paths of every group's shards, relative to model.json's folder."""
    folder = posixpath.dirname(json_path)
    out = []
    for group in doc.weights_manifest:
        paths = []
        for path in group.paths:
            rel = check_shard_path(path, json_path, allow_outside=allow_outside)
            if "://" in rel:
                paths.append(rel)
            else:
                paths.append(posixpath.normpath(posixpath.join(folder, rel.split("?")[0])))
        out.append(paths)
    return out


async def open_bundle(fs: Any, path: str, *, allow_outside: bool = False) -> Bundle:
    """Locate and parse the bundle at *path*."""
    json_path = await locate_model_json(fs, path)
    doc = await read_model_json(fs, json_path)
    return Bundle(json_path, doc, resolve_shard_paths(doc, json_path, allow_outside=allow_outside))


async def shard_sizes(fs: Any, bundle: Bundle) -> list[list[int]]:
    """Byte size of every shard, from one listing of the folder where possible.

    Raises
    ------
    ShardMissingError
        Naming the shard and the model.json that refers to it.
    """
    wanted = {p for group in bundle.shard_paths for p in group}
    sizes: dict[str, int] = {}
    try:
        listing = await fs._ls(bundle.folder, detail=True)
    except (FileNotFoundError, NotImplementedError, NotADirectoryError):
        listing = []
    for entry in listing:
        name = posixpath.normpath(entry["name"].rstrip("/"))
        if name in wanted and entry.get("type") == "file" and entry.get("size") is not None:
            sizes[name] = int(entry["size"])

    async def one(path: str) -> None:
        try:
            info = await fs._info(path)
        except FileNotFoundError:
            raise ShardMissingError(
                f"{bundle.json_path}: weight shard {path} does not exist"
            ) from None
        if info.get("type") != "file" or info.get("size") is None:
            raise ShardMissingError(f"{bundle.json_path}: weight shard {path} is not a file")
        sizes[path] = int(info["size"])

    await gather_bounded((one(p) for p in wanted if p not in sizes), DEFAULT_BATCH_SIZE)
    return [[sizes[p] for p in group] for group in bundle.shard_paths]


async def _read_local(path: str, out: memoryview, json_path: str) -> None:
    def read() -> int:
        with open(path, "rb", buffering=0) as f:
            got = f.readinto(out)
            extra = f.read(1)
        if extra:
            got += 1
        return got

    try:
        got = await asyncio.to_thread(read)
    except FileNotFoundError:
        raise ShardMissingError(f"{json_path}: weight shard {path} does not exist") from None
    _check_length(json_path, path, len(out), got)


def _check_length(json_path: str, path: str, expected: int, got: int) -> None:
    if got != expected:
        raise WeightDataError(
            f"{json_path}: weight shard {path} changed while reading: expected "
            f"{expected} bytes, got {'more' if got > expected else got}"
        )


async def fetch_into(
    fs: Any, path: str, out: memoryview, json_path: str, callback: Callback
) -> None:
    """Fetch the whole file *path* into *out*, which must be exactly its size."""
    if is_local(fs):
        await _read_local(path, out, json_path)
    else:
        try:
            data = await fs._cat_file(path)
        except FileNotFoundError:
            raise ShardMissingError(f"{json_path}: weight shard {path} does not exist") from None
        _check_length(json_path, path, len(out), len(data))
        out[:] = data
    callback.relative_update(len(out))


def group_string_lengths(doc: ModelJSON, group_views: Sequence[memoryview], source: str):
    """Byte lengths of string weights, found by walking their length prefixes."""
    lengths: dict[str, int] = {}
    for group, view in zip(doc.weights_manifest, group_views, strict=True):
        offset = 0
        for spec in group.weights:
            nbytes = spec.byte_length
            if nbytes is None:
                nbytes = string_byte_length(
                    view[offset:], spec.size, where=f"{source}: weight {spec.name!r}"
                )
                lengths[spec.name] = nbytes
            offset += nbytes
            if offset > len(view):
                break  # the index reports the shortfall with full detail
    return lengths


async def fetch_bundle(
    fs: Any,
    bundle: Bundle,
    *,
    batch_size: int | None = None,
    callback: Callback = DEFAULT_CALLBACK,
) -> tuple[np.ndarray, WeightIndex]:
    """Fetch every shard of *bundle* into one buffer.

    Returns
    -------
    (numpy.ndarray, WeightIndex)
        The uint8 buffer (groups back to back, shards in manifest order) and
        the index of every weight within its group.
    """
    sizes = await shard_sizes(fs, bundle)
    total = sum(sum(g) for g in sizes)
    buffer = np.empty(total, dtype=np.uint8)
    view = memoryview(buffer)
    callback.set_size(total)
    jobs, group_views, offset = [], [], 0
    for paths, group_sizes in zip(bundle.shard_paths, sizes, strict=True):
        start = offset
        for path, size in zip(paths, group_sizes, strict=True):
            jobs.append(
                fetch_into(fs, path, view[offset : offset + size], bundle.json_path, callback)
            )
            offset += size
        group_views.append(view[start:offset])
    await gather_bounded(jobs, batch_size or DEFAULT_BATCH_SIZE)
    strings = group_string_lengths(bundle.doc, group_views, bundle.json_path)
    index = WeightIndex(bundle.doc.weights_manifest, sizes, bundle.json_path, strings)
    if index.unresolved:
        raise ManifestError(f"{bundle.json_path}: could not place {index.unresolved[0]!r}")
    return buffer, index
