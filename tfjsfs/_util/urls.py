"""URL forms: ``tfjs+<protocol>://…``, ``tfjs::<fsspec URL>``, and which protocols are HTTP.

One definition of each: every layer asks these functions, never a regex of its own.
"""

from __future__ import annotations

import os
import re

__all__ = ["TFJS_PLUS", "is_http", "is_http_url", "split_tfjs_protocol", "strip_tfjs"]

#: ``tfjs+<protocol>://``: group 1 is the inner protocol
TFJS_PLUS = re.compile(r"^tfjs\+([A-Za-z0-9.+\-_]+)://")
_TFJS_PREFIX = re.compile(r"^tfjs(?:\+[A-Za-z0-9.+\-_]+)?(?:://|::)")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-_]*://")
_HTTP = ("http", "https")


def split_tfjs_protocol(url: str) -> tuple[str | None, str]:
    """``("s3", "s3://b/m")`` for ``tfjs+s3://b/m``; ``tfjs::X`` gives ``X``'s protocol.

    Anything else comes back unchanged with protocol None. A ``tfjs::`` URL
    whose inner part has no protocol is a local path, as everywhere in fsspec.
    """
    match = TFJS_PLUS.match(url)
    if match:
        proto = match.group(1)
        return proto, f"{proto}://{url[match.end() :]}"
    if url.startswith("tfjs::"):
        rest = url[len("tfjs::") :]
        proto = rest.split("://", 1)[0] if "://" in rest else "file"
        return proto, rest
    return None, url


def strip_tfjs(path: str) -> str:
    """A path without its ``tfjs…://``/``tfjs::`` prefix and inner scheme.

    ``tfjs+s3://b/m/`` → ``b/m``; ``tfjs::https://h/m`` → ``h/m``;
    ``tfjs+file:///x`` → ``/x``. The root ``/`` is kept.
    """
    path = os.fspath(path)
    match = _TFJS_PREFIX.match(path)
    if match:
        path = path[match.end() :]
    match = _SCHEME.match(path)
    if match:
        path = path[match.end() :]
    stripped = path.rstrip("/")
    return stripped or ("/" if path.startswith("/") else "")


def is_http(protocol: str | None) -> bool:
    """Whether *protocol* is served by fsspec's HTTPFileSystem (no listing, full URLs)."""
    return protocol in _HTTP


def is_http_url(url: str) -> bool:
    """Whether *url* (plain, ``tfjs+…`` or ``tfjs::…``) is read over HTTP(S)."""
    protocol, inner = split_tfjs_protocol(os.fspath(url))
    if protocol is None:
        protocol = inner.split("://", 1)[0] if "://" in inner else None
    return is_http(protocol.lower() if protocol else None)
