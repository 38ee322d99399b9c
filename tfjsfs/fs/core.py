"""TFJSFileSystem: TF.js bundles as first-class files over any fsspec backend.

One implementation class serves every ``tfjs`` name. ``tfjs+<protocol>``
names (entry points, :func:`tfjsfs.register`) point at tiny subclasses that
only fix the default inner protocol, so that ``fsspec.filesystem("tfjs+s3")``
without a URL still knows its backend; they are made on demand by this
module's ``__getattr__`` (``TFJSFileSystem_s3``, …) and pickle by name.

Rules kept throughout (see ``reference/fsspec-design.md``):

* the real work is in coroutines (``_ls``, ``_info``, ``_cat_file``, …);
  fsspec's ``mirror_sync_methods`` makes their sync twins. Written sync by
  hand: ``_open``, ``invalidate_cache``, ``unstrip_protocol``, the
  transaction methods (the inner filesystem's), ``touch``, ``modified``,
  ``created``, ``sign``, ``resolve_path`` and the model methods
  (``load_model``, ``load_weights``, ``save_model``, each with an ``_``
  coroutine twin);
* the model-aware ``_ls``/``_info`` and the virtual tensors are in
  :class:`tfjsfs.fs.listing.ModelListing`, the manifest cache in
  :mod:`tfjsfs.fs.catalog`, the ``.npy`` files in :mod:`tfjsfs.fs.files`;
* delegation is explicit, one method at a time: no ``__getattribute__``;
* names stay in this filesystem's namespace: the inner filesystem's own
  names, except over HTTP where ``host/path`` stands for the URL (so
  ``https`` is never downgraded);
* keyword arguments are never forwarded blindly to inner coroutines
  (``prefix=`` from ``glob`` is accepted and ignored by ``_ls``).
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import re
import threading
from typing import Any, ClassVar

import fsspec
from fsspec.asyn import AsyncFileSystem, sync
from fsspec.callbacks import DEFAULT_CALLBACK
from fsspec.implementations.chained import ChainedFileSystem
from fsspec.registry import known_implementations
from fsspec.registry import registry as loaded_implementations

from .._util.concurrency import gather_bounded
from .._util.retry import RetryPolicy
from .._util.urls import is_http, strip_tfjs
from ..errors import MissingProtocolError
from ..io.resolve import as_async, build_inner
from ..model import api
from .catalog import Catalog, accepts
from .files import ReadOnlyError, TensorFile
from .listing import ModelListing
from .paths import TENSORS_DIR, ResolvedPath, resolve_virtual
from .registry import alias_name, alias_protocol

__all__ = ["TFJSFileSystem"]


class TFJSFileSystem(ModelListing, AsyncFileSystem, ChainedFileSystem):
    """TF.js model bundles as files, over any fsspec filesystem.

    Plain files pass through untouched (open, cat, pipe, put, get, cp, rm,
    glob, find, walk, du, transactions, ``mode="create"``). Model folders
    (holding a ``model.json``) stay ``type: "directory"`` and carry a
    ``"tfjs"`` summary; model.json and shard entries carry their role; each
    weight reads as ``<model>/@tensors/<weight name>.npy`` (not listed in the
    model folder, so ``du``, ``find`` and recursive copies count weights
    once). See :mod:`tfjsfs.fs.listing` for what each listing costs.

    URLs: ``tfjs+<protocol>://<path>`` (``tfjs+s3://bucket/model``,
    ``tfjs+file:///abs/model``, ``tfjs+https://host/model``) or the chained
    ``tfjs::<any fsspec URL>``.

    Parameters
    ----------
    fo : str, optional
        Set by fsspec's URL chaining; ignored (paths are always absolute).
    target_protocol : str, optional
        Inner protocol (``"s3"``, ``"memory"``, …). Taken from the URL or the
        ``tfjs+<protocol>`` name; required otherwise. Never defaults to the
        local disk.
    target_options : dict, optional
        Options for the inner filesystem; keyword arguments not listed here
        are added to them (``key=``, ``endpoint_url=``, ``token=``…). Inner
        fsspec config (``conf["s3"]``) applies as usual. Config for this class
        lives under ``"tfjs"`` (any ``"tfjs+X"`` entry applies to that alias
        only).
    fs : fsspec.AbstractFileSystem, optional
        An inner filesystem instance to use instead of building one. Sync
        filesystems are wrapped in ``AsyncFileSystemWrapper``; an async one
        must be in the same sync/async mode as this filesystem.
    allow_outside : bool
        Follow manifest shard paths that leave the model folder (refused by
        default, :class:`~tfjsfs.errors.UnsafePathError`).
    mark_models : bool
        Mark bundle sub-folders in folder listings (default True). On object
        stores this costs one flat listing of the folder's prefix; turn it off
        for listings of huge buckets.
    retries : int
        Extra attempts after transient failures (5xx, resets, short bodies)
        when reading model.json and weights (default 5, with backoff).
    timeout : float or None
        Per-request timeout in seconds for those reads (default 60).
    asynchronous : bool
        Use from a coroutine (``await fs._ls(...)``); the inner filesystem is
        built in the same mode.
    loop : asyncio.AbstractEventLoop, optional
        Loop for sync use (passed on to the inner filesystem).
    batch_size : int, optional
        Coroutines run at once by bulk operations (fsspec convention).
    **inner_options
        Everything else goes to the inner filesystem.

    Notes
    -----
    Instances pickle with their inner options (for Dask workers); parsed
    manifests are per instance and dropped by :meth:`invalidate_cache`. A
    cached manifest is checked against model.json's current size, ETag or
    mtime before a virtual tensor is read, and a read that hits a missing or
    changed shard refreshes the bundle once before it fails.
    """

    protocol: ClassVar[Any] = ("tfjs",)
    root_marker = ""
    sep = "/"
    cachable = True
    _strip_tokenize_options = ("fo",)
    default_target_protocol: ClassVar[str | None] = None

    def __init__(
        self,
        fo: str | None = None,
        target_protocol: str | None = None,
        target_options: dict[str, Any] | None = None,
        fs: Any = None,
        *,
        allow_outside: bool = False,
        mark_models: bool = True,
        retries: int = RetryPolicy.retries,
        timeout: float | None = RetryPolicy.timeout,
        asynchronous: bool = False,
        loop: Any = None,
        batch_size: int | None = None,
        **inner_options: Any,
    ):
        super().__init__(asynchronous=asynchronous, loop=loop, batch_size=batch_size)
        if target_protocol is None and fs is not None:
            target_protocol = _first(getattr(fs, "sync_fs", fs).protocol)
        target_protocol = target_protocol or self.default_target_protocol
        if not target_protocol or target_protocol.split("+")[0] == "tfjs":
            raise MissingProtocolError(
                f"a tfjs filesystem needs an inner protocol, got {target_protocol!r}: use "
                "tfjs+<protocol>://… (tfjs+s3://bucket/model, tfjs+file:///abs/model), "
                "tfjs::<fsspec URL> or target_protocol=; it never falls back to local files"
            )
        if fs is None:
            fs = build_inner(target_protocol, target_options, inner_options, asynchronous, loop)
        elif target_options or inner_options:
            raise ValueError("pass either fs= or options for the inner filesystem, not both")
        self.fs = as_async(fs, asynchronous)
        if self.fs.asynchronous != self.asynchronous:
            raise ValueError("the tfjs and inner filesystems must both be sync or both async")
        self.target_protocol = target_protocol
        self.allow_outside = allow_outside
        self.mark_models = mark_models
        self.protocol = (f"tfjs+{target_protocol}", "tfjs")
        self._http = is_http(target_protocol)
        self._sync_fs = getattr(self.fs, "sync_fs", self.fs)
        if not self._http:
            # the namespace is the inner one (memory "/b/x", local "/abs", s3 "b/x")
            self.root_marker = self._sync_fs.root_marker
            self._strip_protocol = self._strip_inner
        self.retries, self.timeout = retries, timeout
        policy = RetryPolicy(retries=retries, timeout=timeout)
        self._catalog = Catalog(
            self.fs, listable=not self._http, allow_outside=allow_outside, policy=policy
        )

    # ------------------------------------------------------------- names
    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, (list, tuple)):
            return [cls._strip_protocol(p) for p in path]
        return strip_tfjs(path)

    def _strip_inner(self, path: Any) -> Any:
        if isinstance(path, (list, tuple)):
            return [self._strip_inner(p) for p in path]
        return self._sync_fs._strip_protocol(strip_tfjs(path))

    @classmethod
    def _get_kwargs_from_urls(cls, path: str) -> dict[str, Any]:
        match = re.match(r"^tfjs\+([^:/]+)://", path)
        if not match:
            return {}
        proto = match.group(1)
        out: dict[str, Any] = {}
        if proto != cls.default_target_protocol:
            out["target_protocol"] = proto
        try:
            inner_cls = fsspec.get_filesystem_class(proto)
            out.update(inner_cls._get_kwargs_from_urls(f"{proto}://{path[match.end() :]}"))
        except (ValueError, ImportError):
            pass
        return out

    def inner_path(self, path: str) -> str:
        """The inner filesystem's path (a full URL over HTTP) for *path*."""
        path = self._strip_protocol(path)
        return f"{self.target_protocol}://{path}" if self._http else path

    def unwrap_bundle_path(self, path: str) -> tuple[AsyncFileSystem, str]:
        """The inner filesystem and its path for *path* (what the model API works on)."""
        return self.fs, self.inner_path(path)

    def _outer(self, name: str) -> str:
        if self._http:
            return strip_tfjs(name)
        return name

    def _entry(self, info: dict[str, Any]) -> dict[str, Any]:
        return {**info, "name": self._outer(info["name"])}

    def _resolve(self, path: str) -> ResolvedPath:
        outer = self._strip_protocol(path)
        return resolve_virtual(outer, self.inner_path(outer))

    def unstrip_protocol(self, name: str) -> str:
        """``tfjs+<inner>://<path>`` (``tfjs::<inner URL>`` for unregistered names)."""
        path = self._strip_protocol(name)
        plus = f"tfjs+{self.target_protocol}"
        if plus in known_implementations or plus in loaded_implementations:
            return f"{plus}://{path}"
        if self._http:
            return f"tfjs::{self.inner_path(path)}"
        return f"tfjs::{self.fs.unstrip_protocol(path)}"

    # ---------------------------------------------------------- caching
    def invalidate_cache(self, path: str | None = None) -> None:
        """Forget listings and parsed manifests (of *path* and its parents, or all)."""
        if path is None:
            self._catalog.invalidate()
            self._sync_fs.invalidate_cache()
            return
        rp = self._resolve(path)
        inner = rp.model_root if rp.is_virtual else rp.inner
        self._catalog.invalidate(inner)
        self._sync_fs.invalidate_cache(inner)

    # ------------------------------------------------------ transactions
    # A transaction is the inner filesystem's own: files opened for writing
    # through this filesystem join it, and each backend defers what it defers
    # on its own (s3fs and gcsfs defer files, not ``pipe_file``).
    @property
    def transaction(self):
        """The inner filesystem's transaction context (see fsspec)."""
        return self._sync_fs.transaction

    def start_transaction(self):
        """Begin the inner filesystem's write transaction."""
        return self._sync_fs.start_transaction()

    def end_transaction(self):
        """Commit the inner filesystem's write transaction."""
        self._catalog.invalidate()
        return self._sync_fs.end_transaction()

    @property
    def _intrans(self) -> bool:
        inner = self.__dict__.get("_sync_fs")
        return bool(inner is not None and inner._intrans)

    @_intrans.setter
    def _intrans(self, value: bool) -> None:
        pass  # set by fsspec's constructor; the inner filesystem's flag is the one used

    async def set_session(self, *args: Any, **kwargs: Any) -> Any:
        """Open the inner filesystem's session (async HTTP, S3, GCS)."""
        if hasattr(self.fs, "set_session"):
            return await self.fs.set_session(*args, **kwargs)
        return None

    # ------------------------------------------------------------ reading
    async def _cat_file(self, path: str, start: int | None = None, end: int | None = None, **kw):
        rp = self._resolve(path)
        if rp.is_virtual:
            return await self._read_tensor(rp, start, end)
        return await self.fs._cat_file(rp.inner, start=start, end=end)

    async def _cat_ranges(
        self,
        paths: list[str],
        starts: Any,
        ends: Any,
        max_gap: int | None = None,
        batch_size: int | None = None,
        on_error: str = "return",
        **kwargs: Any,
    ) -> list:
        n = len(paths)
        starts = [starts] * n if not isinstance(starts, list) else starts
        ends = [ends] * n if not isinstance(ends, list) else ends
        if len(starts) != n or len(ends) != n:
            raise ValueError("paths, starts and ends must have the same length")
        rps = [self._resolve(p) for p in paths]
        plain = [i for i, rp in enumerate(rps) if not rp.is_virtual]
        out: list[Any] = [None] * n
        if plain:
            opts: dict[str, Any] = {"on_error": on_error}
            if max_gap is not None:
                opts["max_gap"] = max_gap
            if batch_size is not None:
                opts["batch_size"] = batch_size
            got = await self.fs._cat_ranges(
                [rps[i].inner for i in plain],
                [starts[i] for i in plain],
                [ends[i] for i in plain],
                **opts,
            )
            for i, data in zip(plain, got, strict=True):
                out[i] = data
        virtual = [i for i in range(n) if rps[i].is_virtual]

        async def one(i: int) -> Any:
            try:
                return await self._read_tensor(rps[i], starts[i], ends[i])
            except Exception as exc:
                if on_error == "return":
                    return exc
                raise

        got = await gather_bounded(map(one, virtual), batch_size)
        for i, data in zip(virtual, got, strict=True):
            out[i] = data
        return out

    async def _get_file(self, rpath: str, lpath: str, callback=DEFAULT_CALLBACK, **kwargs):
        rp = self._resolve(rpath)
        if not rp.is_virtual:
            return await self.fs._get_file(rp.inner, lpath, callback=callback)
        if rp.kind == "tensor_dir":
            await self._info(rpath)  # must exist
            return await asyncio.to_thread(os.makedirs, lpath, exist_ok=True)
        data = await self._read_tensor(rp, None, None)
        callback.set_size(len(data))
        await asyncio.to_thread(_write_local, lpath, data)
        callback.relative_update(len(data))

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: Any = None,
        autocommit: bool = True,
        cache_options: dict | None = None,
        **kwargs: Any,
    ):
        rp = self._resolve(path)
        if rp.is_virtual:
            if mode != "rb":
                raise ReadOnlyError(f"{rp.path} is a virtual tensor file; it can only be read")
            tensor = sync(self.loop, self._retrying, rp)
            opts = {"cache_type": kwargs["cache_type"]} if "cache_type" in kwargs else {}
            return TensorFile(
                self, rp.path, tensor, block_size=block_size or "default",
                cache_options=cache_options, **opts,
            )  # fmt: skip
        if "r" not in mode:
            self._catalog.invalidate(posixpath.dirname(rp.inner))
        return self._sync_fs._open(
            rp.inner,
            mode=mode,
            block_size=block_size,
            autocommit=autocommit,
            cache_options=cache_options,
            **kwargs,
        )

    # ------------------------------------------------------------ writing
    def _writable(self, path: str) -> str:
        rp = self._resolve(path)
        if rp.is_virtual:
            raise ReadOnlyError(f"{rp.path} is inside a virtual {TENSORS_DIR} folder (read-only)")
        self._catalog.invalidate(rp.inner)
        return rp.inner

    async def _pipe_file(self, path: str, value: Any, mode: str = "overwrite", **kwargs: Any):
        return await self.fs._pipe_file(self._writable(path), value, mode=mode)

    async def _put_file(
        self, lpath: str, rpath: str, callback=DEFAULT_CALLBACK, mode: str = "overwrite", **kw
    ):
        return await self.fs._put_file(lpath, self._writable(rpath), callback=callback, mode=mode)

    async def _cp_file(self, path1: str, path2: str, **kwargs: Any):
        rp = self._resolve(path1)
        target = self._writable(path2)
        if rp.is_virtual:
            return await self.fs._pipe_file(target, await self._read_tensor(rp, None, None))
        return await self.fs._cp_file(rp.inner, target)

    async def _rm_file(self, path: str, **kwargs: Any):
        return await self.fs._rm_file(self._writable(path))

    async def _rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None, **kw):
        paths = [self._writable(p) for p in ([path] if isinstance(path, str) else path)]
        opts = {"maxdepth": maxdepth} if maxdepth is not None else {}
        return await self.fs._rm(paths, recursive=recursive, **opts)

    async def _mkdir(self, path: str, create_parents: bool = True, **kwargs: Any):
        return await self.fs._mkdir(self._writable(path), create_parents=create_parents)

    async def _makedirs(self, path: str, exist_ok: bool = False):
        return await self.fs._makedirs(self._writable(path), exist_ok=exist_ok)

    def touch(self, path: str, truncate: bool = True, **kwargs: Any):
        """Create an empty file, or update its timestamp (see fsspec)."""
        return self._sync_fs.touch(self._writable(path), truncate=truncate, **kwargs)

    # --------------------------------------------------------- questions
    async def _exists(self, path: str, **kwargs: Any) -> bool:
        rp = self._resolve(path)
        if rp.is_virtual or self._http:
            return await super()._exists(path)
        return await self.fs._exists(rp.inner)

    async def _isdir(self, path: str) -> bool:
        rp = self._resolve(path)
        if rp.is_virtual or self._http:
            return await super()._isdir(path)
        return await self.fs._isdir(rp.inner)

    async def _isfile(self, path: str) -> bool:
        rp = self._resolve(path)
        if rp.is_virtual or self._http:
            return await super()._isfile(path)
        return await self.fs._isfile(rp.inner)

    async def _find(self, path: str, maxdepth: int | None = None, withdirs: bool = False, **kw):
        rp = self._resolve(path)
        if rp.is_virtual or self._http:
            return await super()._find(path, maxdepth=maxdepth, withdirs=withdirs, **kw)
        detail = kw.get("detail", False)
        opts: dict[str, Any] = {"maxdepth": maxdepth, "withdirs": withdirs, "detail": detail}
        if kw.get("prefix") and accepts(self.fs._find, "prefix"):
            opts["prefix"] = kw["prefix"]
        found = await self.fs._find(rp.inner, **opts)
        if detail:
            return {self._outer(k): self._entry(v) for k, v in found.items()}
        return [self._outer(p) for p in found]

    def modified(self, path: str):
        """Last modification time of a file (see fsspec)."""
        return self._sync_fs.modified(self.inner_path(path))

    def created(self, path: str):
        """Creation time of a file (see fsspec)."""
        return self._sync_fs.created(self.inner_path(path))

    def sign(self, path: str, expiration: int = 100, **kwargs: Any) -> str:
        """A signed URL for a real file, where the backend can make one."""
        return self._sync_fs.sign(self.inner_path(path), expiration=expiration, **kwargs)

    # ------------------------------------------------------- model level
    # The model API (tfjsfs.model.api) on this filesystem's inner backend and options.
    def _api_options(self, options: dict[str, Any], load: bool = True) -> dict[str, Any]:
        if "storage_options" in options:
            raise TypeError("storage_options: the filesystem's own backend is used")
        if load:
            defaults = {"allow_outside": self.allow_outside, "retries": self.retries}
            options = {**defaults, "timeout": self.timeout, **options}
        # "asynchronous" tells the API that the backend is not its own to close
        return {**options, "storage_options": {"fs": self, "asynchronous": self.asynchronous}}

    async def _load_model(self, path: str, **options: Any):
        """Coroutine twin of :meth:`load_model`."""
        opts = self._api_options(options)
        return await api.load_model_async(self._strip_protocol(path), **opts)

    def load_model(self, path: str, **options: Any):
        """Load the bundle at *path*; options as for :func:`tfjsfs.load_model`.

        Returns
        -------
        ModelArtifacts
        """
        return sync(self.loop, self._load_model, path, **options)

    async def _load_weights(self, path: str, names: list[str] | None = None, **options: Any):
        """Coroutine twin of :meth:`load_weights`."""
        opts = self._api_options(options)
        return await api.load_weights_async(self._strip_protocol(path), names, **opts)

    def load_weights(self, path: str, names: list[str] | None = None, **options: Any):
        """Weights of the bundle at *path* (only *names*' bytes are fetched).

        Returns
        -------
        dict of str to numpy.ndarray
        """
        return sync(self.loop, self._load_weights, path, names, **options)

    async def _save_model(self, artifacts: Any, path: str, **options: Any):
        """Coroutine twin of :meth:`save_model`."""
        opts = self._api_options(options, load=False)
        try:
            return await api.save_model_async(artifacts, self._strip_protocol(path), **opts)
        finally:
            self.invalidate_cache(path)

    def save_model(self, artifacts: Any, path: str, **options: Any):
        """Save *artifacts* in folder *path*; options as for :func:`tfjsfs.save_model`.

        Shards are written first and model.json last, create-only unless
        ``overwrite=True``.

        Returns
        -------
        SaveResult
        """
        return sync(self.loop, self._save_model, artifacts, path, **options)


