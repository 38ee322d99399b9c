"""What every route of the model server shares: JSON errors, headers, in-flight requests.

Errors are JSON, ``{"error": message, "kind": kind, "status": status}``;
:func:`error_reply` maps tfjsfs's error hierarchy (and ``OSError``) to a
status and :func:`json_errors` is the one wrapper that turns whatever a
handler raises into such a reply: :func:`error_middleware` is it as a
middleware, and the bridge's routes use it directly (they may run in an
application without the middleware). Error replies never show where the
store is (:data:`REDACT_KEY`). :func:`security_headers` gives every reply
``X-Content-Type-Options: nosniff`` and every page a Content-Security-Policy
that allows nothing from other hosts and no framing. Handlers marked with
:func:`public` (a static page and its script, which a browser opens
without an ``Authorization`` header) are readable without a token.

:class:`InFlight` counts requests for a graceful shutdown;
:class:`UploadGuard` (with :func:`upload_middleware`) caps concurrent
uploads (503 + ``Retry-After`` beyond the cap) and cuts an upload whose body
stops arriving for its idle timeout (408, connection closed), sooner once
the server is shutting down.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from aiohttp import hdrs, web

from ..errors import (
    BundleExistsError,
    ConcurrentUpdateError,
    FormatError,
    ModelChangedError,
    ModelNotFoundError,
    TFJSError,
    UnsafePathError,
    UploadEncodingError,
    UploadTooLargeError,
)
from .options import DEFAULT_MAX_UPLOADS, DEFAULT_UPLOAD_IDLE_TIMEOUT

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "DEFAULT_MAX_UPLOADS",
    "DEFAULT_UPLOAD_IDLE_TIMEOUT",
    "IN_FLIGHT_KEY",
    "REDACT_KEY",
    "UPLOADS_KEY",
    "InFlight",
    "UploadGuard",
    "error_middleware",
    "error_reply",
    "in_flight_middleware",
    "is_public",
    "json_error",
    "json_errors",
    "public",
    "redact",
    "security_headers",
    "upload_middleware",
]

log = logging.getLogger("tfjsfs.server.app")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Callable[..., Any])
_PUBLIC = "_tfjsfs_public"
_PACKAGE = __name__.partition(".")[0]
#: Once shutting down, seconds of silence after which an upload is cut.
SHUTDOWN_IDLE_TIMEOUT = 1.0
RETRY_AFTER = 5
#: The pages' policy: their own scripts and styles, nothing from other hosts, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
#: Strings (the store's locations) that error replies never show; set by the app.
REDACT_KEY = web.AppKey("tfjsfs_redact", tuple)
REDACTED = "<store>"


# ------------------------------------------------------------------- errors


def json_error(
    status: int, message: str, kind: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON error reply."""
    return web.json_response(
        {"error": message, "kind": kind, "status": status}, status=status, headers=headers
    )


def error_reply(exc: BaseException, request: web.Request | None = None) -> web.Response | None:
    """The JSON reply for a tfjsfs error or ``OSError``; None for anything else.

    * :class:`~tfjsfs.errors.UploadTooLargeError`: 413 ``too-large``
    * :class:`~tfjsfs.errors.UploadEncodingError`: 415 ``encoded-body``
    * :class:`~tfjsfs.errors.UnsafePathError`: 400 ``bad-name``
    * ``ModelNotFoundError``, ``FileNotFoundError``: 404 ``not-found``
    * :class:`~tfjsfs.errors.BundleExistsError`: 409 ``exists``
    * :class:`~tfjsfs.errors.ModelChangedError`: 409 ``changed``
    * :class:`~tfjsfs.errors.ConcurrentUpdateError`: 409 ``conflict``
    * :class:`~tfjsfs.errors.FormatError`: 400, the class name as kind
    * other ``TFJSError`` and ``OSError``: 502, the class name as kind

    A 413 or 415 reply closes the connection (the rest of the body is not
    read); a reset connection is not answered.
    """
    if isinstance(exc, (UploadTooLargeError, UploadEncodingError)):
        too_large = isinstance(exc, UploadTooLargeError)
        response = json_error(
            413 if too_large else 415, str(exc), "too-large" if too_large else "encoded-body"
        )
        response.force_close()
        return response
    if isinstance(exc, UnsafePathError):
        return json_error(400, str(exc), "bad-name")
    if isinstance(exc, (ModelNotFoundError, FileNotFoundError)):
        return json_error(404, str(exc), "not-found")
    if isinstance(exc, BundleExistsError):
        return json_error(409, str(exc), "exists")
    if isinstance(exc, ModelChangedError):
        return json_error(409, str(exc), "changed")
    if isinstance(exc, ConcurrentUpdateError):
        return json_error(409, str(exc), "conflict")
    if isinstance(exc, FormatError):
        return json_error(400, str(exc), type(exc).__name__)
    if isinstance(exc, (TFJSError, OSError)) and not isinstance(exc, ConnectionResetError):
        where = f" on {request.method} {request.path}" if request is not None else ""
        log.error("store error%s", where, exc_info=exc)
        return json_error(502, f"store error: {exc}", type(exc).__name__)
    return None


