"""Removal: TF.js's ``tf.io.removeModel`` for bundles on any fsspec filesystem.

:func:`remove_model` deletes model.json **first**, then the shards, so no
reader ever sees a model.json without its shards.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import Mapping
from typing import Any

from fsspec.implementations.memory import MemoryFileSystem

from .._util.concurrency import gather_bounded, run_sync, sync_twin
from .._util.options import storage_options_of
from ..errors import UnsafePathError
from ..format.artifacts import ModelArtifactsInfo
from ..format.manifest import ModelJSON
from ..io.bundle import read_json_bytes
from ..io.fetch import locate_model_json
from ..io.found import FoundBundle, list_folder
from ..io.location import folder_of, locate_shard, store_kind
from ..io.resolve import resolve
from ..io.writer import DEFAULT_WRITE_CONCURRENCY, is_local, unpublish

__all__ = [
    "bundle_files",
    "remove_model",
    "remove_model_async",
    "remove_model_files",
]


async def bundle_files(fs: Any, path: str) -> tuple[str, list[str], ModelJSON]:
    """(model JSON, shard paths inside its folder, parsed doc) of the bundle at *path*.

    Shard paths that leave the model folder are left out: they are never deleted.
    """
    json_path = await locate_model_json(fs, path)
    raw = await read_json_bytes(fs, json_path)
    doc = ModelJSON.parse(raw, json_path, require_topology=False)
    folder = folder_of(json_path)
    kind = store_kind(fs, json_path)
    shards: list[str] = []
    for group in doc.weights_manifest:
        for rel in group.paths:
            try:
                inner = locate_shard(folder, rel, kind=kind, source=json_path)
            except UnsafePathError:
                continue
            if inner not in shards:
                shards.append(inner)
    return json_path, shards, doc


async def _remove(
    url: Any, dry_run: bool, storage_options: Mapping[str, Any]
) -> tuple[ModelArtifactsInfo, list[str]]:
    fs, path = resolve(url, **storage_options)
    json_path, shards, doc = await bundle_files(fs, path)
    folder = posixpath.dirname(json_path)
    info = FoundBundle(os.fspath(url), json_path, await list_folder(fs, json_path), doc=doc).info
    files = [json_path, *shards]
    if dry_run:
        return info, files
    await unpublish(fs, json_path, doc)  # first: from here on no reader finds the bundle
    await gather_bounded((_rm_quietly(fs, p) for p in shards), DEFAULT_WRITE_CONCURRENCY)
    if is_local(fs) or _is_memory(fs):
        with contextlib.suppress(OSError):
            if not await fs._ls(folder, detail=False):
                await fs._rmdir(folder)
    fs.invalidate_cache(folder)
    return info, files


async def remove_model_async(
    url: Any,
    *,
    dry_run: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    **deprecated_options: Any,
) -> ModelArtifactsInfo:
    """Coroutine twin of :func:`remove_model`."""
    options = storage_options_of(storage_options, deprecated_options, "remove_model")
    info, _ = await _remove(url, dry_run, options)
    return info


def _is_memory(fs: Any) -> bool:

    return isinstance(getattr(fs, "sync_fs", fs), MemoryFileSystem)


async def _rm_quietly(fs: Any, path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        await fs._rm_file(path)


@sync_twin(remove_model_async, loose_storage_options=True)
def remove_model() -> ModelArtifactsInfo:
    """Remove a bundle (TF.js ``tf.io.removeModel``).

    model.json goes first, then the shards it names, so no reader ever sees a
    model.json without its shards. Shard paths outside the model folder are
    never deleted. An empty local folder is removed too.

    Parameters
    ----------
    url : str or os.PathLike
        The model folder or its JSON file.
    dry_run : bool
        Delete nothing (:func:`remove_model_files` lists what would go).
    storage_options : dict, optional
        Options for the inner filesystem.
    **deprecated_options
        Storage options as loose keywords: deprecated (``DeprecationWarning``),
        use *storage_options*.

    Returns
    -------
    ModelArtifactsInfo
        Of the removed model.

    Raises
    ------
    ModelNotFoundError
    ManifestError
        model.json cannot be parsed (nothing is deleted).
    """


def remove_model_files(
    url: Any, *, storage_options: Mapping[str, Any] | None = None, **deprecated_options: Any
) -> list[str]:
    """Inner paths :func:`remove_model` would delete, model.json first.

    Parameters
    ----------
    url : str or os.PathLike
        The model folder or its JSON file.
    storage_options : dict, optional
        Options for the inner filesystem.
    **deprecated_options
        Storage options as loose keywords: deprecated (``DeprecationWarning``).

    Returns
    -------
    list of str
    """
    options = storage_options_of(storage_options, deprecated_options, "remove_model_files")
    return run_sync(_remove(url, True, options))[1]
