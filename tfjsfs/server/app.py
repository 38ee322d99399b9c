"""``tfjsfs serve``: a TF.js model server over any fsspec store (aiohttp).

:func:`create_app` builds the application: the model routes
(:mod:`tfjsfs.server.routes`; ``GET /``, ``GET /models``, ``GET|POST|PUT|DELETE
/models/{name}`` and the bundle files for ``tf.loadLayersModel``), the
browser storage bridge at ``/bridge`` (:mod:`tfjsfs.server.bridge`), CORS and the
shared middlewares (:mod:`tfjsfs.server.middleware`). :func:`serve` runs it;
:func:`main` is ``python -m tfjsfs.server.app`` (the same options as ``tfjsfs
serve``, from :mod:`tfjsfs.server.options`).

Names may contain ``/`` (folders) but never leave the store
(:func:`tfjsfs.server.names.check_name`). Errors are JSON:
``{"error": message, "kind": kind, "status": status}``, and nothing a client
sees tells where the store is. Safe by default (:mod:`tfjsfs.server.access`):
the ``Host`` header must name the server (DNS rebinding), every web page may
read but only the server's own pages and allowed origins (``--allow-origin``)
may write (CORS comes from aiohttp-cors), a bearer token can protect writes
(and reads: then only the bridge's static page and script stay open, since a
browser opening a page sends no ``Authorization`` header), and the server
warns at start-up when anyone who can reach its port may write. Uploads are
limited in size, count and idle time, streamed to a spool instead of being
held twice in memory, and published atomically (shards first, model.json
last, under a per-name lock), so a failed, concurrent or killed upload never
leaves a torn bundle. On SIGINT/SIGTERM the server stops accepting
connections and finishes in-flight requests before exiting (stalled uploads
are cut after a second of silence).

``python -m tfjsfs.server`` (:mod:`tfjsfs.server.__main__`) runs it with the
options of ``tfjsfs serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import web
from fsspec.asyn import get_loop, sync

from .access import (
    ACCESS_KEY,
    READ_METHODS,
    AccessPolicy,
    access_middleware,
    auth_middleware,
    is_loopback_name,
)
from .bridge import setup_bridge
from .middleware import (
    IN_FLIGHT_KEY,
    REDACT_KEY,
    UPLOADS_KEY,
    InFlight,
    UploadGuard,
    error_middleware,
    in_flight_middleware,
    security_headers,
    upload_middleware,
)
from .modelstore import MODEL_JSON, ModelStore
from .names import without_credentials
from .options import (
    DEFAULT_GRACE_PERIOD,
    DEFAULT_HOST,
    DEFAULT_MAX_UPLOADS,
    DEFAULT_PORT,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_UPLOAD_IDLE_TIMEOUT,
    TOKEN_ENV,
)
from .presign import check_signing
from .routes import CONFIG_KEY, DEFAULT_MAX_UPLOAD_BYTES, STORE_KEY, ServerConfig, add_routes
from .spools import sweep_spools
from .upload import DEFAULT_MAX_JSON_BYTES, DEFAULT_SPOOL_MEMORY

__all__ = [
    "CONFIG_KEY",
    "DEFAULT_HOST",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DEFAULT_PORT",
    "IN_FLIGHT_KEY",
    "STORE_KEY",
    "ServerConfig",
    "create_app",
    "drain",
    "serve",
    "serve_async",
    "startup_warnings",
]

ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs "%{User-Agent}i"'
EXPOSED_HEADERS = ("ETag", "Content-Range", "Content-Length", "Accept-Ranges", "Location")
ALLOWED_HEADERS = ("Authorization", "Content-Type", "Range", "If-None-Match", "If-Range")

log = logging.getLogger("tfjsfs.server.app")
access_logger = logging.getLogger("tfjsfs.access")


# ------------------------------------------------------------------- app


def create_app(
    store_url: str | os.PathLike | ModelStore,
    *,
    storage_options: Mapping[str, Any] | None = None,
    token: str | None = None,
    read_token: str | None = None,
    allowed_origins: Sequence[str] | None = None,
    allowed_hosts: Sequence[str] = (),
    host: str | None = None,
    max_upload_bytes: int | None = DEFAULT_MAX_UPLOAD_BYTES,
    reshard: bool | int = False,
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES,
    spool_memory: int = DEFAULT_SPOOL_MEMORY,
    spool_dir: str | None = None,
    bridge: bool = True,
    max_uploads: int = DEFAULT_MAX_UPLOADS,
    upload_idle_timeout: float = DEFAULT_UPLOAD_IDLE_TIMEOUT,
    grace_period: float = DEFAULT_GRACE_PERIOD,
    sendfile: bool = True,
    redirect_reads: float | None = None,
    create_only: bool = False,
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
        Bearer token required for ``POST``/``PUT``/``DELETE``. Without one,
        anyone who can reach the port may write (unless *read_token* is set:
        then writing is disabled).
    read_token : str, optional
        Bearer token required for reads (*token* is accepted too), except
        for the bridge's page and script.
    allowed_origins : sequence of str, optional
        Web page origins allowed to call the server, for reads and writes
        (``"*"`` for every page). None (the default): every origin may read,
        none may write (the server's own pages and clients that send no
        ``Origin`` always may); empty: no CORS headers.
    allowed_hosts : sequence of str
        Names accepted in the ``Host`` header besides localhost names,
        loopback addresses and *host*.
    host : str, optional
        The address the server listens on (accepted in ``Host``).
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
    max_uploads : int
        Uploads received at once; more get 503 with ``Retry-After``.
    upload_idle_timeout : float
        Seconds an upload body may send nothing before it is cut (408, the
        connection closed).
    grace_period : float
        Seconds replaced and deleted weight files (and a crash's leftovers)
        stay before they are swept (see :class:`ModelStore`).
    sendfile : bool
        Send the files of a local folder store with the kernel's sendfile
        (False: read them in steps and write them, as for other stores).
    redirect_reads : float, optional
        Answer weight file GETs with ``307`` to a URL the store presigned,
        valid this many seconds (S3 and GCS stores; model.json is still
        served here). The server refuses to start if the store cannot sign.
    create_only : bool
        Uploads never replace a model: as if every one sent ``If-None-Match: *``
        (412 when the name exists). Enforced by the store's create-only write,
        so it holds across several servers on one store.

    Returns
    -------
    aiohttp.web.Application

    Raises
    ------
    tfjsfs.errors.CLIError
        An empty *token* or *read_token*.
    """
    if isinstance(store_url, ModelStore):
        store = store_url
    else:
        store = ModelStore(
            os.fspath(store_url), storage_options, reshard=reshard, grace_period=grace_period
        )
    if redirect_reads:  # refused now, not at the first shard GET
        probe = f"{store.root.rstrip('/')}/{MODEL_JSON}"
        sync(get_loop(), check_signing, store.fs, probe, store.label)
    access = AccessPolicy.build(allowed_origins, allowed_hosts, host)
    app = web.Application(
        middlewares=[
            in_flight_middleware,
            error_middleware,
            access_middleware,
            auth_middleware(token, read_token),
            upload_middleware,
        ]
    )
    app[STORE_KEY] = store
    app[ACCESS_KEY] = access
    app[IN_FLIGHT_KEY] = InFlight()
    app[UPLOADS_KEY] = UploadGuard(max_uploads, upload_idle_timeout)
    app[REDACT_KEY] = _store_locations(store)
    app.on_response_prepare.append(security_headers)
    app[CONFIG_KEY] = ServerConfig(
        token,
        read_token,
        max_upload_bytes,
        max_json_bytes,
        spool_memory,
        spool_dir,
        sendfile,
        redirect_reads or None,
        create_only,
    )

    later: list[asyncio.TimerHandle] = []

    async def prepare(app: web.Application) -> None:
        await store.prepare()
        sweep_spools(spool_dir, store.grace_period)  # a crash's leftovers, now and later
        loop = asyncio.get_running_loop()
        later.append(loop.call_later(store.grace_period, sweep_spools, spool_dir, 0.0))

    async def cleanup(app: web.Application) -> None:
        for handle in later:
            handle.cancel()
        await store.close()

    app.on_startup.append(prepare)
    app.on_cleanup.append(cleanup)
    add_routes(app)
    if access.origins is None or access.origins:
        _setup_cors(app, access.origins)
    if bridge:
        _setup_bridge(app, store, max_upload_bytes)
    return app


