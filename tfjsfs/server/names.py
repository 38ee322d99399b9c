"""What a client may call things: model names, and what it is told about the store.

:func:`check_name` is the one rule for model names (every route, the bridge
and :class:`~tfjsfs.server.modelstore.ModelStore` use it). Lengths are
counted in UTF-8 bytes, as filesystems and object stores count them, so a
name that passes always fits. :func:`store_name` is all a client learns
about where the store is: its last path segment, never its location.
"""

from __future__ import annotations

import posixpath
import re

from ..errors import UnsafePathError

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_SEGMENT_BYTES",
    "check_name",
    "store_name",
    "without_credentials",
]

#: Longest model name, in UTF-8 bytes.
MAX_NAME_BYTES = 1024
#: Longest name segment (a folder or file name), in UTF-8 bytes.
MAX_SEGMENT_BYTES = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")
#: Bidirectional marks, embeddings, overrides and isolates: they make a name
#: display as another one (``abc\u202egnp.exe``).
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CREDENTIALS = re.compile(r"^([A-Za-z][\w+.\-]*://)[^/@]*@")


def _utf8_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def check_name(name: str) -> str:
    """Return *name* if it is a safe model name, else raise :class:`UnsafePathError`.

    A name is one or more ``/``-separated segments; no segment may be empty,
    ``.``, ``..`` or start with ``.`` (reserved for temporary files), no
    control characters, backslashes or bidirectional-override characters,
    at most :data:`MAX_SEGMENT_BYTES` UTF-8 bytes per segment and
    :data:`MAX_NAME_BYTES` in all, and the last segment may not end with
    ``.json`` or ``.bin`` (those address a bundle's files).

    Parameters
    ----------
    name : str

    Returns
    -------
    str
        *name*, unchanged.

    Raises
    ------
    UnsafePathError
        Naming the rule broken.
    """
    if not isinstance(name, str) or not name:
        raise UnsafePathError("model name is empty")
    size = _utf8_length(name)
    if size > MAX_NAME_BYTES:
        raise UnsafePathError(
            f"model name is {size} bytes long in UTF-8; the limit is {MAX_NAME_BYTES} bytes"
        )
    if name.startswith("/"):
        raise UnsafePathError(f"model name {name!r} is absolute; names are relative paths")
    if _CONTROL.search(name):
        raise UnsafePathError(f"model name {name!r} contains a control character or a backslash")
    bidi = _BIDI.search(name)
    if bidi:
        raise UnsafePathError(
            f"model name {name!r} contains the bidirectional control character "
            f"U+{ord(bidi.group()):04X} at {bidi.start()} (it makes a name display as another)"
        )
    segments = name.split("/")
    for segment in segments:
        if not segment:
            raise UnsafePathError(f"model name {name!r} has an empty path segment")
        if segment in (".", ".."):
            raise UnsafePathError(f"model name {name!r} has a {segment!r} segment")
        if segment.startswith("."):
            raise UnsafePathError(
                f"model name {name!r}: segments may not start with '.' ({segment!r})"
            )
        size = _utf8_length(segment)
        if size > MAX_SEGMENT_BYTES:
            raise UnsafePathError(
                f"model name {name[:40]!r}…: a segment is {size} bytes long in UTF-8; "
                f"the limit is {MAX_SEGMENT_BYTES} bytes"
            )
    if segments[-1].endswith((".json", ".bin")):
        raise UnsafePathError(
            f"model name {name!r} may not end with .json or .bin (that addresses a file)"
        )
    return name


def without_credentials(url: str) -> str:
    """*url* without a ``user:password@`` part (for logs)."""
    return _CREDENTIALS.sub(r"\1", url)


def store_name(root: str) -> str:
    """What clients are told about the store whose inner path is *root*: its last segment.

    ``/home/me/models`` and ``bucket/team/models`` (``s3://bucket/team/models``)
    are both ``models``; a bucket root is its bucket's name. The location
    itself (folders, host, credentials) never reaches a client.
    """
    return posixpath.basename(root.replace("\\", "/").rstrip("/")) or "store"
