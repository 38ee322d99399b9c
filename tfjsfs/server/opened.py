"""A bundle file opened once, so a response describes exactly what it sends.

:class:`OpenedFile` is what :meth:`tfjsfs.server.modelstore.ModelStore.open`
returns: the size, ETag and modification time of the bytes it reads. Local
files are read through one descriptor (:func:`open_local`), so replacing or
deleting the file meanwhile changes nothing for the reader, and they are
sent by the kernel from that descriptor (:meth:`OpenedFile.sendfile`).
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .._util.entries import entity_tag, modified_time
from ..errors import TransferError

__all__ = ["SENT", "OpenedFile", "open_local"]

#: How many responses went out by each way of sending (``"sendfile"``): for diagnostics and tests.
SENT: Counter[str] = Counter()


class OpenedFile:
    """One bundle file, opened once: its size and tag describe the bytes it reads.

    A local file is read through one open descriptor, so a file replaced or
    deleted meanwhile still reads as it was opened. On other stores the size
    and tag come from one ``info`` call and ranges are read from that object;
    a range that comes back short raises :class:`~tfjsfs.errors.TransferError`
    (the object changed: the caller must abort its response, never pad it).

    Parameters
    ----------
    path : str
        Inner path.
    info : mapping
        fsspec-like info of what was opened (``size``, a tag or ``mtime``).
    fd : int, optional
        An open descriptor of a local file (closed by :meth:`close`).
    read : async callable, optional
        ``read(path, start, end)`` of the store, for other stores.

    Attributes
    ----------
    path : str
        Inner path.
    size : int
    etag : str or None
        A strong ETag (from the backend's tag, or the mtime and size).
    modified : datetime or None
    identity : tuple or None
        For a local file: device, inode, size and change times of what was
        opened (two opens with the same identity read the same bytes).
    """

    def __init__(
        self,
        path: str,
        info: Mapping[str, Any],
        *,
        fd: int | None = None,
        read: Callable[[str, int | None, int | None], Awaitable[bytes]] | None = None,
    ):
        if (fd is None) == (read is None):
            raise ValueError("give either fd (a local file) or read (a store's range reader)")
        self._fd = fd
        self._read = read
        self.path = path
        self.size = int(info.get("size") or 0)
        self.etag = entity_tag(info)
        self.modified = modified_time(info)
        self.identity = info.get("identity") if fd is not None else None

    @property
    def local(self) -> bool:
        """Whether this is a local file read through its descriptor (sendfile applies)."""
        return self._fd is not None

    async def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``: exactly ``end - start`` of them, or ``TransferError``."""
        if self._fd is not None:
            data = await asyncio.to_thread(_pread, self._fd, start, end)
        else:
            data = await self._read(self.path, start, end)
        if len(data) != end - start:
            raise TransferError(
                f"{self.path} changed while being read: expected {end - start} bytes "
                f"at {start} of {self.size}, got {len(data)}"
            )
        return data

    async def read_all(self) -> bytes:
        """The whole file as opened (on object stores: as it is now, whatever its length)."""
        if self._fd is not None:
            return await asyncio.to_thread(_pread, self._fd, 0, self.size)
        return await self._read(self.path, None, None)

    async def sendfile(self, transport: asyncio.Transport, start: int, end: int) -> int:
        """Send bytes ``[start, end)`` of a local file to *transport* with the kernel.

        ``loop.sendfile`` on this descriptor (a file replaced meanwhile is
        sent as opened); it copies through user space only where the
        transport cannot (TLS). Returns the bytes sent: fewer than asked when
        the file was truncated in place (the caller must abort its response).
        """
        if self._fd is None:
            raise ValueError(f"{self.path} is not a local file")
        SENT["sendfile"] += 1
        with os.fdopen(self._fd, "rb", buffering=0, closefd=False) as file:
            loop = asyncio.get_running_loop()
            return await loop.sendfile(transport, file, start, end - start)

    def close(self) -> None:
        """Release the descriptor (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OpenedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pread(fd: int, start: int, end: int) -> bytes:
    parts = []
    pos = start
    while pos < end:
        chunk = os.pread(fd, end - pos, pos)
        if not chunk:
            break
        parts.append(chunk)
        pos += len(chunk)
    return b"".join(parts)


def open_local(path: str) -> tuple[int, dict[str, Any]]:
    """Open a local regular file; its fstat as an fsspec-like info dict."""
    fd = os.open(path, os.O_RDONLY)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise IsADirectoryError(path)
    identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    info = {"name": path, "size": st.st_size, "mtime": st.st_mtime, "type": "file"}
    return fd, {**info, "identity": identity}
