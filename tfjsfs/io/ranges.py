"""Byte-range plans: which requests to send, and where their bytes land.

A *piece* is a run of bytes of one file that must end up in one destination
buffer (a writable ``memoryview``). Pieces of the same file that are close
together are merged into one *block* (one request), allowing at most
``max_gap`` unwanted bytes between neighbours and at most ``max_block`` bytes
per request; the bytes of a block are then scattered back into the pieces.
Merging sorts each file's pieces (nearly free when they arrive in order, as
manifest order gives them) and then makes one linear pass.

Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["DEFAULT_MAX_BLOCK", "DEFAULT_MAX_GAP", "Block", "Piece", "Sink", "plan_blocks"]

#: Unwanted bytes allowed between two merged pieces (fsspec's ReferenceFileSystem default).
DEFAULT_MAX_GAP = 64_000
#: Largest merged request (fsspec's ReferenceFileSystem default).
DEFAULT_MAX_BLOCK = 256_000_000


@dataclass(frozen=True, slots=True)
class Piece:
    """Bytes ``[start, end)`` of a file, destined for ``dest`` (``end - start`` long)."""

    start: int
    end: int
    dest: memoryview


@dataclass(slots=True)
class Block:
    """One request: bytes ``[start, end)`` of ``path``, scattered into ``pieces``.

    Attributes
    ----------
    path : str
        Inner path (or URL) of the file.
    start, end : int
        The byte range requested.
    pieces : list of Piece
        Sorted by start, file offsets (not block offsets).
    whole : bool
        The block is the whole file: request it without a ``Range``.
    file_size : int or None
        The file's size as planned (from a listing, the manifest or HEAD),
        checked against what the server reports.
    label : str
        What the bytes are for (shard and weights), for messages.
    """

    path: str
    start: int
    end: int
    pieces: list[Piece] = field(default_factory=list)
    whole: bool = False
    file_size: int | None = None
    label: str = ""

    @property
    def nbytes(self) -> int:
        """Bytes requested."""
        return self.end - self.start

    @property
    def wanted(self) -> int:
        """Bytes that land somewhere (the requested bytes minus gaps)."""
        return sum(p.end - p.start for p in self.pieces)


def plan_blocks(
    pieces: Iterable[tuple[str, int, int, memoryview]],
    *,
    max_gap: int = DEFAULT_MAX_GAP,
    max_block: int | None = DEFAULT_MAX_BLOCK,
    file_sizes: dict[str, int] | None = None,
) -> list[Block]:
    """Merge ``(path, start, end, dest)`` pieces into requests.

    Parameters
    ----------
    pieces : iterable of (str, int, int, memoryview)
        Wanted byte ranges and their destinations. Empty ranges are dropped.
    max_gap : int
        Merge neighbours of one file when at most this many unwanted bytes
        lie between them; 0 merges only touching ranges and a negative value
        never merges.
    max_block : int or None
        Largest merged request; None for no limit.
    file_sizes : dict, optional
        Known file sizes: a block covering a whole file is marked ``whole``.

    Returns
    -------
    list of Block
        Files in first-seen order, blocks in file order.
    """
    by_path: dict[str, list[Piece]] = {}
    for path, start, end, dest in pieces:
        if end > start:
            by_path.setdefault(path, []).append(Piece(start, end, dest))
    sizes = file_sizes or {}
    blocks: list[Block] = []
    for path, items in by_path.items():
        items.sort(key=_start)
        size = sizes.get(path)
        current: Block | None = None
        for piece in items:
            if (
                current is not None
                and max_gap >= 0
                and piece.start - current.end <= max_gap
                and (max_block is None or max(current.end, piece.end) - current.start <= max_block)
            ):
                current.end = max(current.end, piece.end)
                current.pieces.append(piece)
                continue
            current = Block(path, piece.start, piece.end, [piece], file_size=size)
            blocks.append(current)
    for block in blocks:
        block.whole = (
            block.file_size is not None and block.start == 0 and (block.end == block.file_size)
        )
    return blocks


def _start(piece: Piece) -> int:
    return piece.start


class Sink:
    """Scatter a block's bytes, arriving in order, into its pieces.

    ``write`` takes the next chunk of the stream starting at file offset
    ``origin`` (the block's start, or 0 when a server sent the whole file
    although a range was asked for); bytes outside every piece are skipped.
    ``position`` counts stream bytes seen so far, and can be moved back to
    restart or forward to resume.
    """

    __slots__ = ("_end", "_first", "_single", "origin", "pieces", "position")

    def __init__(self, block: Block):
        self.pieces = block.pieces
        self._end = block.end
        self.reset(block.start)

    def reset(self, origin: int, position: int = 0) -> None:
        """Expect the stream to start at file offset *origin*, *position* bytes in."""
        self.origin = origin
        self.position = position
        self._first = 0
        only = self.pieces[0] if len(self.pieces) == 1 else None
        self._single = only if only is not None and only.start == origin else None

    def write(self, chunk: bytes | memoryview) -> None:
        """Place the next *chunk* of the stream."""
        n = len(chunk)
        lo = self.origin + self.position
        hi = lo + n
        self.position += n
        single = self._single
        if single is not None:  # fast path: the stream is exactly one piece
            stop = min(hi, single.end)
            if stop > lo:
                single.dest[lo - single.start : stop - single.start] = (
                    chunk if stop == hi else memoryview(chunk)[: stop - lo]
                )
            return
        pieces = self.pieces
        i = self._first
        while i < len(pieces) and pieces[i].end <= lo:
            i += 1
        self._first = i
        view = None
        while i < len(pieces) and pieces[i].start < hi:
            piece = pieces[i]
            a, b = max(lo, piece.start), min(hi, piece.end)
            if b > a:
                if view is None:
                    view = memoryview(chunk)
                piece.dest[a - piece.start : b - piece.start] = view[a - lo : b - lo]
            i += 1

    @property
    def expected(self) -> int:
        """Stream bytes needed to fill every piece."""
        return self._end - self.origin

    @property
    def done(self) -> bool:
        """Whether every piece is filled."""
        return self.position >= self.expected
