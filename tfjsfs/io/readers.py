"""How bytes come in: one reader per kind of backend, each filling planned blocks.

* :class:`LocalReader`: ``os.preadv`` straight into the destination, in a
  worker thread; no intermediate ``bytes``.
* :class:`HTTPReader`: a GET through the HTTP filesystem's own aiohttp
  session, its body streamed chunk by chunk into the destination. ``206``
  replies are checked (``Content-Range`` start, end and total); a server that
  ignores ``Range`` is detected and its full body used, skipping what is not
  wanted. A body that ends early is resumed from where it stopped.
* :class:`GenericReader`: ``_cat_file`` / one ``_cat_ranges`` of the backend
  (s3fs, gcsfs, memory, …), then one copy into place.

:func:`run_blocks` sends planned blocks through the right readers with
bounded concurrency; :func:`fetch_pieces` plans them first (merging
neighbours under ``max_gap``).

Every reader checks every byte count, retries transient failures
(:mod:`tfjsfs._util.retry`), reports progress per byte to an fsspec callback, and
raises errors that name the shard, the weights, and the expected and actual
bytes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from fsspec.callbacks import DEFAULT_CALLBACK, Callback

from .._util.concurrency import gather_bounded
from .._util.retry import RetryPolicy, Transient, Truncated, is_transient, with_retries
from ..errors import ShardMissingError, SizeMismatch, TransferError
from .bundle import Bundle
from .httpget import body_chunks, http_get, request_kwargs
from .ranges import DEFAULT_MAX_BLOCK, DEFAULT_MAX_GAP, Block, Sink, plan_blocks
from .shardurls import is_http
from .writer import is_local

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_INFLIGHT",
    "GenericReader",
    "HTTPReader",
    "LocalReader",
    "SizeMismatch",
    "fetch_pieces",
    "reader_kind",
    "run_blocks",
]

logger = logging.getLogger("tfjsfs.io.fetch")

READ_BUFSIZE = 1 << 20
#: Requests in flight at once (fsspec's ``batch_size`` convention).
DEFAULT_BATCH_SIZE = 32
#: Bytes held in transit by backends that hand over whole ``bytes`` objects.
DEFAULT_MAX_INFLIGHT = 64 << 20
#: Local reads run in threads; more than this only contends for memory bandwidth.
LOCAL_THREADS = max(2, min(4, os.cpu_count() or 2))


class _Progress:
    """Per-block byte progress that never counts a byte twice across retries."""

    __slots__ = ("callback", "limit", "reported")

    def __init__(self, callback: Callback, limit: int):
        self.callback = callback
        self.limit = limit
        self.reported = 0

    def to(self, done: int) -> None:
        done = min(done, self.limit)
        if done > self.reported:
            self.callback.relative_update(done - self.reported)
            self.reported = done


class Reader:
    """Fills blocks of one bundle from one kind of backend."""

    def __init__(
        self,
        bundle: Bundle,
        policy: RetryPolicy,
        callback: Callback = DEFAULT_CALLBACK,
    ):
        self.bundle = bundle
        self.policy = policy
        self.callback = callback

    def where(self, block: Block) -> str:
        """The block's label, or the model.json and the shard path."""
        return block.label or self.bundle.describe(block.path)

    def missing(self, block: Block) -> ShardMissingError:
        return ShardMissingError(
            f"{self.bundle.json_path}: weight shard {block.path} does not exist"
        )

    def mismatch(self, block: Block, actual: int | None, detail: str = "") -> SizeMismatch:
        """The shard's size differs from the plan (or a reply disagrees with itself).

        *detail* says what disagreed (a header, a range, the body's length);
        the planned size is added where it is the other side of the
        disagreement.
        """
        if detail:
            message = f"{self.where(block)}: {detail}"
            if actual is not None and actual != block.file_size:
                message += f", but it should hold {block.file_size} bytes"
        else:
            message = (
                f"{self.where(block)}: the shard should hold {block.file_size} bytes "
                f"but holds {actual}"
            )
        if self.bundle.sizes_guessed:
            message += "; the planned size was derived from the manifest"
        return SizeMismatch(message, block.path, block.file_size, actual)

    async def read(self, block: Block) -> None:
        """Fill every piece of *block*."""
        raise NotImplementedError

    async def read_many(self, blocks: Sequence[Block], batch_size: int) -> None:
        """Fill many blocks, at most *batch_size* requests at once."""
        await gather_bounded((self.read(b) for b in blocks), batch_size)


