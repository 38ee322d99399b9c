"""Where each shard is: TF.js's ``getWeightUrls``, in Python.

Shard locations are relative to model.json's folder, or to
``weight_path_prefix`` (concatenated verbatim, as TF.js does), with
model.json's query string carried onto every shard URL over HTTP
(``carry_query``), or whatever ``weight_url_converter`` returns (used
verbatim). Manifest paths that leave the folder or name another host are
refused unless ``allow_outside``. Shards on another backend (a converter
returning presigned ``https`` URLs for an ``s3://`` model, say) get their own
filesystem.
"""

from __future__ import annotations

import inspect
import posixpath
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import fsspec

from .._util.concurrency import gather_bounded
from .._util.urls import is_http as is_http_protocol
from ..errors import ManifestError
from ..format.manifest import ModelJSON, check_shard_path
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


def folder_of(json_path: str) -> str:
    """The folder holding *json_path* (a URL's query string is ignored)."""
    base = json_path.split("?", 1)[0] if "://" in json_path else json_path
    return posixpath.dirname(base)


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
    http = is_http(fs)
    folder = folder_of(json_path)
    query = ""
    if http and options.carry_query:
        query = urllib.parse.urlsplit(json_path).query
        query = f"?{query}" if query else ""
    converter = options.weight_url_converter
    if converter is not None:
        urls = await gather_bounded(
            (_convert(converter, p) for paths in groups for p in paths), DEFAULT_BATCH_SIZE
        )
    out: list[list[str]] = []
    foreign: dict[str, Any] = {}
    n = 0
    for paths in groups:
        resolved = []
        for path in paths:
            if converter is not None:
                where, inner = _fs_for_url(urls[n], fs)
                n += 1
            else:
                rel = check_shard_path(path, json_path, allow_outside=options.allow_outside)
                where, inner = _locate(fs, folder, rel, options, http, query)
            if where is not fs:
                foreign[inner] = where
            resolved.append(inner)
        out.append(resolved)
    return out, foreign


def resolve_shard_paths(
    doc: ModelJSON, json_path: str, *, allow_outside: bool = False
) -> list[list[str]]:
    """Inner paths of every group's shards, relative to model.json's folder.

    The synchronous form for callers that have only the path: no
    ``weight_url_converter``; URLs of other hosts are kept as given (when
    allowed). Over HTTP (an ``http(s)://`` *json_path*) model.json's query
    string is carried onto the shard URLs, as TF.js does.
    """
    options = LoadOptions(allow_outside=allow_outside)
    http = json_path.startswith(("http://", "https://"))
    query = urllib.parse.urlsplit(json_path).query if http else ""
    query = f"?{query}" if query else ""
    folder = folder_of(json_path)
    out = []
    for group in doc.weights_manifest:
        paths = []
        for path in group.paths:
            rel = check_shard_path(path, json_path, allow_outside=allow_outside)
            if "://" in rel or rel.startswith("//"):
                paths.append(rel)
            else:
                paths.append(_locate(None, folder, rel, options, http, query)[1])
        out.append(paths)
    return out


def _locate(
    fs: Any, folder: str, rel: str, options: LoadOptions, http: bool, query: str
) -> tuple[Any, str]:
    prefix = options.weight_path_prefix
    if "://" in rel or rel.startswith("//"):  # allowed absolute URL
        if rel.startswith("//"):
            scheme = folder.split("://", 1)[0] if "://" in folder else "https"
            rel = f"{scheme}:{rel}"
        return _fs_for_url(rel, fs)
    if prefix is not None:
        where, inner = _fs_for_url(prefix + rel, fs)
        return where, _join_query(inner, query) if is_http(where) else inner
    if http:
        base = urllib.parse.urlsplit(folder + "/")
        path = posixpath.normpath(posixpath.join(base.path, rel.split("?", 1)[0]))
        url = urllib.parse.urlunsplit(base._replace(path=path, query=""))
        own = rel.split("?", 1)[1] if "?" in rel else ""
        url = f"{url}?{own}" if own else url
        return fs, _join_query(url, query)
    bare = rel.split("?", 1)[0]
    if posixpath.isabs(bare):
        return fs, posixpath.normpath(bare)
    return fs, posixpath.normpath(posixpath.join(folder, bare))
