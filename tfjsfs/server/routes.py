"""The model server's routes: list, describe, serve, receive and delete bundles.

=================================  ==============================================
``GET /``                          a page listing the models (:mod:`.pages`),
                                   with ``Link: </models>; rel="tfjsfs-models"``
``GET /pages.js``                  the pages' script (sorting, filter, charts,
                                   upload form)
``GET /models``                    ``{"store", "models": [...]}``, every bundle
                                   with its ``ModelArtifactsInfo`` and weight
                                   files; ``X-Tfjsfs-Listing: 1`` marks it
                                   (:mod:`tfjsfs.format.serverlisting`)
``POST|PUT /models/{name}``        TF.js's upload (``model.save(url)``): the
                                   multipart form with ``model.json`` and
                                   ``model.weights.bin``; validated completely,
                                   then stored as a bundle; replies with the
                                   ``ModelArtifactsInfo`` (201 new, 200 replaced;
                                   ``If-None-Match: *`` makes it create-only,
                                   412 if it exists; ``If-Match: <ETag of
                                   model.json>`` compare-and-swap, 412 if
                                   another upload replaced it; 409 when a
                                   replace keeps losing races)
``GET /models/{name}``             the model's description: topology summary,
                                   inputs, outputs, signature, groups, weights
                                   (shapes, dtypes, byte ranges), files (JSON,
                                   or an HTML page for browsers)
``GET /models/{name}/model.json``  the bundle's files for ``tf.loadLayersModel``,
``GET /models/{name}/<shard>``     with ``Range``/``If-Range``, ``ETag``/
                                   ``If-None-Match``, ``Last-Modified``/
                                   ``If-Modified-Since`` (as aiohttp parses
                                   them), ``Content-Length``, ``Cache-Control``
``DELETE /models/{name}``          remove the bundle (model.json first; its
                                   weight files after the grace period)
=================================  ==============================================

Each file is sent from one opened handle (:meth:`ModelStore.open`): the
declared length is that of what was opened, and a response either sends every
byte it declared or aborts its connection (:func:`stream_range`,
:func:`send_local`); it never hangs. Files of a local folder store go out with
the kernel's sendfile from that handle (``ServerConfig.sendfile``); files up
to ``STREAM_CHUNK`` bytes and model.json carry a tag of their bytes, read once
per version of the file (:class:`ContentTags`). With ``redirect_reads`` (an
object store that can sign URLs), a weight file's GET is answered with ``307``
to a presigned URL of it (:mod:`.presign`), valid that many seconds;
model.json and ``HEAD`` are still answered here.

The handlers read the store from ``app[STORE_KEY]`` and their limits from
``app[CONFIG_KEY]``; :func:`add_routes` adds them to an application.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import logging
import posixpath
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import hdrs, web
from aiohttp.helpers import ETAG_ANY

from ..errors import (
    BundleExistsError,
    ConcurrentUpdateError,
    ModelNotFoundError,
    TransferError,
    UnsafePathError,
)
from ..format.layout_view import describe_layout
from ..format.serverlisting import LISTING_HEADER, LISTING_REL, LISTING_VERSION
from ..format.summary import weight_dtypes
from ..io.conditional import Snapshot
from ..io.found import FoundBundle
from .access import server_origin
from .middleware import json_error, public
from .modelstore import (
    MODEL_JSON,
    ModelStore,
    OpenedFile,
    check_name,
    topology_summary,
)
from .names import store_name
from .pages import index_html, model_html, page, pages_script, quote_name
from .upload import DEFAULT_MAX_JSON_BYTES, DEFAULT_SPOOL_MEMORY, read_upload

__all__ = [
    "CONFIG_KEY",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "STORE_KEY",
    "TAGS_KEY",
    "ContentTags",
    "ServerConfig",
    "abort",
    "add_routes",
    "content_tag",
    "send_local",
    "stream_range",
]

#: Largest upload accepted by default (TF.js itself cannot build larger bodies).
DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024**3
#: Bytes read from the store per step when sending a file.
STREAM_CHUNK = 4 * 1024 * 1024
CACHE_CONTROL = "no-cache"

log = logging.getLogger("tfjsfs.server.app")


@dataclass(frozen=True)
class ServerConfig:
    """Settings the request handlers read (``app[CONFIG_KEY]``)."""

    token: str | None = None
    read_token: str | None = None
    max_upload_bytes: int | None = DEFAULT_MAX_UPLOAD_BYTES
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES
    spool_memory: int = DEFAULT_SPOOL_MEMORY
    spool_dir: str | None = None
    sendfile: bool = True
    redirect_reads: float | None = None
    create_only: bool = False


STORE_KEY = web.AppKey("tfjsfs_store", ModelStore)
#: How the pages and the listing point clients at the JSON listing.
LISTING_LINK = f'</models>; rel="{LISTING_REL}"; type="application/json"'
CONFIG_KEY = web.AppKey("tfjsfs_server_config", ServerConfig)


class ContentTags:
    """The content tags of local files by identity, so a file's bytes are hashed once.

    A local file's identity (device, inode, size, modification and change
    times in ns: :attr:`OpenedFile.identity`) changes with any write, so a tag
    found here is the tag of the bytes the handle reads. A file changed less
    than *settle* seconds ago is not remembered: a file system stamps times in
    ticks, and a second write within the tick of the first would keep the
    identity (as git treats "racily clean" files). Holds the newest *capacity*
    entries.
    """

    def __init__(self, capacity: int = 4096, settle: float = 2.0):
        self.capacity = capacity
        self.settle = settle
        self._tags: OrderedDict[tuple, str] = OrderedDict()

    def get(self, opened: OpenedFile) -> str | None:
        """The tag of *opened*'s bytes, if they were hashed before."""
        if opened.identity is None:
            return None
        key = (opened.path, opened.identity)
        tag = self._tags.get(key)
        if tag is not None:
            self._tags.move_to_end(key)
        return tag

    def put(self, opened: OpenedFile, tag: str) -> None:
        """Remember *tag* for *opened*'s bytes (local files only)."""
        if opened.identity is None:
            return
        changed = opened.identity[-1]  # the change time, ns
        if time.time_ns() - changed < self.settle * 1e9:
            return  # changed just now: it could change again within the same tick
        self._tags[(opened.path, opened.identity)] = tag
        while len(self._tags) > self.capacity:
            self._tags.popitem(last=False)