# -------------------------------------------------------------------- local


class LocalReader(Reader):
    """Local files: ``preadv`` into the destination from a worker thread."""

    def _read(self, block: Block) -> int:
        try:
            fd = os.open(block.path, os.O_RDONLY)
        except FileNotFoundError:
            raise self.missing(block) from None
        try:
            if block.whole:
                size = os.fstat(fd).st_size
                if size != block.file_size:
                    raise self.mismatch(block, size)
            for piece in block.pieces:
                view, got = piece.dest, 0
                want = len(view)
                while got < want:
                    n = os.preadv(fd, [view[got:]], piece.start + got)
                    if n <= 0:
                        break
                    got += n
                if got < want:
                    raise SizeMismatch(
                        f"{self.where(block)}: needed bytes {piece.start}..{piece.end} "
                        f"but the file ends after {piece.start + got} (short by {want - got})",
                        block.path,
                        block.file_size,
                        piece.start + got,
                    )
        finally:
            os.close(fd)
        return block.wanted

    async def read(self, block: Block) -> None:
        got = await asyncio.to_thread(self._read, block)
        self.callback.relative_update(got)

    async def read_many(self, blocks: Sequence[Block], batch_size: int) -> None:
        """Fill *blocks* with at most *batch_size* worker threads, each taking the next
        block in turn (one thread hop per worker, not per block)."""
        loop = asyncio.get_running_loop()
        todo = iter(list(blocks))
        lock = threading.Lock()
        stop = threading.Event()
        report = self.callback.relative_update

        def worker() -> None:
            while not stop.is_set():
                with lock:
                    block = next(todo, None)
                if block is None:
                    return
                try:
                    got = self._read(block)
                except BaseException:
                    stop.set()  # the others finish their block and quit
                    raise
                loop.call_soon_threadsafe(report, got)

        workers = max(1, min(batch_size, len(blocks)))
        try:
            await gather_bounded((asyncio.to_thread(worker) for _ in range(workers)), None)
        finally:
            stop.set()


# --------------------------------------------------------------------- HTTP


