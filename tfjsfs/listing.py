"""Model-aware listings: which folders are bundles, their summaries, file roles.

A :class:`Catalog` belongs to one :class:`~tfjsfs.core.TFJSFileSystem` and
works on its inner filesystem (inner paths only). It keeps parsed manifests
per model folder and, on object stores, which folders below a scanned prefix
hold a ``model.json``. Both caches are dropped by ``invalidate_cache``.

Costs, by design:

* ``ls(folder, detail=True)`` marks the sub-folders that are bundles
  (``"tfjs": {"role": "model"}``) without one request per entry: on object
  stores one flat listing of the folder's prefix (reused for every folder
  below it until invalidated); on local and memory filesystems one existence
  check per sub-folder (no network); over HTTP nothing (no listing).
* ``ls(model_folder, detail=True)`` reads that folder's model.json once to
  give model.json and the shards their roles.
* ``info(model_folder)`` reads model.json (if not cached) and revalidates a
  cached one against model.json's current size/ETag/mtime.
* Summaries of bundles seen only in a parent listing are added when their
  manifest is already cached; ask ``info`` of the folder for the full one.

Roles: ``{"role": "model", …summary}`` on a model folder,
``{"role": "manifest"}`` on its model JSON, ``{"role": "shard", "group": g,
"index": i}`` on a shard (0-based positions in ``weightsManifest``).
"""

from __future__ import annotations

import asyncio
import inspect
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fsspec.implementations.memory import MemoryFileSystem

from .bundle import Bundle, open_bundle
from .concurrency import gather_bounded
from .errors import (
    ManifestError,
    ModelNotFoundError,
    ShardMissingError,
    UnsafePathError,
    WeightDataError,
)
from .fetch import load_index
from .files import VirtualTensor, npy_size, tensor_entries, tensor_entry
from .layouts import MODEL_JSON, json_candidates
from .manifest import ModelJSON, WeightIndex
from .paths import TENSORS_DIR, ResolvedPath, split_tensor_path
from .retry import RetryPolicy
from .writer import is_local

__all__ = ["CachedBundle", "Catalog", "ModelListing", "summary"]

_SHARD_NAME = re.compile(r"(^group\d+-shard\d+of\d+(\.bin)?$)|(\.bin$)")

LISTING_BATCH = 32
# info keys that change when a file is rewritten (first match of each kind wins)
_IDENTITY_KEYS = (
    "size",
    "ETag",
    "etag",
    "md5Hash",
    "generation",
    "mtime",
    "LastModified",
    "updated",
    "created",
)


def identity(info: Mapping[str, Any] | None) -> dict[str, str]:
    """The fields of an info dict that say which version of a file it describes."""
    if not info:
        return {}
    return {k: str(info[k]) for k in _IDENTITY_KEYS if info.get(k) is not None}


def same_version(old: Mapping[str, str], new: Mapping[str, str]) -> bool:
    """Whether two identities agree on every field both have."""
    return all(old[k] == new[k] for k in old.keys() & new.keys())


@dataclass
class CachedBundle:
    """A bundle (:class:`tfjsfs.bundle.Bundle`) and the model.json version it was read from."""

    bundle: Bundle
    version: dict[str, str]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def json_path(self) -> str:
        return self.bundle.json_path

    @property
    def doc(self) -> ModelJSON:
        return self.bundle.doc

    def roles(self) -> dict[str, dict[str, Any]]:
        """``{inner path: tfjs entry}`` for model.json and every shard."""
        out: dict[str, dict[str, Any]] = {self.json_path: {"role": "manifest"}}
        for g, paths in enumerate(self.bundle.shard_paths):
            for i, path in enumerate(paths):
                out.setdefault(path, {"role": "shard", "group": g, "index": i})
        return out


def summary(cached: CachedBundle) -> dict[str, Any]:
    """The ``tfjs`` entry of a model folder."""
    doc = cached.doc
    specs = doc.weight_specs
    expected = cached.bundle.group_bytes()
    sizes = cached.bundle.sizes
    if None not in expected:
        weight_bytes = sum(expected)
    elif sizes is not None and not cached.bundle.sizes_guessed:
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
        "shards": sum(len(p) for p in cached.bundle.shard_paths),
        "weight_bytes": weight_bytes,
        "dtypes": sorted({s.dtype for s in specs}),
        "quantized": sorted({s.quantization.dtype for s in specs if s.quantization}),
    }


def _base(path: str) -> str:
    return posixpath.basename(path.rstrip("/"))


def _accepts(func: Any, name: str) -> bool:
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return name in params


