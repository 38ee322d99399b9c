"""Model management between any two stores: list, copy, move, remove.

TF.js's ``tf.io.listModels``/``copyModel``/``moveModel``/``removeModel``,
for bundles on any fsspec filesystem (``file``, ``memory``, ``s3``, ``gs``,
``http(s)`` for reading, ``tfjs+…`` URLs) instead of browser stores.

* :func:`list_models` finds every bundle under a prefix with **one recursive
  listing**, then reads only the model JSON files (concurrently, bounded).
* :func:`copy_model` streams shard by shard (see :mod:`tfjsfs.io.transfer`),
  can re-shard and re-quantize on the way, verifies what it wrote and never
  publishes a torn copy (shards first, model.json last).
* :func:`move_model` deletes the source only after the copy is verified
  (TF.js's ``moveModel`` deletes it first).
* :func:`remove_model` deletes model.json **first**, then the shards, so no
  reader ever sees a model.json without its shards.

Every function has a coroutine twin (``…_async``) for use inside an event loop.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as _dt
import inspect
import json
import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fsspec.callbacks import DEFAULT_CALLBACK, Callback
from fsspec.implementations.memory import MemoryFileSystem

from .._util.concurrency import gather_bounded, run_sync, sync_twin
from .._util.entries import modified_time
from .._util.options import storage_options_of
from ..errors import (
    BundleExistsError,
    FormatError,
    ManifestError,
    TFJSError,
    TransferError,
    UnsafePathError,
)
from ..format.artifacts import ModelArtifactsInfo, SaveResult
from ..format.layouts import MODEL_JSON, Candidate, bundle_candidates, looks_like_model
from ..format.manifest import ModelJSON, parse_json
from ..format.serverlisting import ListedModel
from ..io.bundle import read_json_bytes
from ..io.fetch import locate_model_json
from ..io.location import folder_of, listing_key, locate_shard, store_kind
from ..io.resolve import resolve
from ..io.serverlisting import server_listing
from ..io.shardurls import is_http, resolve_shard_paths
from ..io.transfer import copy_bundle, open_source, same_location
from ..io.writer import DEFAULT_WRITE_CONCURRENCY, is_local, unpublish
from .api import load_model_async, requantize, save_model_async
from .http import JSON_FIELD, WEIGHTS_FIELD

__all__ = [
    "BundleListing",
    "copy_model",
    "copy_model_async",
    "find_bundles",
    "list_models",
    "list_models_async",
    "move_model",
    "move_model_async",
    "remove_model",
    "remove_model_async",
    "remove_model_files",
]

#: model JSON files read at once while listing.
DEFAULT_LIST_CONCURRENCY = 16
_HTTP = ("http://", "https://", "tfjs+http://", "tfjs+https://")


# ---------------------------------------------------------------- discovery


@dataclass
class BundleListing:
    """One bundle found under a prefix, from a single recursive listing.

    Attributes
    ----------
    url : str
        The model's URL in the caller's form: the folder for ``model.json``,
        else the JSON file (downloads layout).
    json_path : str
        Inner path of the model JSON.
    files : dict
        Listing entries (``name``, ``size``, ...) of every file in the same
        folder and below, by inner path; shard sizes come from here.
    raw : bytes or None
        model.json bytes, once read.
    doc : ModelJSON or None
        Parsed model.json, once read (None if it could not be parsed).
    error : str or None
        Why the model JSON could not be read or parsed.
    not_model : bool
        Once read: the JSON file is not a TF.js model (e.g. ``package.json``),
        so not a bundle.
    """

    url: str
    json_path: str
    files: dict[str, dict] = field(default_factory=dict)
    raw: bytes | None = None
    doc: ModelJSON | None = None
    error: str | None = None
    not_model: bool = False

    @property
    def entry(self) -> dict:
        """The listing entry of the model JSON."""
        return self.files.get(self.json_path, {})

    def shard_sizes(self) -> dict[str, int]:
        """Sizes of the listed files, by normalised inner path."""
        return {
            listing_key(p): int(e["size"])
            for p, e in self.files.items()
            if e.get("size") is not None
        }

    def info(self) -> ModelArtifactsInfo:
        """TF.js ``ModelArtifactsInfo`` from model.json and the listed shard sizes."""
        doc = self.doc
        if doc is None:
            raise ManifestError(self.error or f"{self.json_path}: not read yet")
        sizes = self.shard_sizes()
        data_bytes = 0
        groups = resolve_shard_paths(doc, self.json_path, carry_query=False, strict=False)
        for g, paths in enumerate(groups):
            listed = [sizes.get(p) if p else None for p in paths]
            if all(s is not None for s in listed):
                data_bytes += sum(listed)
            else:
                data_bytes += doc.weights_manifest[g].expected_bytes or 0
        return ModelArtifactsInfo.count(
            doc.model_topology, doc.weight_specs, data_bytes, entry_time(self.entry)
        )


def entry_time(entry: Mapping[str, Any]) -> _dt.datetime:
    """A listing entry's modification time (s3, gcs, local, memory), else now."""
    return modified_time(entry) or _dt.datetime.now(_dt.UTC)


