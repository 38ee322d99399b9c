"""Where each shard is: TF.js's ``getWeightUrls``, in Python.

Shard locations are relative to model.json's folder, or to
``weight_path_prefix`` (concatenated verbatim, as TF.js does), with
model.json's query string carried onto every shard URL over HTTP
(``carry_query``), or whatever ``weight_url_converter`` returns (used
verbatim). Every manifest path goes through the one resolver,
:func:`tfjsfs.io.location.locate_shard`: paths that leave the folder or name
another host are refused unless ``allow_outside``, malformed ones always.
Shards on another backend (a converter returning presigned ``https`` URLs for
an ``s3://`` model, say) get their own filesystem.
"""

from __future__ import annotations

import inspect
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import fsspec

from .._util.concurrency import gather_bounded
from .._util.urls import is_http as is_http_protocol
from ..errors import ManifestError, UnsafePathError
from ..format.manifest import ModelJSON
from .location import folder_of, is_url, locate_shard, store_kind
from .resolve import as_async

__all__ = [
    "LoadOptions",
    "WeightUrlConverter",
    "folder_of",
    "http_request_kwargs",
    "is_http",
    "resolve_shard_paths",
    "resolve_shards",
]

DEFAULT_BATCH_SIZE = 32

WeightUrlConverter = Callable[[str], "str | Awaitable[str]"]


@dataclass(frozen=True)
class LoadOptions:
    """Where a bundle's shards are and how to ask for them (TF.js ``LoadOptions``).

    Parameters
    ----------
    headers : mapping, optional
        Extra HTTP request headers for model.json and every shard (TF.js
        ``requestInit.headers``). HTTP(S) only.
    weight_path_prefix : str, optional
        Shard location prefix, concatenated verbatim with each manifest path
        (no ``/`` is inserted, as in TF.js). May be a URL of another backend.
    weight_url_converter : callable, optional
        ``f(manifest_path) -> url`` (plain or coroutine function), e.g. to
        presign each shard; its result is used verbatim.
    carry_query : bool
        Over HTTP, append model.json's query string to every shard URL, as
        TF.js does (tokens in ``?token=…``). Default True.
    allow_outside : bool
        Follow manifest paths that leave the model folder or name a host.
    """

    headers: Mapping[str, str] | None = None
    weight_path_prefix: str | None = None
    weight_url_converter: WeightUrlConverter | None = None
    carry_query: bool = True
    allow_outside: bool = False


def is_http(fs: Any) -> bool:
    """Whether *fs* is an HTTP filesystem (whose paths are URLs), by its protocols.

    No import of fsspec's HTTP module (and so of aiohttp) for local loads.
    """
    return any(is_http_protocol(p) for p in _protocols(fs))


def http_request_kwargs(fs: Any, headers: Mapping[str, str]) -> dict[str, Any]:
    """``{"headers": …}`` for an HTTP request: the filesystem's own merged with *headers*."""
    if not headers:
        return {}
    merged = dict(getattr(fs, "kwargs", {}).get("headers") or {})
    merged.update(headers)
    return {"headers": merged}


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = getattr(fs, "protocol", ())
    return (proto,) if isinstance(proto, str) else tuple(proto)


def _fs_for_url(url: str, fs: Any) -> tuple[Any, str]:
    """The filesystem and inner path for a shard URL given by the caller."""
    if "://" not in url:
        return fs, url
    proto = url.split("://", 1)[0]
    if proto in _protocols(fs) or (is_http(fs) and proto in ("http", "https")):
        return fs, fs._strip_protocol(url)
    cls = fsspec.get_filesystem_class(proto)
    if getattr(cls, "async_impl", False):
        if getattr(fs, "asynchronous", False):  # a private instance, closed with the load
            other = cls(asynchronous=True, skip_instance_cache=True)
        else:
            other = cls()
    else:
        other = as_async(cls())
    return other, other._strip_protocol(url)


def _join_query(url: str, query: str) -> str:
    if not query:
        return url
    return url + ("&" + query[1:] if "?" in url else query)


async def _convert(converter: WeightUrlConverter, path: str) -> str:
    url = converter(path)
    if inspect.isawaitable(url):
        url = await url
    if not isinstance(url, str) or not url:
        raise ManifestError(f"weight_url_converter returned {url!r} for {path!r}, not a URL")
    return url


