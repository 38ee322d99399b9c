"""Manifest path -> shard location: the one resolver, and its proof of containment.

Every reader, writer, verifier, copier, the model server and bulk jobs turn a
``weightsManifest[].paths`` entry into a location with :func:`locate_shard`,
and nothing else. It resolves the path against the model folder and then
proves that the result lies inside that folder (:func:`inside_folder`); a
path it cannot prove safe raises :class:`~tfjsfs.errors.UnsafePathError`.

What a manifest path means
--------------------------
A manifest path is a relative reference of ``/``-separated segments, as in
TF.js (which concatenates it to model.json's URL folder). Per kind of store:

``"http"`` (a URL, also inside caching chains such as ``simplecache::``)
    ``?`` starts the shard's own query, kept verbatim; model.json's query
    (``carry_query``) is appended after it, and only to a location inside
    the folder on model.json's origin. Percent escapes are sent as written.
``"local"``, ``"memory"``, ``"key"`` (local paths, memory paths, object keys)
    Strict and simple: the name is taken literally; a ``?`` ends it, what
    follows is ignored (a static server would serve the same file for it).

In every kind, ``#`` is refused (in a URL it would start a fragment the
request never carries, so the path would name the folder itself or what a
dot segment after it reaches), and so are: ``..`` segments, absolute paths,
URLs with a scheme and ``//host`` (these three only with ``allow_outside``);
and always, even with ``allow_outside``: ``.``, ``/`` or ``\\`` in percent
encoding at any depth (``%2e``, ``%2f``, ``%5c``, ``%252e``...), backslashes,
NUL and other control or format characters (bidirectional overrides
included), dots or slashes in compatibility forms (fullwidth U+FF0E, U+FF0F),
empty segments (``a//b``, ``x/``) and paths naming the folder itself.
"""

from __future__ import annotations

import posixpath
import re
import unicodedata
import urllib.parse
from typing import Any, Literal

import fsspec
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from ..errors import UnsafePathError

__all__ = [
    "Kind",
    "folder_of",
    "inside_folder",
    "is_url",
    "listing_key",
    "locate_shard",
    "name_in_folder",
    "store_kind",
]

Kind = Literal["local", "memory", "key", "http"]
KINDS = ("local", "memory", "key", "http")

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_SCHEME_HOST = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*")
#: Unicode categories never allowed in a shard path: control, format (bidi
#: overrides, zero-width), surrogate, private use, line/paragraph separators
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
#: Percent-decoding rounds checked (``%25`` nesting deeper than this is refused)
_DECODE_ROUNDS = 4


def is_url(path: str) -> bool:
    """Whether *path* is a URL with a ``scheme://`` (its folder keeps the ``//``)."""
    return _SCHEME_HOST.match(path) is not None


def folder_of(json_path: str) -> str:
    """The folder holding *json_path*; a URL's query and fragment are ignored."""
    if is_url(json_path):
        parts = urllib.parse.urlsplit(json_path)
        head = f"{parts.scheme}://{parts.netloc}"
        return head + posixpath.dirname(parts.path)
    return posixpath.dirname(json_path)


def store_kind(fs: Any, path: str) -> Kind:
    """The kind of store holding *path* on *fs* (None: decide from *path* alone).

    A path with a ``scheme://`` is ``"http"`` whatever wraps it (fsspec's
    caching chains keep the target's URLs); otherwise the filesystem decides.
    """
    if is_url(path):
        return "http"
    inner = getattr(fs, "sync_fs", fs)
    if isinstance(inner, LocalFileSystem):
        return "local"
    if isinstance(inner, MemoryFileSystem):
        return "memory"
    return "key"


def listing_key(name: str) -> str:
    """The normal form a listing entry's name is compared under with shard locations.

    Trailing ``/`` dropped, dot segments and doubled slashes collapsed; a
    URL's ``scheme://host`` is kept intact (never ``http:/host``).
    """
    name = name.rstrip("/") or name
    match = _SCHEME_HOST.match(name)
    head = match.group(0) if match else ""
    rest = name[len(head) :]
    if not rest:
        return head
    return head + posixpath.normpath(rest)


