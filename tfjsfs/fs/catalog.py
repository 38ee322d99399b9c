"""Parsed manifests of one filesystem, and which folders hold bundles.

Used by :class:`~tfjsfs.fs.listing.ModelListing` (see :mod:`tfjsfs.fs.listing` for
what each listing costs). Everything here works on inner paths of the inner
async filesystem.
"""

from __future__ import annotations

import asyncio
import inspect
import posixpath
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from fsspec.implementations.memory import MemoryFileSystem

from .._util.concurrency import gather_bounded
from .._util.retry import RetryPolicy
from ..errors import ManifestError, ModelNotFoundError
from ..format.layouts import MODEL_JSON, json_candidates
from ..format.manifest import WeightIndex
from ..io.bundle import Bundle, open_bundle
from ..io.fetch import load_index
from ..io.writer import is_local

__all__ = ["LISTING_BATCH", "MAX_BUNDLES", "Catalog", "accepts", "identity"]

#: concurrent requests of one listing
LISTING_BATCH = 32
#: parsed manifests kept per filesystem (least recently used dropped first)
MAX_BUNDLES = 512
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


def accepts(func: Any, name: str) -> bool:
    """Whether *func* takes a parameter called *name*."""
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
        self._bundles: OrderedDict[str, Bundle] = OrderedDict()  # LRU
        # one index load per bundle at a time (a bundle dropped from the cache drops its lock)
        self._index_locks: weakref.WeakKeyDictionary[Bundle, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
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

    def cached(self, folder: str) -> Bundle | None:
        """The cached bundle of *folder*, without any request."""
        return self._bundles.get(folder.rstrip("/"))

    # ----------------------------------------------------------- bundles
    async def _locate(self, folder: str, names: Iterable[str] | None) -> str | None:
        if folder.endswith(".json"):  # a bundle addressed by its JSON file
            return folder
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
        if accepts(self.fs._info, "refresh"):
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
    ) -> Bundle | None:
        """The bundle in inner *folder* (or of the JSON file *folder*), or None.

        None when the folder holds no model JSON, or the JSON file is not a
        model. Bundles are cached under *folder* as given.

        Parameters
        ----------
        folder : str
            A model folder, or a model JSON file of any name.
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
            self._bundles.move_to_end(folder)
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
            while len(self._bundles) > MAX_BUNDLES:
                self._bundles.popitem(last=False)
        return cached

    async def _read(self, json_path: str, json_info: Mapping[str, Any] | None) -> Bundle | None:
        try:
            bundle = await open_bundle(
                self.fs, json_path, allow_outside=self.allow_outside, policy=self.policy
            )
        except ModelNotFoundError:
            return None
        except ManifestError:
            if posixpath.basename(json_path) == MODEL_JSON:
                raise
            return None  # a lone .json that is not a manifest: a plain folder
        if json_info is None:  # asked after the read: a rewrite in between costs a re-read
            try:
                json_info = await self._info_fresh(json_path)
            except (FileNotFoundError, NotImplementedError):
                json_info = None
        bundle.version = identity(json_info)
        return bundle

    async def index(self, bundle: Bundle) -> WeightIndex:
        """The weight index of *bundle* (shard sizes and string lengths resolved).

        Raises
        ------
        ShardMissingError, WeightDataError
            When a shard is missing or the shards are too short.
        """
        lock = self._index_locks.setdefault(bundle, asyncio.Lock())
        async with lock:
            return await load_index(self.fs, bundle, policy=self.policy)

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
