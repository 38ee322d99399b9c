"""One load call: its options, and a model URL opened for the running event loop.

Every public load function (``load_model``, ``load_weights``, ``open_model``,
``iter_weights`` and their async twins) takes the same keyword options,
gathered by :func:`settings`. :func:`open_url` resolves the URL to an inner
filesystem usable on the running loop (fsspec's own IO loop for the
synchronous API; a private asynchronous instance, closed by :func:`release`,
for callers on their own loop) and opens the bundle.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.asyn import get_loop
from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

from .._util.retry import DEFAULT_FOLLOW_REDIRECTS, DEFAULT_MAX_JSON_BYTES, RetryPolicy
from .._util.urls import split_tfjs_protocol
from .bundle import Bundle, open_bundle
from .ranges import DEFAULT_MAX_GAP
from .resolve import as_async, resolve
from .shardurls import LoadOptions, WeightUrlConverter

__all__ = ["Settings", "open_store", "open_url", "release", "settings"]


@dataclass(frozen=True)
class Settings:
    """Options of one load call (see :func:`settings`)."""

    options: LoadOptions
    policy: RetryPolicy
    storage_options: Mapping[str, Any]
    batch_size: int | None
    max_gap: int
    cache: Any = None


def settings(
    *,
    batch_size: int | None = None,
    allow_outside: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    weight_path_prefix: str | None = None,
    weight_url_converter: WeightUrlConverter | None = None,
    carry_query: bool = True,
    retries: int = RetryPolicy.retries,
    timeout: float | None = RetryPolicy.timeout,
    max_gap: int = DEFAULT_MAX_GAP,
    follow_redirects: str = DEFAULT_FOLLOW_REDIRECTS,
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES,
    cache: Any = None,
) -> Settings:
    """Gather the keyword options shared by every load function.

    Parameters
    ----------
    batch_size : int, optional
        Requests in flight at once (default 32).
    allow_outside : bool
        Follow manifest paths that leave the model folder or name a host.
    storage_options : dict, optional
        Options for the inner filesystem (e.g. ``client_kwargs``).
    headers, weight_path_prefix, weight_url_converter, carry_query
        See :class:`LoadOptions`.
    retries : int
        Extra attempts for transient failures (5xx, resets, short bodies).
    timeout : float or None
        Per-request timeout in seconds (see :class:`~tfjsfs._util.retry.RetryPolicy`).
    max_gap : int
        Partial loads: merge neighbouring ranges with at most this many
        unwanted bytes between them.
    follow_redirects : {"same-origin", "never", "any"}
        Which HTTP redirects shard requests follow: to the same scheme, host
        and port only (default), none, or any (needed, e.g., for hosts that
        send large files to a CDN). A refused redirect is a
        :class:`~tfjsfs.errors.RedirectError` naming the shard and the target.
    max_json_bytes : int
        Largest model.json read, 64 MiB by default; a larger one is a
        :class:`~tfjsfs.errors.ManifestError` after reading one byte more.
    cache : bool or path, optional
        Keep remote bundles in a local cache (``True``: the default folder;
        see :mod:`tfjsfs.model.cache`).

    Raises
    ------
    TypeError
        For an unknown option.
    ValueError
        For an option value out of range.
    """
    if batch_size is not None and (isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries!r}")
    options = LoadOptions(
        headers=dict(headers) if headers else None,
        weight_path_prefix=weight_path_prefix,
        weight_url_converter=weight_url_converter,
        carry_query=carry_query,
        allow_outside=allow_outside,
    )
    policy = RetryPolicy(
        retries=retries,
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_json_bytes=max_json_bytes,
    )
    return Settings(options, policy, dict(storage_options or {}), batch_size, max_gap, cache)


_WRAPPERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _resolve(url: Any, storage_options: Mapping[str, Any]) -> tuple[Any, str]:
    """:func:`tfjsfs.io.resolve.resolve`, reusing one async wrapper per synchronous filesystem.

    Wrapping a synchronous filesystem (local, memory) builds a coroutine for
    each of its methods, which costs milliseconds: too much to pay on every
    load of a small model.
    """
    text = _url_text(url)
    carried = getattr(url, "storage_options", None)  # a UPath carries its own
    if not isinstance(url, str) and isinstance(carried, Mapping):
        storage_options = {**carried, **storage_options}
    if (
        "fs" in storage_options  # a filesystem handed over (e.g. by TFJSFileSystem)
        or split_tfjs_protocol(text)[0] is not None
        or text.startswith("tfjs")
    ):
        return resolve(text, **storage_options)
    fs, path = fsspec.core.url_to_fs(text, **storage_options)
    if getattr(fs, "async_impl", False):
        return fs, path
    wrapper = _WRAPPERS.get(fs)
    if wrapper is None:
        wrapper = _WRAPPERS[fs] = as_async(fs)
    return wrapper, path


def _url_text(url: Any) -> str:
    if isinstance(url, str):
        return url
    try:
        return os.fspath(url)
    except (TypeError, NotImplementedError, ValueError):  # e.g. a UPath of a bucket
        return str(url)


def _foreign_loop(storage_options: Mapping[str, Any]) -> bool:
    """Whether we run on a loop other than fsspec's own (and the caller chose no mode)."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return False
    return running is not get_loop() and "asynchronous" not in storage_options


