"""``tfjsfs serve``: a TF.js model server over any fsspec store (aiohttp).

=================================  ==============================================
``GET /``                          a page listing the models (size, weights,
                                   format, link to each description)
``GET /models``                    ``{"store", "models": [...]}``, every bundle
                                   with its ``ModelArtifactsInfo``
``POST|PUT /models/{name}``        TF.js's upload (``model.save(url)``): the
                                   multipart form with ``model.json`` and
                                   ``model.weights.bin``; validated completely,
                                   then stored as a bundle; replies with the
                                   ``ModelArtifactsInfo`` (201 new, 200 replaced;
                                   ``If-None-Match: *`` makes it create-only)
``GET /models/{name}``             the model's description: topology summary,
                                   weights (shapes, dtypes), files (JSON, or an
                                   HTML page for browsers)
``GET /models/{name}/model.json``  the bundle's files for ``tf.loadLayersModel``,
``GET /models/{name}/<shard>``     with ``Range``, ``ETag``/``If-None-Match``,
                                   ``Content-Length`` and ``Cache-Control``
``DELETE /models/{name}``          remove the bundle (model.json first)
=================================  ==============================================

Names may contain ``/`` (folders) but never leave the store
(:func:`tfjsfs.modelstore.check_name`). Errors are JSON:
``{"error": message, "kind": kind, "status": status}``. CORS comes from
aiohttp-cors with configurable origins; a bearer token can protect writes
(and reads). Uploads are limited in size, streamed to a spool instead of
being held twice in memory, and published atomically (shards first,
model.json last, under a per-name lock), so a failed, concurrent or killed
upload never leaves a torn bundle. On SIGINT/SIGTERM the server stops
accepting connections and finishes in-flight requests before exiting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import html
import importlib.resources
import json
import logging
import os
import posixpath
import re
import signal
import string
import sys
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import hdrs, web

from .errors import (
    BundleExistsError,
    FormatError,
    ModelNotFoundError,
    TFJSError,
    TransferError,
    UnsafePathError,
)
from .modelstore import (
    MODEL_JSON,
    BundleSummary,
    ModelStore,
    check_name,
    entity_tag,
    topology_summary,
)
from .upload import (
    DEFAULT_MAX_JSON_BYTES,
    DEFAULT_SPOOL_MEMORY,
    UploadTooLargeError,
    read_upload,
)

__all__ = [
    "CONFIG_KEY",
    "DEFAULT_HOST",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DEFAULT_PORT",
    "IN_FLIGHT_KEY",
    "STORE_KEY",
    "ServerConfig",
    "create_app",
    "main",
    "serve",
    "serve_async",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_STORE = "models"
#: Largest upload accepted by default (TF.js itself cannot build larger bodies).
DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024**3
DEFAULT_SHUTDOWN_TIMEOUT = 60.0
#: Bytes read from the store per step when sending a file.
STREAM_CHUNK = 4 * 1024 * 1024
ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs "%{User-Agent}i"'
CACHE_CONTROL = "no-cache"
EXPOSED_HEADERS = ("ETag", "Content-Range", "Content-Length", "Accept-Ranges", "Location")
ALLOWED_HEADERS = ("Authorization", "Content-Type", "Range", "If-None-Match", "If-Range")

log = logging.getLogger("tfjsfs.server")
access_logger = logging.getLogger("tfjsfs.access")


@dataclass(frozen=True)
class ServerConfig:
    """Settings the request handlers read (``app[CONFIG_KEY]``)."""

    token: str | None = None
    read_token: str | None = None
    max_upload_bytes: int | None = DEFAULT_MAX_UPLOAD_BYTES
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES
    spool_memory: int = DEFAULT_SPOOL_MEMORY
    spool_dir: str | None = None


class InFlight:
    """Counts requests being handled, so shutdown can wait for them."""

    def __init__(self) -> None:
        self.count = 0
        self.idle = asyncio.Event()
        self.idle.set()

    @contextlib.contextmanager
    def track(self):
        self.count += 1
        self.idle.clear()
        try:
            yield
        finally:
            self.count -= 1
            if not self.count:
                self.idle.set()


STORE_KEY = web.AppKey("tfjsfs_store", ModelStore)
CONFIG_KEY = web.AppKey("tfjsfs_server_config", ServerConfig)
IN_FLIGHT_KEY = web.AppKey("tfjsfs_in_flight", InFlight)


# ------------------------------------------------------------------ helpers


def _error(status: int, message: str, kind: str, headers: Mapping[str, str] | None = None):
    return web.json_response(
        {"error": message, "kind": kind, "status": status}, status=status, headers=headers
    )


def _label(url: str) -> str:
    """The store URL without any user:password part."""
    return re.sub(r"^([A-Za-z][\w+.\-]*://)[^/@]*@", r"\1", url)


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="/")


def _base(request: web.Request) -> str:
    return str(request.url.origin())


def _model_url(request: web.Request, name: str, file: str | None = None) -> str:
    url = f"{_base(request)}/models/{_quote(name)}"
    return f"{url}/{_quote(file)}" if file else url


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _wants_html(request: web.Request) -> bool:
    if request.query.get("format") == "json":
        return False
    return "text/html" in request.headers.get(hdrs.ACCEPT, "")


def _entry(request: web.Request, s: BundleSummary) -> dict[str, Any]:
    doc = s.doc
    out: dict[str, Any] = {
        "name": s.name,
        "url": _model_url(request, s.name),
        "modelUrl": _model_url(request, s.name, MODEL_JSON),
        "format": s.format,
        "generatedBy": doc.generated_by if doc else None,
        "convertedBy": doc.converted_by if doc else None,
        "weightCount": s.weight_count,
        "weightBytes": s.weight_bytes,
        "size": s.size,
        "fileCount": 1 + len(s.shard_sizes),
        "complete": s.error is None and not s.missing,
        "modelArtifactsInfo": s.info.to_json(),
    }
    if s.error:
        out["error"] = s.error
    if s.missing:
        out["missingFiles"] = s.missing
    return out


def _description(request: web.Request, s: BundleSummary) -> dict[str, Any]:
    out = _entry(request, s)
    doc = s.doc
    out["topology"] = topology_summary(doc) if doc else {"kind": "unknown"}
    weights = []
    for spec in doc.weight_specs if doc else ():
        item: dict[str, Any] = {
            "name": spec.name,
            "shape": list(spec.shape),
            "dtype": spec.dtype,
            "bytes": spec.byte_length,
        }
        if spec.group is not None:
            item["group"] = spec.group
        if spec.quantization is not None:
            item["quantization"] = spec.quantization.to_json()
        weights.append(item)
    out["weights"] = weights
    files = [{"path": MODEL_JSON, "size": s.json_size, "url": out["modelUrl"]}]
    for path, size in s.shard_sizes.items():
        files.append({"path": path, "size": size, "url": _model_url(request, s.name, path)})
    out["files"] = files
    return out


# ------------------------------------------------------------------- pages


def _page(title: str, body: str) -> web.Response:
    template = importlib.resources.files("tfjsfs").joinpath("static", "server_page.html")
    text = string.Template(template.read_text(encoding="utf-8")).substitute(
        title=html.escape(title), body=body
    )
    return web.Response(text=text, content_type="text/html", charset="utf-8")


def _index_html(request: web.Request, store: ModelStore, summaries: list[BundleSummary]) -> str:
    e = html.escape
    rows = []
    for s in summaries:
        date = s.saved.strftime("%Y-%m-%d %H:%M UTC") if s.saved else "?"
        warn = ' <span class="warn">(incomplete)</span>' if s.missing or s.error else ""
        rows.append(
            f'<tr><td><a href="/models/{e(_quote(s.name))}">{e(s.name)}</a>{warn}</td>'
            f"<td>{e(s.format or '—')}</td>"
            f'<td class="num">{s.weight_count}</td>'
            f'<td class="num">{e(_human(s.size))}</td>'
            f"<td>{e(date)}</td></tr>"
        )
    table = (
        '<table><tr><th>model</th><th>format</th><th class="num">weights</th>'
        '<th class="num">size</th><th>saved</th></tr>' + "".join(rows) + "</table>"
        if rows
        else '<p class="empty">No models yet.</p>'
    )
    base = e(_base(request))
    return (
        f"<h1>TF.js models</h1><p class='sub'>{len(summaries)} in "
        f"<code>{e(_label(store.url))}</code> · <a href='/models'>JSON</a></p>{table}"
        "<h2>Save a model here</h2>"
        f"<pre>await model.save('{base}/models/my-model');</pre>"
        "<h2>Load it back</h2>"
        f"<pre>const model = await tf.loadLayersModel('{base}/models/my-model/model.json');</pre>"
    )


def _model_html(request: web.Request, d: dict[str, Any]) -> str:
    e = html.escape
    topo = d["topology"]
    facts = [
        ("format", d["format"]),
        ("generated by", d["generatedBy"]),
        ("converted by", d["convertedBy"]),
        ("topology", topo.get("className") or topo.get("kind")),
        ("weights", d["weightCount"]),
        ("weight bytes", _human(d["weightBytes"])),
        ("size", _human(d["size"])),
        ("saved", d["modelArtifactsInfo"]["dateSaved"]),
    ]
    fact_rows = "".join(
        f"<tr><th>{e(k)}</th><td>{e(str(v) if v is not None else '—')}</td></tr>" for k, v in facts
    )
    layers = ""
    if topo.get("layers"):
        layers = (
            "<h2>Layers</h2><table><tr><th>name</th><th>class</th></tr>"
            + "".join(
                f"<tr><td>{e(str(x.get('name')))}</td><td>{e(str(x.get('className')))}</td></tr>"
                for x in topo["layers"]
            )
            + "</table>"
        )
    elif topo.get("ops"):
        layers = (
            "<h2>Ops</h2><table><tr><th>op</th><th class='num'>nodes</th></tr>"
            + "".join(
                f"<tr><td>{e(op)}</td><td class='num'>{n}</td></tr>"
                for op, n in topo["ops"].items()
            )
            + "</table>"
        )
    weights = "".join(
        f"<tr><td>{e(w['name'])}</td><td>{e(str(w['shape']))}</td><td>{e(w['dtype'])}</td>"
        f"<td>{e(w['quantization']['dtype']) if 'quantization' in w else ''}</td>"
        f"<td class='num'>{w['bytes'] if w['bytes'] is not None else '?'}</td></tr>"
        for w in d["weights"]
    )
    files = "".join(
        f"<tr><td><a href='{e(f['url'])}'>{e(f['path'])}</a></td>"
        f"<td class='num'>{e(_human(f['size']))}</td></tr>"
        for f in d["files"]
    )
    return (
        f"<p><a href='/'>← all models</a></p><h1>{e(d['name'])}</h1>"
        f"<table>{fact_rows}</table>"
        f"<pre>const model = await tf.loadLayersModel('{e(d['modelUrl'])}');</pre>"
        f"{layers}<h2>Weights</h2><table><tr><th>name</th><th>shape</th><th>dtype</th>"
        f"<th>quantized</th><th class='num'>bytes</th></tr>{weights}</table>"
        f"<h2>Files</h2><table><tr><th>file</th><th class='num'>size</th></tr>{files}</table>"
        f"<p><a href='{e(d['url'])}?format=json'>JSON</a></p>"
    )


# ----------------------------------------------------------------- handlers


async def index(request: web.Request) -> web.Response:
    """``GET /``: the human page."""
    store = request.app[STORE_KEY]
    summaries = await store.list()
    return _page("TF.js models", _index_html(request, store, summaries))


async def list_models(request: web.Request) -> web.Response:
    """``GET /models``: every bundle with its info."""
    store = request.app[STORE_KEY]
    summaries = await store.list()
    return web.json_response(
        {"store": _label(store.url), "models": [_entry(request, s) for s in summaries]}
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
        return _page(f"{summary.name} · TF.js model", _model_html(request, description))
    return web.json_response(description)


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(t.strip().removeprefix("W/") == opaque for t in header.split(","))


def byte_range(header: str, size: int) -> tuple[int, int] | str | None:
    """Parse a ``Range`` header for a file of *size* bytes.

    Returns
    -------
    (int, int), "unsatisfiable" or None
        ``(start, end)`` (end exclusive) for one satisfiable byte range;
        ``"unsatisfiable"`` for a range past the end; None when the header
        should be ignored (other units, several ranges, malformed).
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if not first:
            count = int(last)
            if count <= 0 or not size:
                return "unsatisfiable"
            return max(0, size - count), size
        start = int(first)
        stop = int(last) + 1 if last else size
    except ValueError:
        return None
    if start < 0 or (last and stop <= start):
        return None
    if start >= size:
        return "unsatisfiable"
    return start, min(stop, size)