TAGS_KEY = web.AppKey("tfjsfs_content_tags", ContentTags)


# ------------------------------------------------------------------ replies


def _base(request: web.Request) -> str:
    return server_origin(request)  # never the Host header


def _model_url(request: web.Request, name: str, file: str | None = None) -> str:
    url = f"{_base(request)}/models/{quote_name(name)}"
    return f"{url}/{quote_name(file)}" if file else url


def _wants_html(request: web.Request) -> bool:
    if request.query.get("format") == "json":
        return False
    return "text/html" in request.headers.get(hdrs.ACCEPT, "")


def _entry(request: web.Request, s: FoundBundle) -> dict[str, Any]:
    doc = s.doc
    dtypes, quantized = weight_dtypes(doc.weight_specs if doc else ())
    out: dict[str, Any] = {
        "name": s.name,
        "url": _model_url(request, s.name),
        "modelUrl": _model_url(request, s.name, MODEL_JSON),
        "format": s.format,
        "generatedBy": doc.generated_by if doc else None,
        "convertedBy": doc.converted_by if doc else None,
        "weightCount": s.weight_count,
        "dtypes": dtypes,
        "quantized": quantized,
        "weightBytes": s.weight_bytes,
        "size": s.size,
        "fileCount": 1 + len(s.shard_sizes),
        "complete": s.error is None and not s.missing,
        "modelArtifactsInfo": s.info.to_json(),
    }
    out["files"] = [
        {"path": path, "size": size, "url": _model_url(request, s.name, path)}
        for path, size in s.shard_sizes.items()
    ]
    if s.error:
        out["error"] = s.error
    if s.missing:
        out["missingFiles"] = s.missing
    return out


def _description(request: web.Request, s: FoundBundle) -> dict[str, Any]:
    out = _entry(request, s)
    doc = s.doc
    out["topology"] = topology_summary(doc) if doc else {"kind": "unknown"}
    shards = out["files"]
    out.update(describe_layout(doc, shards) if doc else {"weights": []})
    out["files"] = [{"path": MODEL_JSON, "size": s.json_size, "url": out["modelUrl"]}, *shards]
    return out


# ----------------------------------------------------------------- handlers


async def index(request: web.Request) -> web.Response:
    """``GET /``: the human page."""
    store = request.app[STORE_KEY]
    summaries = await store.list()
    reply = page("TF.js models", index_html(_base(request), store_name(store.root), summaries))
    reply.headers[hdrs.LINK] = LISTING_LINK
    return reply


async def list_models(request: web.Request) -> web.Response:
    """``GET /models``: every bundle with its info."""
    store = request.app[STORE_KEY]
    summaries = await store.list()
    return web.json_response(
        {"store": store_name(store.root), "models": [_entry(request, s) for s in summaries]},
        headers={LISTING_HEADER: LISTING_VERSION, hdrs.LINK: LISTING_LINK},
    )


