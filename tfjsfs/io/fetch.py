"""The hot path: fetch shards, or just the byte ranges some weights need.

Whole-model loads (:func:`fetch_all`) fetch every shard concurrently (at most
``batch_size`` requests at once) straight into its slice of one preallocated
buffer; :func:`arrays_from_buffer` then makes zero-copy numpy views (aligned:
groups can start on a 16-byte boundary). Partial loads (:func:`fetch_arrays`,
:func:`fetch_weight_buffer`, :func:`fetch_weight_bytes`) map weights to shard
segments with the weight index (:func:`load_index`, which walks string length
prefixes with small range reads), merge neighbours (``max_gap``) and scatter
the replies back (:mod:`tfjsfs.io.ranges`). Shard sizes guessed from the manifest
(HTTP) are checked against every reply; if they prove wrong, the load re-sizes
the shards with ``HEAD`` and starts again.

Stable entry points used by the fsspec face (:mod:`tfjsfs.fs.core`):
``open_bundle(fs, path)``, ``load_index(fs, bundle)`` and
``fetch_weight_bytes(fs, bundle, index, name, start=None, end=None)``.

This module knows inner paths and async fsspec filesystems; the readers and
the engine that drives them (:mod:`tfjsfs.io.readers`) know the backends. Every
byte count is checked.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence
from typing import Any

import numpy as np
from fsspec.callbacks import DEFAULT_CALLBACK, Callback

from .._util.retry import RetryPolicy
from ..errors import ManifestError, WeightDataError
from ..format.codec import decode_weight, string_lengths
from ..format.dtypes import STORED
from ..format.manifest import ModelJSON, WeightIndex, _segments
from .bundle import (
    Bundle,
    LoadOptions,
    group_offsets,
    is_http,
    locate_model_json,
    open_bundle,
    resolve_shard_paths,
    shard_sizes,
)
from .ranges import DEFAULT_MAX_GAP, Block, Piece
from .readers import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_INFLIGHT,
    SizeMismatch,
    fetch_pieces,
    run_blocks,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_GAP",
    "DEFAULT_MAX_INFLIGHT",
    "Bundle",
    "LoadOptions",
    "arrays_from_buffer",
    "fetch_all",
    "fetch_arrays",
    "fetch_weight_buffer",
    "fetch_weight_bytes",
    "load_index",
    "locate_model_json",
    "open_bundle",
    "resolve_shard_paths",
    "shard_sizes",
]

#: Destinations of partial loads start on this boundary, so views are aligned.
ALIGN = 16


def _fits(bundle: Bundle, sizes: Sequence[Sequence[int]]) -> None:
    """Raise the weight index's detailed error if shards are too short for the manifest."""
    layout = bundle.layout
    if layout is not None:  # from the columns: the manifest may be released already
        for g, (group, group_sizes) in enumerate(zip(layout, sizes, strict=True)):
            error = group.short_error(bundle.json_path, g, group_sizes)
            if error is not None:
                raise error
        return
    expected = bundle.group_bytes()
    if all(e is not None and sum(s) >= e for e, s in zip(expected, sizes, strict=True)):
        return
    WeightIndex(bundle.doc.weights_manifest, sizes, bundle.json_path)


#: Shard sizes guessed from the manifest (HTTP, converter cuts) are trusted for
#: allocating up to this many bytes (pages are only touched as checked bytes
#: arrive); a bundle declaring more is sized with ``HEAD`` first, so a manifest
#: that declares terabytes is refused by comparing with the bytes really there.
GUESSED_ALLOCATION_LIMIT = 1 << 30


async def _known_sizes(
    fs: Any, bundle: Bundle, policy: RetryPolicy, batch_size: int | None, guess: bool
) -> list[list[int]]:
    """Shard sizes to allocate from: measured, or guessed within the limit."""
    sizes = await shard_sizes(fs, bundle, policy=policy, batch_size=batch_size, guess=guess)
    if bundle.sizes_guessed and sum(map(sum, sizes)) > GUESSED_ALLOCATION_LIMIT:
        _forget_sizes(bundle)
        sizes = await shard_sizes(fs, bundle, policy=policy, batch_size=batch_size)
    return sizes