async def _send_file(
    request: web.Request, store: ModelStore, name: str, file: str
) -> web.StreamResponse:
    path, info = await store.file(name, file)
    size = int(info.get("size") or 0)
    content = None
    if size <= STREAM_CHUNK:
        # small files (model.json) are read whole: size and tag match what is sent
        # even when the file is replaced meanwhile
        content = await store.read(path, None, None)
        size = len(content)
        etag = content_tag(content)
    else:
        etag = entity_tag(info)
    headers = {
        hdrs.CACHE_CONTROL: CACHE_CONTROL,
        hdrs.ACCEPT_RANGES: "bytes",
        hdrs.CONTENT_TYPE: "application/json"
        if file.endswith(".json")
        else "application/octet-stream",
    }
    if etag:
        headers[hdrs.ETAG] = etag
    inm = request.headers.get(hdrs.IF_NONE_MATCH)
    if etag and inm and _etag_matches(inm, etag):
        headers.pop(hdrs.CONTENT_TYPE)
        return web.Response(status=304, headers=headers)
    start, end, status = 0, size, 200
    rng = request.headers.get(hdrs.RANGE)
    if_range = request.headers.get(hdrs.IF_RANGE)
    if rng and (if_range is None or (etag is not None and if_range.strip() == etag)):
        parsed = byte_range(rng, size)
        if parsed == "unsatisfiable":
            return _error(
                416,
                f"range {rng!r} is outside {file} ({size} bytes)",
                "range-not-satisfiable",
                {hdrs.CONTENT_RANGE: f"bytes */{size}"},
            )
        if parsed is not None:
            start, end = parsed
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
    else:
        await _stream(response, store, path, start, end)
    return response


