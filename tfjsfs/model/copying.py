"""Copying between any two stores: copy and move.

TF.js's ``tf.io.copyModel``/``moveModel`` for bundles on any fsspec
filesystem. :func:`copy_model` streams shard by shard (see
:mod:`tfjsfs.io.transfer`), can re-shard and re-quantize on the way, verifies
what it wrote and never publishes a torn copy (shards first, model.json last).
:func:`move_model` deletes the source only after the copy is verified (TF.js's
``moveModel`` deletes it first).
"""

from __future__ import annotations

import inspect
import json
import posixpath
from collections.abc import Mapping
from typing import Any

from fsspec.callbacks import DEFAULT_CALLBACK, Callback

from .._util.concurrency import sync_twin
from ..errors import BundleExistsError, TFJSError, TransferError
from ..format.artifacts import ModelArtifactsInfo, SaveResult
from ..format.layouts import check_shard_size
from ..io.resolve import resolve
from ..io.transfer import copy_bundle, open_source, same_location
from ..io.writer import DEFAULT_WRITE_CONCURRENCY
from .api import load_model_async, requantize, save_model_async
from .http import JSON_FIELD, WEIGHTS_FIELD
from .removal import remove_model_async

__all__ = [
    "copy_model",
    "copy_model_async",
    "move_model",
    "move_model_async",
]

_HTTP = ("http://", "https://", "tfjs+http://", "tfjs+https://")


def _options(
    storage_options: Mapping[str, Any] | None, side: Mapping[str, Any] | None
) -> dict[str, Any]:
    return {**dict(storage_options or {}), **dict(side or {})}


def _split_destination(path: str, src_json: str) -> tuple[str, str]:
    """(folder, JSON name) of a destination path: a folder or a ``.json`` file."""
    path = path.rstrip("/")
    if path.endswith(".json"):
        return posixpath.split(path)
    return path, posixpath.basename(src_json)


async def copy_model_async(
    src: Any,
    dst: Any,
    *,
    overwrite: bool = False,
    shard_size: int | None = None,
    quantize: str | Mapping[str, Any] | None = None,
    dequantize: bool = False,
    verify: bool = True,
    callback: Callback | None = None,
    concurrency: int = DEFAULT_WRITE_CONCURRENCY,
    allow_outside: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    src_options: Mapping[str, Any] | None = None,
    dst_options: Mapping[str, Any] | None = None,
) -> SaveResult:
    """Coroutine twin of :func:`copy_model`."""
    check_shard_size(shard_size)
    callback = callback or DEFAULT_CALLBACK
    s_opts = _options(storage_options, src_options)
    d_opts = _options(storage_options, dst_options)
    if hasattr(src, "load") and not isinstance(src, (str, bytes)):  # an IOHandler
        return await _copy_from_handler(
            src, dst, shard_size, quantize, overwrite, callback, d_opts
        )
    if isinstance(dst, str) and dst.startswith(_HTTP):
        return await _copy_to_http(
            src, dst, shard_size, quantize, overwrite, callback, s_opts, d_opts
        )
    sfs, spath = resolve(src, **s_opts)
    dfs, dpath = resolve(dst, **d_opts)
    source = await open_source(sfs, spath, allow_outside=allow_outside)
    folder, json_name = _split_destination(dpath, source.json_path)
    rewrite = shard_size is not None or quantize is not None or dequantize
    target = posixpath.join(folder, json_name)
    if same_location(sfs, source.json_path, dfs, target) and not (overwrite and rewrite):
        raise BundleExistsError(
            f"old path and new path are the same: {source.json_path} "
            "(rewriting a bundle in place needs overwrite=True and a change)"
        )
    try:
        outcome = await copy_bundle(
            source,
            dfs,
            folder,
            json_name,
            overwrite=overwrite,
            shard_size=shard_size,
            quantize=quantize,
            dequantize=dequantize,
            verify=verify,
            concurrency=concurrency,
            callback=callback,
        )
    except (TFJSError, FileExistsError):
        raise
    except Exception as exc:  # a backend's own error: one typed error naming both ends
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise TransferError(
            f"copying {source.json_path} to {target} failed: {type(exc).__name__}: {detail}"
        ) from exc
    doc = outcome.doc
    info = ModelArtifactsInfo.count(doc.model_topology, doc.weight_specs, outcome.weight_bytes)
    return SaveResult(info, url=outcome.json_path, files=outcome.files)


async def _copy_to_http(src, dst, shard_size, quantize, overwrite, callback, s_opts, d_opts):
    """HTTP destinations take TF.js's multipart upload (one weights part) via save_model."""

    artifacts = await load_model_async(src, storage_options=s_opts, callback=callback)
    if quantize is not None:
        artifacts = requantize(artifacts, quantize)
    result = await save_model_async(artifacts, dst, overwrite=overwrite, storage_options=d_opts)
    result.files = stored_files(result)
    return result


