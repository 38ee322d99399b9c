"""The browser storage bridge: a page that moves models between a browser and a store.

:func:`setup_bridge` adds to an aiohttp application:

=========================================  =========================================
``GET  {prefix}``                          the bridge page (``static/bridge.html``)
``GET  {prefix}/bridge.js``                its script (``static/bridge.js``); it can
                                           also be included by pages of other origins
``GET  {prefix}/api/models``               ``{"store", "models": [{name, info}]}``
``GET  {prefix}/api/models/{name}``        ``{name, version, modelArtifacts (no
                                           weightData), weightDataBytes, weightsUrl}``
``GET  {prefix}/api/weights/{name}?v=...`` the concatenated weight data (binary,
                                           streamed from the weight files)
``POST {prefix}/api/models/{name}``        receive a browser model: TF.js's upload
                                           form (``model.json`` + ``model.weights.bin``);
                                           ``?overwrite=1`` replaces an existing one
                                           (spooled and limited as the server's
                                           uploads: ``--spool-dir``, JSON limit)
=========================================  =========================================

The page's script reads and writes TF.js's ``localstorage://`` and
``indexeddb://`` layouts itself (no TF.js needed). The store is a
:class:`~tfjsfs.server.modelstore.ModelStore` (the model server's, or one made from
a URL): the same names (:func:`~tfjsfs.server.modelstore.check_name`), per-name
locks, listing cache and layout policy as the model server. API routes get
CORS from the application's ``aiohttp_cors`` configuration when it has one,
so the script works from every origin the server allows; the server's
middlewares (bearer tokens, error replies) apply to them as to its other
routes, except that the page and the script are :func:`~tfjsfs.server.middleware.public`
(a browser opening a page cannot send a bearer token).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import hdrs, web

from ..errors import BundleExistsError, ModelChangedError, SizeMismatch
from ..format.artifacts import ModelArtifacts
from ..format.browser import artifacts_to_json
from ..format.manifest import ModelJSON
from ..model.api import load_model_async
from .middleware import json_error, json_errors, public
from .modelstore import MODEL_JSON, ModelStore, OpenedFile, check_name
from .names import store_name
from .routes import CONFIG_KEY, ServerConfig, stream_range
from .upload import expected_weight_bytes, read_upload

__all__ = [
    "BRIDGE_KEY",
    "StoredModel",
    "load_stored",
    "read_stored",
    "send_weights",
    "setup_bridge",
]

#: Default limit on a pushed model's size (bytes of the whole request).
DEFAULT_MAX_UPLOAD = 2 * 1024**3

#: Where :func:`setup_bridge` keeps its :class:`~tfjsfs.server.modelstore.ModelStore`.
BRIDGE_KEY = web.AppKey("tfjsfs_bridge", ModelStore)


@dataclass
class StoredModel:
    """A model's JSON as read from the store: parsed, with a version tag."""

    name: str
    doc: ModelJSON
    version: str


async def read_stored(store: ModelStore, name: str) -> StoredModel:
    """model.json of *name*, parsed, with a version tag (a hash of its bytes).

    Raises
    ------
    ModelNotFoundError
    UnsafePathError
    """
    data = await store.model_json(name)
    version = hashlib.sha256(data).hexdigest()[:20]
    stored = StoredModel(name, ModelJSON.parse(data, f"{name}/{MODEL_JSON}"), version)
    store.served(name, data)  # its weight files stay servable through the grace period
    return stored