def _content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``bytes a-b/total`` as ``(a, b + 1, total)``."""
    if not value or not value.startswith("bytes "):
        return None
    span, _, total = value[6:].partition("/")
    first, _, last = span.partition("-")
    try:
        return int(first), int(last) + 1, (int(total) if total.strip() != "*" else None)
    except ValueError:
        return None


_WARNED_HOSTS: set[str] = set()


class HTTPReader(Reader):
    """HTTP(S) through fsspec's HTTPFileSystem session, streamed into place.

    Shards are asked for uncompressed (``Accept-Encoding: identity``); a
    compressed reply is decoded here with the same bound. No reply is read
    past the bytes the block needs plus one, so an over-long body costs one
    byte, not its length. Redirects are followed as the policy's
    ``follow_redirects`` allows (:mod:`tfjsfs.io.httpget`).

    Attributes
    ----------
    ignored_range : bool
        Set when a server answered a range request with the whole file.
    """

    ignored_range = False

    async def read(self, block: Block) -> None:
        import aiohttp

        fs = self.bundle.fs_for(block.path)
        session = await fs.set_session()
        kwargs = request_kwargs(fs, self.bundle.headers)
        base_headers = dict(kwargs.pop("headers", None) or {})
        if not any(k.lower() == "accept-encoding" for k in base_headers):
            base_headers["Accept-Encoding"] = "identity"
        t = self.policy.timeout
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=t, sock_read=t)
        sink = Sink(block)
        progress = _Progress(self.callback, block.nbytes)
        state = {"ranges": False, "etag": None}
        url = fs.encode_url(block.path)

        async def attempt(_: int) -> None:
            done = _file_position(sink) - block.start  # bytes of the block already placed
            resume = done > 0 and state["ranges"]
            if not resume:
                done = 0
            headers = dict(base_headers)
            ranged = resume or not block.whole
            if ranged:
                headers["Range"] = f"bytes={block.start + done}-{block.end - 1}"
                if resume and state["etag"]:
                    headers["If-Range"] = state["etag"]
            async with http_get(
                session,
                url,
                follow=self.policy.follow_redirects,
                what=lambda: self.where(block),
                headers=headers,
                timeout=timeout,
                read_bufsize=READ_BUFSIZE,
                **kwargs,
            ) as resp:
                self._check_status(block, resp)
                state["etag"] = resp.headers.get("ETag") or state["etag"]
                if resp.status == 206 or resp.headers.get("Accept-Ranges") == "bytes":
                    state["ranges"] = True
                try:
                    self._place(block, resp, sink, ranged, done)
                    await self._stream(block, resp, sink, progress)
                except SizeMismatch:
                    sink.reset(block.start)  # a reply that lied: keep none of its bytes
                    raise

        await with_retries(attempt, self.policy, lambda: self.where(block))

    def _check_status(self, block: Block, resp: Any) -> None:
        if resp.status in (404, 410):
            raise self.missing(block)
        if resp.status >= 500 or resp.status in (408, 429):
            raise Transient(f"{self.where(block)}: HTTP {resp.status} {resp.reason or ''}".strip())
        if resp.status >= 400:
            raise TransferError(
                f"{self.where(block)}: request failed with HTTP {resp.status} {resp.reason or ''}"
            )
        if resp.status not in (200, 206):
            raise TransferError(f"{self.where(block)}: unexpected HTTP status {resp.status}")

    def _place(self, block: Block, resp: Any, sink: Sink, ranged: bool, done: int) -> None:
        """Check the reply's framing and point *sink* at where its body starts."""
        encoded = "Content-Encoding" in resp.headers
        length = resp.content_length if not encoded else None
        if resp.status == 206:
            header = resp.headers.get("Content-Range")
            span = _content_range(header)
            if span is None:
                raise TransferError(
                    f"{self.where(block)}: 206 reply without a usable Content-Range ({header!r})"
                )
            first, stop, total = span
            if total is not None and block.file_size is not None and total != block.file_size:
                raise self.disagree(
                    block,
                    f"the reply's Content-Range ({header}) says the shard holds {total} bytes",
                    total,
                )
            if first != block.start + done or stop != block.end:
                raise self.disagree(
                    block,
                    f"asked for bytes {block.start + done}..{block.end}, but the reply's "
                    f"Content-Range ({header}) holds bytes {first}..{stop}",
                    total,
                )
            if length is not None and length != stop - first:
                raise self.disagree(
                    block,
                    f"the reply's Content-Range ({header}) spans {stop - first} bytes "
                    f"but its Content-Length says {length}",
                    total,
                )
            sink.reset(block.start, done)
            return
        # 200: the whole file
        if length is not None and block.file_size is not None and length != block.file_size:
            raise self.disagree(
                block, f"the reply's Content-Length says the shard holds {length} bytes", length
            )
        if ranged and not (block.start == 0 and block.end == length):
            host = block.path.split("/", 3)[2] if "://" in block.path else block.path
            if host not in _WARNED_HOSTS:
                _WARNED_HOSTS.add(host)
                logger.warning(
                    "%s ignores Range requests: reading whole files to pick out bytes", host
                )
            self.ignored_range = True
        sink.reset(0, 0)

    def disagree(self, block: Block, what: str, actual: int | None) -> SizeMismatch:
        """A reply whose byte counts disagree with the plan: worth another attempt,
        unless the plan itself was a guess (the caller then measures the shard)."""
        error = self.mismatch(block, actual, what)
        error.retryable = not self.bundle.sizes_guessed
        return error

    async def _stream(self, block: Block, resp: Any, sink: Sink, progress: _Progress) -> None:
        needed = block.end - sink.origin
        promised = needed - sink.position
        # A 206 must hold exactly the range asked; a whole file, exactly the shard.
        exact = resp.status == 206 or block.whole
        try:
            async for chunk in body_chunks(resp, promised, block.path):
                if sink.position + len(chunk) > needed:
                    if exact:
                        what = (
                            f"the body runs past the {promised} bytes its Content-Range "
                            f"({resp.headers.get('Content-Range')}) promised"
                            if resp.status == 206
                            else f"the body holds more than the shard's {needed} bytes"
                        )
                        raise self.disagree(block, what, None)
                    sink.write(memoryview(chunk)[: needed - sink.position])
                    progress.to(_file_position(sink) - block.start)
                    return  # the rest is not wanted (a server that ignored Range)
                sink.write(chunk)
                progress.to(_file_position(sink) - block.start)
        except Exception as exc:
            if not is_transient(exc) or isinstance(exc, (Transient, SizeMismatch)):
                raise
            raise Truncated(
                f"{self.where(block)}: body ended after {sink.position} of {needed} bytes "
                f"({type(exc).__name__}: {exc})",
                needed,
                sink.position,
            ) from exc
        if sink.position < needed:
            raise Truncated(
                f"{self.where(block)}: body ended after {sink.position} of {needed} bytes",
                needed,
                sink.position,
            )


