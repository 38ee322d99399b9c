"""What every route of the model server shares: JSON errors, bearer tokens, in-flight count.

Errors are JSON, ``{"error": message, "kind": kind, "status": status}``;
:func:`error_reply` maps tfjsfs's error hierarchy (and ``OSError``) to a
status, for :func:`error_middleware` and for the bridge's routes when they
run in an application without it. :func:`auth_middleware` checks bearer
tokens; handlers marked with :func:`public` (a static page and its script,
which a browser opens without an ``Authorization`` header) are readable
without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from aiohttp import hdrs, web

from ..errors import (
    BundleExistsError,
    FormatError,
    ModelChangedError,
    ModelNotFoundError,
    TFJSError,
    UnsafePathError,
    UploadTooLargeError,
)

__all__ = [
    "IN_FLIGHT_KEY",
    "InFlight",
    "auth_middleware",
    "error_middleware",
    "error_reply",
    "in_flight_middleware",
    "json_error",
    "public",
]

log = logging.getLogger("tfjsfs.server.app")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Callable[..., Any])
_PUBLIC = "_tfjsfs_public"


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
    * :class:`~tfjsfs.errors.UnsafePathError`: 400 ``bad-name``
    * ``ModelNotFoundError``, ``FileNotFoundError``: 404 ``not-found``
    * :class:`~tfjsfs.errors.BundleExistsError`: 409 ``exists``
    * :class:`~tfjsfs.errors.ModelChangedError`: 409 ``changed``
    * :class:`~tfjsfs.errors.FormatError`: 400, the class name as kind
    * other ``TFJSError`` and ``OSError``: 502, the class name as kind

    A 413 reply closes the connection (the rest of a huge body is not
    read); a reset connection is not answered.
    """
    if isinstance(exc, UploadTooLargeError):
        response = json_error(413, str(exc), "too-large")
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
    if isinstance(exc, FormatError):
        return json_error(400, str(exc), type(exc).__name__)
    if isinstance(exc, (TFJSError, OSError)) and not isinstance(exc, ConnectionResetError):
        where = f" on {request.method} {request.path}" if request is not None else ""
        log.error("store error%s", where, exc_info=exc)
        return json_error(502, f"store error: {exc}", type(exc).__name__)
    return None


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
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
        return json_error(exc.status, text, type(exc).__name__, keep)
    except Exception as exc:
        reply = error_reply(exc, request)
        if reply is None:
            raise
        return reply


# ------------------------------------------------------------------- tokens


def public(handler: H) -> H:
    """Mark *handler* as readable without the read token (static pages and scripts)."""
    setattr(handler, _PUBLIC, True)
    return handler


def _is_public(request: web.Request) -> bool:
    handler = request.match_info.handler
    return request.method in (hdrs.METH_GET, hdrs.METH_HEAD) and getattr(handler, _PUBLIC, False)


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def auth_middleware(token: str | None, read_token: str | None):
    """Bearer-token checks: *token* for writes, *read_token* (or *token*) for reads.

    ``OPTIONS`` (CORS preflights) and :func:`public` handlers need no token.
    """

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == hdrs.METH_OPTIONS or _is_public(request):
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