async def send_weights(
    request: web.Request, store: ModelStore, name: str, version: str | None = None
) -> web.StreamResponse:
    """Stream model *name*'s weight data: its weight files in manifest order.

    Each file is opened once and streamed in chunks, so the model is never
    held in memory. The files are those of one model.json (the grace period
    keeps them while a newer version is published), so the bytes are of one
    version; if one cannot be read to its end, the connection is aborted.

    Parameters
    ----------
    request : aiohttp.web.Request
    store : ModelStore
    name : str
    version : str, optional
        The version the client expects (409 ``changed`` if it is not the current one).

    Raises
    ------
    ModelNotFoundError
    ModelChangedError
    SizeMismatch
        The weight files do not hold the bytes the manifest declares.
    """
    stored = await read_stored(store, name)
    if version and version != stored.version:
        raise ModelChangedError(
            f"model {name!r} changed in the store while it was being pulled; pull again"
        )
    files: list[OpenedFile] = []
    paths = store.weight_files(name, stored.doc)
    try:
        for path in paths:
            files.append(await store.open(name, path))
        total = sum(f.size for f in files)
        expected = expected_weight_bytes(stored.doc)
        if expected is not None and total != expected:
            raise SizeMismatch(
                f"model {name!r}: its weight files ({', '.join(paths)}) hold {total} "
                f"bytes, but {name}/{MODEL_JSON} declares {expected} bytes of weights",
                f"{name}/{MODEL_JSON}",
                expected,
                total,
            )
        response = web.StreamResponse(
            headers={
                hdrs.CONTENT_TYPE: "application/octet-stream",
                "X-Tfjsfs-Model-Version": stored.version,
            }
        )
        response.content_length = total
        await response.prepare(request)
        for opened in files:
            if not await stream_range(request, response, opened, 0, opened.size):
                return response
        await response.write_eof()
        return response
    finally:
        for opened in files:
            opened.close()


async def load_stored(store: ModelStore, name: str) -> tuple[StoredModel, ModelArtifacts]:
    """Model *name* with all its weights, read as one version.

    Raises
    ------
    ModelChangedError
        When model.json changed while the weights were read.
    """
    stored = await read_stored(store, name)
    artifacts = await load_model_async(
        store.model_url(name), storage_options=dict(store.storage_options)
    )
    again = await read_stored(store, name)
    if again.version != stored.version:
        raise ModelChangedError(
            f"model {name!r} changed in {store.label} while its weights were read; pull again"
        )
    return stored, artifacts


def _static(name: str) -> bytes:
    return importlib.resources.files("tfjsfs").joinpath("static", name).read_bytes()


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes", "on")


def _store(
    store: str | os.PathLike | ModelStore,
    storage_options: Mapping[str, Any] | None,
    reshard: bool | int,
) -> ModelStore:
    if isinstance(store, ModelStore):
        if storage_options or reshard:
            raise ValueError(
                "storage_options and reshard apply to store URLs; this ModelStore has its own"
            )
        return store
    if isinstance(store, (str, os.PathLike)):
        return ModelStore(os.fspath(store), storage_options, reshard=reshard)
    raise TypeError(
        f"store must be a URL or a ModelStore (tfjsfs.server), not {type(store).__name__}"
    )