async def get_model(request: web.Request) -> web.StreamResponse:
    """``GET /models/{name}`` (description) and ``GET /models/{name}/{file}``."""
    store = request.app[STORE_KEY]
    tail = request.match_info["tail"]
    parent, last = posixpath.split(tail.rstrip("/"))
    if not tail.endswith("/") and (last.endswith((".json", ".bin"))):
        return await _send_file(request, store, parent, last)
    name = tail.rstrip("/")
    try:
        summary = await store.describe(name)
    except ModelNotFoundError:
        if parent and not tail.endswith("/"):
            with contextlib.suppress(ModelNotFoundError, UnsafePathError):
                return await _send_file(request, store, parent, last)  # legacy shard names
        raise
    description = _description(request, summary)
    if _wants_html(request):
        return page(f"{summary.name} · TF.js model", model_html(description))
    return web.json_response(description)


async def put_model(request: web.Request) -> web.Response:
    """``POST``/``PUT /models/{name}``: receive TF.js's upload and store it."""
    store = request.app[STORE_KEY]
    config = request.app[CONFIG_KEY]
    name = check_name(request.match_info["tail"])
    create_only = config.create_only or request.headers.get(hdrs.IF_NONE_MATCH, "").strip() == "*"
    precondition = _if_match(request, name)
    upload = await read_upload(
        request.headers,
        request.content,
        max_bytes=config.max_upload_bytes,
        max_json_bytes=config.max_json_bytes,
        spool_memory=config.spool_memory,
        spool_dir=config.spool_dir,
    )
    with upload:
        existed = await store.exists(name)
        try:
            result = await store.save(
                name,
                upload.artifacts,
                overwrite=not create_only,
                spool_path=upload.spool.path,
                precondition=precondition,
            )
        except BundleExistsError:
            why = "this server is create-only" if config.create_only else "If-None-Match: *"
            return json_error(412, f"model {name!r} already exists ({why})", "exists")
        except ConcurrentUpdateError as exc:
            if precondition is not None:
                return json_error(412, str(exc), "precondition-failed")
            return json_error(409, f"model {name!r}: {exc}", "conflict")
        weights = len(upload.artifacts.weight_specs)
        nbytes = upload.weight_bytes
    files = store.relative_files(name, result.files)
    log.info(
        "stored model %r: %d weights, %d weight bytes, files %s", name, weights, nbytes, files
    )
    url = _model_url(request, name)
    body = {
        "name": name,
        "url": url,
        "modelUrl": _model_url(request, name, MODEL_JSON),
        "files": files,
        "replaced": existed,
        "modelArtifactsInfo": result.model_artifacts_info.to_json(),
    }
    return web.json_response(body, status=200 if existed else 201, headers={hdrs.LOCATION: url})


def _if_match(request: web.Request, name: str) -> Callable[[Snapshot], None] | None:
    """The check an ``If-Match`` header asks of the model.json an upload replaces.

    The tags are those ``GET /models/{name}/model.json`` sends (:func:`content_tag`,
    strong comparison); ``*`` asks only that the model exists. The store
    publishes conditionally on the version checked, so the check still holds
    when the new model.json lands, whichever server published meanwhile.
    """
    tags = request.if_match
    if tags is None:
        return None
    wanted = {f'"{t.value}"' for t in tags if not t.is_weak}
    any_version = any(t.value == ETAG_ANY for t in tags)

    def check(base: Snapshot) -> None:
        if base.data is None:
            raise ConcurrentUpdateError(f"model {name!r} does not exist (If-Match)", base.path)
        tag = content_tag(base.data)
        if not any_version and tag not in wanted:
            raise ConcurrentUpdateError(
                f"model {name!r} is at version {tag}, not "
                f"{', '.join(sorted(wanted)) or 'a weak tag'} (If-Match): another upload "
                "replaced it",
                base.path,
            )

    return check


async def delete_model(request: web.Request) -> web.Response:
    """``DELETE /models/{name}``."""
    store = request.app[STORE_KEY]
    name = check_name(request.match_info["tail"])
    summary = await store.delete(name)
    log.info("deleted model %r", name)
    return web.json_response(
        {"name": name, "deleted": True, "modelArtifactsInfo": summary.info.to_json()}
    )


@public
async def script(request: web.Request) -> web.Response:
    """``GET /pages.js``: the pages' script (sorting, filtering, charts, upload)."""
    return web.Response(
        body=pages_script(),
        content_type="text/javascript",
        charset="utf-8",
        headers={hdrs.CACHE_CONTROL: "no-cache"},
    )


