"""Ordered, torn-free bundle writes over any async fsspec filesystem.

Shards are written first and model.json last, so a reader that sees
model.json sees a complete bundle. model.json is published atomically
(rename on local disks, a single PUT on object stores) and create-only unless
overwriting. When replacing a bundle, the new shards get names never used
before (the converter's names plus a random suffix), model.json is swapped,
then the old shards are deleted. A reader holding an old model.json therefore
either reads its own shards or fails on a missing one; it never mixes bytes
of two versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fsspec.callbacks import DEFAULT_CALLBACK, Callback
from fsspec.implementations.local import LocalFileSystem

from .._util.concurrency import gather_bounded
from ..errors import BundleExistsError, ManifestError
from ..format.layouts import BundlePlan, ShardPlan
from ..format.manifest import ModelJSON, WeightGroup
from .location import name_in_folder

__all__ = ["publish", "write_bundle"]

DEFAULT_WRITE_CONCURRENCY = 8


def _sync_fs(fs: Any) -> Any:
    return getattr(fs, "sync_fs", fs)


def is_local(fs: Any) -> bool:
    """Whether *fs* (or the sync filesystem it wraps) is the local disk."""
    return isinstance(_sync_fs(fs), LocalFileSystem)


async def _existing_manifest(fs: Any, json_path: str) -> ModelJSON | None:
    try:
        data = await fs._cat_file(json_path)
    except FileNotFoundError:
        return None
    try:
        return ModelJSON.parse(data, json_path, require_topology=False)
    except ManifestError:
        return ModelJSON()  # unreadable: overwrite it, keep no old shard list


def _fresh_names(plan: BundlePlan, replacing: bool) -> BundlePlan:
    """When *replacing* a bundle, give every shard a name never used before."""
    if not replacing or not plan.shards:
        return plan
    token = secrets.token_hex(4)

    def rename(path: str) -> str:
        stem, ext = posixpath.splitext(path)
        return f"{stem}-{token}{ext}" if ext == ".bin" else f"{path}-{token}"

    shards = tuple(ShardPlan(rename(s.path), s.group, s.start, s.end) for s in plan.shards)
    groups = tuple(
        WeightGroup(tuple(rename(p) for p in g.paths), g.weights, g.extra) for g in plan.groups
    )
    return BundlePlan(plan.json_name, groups, shards)


def _safe_paths(doc: ModelJSON | None, source: str) -> set[str]:
    """Shard paths of a live bundle that lie inside its folder (others are left alone)."""
    out = set()
    for group in doc.weights_manifest if doc else ():
        for path in group.paths:
            name = name_in_folder(path, source)
            if name is not None:
                out.add(name)
    return out


async def _publish(fs: Any, path: str, data: bytes, overwrite: bool) -> None:
    """Write *data* to *path* atomically; create-only unless *overwrite*."""
    if is_local(fs):
        await asyncio.to_thread(_publish_local, path, data, overwrite)
        return
    mode = "overwrite" if overwrite else "create"
    try:
        await fs._pipe_file(path, data, mode=mode)
    except FileExistsError:
        raise BundleExistsError(f"{path} already exists (pass overwrite=True)") from None


async def publish(fs: Any, path: str, data: bytes, *, overwrite: bool) -> None:
    """Write one file (a model JSON) atomically; create-only unless *overwrite*.

    A rename on local disks, a single PUT on object stores.

    Raises
    ------
    BundleExistsError
        *path* exists and not *overwrite*.
    """
    await _publish(fs, path, data, overwrite)


def _publish_local(path: str, data: bytes, overwrite: bool) -> None:
    folder = os.path.dirname(path)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise BundleExistsError(f"{path} already exists (pass overwrite=True)") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


async def _remove_quietly(fs: Any, paths: Sequence[str]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError, OSError):
            await fs._rm_file(path)


async def write_bundle(
    fs: Any,
    folder: str,
    plan: BundlePlan,
    shard_bytes: Callable[[ShardPlan], Awaitable[Any]],
    render_json: Callable[[Sequence[WeightGroup], str], bytes],
    *,
    overwrite: bool = False,
    concurrency: int = DEFAULT_WRITE_CONCURRENCY,
    callback: Callback = DEFAULT_CALLBACK,
    before_publish: Callable[[Sequence[str]], Awaitable[None]] | None = None,
) -> tuple[str, list[str]]:
    """Write a planned bundle into *folder* of the async filesystem *fs*.

    Parameters
    ----------
    fs : fsspec.asyn.AsyncFileSystem
    folder : str
        The model folder (inner path).
    plan : BundlePlan
    shard_bytes : async callable
        Returns the bytes of one shard.
    render_json : callable
        ``render_json(groups, json_path)`` returns model.json bytes for the
        final manifest groups (shard names may have been changed).
    overwrite : bool
        Replace an existing bundle; otherwise :class:`BundleExistsError`.
    concurrency : int
        Shards written at once.
    callback : fsspec.callbacks.Callback
        ``set_size`` with the total bytes, ``relative_update`` per shard written.
    before_publish : async callable, optional
        Awaited with the shard paths once every shard is written and before
        model.json is published (e.g. to read them back and verify them); if
        it raises, the shards are removed and nothing is published.

    Returns
    -------
    (str, list of str)
        The model.json path, and every file written (model.json last).
    """
    folder = folder.rstrip("/")
    json_path = posixpath.join(folder, plan.json_name)
    old = await _existing_manifest(fs, json_path)
    if old is not None and not overwrite:
        raise BundleExistsError(f"{json_path} already exists (pass overwrite=True)")
    old_paths = _safe_paths(old, json_path)
    plan = _fresh_names(plan, old is not None)
    await fs._makedirs(folder, exist_ok=True)
    callback.set_size(sum(s.nbytes for s in plan.shards))
    written: list[str] = []

    async def put(shard: ShardPlan) -> None:
        data = await shard_bytes(shard)
        if isinstance(data, memoryview) and not is_local(fs):
            data = data.tobytes()  # object-store clients (botocore) refuse memoryviews
        path = posixpath.join(folder, shard.file_name)
        written.append(path)
        await fs._pipe_file(path, data)
        callback.relative_update(shard.nbytes)

    try:
        await gather_bounded((put(s) for s in plan.shards), concurrency)
        if before_publish is not None:
            await before_publish(list(written))
        await _publish(fs, json_path, render_json(plan.groups, json_path), overwrite)
    except BaseException:
        await asyncio.shield(_remove_quietly(fs, written))
        raise
    stale = sorted(old_paths - {posixpath.normpath(s.file_name) for s in plan.shards})
    await _remove_quietly(fs, [posixpath.join(folder, p) for p in stale])
    fs.invalidate_cache(folder)
    return json_path, [*written, json_path]
