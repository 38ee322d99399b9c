"""URLs to (async inner filesystem, inner path).

Accepted forms: a local path, any fsspec URL (``file://``, ``memory://``,
``s3://``, ``https://…``), ``tfjs+<protocol>://…`` and ``tfjs::<fsspec URL>``.
The inner filesystem is always async: sync backends (local, memory) are
wrapped in :class:`fsspec.implementations.asyn_wrapper.AsyncFileSystemWrapper`.
"""

from __future__ import annotations

import os
import re
from typing import Any

import fsspec
from fsspec.asyn import AsyncFileSystem
from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

__all__ = ["inner_url", "resolve", "split_tfjs_protocol"]

_TFJS_PLUS = re.compile(r"^tfjs\+([A-Za-z0-9.\-]+)://")


def split_tfjs_protocol(url: str) -> tuple[str | None, str]:
    """``("s3", "s3://b/m")`` for ``tfjs+s3://b/m``; ``tfjs::X`` gives ``X``'s protocol.

    Anything else comes back unchanged with protocol None.
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


def as_async(fs: Any) -> AsyncFileSystem:
    """*fs* itself if async, else wrapped so that every method has a coroutine."""
    if getattr(fs, "async_impl", False):
        return fs
    return AsyncFileSystemWrapper(fs, asynchronous=False)


def resolve(url: str, **storage_options: Any) -> tuple[AsyncFileSystem, str]:
    """The async inner filesystem and inner path for *url*.

    Parameters
    ----------
    url : str or os.PathLike
    **storage_options
        Passed to the inner filesystem.
    """
    plain = inner_url(os.fspath(url))
    fs, path = fsspec.core.url_to_fs(plain, **storage_options)
    return as_async(fs), path
