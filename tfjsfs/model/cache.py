"""A local cache of remote bundles, keyed by the model JSON's URL.

Every load function takes ``cache=``: ``True`` for the default folder, or a
folder of its own. A bundle on HTTP(S), S3, GCS or any other remote store is
then kept on local disk:

* the first load fetches model.json and every shard into the cache;
* a later load revalidates model.json only, with **one conditional request**
  (``If-None-Match``/``If-Modified-Since`` over HTTP; elsewhere one fresh
  ``info`` comparing ETag, size and modification time), and reads the shards
  from local disk;
* when model.json changed, each shard is revalidated the same way and only
  those whose bytes changed are fetched again (the others are hard-linked
  into the new version of the entry).

On disk, an entry is ``<cache>/<key>/`` (``key`` a hash of the URL without its
query string) holding ``lock``, ``current`` (the name of the complete version
in use) and version folders ``v-<id>/`` (model JSON, shards at their manifest
paths, ``entry.json`` with the URL and every file's validators). A new
version is written beside the old one, flushed to disk, and published by
atomically replacing ``current``, all under an exclusive ``fcntl`` lock of
the entry: concurrent loaders in several processes share the cache, and an
interrupted download (a torn version) is never used: it is never published,
and a published version whose files do not have their recorded sizes is
refetched. The previous version is kept for readers still using it; older
ones are removed.

The cache folder is ``cache=`` when a path, else ``$TFJSFS_CACHE_DIR``, else
``$XDG_CACHE_HOME/tfjsfs`` (``~/.cache/tfjsfs``). Manage it with
:func:`cache_entries`, :func:`remove_cached` and :func:`prune_cache`, or
``tfjsfs cache ls|rm|prune``. Local bundles are never cached, nor bundles
whose shards are placed by ``weight_path_prefix``/``weight_url_converter`` or
live outside the model folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as _dt
import fcntl
import hashlib
import json
import os
import posixpath
import shutil
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from .._util.concurrency import gather_bounded
from .._util.entries import version_key
from .._util.retry import RetryPolicy, Truncated, with_retries
from ..errors import FormatError, ModelNotFoundError, SizeMismatch, TFJSError, UnsafePathError
from ..format.manifest import ModelJSON
from ..io.bundle import Bundle, locate_model_json, parse_model_json, shard_size_limits
from ..io.httpget import body_chunks, http_get, request_kwargs
from ..io.opening import Settings, open_store, release
from ..io.opening import open_url as open_uncached
from ..io.resolve import as_async
from ..io.shardurls import LoadOptions, is_http, resolve_shards
from ..io.writer import is_local

__all__ = [
    "CACHE_ENV",
    "CacheEntry",
    "cache_dir",
    "cache_entries",
    "entry_key",
    "localize",
    "open_url",
    "prune_cache",
    "remove_cached",
]

CACHE_ENV = "TFJSFS_CACHE_DIR"
_ENTRY = "entry.json"
_CURRENT = "current"
_LOCK = "lock"
_CHUNK = 1 << 20
_CONCURRENCY = 16
_LOCK_POLL = 0.02
_LOCAL = as_async(LocalFileSystem())


def cache_dir(cache: Any = True) -> Path:
    """The cache folder: *cache* when a path, else ``$TFJSFS_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/tfjsfs`` (``~/.cache/tfjsfs`` when unset)."""
    if cache is not True and cache:
        if not isinstance(cache, (str, os.PathLike)):
            raise FormatError(f"cache= takes True, False or a folder path, not {cache!r}")
        return Path(os.fspath(cache)).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "tfjsfs"


def _url_of(fs: Any, path: str) -> str:
    """The URL a cache entry is keyed by: the model JSON's URL without query or fragment."""
    url = path if "://" in path else fs.unstrip_protocol(path)
    return url.split("#", 1)[0].split("?", 1)[0]


def entry_key(url: str) -> str:
    """The folder name of *url*'s entry."""
    return hashlib.sha256(url.encode()).hexdigest()[:32]


# ------------------------------------------------------------------ locking