def _forget_sizes(bundle: Bundle) -> None:
    bundle.sizes = None
    bundle.sizes_guessed = False
    bundle.index = None


# --------------------------------------------------------------- whole model


def weights_buffer(nbytes: int, *, streamed: bool = False) -> np.ndarray:
    """A new uint8 buffer of *nbytes* for a whole load.

    With *streamed* (shards arriving chunk by chunk over many connections at
    once) an anonymous mapping whose 4 KiB pages become resident as bytes land,
    so the load's memory follows the bytes received: numpy asks large buffers
    for 2 MiB huge pages, which with every shard in flight makes the whole
    buffer resident early, while the replies' own buffers are still alive (a
    higher peak). Otherwise numpy's buffer: fewer page faults.
    """
    if not streamed or nbytes == 0:
        return np.empty(nbytes, dtype=np.uint8)
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype=np.uint8)


async def fetch_all(
    fs: Any,
    bundle: Bundle,
    *,
    batch_size: int | None = None,
    callback: Callback = DEFAULT_CALLBACK,
    policy: RetryPolicy | None = None,
    max_inflight: int = DEFAULT_MAX_INFLIGHT,
    align: int = 1,
) -> np.ndarray:
    """Every shard of *bundle* in one uint8 buffer, group after group.

    Sizes are known before anything is fetched (listing, manifest or HEAD),
    the buffer is allocated once, and each shard lands in its slice.
    ``bundle.sizes`` tells where each shard went, ``bundle.group_starts``
    where each group begins: back to back, or on multiples of *align* (so
    that every group's tensors can be aligned views).

    Raises
    ------
    ShardMissingError, WeightDataError, TransferError
        Naming the shard, the weights and the byte counts.
    """
    policy = policy or RetryPolicy()
    streamed = any(is_http(bundle.fs_for(p)) for paths in bundle.shard_paths for p in paths)
    for attempt in (0, 1):
        sizes = await _known_sizes(fs, bundle, policy, batch_size, guess=attempt == 0)
        _fits(bundle, sizes)  # before allocating: declared bytes against those present
        starts = group_offsets(sizes, align)
        total = starts[-1] + sum(sizes[-1]) if sizes else 0
        buffer = weights_buffer(total, streamed=streamed)
        view = memoryview(buffer)
        blocks = []
        for paths, group, offset in zip(bundle.shard_paths, sizes, starts, strict=True):
            for path, size in zip(paths, group, strict=True):
                dest = view[offset : offset + size]
                blocks.append(Block(path, 0, size, [Piece(0, size, dest)], True, size))
                offset += size
        if attempt:
            callback.absolute_update(0)
        try:
            await run_blocks(
                bundle,
                blocks,
                policy=policy,
                callback=callback,
                batch_size=batch_size,
                max_inflight=max_inflight,
            )
        except SizeMismatch:
            if attempt or not bundle.sizes_guessed:
                raise
            _forget_sizes(bundle)  # the manifest misled us: ask the server (HEAD)
            continue
        bundle.group_starts = starts
        return buffer
    raise AssertionError("unreachable")  # pragma: no cover


def group_string_lengths(
    doc: ModelJSON, group_views: Sequence[memoryview], source: str
) -> dict[str, int]:
    """Byte lengths of string weights, found by walking their length prefixes."""
    lengths: dict[str, int] = {}
    for group, view in zip(doc.weights_manifest, group_views, strict=True):
        # a walk stops at a shortfall, which the index then reports in full detail
        lengths.update(string_lengths(group.weights, view, where=source))
    return lengths