def _store_locations(store: ModelStore) -> tuple[str, ...]:
    """Every spelling of the store's location an error message could carry."""
    found = {store.url, store.label, store.root, store.root.rstrip("/")}
    if os.path.isabs(store.root):
        found.add(os.path.realpath(store.root))
    return tuple(sorted((f for f in found if len(f) > 1), key=len, reverse=True))


def _setup_cors(app: web.Application, origins: Sequence[str] | None) -> None:
    """CORS: *origins* may do everything; None lets every origin read only."""
    import aiohttp_cors

    def options(methods: Sequence[str]) -> aiohttp_cors.ResourceOptions:
        return aiohttp_cors.ResourceOptions(
            allow_credentials=False,
            expose_headers=EXPOSED_HEADERS,
            allow_headers=ALLOWED_HEADERS,
            allow_methods=list(methods),
            max_age=600,
        )

    if origins is None:
        defaults = {"*": options(sorted(READ_METHODS))}
    else:
        every = options(["GET", "HEAD", "POST", "PUT", "DELETE"])
        defaults = {origin: every for origin in origins}
    cors = aiohttp_cors.setup(app, defaults=defaults)
    for route in list(app.router.routes()):
        cors.add(route)


def _setup_bridge(app: web.Application, store: ModelStore, max_upload_bytes: int | None) -> None:
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
    app = create_app(store_url, host=host, **options)
    runner = web.AppRunner(
        app,
        access_log=access_logger,
        access_log_format=ACCESS_LOG_FORMAT,
        shutdown_timeout=shutdown_timeout,
        auto_decompress=False,  # encoded uploads are refused (415), never inflated
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
        log.info("serving %s at %s/", app[STORE_KEY].label, url)
        for warning in startup_warnings(app, host, url):
            log.warning("%s", warning)
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
    app[UPLOADS_KEY].stopping = True  # stalled uploads no longer hold the shutdown
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


def startup_warnings(app: web.Application, host: str, url: str) -> list[str]:
    """What the server says plainly at start-up about who may write to it.

    Parameters
    ----------
    app : aiohttp.web.Application
        Made by :func:`create_app`.
    host : str
        The address it listens on.
    url : str
        Its base URL.
    """
    config = app[CONFIG_KEY]
    access = app[ACCESS_KEY]
    out = []
    if not config.token and not config.read_token:
        who = (
            "every program on this machine"
            if is_loopback_name(host)
            else "anyone on the network who can reach it"
        )
        out.append(
            f"writes are open: {who} can upload, replace and delete models at {url}/ "
            f"(no write token; set ${TOKEN_ENV} to require one)"
        )
    if access.any_origin_writes:
        out.append(
            "--allow-origin '*': every web page opened in a browser that can reach this "
            "server may save and delete models" + ("" if config.token else ", with no token")
        )
    return out


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
    if isinstance(store_url, ModelStore):
        label = store_url.label
    else:
        label = without_credentials(os.fspath(store_url))

    def ready(url: str) -> None:
        print(f"tfjsfs: serving {label} at {url}/ (Ctrl-C to stop)", flush=True)

    asyncio.run(serve_async(store_url, host, port, on_ready=ready, **options))