@public
async def favicon(request: web.Request) -> web.Response:
    """No icon (keeps browser consoles and access logs free of 404s)."""
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    """Add the model routes to *app* (which holds ``STORE_KEY`` and ``CONFIG_KEY``)."""
    app[TAGS_KEY] = ContentTags()
    router = app.router
    router.add_get("/", index)
    router.add_get("/favicon.ico", favicon)
    router.add_get("/pages.js", script)
    router.add_get("/models", list_models)
    router.add_get("/models/", list_models)
    models = router.add_resource("/models/{tail:.+}")
    models.add_route(hdrs.METH_GET, get_model)
    models.add_route(hdrs.METH_HEAD, get_model)
    models.add_route(hdrs.METH_POST, put_model)
    models.add_route(hdrs.METH_PUT, put_model)
    models.add_route(hdrs.METH_DELETE, delete_model)


# ------------------------------------------------------------------- files


def _opaque(etag: str) -> str:
    return etag.removeprefix("W/").strip('"')


def _not_modified(request: web.Request, opened: OpenedFile, etag: str | None) -> bool:
    """``If-None-Match`` (weak comparison), else ``If-Modified-Since``."""
    tags = request.if_none_match
    if tags is not None:
        return etag is not None and any(t.value == "*" or t.value == _opaque(etag) for t in tags)
    since = request.if_modified_since
    return (
        since is not None
        and opened.modified is not None
        and (int(opened.modified.timestamp()) <= since.timestamp())
    )


def _range_applies(request: web.Request, opened: OpenedFile, etag: str | None) -> bool:
    """Whether ``If-Range`` (an ETag, strong comparison, or a date) lets ``Range`` apply."""
    header = request.headers.get(hdrs.IF_RANGE)
    if header is None:
        return True
    header = header.strip()
    if header.startswith(('"', "W/")):
        return etag is not None and not header.startswith("W/") and header == etag
    since = request.if_range
    return (
        since is not None
        and opened.modified is not None
        and (int(opened.modified.timestamp()) <= since.timestamp())
    )


def _byte_range(request: web.Request, size: int) -> tuple[int, int] | None:
    """The one satisfiable byte range asked for (end exclusive), None for the whole file.

    Uses aiohttp's parse of ``Range`` (``request.http_range``); a header it
    cannot parse (other units, several ranges, malformed) is ignored.

    Raises
    ------
    RangeNotSatisfiable
    """
    if hdrs.RANGE not in request.headers:
        return None
    try:
        wanted = request.http_range
    except ValueError:
        return None
    start, stop = wanted.start, wanted.stop
    suffix = request.headers[hdrs.RANGE].partition("=")[2].strip().startswith("-")
    if suffix:
        if start == 0 or not size:  # "bytes=-0", or any suffix of an empty file
            raise RangeNotSatisfiable(size)
        return max(0, size + start), size
    if start >= size:
        raise RangeNotSatisfiable(size)
    return start, size if stop is None else min(stop, size)


class RangeNotSatisfiable(Exception):
    """A ``Range`` past the end of a file of ``size`` bytes."""

    def __init__(self, size: int):
        super().__init__(size)
        self.size = size


def content_tag(data: bytes) -> str:
    """A strong ETag from the bytes themselves."""
    return '"b2-' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'