def index_from_buffer(bundle: Bundle, buffer: np.ndarray) -> WeightIndex:
    """The weight index of a fully fetched bundle (string lengths walked in memory)."""
    sizes = bundle.sizes
    view = memoryview(buffer)
    starts = _starts(bundle)
    views = [view[a : a + sum(s)] for a, s in zip(starts, sizes, strict=True)]
    strings = group_string_lengths(bundle.doc, views, bundle.json_path)
    index = WeightIndex(bundle.doc.weights_manifest, sizes, bundle.json_path, strings)
    if index.unresolved:
        raise ManifestError(f"{bundle.json_path}: could not place {index.unresolved[0]!r}")
    bundle.index = index
    return index


def _starts(bundle: Bundle) -> list[int]:
    starts = getattr(bundle, "group_starts", None)
    return starts if starts is not None else group_offsets(bundle.sizes)


def arrays_from_buffer(bundle: Bundle, buffer: np.ndarray) -> dict[str, np.ndarray]:
    """Every weight of a fully fetched bundle as a numpy array, in manifest order.

    Unquantized numeric weights are zero-copy views of *buffer* (copies only
    where a tensor sits at an offset its dtype cannot be aligned to);
    quantized weights are dequantized, strings decoded.
    """
    starts = _starts(bundle)
    layout = bundle.layout
    out: dict[str, np.ndarray] = {}
    if layout is not None:  # plain manifest: one quick pass over its columns
        ndarray = np.ndarray
        for base, group in zip(starts, layout, strict=True):
            offsets, dtypes, shapes = group.offsets, group.dtypes, group.shapes
            for i, name in enumerate(group.names):
                dtype, start = dtypes[i], base + offsets[i]
                if dtype == "bool":
                    array = (buffer[start : base + offsets[i + 1]] != 0).reshape(shapes[i])
                else:
                    dt = STORED[dtype]
                    array = ndarray(shapes[i], dt, buffer, start)  # a view of the buffer
                    if start % dt.alignment:
                        array = array.copy()  # numpy wants aligned data for fast math
                out[name] = array
        return out
    index = bundle.index or index_from_buffer(bundle, buffer)
    view = memoryview(buffer)
    source = bundle.json_path
    for spec in bundle.doc.weight_specs:
        loc = index[spec.name]
        start = starts[loc.group] + loc.start
        out[spec.name] = decode_weight(spec, view[start : start + loc.nbytes], source=source)
    return out


# ---------------------------------------------------------------- the index


async def load_index(
    fs: Any,
    bundle: Bundle,
    *,
    policy: RetryPolicy | None = None,
    batch_size: int | None = None,
) -> WeightIndex:
    """Every weight's shard segments; cached on *bundle*.

    Needs shard sizes (one listing, the manifest, or HEAD) and, for string
    weights, their length prefixes, which are walked with small range reads
    (skipping the string bytes themselves).

    Raises
    ------
    WeightDataError
        Shards too short for the manifest, naming the weight and the counts.
    """
    if bundle.index is not None:
        return bundle.index
    policy = policy or RetryPolicy()
    sizes = await _known_sizes(fs, bundle, policy, batch_size, guess=True)
    groups = bundle.doc.weights_manifest
    lengths: dict[str, int] = {}
    while True:
        index = WeightIndex(groups, sizes, bundle.json_path, lengths)
        if not index.unresolved:
            break
        name = index.unresolved[0]
        lengths[name] = await _walk_strings(fs, bundle, index, name, policy, batch_size)
    bundle.index = index
    return index


