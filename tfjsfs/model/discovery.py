"""Discovery: every bundle under a prefix, from one recursive listing.

TF.js's ``tf.io.listModels`` for bundles on any fsspec filesystem (``file``,
``memory``, ``s3``, ``gs``, ``http(s)`` for reading, ``tfjs+…`` URLs).
:func:`list_models` finds every bundle under a prefix with **one recursive
listing**, then reads only the model JSON files (concurrently, bounded).
:func:`find_bundles` is the shared step behind ``list_models``, ``tfjsfs ls``,
``sync_models`` and the bulk jobs.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from typing import Any

from .._util.concurrency import gather_bounded, sync_twin
from .._util.options import storage_options_of
from ..errors import ManifestError, TFJSError
from ..format.artifacts import ModelArtifactsInfo
from ..format.layouts import MODEL_JSON, Candidate, bundle_candidates, looks_like_model
from ..format.manifest import ModelJSON, parse_json
from ..format.serverlisting import ListedModel
from ..io.found import FoundBundle, files_below
from ..io.resolve import resolve
from ..io.serverlisting import server_listing
from ..io.shardurls import is_http

__all__ = [
    "find_bundles",
    "list_models",
    "list_models_async",
]

#: model JSON files read at once while listing.
DEFAULT_LIST_CONCURRENCY = 16


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
) -> list[FoundBundle]:
    """Every bundle under inner *path* of *fs*, from one recursive listing.

    Parameters
    ----------
    fs : fsspec.asyn.AsyncFileSystem
    path : str
        Inner path of the prefix (a folder, a model folder or a model JSON).
    prefix : str, optional
        The prefix as the caller spelled it, for :attr:`FoundBundle.name`.
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
        below = files_below(files, names, folder)
        is_model_json = posixpath.basename(json_path) == MODEL_JSON
        where = folder if is_model_json else json_path
        out.append(FoundBundle(_external(prefix, path, where), json_path, below))
        if not candidate.strong:
            weak.append(out[-1])
    # weak candidates are read even when not asked: only reading tells a model
    reading = out if read else weak
    await gather_bounded((_read(fs, b) for b in reading), DEFAULT_LIST_CONCURRENCY)
    return [b for b in out if not b.not_model]


async def _listed_bundles(
    fs: Any, listed: list[ListedModel], prefix: str, path: str, read: bool
) -> list[FoundBundle]:
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
        out.append(FoundBundle(head + model["url"], model["modelUrl"], files))
    if read:
        await gather_bounded((_read(fs, b) for b in out), DEFAULT_LIST_CONCURRENCY)
    return [b for b in out if not b.not_model]


def _model_url_key(json_path: str) -> str:
    """Sort key: the model folder for model.json, else the JSON file itself."""
    if posixpath.basename(json_path) == MODEL_JSON:
        return posixpath.dirname(json_path)
    return json_path


async def _read(fs: Any, bundle: FoundBundle) -> None:
    """Read and parse the model JSON; a JSON file that is no model is marked so.

    A file named ``model.json`` is always taken for a model (a broken one is
    an error); any other name must parse as a TF.js model to count.
    """
    named = posixpath.basename(bundle.json_path) == MODEL_JSON
    try:
        bundle.raw = bytes(await fs._cat_file(bundle.json_path))
        bundle.json_size = len(bundle.raw)
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
        out[bundle.name] = bundle.info
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
