"""From a URL to a store: the async inner filesystem and the path inside it.

Accepted URL forms: a local path, any fsspec URL (``file://``, ``memory://``,
``s3://``, ``https://…``), ``tfjs+<protocol>://…`` and ``tfjs::<fsspec URL>``.
The inner filesystem is always async: sync backends (local, memory) are
wrapped in :class:`fsspec.implementations.asyn_wrapper.AsyncFileSystemWrapper`.
A filesystem that wraps another one for bundles (``TFJSFileSystem``) is
unwrapped through its ``unwrap_bundle_path`` method, so this layer needs no
knowledge of the class above it.
"""

from __future__ import annotations

import os
from typing import Any

import fsspec
from fsspec.asyn import AsyncFileSystem
from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

from ..errors import MissingProtocolError

__all__ = ["as_async", "build_inner", "resolve"]


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
    option :class:`~tfjsfs.fs.core.TFJSFileSystem` takes works here too
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
    url = os.fspath(url)
    if fs is None:
        fs, path = fsspec.core.url_to_fs(url, **storage_options)
    else:
        path = fs._strip_protocol(url)
    unwrap = getattr(fs, "unwrap_bundle_path", None)
    if unwrap is None:
        return as_async(fs), path
    inner, inner_path = unwrap(path)
    if storage_options.get("skip_instance_cache") and getattr(inner, "cachable", False):
        # a private instance was asked for (its sessions get closed): the inner too
        inner = type(inner)(**inner.storage_options, skip_instance_cache=True)
    return inner, inner_path