async def _walk_strings(
    fs: Any,
    bundle: Bundle,
    index: WeightIndex,
    name: str,
    policy: RetryPolicy,
    batch_size: int | None,
) -> int:
    """Byte length of string weight *name*, reading only its length prefixes."""
    g, start, spec = _unplaced(bundle, index, name)
    sizes = index.shard_sizes[g]
    bounds = [0]
    for size in sizes:
        bounds.append(bounds[-1] + size)
    total = bounds[-1]
    cache_start, cache = 0, b""
    window = 64 << 10

    async def length_at(offset: int, element: int) -> int:
        nonlocal cache_start, cache, window
        if not (cache_start <= offset and offset + 4 <= cache_start + len(cache)):
            a = start + offset
            end = min(total, a + window)
            if end - a < 4:
                raise WeightDataError(
                    f"{bundle.json_path}: weight {name!r}: the length prefix of string "
                    f"element {element} needs bytes {a}..{a + 4} of group {g + 1}, but its "
                    f"shards hold only {total} bytes"
                )
            cache = await _read_group(bundle, g, bounds, a, end, policy, batch_size)
            cache_start = offset
            window = min(window * 2, 16 << 20)
        i = offset - cache_start
        return int.from_bytes(cache[i : i + 4], "little")

    offset = 0
    for element in range(spec.size):
        offset += 4 + await length_at(offset, element)
    if start + offset > total:
        raise WeightDataError(
            f"{bundle.json_path}: weight {name!r} needs bytes {start}..{start + offset} of "
            f"group {g + 1} but its shards hold only {total} bytes "
            f"(short by {start + offset - total})"
        )
    return offset


def _unplaced(bundle: Bundle, index: WeightIndex, name: str):
    for g, group in enumerate(bundle.doc.weights_manifest):
        start = 0
        for spec in group.weights:
            if spec.name == name:
                return g, start, spec
            if spec.name in index.locations:
                start = index.locations[spec.name].end
    raise KeyError(name)  # pragma: no cover - name comes from the index


async def _read_group(
    bundle: Bundle,
    g: int,
    bounds: list[int],
    start: int,
    end: int,
    policy: RetryPolicy,
    batch_size: int | None,
) -> bytearray:
    out = bytearray(end - start)
    view = memoryview(out)
    pieces, pos = [], 0
    for shard, a, b in _segments(bounds, start, end):
        pieces.append((bundle.shard_paths[g][shard], a, b, view[pos : pos + b - a]))
        pos += b - a
    await fetch_pieces(bundle, pieces, policy=policy, batch_size=batch_size)
    return out


# ------------------------------------------------------------- partial loads


async def _with_index(fs: Any, bundle: Bundle, index: WeightIndex | None, run, policy, batch):
    """Run ``run(index)``; if guessed shard sizes prove wrong, re-size (HEAD) and rerun."""
    for attempt in (0, 1):
        if index is None:
            index = await load_index(fs, bundle, policy=policy, batch_size=batch)
        try:
            return await run(index)
        except SizeMismatch:
            if attempt or not bundle.sizes_guessed:
                raise
            _forget_sizes(bundle)
            await shard_sizes(fs, bundle, policy=policy, batch_size=batch, guess=False)
            index = None
    raise AssertionError("unreachable")  # pragma: no cover


async def fetch_weight_buffer(
    fs: Any,
    bundle: Bundle,
    name: str,
    start: int | None = None,
    end: int | None = None,
    *,
    index: WeightIndex | None = None,
    callback: Callback = DEFAULT_CALLBACK,
    policy: RetryPolicy | None = None,
    max_gap: int = DEFAULT_MAX_GAP,
) -> np.ndarray:
    """Stored bytes ``[start, end)`` of weight *name* in a new aligned uint8 array.

    Only the byte ranges needed are fetched. *start*/*end* follow Python
    slicing (negative values count from the end, out-of-range values clamp).

    Raises
    ------
    KeyError
        No such weight.
    """
    policy = policy or RetryPolicy()
    if index is not None:
        index[name]  # KeyError before any I/O

    async def run(idx: WeightIndex) -> np.ndarray:
        loc = idx[name]
        a, b, _ = slice(start, end).indices(loc.nbytes)
        out = np.empty(max(0, b - a), dtype=np.uint8)
        if b > a:
            await fetch_pieces(
                bundle,
                _segment_pieces(bundle, loc, a, b, memoryview(out)),
                callback=callback,
                policy=policy,
                max_gap=max_gap,
            )
        return out

    return await _with_index(fs, bundle, index, run, policy, None)


