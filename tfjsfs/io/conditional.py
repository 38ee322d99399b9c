"""Conditional writes of one small file (a model.json), with each store's own primitive.

Many writers may publish into one bucket or folder (several ``tfjsfs serve``
processes, Dask workers, CI jobs). A writer first takes a :class:`Snapshot`
of the file (its bytes and the store's version of them), and publishes with
:func:`put_conditional` against it:

* create-only when the snapshot found no file: S3 ``PutObject`` with
  ``If-None-Match: *``, GCS ``ifGenerationMatch=0``, ``os.link`` on local disks;
* compare-and-swap when it found one: S3 ``If-Match: <ETag>``, GCS
  ``ifGenerationMatch=<generation>``, and on local disks a compare of
  ``(device, inode, mtime_ns, size)`` and an atomic rename while holding an
  ``fcntl.flock`` on the folder.

On GCS, model.json goes up as one JSON-API *multipart* upload carrying
``ifGenerationMatch`` (gcsfs itself sends only ``0``, for ``mode="create"``).
gcsfs does send ``ifGenerationMatch=0`` for ``open(path, "xb")`` too, but on a
*resumable* upload, and fake-gcs-server enforces the condition on multipart
uploads only (it ignores it on resumable and media uploads and on deletes):
that is why ``"xb"`` overwrites there while real GCS refuses.

``memory://`` compares the bytes under an in-process lock. Other stores
(plain HTTP, unknown fsspec backends) have no conditional write tfjsfs knows
of: their writes are unconditional and a warning says so, once per protocol.

A write that loses raises :class:`~tfjsfs.errors.BundleExistsError` (create-only:
the file exists) or :class:`~tfjsfs.errors.ConcurrentUpdateError` (the file is
not the version the writer started from).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fsspec.implementations.local import LocalFileSystem

from .._util.retry import DEFAULT_MAX_JSON_BYTES
from ..errors import BundleExistsError, ConcurrentUpdateError, ManifestError

__all__ = [
    "Snapshot",
    "conditional_kind",
    "create_file",
    "is_local",
    "put_conditional",
    "remove_conditional",
    "snapshot",
]

_PRECONDITION_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
_MEMORY_LOCK = threading.Lock()
_warned: set[str] = set()
_SNAPSHOT_TRIES = 5


def _sync_fs(fs: Any) -> Any:
    return getattr(fs, "sync_fs", fs)


def is_local(fs: Any) -> bool:
    """Whether *fs* (or the sync filesystem it wraps) is the local disk."""
    return isinstance(_sync_fs(fs), LocalFileSystem)


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = getattr(_sync_fs(fs), "protocol", ())
    return (proto,) if isinstance(proto, str) else tuple(proto)


def conditional_kind(fs: Any) -> str | None:
    """Which conditional-write primitive *fs* offers.

    Returns
    -------
    str or None
        ``"s3"``, ``"gcs"``, ``"local"``, ``"memory"``, or None when the store
        has none tfjsfs knows of (writes there are unconditional).
    """
    if is_local(fs):
        return "local"
    protos = set(_protocols(fs))
    if protos & {"s3", "s3a"} and hasattr(fs, "_call_s3"):
        return "s3"
    if protos & {"gs", "gcs"} and hasattr(fs, "_call"):
        return "gcs"
    if "memory" in protos:
        return "memory"
    return None


def _warn_unconditional(fs: Any) -> None:
    label = "/".join(_protocols(fs)) or type(_sync_fs(fs)).__name__
    if label in _warned:
        return
    _warned.add(label)
    warnings.warn(
        f"the {label} store offers no conditional write tfjsfs knows of: concurrent "
        "writers of one model there are not detected (the last model.json wins)",
        RuntimeWarning,
        stacklevel=3,
    )


@dataclass(frozen=True)
class Snapshot:
    """A file's bytes and the store's version of those bytes.

    Attributes
    ----------
    path : str
    data : bytes or None
        None when the file does not exist.
    version : object
        S3 ETag, GCS generation, ``(dev, inode, mtime_ns, size)`` on local
        disks, a digest on memory://; None when the file does not exist or the
        store has no versions.
    """

    path: str
    data: bytes | None
    version: Any = None

    @property
    def exists(self) -> bool:
        """Whether the file existed when the snapshot was taken."""
        return self.data is not None


def _invalidate(fs: Any, path: str) -> None:
    with contextlib.suppress(Exception):
        fs.invalidate_cache(path)


async def snapshot(fs: Any, path: str, limit: int = DEFAULT_MAX_JSON_BYTES) -> Snapshot:
    """Read *path* and the store's version of what was read (one consistent pair).

    A version read before the bytes can only be older than them, so a
    compare-and-swap against it fails rather than overwriting unseen changes.
    At most ``limit + 1`` bytes are read: a model.json larger than *limit* is
    a :class:`~tfjsfs.errors.ManifestError`, as for a load.
    """
    kind = conditional_kind(fs)
    _invalidate(fs, path)
    if kind == "local":
        found = await asyncio.to_thread(_local_snapshot, path, limit)
    elif kind == "s3":
        found = await _s3_snapshot(fs, path, limit)
    elif kind == "gcs":
        found = await _gcs_snapshot(fs, path, limit)
    else:
        try:
            data = bytes(await fs._cat_file(path, start=0, end=limit + 1))
        except FileNotFoundError:
            return Snapshot(path, None)
        version = hashlib.blake2b(data, digest_size=16).hexdigest() if kind == "memory" else None
        found = Snapshot(path, data, version)
    if found.data is not None and len(found.data) > limit:
        raise _too_large(path, limit)
    return found


def _too_large(path: str, limit: int) -> ManifestError:
    return ManifestError(
        f"{path}: model.json holds more than {limit} bytes, the largest a load reads"
    )


def _stat_version(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def _local_snapshot(path: str, limit: int) -> Snapshot:
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return Snapshot(path, None)
    with os.fdopen(fd, "rb") as f:
        version = _stat_version(os.fstat(f.fileno()))
        return Snapshot(path, f.read(limit + 1), version)


async def _s3_snapshot(fs: Any, path: str, limit: int) -> Snapshot:
    bucket, key, _ = fs.split_path(path)
    try:  # a ranged GET still answers the whole object's ETag
        resp = await fs._call_s3("get_object", Bucket=bucket, Key=key, Range=f"bytes=0-{limit}")
    except FileNotFoundError:
        return Snapshot(path, None)
    body = resp["Body"]
    try:
        data = await body.read()
    finally:
        body.close()
    return Snapshot(path, bytes(data), resp.get("ETag"))


async def _gcs_snapshot(fs: Any, path: str, limit: int) -> Snapshot:
    bucket, key, _ = fs.split_path(path)
    for _ in range(_SNAPSHOT_TRIES):
        try:
            info = await fs._info(path)
        except FileNotFoundError:
            return Snapshot(path, None)
        generation = info.get("generation")
        if int(info.get("size") or 0) > limit:  # that generation's size: not read at all
            raise _too_large(path, limit)
        try:  # the bytes of exactly that generation
            _, data = await fs._call(
                "GET", "b/{}/o/{}", bucket, key, alt="media", generation=generation
            )
        except FileNotFoundError:  # replaced meanwhile: look again
            _invalidate(fs, path)
            continue
        return Snapshot(path, bytes(data), str(generation))
    raise ConcurrentUpdateError(
        f"{path} was replaced {_SNAPSHOT_TRIES} times while being read", path
    )


async def create_file(fs: Any, path: str, data: Any) -> bool:
    """Write *data* to a new file *path*; False (nothing written) when it exists.

    ``O_EXCL`` on local disks, the store's create-only write elsewhere
    (S3 ``If-None-Match: *``, GCS ``ifGenerationMatch=0``).
    """
    if is_local(fs) and isinstance(data, (bytes, bytearray, memoryview)):
        return await asyncio.to_thread(_local_create, path, data)
    try:  # (a store's own body type, e.g. a spool file, goes through its pipe)
        await fs._pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    except Exception as exc:
        if _is_precondition_failure(exc):
            return False
        raise
    return True


def _local_create(path: str, data: Any) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        if os.path.isdir(path):  # not a file another writer holds: a real failure
            raise IsADirectoryError(f"{path} is a directory") from None
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return True


def _lost(path: str, base: Snapshot) -> Exception:
    if base.exists:
        return ConcurrentUpdateError(
            f"{path} was replaced by another writer after this writer read it "
            f"(version {base.version}); nothing of this write was published",
            path,
        )
    return BundleExistsError(f"{path} already exists (another writer published it first)")


async def put_conditional(fs: Any, path: str, data: bytes, base: Snapshot | None) -> None:
    """Write *data* to *path* in one atomic step, only if *path* is still *base*.

    Parameters
    ----------
    fs : fsspec.asyn.AsyncFileSystem
    path : str
    data : bytes
    base : Snapshot or None
        The version the writer started from: a snapshot without data means
        create-only, with data compare-and-swap; None writes unconditionally
        (still atomically).

    Raises
    ------
    BundleExistsError
        Create-only, and *path* exists.
    ConcurrentUpdateError
        *path* is no longer the version of *base*.
    """
    kind = conditional_kind(fs)
    try:
        if kind == "local":
            await asyncio.to_thread(_local_put, path, data, base)
        elif kind == "s3":
            await _s3_put(fs, path, data, base)
        elif kind == "gcs":
            await _gcs_put(fs, path, data, base)
        elif kind == "memory":
            await asyncio.to_thread(_memory_put, fs, path, data, base)
        else:
            if base is not None:
                _warn_unconditional(fs)
            mode = "create" if base is not None and not base.exists else "overwrite"
            try:
                await fs._pipe_file(path, data, mode=mode)
            except FileExistsError:
                raise _PreconditionFailed from None
    except _PreconditionFailed:
        raise _lost(path, base or Snapshot(path, None)) from None
    finally:
        _invalidate(fs, path)


class _PreconditionFailed(Exception):
    pass


def _is_precondition_failure(exc: BaseException) -> bool:
    if isinstance(exc, FileExistsError):
        return True
    for err in (exc, exc.__cause__, exc.__context__):
        response = getattr(err, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            status = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in _PRECONDITION_CODES or status in ("412", "409"):
                return True
    return False


async def _s3_put(fs: Any, path: str, data: bytes, base: Snapshot | None) -> None:
    bucket, key, _ = fs.split_path(path)
    cond: dict[str, str] = {}
    if base is not None:
        cond = {"IfMatch": base.version} if base.exists else {"IfNoneMatch": "*"}
    try:
        await fs._call_s3("put_object", Bucket=bucket, Key=key, Body=bytes(data), **cond)
    except Exception as exc:
        if cond and _is_precondition_failure(exc):
            raise _PreconditionFailed from exc
        raise


async def _gcs_put(fs: Any, path: str, data: bytes, base: Snapshot | None) -> None:
    # The JSON API multipart upload, which takes ifGenerationMatch (gcsfs
    # sends it only as 0 and only for mode="create").
    bucket, key, _ = fs.split_path(path)
    kw = {}
    if base is not None:
        kw["ifGenerationMatch"] = str(base.version) if base.exists else "0"
    boundary = "==" + secrets.token_hex(8) + "=="
    meta = json.dumps({"name": key})
    body = (
        (
            f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n"
            f"--{boundary}\r\nContent-Type: application/json\r\n\r\n"
        ).encode()
        + bytes(data)
        + f"\r\n--{boundary}--".encode()
    )
    try:
        await fs._call(
            "POST",
            f"{fs._location}/upload/storage/v1/b/{quote(bucket)}/o",
            uploadType="multipart",
            headers={"Content-Type": f'multipart/related; boundary="{boundary}"'},
            data=body,
            json_out=True,
            **kw,
        )
    except FileExistsError as exc:  # gcsfs's translation of 412 Precondition Failed
        if kw:
            raise _PreconditionFailed from exc
        raise


@contextlib.contextmanager
def _folder_lock(folder: str) -> Iterator[None]:
    """An exclusive ``flock`` on *folder* (held by the kernel, released on exit or death)."""
    fd = os.open(folder or ".", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def _local_put(path: str, data: bytes, base: Snapshot | None) -> None:
    folder = os.path.dirname(path)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        with _folder_lock(folder):
            if base is not None and not base.exists:
                try:
                    os.link(tmp, path)  # atomic create-only
                except FileExistsError:
                    raise _PreconditionFailed from None
                return
            if base is not None:
                try:
                    current = _stat_version(os.stat(path))
                except FileNotFoundError:
                    current = None
                if current != base.version:
                    raise _PreconditionFailed
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _memory_put(fs: Any, path: str, data: bytes, base: Snapshot | None) -> None:
    sync = _sync_fs(fs)
    with _MEMORY_LOCK:
        if base is not None:
            try:
                current = bytes(sync.cat_file(path))
            except FileNotFoundError:
                current = None
            if current != base.data:
                raise _PreconditionFailed
        sync.pipe_file(path, bytes(data))


async def remove_conditional(fs: Any, path: str, base: Snapshot) -> None:
    """Delete *path* only if it is still the version of *base*.

    Local disks and memory:// compare under their lock. On S3 and GCS the
    version is compared just before the delete (S3's DeleteObject has no
    portable condition; GCS's delete also carries ``ifGenerationMatch``, which
    fake-gcs-server ignores), which narrows the window to one request.

    Raises
    ------
    ConcurrentUpdateError
        *path* was replaced since *base* was taken.
    """
    kind = conditional_kind(fs)
    lost = ConcurrentUpdateError(
        f"{path} was replaced by another writer after it was read; not removed", path
    )
    try:
        if kind == "local":
            await asyncio.to_thread(_local_remove, path, base)
        elif kind == "memory":
            await asyncio.to_thread(_memory_remove, fs, path, base)
        elif kind in ("s3", "gcs"):
            now = await snapshot(fs, path)
            if now.version != base.version:
                raise _PreconditionFailed
            if kind == "gcs":  # real GCS also enforces the generation on the delete
                bucket, key, _ = fs.split_path(path)
                try:
                    await fs._call(
                        "DELETE", "b/{}/o/{}", bucket, key, ifGenerationMatch=str(base.version)
                    )
                except FileExistsError:
                    raise _PreconditionFailed from None
            else:
                await fs._rm_file(path)
        else:
            _warn_unconditional(fs)
            await fs._rm_file(path)
    except _PreconditionFailed:
        raise lost from None
    finally:
        _invalidate(fs, path)


def _local_remove(path: str, base: Snapshot) -> None:
    with _folder_lock(os.path.dirname(path)):
        try:
            current = _stat_version(os.stat(path))
        except FileNotFoundError:
            raise _PreconditionFailed from None
        if current != base.version:
            raise _PreconditionFailed
        os.unlink(path)


def _memory_remove(fs: Any, path: str, base: Snapshot) -> None:
    sync = _sync_fs(fs)
    with _MEMORY_LOCK:
        try:
            current = bytes(sync.cat_file(path))
        except FileNotFoundError:
            raise _PreconditionFailed from None
        if current != base.data:
            raise _PreconditionFailed
        sync.rm_file(path)
