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
Per-path lies (wrong answers a client must detect): :meth:`~StaticServer.lie`,
and :meth:`~StaticServer.redirect`. ``If-Range`` is honoured: a stale
validator gets the whole current file (200), as RFC 9110 says.
:attr:`StaticServer.stats` counts body bytes sent per path and logs every
request with its ``Range`` header.
"""

from __future__ import annotations

import asyncio
import functools
import html
import mimetypes
import os
import socket
import struct
import threading
import time
import urllib.parse
import zlib
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


#: What :meth:`StaticServer.lie` can make the server do (see there).
LIES = frozenset(
    {
        "short_chunked",
        "long_chunked",
        "wrong_range",
        "content_range_mismatch",
        "full_to_range",
        "change_after_drop",
        "resize",
        "gzip",
        "head_without_length",
    }
)


@dataclass
class _Lie:
    kind: str
    remaining: int | None  # None: forever
    params: dict = field(default_factory=dict)


@dataclass
class _Switches:
    ignore_range: bool = False
    no_listing: bool = False
    cors: bool = False
    faults: dict[str, list[_Fault]] = field(default_factory=dict)
    lies: dict[str, list[_Lie]] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)


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
        """Remove all per-path faults, lies and redirects."""
        with self._lock:
            self._sw.faults.clear()
            self._sw.lies.clear()
            self._sw.redirects.clear()

    def lie(self, path: str, kind: str, times: int | None = 1, **params: object) -> None:
        """Answer the next ``times`` GETs of ``path`` wrongly (``None``: every one).

        ``short_chunked`` (``nbytes``)
            Send only the first ``nbytes`` of what was asked, chunked (no
            ``Content-Length``), and end the body cleanly.
        ``long_chunked`` (``extra``)
            Send what was asked plus ``extra`` junk bytes, chunked.
        ``wrong_range`` (``shift``)
            Answer a range request with 206 for the range ``shift`` bytes
            later (``Content-Range`` tells the truth about the wrong range).
        ``content_range_mismatch`` (``extra``)
            206 whose ``Content-Range`` names the range asked for but whose
            body (chunked) starts ``extra`` bytes earlier in the file (so it
            is ``extra`` bytes longer); negative: it stops ``-extra`` bytes
            short.
        ``full_to_range``
            200 with the whole file to a range request, while still
            advertising ``Accept-Ranges: bytes``.
        ``change_after_drop`` (``nbytes``, ``new``)
            Send ``nbytes`` of the body, reset the connection, then replace
            the file with the bytes ``new`` (so its ETag changes before the
            client resumes).
        ``resize`` (``size``)
            Serve the file as if it held ``size`` bytes: cut short, or padded
            with junk (generated, never stored); headers agree with the body.
            Applies to ``HEAD`` too unless ``head=False``.
        ``gzip`` (``extra``)
            Serve the file followed by ``extra`` zero bytes, gzip-compressed
            (``Content-Encoding: gzip``; a bomb for large ``extra``).
        ``head_without_length``
            ``HEAD`` answers without ``Content-Length`` (counts HEADs, not GETs).
        """
        if kind not in LIES:
            raise ValueError(f"unknown lie {kind!r}; one of {sorted(LIES)}")
        with self._lock:
            self._sw.lies.setdefault(_norm(path), []).append(_Lie(kind, times, dict(params)))

    def redirect(self, path: str, location: str) -> None:
        """Answer every request for ``path`` with ``302 Location: location``."""
        with self._lock:
            self._sw.redirects[_norm(path)] = location

    def _take_lie(self, path: str, method: str) -> _Lie | None:
        with self._lock:
            for lie in self._sw.lies.get(path, []):
                if lie.remaining == 0:
                    continue
                heads = lie.kind == "head_without_length" or (
                    lie.kind == "resize" and lie.params.get("head", True)
                )
                if method != "GET" and not (heads and method == "HEAD"):
                    continue
                if lie.kind == "head_without_length" and method != "HEAD":
                    continue
                if lie.remaining is not None:
                    lie.remaining -= 1
                return lie
        return None

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
        with self._lock:
            location = self._sw.redirects.get(path)
        if location is not None:
            reply = web.Response(status=302, headers={"Location": location})
            return self._reply(request, reply)
        fault = self._take_fault(path, method)
        if fault is not None and fault.kind == "fail":
            text = f"injected failure for {path}\n"
            return self._reply(request, web.Response(status=fault.status, text=text))
        lie = self._take_lie(path, method)

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

        if lie is not None and lie.kind in ("resize", "gzip", "head_without_length"):
            return await self._serve_lie(request, target, headers, lie)
        with self._lock:
            ignore_range = self._sw.ignore_range
        if_range = request.headers.get("If-Range")
        honour_range = if_range is None or if_range == etag
        start, end, status = 0, size, 200
        if not ignore_range:
            headers["Accept-Ranges"] = "bytes"
            if "Range" in request.headers and honour_range:
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

        if lie is not None:
            return await self._serve_range_lie(request, target, headers, lie, start, end, status)
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = end - start
        index = self._log(request, status)
        await resp.prepare(request)
        if method != "HEAD":
            await self._send_body(request, resp, target, start, end, fault, index)
        return resp

    async def _serve_lie(
        self, request: web.Request, target: Path, headers: dict, lie: _Lie
    ) -> web.StreamResponse:
        """Whole-file lies: ``resize``, ``gzip`` and ``head_without_length``."""
        data = target.read_bytes()
        headers.pop("ETag", None)
        if lie.kind == "head_without_length":
            resp = web.StreamResponse(status=200, headers=headers)
            resp.enable_chunked_encoding()
            self._log(request, 200)
            await resp.prepare(request)
            return resp
        if lie.kind == "resize":
            size = int(lie.params["size"])
            resp = web.StreamResponse(status=200, headers=headers)
            resp.content_length = size
            index = self._log(request, 200)
            await resp.prepare(request)
            if request.method == "GET":
                await self._stream_bytes(resp, index, data[:size], max(0, size - len(data)))
            return resp
        body = gzip_bomb(data, int(lie.params.get("extra", 0)))
        headers["Content-Encoding"] = "gzip"
        resp = web.StreamResponse(status=200, headers=headers)
        resp.content_length = len(body)
        index = self._log(request, 200)
        await resp.prepare(request)
        await self._stream_bytes(resp, index, body, 0)
        return resp

    async def _serve_range_lie(
        self,
        request: web.Request,
        target: Path,
        headers: dict,
        lie: _Lie,
        start: int,
        end: int,
        status: int,
    ) -> web.StreamResponse:
        """Lies about what part of the file a reply holds."""
        data = target.read_bytes()
        size = len(data)
        body = data[start:end]
        chunked, junk = False, 0
        if lie.kind == "short_chunked":
            body, chunked = body[: int(lie.params["nbytes"])], True
        elif lie.kind == "long_chunked":
            junk, chunked = int(lie.params["extra"]), True
        elif lie.kind == "wrong_range" and status == 206:
            shift = int(lie.params["shift"])
            start, end = min(size - 1, start + shift), min(size, end + shift)
            body = data[start:end]
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        elif lie.kind == "content_range_mismatch" and status == 206:
            extra = int(lie.params["extra"])
            if extra < 0:
                body = data[start : end + extra]
            else:  # the body starts earlier than Content-Range says
                body = b"\xa5" * max(0, extra - start) + data[max(0, start - extra) : end]
            chunked = True
        elif lie.kind == "full_to_range":
            status, body = 200, data
            headers.pop("Content-Range", None)
        elif lie.kind == "change_after_drop":
            nbytes = int(lie.params["nbytes"])
            resp = web.StreamResponse(status=status, headers=headers)
            resp.content_length = len(body)
            index = self._log(request, status)
            await resp.prepare(request)
            await self._stream_bytes(resp, index, body[:nbytes], 0)
            await self._cut(request, reset=True)
            new = bytes(lie.params["new"])  # type: ignore[arg-type]
            target.write_bytes(new)
            st = target.stat()  # a new mtime even on coarse clocks
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
            return resp
        resp = web.StreamResponse(status=status, headers=headers)
        if chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = len(body)
        index = self._log(request, status)
        await resp.prepare(request)
        await self._stream_bytes(resp, index, body, junk)
        return resp

    async def _stream_bytes(
        self, resp: web.StreamResponse, index: int, data: bytes, junk: int
    ) -> None:
        """Write *data*, then *junk* generated bytes, counting every one; stop
        quietly when the client hangs up (clients are meant to, on a lie)."""
        filler = b"\x5a" * CHUNK
        try:
            for i in range(0, len(data), CHUNK):
                chunk = data[i : i + CHUNK]
                self.stats._add_bytes(index, len(chunk))
                await resp.write(chunk)
            while junk > 0:
                chunk = filler[: min(CHUNK, junk)]
                self.stats._add_bytes(index, len(chunk))
                await resp.write(chunk)
                junk -= len(chunk)
        except ConnectionError:
            pass

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


@functools.lru_cache(maxsize=8)
def gzip_bomb(data: bytes, extra: int) -> bytes:
    """*data* followed by *extra* zero bytes, gzip-compressed (cached: a bomb of
    hundreds of MiB takes a moment to build)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress(data)]
    zeros = bytes(1 << 20)
    while extra > 0:
        parts.append(packer.compress(zeros[: min(len(zeros), extra)]))
        extra -= len(zeros)
    parts.append(packer.flush())
    return b"".join(parts)


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