async def fetch_weight_bytes(
    fs: Any,
    bundle: Bundle,
    index: WeightIndex,
    name: str,
    start: int | None = None,
    end: int | None = None,
    *,
    callback: Callback = DEFAULT_CALLBACK,
    policy: RetryPolicy | None = None,
    max_gap: int = DEFAULT_MAX_GAP,
) -> bytes:
    """The stored bytes of weight *name* (or bytes ``[start, end)`` of them).

    Only the byte ranges needed are fetched; every reply is checked.

    Parameters
    ----------
    fs : AsyncFileSystem
        The filesystem of the bundle (``bundle.fs``).
    bundle : Bundle
        From :func:`open_bundle`.
    index : WeightIndex
        From :func:`load_index`. If the bundle had to be re-sized (shard
        sizes guessed from the manifest proved wrong), ``bundle.index`` holds
        the new one.
    name : str
        Weight name.
    start, end : int, optional
        Range within the weight's stored bytes, as in Python slicing.

    Raises
    ------
    KeyError
        No such weight.
    """
    out = await fetch_weight_buffer(
        fs,
        bundle,
        name,
        start,
        end,
        index=index,
        callback=callback,
        policy=policy,
        max_gap=max_gap,
    )
    return out.tobytes()


def _segment_pieces(bundle: Bundle, loc, a: int, b: int, dest: memoryview):
    """Pieces for bytes ``[a, b)`` of a weight, landing in *dest* (``b - a`` long)."""
    paths = bundle.shard_paths[loc.group]
    out, pos = [], 0  # pos: offset within the weight
    for shard, s, e in loc.segments:
        lo, hi = max(a, pos), min(b, pos + e - s)
        if hi > lo:
            out.append((paths[shard], s + lo - pos, s + hi - pos, dest[lo - a : hi - a]))
        pos += e - s
    return out


async def fetch_arrays(
    fs: Any,
    bundle: Bundle,
    names: Sequence[str],
    *,
    index: WeightIndex | None = None,
    batch_size: int | None = None,
    callback: Callback = DEFAULT_CALLBACK,
    policy: RetryPolicy | None = None,
    max_gap: int = DEFAULT_MAX_GAP,
    max_inflight: int = DEFAULT_MAX_INFLIGHT,
) -> dict[str, np.ndarray]:
    """The weights *names* as numpy arrays, fetching only their byte ranges.

    Raises
    ------
    KeyError
        Naming every unknown weight.
    """
    names = list(dict.fromkeys(names))
    policy = policy or RetryPolicy()

    async def run(idx: WeightIndex) -> dict[str, np.ndarray]:
        missing = [n for n in names if n not in idx]
        if missing:
            raise KeyError(
                f"no weights named {', '.join(map(repr, missing))} in {bundle.json_path}"
            )
        locs = [idx[n] for n in names]
        offsets, total = [], 0
        for loc in locs:
            offsets.append(total)
            total += -(-loc.nbytes // ALIGN) * ALIGN
        buffer = np.empty(total, dtype=np.uint8)
        view = memoryview(buffer)
        pieces = []
        for loc, at in zip(locs, offsets, strict=True):
            pieces += _segment_pieces(bundle, loc, 0, loc.nbytes, view[at : at + loc.nbytes])
        await fetch_pieces(
            bundle,
            pieces,
            max_gap=max_gap,
            batch_size=batch_size,
            callback=callback,
            policy=policy,
            max_inflight=max_inflight,
        )
        return {
            loc.spec.name: decode_weight(
                loc.spec, view[at : at + loc.nbytes], source=bundle.json_path
            )
            for loc, at in zip(locs, offsets, strict=True)
        }

    return await _with_index(fs, bundle, index, run, policy, batch_size)