# ---------------------------------------------------------------- helpers
def _first(protocol: Any) -> str:
    return protocol if isinstance(protocol, str) else protocol[0]


def _write_local(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


_ALIASES: dict[str, type] = {}
_LOCK = threading.Lock()


def alias_class(protocol: str) -> type:
    """The :class:`~tfjsfs.fs.core.TFJSFileSystem` subclass behind ``tfjs+<protocol>``.

    It differs only in its default ``target_protocol`` and its fsspec config
    keys (``"tfjs+<protocol>"``, then ``"tfjs"``), and pickles by name.
    """
    from .core import TFJSFileSystem

    with _LOCK:
        cls = _ALIASES.get(protocol)
        if cls is None:
            name = alias_name(protocol)
            cls = type(
                name,
                (TFJSFileSystem,),
                {
                    "__module__": TFJSFileSystem.__module__,
                    "__qualname__": name,
                    "__doc__": f"TFJSFileSystem over {protocol!r} (``tfjs+{protocol}://``).",
                    "protocol": (f"tfjs+{protocol}", "tfjs"),
                    "default_target_protocol": protocol,
                },
            )
            _ALIASES[protocol] = cls
    return cls


def __getattr__(name: str) -> Any:
    """``TFJSFileSystem_<protocol>``: the class behind ``tfjs+<protocol>`` (see registry)."""
    protocol = alias_protocol(name)
    if protocol is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return alias_class(protocol)