def redact(body: bytes, secrets: Sequence[str]) -> bytes:
    """*body* (a JSON reply) with every one of *secrets* replaced by ``<store>``.

    Each secret is looked for as written and as JSON writes it (escaped).
    """
    forms = {
        form
        for secret in secrets
        if secret
        for form in (secret.encode("utf-8", "surrogateescape"), json.dumps(secret)[1:-1].encode())
    }
    for form in sorted(forms, key=len, reverse=True):
        body = body.replace(form, REDACTED.encode())
    return body


def _http_error(exc: web.HTTPException) -> web.Response:
    keep = {
        k: v for k, v in exc.headers.items() if k not in (hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH)
    }
    text = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    return json_error(exc.status, text, type(exc).__name__, keep)


async def _replying_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _http_error(exc)
    except Exception as exc:
        reply = error_reply(exc, request)
        if reply is None:
            raise
        response = reply
    secrets = request.app.get(REDACT_KEY)
    if (
        secrets
        and response.status >= 400
        and isinstance(response, web.Response)
        and not response.prepared
        and isinstance(response.body, bytes)
    ):
        response.body = redact(response.body, secrets)
    return response


def json_errors(handler: H) -> H:
    """Wrap *handler* so that every failure becomes a JSON reply (see :func:`error_reply`).

    HTTP exceptions (4xx/5xx) become ``{"error", "kind", "status"}`` with
    their headers; error replies hide the store's location when the
    application has :data:`REDACT_KEY`.
    """

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        return await _replying_errors(request, handler)

    return wrapped


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON reply with a fitting 4xx/5xx status (:func:`json_errors`)."""
    return await _replying_errors(request, handler)


# ------------------------------------------------------------------ headers


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: ``nosniff`` on every reply; tfjsfs's own pages
    (the index, model pages, the bridge page) also get
    :data:`CONTENT_SECURITY_POLICY` (no other host, no framing).

    Pages that an embedding application adds itself keep their own policy.
    """
    response.headers[hdrs.X_CONTENT_TYPE_OPTIONS] = "nosniff"
    match = request.match_info  # an empty mapping for routes without variables
    handler = match.handler if match is not None else None
    ours = (getattr(handler, "__module__", None) or "").startswith(f"{_PACKAGE}.")
    if ours and (response.content_type or "").lower() == "text/html":
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")


# ------------------------------------------------------------------- public


def public(handler: H) -> H:
    """Mark *handler* as readable without the read token (static pages and scripts)."""
    setattr(handler, _PUBLIC, True)
    return handler


def is_public(request: web.Request) -> bool:
    """Whether *request* reads a :func:`public` handler."""
    handler = request.match_info.handler
    return request.method in (hdrs.METH_GET, hdrs.METH_HEAD) and getattr(handler, _PUBLIC, False)


# ---------------------------------------------------------------- in flight