@contextlib.asynccontextmanager
async def _locked(folder: Path):
    """Hold the entry's exclusive lock (other processes and tasks wait)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:  # polled, not blocking a thread: a cancelled waiter leaves nothing behind
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(_LOCK_POLL)
        yield
    finally:
        os.close(fd)  # releases the lock


# ---------------------------------------------------------- one version


@dataclass
class _Version:
    """A published version of an entry: its folder and its ``entry.json``."""

    folder: Path
    meta: dict[str, Any]

    @property
    def json_file(self) -> Path:
        return self.folder / self.meta["json"]

    def intact(self) -> bool:
        """Every recorded file is there with its recorded size (never a torn copy)."""
        files = {self.meta["json"]: self.meta["json_size"]}
        files.update({rel: rec["size"] for rel, rec in self.meta["shards"].items()})
        for rel, size in files.items():
            try:
                if (self.folder / rel).stat().st_size != size:
                    return False
            except OSError:
                return False
        return True


def _current(folder: Path) -> _Version | None:
    try:
        name = (folder / _CURRENT).read_text().strip()
        meta = json.loads((folder / name / _ENTRY).read_text())
    except (OSError, ValueError):
        return None
    return _Version(folder / name, meta)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(folder: Path, version: Path) -> None:
    """Make *version* current by an atomic rename, after flushing it to disk."""
    for path in version.rglob("*"):
        if path.is_file():
            _fsync_file(path)
    pointer = folder / f".{_CURRENT}-{uuid.uuid4().hex}"
    pointer.write_text(version.name)
    _fsync_file(pointer)
    os.replace(pointer, folder / _CURRENT)


def _collect(folder: Path, keep: set[str]) -> None:
    """Remove version folders and stray files of an entry not named in *keep*."""
    for child in folder.iterdir():
        if child.name in keep or child.name in (_LOCK, _CURRENT):
            continue
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                child.unlink()


# ------------------------------------------------------------ fetching


@dataclass
class _Fetched:
    """A conditional fetch: its validators, and whether new bytes were written
    (False: the copy at hand is still valid, nothing was written)."""

    validators: dict[str, Any]
    changed: bool


async def _http_get(
    fs: Any,
    url: str,
    validators: Mapping[str, Any] | None,
    target: Path,
    headers: Mapping[str, str],
    policy: RetryPolicy,
    limit: int | None,
) -> _Fetched:
    """GET *url* into *target*, or nothing (304) when *validators* still hold.

    The request goes through the loaders' own HTTP path (:mod:`tfjsfs.io.httpget`):
    redirects as ``follow_redirects`` allows, and a body read to *limit* bytes at
    most (one more is a :class:`~tfjsfs.errors.SizeMismatch`).
    """
    session = await fs.set_session()
    kwargs = request_kwargs(fs, headers)
    sent = dict(kwargs.pop("headers", None) or {})
    if validators and validators.get("etag"):
        sent["If-None-Match"] = validators["etag"]
    if validators and validators.get("last_modified"):
        sent["If-Modified-Since"] = validators["last_modified"]

    async def attempt(_: int) -> _Fetched:
        async with http_get(
            session,
            fs.encode_url(url),
            follow=policy.follow_redirects,
            what=url,
            headers=sent,
            **kwargs,
        ) as resp:
            if resp.status == 304 and validators:
                return _Fetched(dict(validators), False)
            if resp.status == 404:
                raise FileNotFoundError(url)
            resp.raise_for_status()
            received = 0
            with open(target, "wb") as out:
                async for chunk in body_chunks(resp, limit, url):
                    out.write(chunk)
                    received += len(chunk)
            if limit is not None and received > limit:
                raise SizeMismatch(
                    f"{url}: the reply holds more than the {limit} bytes its manifest allows",
                    url,
                    limit,
                    received,
                )
            length = resp.headers.get("Content-Length")
            plain = length is not None and "Content-Encoding" not in resp.headers
            if plain and received != int(length):
                raise Truncated(
                    f"{url}: the body ended after {received} of {length} bytes",
                    expected=int(length),
                    received=received,
                )
            found = {
                "etag": resp.headers.get("ETag"),
                "last_modified": resp.headers.get("Last-Modified"),
            }
            return _Fetched(found, True)

    return await with_retries(attempt, policy, url, timeout=None)


def _identity(info: Mapping[str, Any]) -> dict[str, Any]:
    size, stamp, tag = version_key(info)
    return {"version": [size, stamp.isoformat() if stamp else None, tag]}


async def _store_get(
    fs: Any, path: str, validators: Mapping[str, Any] | None, target: Path
) -> _Fetched:
    """Copy *path* of an object store into *target*, unless its version is unchanged."""
    getattr(fs, "sync_fs", fs).invalidate_cache(path)  # the backend's version, not a listing's
    info = await fs._info(path)
    found = _identity(info)
    if validators and found["version"][2] is not None and dict(validators) == found:
        return _Fetched(found, False)
    data = await fs._cat_file(path)
    target.write_bytes(data)
    return _Fetched(found, True)


async def _fetch(
    fs: Any,
    path: str,
    validators: Mapping[str, Any] | None,
    target: Path,
    headers: Mapping[str, str],
    policy: RetryPolicy,
    limit: int | None,
) -> _Fetched:
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_http(fs):
        return await _http_get(fs, path, validators, target, headers, policy, limit)
    return await _store_get(fs, path, validators, target)


# ------------------------------------------------------------ the cache


def _cacheable(fs: Any, options: LoadOptions) -> bool:
    return not (
        is_local(fs)
        or options.weight_path_prefix is not None
        or options.weight_url_converter is not None
    )


async def _refresh(fs: Any, json_path: str, folder: Path, config: Settings) -> Path | None:
    """Bring the entry of *json_path* up to date; its local model JSON, or None
    when the bundle cannot be cached (shards elsewhere)."""
    headers = dict(config.options.headers or {})
    policy = config.policy
    old = _current(folder)
    if old is not None and not old.intact():
        old = None  # damaged on disk: refetch everything
    name = posixpath.basename(json_path.split("?", 1)[0]) or "model.json"
    staging = folder / f"v-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        fetched = await _fetch(
            fs,
            json_path,
            old.meta["json_validators"] if old else None,
            staging / name,
            headers,
            policy,
            policy.max_json_bytes,
        )
        if fetched.changed and old is not None:  # no validators: compare the bytes
            fetched.changed = (staging / name).read_bytes() != old.json_file.read_bytes()
        if not fetched.changed:
            with contextlib.suppress(OSError):
                os.utime(folder / _CURRENT)  # last used, for prune
            return old.json_file
        raw = parse_model_json((staging / name).read_bytes(), json_path)
        remote, foreign = await resolve_shards(fs, json_path, raw, config.options)
        try:
            local, _ = await resolve_shards(_LOCAL, str(staging / name), raw, LoadOptions())
        except UnsafePathError:
            return None
        if foreign:
            return None
        pairs = dict(
            zip((p for g in local for p in g), (p for g in remote for p in g), strict=True)
        )
        doc = ModelJSON.parse(raw, json_path, require_topology=False)
        limits = shard_size_limits(remote, [g.expected_bytes for g in doc.weights_manifest])
        shards: dict[str, Any] = {}

        async def one(local_path: str, remote_path: str) -> None:
            rel = os.path.relpath(local_path, staging)
            before = old.meta["shards"].get(rel) if old else None
            target = staging / rel
            got = await _fetch(
                fs,
                remote_path,
                before["validators"] if before else None,
                target,
                headers,
                policy,
                limits.get(remote_path),
            )
            if not got.changed:  # same bytes as the version at hand: share its file
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(old.folder / rel, target)
                except OSError:
                    shutil.copyfile(old.folder / rel, target)
            shards[rel] = {"validators": got.validators, "size": target.stat().st_size}

        await gather_bounded(
            (one(lp, rp) for lp, rp in pairs.items()), config.batch_size or _CONCURRENCY
        )
        meta = {
            "url": _url_of(fs, json_path),
            "json": name,
            "json_size": (staging / name).stat().st_size,
            "json_validators": fetched.validators,
            "shards": shards,
            "fetched": _dt.datetime.now(_dt.UTC).isoformat(),
        }
        (staging / _ENTRY).write_text(json.dumps(meta))
        _publish(folder, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _collect(folder, {staging.name, old.folder.name} if old else {staging.name})
    return staging / name


async def localize(fs: Any, path: str, config: Settings) -> Path | None:
    """The local model JSON of the cached copy of the bundle at *path* of *fs*.

    None when the bundle is not cached (local, or shards placed elsewhere).
    """
    if not _cacheable(fs, config.options):
        return None
    json_path = await locate_model_json(fs, path)
    folder = cache_dir(config.cache) / entry_key(_url_of(fs, json_path))
    async with _locked(folder):
        try:
            return await _refresh(fs, json_path, folder, config)
        except FileNotFoundError:
            raise ModelNotFoundError(f"{json_path} does not exist") from None


async def open_url(
    url: Any, config: Settings, *, validate: bool = True
) -> tuple[Any, Bundle, bool]:
    """:func:`tfjsfs.io.opening.open_url`, through the cache when ``cache=`` asks.

    The bundle is then opened from its local copy (its ``json_path`` names
    the cached file).
    """
    if not config.cache:
        return await open_uncached(url, config, validate=validate)
    fs, path, owned = open_store(url, config.storage_options)
    try:
        local = await localize(fs, path, config)
    finally:
        if owned:
            await release(fs)
    if local is None:
        return await open_uncached(url, config, validate=validate)
    plain = dataclasses.replace(config, options=LoadOptions(), storage_options={}, cache=None)
    return await open_uncached(str(local), plain, validate=validate)


# ----------------------------------------------------------- management


@dataclass(frozen=True)
class CacheEntry:
    """One cached bundle.

    Attributes
    ----------
    url : str
        Its model JSON's URL (without query).
    path : pathlib.Path
        The entry's folder.
    size : int
        Bytes on disk (every version kept).
    used : datetime.datetime
        Last load that used it.
    """

    url: str
    path: Path
    size: int
    used: _dt.datetime


def _size(folder: Path) -> int:
    seen, total = set(), 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            st = path.stat()
            if path.is_file() and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def _entries(root: Path) -> Iterator[CacheEntry]:
    if not root.is_dir():
        return
    for folder in sorted(root.iterdir()):
        version = _current(folder) if folder.is_dir() else None
        if version is None:
            continue
        stamp = (folder / _CURRENT).stat().st_mtime
        used = _dt.datetime.fromtimestamp(stamp, _dt.UTC)
        yield CacheEntry(version.meta["url"], folder, _size(folder), used)


def cache_entries(cache: Any = True) -> list[CacheEntry]:
    """Every cached bundle, most recently used first.

    Parameters
    ----------
    cache : True or path
        The cache folder (see :func:`cache_dir`).
    """
    return sorted(_entries(cache_dir(cache)), key=lambda e: e.used, reverse=True)


def _remove(folder: Path) -> None:
    """Delete an entry: unpublish it first, under its lock, so no loader uses half of it."""
    fd = os.open(folder / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with contextlib.suppress(FileNotFoundError):
            (folder / _CURRENT).unlink()
        _collect(folder, set())
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        (folder / _LOCK).unlink()
        folder.rmdir()


def remove_cached(url: str | None = None, cache: Any = True) -> list[CacheEntry]:
    """Remove the entry whose URL is *url* (or starts with it), or every entry.

    Parameters
    ----------
    url : str, optional
        A model JSON URL, or a prefix of such URLs; None removes everything.
    cache : True or path

    Returns
    -------
    list of CacheEntry
        What was removed.

    Raises
    ------
    ModelNotFoundError
        *url* matches no entry.
    """
    entries = cache_entries(cache)
    if url is not None:
        entries = [e for e in entries if e.url == url or e.url.startswith(url.rstrip("/") + "/")]
        if not entries:
            raise ModelNotFoundError(f"no cached model at {url} in {cache_dir(cache)}")
    for entry in entries:
        _remove(entry.path)
    return entries


def prune_cache(max_size: int, cache: Any = True) -> list[CacheEntry]:
    """Remove least recently used entries until the cache holds at most *max_size* bytes.

    Unpublished (torn or abandoned) versions are removed first.

    Returns
    -------
    list of CacheEntry
        What was removed.
    """
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0:
        raise TFJSError(f"max_size must be a non-negative number of bytes, got {max_size!r}")
    root = cache_dir(cache)
    if root.is_dir():
        for folder in root.iterdir():
            version = _current(folder) if folder.is_dir() else None
            if version is None and folder.is_dir():
                _remove(folder)
    entries = cache_entries(cache)
    total = sum(e.size for e in entries)
    removed = []
    for entry in reversed(entries):  # least recently used first
        if total <= max_size:
            break
        _remove(entry.path)
        total -= entry.size
        removed.append(entry)
    return removed