async def _send_file(
    request: web.Request, store: ModelStore, name: str, file: str
) -> web.StreamResponse:
    """Send a bundle file from one opened handle: every declared byte, or an aborted connection."""
    expires = request.app[CONFIG_KEY].redirect_reads
    if expires and file != MODEL_JSON and request.method == hdrs.METH_GET:
        url = await store.presign(name, file, expires)
        return web.Response(
            status=307, headers={hdrs.LOCATION: url, hdrs.CACHE_CONTROL: "no-store"}
        )
    tags = request.app[TAGS_KEY]
    with await store.open(name, file) as opened:
        content = None
        size, etag = opened.size, opened.etag
        if file == MODEL_JSON or opened.size <= STREAM_CHUNK:
            # small files (model.json) carry a tag of their bytes: of what is sent
            etag = tags.get(opened)
            if etag is None:
                content = await opened.read_all()
                size = len(content)
                # hashing a shard takes milliseconds: off the event loop (hashlib frees the GIL)
                if size > 65536:
                    etag = await asyncio.to_thread(content_tag, content)
                else:
                    etag = content_tag(content)
                if size == opened.size:  # (a file truncated meanwhile is not remembered)
                    tags.put(opened, etag)
                if file == MODEL_JSON:  # parsed off the event loop: it can be large
                    await asyncio.to_thread(store.served, name, content)
        headers = {
            hdrs.CACHE_CONTROL: CACHE_CONTROL,
            hdrs.ACCEPT_RANGES: "bytes",
            hdrs.CONTENT_TYPE: "application/json"
            if file.endswith(".json")
            else "application/octet-stream",
        }
        if etag:
            headers[hdrs.ETAG] = etag
        if opened.modified is not None:
            headers[hdrs.LAST_MODIFIED] = email.utils.formatdate(
                opened.modified.timestamp(), usegmt=True
            )
        if _not_modified(request, opened, etag):
            headers.pop(hdrs.CONTENT_TYPE)
            return web.Response(status=304, headers=headers)
        start, end, status = 0, size, 200
        try:
            wanted = _byte_range(request, size) if _range_applies(request, opened, etag) else None
        except RangeNotSatisfiable:
            return json_error(
                416,
                f"range {request.headers[hdrs.RANGE]!r} is outside {file} ({size} bytes)",
                "range-not-satisfiable",
                {hdrs.CONTENT_RANGE: f"bytes */{size}"},
            )
        if wanted is not None:
            start, end = wanted
            status = 206
            headers[hdrs.CONTENT_RANGE] = f"bytes {start}-{end - 1}/{size}"
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = end - start
        await response.prepare(request)
        if request.method == hdrs.METH_HEAD or end == start:
            await response.write_eof()
        elif content is not None:
            await response.write(content[start:end])
            await response.write_eof()
        elif opened.local and request.app[CONFIG_KEY].sendfile:
            if await send_local(request, response, opened, start, end):
                await response.write_eof()
        elif await stream_range(request, response, opened, start, end):
            await response.write_eof()
        return response


async def send_local(
    request: web.Request, response: web.StreamResponse, opened: OpenedFile, start: int, end: int
) -> bool:
    """Send bytes ``[start, end)`` of a local *opened* file with the kernel (sendfile).

    *response* is prepared (its headers are written). As :func:`stream_range`:
    if the bytes cannot all be sent (the file was truncated in place, the
    connection broke), the connection is aborted and False is returned.
    """
    transport = request.transport
    sent = 0
    try:
        if transport is None:
            raise ConnectionResetError("connection lost")
        writer = await response.prepare(request)  # the prepared response's writer
        sent = await opened.sendfile(transport, start, end)
        if writer is not None:
            writer.output_size += sent  # what access logs report as the body's bytes
        if sent != end - start:
            raise TransferError(
                f"{opened.path} changed while being sent: expected {end - start} bytes "
                f"from {start} of {opened.size}, sent {sent}"
            )
    except Exception as exc:
        gone = isinstance(exc, ConnectionError) or transport is None or transport.is_closing()
        abort(request, response, None if gone else exc, sent, end - start, opened.path)
        return False
    return True


async def stream_range(
    request: web.Request, response: web.StreamResponse, opened: OpenedFile, start: int, end: int
) -> bool:
    """Write bytes ``[start, end)`` of *opened* to the prepared *response*.

    The next chunk is read while one is written. If a chunk cannot be read,
    the connection is aborted at once (False is returned): the client sees a
    broken response, never a short or hanging one. The caller writes the EOF.
    """

    def read(pos: int) -> asyncio.Future:
        return asyncio.ensure_future(opened.read(pos, min(end, pos + STREAM_CHUNK)))

    pos = start
    pending: asyncio.Future | None = read(pos) if start < end else None
    try:
        while pending is not None:
            data = await pending
            pos += len(data)
            pending = read(pos) if pos < end else None
            await response.write(data)
    except asyncio.CancelledError:
        if pending is not None:
            pending.cancel()
        raise
    except Exception as exc:
        if pending is not None:
            pending.cancel()
        gone = isinstance(exc, ConnectionError)
        abort(request, response, None if gone else exc, pos - start, end - start, opened.path)
        return False
    return True


def abort(
    request: web.Request,
    response: web.StreamResponse,
    error: BaseException | None = None,
    sent: int = 0,
    total: int = 0,
    path: str = "",
) -> None:
    """Close the connection of a response that cannot send what it declared.

    *error*, when given (not a client that went away), is logged with how far
    the body of *path* got: *sent* of *total* bytes.
    """
    if error is not None:
        log.error(
            "aborting %s %s after %d of %d bytes of %s: %s",
            request.method,
            request.path,
            sent,
            total,
            path,
            error,
        )
    response.force_close()
    if request.transport is not None:
        request.transport.abort()