class InFlight:
    """Counts requests being handled, so shutdown can wait for them."""

    def __init__(self) -> None:
        self.count = 0
        self.idle = asyncio.Event()
        self.idle.set()

    @contextlib.contextmanager
    def track(self):
        """Count the request for the duration of the ``with`` block."""
        self.count += 1
        self.idle.clear()
        try:
            yield
        finally:
            self.count -= 1
            if not self.count:
                self.idle.set()


IN_FLIGHT_KEY = web.AppKey("tfjsfs_in_flight", InFlight)


@web.middleware
async def in_flight_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Track the request in ``app[IN_FLIGHT_KEY]`` while it is handled."""
    with request.app[IN_FLIGHT_KEY].track():
        return await handler(request)


# ------------------------------------------------------------------ uploads


class UploadGuard:
    """How many uploads run at once, and how long their bodies may stall.

    Parameters
    ----------
    max_uploads : int
        Uploads (``POST``/``PUT`` requests) handled at once; more get 503.
    idle_timeout : float
        Seconds an upload's body may send nothing before the upload is cut
        (408) and its connection closed.
    """

    def __init__(
        self,
        max_uploads: int = DEFAULT_MAX_UPLOADS,
        idle_timeout: float = DEFAULT_UPLOAD_IDLE_TIMEOUT,
    ) -> None:
        if max_uploads < 1 or not idle_timeout > 0:
            raise ValueError(
                f"max_uploads must be at least 1 and idle_timeout positive "
                f"(got {max_uploads} and {idle_timeout})"
            )
        self.max_uploads = max_uploads
        self.idle_timeout = float(idle_timeout)
        self.active = 0
        self.stopping = False

    def allowed_silence(self) -> float:
        """Seconds of silence tolerated now (shorter once shutting down)."""
        if self.stopping:
            return min(self.idle_timeout, SHUTDOWN_IDLE_TIMEOUT)
        return self.idle_timeout

    async def watch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Run *handler*, cutting it when the request body stalls.

        Returns a 408 reply (connection closed) for a stalled body.
        """
        loop = asyncio.get_running_loop()
        content = request.content
        task = asyncio.ensure_future(handler(request))
        seen, since = content.total_bytes, loop.time()
        try:
            while True:
                tick = min(1.0, self.allowed_silence() / 4)
                done, _ = await asyncio.wait({task}, timeout=tick)
                if done:
                    return task.result()
                now = loop.time()
                if content.total_bytes != seen or content.is_eof():
                    seen, since = content.total_bytes, now
                elif now - since >= self.allowed_silence():
                    break
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        silence = self.allowed_silence()
        log.warning(
            "%s %s: no body bytes for %g s after %d; closing the connection",
            request.method,
            request.path,
            silence,
            seen,
        )
        reply = json_error(
            408,
            f"the upload sent no bytes for {silence:g} s (after {seen} body bytes); "
            "the connection is closed",
            "timeout",
        )
        # send it and close at once: nothing more is arriving, and aiohttp would
        # otherwise keep reading the connection for its lingering time (10 s)
        reply.force_close()
        await reply.prepare(request)
        await reply.write_eof()
        if request.transport is not None:
            request.transport.close()
        return reply


UPLOADS_KEY = web.AppKey("tfjsfs_uploads", UploadGuard)


@web.middleware
async def upload_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Cap concurrent uploads and cut stalled bodies (``app[UPLOADS_KEY]``)."""
    if request.method not in (hdrs.METH_POST, hdrs.METH_PUT, hdrs.METH_PATCH):
        return await handler(request)
    guard = request.app[UPLOADS_KEY]
    if guard.active >= guard.max_uploads:
        reply = json_error(
            503,
            f"{guard.active} uploads are being received, the most this server takes at "
            f"once; retry in {RETRY_AFTER} s",
            "busy",
            {hdrs.RETRY_AFTER: str(RETRY_AFTER)},
        )
        reply.force_close()  # the body is not read
        return reply
    guard.active += 1
    try:
        return await guard.watch(request, handler)
    finally:
        guard.active -= 1
