"""Copying one bundle between two async filesystems, shard by shard.

The engine behind :func:`tfjsfs.copy_model`. Three plans, chosen by what the
caller asks for:

``as-is``
    Every shard is copied byte for byte under its own name; model.json is
    copied verbatim when no shard had to be renamed.
``reshard``
    The bytes of each group are re-cut every ``shard_size`` bytes (the
    converter's blind cuts); each new shard is assembled from range reads of
    the source shards, so nothing is decoded and memory holds a few shards.
``re-encode``
    Weights are quantized, re-quantized or dequantized. One group at a time is
    fetched, decoded and encoded again, then cut into shards; memory holds one
    source group and its new bytes.

Memory and concurrency are bounded by ``concurrency`` shards in flight. Writes
go through :func:`tfjsfs.io.writer.write_bundle` (shards first, model.json last),
and, when verifying, every shard is read back and its length and BLAKE2b
digest compared *before* model.json is published, so a bad copy is never
visible. model.json is read back after publication.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fsspec.callbacks import DEFAULT_CALLBACK, Callback

from .._util.concurrency import gather_bounded
from .._util.retry import RetryPolicy, with_retries
from ..errors import ShardMissingError, TransferError, WeightDataError
from ..format.codec import (
    decode_weight,
    quantization_plan,
    reencode_weight,
    string_lengths,
    weight_extents,
)
from ..format.dtypes import DTYPE_SIZES, QUANTIZED_SIZES
from ..format.layouts import DEFAULT_SHARD_SIZE, BundlePlan, ShardPlan, shard_name
from ..format.manifest import (
    ModelJSON,
    WeightGroup,
    WeightIndex,
    WeightSpec,
)
from .bundle import Bundle, shard_sizes
from .fetch import open_bundle
from .location import name_in_folder
from .writer import DEFAULT_WRITE_CONCURRENCY, write_bundle

__all__ = [
    "CopyOutcome",
    "copy_bundle",
    "default_shard_size",
    "digest",
    "open_source",
    "same_location",
]


def digest(data: Any) -> bytes:
    """BLAKE2b-128 of a bytes-like object."""
    return hashlib.blake2b(memoryview(data).cast("B"), digest_size=16).digest()


async def open_source(
    fs: Any, path: str, *, allow_outside: bool = False, policy: RetryPolicy | None = None
) -> Bundle:
    """Locate, read and size the bundle at *path*; refuse one with short groups.

    The bundle comes back ready to copy: ``json_bytes`` (model.json as read),
    ``sizes`` (every shard's) and ``index`` (every weight placed, the lengths
    of string weights walked from their prefixes).

    Raises
    ------
    ModelNotFoundError, ManifestError, UnsafePathError, ShardMissingError, WeightDataError
    """
    policy = policy or RetryPolicy()
    bundle = await open_bundle(fs, path, allow_outside=allow_outside, policy=policy)
    sizes = await shard_sizes(fs, bundle, policy=policy, guess=False)
    groups = bundle.doc.weights_manifest
    index = WeightIndex(groups, sizes, bundle.json_path)  # short groups
    if index.unresolved:  # string weights: walk their length prefixes, a group at a time
        reader = _Reader(bundle, DEFAULT_WRITE_CONCURRENCY, policy)
        lengths: dict[str, int] = {}
        for g, group in enumerate(groups):
            if any(s.byte_length is None for s in group.weights):
                lengths.update(await _string_lengths(reader, bundle, g))
        index = WeightIndex(groups, sizes, bundle.json_path, lengths)
    bundle.index = index
    return bundle


async def _retry(policy: RetryPolicy, what: str, call) -> Any:
    async def attempt(_: int) -> Any:
        return await call()

    return await with_retries(attempt, policy, what, timeout=policy.timeout)


# ------------------------------------------------------------------ reading


class _Reader:
    """Reads shards and byte ranges of a source group's stream, with retries."""

    def __init__(self, src: Bundle, concurrency: int, policy: RetryPolicy | None = None):
        self.src, self.concurrency = src, concurrency
        self.policy = policy or RetryPolicy()
        self.bounds = []
        for sizes in src.sizes:
            bounds = [0]
            for size in sizes:
                bounds.append(bounds[-1] + size)
            self.bounds.append(bounds)

    async def shard(self, g: int, i: int) -> bytes:
        """The whole shard *i* of group *g*, length-checked."""
        path, expected = self.src.shard_paths[g][i], self.src.sizes[g][i]
        data = await self._cat(path)
        if len(data) != expected:
            raise WeightDataError(
                f"{self.src.json_path}: weight shard {path} changed while copying: "
                f"sized {expected} bytes, read {len(data)}"
            )
        return data

    async def _cat(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        fs = self.src.fs_for(path)
        try:
            return await _retry(
                self.policy, path, lambda: fs._cat_file(path, start=start, end=end)
            )
        except FileNotFoundError:
            raise ShardMissingError(
                f"{self.src.json_path}: weight shard {path} disappeared while copying"
            ) from None

    async def range(self, g: int, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of group *g*'s stream (range reads per shard)."""
        bounds, paths = self.bounds[g], self.src.shard_paths[g]
        pieces = []
        for i in range(len(paths)):
            lo, hi = max(start, bounds[i]), min(end, bounds[i + 1])
            if lo >= hi:
                continue
            if lo == bounds[i] and hi == bounds[i + 1]:
                pieces.append(self.shard(g, i))
            else:
                pieces.append(self._cat(paths[i], lo - bounds[i], hi - bounds[i]))
        data = b"".join(await asyncio.gather(*pieces))
        if len(data) != end - start:
            raise WeightDataError(
                f"{self.src.json_path}: group {g + 1} bytes {start}..{end} read as "
                f"{len(data)} bytes (a shard changed while copying)"
            )
        return data

    async def group(self, g: int) -> bytearray:
        """The whole stream of group *g* in one buffer."""
        buffer = bytearray(self.bounds[g][-1])
        view = memoryview(buffer)

        async def one(i: int) -> None:
            lo, hi = self.bounds[g][i], self.bounds[g][i + 1]
            view[lo:hi] = await self.shard(g, i)

        await gather_bounded(
            (one(i) for i in range(len(self.src.shard_paths[g]))), self.concurrency
        )
        return buffer


# ------------------------------------------------------------------ planning


def _keep_name(path: str) -> str | None:
    """The destination name for a source shard path, or None to rename it."""
    name = name_in_folder(path)
    return path if name is not None and path == f"./{name}" else name


def _plan_as_is(src: Bundle, json_name: str) -> tuple[BundlePlan, dict, bool]:
    groups, shards, sources, renamed = [], [], {}, False
    base = 0
    for g, group in enumerate(src.doc.weights_manifest):
        paths, offset, count = [], base, len(group.paths)
        for i, path in enumerate(group.paths):
            name = _keep_name(path)
            if name is None:
                name, renamed = shard_name(g, i, count), True
            elif name != path:
                renamed = True
            shard = ShardPlan(name, g, offset, offset + src.sizes[g][i])
            sources[(g, shard.start)] = i
            shards.append(shard)
            paths.append(name)
            offset = shard.end
        base = offset
        groups.append(WeightGroup(tuple(paths), group.weights, group.extra))
    return BundlePlan(json_name, tuple(groups), tuple(shards)), sources, renamed


def _plan_cuts(
    totals: Sequence[int],
    specs: Sequence[Sequence[WeightSpec]],
    extras: Sequence[Mapping[str, Any]],
    json_name: str,
    shard_size: int,
) -> BundlePlan:
    groups, shards, base = [], [], 0
    for g, total in enumerate(totals):
        count = math.ceil(total / shard_size)
        paths = []
        for i in range(count):
            name = shard_name(g, i, count)
            cut = base + i * shard_size
            shards.append(ShardPlan(name, g, cut, min(base + total, cut + shard_size)))
            paths.append(name)
        base += total
        groups.append(WeightGroup(tuple(paths), tuple(specs[g]), extras[g]))
    return BundlePlan(json_name, tuple(groups), tuple(shards))


def default_shard_size(src: Bundle) -> int:
    """The source's shard size when it is sharded, else the converter default."""
    sharded = [max(sizes) for sizes in src.sizes if len(sizes) > 1]
    return max(sharded) if sharded else DEFAULT_SHARD_SIZE


@dataclass
class _Recode:
    """What re-encoding does to each weight of a group."""

    plan: Mapping[str, str]
    dequantize: bool

    def target(self, spec: WeightSpec) -> str | bool | None:
        """False to keep the stored bytes, else the new quantization dtype (or None)."""
        want = self.plan.get(spec.name) if spec.dtype == "float32" else None
        q = spec.quantization
        if q is None:
            return want if want is not None else False
        if want is not None:
            return False if want == q.dtype else want
        return None if self.dequantize else False

    def new_length(self, spec: WeightSpec, old: int | None) -> int | None:
        target = self.target(spec)
        if target is False:
            return old
        itemsize = QUANTIZED_SIZES[target] if target else DTYPE_SIZES[spec.dtype]
        return spec.size * itemsize

    def changes(self, spec: WeightSpec) -> bool:
        return self.target(spec) is not False

    def group(self, specs: Sequence[WeightSpec], buf: Any, source: str):
        """New specs and bytes of one group."""
        view = memoryview(buf).cast("B")
        new_specs, chunks = [], []
        for spec, start, end in weight_extents(specs, view, where=source):
            raw = view[start:end]
            target = self.target(spec)
            if target is False:
                new_specs.append(spec)
                chunks.append(raw)
                continue
            value = decode_weight(spec, raw, source=source)
            new, data = reencode_weight(spec, value, target or None)
            new_specs.append(new)
            chunks.extend(data)
        return new_specs, b"".join(memoryview(c).cast("B") for c in chunks)


class _GroupSlot:
    """Holds one re-encoded group at a time; freed once all its shards are handed out."""

    def __init__(self, make, shards_per_group: Sequence[int]):
        self._make = make
        self._left = list(shards_per_group)
        self._data: dict[int, bytes] = {}
        self._locks = [asyncio.Lock() for _ in shards_per_group]
        self._slot = asyncio.Semaphore(1)

    async def slice(self, g: int, start: int, end: int) -> bytes:
        async with self._locks[g]:
            if g not in self._data:
                await self._slot.acquire()
                try:
                    self._data[g] = await self._make(g)
                except BaseException:
                    self._slot.release()
                    raise
        data = self._data[g][start:end]
        self._left[g] -= 1
        if self._left[g] == 0:
            del self._data[g]
            self._slot.release()
        return data


# ------------------------------------------------------------------ copying


@dataclass
class CopyOutcome:
    """What :func:`copy_bundle` wrote."""

    json_path: str
    files: list[str]
    doc: ModelJSON
    weight_bytes: int


async def _string_lengths(reader: _Reader, src: Bundle, g: int) -> dict[str, int]:
    """Byte lengths of a group's string weights (reads the group once)."""
    specs = src.doc.weights_manifest[g].weights
    return string_lengths(specs, await reader.group(g), where=src.json_path)


def _bases(totals: Sequence[int]) -> list[int]:
    out, base = [], 0
    for total in totals:
        out.append(base)
        base += total
    return out


class _Job:
    """One copy: the plan, where each planned shard's bytes come from, the final specs."""

    def __init__(self, src: Bundle, reader: _Reader, recode: _Recode):
        self.src, self.reader, self.recode = src, reader, recode
        self.renamed = True
        self.specs = [list(g.weights) for g in src.doc.weights_manifest]
        self.plan: BundlePlan | None = None

    def as_is(self, json_name: str) -> None:
        """Same shards, same names (unsafe or query-carrying names are cleaned)."""
        self.plan, sources, self.renamed = _plan_as_is(self.src, json_name)

        async def source(shard: ShardPlan) -> bytes:
            return await self.reader.shard(shard.group, sources[(shard.group, shard.start)])

        self.source = source

    def reshard(self, json_name: str, shard_size: int) -> None:
        """Same bytes, new blind cuts, assembled from range reads."""
        doc = self.src.doc
        totals = [sum(sizes) for sizes in self.src.sizes]
        self.plan = _plan_cuts(
            totals, self.specs, [g.extra for g in doc.weights_manifest], json_name, shard_size
        )
        bases = _bases(totals)

        async def source(shard: ShardPlan) -> bytes:
            base = bases[shard.group]
            return await self.reader.range(shard.group, shard.start - base, shard.end - base)

        self.source = source

    async def re_encode(self, json_name: str, shard_size: int) -> None:
        """New weight encodings, one group in memory at a time."""
        src, recode, doc = self.src, self.recode, self.src.doc
        totals = []
        for group in doc.weights_manifest:
            sizes = [recode.new_length(s, src.index[s.name].nbytes) for s in group.weights]
            totals.append(sum(sizes))
        extras = [g.extra for g in doc.weights_manifest]
        self.plan = _plan_cuts(totals, self.specs, extras, json_name, shard_size)
        bases = _bases(totals)

        async def make(g: int) -> bytes:
            buf = await self.reader.group(g)
            specs, data = await asyncio.to_thread(
                recode.group, doc.weights_manifest[g].weights, buf, src.json_path
            )
            if len(data) != totals[g]:
                raise WeightDataError(
                    f"{src.json_path}: group {g + 1} re-encoded to {len(data)} bytes, "
                    f"planned {totals[g]}"
                )
            self.specs[g] = specs
            return data

        counts = [sum(1 for s in self.plan.shards if s.group == g) for g in range(len(totals))]
        slot = _GroupSlot(make, counts)

        async def source(shard: ShardPlan) -> bytes:
            base = bases[shard.group]
            return await slot.slice(shard.group, shard.start - base, shard.end - base)

        self.source = source

    def render(self, groups: Sequence[WeightGroup]) -> bytes:
        """model.json for the final groups: the source's own bytes when nothing changed."""
        doc = self.src.doc
        same_paths = [g.paths for g in groups] == [g.paths for g in doc.weights_manifest]
        if not self.renamed and same_paths and self.src.json_bytes is not None:
            return self.src.json_bytes
        final = tuple(
            WeightGroup(g.paths, tuple(self.specs[i]), g.extra) for i, g in enumerate(groups)
        )
        return dataclasses.replace(doc, weights_manifest=final).dumps()


async def copy_bundle(
    src: Bundle,
    dfs: Any,
    folder: str,
    json_name: str,
    *,
    overwrite: bool = False,
    shard_size: int | None = None,
    quantize: str | Mapping[str, Any] | None = None,
    dequantize: bool = False,
    verify: bool = True,
    concurrency: int = DEFAULT_WRITE_CONCURRENCY,
    callback: Callback = DEFAULT_CALLBACK,
    annotate: Callable[[ModelJSON, Mapping[str, int]], ModelJSON] | None = None,
) -> CopyOutcome:
    """Copy *src* into *folder* of the async filesystem *dfs*; see the module docstring.

    *annotate*, if given, is called with the final model.json and the size of
    every shard written (by name relative to *folder*) and returns the
    model.json to publish (e.g. with ``userDefinedMetadata`` added).

    Raises
    ------
    TransferError
        A shard or model.json read back differs from what was written.
    BundleExistsError
        The destination exists and *overwrite* is false.
    """
    reader = _Reader(src, concurrency)
    names = [s.name for s in src.doc.weight_specs]
    recode = _Recode(quantization_plan(names, quantize), dequantize)
    job = _Job(src, reader, recode)
    if any(recode.changes(s) for s in src.doc.weight_specs):
        await job.re_encode(json_name, shard_size or default_shard_size(src))
    elif shard_size is not None:
        job.reshard(json_name, shard_size)
    else:
        job.as_is(json_name)
    written: dict[str, tuple[int, bytes]] = {}
    folder = folder.rstrip("/")

    async def shard_bytes(shard: ShardPlan) -> bytes:
        data = await job.source(shard)
        path = posixpath.join(folder, shard.file_name)
        written[path] = (len(data), digest(data) if verify else b"")
        if "/" in shard.file_name:
            await dfs._makedirs(posixpath.dirname(path), exist_ok=True)
        return data

    rendered: list[bytes] = []

    def render(groups: Sequence[WeightGroup], json_path: str) -> bytes:
        data = job.render(groups)
        if annotate is not None:
            sizes = {posixpath.relpath(p, folder): n for p, (n, _) in written.items()}
            data = annotate(ModelJSON.parse(data, json_path), sizes).dumps()
        rendered.append(data)
        return rendered[-1]

    async def check_shards(paths: Sequence[str]) -> None:
        await gather_bounded((_check_one(dfs, p, written) for p in paths), concurrency)

    json_path, files = await write_bundle(
        dfs,
        folder,
        job.plan,
        shard_bytes,
        render,
        overwrite=overwrite,
        concurrency=concurrency,
        callback=callback,
        before_publish=check_shards if verify else None,
    )
    if verify:
        back = bytes(await dfs._cat_file(json_path))
        if back != rendered[-1]:
            raise TransferError(
                f"{json_path} read back as {len(back)} bytes that differ from the "
                f"{len(rendered[-1])} bytes written"
            )
    final = ModelJSON.parse(rendered[-1], json_path)
    return CopyOutcome(json_path, files, final, sum(s.nbytes for s in job.plan.shards))


async def _check_one(fs: Any, path: str, written: Mapping[str, tuple[int, bytes]]) -> None:
    nbytes, expected = written[path]
    try:
        data = await fs._cat_file(path)
    except FileNotFoundError:
        raise TransferError(f"{path} was written but cannot be read back") from None
    if len(data) != nbytes:
        raise TransferError(f"{path}: wrote {nbytes} bytes, read back {len(data)}")
    if expected and digest(data) != expected:
        raise TransferError(f"{path}: {nbytes} bytes read back with a different checksum")


def same_location(afs: Any, apath: str, bfs: Any, bpath: str) -> bool:
    """Whether two (filesystem, path) pairs name the same place."""
    a = getattr(afs, "sync_fs", afs)
    b = getattr(bfs, "sync_fs", bfs)
    if type(a) is not type(b):
        return False
    try:
        same_fs = a is b or a == b
    except Exception:
        same_fs = False
    if not same_fs:
        return False
    return posixpath.normpath(apath.rstrip("/")) == posixpath.normpath(bpath.rstrip("/"))