def setup_bridge(
    app: web.Application,
    store: str | os.PathLike | ModelStore,
    *,
    prefix: str = "/bridge",
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
    read_only: bool = False,
    authorize: Callable[[web.Request], Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    reshard: bool | int = False,
) -> ModelStore:
    """Add the bridge page, its script and its JSON API to *app*.

    Call it after ``aiohttp_cors.setup(app, defaults=...)`` if the server
    allows other origins: the API routes are then added to that CORS
    configuration, so the script works from those origins too.

    Parameters
    ----------
    app : aiohttp.web.Application
    store : str, os.PathLike or ModelStore
        The model store: a URL (any fsspec URL or local folder) or the model
        server's :class:`~tfjsfs.server.modelstore.ModelStore`.
    prefix : str
        URL prefix of the page and its API.
    max_upload_bytes : int
        Largest accepted push (whole request); larger ones get 413.
    read_only : bool
        Refuse pushes (405).
    authorize : callable, optional
        ``authorize(request)`` (may be async) runs before a push; it raises an
        ``aiohttp.web.HTTPException`` (e.g. 401) to refuse it.
    storage_options : mapping, optional
        For a store URL: options of its filesystem.
    reshard : bool or int
        For a store URL: store pushed models in the converter layout (see
        :class:`~tfjsfs.server.modelstore.ModelStore`).

    Returns
    -------
    ModelStore
        Also kept as ``app[BRIDGE_KEY]``.
    """
    models = _store(store, storage_options, reshard)
    app[BRIDGE_KEY] = models
    bridge = _Bridge(models, "/" + prefix.strip("/"), max_upload_bytes, read_only, authorize)
    _add_cors(app, bridge.add_routes(app.router))
    return models


class _Bridge:
    """The bridge's request handlers, for one store under one URL prefix."""

    def __init__(
        self,
        models: ModelStore,
        prefix: str,
        max_upload_bytes: int,
        read_only: bool,
        authorize: Callable[[web.Request], Any] | None,
    ):
        self.models = models
        self.prefix = prefix
        self.max_upload_bytes = max_upload_bytes
        self.read_only = read_only
        self.authorize = authorize

    def add_routes(self, router: web.UrlDispatcher) -> list[Any]:
        """Add the page, its script and the JSON API under the prefix; the routes added."""
        prefix = self.prefix
        return [
            router.add_get(prefix, self.page),
            router.add_get(prefix + "/", self.page),
            router.add_get(prefix + "/bridge.js", self.script),
            router.add_get(prefix + "/api/models", json_errors(self.list_models)),
            router.add_get(prefix + "/api/models/{name:.+}", json_errors(self.get_model)),
            router.add_post(prefix + "/api/models/{name:.+}", json_errors(self.post_model)),
            router.add_get(
                prefix + "/api/weights/{name:.+}",
                json_errors(self.get_weights),
                name="tfjsfs-bridge-weights",
            ),
        ]

    @public
    async def page(self, request: web.Request) -> web.Response:
        """``GET {prefix}``: the bridge page."""
        html = _static("bridge.html").decode().replace("__PREFIX__", self.prefix)
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    @public
    async def script(self, request: web.Request) -> web.Response:
        """``GET {prefix}/bridge.js``: the page's script."""
        return web.Response(
            body=_static("bridge.js"),
            content_type="text/javascript",
            charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    async def list_models(self, request: web.Request) -> web.Response:
        """``GET {prefix}/api/models``: the store's models that parse."""
        listed = [
            {
                "name": summary.name,
                "format": summary.format,
                "weights": summary.weight_count,
                "modelArtifactsInfo": summary.info.to_json(),
            }
            for summary in await self.models.list()
            if summary.doc is not None
        ]
        return web.json_response(
            {"store": store_name(self.models.root), "readOnly": self.read_only, "models": listed}
        )

    async def get_model(self, request: web.Request) -> web.Response:
        """``GET {prefix}/api/models/{name}``: the artifacts without weight data."""
        name = request.match_info["name"]
        stored = await read_stored(self.models, name)
        artifacts = ModelArtifacts.from_model_json(stored.doc)
        weights_url = request.app.router["tfjsfs-bridge-weights"].url_for(name=name)
        return web.json_response(
            {
                "name": name,
                "version": stored.version,
                "modelArtifacts": artifacts_to_json(artifacts, weight_data=False),
                # weightDataBytes is null when string tensors make it data-dependent
                "weightDataBytes": expected_weight_bytes(stored.doc),
                "weightsUrl": str(weights_url.with_query(v=stored.version)),
            }
        )

    async def get_weights(self, request: web.Request) -> web.StreamResponse:
        """``GET {prefix}/api/weights/{name}?v=...``: the weight data, streamed."""
        return await send_weights(
            request, self.models, request.match_info["name"], request.query.get("v")
        )

    async def post_model(self, request: web.Request) -> web.Response:
        """``POST {prefix}/api/models/{name}``: store a browser model (TF.js's upload form)."""
        if self.read_only:
            return json_error(
                405, "this server is read-only: pushing models is disabled", "read-only"
            )
        if self.authorize is not None:
            result = self.authorize(request)
            if asyncio.iscoroutine(result):
                await result
        name = check_name(request.match_info["name"])
        overwrite = _flag(request.query.get("overwrite"))
        config = request.app.get(CONFIG_KEY) or ServerConfig()  # the server's spool and limits
        upload = await read_upload(
            request.headers,
            request.content,
            max_bytes=self.max_upload_bytes,
            max_json_bytes=config.max_json_bytes,
            spool_memory=config.spool_memory,
            spool_dir=config.spool_dir,
        )
        with upload as up:
            try:
                result = await self.models.save(
                    name, up.artifacts, overwrite=overwrite, spool_path=up.spool.path
                )
            except BundleExistsError:
                return json_error(
                    409,
                    f"model {name!r} already exists; push with overwrite to replace it",
                    "exists",
                )
        return web.json_response(
            {
                "name": name,
                "modelArtifactsInfo": result.model_artifacts_info.to_json(),
                "files": self.models.relative_files(name, result.files),
            },
            status=201,
        )


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
