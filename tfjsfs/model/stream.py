"""Streaming: weights in manifest order as their shards arrive, memory bounded.

::

    for name, array in tfjsfs.iter_weights("s3://bucket/big-model"):
        store[name] = array          # each array owns its memory

Shards are fetched in manifest order, at most ``window`` at once, each
straight into the buffers of the tensors it holds (a tensor spanning shards
is filled piece by piece). A tensor is yielded as soon as the shard holding
its last bytes has arrived. Memory in use is the tensors of the shards in
flight plus those not yet complete: a few shards and the largest tensor,
not the model. Arrays yielded own their memory (no view keeps a shard alive).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fsspec.asyn import get_loop, sync
from fsspec.callbacks import Callback

from .._util.progress import progress_callback
from .._util.retry import RetryPolicy
from ..format.codec import decode_weight
from ..format.manifest import WeightIndex, WeightSpec
from ..io.bundle import Bundle, shard_sizes
from ..io.fetch import load_index
from ..io.opening import release, settings
from ..io.ranges import Block, Piece
from ..io.readers import LocalReader, Reader, reader_kind
from .cache import open_url

__all__ = ["DEFAULT_WINDOW", "iter_weights", "iter_weights_async"]

#: Shards in flight at once while streaming.
DEFAULT_WINDOW = 4


@dataclass
class _Step:
    """One shard to fetch, and the weights complete once it has arrived."""

    group: int
    shard: int
    path: str
    size: int
    starts: list[tuple[str, int]] = field(default_factory=list)  # (weight, segment no.)
    completes: list[str] = field(default_factory=list)


def _plan(bundle: Bundle, index: WeightIndex) -> list[_Step]:
    """One step per shard in manifest order; each weight completes with its last segment."""
    steps: list[_Step] = []
    for g, group in enumerate(bundle.doc.weights_manifest):
        first = len(steps)
        for i, path in enumerate(bundle.shard_paths[g]):
            steps.append(_Step(g, i, path, index.shard_sizes[g][i]))
        last = first  # where weights without bytes complete: with their predecessor
        for spec in group.weights:
            loc = index[spec.name]
            for n, (shard, _, _) in enumerate(loc.segments):
                steps[first + shard].starts.append((spec.name, n))
            if loc.segments:
                last = first + loc.segments[-1][0]
            if last < len(steps):
                steps[last].completes.append(spec.name)
            else:  # a group with no shards: only empty weights
                steps.append(_Step(g, -1, "", 0, [], [spec.name]))
                last = len(steps) - 1
    return steps


def _total(bundle: Bundle, index: WeightIndex, steps: list[_Step]) -> int:
    """Bytes the readers will report: whole shards, or only wanted bytes for local files."""
    total = 0
    for step in steps:
        if step.shard < 0 or not step.starts:
            continue
        if reader_kind(bundle.fs_for(step.path)) is LocalReader:
            for name, n in step.starts:
                _, s, e = index[name].segments[n]
                total += e - s
        else:
            total += step.size
    return total


class _Stream:
    """Fetches steps in order with a bounded window, filling per-tensor buffers."""

    def __init__(
        self,
        bundle: Bundle,
        index: WeightIndex,
        policy: RetryPolicy,
        callback: Callback,
        window: int,
    ):
        self.bundle = bundle
        self.index = index
        self.policy = policy
        self.callback = callback
        self.window = max(1, window)
        self.buffers: dict[str, np.ndarray] = {}
        self.readers: dict[type, Reader] = {}

    def _reader(self, path: str) -> Reader:
        kind = reader_kind(self.bundle.fs_for(path))
        reader = self.readers.get(kind)
        if reader is None:
            reader = self.readers[kind] = kind(self.bundle, self.policy, self.callback)
        return reader

    def _block(self, step: _Step) -> Block | None:
        if step.shard < 0 or not step.starts:
            return None
        pieces = []
        for name, n in step.starts:
            loc = self.index[name]
            buffer = self.buffers.get(name)
            if buffer is None:
                buffer = self.buffers[name] = np.empty(loc.nbytes, dtype=np.uint8)
            offset = sum(e - s for _, s, e in loc.segments[:n])
            _, s, e = loc.segments[n]
            pieces.append(Piece(s, e, memoryview(buffer)[offset : offset + e - s]))
        pieces.sort(key=lambda p: p.start)
        return Block(step.path, 0, step.size, pieces, True, step.size)

    async def _fetch(self, step: _Step) -> None:
        block = self._block(step)
        if block is not None:
            await self._reader(step.path).read(block)

    def _complete(self, step: _Step) -> list[tuple[str, np.ndarray]]:
        out = []
        for name in step.completes:
            spec: WeightSpec = self.index[name].spec
            buffer = self.buffers.pop(name, None)
            if buffer is None:
                buffer = np.empty(0, dtype=np.uint8)
            out.append(
                (name, decode_weight(spec, memoryview(buffer), source=self.bundle.json_path))
            )
        return out

    async def batches(self, steps: list[_Step]) -> AsyncIterator[list[tuple[str, np.ndarray]]]:
        """Lists of ``(name, array)``, one per shard, in manifest order."""
        pending: deque[tuple[asyncio.Task, _Step]] = deque()
        upcoming = iter(steps)

        def schedule() -> None:
            step = next(upcoming, None)
            if step is not None:
                pending.append((asyncio.ensure_future(self._fetch(step)), step))

        try:
            for _ in range(self.window):
                schedule()
            while pending:
                task, step = pending.popleft()
                await task
                schedule()
                yield self._complete(step)
        finally:
            for task, _ in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*(t for t, _ in pending), return_exceptions=True)


async def _batches(
    url: Any,
    window: int,
    callback: Callback | None,
    progress: bool | None,
    options: dict[str, Any],
) -> AsyncIterator[list[tuple[str, np.ndarray]]]:
    config = settings(**options)
    fs, bundle, owned = await open_url(url, config)
    try:
        await shard_sizes(
            fs, bundle, policy=config.policy, batch_size=config.batch_size, guess=False
        )
        index = await load_index(fs, bundle, policy=config.policy, batch_size=config.batch_size)
        steps = _plan(bundle, index)
        label = str(url).rstrip("/").rsplit("/", 1)[-1]
        with progress_callback(callback, progress, label) as cb:
            cb.set_size(_total(bundle, index, steps))
            stream = _Stream(bundle, index, config.policy, cb, window)
            async for batch in stream.batches(steps):
                yield batch
    finally:
        if owned:
            await release(fs, bundle)


async def iter_weights_async(
    url: Any,
    *,
    window: int = DEFAULT_WINDOW,
    callback: Callback | None = None,
    progress: bool | None = None,
    **options: Any,
) -> AsyncIterator[tuple[str, np.ndarray]]:
    """Async twin of :func:`iter_weights`: ``async for name, array in …``."""
    agen = _batches(url, window, callback, progress, options)
    try:
        async for batch in agen:
            batch.reverse()
            while batch:  # drop each array from the batch as it is handed over
                yield batch.pop()
    finally:
        await agen.aclose()


def iter_weights(
    url: Any,
    *,
    window: int = DEFAULT_WINDOW,
    callback: Callback | None = None,
    progress: bool | None = None,
    **options: Any,
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(name, array)`` in manifest order as the shards arrive.

    Memory stays at about ``window`` shards plus the largest tensor, so
    models larger than memory can be copied or converted tensor by tensor.
    Every array owns its memory.

    Parameters
    ----------
    url : str or os.PathLike
        Any URL :func:`tfjsfs.load_model` takes.
    window : int
        Shards in flight at once (default 4).
    callback : fsspec.callbacks.Callback, optional
        Byte progress (the total is every shard's bytes).
    progress : bool, optional
        Show a tqdm bar (default: when stderr is a terminal).
    **options
        As for :func:`tfjsfs.load_model`.

    Yields
    ------
    (str, numpy.ndarray)
    """
    loop = get_loop()
    agen = _batches(url, window, callback, progress, options)
    try:
        while True:
            try:
                batch = sync(loop, agen.__anext__)
            except StopAsyncIteration:
                return
            batch.reverse()
            while batch:  # drop each array from the batch as it is handed over
                yield batch.pop()
    finally:
        sync(loop, agen.aclose)
