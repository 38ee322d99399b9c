"""One HTTP request the loader can trust: redirects it allows, bodies it bounds.

* :func:`http_get` sends a request through the HTTP filesystem's aiohttp
  session without letting aiohttp follow redirects or decode the body, and
  follows redirects itself as ``follow_redirects`` allows
  (:attr:`tfjsfs._util.retry.RetryPolicy.follow_redirects`): ``"never"``,
  ``"same-origin"`` (scheme, host and port unchanged; the default) or
  ``"any"``. A refused redirect is a :class:`~tfjsfs.errors.RedirectError`
  naming the request and the target's origin.
* :func:`body_chunks` yields a reply's body decoded (``gzip``/``deflate``
  decompressed here, never more than asked for), stopping after
  ``limit + 1`` bytes: a caller that gets more than *limit* knows the body is
  too long having buffered at most one byte more than it wanted.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from ..errors import RedirectError, TransferError
from .shardurls import http_request_kwargs

__all__ = ["MAX_REDIRECTS", "body_chunks", "http_get", "origin", "request_kwargs"]

MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CREDENTIALS = ("Authorization", "Cookie", "Proxy-Authorization")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: Any) -> str:
    """``scheme://host:port`` of *url* (a string or a ``yarl.URL``)."""
    import yarl

    u = url if isinstance(url, yarl.URL) else yarl.URL(str(url))
    scheme = (u.scheme or "").lower()
    port = u.port or _DEFAULT_PORTS.get(scheme)
    return f"{scheme}://{(u.host or '').lower()}:{port}"


def request_kwargs(fs: Any, headers: Mapping[str, str]) -> dict[str, Any]:
    """Keyword arguments for a request through *fs*'s session (its own, merged with
    *headers*), without the ones this module sets itself."""
    kwargs = dict(getattr(fs, "kwargs", {}))
    kwargs.update(http_request_kwargs(fs, headers))
    for key in ("read_bufsize", "timeout", "allow_redirects", "auto_decompress"):
        kwargs.pop(key, None)
    return kwargs


@asynccontextmanager
async def http_get(
    session: Any,
    url: Any,
    *,
    follow: str,
    what: str | Callable[[], str],
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> AsyncIterator[Any]:
    """The reply to *method* *url*, after the redirects *follow* allows.

    The body is left undecoded (read it with :func:`body_chunks`).
    Credentials are not sent to another origin. *what* names the request in
    messages (a callable is only called when one is needed).

    Raises
    ------
    RedirectError
        A redirect *follow* does not allow, or more than :data:`MAX_REDIRECTS`.
    """
    headers = dict(headers or {})
    current = url
    start = origin(url)
    for _ in range(MAX_REDIRECTS + 1):
        resp = await session.request(
            method,
            current,
            headers=headers,
            allow_redirects=False,
            auto_decompress=False,
            **kwargs,
        )
        location = resp.headers.get("Location")
        if resp.status not in _REDIRECTS or not location:
            try:
                yield resp
            finally:
                resp.release()
            return
        target = resp.url.join(type(resp.url)(location))
        resp.release()
        there = origin(target)
        if follow == "never" or (follow == "same-origin" and there != start):
            hint = "any" if there != start else "same-origin"
            if callable(what):
                what = what()
            raise RedirectError(
                f"{what}: the server redirects to {there}, which "
                f"follow_redirects={follow!r} refuses (pass follow_redirects={hint!r} "
                "to follow it)",
                str(target),
            )
        if there != origin(current):
            headers = {k: v for k, v in headers.items() if k.title() not in _CREDENTIALS}
            kwargs.pop("auth", None)
        if resp.status == 303 and method != "HEAD":
            method = "GET"
        current = target
    if callable(what):
        what = what()
    raise RedirectError(f"{what}: more than {MAX_REDIRECTS} redirects", str(current))


async def body_chunks(resp: Any, limit: int | None, what: str) -> AsyncIterator[bytes]:
    """The decoded body of *resp* (read with ``auto_decompress=False``), chunk by chunk.

    Stops once more than *limit* bytes were yielded (at most ``limit + 1``;
    None: no limit), so a caller detects an over-long body without holding
    it. ``gzip`` and ``deflate`` are decompressed here, with the same bound.

    Raises
    ------
    TransferError
        An encoding other than ``gzip``, ``deflate`` or ``identity``, or
        undecodable compressed data.
    """
    encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        decoder = None
    elif encoding in ("gzip", "x-gzip"):
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        decoder = _Deflate()
    else:
        raise TransferError(f"{what}: unsupported Content-Encoding {encoding!r}")
    room = None if limit is None else limit + 1
    async for data in resp.content.iter_any():
        if decoder is None:
            if room is not None and len(data) > room:
                data = data[:room]
            out = [data]
        else:
            out = _decode(decoder, data, room, what)
        for chunk in out:
            if not chunk:
                continue
            if room is not None:
                room -= len(chunk)
            yield chunk
        if room is not None and room <= 0:
            return


def _decode(decoder: Any, data: bytes, room: int | None, what: str) -> list[bytes]:
    """Decompress *data*, producing at most *room* bytes (None: all)."""
    out = []
    try:
        while data:
            if room is None:
                out.append(decoder.decompress(data))
                break
            if room <= 0:
                break
            chunk = decoder.decompress(data, room)
            out.append(chunk)
            room -= len(chunk)
            data = decoder.unconsumed_tail
            if not chunk and data:  # pragma: no cover - zlib always makes progress
                break
    except zlib.error as exc:
        raise TransferError(f"{what}: the compressed body is corrupt ({exc})") from None
    return out


class _Deflate:
    """``Content-Encoding: deflate``: zlib-wrapped as the RFC says, or raw as some servers send."""

    def __init__(self) -> None:
        self._d: Any = None
        self.unconsumed_tail = b""

    def decompress(self, data: bytes, max_length: int = 0) -> bytes:
        if self._d is None:
            raw = not data or (data[0] & 0x0F) != 8  # no zlib header: raw deflate
            self._d = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
        out = self._d.decompress(data, max_length)
        self.unconsumed_tail = self._d.unconsumed_tail
        return out
