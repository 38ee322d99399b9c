"""A folder of TF.js bundles in any fsspec store, as the model server sees it.

A *model name* is a relative path (``my-model`` or ``team/my-model``); the
bundle lives in ``<store>/<name>/`` as ``model.json`` plus its weight files.
Names are checked before any path is built, so no name can leave the store.

Writes go through :func:`tfjsfs.io.writer.write_bundle` (shards first,
model.json last, create-only unless replacing, fresh shard names whenever the
name held a bundle within the grace period), under a per-name lock so two
uploads to one name take turns in this process; across processes (several
servers on one store) model.json is published with the store's conditional
write and a delete removes only the version it described
(:mod:`tfjsfs.io.conditional`). Replaced and deleted weight files stay
readable for ``grace_period`` seconds, so a load that began before the swap
completes with the old version; :meth:`ModelStore.sweep` removes them after
it, and at start removes what a crash left (see
:func:`tfjsfs.io.writer.sweep_folder`). Files are served from one opened
handle (:meth:`ModelStore.open`), so a response's length is what was opened.
Every filesystem call runs on fsspec's I/O loop, so the store can be used
from any event loop (the server's) with the process-wide fsspec instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import posixpath
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from fsspec.asyn import get_loop

from .._util.concurrency import gather_bounded
from .._util.entries import version_key
from ..errors import ManifestError, ModelNotFoundError, UnsafePathError
from ..format.artifacts import ModelArtifacts, SaveResult
from ..format.layouts import DEFAULT_SHARD_SIZE, MODEL_JSON, ShardPlan, plan_bundle
from ..format.manifest import ModelJSON, WeightGroup
from ..io.conditional import Snapshot
from ..io.found import FoundBundle, files_below
from ..io.location import locate_shard
from ..io.resolve import resolve
from ..io.writer import (
    RETIRED_PREFIX,
    is_fresh_name,
    is_local,
    retire_files,
    sweep_folder,
    unpublish,
    write_bundle,
)
from .names import check_name, without_credentials
from .opened import OpenedFile, open_local
from .options import DEFAULT_GRACE_PERIOD
from .presign import presigned_url
from .served import ServedVersions
from .spools import place_spool

__all__ = [
    "DEFAULT_GRACE_PERIOD",
    "MODEL_JSON",
    "ModelStore",
    "OpenedFile",
    "check_name",
    "topology_summary",
    "without_credentials",
]

READ_CONCURRENCY = 16
#: Seconds a served model.json version is remembered beyond the grace period.
SERVED_MARGIN = 60.0
T = TypeVar("T")
log = logging.getLogger("tfjsfs.server.app")


def topology_summary(doc: ModelJSON) -> dict[str, Any]:
    """A short, JSON-ready description of a model's topology.

    Layers models give their class, name and layers (name and class);
    graph models give their node count and the most common ops.
    """
    topology = doc.model_topology
    if not isinstance(topology, dict):
        return {"kind": "none" if topology is None else "unknown"}
    if "node" in topology or "library" in topology:
        nodes = topology.get("node") or []
        ops = Counter(n.get("op", "?") for n in nodes if isinstance(n, dict))
        out: dict[str, Any] = {
            "kind": "graph",
            "nodes": len(nodes),
            "ops": dict(ops.most_common(20)),
        }
        versions = topology.get("versions")
        if isinstance(versions, dict) and "producer" in versions:
            out["producer"] = versions["producer"]
        signature = doc.signature or {}
        for key in ("inputs", "outputs"):
            if isinstance(signature.get(key), dict):
                out[key] = sorted(signature[key])
        return out
    config_root = topology.get("model_config", topology)
    if not isinstance(config_root, dict):
        return {"kind": "unknown"}
    config = config_root.get("config")
    layers = config.get("layers") if isinstance(config, dict) else config
    listed = []
    for layer in layers if isinstance(layers, list) else []:
        if not isinstance(layer, dict):
            continue
        layer_config = layer.get("config") if isinstance(layer.get("config"), dict) else {}
        listed.append(
            {
                "name": layer.get("name") or layer_config.get("name"),
                "className": layer.get("class_name"),
            }
        )
    out = {
        "kind": "layers",
        "className": config_root.get("class_name"),
        "name": config.get("name") if isinstance(config, dict) else None,
        "layerCount": len(listed),
        "layers": listed,
    }
    for key, label in (("keras_version", "kerasVersion"), ("backend", "backend")):
        if topology.get(key) is not None:
            out[label] = topology[key]
    return out


class _LocalFile:
    """A shard body that is a whole local file: uploaded with ``_put_file``, or
    linked into a local store (:func:`place_spool`)."""

    def __init__(self, path: str, size: int):
        self.path = path
        self.size = size

    def __len__(self) -> int:
        return self.size


class _PutLocalFiles:
    """Filesystem proxy: ``_pipe_file`` of a :class:`_LocalFile` streams the file."""

    def __init__(self, fs: Any):
        self._fs = fs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fs, name)

    async def _pipe_file(self, path: str, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, _LocalFile):
            if is_local(self._fs):  # linked into place: the bytes are written once
                exclusive = kwargs.get("mode") == "create"
                return await asyncio.to_thread(place_spool, data.path, path, exclusive)
            return await self._fs._put_file(data.path, path, **kwargs)
        return await self._fs._pipe_file(path, data, **kwargs)


class ModelStore:
    """Bundles under one fsspec URL.

    Parameters
    ----------
    url : str
        Any fsspec URL or local path: ``./models``, ``file:///srv/models``,
        ``s3://bucket/models``, ``gs://bucket/models``, ``memory://models``.
    storage_options : mapping, optional
        Options for the filesystem (credentials, ``endpoint_url``, …).
    reshard : bool or int
        False stores uploads as received (``model.json`` +
        ``model.weights.bin``); True re-shards them to the converter's layout
        (``group1-shard1ofN.bin``, 4,194,304 bytes); an int is the shard size.
    grace_period : float
        Seconds replaced and deleted weight files stay readable (so loads
        that began before the swap complete with the old version); 0 removes
        them at once.
    """

    def __init__(
        self,
        url: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        reshard: bool | int = False,
        grace_period: float = DEFAULT_GRACE_PERIOD,
    ):
        self.url = str(url)
        self.storage_options = dict(storage_options or {})
        self.fs, root = resolve(self.url, **self.storage_options)
        self.root = root.rstrip("/") or root
        if reshard is True:
            self.shard_size: int | None = DEFAULT_SHARD_SIZE
        elif reshard is False or reshard is None:
            self.shard_size = None
        else:
            self.shard_size = int(reshard)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._summaries: dict[str, tuple[tuple, FoundBundle]] = {}
        self.grace_period = max(0.0, float(grace_period))
        # weight files the model.json versions served lately named
        self._served = ServedVersions(keep_for=self.grace_period + SERVED_MARGIN)
        self._sweeps: set[asyncio.Future] = set()
        self._writing: Counter[str] = Counter()  # folders being written (not swept meanwhile)

    def __repr__(self) -> str:
        return f"ModelStore({self.label!r})"

    @property
    def label(self) -> str:
        """The store's URL without credentials (what pages and logs show)."""
        return without_credentials(self.url)

    def model_url(self, name: str) -> str:
        """A URL of bundle *name* that :func:`tfjsfs.load_model` accepts (with
        :attr:`storage_options`)."""
        return f"{self.url.rstrip('/')}/{check_name(name)}"

    # ------------------------------------------------------------ plumbing

    async def io(self, coro: Awaitable[T]) -> T:
        """Await *coro* on fsspec's I/O loop (where the filesystem lives)."""
        loop = get_loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    def folder(self, name: str) -> str:
        """Inner path of the bundle folder for a checked *name*."""
        return posixpath.join(self.root, check_name(name))

    def relative_files(self, name: str, paths: Iterable[str]) -> list[str]:
        """Inner *paths* of bundle *name*'s files relative to its folder (what
        clients are shown: never the store's location)."""
        folder = self.folder(name)
        return [posixpath.relpath(path, folder) for path in paths]

    def json_path(self, name: str) -> str:
        """Inner path of the bundle's model.json."""
        return posixpath.join(self.folder(name), MODEL_JSON)

    @contextlib.asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[None]:
        """Hold the per-name write lock (on the caller's loop)."""
        lock = self._locks.get(name)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[name] = lock
        async with lock:
            yield

    async def prepare(self) -> list[str]:
        """Get the store ready to serve: create its folder (local stores) and sweep it.

        The sweep removes retired files whose grace period is over and what
        a crash left behind (see :meth:`sweep`); one more sweep follows after
        the grace period. Returns the paths removed.
        """
        if is_local(self.fs):
            await self.io(self.fs._makedirs(self.root, exist_ok=True))
        return await self.io(self._start_sweeps())

    async def _start_sweeps(self) -> list[str]:
        removed = await self._sweep()
        self._sweep_later(None)
        return removed

    async def sweep(self) -> list[str]:
        """Remove, everywhere in the store, what the grace period no longer protects.

        See :func:`tfjsfs.io.writer.sweep_folder`; files a live model.json
        names are never removed. Returns the paths removed.
        """
        return await self.io(self._sweep())

    async def _sweep(self, folders: list[str] | None = None) -> list[str]:
        if folders is None:
            try:
                found = await self.fs._find(self.root, withdirs=False, detail=False)
            except (FileNotFoundError, NotADirectoryError):
                found = []
            folders = sorted(
                {
                    posixpath.dirname(p)
                    for p in found
                    if posixpath.basename(p).startswith((RETIRED_PREFIX, "."))
                    or is_fresh_name(posixpath.basename(p))
                }
            )
        removed: list[str] = []
        for folder in folders:
            if self._writing[folder]:
                self._sweep_later(folder)  # its new shards are not published yet
                continue
            try:
                removed += await sweep_folder(self.fs, folder, self.grace_period)
            except Exception as exc:  # never fatal: the next sweep tries again
                log.warning("could not sweep %s: %s", folder, exc)
                continue
            if is_local(self.fs) and folder != self.root:
                with contextlib.suppress(OSError):
                    await self.fs._rmdir(folder)  # only when empty
            self._summaries.pop(posixpath.join(folder, MODEL_JSON), None)
        return removed

    def _sweep_later(self, folder: str | None) -> None:
        """Sweep *folder* (None: the whole store) once the grace period is over."""
        if self.grace_period <= 0:
            return

        async def later() -> None:
            await asyncio.sleep(self.grace_period + 0.01)
            await self._sweep(None if folder is None else [folder])

        task = asyncio.ensure_future(later())
        self._sweeps.add(task)
        task.add_done_callback(self._sweeps.discard)

    async def close(self) -> None:
        """Cancel pending sweeps (the next start sweeps what they would have)."""

        async def cancel() -> None:
            for task in list(self._sweeps):
                task.cancel()

        await self.io(cancel())

    # ------------------------------------------------------------- reading

    async def _summary(
        self, name: str, json_info: Mapping[str, Any], files: dict[str, Mapping[str, Any]]
    ) -> FoundBundle:
        """Bundle *name* with the listed *files*; model.json is re-read only when it changed."""
        json_path = json_info["name"]
        key = version_key(json_info)
        files = {**files, json_path: json_info}
        cached = self._summaries.get(json_path)
        if cached is None or cached[0] != key:
            found = FoundBundle(name, json_path, files)
            try:
                data = await self.fs._cat_file(json_path)
                found.json_size = len(data)
                found.doc = ModelJSON.parse(data, f"{name}/{MODEL_JSON}", require_topology=False)
            except (ManifestError, UnsafePathError) as exc:
                found.error = str(exc)
            except FileNotFoundError:
                raise ModelNotFoundError(f"no model named {name!r}") from None
            self._summaries[json_path] = (key, dataclasses.replace(found, files={}))
            return found
        return dataclasses.replace(cached[1], files=files)

    def _relative(self, path: str) -> str | None:
        prefix = self.root.rstrip("/") + "/"
        path = path.rstrip("/")
        return path[len(prefix) :] if path.startswith(prefix) else None

    async def _list(self) -> list[FoundBundle]:
        try:
            found = await self.fs._find(self.root, withdirs=False, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            found = {}
        files = {p.rstrip("/"): e for p, e in found.items()}
        paths = sorted(files)
        json_paths: dict[str, str] = {}
        for path in paths:
            rel = self._relative(files[path].get("name", path))
            if rel is None:
                continue
            folder, base = posixpath.split(rel)
            if base == MODEL_JSON and folder and _is_listable(folder):
                json_paths[folder] = path
        names = sorted(json_paths)

        async def one(name: str) -> FoundBundle | None:
            json_path = json_paths[name]
            below = files_below(files, paths, posixpath.dirname(json_path))
            try:
                return await self._summary(name, files[json_path], below)
            except ModelNotFoundError:
                return None  # deleted while listing

        summaries = await gather_bounded((one(n) for n in names), READ_CONCURRENCY)
        return [s for s in summaries if s is not None]

    async def list(self) -> list[FoundBundle]:
        """Every bundle in the store, found with one recursive listing.

        Only model.json files that are new or changed since the last call
        are read.
        """
        return await self.io(self._list())

    async def _describe(self, name: str) -> FoundBundle:
        json_path = self.json_path(name)
        try:
            info = await self.fs._info(json_path)
        except FileNotFoundError:
            raise ModelNotFoundError(f"no model named {name!r}") from None
        if info.get("type") != "file":
            raise ModelNotFoundError(f"no model named {name!r}")
        folder = self.folder(name)
        try:
            listing = await self.fs._ls(folder, detail=True, refresh=True)
        except FileNotFoundError:
            listing = []
        files = {e["name"].rstrip("/"): e for e in listing if e.get("type") == "file"}
        summary = await self._summary(name, {**info, "name": json_path}, files)
        found = {}
        for path in summary.missing:
            if "/" in path:  # shards in a sub-folder: ask for each
                with contextlib.suppress(FileNotFoundError):
                    inner = posixpath.join(folder, path)
                    sub = await self.fs._info(inner)
                    found[inner] = {**sub, "size": int(sub.get("size") or 0)}
        return dataclasses.replace(summary, files={**summary.files, **found}) if found else summary

    async def describe(self, name: str) -> FoundBundle:
        """The summary of one bundle.

        Raises
        ------
        ModelNotFoundError
        UnsafePathError
        """
        check_name(name)
        return await self.io(self._describe(name))

    async def _check_file(self, name: str, file: str) -> str:
        """Inner path of *file* if it is model.json or a weight file some model.json named."""
        json_path = self.json_path(name)
        if file != MODEL_JSON and not self._served.named(json_path, file):
            # a file is served only if some model.json of the bundle named it;
            # whether it still exists is up to the store (checked when opened)
            try:
                info = await self.fs._info(json_path)
            except FileNotFoundError:
                raise ModelNotFoundError(f"no model named {name!r}") from None
            summary = await self._summary(name, {**info, "name": json_path}, {})
            names = summary.shard_names()
            self._served.note(json_path, f"listed {version_key(info)}", names)
            if file not in names:
                raise ModelNotFoundError(f"model {name!r} has no weight file {file!r}")
        return posixpath.join(self.folder(name), file)

    async def presign(self, name: str, file: str, expires: float) -> str:
        """A presigned GET URL of a bundle file, valid for *expires* seconds.

        Raises
        ------
        ModelNotFoundError
            No such bundle, or *file* is not one of its files.
        NotImplementedError
            The store cannot sign URLs.
        """
        check_name(name)

        async def sign() -> str:
            return await presigned_url(self.fs, await self._check_file(name, file), expires)

        return await self.io(sign())

    def weight_files(self, name: str, doc: ModelJSON) -> list[str]:
        """The weight files *doc* (bundle *name*'s model.json) names, in manifest order,
        relative to the bundle folder.

        Raises
        ------
        UnsafePathError
            A manifest path that does not resolve inside the bundle folder.
        """
        return [
            locate_shard("", path, kind="key", source=f"{name}/{MODEL_JSON}")
            for group in doc.weights_manifest
            for path in group.paths
        ]

    def served(self, name: str, data: bytes) -> None:
        """Note that model.json *data* of bundle *name* was sent to a client.

        The weight files it names stay servable (while they exist: the grace
        period keeps replaced ones), so a reader holding it can finish its load.
        """
        json_path = self.json_path(name)
        tag = hashlib.blake2b(data, digest_size=16).hexdigest()
        if self._served.known(json_path, tag):
            return
        try:
            doc = ModelJSON.parse(data, f"{name}/{MODEL_JSON}", require_topology=False)
        except (ManifestError, UnsafePathError):
            return
        found = FoundBundle(name, json_path, doc=doc)
        self._served.note(json_path, tag, found.shard_names())

    async def _open(self, name: str, file: str) -> OpenedFile:
        path = await self._check_file(name, file)
        try:
            if is_local(self.fs):
                fd, info = await asyncio.to_thread(open_local, path)
                return OpenedFile(path, info, fd=fd)
            info = await self.fs._info(path)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ModelNotFoundError(f"model {name!r} has no file {file!r}") from None
        if info.get("type") != "file":
            raise ModelNotFoundError(f"model {name!r} has no file {file!r}")
        return OpenedFile(path, info, read=self.read)

    async def open(self, name: str, file: str) -> OpenedFile:
        """Open a bundle file (model.json or a weight file a model.json named).

        Returns
        -------
        OpenedFile
            Close it when done (it is a context manager).

        Raises
        ------
        ModelNotFoundError
            No such bundle, or *file* is not one of its files.
        """
        check_name(name)
        if is_local(self.fs) and (
            file == MODEL_JSON or self._served.named(self.json_path(name), file)
        ):
            # nothing to ask the store: opened from the caller's loop (no hop to fsspec's)
            return await self._open(name, file)
        return await self.io(self._open(name, file))

    async def file(self, name: str, file: str) -> tuple[str, dict[str, Any]]:
        """Inner path and fsspec info of a bundle file (model.json or a listed shard).

        Raises
        ------
        ModelNotFoundError
            No such bundle, or *file* is not one of its files.
        """
        with await self.open(name, file) as opened:
            return opened.path, {"name": opened.path, "size": opened.size, "type": "file"}

    async def model_json(self, name: str) -> bytes:
        """The bytes of bundle *name*'s model.json.

        Raises
        ------
        ModelNotFoundError
        UnsafePathError
        """
        try:
            return await self.io(self.fs._cat_file(self.json_path(name)))
        except FileNotFoundError:
            raise ModelNotFoundError(f"no model named {name!r} in {self.label}") from None

    async def exists(self, name: str) -> bool:
        """Whether bundle *name* (its model.json) exists."""
        return await self.io(self.fs._exists(self.json_path(name)))

    async def read(self, path: str, start: int | None, end: int | None) -> bytes:
        """Bytes ``[start, end)`` of the file at inner *path* (None: from the start/to the end)."""
        return await self.io(self.fs._cat_file(path, start=start, end=end))

    # ------------------------------------------------------------- writing

    async def _save(
        self,
        name: str,
        artifacts: ModelArtifacts,
        spool_path: str | None,
        overwrite: bool,
        precondition: Callable[[Snapshot], None] | None,
    ) -> SaveResult:
        folder = self.folder(name)
        if self.shard_size:
            plan = plan_bundle(artifacts, "converter", shard_size=self.shard_size)
        else:
            plan = plan_bundle(artifacts, "upload")
        data = memoryview(artifacts.weight_data).cast("B")

        async def shard_bytes(shard: ShardPlan) -> Any:
            if spool_path and shard.start == 0 and shard.end == len(data):
                return _LocalFile(spool_path, len(data))  # streamed, never read whole
            return data[shard.start : shard.end]

        def render(groups: list[WeightGroup], json_path: str) -> bytes:
            return artifacts.to_model_json(groups).dumps()

        self._writing[folder] += 1
        try:
            json_path, files = await write_bundle(
                _PutLocalFiles(self.fs),
                folder,
                plan,
                shard_bytes,
                render,
                overwrite=overwrite,
                grace_period=self.grace_period,
                last_writer_wins=overwrite and precondition is None,
                precondition=precondition,
            )
        finally:
            self._writing[folder] -= 1
            if not self._writing[folder]:
                del self._writing[folder]
        self._summaries.pop(json_path, None)
        self._sweep_later(folder)
        return SaveResult(artifacts.info(), url=json_path, files=files)

    async def save(
        self,
        name: str,
        artifacts: ModelArtifacts,
        *,
        overwrite: bool = True,
        spool_path: str | None = None,
        precondition: Callable[[Snapshot], None] | None = None,
    ) -> SaveResult:
        """Store *artifacts* as bundle *name*, atomically, under the name's lock.

        The lock only orders this process's writers; across processes (several
        servers on one store) model.json is published with the store's
        conditional write (:mod:`tfjsfs.io.conditional`). A replace without
        *precondition* is last-writer-wins (it publishes over whatever version
        another server published meanwhile); with one, it is compare-and-swap
        against the version the precondition accepted.

        Parameters
        ----------
        name : str
        artifacts : ModelArtifacts
        overwrite : bool
            Replace an existing bundle (readers never see a mix); when False
            an existing bundle raises :class:`~tfjsfs.errors.BundleExistsError`.
        spool_path : str, optional
            A local file holding exactly ``artifacts.weight_data``; a
            single-file bundle is then streamed from it to remote stores.
        precondition : callable, optional
            Called with the snapshot of model.json the save starts from; raises
            (e.g. :class:`~tfjsfs.errors.ConcurrentUpdateError` for an HTTP
            ``If-Match`` that does not hold) to refuse the save.

        Raises
        ------
        BundleExistsError
            Not *overwrite*, and the bundle exists (or another writer created it first).
        ConcurrentUpdateError
            With *precondition*: another writer published model.json meanwhile.
        """
        check_name(name)
        async with self.lock(name):
            return await self.io(self._save(name, artifacts, spool_path, overwrite, precondition))

    async def _delete(self, name: str) -> FoundBundle:
        summary = await self._describe(name)
        folder = self.folder(name)
        shards = summary.shard_names()

        async def retire() -> None:
            if self.grace_period > 0:
                # recorded before model.json goes, so a crash leaves nothing unswept
                await retire_files(self.fs, folder, shards)

        if summary.doc is None:  # unreadable: nothing to compare, nothing to retire
            await self.fs._rm_file(summary.json_path)
        else:  # only the version described (another server may have replaced it)
            await unpublish(self.fs, summary.json_path, summary.doc, retire)
        if self.grace_period <= 0:
            for path in shards:
                with contextlib.suppress(FileNotFoundError):
                    await self.fs._rm_file(posixpath.join(folder, path))
        self._summaries.pop(summary.json_path, None)
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(folder)
        if self.grace_period > 0:
            self._sweep_later(folder)
        elif is_local(self.fs):
            with contextlib.suppress(OSError):
                await self.fs._rmdir(folder)  # only when empty
        return summary

    async def delete(self, name: str) -> FoundBundle:
        """Remove bundle *name*: model.json first, then its weight files.

        The weight files go at once without a grace period, else once it is
        over. Only the bundle's own files go; other files and nested bundles stay.
        """
        check_name(name)
        async with self.lock(name):
            return await self.io(self._delete(name))


def _is_listable(name: str) -> bool:
    try:
        check_name(name)
    except UnsafePathError:
        return False
    return True