def _file_position(sink: Sink) -> int:
    return sink.origin + sink.position


# ------------------------------------------------------------------ generic


class GenericReader(Reader):
    """Any async fsspec backend: ``_cat_file``/``_cat_ranges``, then one copy."""

    def _place(self, block: Block, data: bytes) -> None:
        if block.whole:
            if len(data) != block.file_size:
                raise self.mismatch(block, len(data))
        elif len(data) != block.nbytes:
            if len(data) < block.nbytes:
                raise self.mismatch(
                    block,
                    None,
                    f"asked for bytes {block.start}..{block.end} ({block.nbytes} bytes), "
                    f"got {len(data)}",
                )
            raise TransferError(
                f"{self.where(block)}: asked for bytes {block.start}..{block.end} "
                f"({block.nbytes} bytes), got {len(data)}: the backend ignored the range"
            )
        sink = Sink(block)
        sink.write(data)
        self.callback.relative_update(block.nbytes)

    async def read(self, block: Block) -> None:
        fs = self.bundle.fs_for(block.path)

        async def attempt(_: int) -> None:
            try:
                if block.whole:
                    data = await fs._cat_file(block.path)
                else:
                    data = await fs._cat_file(block.path, start=block.start, end=block.end)
            except FileNotFoundError:
                raise self.missing(block) from None
            self._place(block, data)

        timeout = self.policy.total_timeout(block.nbytes)
        await with_retries(attempt, self.policy, lambda: self.where(block), timeout=timeout)

    async def read_ranges(self, blocks: Sequence[Block], batch_size: int) -> None:
        """All *blocks* with one ``_cat_ranges`` per filesystem, then retries of what failed.

        Every reply is held until the call returns: callers bound the bytes
        asked for at once. (Whole-shard loads use :meth:`read_many` instead,
        which holds at most ``batch_size`` replies.)
        """
        by_fs: dict[int, tuple[Any, list[Block]]] = {}
        for block in blocks:
            fs = self.bundle.fs_for(block.path)
            by_fs.setdefault(id(fs), (fs, []))[1].append(block)
        retry: list[Block] = []
        for fs, group in by_fs.values():
            try:
                results = await fs._cat_ranges(
                    [b.path for b in group],
                    [b.start for b in group],
                    [b.end for b in group],
                    batch_size=batch_size,
                    on_error="return",
                )
            except NotImplementedError:
                retry.extend(group)
                continue
            for block, data in zip(group, results, strict=True):
                if isinstance(data, FileNotFoundError):
                    raise self.missing(block)
                if isinstance(data, BaseException):
                    if not is_transient(data):
                        raise data
                    retry.append(block)
                    continue
                try:
                    self._place(block, data)
                except Transient:
                    retry.append(block)
        if retry:
            await self.read_many(retry, batch_size)


def reader_kind(fs: Any) -> type[Reader]:
    """The reader class for files of *fs*."""
    if is_local(fs):
        return LocalReader
    if is_http(fs):
        return HTTPReader
    return GenericReader