class Catalog:
    """Parsed manifests and bundle locations of one filesystem.

    Parameters
    ----------
    fs : fsspec.asyn.AsyncFileSystem
        The inner filesystem.
    listable : bool
        False over HTTP: a model folder is found by its ``model.json`` URL.
    allow_outside : bool
        Accept manifest shard paths outside the model folder.
    policy : RetryPolicy, optional
        Retries and timeouts of model.json and weight reads.
    """

    def __init__(
        self,
        fs: Any,
        *,
        listable: bool = True,
        allow_outside: bool = False,
        policy: RetryPolicy | None = None,
    ):
        self.fs = fs
        self.policy = policy or RetryPolicy()
        self.listable = listable
        self.allow_outside = allow_outside
        self._bundles: dict[str, CachedBundle] = {}
        self._scans: dict[str, frozenset[str]] = {}
        self._sync_fs = getattr(fs, "sync_fs", fs)
        self._cheap_probe = is_local(fs) or isinstance(self._sync_fs, MemoryFileSystem)

    # ------------------------------------------------------------ caches
    def invalidate(self, path: str | None = None) -> None:
        """Forget bundles and scans at, above or below inner *path* (all if None)."""
        if path is None:
            self._bundles.clear()
            self._scans.clear()
            return
        path = path.rstrip("/")

        def related(key: str) -> bool:
            return key == path or key.startswith(path + "/") or path.startswith(key + "/")

        for key in [k for k in self._bundles if related(k)]:
            del self._bundles[key]
        for key in [k for k in self._scans if related(k)]:
            del self._scans[key]

    def cached(self, folder: str) -> CachedBundle | None:
        """The cached bundle of *folder*, without any request."""
        return self._bundles.get(folder.rstrip("/"))

    # ----------------------------------------------------------- bundles
    async def _locate(self, folder: str, names: Iterable[str] | None) -> str | None:
        if not self.listable:
            return f"{folder}/{MODEL_JSON}"
        if names is None:
            try:
                names = await self.fs._ls(folder, detail=False)
            except (FileNotFoundError, NotADirectoryError):
                return None
        candidates = json_candidates([n.rstrip("/") for n in names])
        return candidates[0] if len(candidates) == 1 else None

    async def _info_fresh(self, path: str) -> dict[str, Any]:
        """The backend's current info of *path*, not its listing cache's."""
        if _accepts(self.fs._info, "refresh"):
            return await self.fs._info(path, refresh=True)  # s3fs
        self._sync_fs.invalidate_cache(path)  # gcsfs and others answer from listings
        return await self.fs._info(path)

    async def bundle(
        self,
        folder: str,
        *,
        names: Iterable[str] | None = None,
        json_info: Mapping[str, Any] | None = None,
        revalidate: bool = False,
    ) -> CachedBundle | None:
        """The bundle in inner *folder*, or None if it holds no model JSON.

        Parameters
        ----------
        folder : str
        names : iterable of str, optional
            A listing of *folder* already at hand.
        json_info : mapping, optional
            The model JSON's entry from that listing (checked against the
            cached version).
        revalidate : bool
            Ask the backend for model.json's current version (bypassing its
            listing cache) before trusting a cached manifest.

        Raises
        ------
        ManifestError
            When the folder's ``model.json`` is not a valid manifest.
        """
        folder = folder.rstrip("/")
        cached = self._bundles.get(folder)
        if cached is not None:
            if json_info is None and revalidate:
                try:
                    json_info = await self._info_fresh(cached.json_path)
                except FileNotFoundError:
                    self._bundles.pop(folder, None)
                    return None
            if json_info is None or same_version(cached.version, identity(json_info)):
                return cached
            self._bundles.pop(folder, None)
            self._sync_fs.invalidate_cache(folder)  # its listing is as old as the manifest
        json_path = await self._locate(folder, names)
        if json_path is None:
            return None
        cached = await self._read(json_path, json_info)
        if cached is not None:
            self._bundles[folder] = cached
        return cached

    async def _read(
        self, json_path: str, json_info: Mapping[str, Any] | None
    ) -> CachedBundle | None:
        async def info() -> dict[str, Any] | None:
            if json_info is not None:
                return dict(json_info)
            try:
                return await self._info_fresh(json_path)
            except (FileNotFoundError, NotImplementedError):
                return None

        opened = open_bundle(
            self.fs, json_path, allow_outside=self.allow_outside, policy=self.policy
        )
        try:
            bundle, found = await asyncio.gather(opened, info())
        except ModelNotFoundError:
            return None
        except ManifestError:
            if posixpath.basename(json_path) == MODEL_JSON:
                raise
            return None  # a lone .json that is not a manifest: a plain folder
        return CachedBundle(bundle, identity(found))

    async def index(self, cached: CachedBundle) -> WeightIndex:
        """The weight index of *cached* (shard sizes and string lengths resolved).

        Raises
        ------
        ShardMissingError, WeightDataError
            When a shard is missing or the shards are too short.
        """
        async with cached.lock:
            return await load_index(self.fs, cached.bundle, policy=self.policy)

    # ---------------------------------------------------- folder listings
    async def model_children(self, folder: str, dirs: list[str]) -> set[str]:
        """Which of the sub-folders *dirs* of *folder* hold a ``model.json``."""
        if not dirs or not self.listable:
            return set()
        folder = folder.rstrip("/")
        if self._cheap_probe:
            found = await gather_bounded(
                (self.fs._exists(f"{d}/{MODEL_JSON}") for d in dirs), LISTING_BATCH
            )
            return {d for d, ok in zip(dirs, found, strict=True) if ok}
        models = self._scan_for(folder)
        if models is None:
            try:
                files = await self.fs._find(folder)
            except (FileNotFoundError, NotADirectoryError):
                files = []
            models = frozenset(
                posixpath.dirname(p) for p in files if posixpath.basename(p) == MODEL_JSON
            )
            self._scans[folder] = models
        wanted = {d.rstrip("/") for d in dirs}
        return {d for d in models if d in wanted}

    def _scan_for(self, folder: str) -> frozenset[str] | None:
        path = folder
        while True:
            if path in self._scans:
                return self._scans[path]
            parent = posixpath.dirname(path)
            if not parent or parent == path:
                return None
            path = parent


