"""A real HTTP(S) static file server with switchable misbehaviour and counters.

:class:`StaticServer` serves a directory from 127.0.0.1 with aiohttp in a
background thread: ``GET``/``HEAD``, single ``Range`` requests (206 with
``Content-Range``, 416 past the end), ``ETag``/``Last-Modified`` with
``If-None-Match``, nginx-style redirects of ``/dir`` to ``/dir/`` and an
nginx-autoindex-like listing. Switches, settable at construction or with
:meth:`StaticServer.set`:

``ignore_range``
    Always answer 200 with the whole body and no ``Accept-Ranges``.
``no_listing``
    Directories answer 403, as nginx does without ``autoindex``.
``cors``
    Allow any origin (via aiohttp-cors), for pages served from elsewhere.

Per-path faults: :meth:`~StaticServer.fail_first`,
:meth:`~StaticServer.drop_mid_body` and :meth:`~StaticServer.truncate`.
:attr:`StaticServer.stats` counts body bytes sent per path and logs every
request with its ``Range`` header.
"""

from __future__ import annotations

import asyncio
import html
import mimetypes
import os
import socket
import struct
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from pathlib import Path

import aiohttp_cors
from aiohttp import web

from ._aioserver import ThreadedApp, TLSConfig

CHUNK = 64 * 1024


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it.

    ``path`` is the percent-decoded URL path, ``range`` the raw ``Range``
    header (or None) and ``body_bytes`` the number of body bytes actually
    written to the socket.
    """

    method: str
    path: str
    range: str | None
    status: int
    body_bytes: int


class ServerStats:
    """Thread-safe request log and byte counters of a :class:`StaticServer`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RequestRecord] = []
        self._bytes: Counter[str] = Counter()

    # The server logs a request before the client can see its response and
    # counts body bytes before writing them, so a client that got an answer
    # always finds it counted.
    def _record(self, rec: RequestRecord) -> int:
        with self._lock:
            self._requests.append(rec)
            self._bytes[rec.path] += rec.body_bytes
            return len(self._requests) - 1

    def _add_bytes(self, index: int, nbytes: int) -> None:
        with self._lock:
            if index < len(self._requests):  # not reset meanwhile
                rec = self._requests[index]
                self._requests[index] = replace(rec, body_bytes=rec.body_bytes + nbytes)
                self._bytes[rec.path] += nbytes

    def reset(self) -> None:
        """Forget all requests and counts."""
        with self._lock:
            self._requests.clear()
            self._bytes.clear()

    @property
    def requests(self) -> list[RequestRecord]:
        """All requests so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def bytes_served(self) -> dict[str, int]:
        """Body bytes sent per URL path (a copy)."""
        with self._lock:
            return dict(self._bytes)

    @property
    def total_bytes(self) -> int:
        """Body bytes sent over all paths."""
        with self._lock:
            return sum(self._bytes.values())

    def requests_for(self, path: str, method: str | None = None) -> list[RequestRecord]:
        """Requests to ``path`` (with or without the leading slash)."""
        path = _norm(path)
        return [
            r for r in self.requests if r.path == path and (method is None or r.method == method)
        ]

    def count(self, path: str | None = None, method: str | None = None) -> int:
        """Number of requests, optionally only to ``path`` and/or ``method``."""
        return sum(
            1
            for r in self.requests
            if (path is None or r.path == _norm(path)) and (method is None or r.method == method)
        )


@dataclass
class _Fault:
    kind: str  # "fail", "drop" or "truncate"
    remaining: int | None  # None: forever
    status: int = 503
    nbytes: int = 0
    methods: frozenset[str] | None = None


@dataclass
class _Switches:
    ignore_range: bool = False
    no_listing: bool = False
    cors: bool = False
    faults: dict[str, list[_Fault]] = field(default_factory=dict)


def _norm(path: str) -> str:
    return path if path.startswith("/") else "/" + path


class StaticServer(ThreadedApp):
    """Serve ``root`` over HTTP (or HTTPS) on 127.0.0.1 from a background thread.

    Parameters
    ----------
    root : path-like
        Directory to serve; files are read on every request, so tests may
        change them while the server runs.
    tls : peers.tls.ThrowawayCA, optional
        Serve HTTPS with a certificate from this CA; see ``peers.tls`` for how
        clients trust it (:attr:`storage_options`, :attr:`client_ssl_context`,
        :attr:`ca_file`).
    ignore_range, no_listing, cors : bool
        Behaviour switches, see the module docstring.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        tls: TLSConfig | None = None,
        ignore_range: bool = False,
        no_listing: bool = False,
        cors: bool = False,
    ) -> None:
        super().__init__(tls=tls)
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise NotADirectoryError(f"not a directory: {self.root}")
        self.stats = ServerStats()
        self._lock = threading.Lock()
        self._sw = _Switches(ignore_range, no_listing, cors)

    # -- test controls -----------------------------------------------------

    def url_for(self, path: str) -> str:
        """Absolute URL of ``path`` (relative to the served root)."""
        return self.url + urllib.parse.quote(_norm(path))

    def reset_stats(self) -> None:
        """Forget logged requests and byte counts."""
        self.stats.reset()

    def set(
        self,
        *,
        ignore_range: bool | None = None,
        no_listing: bool | None = None,
    ) -> None:
        """Change behaviour switches while the server runs."""
        with self._lock:
            if ignore_range is not None:
                self._sw.ignore_range = ignore_range
            if no_listing is not None:
                self._sw.no_listing = no_listing

    def _add_fault(self, path: str, fault: _Fault) -> None:
        with self._lock:
            self._sw.faults.setdefault(_norm(path), []).append(fault)

    def fail_first(
        self,
        path: str,
        n: int,
        status: int = 503,
        methods: tuple[str, ...] | None = None,
    ) -> None:
        """Answer the next ``n`` requests to ``path`` with ``status``.

        ``methods`` limits which requests count (e.g. ``("GET",)`` so that a
        client's ``HEAD`` does not use up a failure); default: all.
        """
        ms = frozenset(m.upper() for m in methods) if methods else None
        self._add_fault(path, _Fault("fail", n, status=status, methods=ms))

    def drop_mid_body(self, path: str, after_bytes: int, times: int = 1) -> None:
        """For the next ``times`` GETs of ``path``: send the headers with the full
        ``Content-Length``, then ``after_bytes`` of body, then reset the
        connection (RST)."""
        self._add_fault(path, _Fault("drop", times, nbytes=after_bytes))

    def truncate(self, path: str, nbytes: int, times: int | None = None) -> None:
        """Send only ``nbytes`` of body for GETs of ``path`` (full
        ``Content-Length`` in the headers), then close the connection cleanly.
        ``times=None`` means every request from now on."""
        self._add_fault(path, _Fault("truncate", times, nbytes=nbytes))

    def clear_faults(self) -> None:
        """Remove all per-path faults."""
        with self._lock:
            self._sw.faults.clear()

    def _take_fault(self, path: str, method: str) -> _Fault | None:
        with self._lock:
            for fault in self._sw.faults.get(path, []):
                if fault.remaining == 0:
                    continue
                if fault.kind == "fail":
                    if fault.methods is not None and method not in fault.methods:
                        continue
                elif method != "GET":
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None

    # -- serving -------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application()
        resource = app.router.add_resource("/{tail:.*}")
        routes = [resource.add_route(m, self._handle) for m in ("GET", "HEAD")]
        if self._sw.cors:
            cors = aiohttp_cors.setup(
                app,
                defaults={
                    "*": aiohttp_cors.ResourceOptions(expose_headers="*", allow_headers="*")
                },
            )
            for route in routes:
                cors.add(route)
        return app

    def _log(self, request: web.Request, status: int, body_bytes: int = 0) -> int:
        rec = RequestRecord(
            request.method, request.path, request.headers.get("Range"), status, body_bytes
        )
        return self.stats._record(rec)

    def _reply(self, request: web.Request, resp: web.Response) -> web.Response:
        """Log a complete response (sent after the handler returns)."""
        body = 0 if request.method == "HEAD" else len(resp.body or b"")
        self._log(request, resp.status, body)
        return resp

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path, method = request.path, request.method
        fault = self._take_fault(path, method)
        if fault is not None and fault.kind == "fail":
            text = f"injected failure for {path}\n"
            return self._reply(request, web.Response(status=fault.status, text=text))

        target = (self.root / path.lstrip("/")).resolve()
        if not target.is_relative_to(self.root) or not target.exists():
            return self._reply(request, web.Response(status=404, text="not found\n"))
        if target.is_dir():
            return self._reply(request, self._directory(request, target))

        st = target.stat()
        size = st.st_size
        etag = f'"{st.st_mtime_ns:x}-{size:x}"'
        headers = {
            "ETag": etag,
            "Last-Modified": formatdate(st.st_mtime, usegmt=True),
            "Content-Type": mimetypes.guess_type(target.name)[0] or "application/octet-stream",
        }
        if request.headers.get("If-None-Match") == etag:
            return self._reply(request, web.Response(status=304, headers=headers))

        with self._lock:
            ignore_range = self._sw.ignore_range
        start, end, status = 0, size, 200
        if not ignore_range:
            headers["Accept-Ranges"] = "bytes"
            if "Range" in request.headers:
                try:
                    rng = request.http_range
                except ValueError:
                    rng = None  # RFC 9110: a server may ignore a bad Range
                if rng is not None:
                    start, end, status = self._range(rng, size)
                    if status == 416:
                        headers["Content-Range"] = f"bytes */{size}"
                        return self._reply(request, web.Response(status=416, headers=headers))
                    headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"

        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = end - start
        index = self._log(request, status)
        await resp.prepare(request)
        if method != "HEAD":
            await self._send_body(request, resp, target, start, end, fault, index)
        return resp

    @staticmethod
    def _range(rng: slice, size: int) -> tuple[int, int, int]:
        """Turn aiohttp's parsed ``Range`` into ``(start, end, status)``."""
        start, end = rng.start, rng.stop
        if start is None:
            start = 0
        elif start < 0:  # suffix range "bytes=-N"
            start = max(size + start, 0)
        end = size if end is None else min(end, size)
        if start >= size:
            return 0, 0, 416
        return start, end, 206

    async def _send_body(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        target: Path,
        start: int,
        end: int,
        fault: _Fault | None,
        index: int,
    ) -> None:
        limit = end - start
        if fault is not None:
            limit = min(limit, fault.nbytes)
        sent = 0
        with open(target, "rb") as fh:
            fh.seek(start)
            while sent < limit:
                chunk = fh.read(min(CHUNK, limit - sent))
                if not chunk:
                    break
                self.stats._add_bytes(index, len(chunk))
                await resp.write(chunk)
                sent += len(chunk)
        if fault is not None and sent < end - start:
            await self._cut(request, reset=fault.kind == "drop")

    @staticmethod
    async def _cut(request: web.Request, *, reset: bool) -> None:
        """Close the connection mid-body, after flushing what was written."""
        transport = request.transport
        if transport is None:
            return
        deadline = time.monotonic() + 10
        while transport.get_write_buffer_size() and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:  # linger 0: close() sends RST, not FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()

    def _directory(self, request: web.Request, target: Path) -> web.Response:
        path = request.path
        if not path.endswith("/"):
            location = urllib.parse.quote(path + "/")
            return web.Response(status=301, headers={"Location": location})
        with self._lock:
            no_listing = self._sw.no_listing
        if no_listing:
            return web.Response(status=403, text="forbidden\n")
        body = autoindex_html(path, target)
        return web.Response(body=body, content_type="text/html", charset="utf-8")


def autoindex_html(url_path: str, directory: Path) -> bytes:
    """An nginx ``autoindex``-style HTML listing of ``directory``."""
    title = html.escape(url_path)
    lines = [
        f"<html>\r\n<head><title>Index of {title}</title></head>\r\n<body>\r\n"
        f"<h1>Index of {title}</h1><hr><pre>"
        '<a href="../">../</a>'
    ]
    entries = sorted(directory.iterdir(), key=lambda p: (not p.is_dir(), p.name))
    for entry in entries:
        st = entry.stat()
        name = entry.name + ("/" if entry.is_dir() else "")
        when = time.strftime("%d-%b-%Y %H:%M", time.gmtime(st.st_mtime))
        size = "-" if entry.is_dir() else str(st.st_size)
        shown = html.escape(name)
        pad = " " * max(1, 51 - len(name))
        lines.append(f'<a href="{urllib.parse.quote(name)}">{shown}</a>{pad}{when}{size:>20}')
    lines.append("</pre><hr></body>\r\n</html>\r\n")
    return "\r\n".join(lines).encode("utf-8")