def _private_copy(fs: Any) -> Any:
    """An uncached asynchronous twin of *fs* for the running loop.

    fsspec's instances made for the synchronous API are bound to its IO loop
    (their HTTP sessions, boto clients), so callers on their own loop get a
    fresh instance built from the same options, closed by :func:`release`.
    """
    options = dict(getattr(fs, "storage_options", {}))
    options.pop("loop", None)
    options.update(asynchronous=True, skip_instance_cache=True)
    return type(fs)(*getattr(fs, "storage_args", ()), **options)


def open_store(url: Any, storage_options: Mapping[str, Any]) -> tuple[Any, str, bool]:
    """The inner filesystem and path of *url*, usable on the running loop.

    Outside fsspec's own IO loop a private asynchronous filesystem is made;
    the third value says so, and :func:`release` closes it.
    """
    fs, path = _resolve(url, storage_options)
    owned = (
        getattr(fs, "async_impl", False)
        and not isinstance(fs, AsyncFileSystemWrapper)  # threads: any loop will do
        and _foreign_loop(storage_options)
    )
    return (_private_copy(fs) if owned else fs), path, owned


async def open_url(
    url: Any, config: Settings, *, validate: bool = True
) -> tuple[Any, Bundle, bool]:
    """The inner filesystem and bundle of a model URL, for the running loop.

    See :func:`open_store`; the third value says whether :func:`release`
    must close the filesystem.
    """
    fs, path, owned = open_store(url, config.storage_options)
    try:
        bundle = await open_bundle(
            fs, path, options=config.options, policy=config.policy, validate=validate
        )
    except BaseException:
        if owned:
            await release(fs)
        raise
    return fs, bundle, owned


async def release(fs: Any, bundle: Bundle | None = None) -> None:
    """Close the sessions of filesystems made by :func:`open_url` for another loop.

    With *bundle*, the filesystems of its shards on other backends too.
    """
    others = list(bundle.shard_fs.values()) if bundle is not None else []
    for target in dict.fromkeys([fs, *others]):
        await _close(target)


async def _close(fs: Any) -> None:
    session = getattr(fs, "_session", None)  # HTTP, gcsfs
    if session is not None and not getattr(session, "closed", True):
        await session.close()
        fs._session = None
    client = getattr(fs, "_s3", None)  # s3fs
    close = getattr(client, "close", None)
    if close is not None and inspect.iscoroutinefunction(close):
        with contextlib.suppress(Exception):  # best effort
            await close()
        fs._s3 = None