class ModelListing:
    """The model-aware ``ls``/``info`` and virtual tensors of a TFJSFileSystem.

    A mixin: :class:`~tfjsfs.core.TFJSFileSystem` provides ``fs`` (the async
    inner filesystem), ``_catalog`` (a :class:`Catalog`), ``_http``,
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
        opts = {"refresh": True} if refresh and _accepts(self.fs._ls, "refresh") else {}
        raw = await self.fs._ls(rp.inner, detail=True, **opts)
        entries = [self._entry(e) for e in raw]
        if not detail:
            return entries
        names = [e["name"].rstrip("/") for e in raw]
        json_info = next(
            (e for e, n in zip(raw, names, strict=True) if _base(n) == MODEL_JSON), None
        )
        if json_info is not None:
            try:
                cached = await self._catalog.bundle(rp.inner, names=names, json_info=json_info)
            except (ManifestError, UnsafePathError) as exc:
                cached = None
                json_entry = entries[raw.index(json_info)]
                json_entry["tfjs"] = {"role": "manifest", "error": str(exc)}
            if cached is not None:
                roles = cached.roles()
                for entry, name in zip(entries, names, strict=True):
                    if name in roles:
                        entry["tfjs"] = dict(roles[name])
        if self.mark_models:
            dirs = [n for e, n in zip(raw, names, strict=True) if e.get("type") == "directory"]
            models = await self._catalog.model_children(rp.inner, dirs)
            for entry, name in zip(entries, names, strict=True):
                if name in models:
                    cached = self._catalog.cached(name)
                    entry["tfjs"] = summary(cached) if cached else {"role": "model"}
        return entries

    async def _ls_http(self, rp: ResolvedPath, refresh: bool) -> list[dict]:
        cached = await self._catalog.bundle(rp.inner, revalidate=refresh)
        if cached is None:
            return [self._entry(e) for e in await self.fs._ls(rp.inner, detail=True)]
        roles = cached.roles()
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

    async def _ls_tensors(self, rp: ResolvedPath) -> list[dict]:
        cached = await self._bundle_of(rp)
        below = split_tensor_path(rp.inner)[1]
        if rp.kind == "tensor":
            return [await self._info_tensor(rp)]
        return tensor_entries(cached.bundle, self._outer(rp.model_root), below)

    async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        rp = self._resolve(path)
        if rp.kind == "tensor":
            return await self._info_tensor(rp)
        if rp.kind == "tensor_dir":
            cached = await self._bundle_of(rp)
            below = split_tensor_path(rp.inner)[1]
            tensor_entries(cached.bundle, self._outer(rp.model_root), below)  # raises if empty
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
        async def plain() -> dict[str, Any] | None:
            try:
                return await self.fs._info(rp.inner)
            except FileNotFoundError:
                return None

        info, tfjs = await asyncio.gather(plain(), self._model_summary(rp.inner))
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
        cached = self._catalog.cached(folder)
        if cached is None and (base == MODEL_JSON or _SHARD_NAME.search(base)):
            try:
                cached = await self._catalog.bundle(folder)
            except (ManifestError, UnsafePathError) as exc:
                return {"role": "manifest", "error": str(exc)} if base == MODEL_JSON else None
        if cached is None:
            return None
        role = cached.roles().get(inner)
        return dict(role) if role else None

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
        tensor = VirtualTensor(self.fs, cached.bundle, index, rp.tensor_name, self._catalog.policy)
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
