"""Model-aware listings: which folders are bundles, their summaries, file roles.

A :class:`Catalog` belongs to one :class:`~tfjsfs.fs.core.TFJSFileSystem` and
works on its inner filesystem (inner paths only). It keeps parsed manifests
per model folder (at most :data:`MAX_BUNDLES`) and, on object stores, which
folders below a scanned prefix hold a ``model.json``. Both caches are dropped
by ``invalidate_cache``; a cached manifest is also dropped when a listing or
info shows model.json with another size/ETag/generation/mtime.
:class:`ModelListing` gives the filesystem its ``_ls``/``_info`` and its
virtual tensors.

What is a bundle: in folder listings, a sub-folder holding ``model.json``,
and a ``<name>.json`` file beside weight files named after it
(:func:`tfjsfs.format.layouts.bundle_candidates`; marked
``{"role": "manifest", "candidate": True}`` until read); for ``info``/``ls``
of a folder itself (and its ``@tensors``), a folder holding ``model.json`` or
a single ``*.json`` that parses as a manifest (the downloads layout); for
``info`` of a JSON file, the file if it parses as a model. Over HTTP, a URL
whose ``<url>/model.json`` exists.

Costs, by design:

* ``ls(folder, detail=True)`` marks the sub-folders that are bundles
  (``"tfjs": {"role": "model"}``) without one request per entry: on object
  stores one flat listing of the folder's prefix (reused for every folder
  below it until invalidated); on local and memory filesystems one existence
  check per sub-folder (no network); over HTTP nothing (no listing).
  ``detail=False`` never costs more than the backend's own listing.
* ``ls(model_folder, detail=True)`` reads that folder's model.json once to
  give model.json and the shards their roles. Over HTTP the manifest *is*
  the listing (model.json and the shards inside the folder, one ``HEAD``
  each for their sizes).
* ``info(model_folder)`` reads model.json (if not cached) and revalidates a
  cached one against model.json's current version. ``info`` of a ``.json``
  file reads it once (cached) and, if it is a model, gives
  ``{"role": "manifest", …summary}``; of a file named ``*.bin`` or
  ``groupN-shardMofK`` reads its folder's manifest once (cached) to give its
  role; other files cost nothing extra.
  Over HTTP only a folder-like answer (403, 404, an HTML index) is probed for
  ``model.json``.
* Summaries of bundles seen only in a parent listing are added when their
  manifest is already cached; ask ``info`` of the folder for the full one.
* ``find``, ``glob`` and ``du`` return the backend's entries (no roles), at
  the backend's cost; ``@tensors`` never appears in them.

Roles: ``{"role": "model", …summary}`` on a model folder (``"error"`` instead
when its manifest is invalid or unsafe), ``{"role": "manifest"}`` on its
model JSON, ``{"role": "shard", "group": g, "index": i}`` on a shard (0-based
positions in ``weightsManifest``), ``{"role": "tensor", …}`` on a virtual
tensor file.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from typing import Any

from fsspec.asyn import sync

from .._util.concurrency import gather_bounded
from ..errors import (
    ManifestError,
    ModelNotFoundError,
    ShardMissingError,
    TransferError,
    UnsafePathError,
    WeightDataError,
)
from ..format.layouts import MODEL_JSON, bundle_candidates
from ..format.serverlisting import ListedModel
from ..format.summary import weight_dtypes
from ..io.bundle import Bundle
from ..io.serverlisting import server_listing
from .catalog import LISTING_BATCH, accepts
from .files import VirtualTensor, npy_size, tensor_entries, tensor_entry
from .paths import TENSORS_DIR, ResolvedPath, split_tensor_path

__all__ = ["ModelListing", "summary"]

_KINDS = {"model": "model_dir", "manifest": "model_json", "shard": "shard"}
_SHARD_NAME = re.compile(r"(^group\d+-shard\d+of\d+(\.bin)?$)|(\.bin$)")


def summary(cached: Bundle) -> dict[str, Any]:
    """The ``tfjs`` entry of a model folder."""
    doc = cached.doc
    specs = doc.weight_specs
    dtypes, quantized = weight_dtypes(specs)
    expected = cached.group_bytes()
    sizes = cached.sizes
    if None not in expected:
        weight_bytes = sum(expected)
    elif sizes is not None and not cached.sizes_guessed:
        weight_bytes = sum(sum(g) for g in sizes)
    else:
        weight_bytes = None
    return {
        "role": "model",
        "manifest": posixpath.basename(cached.json_path),
        "format": doc.format,
        "generatedBy": doc.generated_by,
        "convertedBy": doc.converted_by,
        "weights": len(specs),
        "shards": sum(len(p) for p in cached.shard_paths),
        "weight_bytes": weight_bytes,
        "dtypes": dtypes,
        "quantized": quantized,
    }


def _roles(bundle: Bundle) -> dict[str, dict[str, Any]]:
    """``{inner path: tfjs entry}`` for a bundle's model JSON and every shard."""
    out: dict[str, dict[str, Any]] = {bundle.json_path: {"role": "manifest"}}
    for g, paths in enumerate(bundle.shard_paths):
        for i, path in enumerate(paths):
            out.setdefault(path, {"role": "shard", "group": g, "index": i})
    return out


