"""URLs and paths: ``tfjs`` URL forms, inner filesystems, resolved paths.

Accepted URL forms: a local path, any fsspec URL (``file://``, ``memory://``,
``s3://``, ``https://…``), ``tfjs+<protocol>://…`` and ``tfjs::<fsspec URL>``.
The inner filesystem is always async: sync backends (local, memory) are
wrapped in :class:`fsspec.implementations.asyn_wrapper.AsyncFileSystemWrapper`.

Inside a :class:`tfjsfs.core.TFJSFileSystem` a path is either a real file of
the inner filesystem or a *virtual tensor*,
``<model folder>/@tensors/<weight name>.npy``. :class:`ResolvedPath` says
which (HfFileSystem's resolved paths are the model).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.asyn import AsyncFileSystem
from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

from .errors import MissingProtocolError  # re-exported: defined in tfjsfs.errors

__all__ = [
    "KINDS",
    "TENSORS_DIR",
    "MissingProtocolError",
    "ResolvedPath",
    "as_async",
    "build_inner",
    "decode_weight_name",
    "encode_weight_name",
    "inner_url",
    "is_http",
    "resolve",
    "resolve_virtual",
    "split_tensor_path",
    "split_tfjs_protocol",
    "strip_tfjs",
]

_TFJS_PLUS = re.compile(r"^tfjs\+([A-Za-z0-9.+\-_]+)://")
_TFJS_PREFIX = re.compile(r"^tfjs(?:\+[A-Za-z0-9.+\-_]+)?(?:://|::)")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-_]*://")

#: the reserved folder holding a model's virtual tensors
TENSORS_DIR = "@tensors"
#: kinds of :class:`ResolvedPath`
KINDS = ("model_dir", "model_json", "shard", "tensor_dir", "tensor", "other")


def split_tfjs_protocol(url: str) -> tuple[str | None, str]:
    """``("s3", "s3://b/m")`` for ``tfjs+s3://b/m``; ``tfjs::X`` gives ``X``'s protocol.

    Anything else comes back unchanged with protocol None. A ``tfjs::`` URL
    whose inner part has no protocol is a local path, as everywhere in fsspec.
    """
    match = _TFJS_PLUS.match(url)
    if match:
        proto = match.group(1)
        return proto, f"{proto}://{url[match.end() :]}"
    if url.startswith("tfjs::"):
        rest = url[len("tfjs::") :]
        proto = rest.split("://", 1)[0] if "://" in rest else "file"
        return proto, rest
    return None, url


def inner_url(url: str) -> str:
    """The plain fsspec URL behind a ``tfjs`` URL (or *url* itself)."""
    return split_tfjs_protocol(os.fspath(url))[1]


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
    return protocol in ("http", "https")


def as_async(fs: Any, asynchronous: bool = False) -> AsyncFileSystem:
    """*fs* itself if async, else wrapped so that every method has a coroutine."""
    if getattr(fs, "async_impl", False):
        return fs
    return AsyncFileSystemWrapper(fs, asynchronous=asynchronous)


def build_inner(
    protocol: str,
    target_options: dict[str, Any] | None,
    inner_options: dict[str, Any],
    asynchronous: bool,
    loop: Any,
) -> Any:
    """The inner filesystem of a tfjs filesystem, in the same sync/async mode.

    Options are *target_options* updated by *inner_options*; an async class
    gets ``asynchronous=True`` (and *loop*) when asked.

    Raises
    ------
    MissingProtocolError
        For a protocol fsspec does not know.
    """
    try:
        cls = fsspec.get_filesystem_class(protocol)
    except ValueError as exc:
        raise MissingProtocolError(f"tfjs: unknown inner protocol {protocol!r} ({exc})") from None
    opts = {**(target_options or {}), **inner_options}
    if cls.async_impl:
        if asynchronous:
            opts.setdefault("asynchronous", True)
        if loop is not None:
            opts.setdefault("loop", loop)
    return cls(**opts)


def resolve(url: Any, *, fs: Any = None, **storage_options: Any) -> tuple[AsyncFileSystem, str]:
    """The async inner filesystem and inner path for *url*.

    ``tfjs+…`` and ``tfjs::…`` URLs are opened through fsspec, so every
    option :class:`~tfjsfs.core.TFJSFileSystem` takes works here too
    (``target_options``, inner options as keywords, fsspec config); the
    tfjs layer is then unwrapped, since the model API works on the backend.

    Parameters
    ----------
    url : str or os.PathLike
    fs : fsspec.AbstractFileSystem, optional
        An already built filesystem for *url*'s path (a TFJSFileSystem is
        unwrapped to its inner filesystem).
    **storage_options
        Options for the filesystem fsspec builds from *url*.

    Raises
    ------
    MissingProtocolError
        For a ``tfjs`` URL that names no inner protocol.
    """
    from .core import TFJSFileSystem

    url = os.fspath(url)
    if fs is None:
        fs, path = fsspec.core.url_to_fs(url, **storage_options)
    else:
        path = fs._strip_protocol(url)
    if not isinstance(fs, TFJSFileSystem):
        return as_async(fs), path
    inner = fs.fs
    if storage_options.get("skip_instance_cache") and getattr(inner, "cachable", False):
        # a private instance was asked for (its sessions get closed): the inner too
        inner = type(inner)(**inner.storage_options, skip_instance_cache=True)
    return inner, fs.inner_path(path)


# ------------------------------------------------------------ weight names
_NAME_SAFE = "/:@=+,;~!$&'()"


def encode_weight_name(name: str) -> str:
    """The file path of weight *name* inside ``@tensors``, without ``.npy``.

    ``/`` in names makes folders; characters that fsspec's glob or the path
    rules would misread (``%``, ``*``, ``?``, ``[``, ``]``, ``#``, spaces,
    empty, ``.`` and ``..`` parts) are percent-encoded, so
    :func:`decode_weight_name` gives *name* back exactly.
    """
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        # no sensible folders: one file, every "/" encoded
        return urllib.parse.quote(name, safe=_NAME_SAFE.replace("/", "")).replace(".", "%2E")
    return urllib.parse.quote(name, safe=_NAME_SAFE)


def decode_weight_name(path: str) -> str:
    """Inverse of :func:`encode_weight_name`."""
    return urllib.parse.unquote(path)


# ----------------------------------------------------------- resolved paths
@dataclass(frozen=True)
class ResolvedPath:
    """What a path inside a TFJSFileSystem names.

    Parameters
    ----------
    path : str
        The path in the filesystem's own namespace (no protocol).
    inner : str
        The inner filesystem's path (a full URL for http/https).
    kind : {"model_dir", "model_json", "shard", "tensor_dir", "tensor", "other"}
        Virtual kinds (``tensor_dir``, ``tensor``) come from the path alone;
        the others need the model's manifest and are set by the filesystem.
    model_root : str, optional
        Inner path of the model folder.
    tensor_name : str, optional
        The weight name (``tensor``) or name prefix (``tensor_dir``, ``""``
        for ``@tensors`` itself).
    """

    path: str
    inner: str
    kind: str = "other"
    model_root: str | None = None
    tensor_name: str | None = None

    @property
    def is_virtual(self) -> bool:
        """Whether the path lies inside a model's ``@tensors`` folder."""
        return self.kind in ("tensor_dir", "tensor")

    def unresolve(self) -> str:
        """The path in the filesystem's own namespace."""
        return self.path


def split_tensor_path(inner: str) -> tuple[str, str] | None:
    """``(model folder, path below @tensors)`` for a virtual path, else None."""
    marker = "/" + TENSORS_DIR
    head, sep, tail = inner.partition(marker + "/")
    if sep and head:
        return head, tail.strip("/")
    if inner.endswith(marker) and len(inner) > len(marker):
        return inner[: -len(marker)], ""
    return None


def resolve_virtual(path: str, inner: str) -> ResolvedPath:
    """Classify *inner* syntactically: ``tensor``, ``tensor_dir`` or ``other``."""
    split = split_tensor_path(inner)
    if split is None:
        return ResolvedPath(path, inner)
    root, rest = split
    if rest.endswith(".npy"):
        return ResolvedPath(path, inner, "tensor", root, decode_weight_name(rest[:-4]))
    return ResolvedPath(path, inner, "tensor_dir", root, decode_weight_name(rest))
