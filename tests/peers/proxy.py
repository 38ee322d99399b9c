"""A recording reverse proxy on 127.0.0.1: every request is forwarded to one
upstream (e.g. moto's S3 server) unchanged and logged with its headers, so
tests can see what the stores' clients really send (conditional headers).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from ._aioserver import ThreadedApp

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "expect"}


@dataclass(frozen=True)
class Forwarded:
    """One request the proxy forwarded, and the upstream's status."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    status: int


class RecordingProxy(ThreadedApp):
    """Forward every request to *upstream*; :attr:`log` holds what was sent.

    Parameters
    ----------
    upstream : str
        Base URL, e.g. ``http://127.0.0.1:5000``.
    """

    def __init__(self, upstream: str) -> None:
        super().__init__()
        self.upstream = upstream.rstrip("/")
        self._log: list[Forwarded] = []
        self._lock = threading.Lock()
        self._session: aiohttp.ClientSession | None = None

    @property
    def log(self) -> list[Forwarded]:
        with self._lock:
            return list(self._log)

    def clear(self) -> None:
        with self._lock:
            self._log.clear()

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, _app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            data=body if body else None,
            headers=headers,
            allow_redirects=False,
        ) as resp:
            payload = await resp.read()
            out_headers: dict[str, Any] = {
                k: v for k, v in resp.headers.items() if k.lower() not in _HOP
            }
            if request.method == "HEAD" and "Content-Length" in resp.headers:
                out_headers["Content-Length"] = resp.headers["Content-Length"]
            status = resp.status
        with self._lock:
            self._log.append(
                Forwarded(
                    request.method,
                    request.path,
                    request.query_string,
                    {k.lower(): v for k, v in request.headers.items()},
                    status,
                )
            )
        if request.method == "HEAD":
            return web.Response(status=status, headers=out_headers)
        return web.Response(status=status, body=payload, headers=out_headers)