def content_tag(data: bytes) -> str:
    """A strong ETag from the bytes themselves."""
    return '"b2-' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'


async def _stream(
    response: web.StreamResponse, store: ModelStore, path: str, start: int, end: int
) -> None:
    """Send bytes ``[start, end)`` of *path*, reading the next chunk while writing."""

    def read(pos: int) -> asyncio.Future:
        return asyncio.ensure_future(store.read(path, pos, min(end, pos + STREAM_CHUNK)))

    pos = start
    pending: asyncio.Future | None = read(pos)
    try:
        while pending is not None:
            data = await pending
            want = min(end, pos + STREAM_CHUNK) - pos
            if len(data) != want:
                raise TransferError(
                    f"{path} changed while being sent: expected {want} bytes at {pos}, "
                    f"got {len(data)}"
                )
            pos += len(data)
            pending = read(pos) if pos < end else None
            await response.write(data)
    except BaseException:
        if pending is not None:
            pending.cancel()
        response.force_close()
        raise
    await response.write_eof()


async def put_model(request: web.Request) -> web.Response:
    """``POST``/``PUT /models/{name}``: receive TF.js's upload and store it."""
    store = request.app[STORE_KEY]
    config = request.app[CONFIG_KEY]
    name = check_name(request.match_info["tail"])
    create_only = request.headers.get(hdrs.IF_NONE_MATCH, "").strip() == "*"
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
                name, upload.artifacts, overwrite=not create_only, spool_path=upload.spool.path
            )
        except BundleExistsError:
            return _error(412, f"model {name!r} already exists (If-None-Match: *)", "exists")
        weights = len(upload.artifacts.weight_specs)
        nbytes = upload.weight_bytes
    files = [posixpath.relpath(f, store.folder(name)) for f in result.files]
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