def _external(prefix: str, base: str, path: str) -> str:
    """The caller-facing URL of inner *path* found under *prefix* (inner *base*)."""
    base = base.rstrip("/")
    if not base:  # the root of the filesystem ("memory://", "s3://", "/")
        head = prefix if prefix.endswith("/") else prefix + "/"
        return head + path.lstrip("/")
    if path == base:
        return prefix.rstrip("/") if prefix.rstrip("/") else prefix
    if base and path.startswith(base + "/"):
        return prefix.rstrip("/") + path[len(base) :]
    return path  # not under the prefix as spelled: report the inner path


def _candidates(files: Mapping[str, dict]) -> list[Candidate]:
    """Model JSON files in a recursive listing, folder by folder (no request).

    See :func:`tfjsfs.format.layouts.bundle_candidates`: every ``model.json``,
    and every ``<name>.json`` with weight files named after it beside it.
    """
    folders: dict[str, list[str]] = {}
    for path in files:
        folders.setdefault(posixpath.dirname(path.rstrip("/")), []).append(path)
    out = []
    for names in folders.values():
        out.extend(bundle_candidates(names))
    return out


async def find_bundles(
    fs: Any, path: str, prefix: str | None = None, *, read: bool = True
) -> list[BundleListing]:
    """Every bundle under inner *path* of *fs*, from one recursive listing.

    Parameters
    ----------
    fs : fsspec.asyn.AsyncFileSystem
    path : str
        Inner path of the prefix (a folder, a model folder or a model JSON).
    prefix : str, optional
        The prefix as the caller spelled it, for :attr:`BundleListing.url`.
    read : bool
        Read and parse each model JSON (bounded concurrency).
    """
    prefix = path if prefix is None else prefix
    if is_http(fs):
        listed = await server_listing(fs, path)
        if listed is not None:
            return await _listed_bundles(fs, listed, prefix, path, read)
    path = path.rstrip("/") or path
    try:
        found = await fs._find(path, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        found = {}
    files = {p.rstrip("/"): e for p, e in found.items() if e.get("type", "file") == "file"}
    single = path.endswith(".json") and path in files
    candidates = [Candidate(path, True)] if single else _candidates(files)
    names = sorted(files)
    out, weak = [], []
    for candidate in sorted(candidates, key=lambda c: _model_url_key(c.path)):
        json_path = candidate.path
        folder = posixpath.dirname(json_path)
        # the files below folder/ are one contiguous run of the sorted names ("0" follows "/")
        lo, hi = bisect.bisect_left(names, folder + "/"), bisect.bisect_left(names, folder + "0")
        below = {p: files[p] for p in names[lo:hi]}
        is_model_json = posixpath.basename(json_path) == MODEL_JSON
        where = folder if is_model_json else json_path
        out.append(BundleListing(_external(prefix, path, where), json_path, below))
        if not candidate.strong:
            weak.append(out[-1])
    # weak candidates are read even when not asked: only reading tells a model
    reading = out if read else weak
    await gather_bounded((_read(fs, b) for b in reading), DEFAULT_LIST_CONCURRENCY)
    return [b for b in out if not b.not_model]


async def _listed_bundles(
    fs: Any, listed: list[ListedModel], prefix: str, path: str, read: bool
) -> list[BundleListing]:
    """Bundles from a tfjsfs server's JSON listing (its shard sizes included)."""
    # keep the caller's spelling in front of the URL (``tfjs+``, ``tfjs::``)
    head = prefix[: prefix.find(path)] if path and path in prefix else ""
    out = []
    for model in sorted(listed, key=lambda m: m["url"]):
        files = {
            url: {"name": url, "size": size, "type": "file"}
            for url, size in model["files"].items()
            if size is not None
        }
        saved = (model["entry"].get("modelArtifactsInfo") or {}).get("dateSaved")
        files[model["modelUrl"]] = {"name": model["modelUrl"], "type": "file", "mtime": saved}
        out.append(BundleListing(head + model["url"], model["modelUrl"], files))
    if read:
        await gather_bounded((_read(fs, b) for b in out), DEFAULT_LIST_CONCURRENCY)
    return [b for b in out if not b.not_model]


def _model_url_key(json_path: str) -> str:
    """Sort key: the model folder for model.json, else the JSON file itself."""
    if posixpath.basename(json_path) == MODEL_JSON:
        return posixpath.dirname(json_path)
    return json_path


async def _read(fs: Any, bundle: BundleListing) -> None:
    """Read and parse the model JSON; a JSON file that is no model is marked so.

    A file named ``model.json`` is always taken for a model (a broken one is
    an error); any other name must parse as a TF.js model to count.
    """
    named = posixpath.basename(bundle.json_path) == MODEL_JSON
    try:
        bundle.raw = bytes(await fs._cat_file(bundle.json_path))
        if not named and not looks_like_model(parse_json(bundle.raw, bundle.json_path)):
            bundle.not_model = True
            return
        bundle.doc = ModelJSON.parse(bundle.raw, bundle.json_path)
    except ManifestError as exc:
        if not named and not _model_text(bundle.raw):
            bundle.not_model = True  # not even JSON naming a model's keys
            return
        bundle.error = str(exc) or type(exc).__name__
    except (OSError, TFJSError) as exc:
        bundle.error = str(exc) or type(exc).__name__


def _model_text(raw: bytes | None) -> bool:
    """Whether unparsable JSON text still names a model's keys (a broken model)."""
    return raw is not None and (b'"modelTopology"' in raw or b'"weightsManifest"' in raw)


async def list_models_async(
    prefix: str,
    *,
    on_error: str = "skip",
    storage_options: Mapping[str, Any] | None = None,
    **deprecated_options: Any,
) -> dict[str, ModelArtifactsInfo]:
    """Coroutine twin of :func:`list_models`."""
    options = storage_options_of(storage_options, deprecated_options, "list_models")
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', not {on_error!r}")
    fs, path = resolve(prefix, **options)
    out = {}
    for bundle in await find_bundles(fs, path, os.fspath(prefix)):
        if bundle.doc is None:
            if on_error == "raise":
                raise ManifestError(bundle.error)
            continue
        out[bundle.url] = bundle.info()
    return out


@sync_twin(list_models_async, loose_storage_options=True)
def list_models() -> dict[str, ModelArtifactsInfo]:
    """Every bundle under *prefix*, as TF.js's ``tf.io.listModels`` reports them.

    One recursive listing finds the bundles (never one request per object);
    only their model JSON files are then read, a bounded number at a time.

    Parameters
    ----------
    prefix : str or os.PathLike
        A folder, bucket prefix or model folder: local path, ``file://``,
        ``memory://``, ``s3://``, ``gs://``, ``http(s)://`` (needs listings),
        ``tfjs+…://`` or ``tfjs::…``.
    on_error : {"skip", "raise"}
        What to do with a model JSON that cannot be read or parsed.
    storage_options : dict, optional
        Options for the inner filesystem.
    **deprecated_options
        Storage options as loose keywords: deprecated (``DeprecationWarning``),
        use *storage_options*.

    Returns
    -------
    dict
        ``{url: ModelArtifactsInfo}``, sorted by URL. The URL keeps the
        prefix's spelling: the model folder for ``model.json`` bundles, the
        JSON file for downloads-layout bundles.

    Examples
    --------
    >>> list_models("s3://bucket/models/")  # doctest: +SKIP
    {'s3://bucket/models/mnist': ModelArtifactsInfo(...), ...}
    """


# ------------------------------------------------------------------ copying


def _options(
    storage_options: Mapping[str, Any] | None, side: Mapping[str, Any] | None
) -> dict[str, Any]:
    return {**dict(storage_options or {}), **dict(side or {})}


def _check_shard_size(shard_size: int | None) -> None:
    if shard_size is None:
        return
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size <= 0:
        raise FormatError(f"shard_size must be a positive integer, got {shard_size!r}")


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
    _check_shard_size(shard_size)
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


# ----------------------------------------------------------------- removing


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
    try:
        entries = await fs._ls(folder, detail=True)
    except (NotImplementedError, OSError):
        entries = []
    listing = {listing_key(e["name"]): e for e in entries}
    info = BundleListing(os.fspath(url), json_path, listing, doc=doc).info()
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