def _refuse(source: str, path: str, why: str, outside: bool = False) -> UnsafePathError:
    hint = "; pass allow_outside=True to follow it" if outside else ""
    return UnsafePathError(f"{source}: shard path {path!r} {why}{hint}")


def _decodings(name: str, source: str, path: str) -> list[str]:
    """*name* and each percent-decoding of it, until nothing changes."""
    out = [name]
    while "%" in out[-1]:
        nxt = urllib.parse.unquote(out[-1], errors="replace")
        if nxt == out[-1]:
            break
        if len(out) > _DECODE_ROUNDS:
            raise _refuse(source, path, "is percent-encoded too many times")
        out.append(nxt)
    return out


def _check_chars(text: str, source: str, path: str) -> None:
    for ch in text:
        if ch == "\\":
            raise _refuse(source, path, "uses a backslash (a separator on some servers)")
        if unicodedata.category(ch) in _BAD_CATEGORIES:
            raise _refuse(source, path, f"holds the control or format character U+{ord(ch):04X}")


def _segments(name: str, source: str, path: str, allow_outside: bool) -> tuple[list[str], bool]:
    """The name's segments with ``.`` dropped, and whether it leaves the folder."""
    levels = []
    for text in _decodings(name, source, path):
        _check_chars(text, source, path)
        levels.append(text.split("/"))
    raw = levels[0]
    for decoded in levels[1:]:
        if len(decoded) != len(raw):
            raise _refuse(source, path, "encodes a '/' (%2f)")
        for seg, was in zip(decoded, raw, strict=True):
            if seg != was and seg in ("", ".", ".."):
                raise _refuse(source, path, f"encodes a dot segment ({was!r})")
    outside = False
    kept: list[str] = []
    for i, seg in enumerate(raw):
        for text in {seg, *(level[i] for level in levels[1:])}:
            compat = unicodedata.normalize("NFKC", text)
            if compat != text and (compat in (".", "..") or "/" in compat or "\\" in compat):
                raise _refuse(source, path, f"has a look-alike dot or slash in {seg!r}")
        if seg == "":
            if i == 0 and len(raw) > 1:
                outside = True  # absolute
                continue
            raise _refuse(source, path, "has an empty segment")
        if seg == "..":
            outside = True
        elif seg == ".":
            continue
        kept.append(seg)
    if not kept:
        raise _refuse(source, path, "names the model folder itself, not a file")
    if outside and not allow_outside:
        raise _refuse(source, path, "escapes the model folder", outside=True)
    return kept, outside


def _join_query(url: str, query: str) -> str:
    if not query:
        return url
    return f"{url}&{query}" if "?" in url else f"{url}?{query}"


def inside_folder(folder: str, location: str, kind: Kind) -> str | None:
    """The part of *location* below *folder*, or None when it is not inside.

    The proof :func:`locate_shard` ends with, usable on its own: no dot,
    empty or percent-encoded dot segments, no backslash, same origin for
    URLs (and no fragment). An empty *folder* means "relative to the folder":
    *location* must then be a clean relative path.
    """
    if kind == "http" and folder:
        base = urllib.parse.urlsplit(folder.rstrip("/") + "/")
        loc = urllib.parse.urlsplit(location)
        if (loc.scheme, loc.netloc) != (base.scheme, base.netloc) or loc.fragment:
            return None
        if "#" in location or not loc.path.startswith(base.path):
            return None
        rest = loc.path[len(base.path) :]
    else:
        if kind == "http":  # relative to the folder: the shard's own query may follow
            location = location.partition("?")[0]
        if "?" in location or "#" in location:
            return None
        if folder:
            prefix = folder if folder.endswith("/") else folder + "/"
            if not location.startswith(prefix):
                return None
            rest = location[len(prefix) :]
        else:
            rest = location
    decoded = urllib.parse.unquote(rest)
    for text in (rest, decoded):
        if "\\" in text or _SCHEME.match(text):
            return None
        if any(seg in ("", ".", "..") for seg in text.split("/")):
            return None
    return rest