def listed_summary(model: ListedModel) -> dict[str, Any]:
    """The ``tfjs`` entry of a model from a tfjsfs server's listing (as :func:`summary`)."""
    entry = model["entry"]
    return {
        "role": "model",
        "manifest": posixpath.basename(model["modelUrl"]),
        "format": entry.get("format"),
        "generatedBy": entry.get("generatedBy"),
        "convertedBy": entry.get("convertedBy"),
        "weights": entry.get("weightCount"),
        "shards": len(model["files"]),
        "weight_bytes": entry.get("weightBytes"),
        "dtypes": entry.get("dtypes") or [],
        "quantized": entry.get("quantized") or [],
    }


def _manifest_summary(cached: Bundle) -> dict[str, Any]:
    """The ``tfjs`` entry of a bundle's JSON file: its role and the bundle's summary."""
    return {**summary(cached), "role": "manifest"}


def _base(path: str) -> str:
    return posixpath.basename(path.rstrip("/"))


class ModelListing:
    """The model-aware ``ls``/``info`` and virtual tensors of a TFJSFileSystem.

    A mixin: :class:`~tfjsfs.fs.core.TFJSFileSystem` provides ``fs`` (the async
    inner filesystem), ``_catalog`` (a :class:`~tfjsfs.fs.catalog.Catalog`), ``_http``,
    ``mark_models``, ``_resolve``, ``_entry``, ``_outer`` and
    ``invalidate_cache``. Entries keep fsspec's types and carry a ``"tfjs"``
    key (see the module docstring).
    """

    async def _ls(self, path: str, detail: bool = True, **kwargs: Any) -> list:
        kwargs.pop("prefix", None)  # a glob hint; honouring it breaks nested globs
        refresh = bool(kwargs.pop("refresh", False))
        rp = self._resolve(path)
        if rp.is_virtual:
            entries = await self._ls_tensors(rp)
        elif self._http:
            entries = await self._ls_http(rp, refresh)
        else:
            entries = await self._ls_store(rp, refresh, detail)
        return entries if detail else [e["name"] for e in entries]

    async def _ls_store(self, rp: ResolvedPath, refresh: bool, detail: bool) -> list[dict]:
        opts = {"refresh": True} if refresh and accepts(self.fs._ls, "refresh") else {}
        raw = await self.fs._ls(rp.inner, detail=True, **opts)
        entries = [self._entry(e) for e in raw]
        if not detail:
            return entries
        names = [e["name"].rstrip("/") for e in raw]
        json_info = next(
            (e for e, n in zip(raw, names, strict=True) if _base(n) == MODEL_JSON), None
        )
        if names == [rp.inner.rstrip("/")]:  # ls of a file lists the file itself
            json_info = None
        if json_info is not None:
            try:
                cached = await self._catalog.bundle(rp.inner, names=names, json_info=json_info)
            except (ManifestError, UnsafePathError) as exc:
                cached = None
                json_entry = entries[raw.index(json_info)]
                json_entry["tfjs"] = {"role": "manifest", "error": str(exc)}
            if cached is not None:
                roles = _roles(cached)
                for entry, name in zip(entries, names, strict=True):
                    if name in roles:
                        entry["tfjs"] = dict(roles[name])
        self._mark_candidates(entries, names)
        if self.mark_models:
            dirs = [n for e, n in zip(raw, names, strict=True) if e.get("type") == "directory"]
            models = await self._catalog.model_children(rp.inner, dirs)
            for entry, name in zip(entries, names, strict=True):
                if name in models:
                    cached = self._catalog.cached(name)
                    entry["tfjs"] = summary(cached) if cached else {"role": "model"}
        return entries

    def _mark_candidates(self, entries: list[dict], names: list[str]) -> None:
        """Mark the ``<name>.json`` bundles of a folder listing, without a request.

        A JSON file with weight files named after it beside it gets
        ``{"role": "manifest", "candidate": True}`` (``info`` of it reads it
        and gives the summary), or its summary and its shards' roles when its
        manifest is already cached.
        """
        files = [n for e, n in zip(entries, names, strict=True) if e.get("type") == "file"]
        found = [
            c.path for c in bundle_candidates(files) if c.strong and _base(c.path) != MODEL_JSON
        ]
        if not found:
            return
        by_name = dict(zip(names, entries, strict=True))
        for json_path in found:
            cached = self._catalog.cached(json_path)
            if cached is None:
                by_name[json_path].setdefault("tfjs", {"role": "manifest", "candidate": True})
                continue
            for path, role in _roles(cached).items():
                if path in by_name:
                    by_name[path]["tfjs"] = dict(role)
            by_name[json_path]["tfjs"] = _manifest_summary(cached)

    async def _ls_http(self, rp: ResolvedPath, refresh: bool) -> list[dict]:
        probe: TransferError | None = None
        try:
            cached = await self._catalog.bundle(rp.inner, revalidate=refresh)
        except TransferError as exc:  # e.g. a server refusing <folder>/model.json
            cached, probe = None, exc
        if cached is None:
            listed = await server_listing(self.fs, rp.inner)
            if listed is not None:
                return self._server_entries(rp.inner, listed)
            if probe is not None:
                raise probe
            return [self._entry(e) for e in await self.fs._ls(rp.inner, detail=True)]
        roles = _roles(cached)
        folder = rp.inner.rstrip("/")
        inside = [p for p in roles if posixpath.dirname(p) == folder]

        async def one(path: str) -> dict | None:
            try:
                info = await self.fs._info(path)
            except FileNotFoundError:
                return None
            return {**self._entry(info), "type": "file", "tfjs": dict(roles[path])}

        found = await gather_bounded((one(p) for p in inside), LISTING_BATCH)
        return [e for e in found if e is not None]

    def _server_entries(self, folder: str, listed: list[ListedModel]) -> list[dict]:
        """A folder of a tfjsfs server, from its JSON listing: its sub-folders,
        the models among them with their summaries (no request per model)."""
        folder = folder.rstrip("/")
        out: dict[str, dict] = {}
        for model in listed:
            url = model["url"].rstrip("/")
            if not url.startswith(folder + "/"):
                continue
            child = folder + "/" + url[len(folder) + 1 :].split("/")[0]
            entry = out.setdefault(
                child, self._entry({"name": child, "size": 0, "type": "directory"})
            )
            if child == url:
                entry["tfjs"] = listed_summary(model)
        return [out[k] for k in sorted(out)]

    async def _ls_tensors(self, rp: ResolvedPath) -> list[dict]:
        cached = await self._bundle_of(rp)
        below = split_tensor_path(rp.inner)[1]
        if rp.kind == "tensor":
            return [await self._info_tensor(rp)]
        return tensor_entries(cached, self._outer(rp.model_root), below)

    async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        rp = self._resolve(path)
        if rp.kind == "tensor":
            return await self._info_tensor(rp)
        if rp.kind == "tensor_dir":
            cached = await self._bundle_of(rp)
            below = split_tensor_path(rp.inner)[1]
            tensor_entries(cached, self._outer(rp.model_root), below)  # raises if empty
            return {"name": rp.path, "size": 0, "type": "directory", "tfjs": {"role": "tensors"}}
        if self._http:
            return await self._info_http(rp)
        info = self._entry(await self.fs._info(rp.inner))
        if info.get("type") == "directory":
            tfjs = await self._model_summary(rp.inner)
            if tfjs:
                info["tfjs"] = tfjs
        else:
            role = await self._file_role(rp.inner)
            if role:
                info["tfjs"] = role
        return info

    async def _info_http(self, rp: ResolvedPath) -> dict[str, Any]:
        """HEAD the URL; only a folder-like answer is probed for a model.json."""

        async def plain() -> dict[str, Any] | None:
            try:
                return await self.fs._info(rp.inner)
            except FileNotFoundError:
                return None

        info = await plain()
        mimetype = str((info or {}).get("mimetype", ""))
        if info is None or info.get("size") is None or mimetype.startswith("text/html"):
            # a folder (forbidden, or an index page) may be a model: its model.json says
            tfjs = await self._model_summary(rp.inner)
            if tfjs is not None:
                return {"name": rp.path, "size": 0, "type": "directory", "tfjs": tfjs}
        if info is None:
            raise FileNotFoundError(rp.path)
        info = self._entry(info)
        role = await self._file_role(rp.inner)
        if role:
            info["tfjs"] = role
        return info

    async def _model_summary(self, folder: str) -> dict[str, Any] | None:
        try:
            cached = await self._catalog.bundle(folder, revalidate=True)
        except (ManifestError, UnsafePathError) as exc:
            return {"role": "model", "error": str(exc)}
        return summary(cached) if cached else None

    async def _file_role(self, inner: str) -> dict[str, Any] | None:
        folder, base = posixpath.split(inner)
        if base.endswith(".json"):  # a bundle's JSON file of any name: its summary
            key = folder if base == MODEL_JSON else inner  # model.json: cached by folder
            try:
                cached = await self._catalog.bundle(key, revalidate=True)
            except (ManifestError, UnsafePathError) as exc:
                return {"role": "manifest", "error": str(exc)}
            return _manifest_summary(cached) if cached is not None else None
        cached = self._catalog.cached(folder)
        if cached is None and (base == MODEL_JSON or _SHARD_NAME.search(base)):
            try:
                cached = await self._catalog.bundle(folder)
            except (ManifestError, UnsafePathError) as exc:
                return {"role": "manifest", "error": str(exc)} if base == MODEL_JSON else None
        if cached is None:
            return None
        role = _roles(cached).get(inner)
        return dict(role) if role else None

    async def _resolve_path(self, path: str) -> ResolvedPath:
        """Coroutine twin of :meth:`resolve_path`."""
        rp = self._resolve(path)
        if rp.is_virtual:
            return rp
        role = ((await self._info(path)).get("tfjs") or {}).get("role")
        kind = _KINDS.get(role, "other")
        if kind == "other":
            return rp
        root = rp.inner if kind == "model_dir" else posixpath.dirname(rp.inner)
        return dataclasses.replace(rp, kind=kind, model_root=root)

    def resolve_path(self, path: str) -> ResolvedPath:
        """What *path* names: a model folder, its model JSON, a shard, a tensor…

        Returns
        -------
        tfjsfs.io.resolve.ResolvedPath

        Raises
        ------
        FileNotFoundError
            When *path* does not exist.
        """
        return sync(self.loop, self._resolve_path, path)

    # ---------------------------------------------------- virtual tensors
    async def _bundle_of(self, rp: ResolvedPath, revalidate: bool = False):
        cached = await self._catalog.bundle(rp.model_root, revalidate=revalidate)
        if cached is None:
            raise ModelNotFoundError(
                f"{rp.path}: no model.json in {self._outer(rp.model_root)}, so no {TENSORS_DIR}"
            )
        return cached

    async def _info_tensor(self, rp: ResolvedPath) -> dict[str, Any]:
        cached = await self._bundle_of(rp)
        for g, group in enumerate(cached.doc.weights_manifest):
            for spec in group.weights:
                if spec.name == rp.tensor_name:
                    size = npy_size(spec)
                    if size is None:
                        size = (await self._tensor(rp)).size
                    return tensor_entry(self._outer(rp.model_root), spec, g, size)
        raise FileNotFoundError(f"{rp.path}: {cached.json_path} has no weight {rp.tensor_name!r}")

    async def _tensor(self, rp: ResolvedPath) -> VirtualTensor:
        if rp.kind != "tensor":
            raise IsADirectoryError(rp.path)
        cached = await self._bundle_of(rp, revalidate=True)
        index = await self._catalog.index(cached)
        tensor = VirtualTensor(self.fs, cached, index, rp.tensor_name, self._catalog.policy)
        return await tensor.prepare()

    async def _read_tensor(self, rp: ResolvedPath, start: int | None, end: int | None) -> bytes:
        return await self._retrying(rp, lambda t: t.read(start, end))

    async def _retrying(self, rp: ResolvedPath, use: Any = None) -> Any:
        """``use(tensor)``; on a missing or short shard, once more with a fresh bundle."""
        for attempt in (0, 1):
            try:
                tensor = await self._tensor(rp)
                return tensor if use is None else await use(tensor)
            except (ShardMissingError, WeightDataError):
                if attempt:
                    raise
                # the bundle may have been rewritten since it was cached
                self.invalidate_cache(rp.path)