async def resolve_shards(
    fs: Any, json_path: str, raw: dict, options: LoadOptions
) -> tuple[list[list[str]], dict[str, Any]]:
    """Inner path of every shard, per group, and shards on other filesystems.

    Raises
    ------
    ManifestError
        Malformed ``paths``.
    UnsafePathError
        A path leaves the folder or names a host, without ``allow_outside``.
    """
    manifest = raw.get("weightsManifest")
    groups: list[list[str]] = []
    if isinstance(manifest, list):
        for g, group in enumerate(manifest):
            paths = group.get("paths") if isinstance(group, dict) else None
            if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
                raise ManifestError(
                    f"{json_path}: weightsManifest[{g}].paths must be a list of strings"
                )
            groups.append(paths)
    converter = options.weight_url_converter
    if converter is not None:
        urls = iter(
            await gather_bounded(
                (_convert(converter, p) for paths in groups for p in paths), DEFAULT_BATCH_SIZE
            )
        )
    kind = store_kind(fs, json_path)
    out: list[list[str]] = []
    foreign: dict[str, Any] = {}
    for paths in groups:
        resolved = []
        for path in paths:
            if converter is not None:
                where, inner = _fs_for_url(next(urls), fs)
            else:
                where, inner = _locate(fs, json_path, path, kind, options)
            if where is not fs:
                foreign[inner] = where
            resolved.append(inner)
        out.append(resolved)
    return out, foreign


def resolve_shard_paths(
    doc: ModelJSON,
    json_path: str,
    *,
    allow_outside: bool = False,
    carry_query: bool = True,
    strict: bool = True,
) -> list[list[str | None]]:
    """Location of every group's shards, for callers that have only the path.

    No ``weight_url_converter`` or prefix; URLs of other hosts are kept as
    given (when allowed). Over HTTP (a *json_path* with ``scheme://``)
    model.json's query string is carried onto the shard URLs, as TF.js does,
    unless *carry_query* is False.

    Parameters
    ----------
    strict : bool
        Raise :class:`~tfjsfs.errors.UnsafePathError` for a path
        :func:`~tfjsfs.io.location.locate_shard` refuses; when False its
        location is None instead (for summaries that must not fail).
    """
    kind = store_kind(None, json_path)
    folder = folder_of(json_path)
    query = _model_query(json_path, kind, carry_query)

    def one(path: str) -> str | None:
        try:
            return locate_shard(
                folder, path, kind=kind, source=json_path, allow_outside=allow_outside, query=query
            )
        except UnsafePathError:
            if strict:
                raise
            return None

    return [[one(p) for p in group.paths] for group in doc.weights_manifest]


def _model_query(json_path: str, kind: str, carry: bool) -> str:
    """model.json's query string, to carry onto shard URLs over HTTP."""
    if kind != "http" or not carry:
        return ""
    return urllib.parse.urlsplit(json_path).query


def _same_origin(a: str, b: str) -> bool:
    sa, sb = urllib.parse.urlsplit(a), urllib.parse.urlsplit(b)
    return (sa.scheme.lower(), sa.netloc.lower()) == (sb.scheme.lower(), sb.netloc.lower())


def _locate(
    fs: Any, json_path: str, path: str, kind: str, options: LoadOptions
) -> tuple[Any, str]:
    """The filesystem and inner path of manifest path *path* (through :func:`locate_shard`)."""
    query = _model_query(json_path, kind, options.carry_query)
    prefix = options.weight_path_prefix
    if prefix is None:
        where = locate_shard(
            folder_of(json_path),
            path,
            kind=kind,
            source=json_path,
            allow_outside=options.allow_outside,
            query=query,
        )
        foreign = not _same_origin(where, json_path) if kind == "http" else is_url(where)
        return _fs_for_url(where, fs) if foreign else (fs, where)
    # the prefix is the folder, concatenated verbatim (TF.js): the path relative to it
    rel = locate_shard(
        "",
        path,
        kind="http" if is_url(prefix) else kind,
        source=json_path,
        allow_outside=options.allow_outside,
    )
    if is_url(rel):  # an allowed foreign URL
        return _fs_for_url(rel, fs)
    where, inner = _fs_for_url(prefix + rel, fs)
    if is_http(where) and query and _same_origin(prefix, json_path):
        inner = _join_query(inner, "?" + query)
    return where, inner