# ------------------------------------------------------------------- engine


async def run_blocks(
    bundle: Bundle,
    blocks: Sequence[Block],
    *,
    policy: RetryPolicy,
    callback: Callback = DEFAULT_CALLBACK,
    batch_size: int | None = None,
    max_inflight: int = DEFAULT_MAX_INFLIGHT,
    ranged: bool = False,
    set_size: bool = True,
) -> None:
    """Fill every block, each backend through its reader.

    Parameters
    ----------
    ranged : bool
        Partial load: backends that hand over ``bytes`` get one
        ``_cat_ranges`` per ``max_inflight`` bytes; whole-shard loads get one
        ``_cat_file`` per shard with at most ``max_inflight`` bytes in transit.
    set_size : bool
        Tell *callback* the total bytes first.
    """
    batch = batch_size or DEFAULT_BATCH_SIZE
    kinds: dict[type, list[Block]] = {}
    for block in blocks:
        kinds.setdefault(reader_kind(bundle.fs_for(block.path)), []).append(block)
    if set_size:
        callback.set_size(
            sum(
                b.wanted if kind is LocalReader else b.nbytes
                for kind, group in kinds.items()
                for b in group
            )
        )
    jobs = []
    for kind, group in kinds.items():
        reader = kind(bundle, policy, callback)
        if kind is LocalReader:
            jobs.append(reader.read_many(group, min(batch, LOCAL_THREADS)))
        elif kind is GenericReader and ranged:
            jobs.append(_read_in_chunks(reader, group, batch, max_inflight))
        elif kind is GenericReader:
            biggest = max(1, max(b.nbytes for b in group))  # empty shards read too
            jobs.append(reader.read_many(group, max(1, min(batch, max_inflight // biggest))))
        else:
            jobs.append(reader.read_many(group, batch))
    await gather_bounded(jobs, None)


async def _read_in_chunks(
    reader: GenericReader, blocks: Sequence[Block], batch: int, max_inflight: int
) -> None:
    chunk: list[Block] = []
    held = 0
    for block in blocks:
        if chunk and held + block.nbytes > max_inflight:
            await reader.read_ranges(chunk, batch)
            chunk, held = [], 0
        chunk.append(block)
        held += block.nbytes
    if chunk:
        await reader.read_ranges(chunk, batch)


async def fetch_pieces(
    bundle: Bundle,
    pieces: Iterable[tuple[str, int, int, memoryview]],
    *,
    max_gap: int = DEFAULT_MAX_GAP,
    max_block: int | None = DEFAULT_MAX_BLOCK,
    batch_size: int | None = None,
    callback: Callback = DEFAULT_CALLBACK,
    policy: RetryPolicy | None = None,
    max_inflight: int = DEFAULT_MAX_INFLIGHT,
) -> list[Block]:
    """Fill ``(path, start, end, dest)`` pieces with as few requests as the gaps allow.

    Local files merge everything per file (their reader skips the gaps);
    remote neighbours merge under ``max_gap``/``max_block``. Returns the
    blocks, whose byte counts tell what was fetched.
    """
    policy = policy or RetryPolicy()
    sizes: dict[str, int] = {}
    if bundle.sizes is not None:
        for paths, group in zip(bundle.shard_paths, bundle.sizes, strict=True):
            sizes.update(zip(paths, group, strict=True))
    local: list[tuple[str, int, int, memoryview]] = []
    remote: list[tuple[str, int, int, memoryview]] = []
    for piece in pieces:
        kind = reader_kind(bundle.fs_for(piece[0]))
        (local if kind is LocalReader else remote).append(piece)
    blocks = plan_blocks(local, max_gap=1 << 62, max_block=None, file_sizes=sizes)
    blocks += plan_blocks(remote, max_gap=max_gap, max_block=max_block, file_sizes=sizes)
    if bundle.sizes_guessed:  # ask with Range, so every reply states the real size
        for block in blocks:
            block.whole = False
    await run_blocks(
        bundle,
        blocks,
        policy=policy,
        callback=callback,
        batch_size=batch_size,
        max_inflight=max_inflight,
        ranged=True,
    )
    return blocks
