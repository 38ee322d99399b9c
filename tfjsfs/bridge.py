"""The browser storage bridge: a page that moves models between a browser and a store.

:func:`setup_bridge` adds to an aiohttp application:

=========================================  =========================================
``GET  {prefix}``                          the bridge page (``static/bridge.html``)
``GET  {prefix}/bridge.js``                its script (``static/bridge.js``); it can
                                           also be included by pages of other origins
``GET  {prefix}/api/models``               ``{"store", "models": [{name, info}]}``
``GET  {prefix}/api/models/{name}``        ``{name, version, modelArtifacts (no
                                           weightData), weightDataBytes, weightsUrl}``
``GET  {prefix}/api/weights/{name}?v=...`` the concatenated weight data (binary)
``POST {prefix}/api/models/{name}``        receive a browser model: TF.js's upload
                                           form (``model.json`` + ``model.weights.bin``);
                                           ``?overwrite=1`` replaces an existing one
=========================================  =========================================

The page's script reads and writes TF.js's ``localstorage://`` and
``indexeddb://`` layouts itself (no TF.js needed). The store is any fsspec
location: a URL, the model server's :class:`~tfjsfs.modelstore.ModelStore`,
or an ``(fsspec filesystem, root path)`` pair. API routes get CORS from the
application's ``aiohttp_cors`` configuration when it has one, so the script
works from every origin the server allows; the server's middlewares (bearer
tokens, error replies) apply to them as to its other routes.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import os
import posixpath
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .api import load_model_async
from .artifacts import ModelArtifacts
from .browser import artifacts_to_json
from .errors import (
    BundleExistsError,
    FormatError,
    ModelNotFoundError,
    TFJSError,
    UnsafePathError,
)
from .layouts import DEFAULT_SHARD_SIZE, MODEL_JSON, ShardPlan, plan_bundle
from .manage import find_bundles
from .manifest import ModelJSON, WeightGroup
from .modelstore import ModelStore, check_name
from .paths import as_async
from .upload import UploadTooLargeError, read_upload
from .writer import write_bundle

__all__ = ["BRIDGE_KEY", "BridgeStore", "check_model_name", "setup_bridge"]

#: Default limit on a pushed model's size (bytes of the whole request).
DEFAULT_MAX_UPLOAD = 2 * 1024**3


def _without_credentials(url: str) -> str:
    """*url* without a ``user:password@`` part (the page shows it)."""
    return re.sub(r"^([A-Za-z][\w+.\-]*://)[^/@]*@", r"\1", url)


def check_model_name(name: str) -> str:
    """Validate a store model name (the model server's rule, :func:`tfjsfs.modelstore.check_name`).

    Raises
    ------
    UnsafePathError
    """
    return check_name(name)


def _fixed_weight_bytes(doc: ModelJSON) -> int | None:
    """Bytes the specs use, or None when string tensors make it depend on the data."""
    total = 0
    for group in doc.weights_manifest:
        expected = group.expected_bytes
        if expected is None:
            return None
        total += expected
    return total


class ModelChangedError(TFJSError):
    """A model was replaced in the store while the bridge was reading it."""


@dataclass
class StoredModel:
    """A model's JSON as read from the store: parsed, its path and a version tag."""

    name: str
    json_path: str
    doc: ModelJSON
    version: str


class BridgeStore:
    """Models under a root of an async fsspec filesystem, addressed by name.

    A model named ``a/b`` is the bundle in folder ``<root>/a/b`` (its
    ``model.json`` and shards).

    Parameters
    ----------
    fs : fsspec filesystem
        Wrapped to async if it is not.
    root : str
        Inner path of the store's root folder.
    label : str, optional
        What the page shows as the store's name.
    shard_size : int
        Shard size for models pushed from a browser.
    model_store : ModelStore, optional
        The model server's store over the same location; listing and saving
        then go through it (its per-name locks, its listing cache and its
        layout policy).
    """

    def __init__(
        self,
        fs: Any,
        root: str,
        *,
        label: str | None = None,
        shard_size: int = DEFAULT_SHARD_SIZE,
        model_store: ModelStore | None = None,
    ) -> None:
        self.fs = as_async(fs)
        self.root = root.rstrip("/")
        protocol = self.fs.protocol
        protocol = protocol[0] if isinstance(protocol, (tuple, list)) else protocol
        self.label = label or f"{protocol}://{self.root}"
        self.shard_size = shard_size
        self.model_store = model_store

    @classmethod
    def coerce(cls, store: Any, **options: Any) -> BridgeStore:
        """A store from a URL, a model server store or an ``(fs, root)`` pair.

        Parameters
        ----------
        store : str, os.PathLike, ModelStore, tuple or BridgeStore
            A URL becomes a :class:`~tfjsfs.modelstore.ModelStore` (as the
            model server makes it); ``(fs, root)`` is any fsspec filesystem
            and the inner path of the store's folder.
        **options
            ``storage_options`` (for URLs), ``label``, ``shard_size``.
        """
        if isinstance(store, BridgeStore):
            return store
        storage_options = dict(options.pop("storage_options", None) or {})
        if isinstance(store, (str, os.PathLike)):
            store = ModelStore(os.fspath(store), storage_options)
        if isinstance(store, ModelStore):
            options.setdefault("label", _without_credentials(store.url))
            return cls(store.fs, store.root, model_store=store, **options)
        if isinstance(store, tuple) and len(store) == 2:
            return cls(store[0], store[1], **options)
        raise TypeError(
            "store must be a URL, a tfjsfs.modelstore.ModelStore or an "
            f"(fsspec filesystem, root path) pair; got {type(store).__name__}"
        )

    async def _run(self, coro: Any) -> Any:
        """Await *coro* on the filesystem's own event loop.

        A filesystem made in sync mode (e.g. ``s3fs.S3FileSystem()``) keeps its
        sessions on fsspec's IO thread; its coroutines must run there, not on
        the web server's loop.
        """
        loop = None if self.fs.asynchronous else self.fs.loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - always called from a coroutine
            running = None
        if loop is None or loop is running or not loop.is_running():
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    def folder(self, name: str) -> str:
        """The inner folder of model *name* (validated)."""
        return posixpath.join(self.root, check_model_name(name)) if self.root else name

    async def list_models(self) -> list[dict[str, Any]]:
        """Every bundle (folder with a ``model.json``) below the root, with its info.

        Returns
        -------
        list of dict
            ``{"name", "format", "weights", "modelArtifactsInfo"}``, sorted by
            name; bundles whose model.json cannot be read are left out.
        """
        if self.model_store is not None:
            return [
                {
                    "name": summary.name,
                    "format": summary.format,
                    "weights": summary.weight_count,
                    "modelArtifactsInfo": summary.info.to_json(),
                }
                for summary in await self.model_store.list()
                if summary.doc is not None
            ]
        prefix = self.root + "/" if self.root else ""
        rows = []
        for bundle in await self._run(find_bundles(self.fs, self.root or "/")):
            folder, base = posixpath.split(bundle.json_path)
            if base != MODEL_JSON or bundle.doc is None or not folder.startswith(prefix):
                continue
            name = folder[len(prefix) :]
            try:
                check_model_name(name)
            except UnsafePathError:
                continue
            rows.append(
                {
                    "name": name,
                    "format": bundle.doc.format,
                    "weights": len(bundle.doc.weight_specs),
                    "modelArtifactsInfo": bundle.info().to_json(),
                }
            )
        return sorted(rows, key=lambda r: r["name"])

    async def read_json(self, name: str) -> StoredModel:
        """model.json of *name*, parsed, with a version tag (hash of its bytes).

        Raises
        ------
        ModelNotFoundError
        """
        json_path = posixpath.join(self.folder(name), MODEL_JSON)
        try:
            data = await self._run(self.fs._cat_file(json_path))
        except FileNotFoundError:
            raise ModelNotFoundError(f"no model named {name!r} in {self.label}") from None
        version = hashlib.sha256(data).hexdigest()[:20]
        return StoredModel(name, json_path, ModelJSON.parse(data, json_path), version)

    def url_of(self, name: str) -> tuple[str, dict[str, Any]]:
        """A URL and storage options that reach model *name* (for :func:`load_model_async`)."""
        if self.model_store is not None:
            base = self.model_store.url.rstrip("/")
            return f"{base}/{check_model_name(name)}", dict(self.model_store.storage_options)
        inner = getattr(self.fs, "sync_fs", None) or self.fs  # AsyncFileSystemWrapper
        options = {
            k: v
            for k, v in (getattr(inner, "storage_options", None) or {}).items()
            if k not in ("asynchronous", "loop")
        }
        return inner.unstrip_protocol(self.folder(name)), options

    async def load(self, name: str) -> tuple[StoredModel, ModelArtifacts]:
        """Model *name* with all its weights.

        Raises
        ------
        ModelChangedError
            When model.json changed while the weights were read.
        """
        stored = await self.read_json(name)
        url, storage_options = self.url_of(name)
        artifacts = await load_model_async(url, storage_options=storage_options)
        again = await self.read_json(name)
        if again.version != stored.version:
            raise ModelChangedError(
                f"model {name!r} changed in {self.label} while its weights were read; pull again"
            )
        return stored, artifacts

    async def save(
        self, name: str, artifacts: ModelArtifacts, *, overwrite: bool = False
    ) -> list[str]:
        """Write *artifacts* as bundle *name* (converter layout); files written.

        Raises
        ------
        BundleExistsError
            When *name* exists and not *overwrite*.
        """
        if self.model_store is not None:
            result = await self.model_store.save(name, artifacts, overwrite=overwrite)
            return list(result.files)
        folder = self.folder(name)
        plan = plan_bundle(artifacts, "converter", shard_size=self.shard_size)
        data = memoryview(artifacts.weight_data).cast("B")

        async def shard_bytes(shard: ShardPlan) -> memoryview:
            return data[shard.start : shard.end]

        def render(groups: tuple[WeightGroup, ...], json_path: str) -> bytes:
            return artifacts.to_model_json(groups).dumps()

        _, files = await self._run(
            write_bundle(self.fs, folder, plan, shard_bytes, render, overwrite=overwrite)
        )
        return files


#: Where :func:`setup_bridge` keeps the :class:`BridgeStore` in the application.
BRIDGE_KEY = web.AppKey("tfjsfs_bridge", BridgeStore)


def _static(name: str) -> bytes:
    return importlib.resources.files("tfjsfs").joinpath("static", name).read_bytes()


def _error(status: int, message: str, kind: str) -> web.Response:
    return web.json_response({"error": message, "kind": kind}, status=status)


def _errors(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Turn tfjsfs errors into JSON replies the page can show."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except UnsafePathError as exc:
            return _error(400, str(exc), "bad-name")
        except ModelNotFoundError as exc:
            return _error(404, str(exc), "not-found")
        except BundleExistsError as exc:
            return _error(409, str(exc), "exists")
        except ModelChangedError as exc:
            return _error(409, str(exc), "changed")
        except UploadTooLargeError as exc:
            return _error(413, str(exc), "too-large")
        except FormatError as exc:
            return _error(400, str(exc), type(exc).__name__)
        except (TFJSError, OSError) as exc:
            return _error(502, f"store error: {exc}", type(exc).__name__)

    return wrapped


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes", "on")


def setup_bridge(
    app: web.Application,
    store: Any,
    *,
    prefix: str = "/bridge",
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
    read_only: bool = False,
    authorize: Callable[[web.Request], Any] | None = None,
    **store_options: Any,
) -> BridgeStore:
    """Add the bridge page, its script and its JSON API to *app*.

    Call it after ``aiohttp_cors.setup(app, defaults=...)`` if the server
    allows other origins: the API routes are then added to that CORS
    configuration, so the script works from those origins too.

    Parameters
    ----------
    app : aiohttp.web.Application
    store : str, os.PathLike, tuple or object
        The model store; see :meth:`BridgeStore.coerce`.
    prefix : str
        URL prefix of the page and its API.
    max_upload_bytes : int
        Largest accepted push (whole request); larger ones get 413.
    read_only : bool
        Refuse pushes (405).
    authorize : callable, optional
        ``authorize(request)`` (may be async) runs before a push; it raises an
        ``aiohttp.web.HTTPException`` (e.g. 401) to refuse it.
    **store_options
        For :meth:`BridgeStore.coerce`.

    Returns
    -------
    BridgeStore
        Also kept as ``app[BRIDGE_KEY]``.
    """
    bridge = BridgeStore.coerce(store, **store_options)
    app[BRIDGE_KEY] = bridge
    prefix = "/" + prefix.strip("/")

    async def page(request: web.Request) -> web.Response:
        html = _static("bridge.html").decode().replace("__PREFIX__", prefix)
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    async def script(request: web.Request) -> web.Response:
        return web.Response(
            body=_static("bridge.js"),
            content_type="text/javascript",
            charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    @_errors
    async def list_models(request: web.Request) -> web.Response:
        models = await bridge.list_models()
        return web.json_response({"store": bridge.label, "readOnly": read_only, "models": models})

    @_errors
    async def get_model(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        stored = await bridge.read_json(name)
        artifacts = ModelArtifacts.from_model_json(stored.doc)
        weights_url = request.app.router["tfjsfs-bridge-weights"].url_for(name=name)
        nbytes = _fixed_weight_bytes(stored.doc)
        return web.json_response(
            {
                "name": name,
                "version": stored.version,
                "modelArtifacts": artifacts_to_json(artifacts, weight_data=False),
                # weightDataBytes is null when string tensors make it data-dependent
                "weightDataBytes": nbytes,
                "weightsUrl": str(weights_url.with_query(v=stored.version)),
            }
        )

    @_errors
    async def get_weights(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        stored, artifacts = await bridge.load(name)
        wanted = request.query.get("v")
        if wanted and wanted != stored.version:
            return _error(
                409,
                f"model {name!r} changed in the store while it was being pulled; pull again",
                "changed",
            )
        return web.Response(
            body=bytes(artifacts.weight_data),
            content_type="application/octet-stream",
            headers={"X-Tfjsfs-Model-Version": stored.version},
        )

    @_errors
    async def post_model(request: web.Request) -> web.Response:
        if read_only:
            return _error(405, "this server is read-only: pushing models is disabled", "read-only")
        if authorize is not None:
            result = authorize(request)
            if asyncio.iscoroutine(result):
                await result
        name = check_model_name(request.match_info["name"])
        overwrite = _flag(request.query.get("overwrite"))
        with await read_upload(request.headers, request.content, max_bytes=max_upload_bytes) as up:
            artifacts = up.artifacts
            try:
                files = await bridge.save(name, artifacts, overwrite=overwrite)
            except BundleExistsError:
                return _error(
                    409,
                    f"model {name!r} already exists in {bridge.label}; push with overwrite "
                    "to replace it",
                    "exists",
                )
            info = artifacts.info().to_json()
        return web.json_response(
            {"name": name, "modelArtifactsInfo": info, "files": files}, status=201
        )

    router = app.router
    routes = [
        router.add_get(prefix, page),
        router.add_get(prefix + "/", page),
        router.add_get(prefix + "/bridge.js", script),
        router.add_get(prefix + "/api/models", list_models),
        router.add_get(prefix + "/api/models/{name:.+}", get_model),
        router.add_post(prefix + "/api/models/{name:.+}", post_model),
        router.add_get(
            prefix + "/api/weights/{name:.+}", get_weights, name="tfjsfs-bridge-weights"
        ),
    ]
    _add_cors(app, routes)
    return bridge


def _add_cors(app: web.Application, routes: list[Any]) -> None:
    try:
        import aiohttp_cors
    except ImportError:  # pragma: no cover - the server extra installs it
        return
    cors = app.get(aiohttp_cors.APP_CONFIG_KEY)
    if cors is None:
        return
    for route in routes:
        cors.add(route)