async def delete_model(request: web.Request) -> web.Response:
    """``DELETE /models/{name}``."""
    store = request.app[STORE_KEY]
    name = check_name(request.match_info["tail"])
    summary = await store.delete(name)
    log.info("deleted model %r", name)
    return web.json_response(
        {"name": name, "deleted": True, "modelArtifactsInfo": summary.info.to_json()}
    )


async def favicon(request: web.Request) -> web.Response:
    """No icon (keeps browser consoles and access logs free of 404s)."""
    return web.Response(status=204)


# -------------------------------------------------------------- middleware


@web.middleware
async def in_flight_middleware(request: web.Request, handler: Callable[..., Awaitable[Any]]):
    """Track the request in ``app[IN_FLIGHT_KEY]`` while it is handled."""
    with request.app[IN_FLIGHT_KEY].track():
        return await handler(request)


@web.middleware
async def error_middleware(request: web.Request, handler: Callable[..., Awaitable[Any]]):
    """Every failure becomes a JSON reply with a fitting 4xx/5xx status."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        keep = {
            k: v
            for k, v in exc.headers.items()
            if k not in (hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH)
        }
        text = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return _error(exc.status, text, type(exc).__name__, keep)
    except UploadTooLargeError as exc:
        response = _error(413, str(exc), "too-large")
        response.force_close()  # do not read the rest of a huge body
        return response
    except UnsafePathError as exc:
        return _error(400, str(exc), "bad-name")
    except (ModelNotFoundError, FileNotFoundError) as exc:
        return _error(404, str(exc), "not-found")
    except BundleExistsError as exc:
        return _error(409, str(exc), "exists")
    except FormatError as exc:
        return _error(400, str(exc), type(exc).__name__)
    except (TFJSError, OSError) as exc:
        if isinstance(exc, ConnectionResetError):
            raise
        log.exception("store error on %s %s", request.method, request.path)
        return _error(502, f"store error: {exc}", type(exc).__name__)


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def auth_middleware(token: str | None, read_token: str | None):
    """Bearer-token checks: *token* for writes, *read_token* (or *token*) for reads."""

    @web.middleware
    async def check(request: web.Request, handler: Callable[..., Awaitable[Any]]):
        if request.method == hdrs.METH_OPTIONS:
            return await handler(request)
        write = request.method not in (hdrs.METH_GET, hdrs.METH_HEAD)
        if write:
            wanted = [token] if token else []
        else:
            wanted = [t for t in (read_token, token) if t] if read_token else []
        if wanted:
            given = _bearer(request)
            what = "writing" if write else "reading"
            if given is None:
                raise web.HTTPUnauthorized(
                    text=f"{what} needs a bearer token (Authorization: Bearer …)",
                    headers={hdrs.WWW_AUTHENTICATE: 'Bearer realm="tfjsfs"'},
                )
            if not any(hmac.compare_digest(given.encode(), t.encode()) for t in wanted):
                raise web.HTTPUnauthorized(
                    text=f"the bearer token is not valid for {what}",
                    headers={
                        hdrs.WWW_AUTHENTICATE: 'Bearer realm="tfjsfs", error="invalid_token"'
                    },
                )
        return await handler(request)

    return check


# ------------------------------------------------------------------- app


def create_app(
    store_url: str | os.PathLike | ModelStore,
    *,
    storage_options: Mapping[str, Any] | None = None,
    token: str | None = None,
    read_token: str | None = None,
    allowed_origins: Sequence[str] = ("*",),
    max_upload_bytes: int | None = DEFAULT_MAX_UPLOAD_BYTES,
    reshard: bool | int = False,
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES,
    spool_memory: int = DEFAULT_SPOOL_MEMORY,
    spool_dir: str | None = None,
    bridge: bool = True,
) -> web.Application:
    """The model server application.

    Parameters
    ----------
    store_url : str, os.PathLike or ModelStore
        Where bundles live: a local folder, ``file://``, ``s3://``, ``gs://``,
        ``memory://`` or any fsspec URL.
    storage_options : mapping, optional
        Options for the store's filesystem (credentials, ``endpoint_url``, …).
    token : str, optional
        Bearer token required for ``POST``/``PUT``/``DELETE``.
    read_token : str, optional
        Bearer token required for reads (*token* is accepted too).
    allowed_origins : sequence of str
        CORS origins allowed to call the server (``"*"`` for any; empty for
        no CORS headers).
    max_upload_bytes : int or None
        Largest upload body; larger ones get 413. None for no limit.
    reshard : bool or int
        Store uploads in the converter's layout (4 MiB shards, or this many
        bytes) instead of as received.
    max_json_bytes : int
        Largest model.json part.
    spool_memory : int
        Upload weights kept in memory before spooling to a temporary file.
    spool_dir : str, optional
        Folder for spool files (default: the system's temp folder).
    bridge : bool
        Add the browser storage bridge page at ``/bridge`` when available.

    Returns
    -------
    aiohttp.web.Application
    """
    if isinstance(store_url, ModelStore):
        store = store_url
    else:
        store = ModelStore(os.fspath(store_url), storage_options, reshard=reshard)
    app = web.Application(
        middlewares=[in_flight_middleware, error_middleware, auth_middleware(token, read_token)]
    )
    app[STORE_KEY] = store
    app[IN_FLIGHT_KEY] = InFlight()
    app[CONFIG_KEY] = ServerConfig(
        token, read_token, max_upload_bytes, max_json_bytes, spool_memory, spool_dir
    )

    async def prepare(app: web.Application) -> None:
        await store.prepare()

    app.on_startup.append(prepare)
    router = app.router
    router.add_get("/", index)
    router.add_get("/favicon.ico", favicon)
    router.add_get("/models", list_models)
    router.add_get("/models/", list_models)
    models = router.add_resource("/models/{tail:.+}")
    models.add_route(hdrs.METH_GET, get_model)
    models.add_route(hdrs.METH_HEAD, get_model)
    models.add_route(hdrs.METH_POST, put_model)
    models.add_route(hdrs.METH_PUT, put_model)
    models.add_route(hdrs.METH_DELETE, delete_model)
    if allowed_origins:
        _setup_cors(app, allowed_origins)
    if bridge:
        _setup_bridge(app, store, max_upload_bytes)
    return app


def _setup_cors(app: web.Application, origins: Sequence[str]) -> None:
    import aiohttp_cors

    options = aiohttp_cors.ResourceOptions(
        allow_credentials=False,
        expose_headers=EXPOSED_HEADERS,
        allow_headers=ALLOWED_HEADERS,
        allow_methods=["GET", "HEAD", "POST", "PUT", "DELETE"],
        max_age=600,
    )
    cors = aiohttp_cors.setup(app, defaults={origin: options for origin in origins})
    for route in list(app.router.routes()):
        cors.add(route)


def _setup_bridge(app: web.Application, store: ModelStore, max_upload_bytes: int | None) -> None:
    try:
        from .bridge import setup_bridge
    except ImportError:
        return
    setup_bridge(app, store, max_upload_bytes=max_upload_bytes or DEFAULT_MAX_UPLOAD_BYTES)


# ------------------------------------------------------------------ serving


def _display_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


async def serve_async(
    store_url: str | os.PathLike | ModelStore,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[str], Any] | None = None,
    **options: Any,
) -> None:
    """Run the server until *stop* is set (or SIGINT/SIGTERM in the main thread).

    Shutting down stops accepting connections, then waits up to
    *shutdown_timeout* seconds for in-flight requests (uploads included) to
    finish.

    Parameters
    ----------
    store_url, **options
        As for :func:`create_app`.
    host : str
        Interface to bind, 127.0.0.1 by default.
    port : int
        0 picks a free port.
    shutdown_timeout : float
    stop : asyncio.Event, optional
    on_ready : callable, optional
        Called with the base URL once the server listens.
    """
    app = create_app(store_url, **options)
    runner = web.AppRunner(
        app,
        access_log=access_logger,
        access_log_format=ACCESS_LOG_FORMAT,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = []
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
                signals.append(sig)
        url = _display_url(host, bound)
        log.info("serving %s at %s/", _label(app[STORE_KEY].url), url)
        if on_ready is not None:
            on_ready(url)
        await stop.wait()
        await drain(runner, app, shutdown_timeout)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
    log.info("stopped")


async def drain(runner: web.AppRunner, app: web.Application, timeout: float) -> None:
    """Stop listening, then wait up to *timeout* s for requests being handled.

    aiohttp's own graceful shutdown stops reading from open connections, so
    an upload whose body is still arriving could never finish; hence this
    step before ``runner.cleanup()``.
    """
    in_flight = app[IN_FLIGHT_KEY]
    log.info(
        "shutting down: %d request(s) in flight, waiting up to %s s", in_flight.count, timeout
    )
    for site in list(runner.sites):
        await site.stop()  # closes the listening socket; open connections stay
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(in_flight.idle.wait(), timeout)
    if in_flight.count:
        log.warning(
            "%d request(s) still running after %s s; stopping them", in_flight.count, timeout
        )


def serve(
    store_url: str | os.PathLike | ModelStore,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    **options: Any,
) -> None:
    """Serve *store_url* until interrupted (the body of ``tfjsfs serve``).

    Logs (access log included) go to stderr; the line
    ``tfjsfs: serving <store> at http://<host>:<port>/`` goes to stdout once
    the server listens.

    Parameters
    ----------
    store_url : str, os.PathLike or ModelStore
    host : str
    port : int
    **options
        ``shutdown_timeout`` and the options of :func:`create_app`.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    label = _label(store_url.url if isinstance(store_url, ModelStore) else os.fspath(store_url))

    def ready(url: str) -> None:
        print(f"tfjsfs: serving {label} at {url}/ (Ctrl-C to stop)", flush=True)

    asyncio.run(serve_async(store_url, host, port, on_ready=ready, **options))


def _storage_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_parser(prog: str = "python -m tfjsfs.server") -> argparse.ArgumentParser:
    """The command line of :func:`main`."""
    p = argparse.ArgumentParser(prog=prog, description="Serve TF.js models from any fsspec store.")
    p.add_argument("store", nargs="?", default=DEFAULT_STORE, help="store URL or folder")
    p.add_argument("--host", default=DEFAULT_HOST, help="interface (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (0: any free port)")
    p.add_argument(
        "--token-env",
        default="TFJSFS_TOKEN",
        help="environment variable holding the write token (default TFJSFS_TOKEN)",
    )
    p.add_argument(
        "--read-token-env",
        default="TFJSFS_READ_TOKEN",
        help="environment variable holding the read token (default TFJSFS_READ_TOKEN)",
    )
    p.add_argument(
        "--allow-origin",
        action="append",
        dest="origins",
        help="CORS origin allowed (repeatable; default: any)",
    )
    p.add_argument("--no-cors", action="store_true", help="send no CORS headers")
    p.add_argument(
        "--max-upload-bytes", type=int, default=DEFAULT_MAX_UPLOAD_BYTES, help="upload limit"
    )
    p.add_argument(
        "--reshard",
        nargs="?",
        const=True,
        default=False,
        type=int,
        help="store uploads as converter shards (optionally of this many bytes)",
    )
    p.add_argument("--spool-dir", help="folder for spooling large uploads")
    p.add_argument(
        "--shutdown-timeout",
        type=float,
        default=DEFAULT_SHUTDOWN_TIMEOUT,
        help="seconds to finish in-flight requests on shutdown",
    )
    p.add_argument(
        "-o",
        "--storage-option",
        action="append",
        type=_storage_option,
        default=[],
        metavar="KEY=VALUE",
        help="storage option for the store's filesystem (JSON values allowed; repeatable)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tfjsfs.server STORE [--host H] [--port N] …``."""
    args = build_parser().parse_args(argv)
    origins = () if args.no_cors else tuple(args.origins or ("*",))
    serve(
        args.store,
        args.host,
        args.port,
        storage_options=dict(args.storage_option),
        token=os.environ.get(args.token_env) or None,
        read_token=os.environ.get(args.read_token_env) or None,
        allowed_origins=origins,
        max_upload_bytes=args.max_upload_bytes,
        reshard=args.reshard,
        spool_dir=args.spool_dir,
        shutdown_timeout=args.shutdown_timeout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