def stored_files(result: SaveResult) -> list[str]:
    """The files an HTTP save stored, shards first, model.json last.

    A tfjsfs server's reply names them (``files``, relative to its ``url``);
    for another server, the two parts TF.js's upload sends.
    """
    for response in result.responses:
        try:
            body = json.loads(getattr(response, "body", b"") or b"null")
        except ValueError:
            continue
        if not isinstance(body, dict):
            continue
        base, files = body.get("url"), body.get("files")
        if isinstance(base, str) and isinstance(files, list):
            return [f"{base.rstrip('/')}/{f}" for f in files if isinstance(f, str)]
    return [WEIGHTS_FIELD, JSON_FIELD]


async def _copy_from_handler(src, dst, shard_size, quantize, overwrite, callback, d_opts):
    """An IOHandler source (e.g. :func:`tfjsfs.from_files`): load it, then save."""
    artifacts = src.load()
    if inspect.isawaitable(artifacts):
        artifacts = await artifacts
    if quantize is not None:
        artifacts = requantize(artifacts, quantize)
    options = {"shard_size": shard_size} if shard_size is not None else {}
    return await save_model_async(
        artifacts, dst, overwrite=overwrite, callback=callback, storage_options=d_opts, **options
    )


@sync_twin(copy_model_async)
def copy_model() -> SaveResult:
    """Copy a bundle between any two stores (TF.js ``tf.io.copyModel``).

    Shards stream one by one (at most ``concurrency`` in memory); nothing is
    decoded unless re-quantizing. The shards are written first and, when
    verifying, read back and checked (byte count and BLAKE2b digest) before
    model.json is published last, so an interrupted or failed copy never
    leaves a visible destination bundle.

    Parameters
    ----------
    src, dst : str or os.PathLike
        Model folders (or model JSON files). *dst* may be ``http(s)://`` (a
        TF.js upload endpoint, through :func:`tfjsfs.save_model`). *src* may
        also be an IOHandler (e.g. :func:`tfjsfs.from_files`): it is loaded,
        then saved to *dst*.
    overwrite : bool
        Replace an existing destination bundle (never mixing old and new
        shards). With a change (``shard_size``/``quantize``/``dequantize``),
        *dst* may be *src* itself: the bundle is rewritten in place.
    shard_size : int, optional
        Re-shard: cut each group every ``shard_size`` bytes, converter names.
    quantize : None, str or mapping, optional
        ``"uint8"``, ``"uint16"``, ``"float16"`` or ``{dtype: patterns}`` (see
        :func:`tfjsfs.format.codec.quantization_plan`). float32 weights are quantized;
        weights quantized differently are re-quantized from their values.
    dequantize : bool
        Store quantized weights that *quantize* does not match as float32.
    verify : bool
        Read back every shard and model.json and compare (default True).
    callback : fsspec.callbacks.Callback, optional
        Progress in bytes written.
    concurrency : int
        Shards in flight at once (memory is bounded by this many shards).
    allow_outside : bool
        Follow source shard paths that leave the model folder.
    storage_options : dict, optional
        Options for both inner filesystems.
    src_options, dst_options : dict, optional
        Options for one side (override *storage_options*).

    Returns
    -------
    SaveResult
        ``model_artifacts_info``, ``url`` (the model.json written) and
        ``files`` (shards, then model.json).

    Raises
    ------
    BundleExistsError
        *dst* exists and not *overwrite*, or *dst* is *src*.
    ModelNotFoundError, ShardMissingError, WeightDataError, ManifestError
        The source is missing or broken (nothing is written).
    TransferError
        What was read back differs from what was written (nothing published).
    """


async def move_model_async(
    src: Any,
    dst: Any,
    *,
    overwrite: bool = False,
    shard_size: int | None = None,
    quantize: str | Mapping[str, Any] | None = None,
    dequantize: bool = False,
    callback: Callback | None = None,
    concurrency: int = DEFAULT_WRITE_CONCURRENCY,
    allow_outside: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    src_options: Mapping[str, Any] | None = None,
    dst_options: Mapping[str, Any] | None = None,
) -> SaveResult:
    """Coroutine twin of :func:`move_model`."""
    result = await copy_model_async(
        src,
        dst,
        overwrite=overwrite,
        shard_size=shard_size,
        quantize=quantize,
        dequantize=dequantize,
        verify=True,
        callback=callback,
        concurrency=concurrency,
        allow_outside=allow_outside,
        storage_options=storage_options,
        src_options=src_options,
        dst_options=dst_options,
    )
    await remove_model_async(src, storage_options=_options(storage_options, src_options))
    return result


@sync_twin(move_model_async)
def move_model() -> SaveResult:
    """Move a bundle (TF.js ``tf.io.moveModel``, without its delete-first bug).

    The destination is written and verified first; the source is removed only
    after that succeeds. A failed copy leaves the source as it was.

    Parameters
    ----------
    src, dst : str or os.PathLike
    overwrite, shard_size, quantize, dequantize, callback, concurrency, allow_outside
        As for :func:`copy_model` (the copy is always verified).
    storage_options, src_options, dst_options : dict, optional
        As for :func:`copy_model`.

    Returns
    -------
    SaveResult
    """