def locate_shard(
    folder: str,
    path: str,
    *,
    kind: Kind,
    source: str = "model.json",
    allow_outside: bool = False,
    query: str = "",
) -> str:
    """The location of manifest path *path* of the model in *folder*.

    Resolves first, then proves the result is inside *folder* (see
    :func:`inside_folder`); the module docstring says what each character
    means for each *kind* of store.

    Parameters
    ----------
    folder : str
        model.json's folder: an inner path (local, memory, object key) or,
        for ``"http"``, a URL without query. ``""`` means "relative to the
        folder": the result is then the shard's path inside it.
    path : str
        The ``weightsManifest[].paths`` entry, untrusted.
    kind : {"local", "memory", "key", "http"}
        How locations of this store are spelled (:func:`store_kind`).
    source : str
        model.json's location, named in errors.
    allow_outside : bool
        Follow ``..``, absolute paths, ``//host`` and URLs with a scheme
        (returned as given, never with model.json's query).
    query : str
        Over HTTP, model.json's query string (without ``?``), appended to
        locations inside the folder on model.json's origin.

    Returns
    -------
    str
        The inner path (local, memory, key) or URL (http) of the shard.

    Raises
    ------
    UnsafePathError
        The path is malformed, or leaves the folder without *allow_outside*.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind of store {kind!r}; expected one of {KINDS}")
    if not isinstance(path, str) or not path:
        raise _refuse(source, path, "is empty or not a string")
    _check_chars(path, source, path)
    if "#" in path:
        raise _refuse(source, path, "has a '#' (a URL fragment: it names no file)")
    if path.startswith("//") or _SCHEME.match(path):
        if not path.startswith("//") and not is_url(path):
            raise _refuse(source, path, "starts with a scheme or drive but is no URL")
        if not allow_outside:
            raise _refuse(source, path, "names another location", outside=True)
        if path.startswith("//"):
            scheme = folder.split("://", 1)[0] if is_url(folder) else "https"
            return f"{scheme}:{path}"
        if path.split("://", 1)[0].lower() not in fsspec.available_protocols():
            raise _refuse(source, path, "names a protocol fsspec does not know")
        return path
    name, _, own_query = path.partition("?")
    segments, outside = _segments(name, source, path, allow_outside)
    http = kind == "http"
    if outside:  # allowed: resolve as the store would, with no proof to give
        if http and folder:
            url = urllib.parse.urljoin(folder.rstrip("/") + "/", name)
            return f"{url}?{own_query}" if own_query else url
        return posixpath.normpath(posixpath.join(folder, name))
    rel = "/".join(segments)
    if http and folder:
        base = urllib.parse.urlsplit(folder.rstrip("/") + "/")
        location = urllib.parse.urlunsplit(
            base._replace(path=base.path + rel, query="", fragment="")
        )
        location = _join_query(location, own_query)
        location = _join_query(location, query)
    elif http:
        location = _join_query(rel, own_query)
    else:
        location = posixpath.join(folder, rel) if folder else rel
    if inside_folder(folder, location, kind) is None:
        raise _refuse(source, path, "does not resolve inside the model folder", outside=True)
    return location


def name_in_folder(path: str, source: str = "model.json") -> str | None:
    """The clean path of manifest path *path* inside its model folder, or None.

    :func:`locate_shard` relative to the folder itself (as a file store reads
    it: a ``?`` ends the name, ``./`` is dropped); None when it refuses the
    path. For callers that name files inside the folder and leave others
    alone (the server's file list, stale-shard clean-up, copies).
    """
    try:
        return locate_shard("", path, kind="key", source=source)
    except UnsafePathError:
        return None
