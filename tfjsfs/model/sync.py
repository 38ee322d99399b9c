"""Incremental, torn-free sync of every bundle under one prefix to another.

The engine behind ``tfjsfs sync`` and :func:`sync_models`.

**Diff from metadata.** One recursive listing of each tree gives every file's
size and the store's own identity for it (S3 ETag, GCS md5Hash, local
modification time: :func:`tfjsfs._util.entries.entity_tag`). Each synced
model.json records, in ``userDefinedMetadata["tfjsfs:sync"]``, the identity of
the source model.json and of every source shard it was made from. So a model
whose source files still carry the recorded identities, and whose destination
shards are all listed at their recorded sizes, is *unchanged* after one small
read (the destination model.json) and no shard request at all.

**Shard-level transfer.** A new or changed model sends only the shards whose
source identity differs from what the destination recorded (or, with
``checksum=True``, whose bytes differ). A sent shard gets a name derived from
its source identity (``group1-shard1of2.<tag>.bin``), so a name never holds two
different contents: a reader holding the previous model.json keeps reading its
own shards, and after an interruption a second run finds what already
arrived by name and size and does not send it again. The destination
model.json is published last and atomically (:func:`tfjsfs.io.writer.publish`),
then the shards only the previous version used are deleted.

**Deletion.** With ``delete=True``, destination models absent from the source
are removed model.json first (:func:`tfjsfs.model.manage.remove_model`).
"""

from __future__ import annotations

import bisect
import dataclasses
import fnmatch
import hashlib
import json
import os
import posixpath
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fsspec.asyn import get_loop, sync
from fsspec.callbacks import DEFAULT_CALLBACK, Callback

from .._util.concurrency import gather_bounded, sync_twin
from .._util.entries import content_md5, entity_tag
from .._util.retry import RetryPolicy, with_retries
from ..errors import (
    ManifestError,
    ShardMissingError,
    TFJSError,
    TransferError,
    WeightDataError,
)
from ..format.layouts import MODEL_JSON
from ..format.manifest import ModelJSON, WeightGroup
from ..format.summary import human_size
from ..io.location import locate_shard
from ..io.resolve import resolve
from ..io.transfer import copy_bundle, digest, open_source
from ..io.writer import DEFAULT_WRITE_CONCURRENCY, publish
from . import bulk
from .manage import _check_shard_size, find_bundles, remove_model_async

__all__ = [
    "SYNC_KEY",
    "ModelSync",
    "SyncReport",
    "sync_models",
    "sync_models_async",
]

#: key of the sync record in a destination model.json's ``userDefinedMetadata``.
SYNC_KEY = "tfjsfs:sync"
#: models planned or transferred at once.
DEFAULT_MODEL_CONCURRENCY = 8

NEW, CHANGED, UNCHANGED, DELETED, ERROR = "new", "changed", "unchanged", "deleted", "error"

#: a shard name this module made: ``<stem>.<12 hex>[.<ext>]``.
_TAGGED = re.compile(r"^(?P<stem>.+)\.(?P<tag>[0-9a-f]{12})(?P<ext>\.[^./]+)?$")


# ------------------------------------------------------------------ results


@dataclass
class ModelSync:
    """What sync did (or, dry, would do) to one model.

    Attributes
    ----------
    name : str
        The model's path under both prefixes (``"."`` for the prefix itself).
    action : {"new", "changed", "unchanged", "deleted", "error"}
    src, dst : str
        Inner paths of the source and destination model JSON.
    shards : int
        Shards of the model.
    sent : int
        Shards sent (or to send).
    bytes_sent : int
        Shard bytes sent (or to send).
    kept : int
        Shards already in the destination and reused.
    resumed : int
        Of those, shards an interrupted run had sent.
    removed : list of str
        Destination files deleted (old shards, or the whole model).
    error : str or None
    """

    name: str
    action: str
    src: str = ""
    dst: str = ""
    shards: int = 0
    sent: int = 0
    bytes_sent: int = 0
    kept: int = 0
    resumed: int = 0
    removed: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclass
class SyncReport:
    """The outcome of one sync: a :class:`ModelSync` per model, and timing.

    Attributes
    ----------
    models : list of ModelSync
        Sorted by name.
    seconds : float
    dry_run : bool
    """

    models: list[ModelSync]
    seconds: float = 0.0
    dry_run: bool = False

    def count(self, action: str) -> int:
        """Models with this action."""
        return sum(1 for m in self.models if m.action == action)

    @property
    def bytes_sent(self) -> int:
        """Shard bytes sent (or, dry, to send)."""
        return sum(m.bytes_sent for m in self.models)

    @property
    def ok(self) -> bool:
        """No model failed."""
        return not self.count(ERROR)

    def summary(self) -> str:
        """One line: ``12 new, 3 changed (41.2 MiB sent), 1,200 unchanged, 2 deleted in 8.4 s``."""
        verb = "to send" if self.dry_run else "sent"
        line = (
            f"{self.count(NEW):,} new, {self.count(CHANGED):,} changed "
            f"({human_size(self.bytes_sent)} {verb}), {self.count(UNCHANGED):,} unchanged, "
            f"{self.count(DELETED):,} {'to delete' if self.dry_run else 'deleted'}"
        )
        if self.count(ERROR):
            line += f", {self.count(ERROR):,} failed"
        return f"{line} in {self.seconds:.1f} s" + (" (dry run)" if self.dry_run else "")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: counts, bytes, seconds and every model."""
        counts = {a: self.count(a) for a in (NEW, CHANGED, UNCHANGED, DELETED, ERROR)}
        return {
            **counts,
            "bytes_sent": self.bytes_sent,
            "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
            "summary": self.summary(),
            "models": [m.to_json() for m in self.models],
        }


# ------------------------------------------------------------------ helpers


def _rel(root: str, path: str) -> str:
    """*path* relative to *root* (inner paths)."""
    root = root.rstrip("/")
    if not root:
        return path.lstrip("/")
    if path == root:
        return ""
    return path[len(root) + 1 :] if path.startswith(root + "/") else path


def _under(root: str, rel: str) -> str:
    root = root.rstrip("/")
    return posixpath.join(root, rel) if root else rel


def model_name(root: str, json_path: str) -> str:
    """A model's name under *root*: its folder for model.json, else its JSON file."""
    rel = _rel(root, json_path)
    if posixpath.basename(rel) == MODEL_JSON:
        return posixpath.dirname(rel) or "."
    return rel


def _selected(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    if include and not any(fnmatch.fnmatchcase(name, p) for p in include):
        return False
    return not any(fnmatch.fnmatchcase(name, p) for p in exclude)


def _below(files: Mapping[str, dict], names: Sequence[str], folder: str) -> dict[str, dict]:
    """Entries of *files* directly in or below *folder* (*names* sorted)."""
    if not folder:
        return dict(files)
    lo, hi = bisect.bisect_left(names, folder + "/"), bisect.bisect_left(names, folder + "0")
    return {p: files[p] for p in names[lo:hi]}


def _shard_rel(path: str, source: str) -> str:
    """A manifest shard path as a clean relative name (query dropped), or UnsafePathError."""
    return locate_shard("", path, kind="key", source=source)


def _tag(stamp: str | None, size: int, content_hash: str | None = None) -> str:
    """12 hex digits naming one state of a source shard."""
    basis = f"{stamp}|{size}" if stamp is not None else f"hash|{content_hash}"
    return hashlib.blake2b(basis.encode(), digest_size=6).hexdigest()


def _untagged(rel: str) -> str:
    """A shard name without a tag this module added."""
    folder, name = posixpath.split(rel)
    match = _TAGGED.match(name)
    if match:
        name = match.group("stem") + (match.group("ext") or "")
    return posixpath.join(folder, name) if folder else name


def tagged_name(rel: str, tag: str) -> str:
    """``group1-shard1of2.bin`` → ``group1-shard1of2.<tag>.bin``."""
    folder, name = posixpath.split(_untagged(rel))
    stem, ext = posixpath.splitext(name)
    name = f"{stem}.{tag}{ext}" if ext else f"{name}.{tag}"
    return posixpath.join(folder, name) if folder else name


def _size(entry: Mapping[str, Any] | None) -> int | None:
    if entry is None or entry.get("size") is None:
        return None
    return int(entry["size"])


def _record_of(doc: ModelJSON | None) -> dict | None:
    """The sync record of a destination model.json, if it has a sound one."""
    meta = doc.user_defined_metadata if doc is not None else None
    rec = meta.get(SYNC_KEY) if isinstance(meta, dict) else None
    if not isinstance(rec, dict) or rec.get("version") != 1:
        return None
    if not isinstance(rec.get("source"), dict) or not isinstance(rec.get("shards"), dict):
        return None
    return rec


def _live_paths(doc: ModelJSON | None, json_path: str) -> set[str]:
    out = set()
    for group in doc.weights_manifest if doc else ():
        for path in group.paths:
            try:
                out.add(_shard_rel(path, json_path))
            except TFJSError:
                continue
    return out


# ------------------------------------------------------------------ context


@dataclass
class _Options:
    dry_run: bool = False
    delete: bool = False
    checksum: bool = False
    verify: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    concurrency: int = DEFAULT_WRITE_CONCURRENCY
    rewrite: dict | None = None


@dataclass
class _Item:
    """One source model and the listing entries it needs, on both sides (picklable)."""

    name: str
    src_json: str
    dst_json: str
    src_files: dict[str, dict]
    dst_files: dict[str, dict]


@dataclass
class _Move:
    """One source shard and where it goes."""

    src: str
    rel: str
    size: int
    stamp: str | None
    dst_rel: str | None
    send: bool
    record: dict


@dataclass
class _Plan:
    item: _Item
    result: ModelSync
    doc: ModelJSON | None = None
    raw: bytes = b""
    moves: list[_Move] = field(default_factory=list)
    groups: list[list[_Move]] = field(default_factory=list)
    live_raw: bytes | None = None
    live_paths: set[str] = field(default_factory=set)
    stale: list[str] = field(default_factory=list)
    sources: dict[str, dict] = field(default_factory=dict)
    replaced: list[str] = field(default_factory=list)


class _Context:
    """Both filesystems and the options; one per process (rebuilt on Dask workers)."""

    def __init__(self, sfs: Any, dfs: Any, opts: _Options, callback: Callback):
        self.sfs, self.dfs, self.opts, self.callback = sfs, dfs, opts, callback
        self.policy = RetryPolicy()
        self.hashes: dict[tuple[str, str], str] = {}

    async def read(self, side: str, path: str) -> bytes:
        fs = self.sfs if side == "src" else self.dfs

        async def attempt(_: int) -> bytes:
            return bytes(await fs._cat_file(path))

        return await with_retries(attempt, self.policy, path, timeout=self.policy.timeout)

    async def content_hash(self, side: str, path: str) -> str:
        key = (side, path)
        if key not in self.hashes:
            self.hashes[key] = digest(await self.read(side, path)).hex()
        return self.hashes[key]


# ------------------------------------------------------------------ planning


def _unchanged(rec: dict, live_paths: set[str], item: _Item, opts: _Options) -> bool:
    """Whether the record proves the destination is the source's current state."""
    if (rec.get("rewrite") or None) != (opts.rewrite or None):
        return False
    src_entry = item.src_files.get(item.src_json)
    source = rec["source"]
    stamp = entity_tag(src_entry or {})
    if stamp is None or source.get("stamp") != stamp or source.get("size") != _size(src_entry):
        return False
    shards = rec["shards"]
    if set(shards) != live_paths or not all(isinstance(r, dict) for r in shards.values()):
        return False
    sources = rec.get("sources")  # rewritten copies list their sources apart
    if not isinstance(sources, dict):
        sources = {str(r.get("source")): r for r in shards.values()}
    sfolder, dfolder = posixpath.dirname(item.src_json), posixpath.dirname(item.dst_json)
    for rel, r in sources.items():
        src = item.src_files.get(posixpath.join(sfolder, rel))
        stamp = entity_tag(src or {})
        if not isinstance(r, dict) or _size(src) != r.get("size") or stamp is None:
            return False
        if stamp != r.get("stamp"):
            return False
    for drel, r in shards.items():
        dst = item.dst_files.get(posixpath.join(dfolder, drel))
        if dst is None or _size(dst) != r.get("size"):
            return False
        if "source" in r:
            src = item.src_files.get(posixpath.join(sfolder, str(r["source"])))
            md5s = content_md5(src or {}), content_md5(dst)
            if None not in md5s and md5s[0] != md5s[1]:
                return False
    return True


async def _same_content(ctx: _Context, src: str, dst: str) -> bool:
    a, b = await ctx.content_hash("src", src), await ctx.content_hash("dst", dst)
    return a == b


async def _match(ctx: _Context, plan: _Plan, rec: dict | None, rel: str, src: str) -> _Move:
    """Where source shard *rel* goes: reused, resumed, or sent under a tagged name."""
    item, opts = plan.item, ctx.opts
    entry = item.src_files[src]
    size, stamp = int(entry["size"]), entity_tag(entry)
    dfolder = posixpath.dirname(item.dst_json)
    record = {"source": rel, "size": size, "stamp": stamp}

    def at(drel: str) -> dict | None:
        dentry = item.dst_files.get(posixpath.join(dfolder, drel))
        return dentry if _size(dentry) == size else None

    # a shard the destination recorded as made from this very source state
    for drel, r in ((rec or {}).get("shards") or {}).items():
        if not isinstance(r, dict) or drel not in plan.live_paths or at(drel) is None:
            continue
        if r.get("source") != rel or r.get("size") != size:
            continue
        if opts.checksum:
            if await _same_content(ctx, src, posixpath.join(dfolder, drel)):
                return _Move(src, rel, size, stamp, drel, False, {**r, **record})
        elif stamp is not None and r.get("stamp") == stamp:
            return _Move(src, rel, size, stamp, drel, False, dict(r))
    # the same name in a destination copied by other means: equal checksums, or bytes
    if rel in plan.live_paths and rel not in ((rec or {}).get("shards") or {}):
        dentry = at(rel)
        if dentry is not None:
            md5s = content_md5(entry), content_md5(dentry)
            same = None not in md5s and md5s[0] == md5s[1]
            if not same and opts.checksum:
                same = await _same_content(ctx, src, posixpath.join(dfolder, rel))
            if same:
                return _Move(src, rel, size, stamp, rel, False, record)
    if stamp is None:  # no identity without the bytes: named when sent
        return _Move(src, rel, size, stamp, None, True, record)
    target = tagged_name(rel, _tag(stamp, size))
    # already there: kept, or sent by an interrupted run
    there = at(target) is not None
    if there and (
        not opts.checksum or await _same_content(ctx, src, posixpath.join(dfolder, target))
    ):
        return _Move(src, rel, size, stamp, target, False, record)
    return _Move(src, rel, size, stamp, target, True, record)


async def _plan(ctx: _Context, item: _Item) -> _Plan:
    """Decide new / changed / unchanged for one model, reading at most its JSON files."""
    result = ModelSync(item.name, NEW, item.src_json, item.dst_json)
    plan = _Plan(item, result)
    rec = None
    if item.dst_json in item.dst_files:
        plan.live_raw = await ctx.read("dst", item.dst_json)
        result.action = CHANGED
        try:
            live = ModelJSON.parse(plan.live_raw, item.dst_json, require_topology=False)
        except ManifestError:
            live = None
        plan.live_paths = _live_paths(live, item.dst_json)
        rec = _record_of(live)
        fast = not ctx.opts.checksum or ctx.opts.rewrite  # rewrites keep no source hashes
        plan.replaced = [str(r) for r in rec.get("replaced") or ()] if rec else []
        if rec is not None and fast and _unchanged(rec, plan.live_paths, item, ctx.opts):
            result.action = UNCHANGED
            result.shards = result.kept = len(rec["shards"])
            plan.stale = _stale(plan, plan.live_paths)  # a sweep an interrupted run missed
            return plan
    plan.raw = await ctx.read("src", item.src_json)
    plan.doc = doc = ModelJSON.parse(plan.raw, item.src_json)
    if ctx.opts.rewrite:
        return await _plan_rewrite(ctx, plan)
    sfolder = posixpath.dirname(item.src_json)
    by_rel: dict[str, _Move] = {}
    for group in doc.weights_manifest:
        moves = []
        for path in group.paths:
            rel = _shard_rel(path, item.src_json)
            if rel not in by_rel:
                src = posixpath.join(sfolder, rel)
                if _size(item.src_files.get(src)) is None:
                    raise ShardMissingError(
                        f"{item.src_json}: weight shard {src} is not in the source listing"
                    )
                by_rel[rel] = await _match(ctx, plan, rec, rel, src)
            moves.append(by_rel[rel])
        expected, listed = group.expected_bytes, sum(m.size for m in moves)
        if expected is not None and expected != listed:
            raise WeightDataError(
                f"{item.src_json}: weights {', '.join(w.name for w in group.weights[:3])}"
                f"{'…' if len(group.weights) > 3 else ''} need {expected} bytes, "
                f"shards {', '.join(m.rel for m in moves)} hold {listed}"
            )
        plan.groups.append(moves)
    plan.moves = list(by_rel.values())
    sends = [m for m in plan.moves if m.send]
    result.shards = len(plan.moves)
    result.sent, result.bytes_sent = len(sends), sum(m.size for m in sends)
    result.kept = len(plan.moves) - len(sends)
    result.resumed = sum(1 for m in plan.moves if not m.send and m.dst_rel not in plan.live_paths)
    if not sends and plan.live_raw is not None and _render(plan) == plan.live_raw:
        result.action = UNCHANGED
    return plan


async def _plan_rewrite(ctx: _Context, plan: _Plan) -> _Plan:
    """Re-sharded or re-quantized copies: rewritten whole when the source changed.

    The record lists the source shards (``sources``) apart from the shards
    written, so the next run can tell an unchanged source without reading it.
    """
    item, result = plan.item, plan.result
    sfolder = posixpath.dirname(item.src_json)
    for group in plan.doc.weights_manifest:
        for path in group.paths:
            rel = _shard_rel(path, item.src_json)
            entry = item.src_files.get(posixpath.join(sfolder, rel))
            if _size(entry) is None:
                raise ShardMissingError(
                    f"{item.src_json}: weight shard {posixpath.join(sfolder, rel)} "
                    "is not in the source listing"
                )
            plan.sources[rel] = {"size": _size(entry), "stamp": entity_tag(entry)}
    result.shards = result.sent = len(plan.sources)
    result.bytes_sent = sum(r["size"] for r in plan.sources.values())  # before rewriting
    return plan


def _record(plan: _Plan, shards: Mapping[str, Any], rewrite: dict | None = None) -> dict:
    """The sync record of a destination model.json."""
    entry = plan.item.src_files.get(plan.item.src_json) or {}
    record = {
        "version": 1,
        "source": {
            "size": len(plan.raw),
            "stamp": entity_tag(entry),
            "hash": digest(plan.raw).hex(),
        },
        "shards": dict(shards),
    }
    if rewrite:
        record["rewrite"] = rewrite
        record["sources"] = plan.sources
    return record


def _with_record(doc: ModelJSON, record: dict) -> ModelJSON:
    meta = dict(doc.user_defined_metadata or {})
    meta[SYNC_KEY] = record
    return dataclasses.replace(doc, user_defined_metadata=meta)


def _render(plan: _Plan) -> bytes:
    """The destination model.json: the source's, shard names mapped, the record added."""
    doc = plan.doc
    groups = tuple(
        WeightGroup(tuple(m.dst_rel for m in moves), g.weights, g.extra)
        for g, moves in zip(doc.weights_manifest, plan.groups, strict=True)
    )
    record = _record(plan, {m.dst_rel: m.record for m in plan.moves})
    if plan.replaced:  # a later run finishes the sweep if this one is interrupted
        record["replaced"] = sorted(plan.replaced)
    return _with_record(dataclasses.replace(doc, weights_manifest=groups), record).dumps()


# ------------------------------------------------------------------ applying


async def _send(ctx: _Context, plan: _Plan, move: _Move) -> None:
    data = await ctx.read("src", move.src)
    if len(data) != move.size:
        raise WeightDataError(
            f"{plan.item.src_json}: weight shard {move.src} changed while syncing: "
            f"listed {move.size} bytes, read {len(data)}"
        )
    content = digest(data).hex()
    if move.dst_rel is None:
        move.dst_rel = tagged_name(move.rel, _tag(None, move.size, content))
    path = posixpath.join(posixpath.dirname(plan.item.dst_json), move.dst_rel)
    await _in_folder(ctx.dfs, path, lambda: ctx.dfs._pipe_file(path, data))
    move.record["hash"] = content
    if ctx.opts.verify:
        back = await ctx.read("dst", path)
        if len(back) != move.size or digest(back).hex() != content:
            raise TransferError(
                f"{path}: wrote {move.size} bytes of {move.src}, read back {len(back)} "
                "bytes that differ"
            )
    ctx.callback.relative_update(move.size)


async def _in_folder(fs: Any, path: str, write: Callable[[], Awaitable[Any]]) -> None:
    """Write *path* with ``write()``; on a missing folder make it and write again.

    Object stores need no folders, so they cost no request for one.
    """
    try:
        await write()
        return
    except FileNotFoundError:
        await fs._makedirs(posixpath.dirname(path), exist_ok=True)
    await write()


async def _apply(ctx: _Context, plan: _Plan) -> None:
    """Send a planned model's shards, publish its model.json, note what it replaced."""
    item = plan.item
    if ctx.opts.rewrite:
        await _apply_rewrite(ctx, plan)
        return
    dfs = ctx.dfs
    await gather_bounded((_send(ctx, plan, m) for m in plan.moves if m.send), ctx.opts.concurrency)
    plan.stale = _stale(plan, {m.dst_rel for m in plan.moves})
    dfolder = posixpath.dirname(item.dst_json)
    plan.replaced = [_rel(dfolder, p) for p in plan.stale]
    raw = _render(plan)
    overwrite = plan.live_raw is not None
    await _in_folder(
        dfs, item.dst_json, lambda: publish(dfs, item.dst_json, raw, overwrite=overwrite)
    )
    if ctx.opts.verify:
        back = await ctx.read("dst", item.dst_json)
        if back != raw:
            raise TransferError(
                f"{item.dst_json} read back as {len(back)} bytes that differ from the "
                f"{len(raw)} bytes written"
            )


def _stale(plan: _Plan, keep: set[str]) -> list[str]:
    """Destination files to delete once the model's new version is published.

    The previous version's shards, the ones an earlier run recorded as replaced
    but could not delete (it was killed before its sweep), and shards named by
    this module that no version references (an interrupted run's). In a folder
    shared by several ``<name>.json`` bundles only shards of this model's names
    count.
    """
    item = plan.item
    dfolder = posixpath.dirname(item.dst_json)
    present = {_rel(dfolder, p) for p in item.dst_files}
    own_folder = posixpath.basename(item.dst_json) == MODEL_JSON
    bases = {_untagged(k) for k in keep}
    stale = (set(plan.live_paths) | set(plan.replaced)) - keep
    for rel in present - keep:
        if "/" not in rel and _TAGGED.match(rel) and (own_folder or _untagged(rel) in bases):
            stale.add(rel)
    return sorted(posixpath.join(dfolder, rel) for rel in stale & present)


async def _apply_rewrite(ctx: _Context, plan: _Plan) -> None:
    """Re-shard or re-quantize the whole model on the way (:func:`copy_bundle`)."""
    item, rewrite = plan.item, ctx.opts.rewrite
    source = await open_source(ctx.sfs, item.src_json, policy=ctx.policy)

    def annotate(doc: ModelJSON, sizes: Mapping[str, int]) -> ModelJSON:
        return _with_record(
            doc, _record(plan, {k: {"size": n} for k, n in sizes.items()}, rewrite)
        )

    outcome = await copy_bundle(
        source,
        ctx.dfs,
        posixpath.dirname(item.dst_json),
        posixpath.basename(item.dst_json),
        overwrite=plan.live_raw is not None,
        shard_size=rewrite["shard_size"],
        quantize=rewrite["quantize"],
        verify=ctx.opts.verify,
        concurrency=ctx.opts.concurrency,
        callback=ctx.callback,
        annotate=annotate,
    )
    plan.result.sent = len(outcome.files) - 1
    plan.result.shards = plan.result.sent
    plan.result.bytes_sent = outcome.weight_bytes


async def _sweep(ctx: _Context, plans: Sequence[_Plan]) -> None:
    """Delete the shards only replaced versions used, once every model is published.

    Readers that fetched a previous model.json during the run keep finding
    its shards until the run ends.
    """
    for plan in plans:
        for path in plan.stale:
            try:
                await ctx.dfs._rm_file(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                plan.result.error = f"cannot delete old shard {path}: {exc}"
                continue
            plan.result.removed.append(path)
        if plan.stale:
            ctx.dfs.invalidate_cache(posixpath.dirname(plan.item.dst_json))


# ------------------------------------------------------------------ the job


async def _listing(fs: Any, root: str) -> dict[str, dict]:
    fs.invalidate_cache(root)  # never trust a listing cached by an earlier run
    try:
        found = await fs._find(root, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {p.rstrip("/"): e for p, e in found.items() if e.get("type", "file") == "file"}


async def _items(sfs, spath, src, dfs, dpath, opts) -> tuple[list[_Item], list[Any]]:
    """Pair each selected source bundle with its destination entries (two listings)."""
    sfs.invalidate_cache(spath)
    bundles = await find_bundles(sfs, spath, src, read=False)
    sroot = spath.rstrip("/")
    if len(bundles) == 1 and bundles[0].json_path in (spath, posixpath.join(sroot, MODEL_JSON)):
        sroot = posixpath.dirname(bundles[0].json_path)  # one model: SRC is the model itself
    droot = dpath.rstrip("/")
    dst_files = await _listing(dfs, droot)
    dnames = sorted(dst_files)
    items = []
    for b in bundles:
        name = model_name(sroot, b.json_path)
        if not _selected(name, opts.include, opts.exclude):
            continue
        dst_json = _under(droot, _rel(sroot, b.json_path))
        below = _below(dst_files, dnames, posixpath.dirname(dst_json))
        if dst_json in dst_files:
            below[dst_json] = dst_files[dst_json]
        items.append(_Item(name, b.json_path, dst_json, dict(b.files), below))
    return items, [sroot, droot]


async def _deletions(ctx: _Context, dst: str, droot: str, names: set[str], d_opts) -> list:
    results = []
    for b in await find_bundles(ctx.dfs, droot, dst, read=False):
        name = model_name(droot, b.json_path)
        if name in names or not _selected(name, ctx.opts.include, ctx.opts.exclude):
            continue
        result = ModelSync(name, DELETED, "", b.json_path, removed=[b.json_path])
        if not ctx.opts.dry_run:
            try:
                await remove_model_async(b.url, storage_options=d_opts)
            except (TFJSError, OSError) as exc:
                result.action, result.error = ERROR, f"cannot delete: {exc}"
        results.append(result)
    return results


def _chunk(items: list[_Item], *, src, dst, s_opts, d_opts, opts) -> list[dict]:
    """One Dask task: plan and apply a chunk of models (runs on a worker)."""
    sfs, _ = resolve(src, **s_opts)
    dfs, _ = resolve(dst, **d_opts)
    ctx = _Context(sfs, dfs, opts, DEFAULT_CALLBACK)

    async def run() -> list[dict]:
        return [r.to_json() for r in await _run_items(ctx, items)]

    return sync(get_loop(), run)


async def sync_models_async(
    src: Any,
    dst: Any,
    *,
    dry_run: bool = False,
    delete: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    checksum: bool = False,
    verify: bool = False,
    shard_size: int | None = None,
    quantize: Any = None,
    concurrency: int = DEFAULT_WRITE_CONCURRENCY,
    callback: Callback | None = None,
    scheduler: Any = None,
    storage_options: Mapping[str, Any] | None = None,
    src_options: Mapping[str, Any] | None = None,
    dst_options: Mapping[str, Any] | None = None,
) -> SyncReport:
    """Coroutine twin of :func:`sync_models`."""
    started = time.perf_counter()
    _check_shard_size(shard_size)
    rewrite = None
    if shard_size is not None or quantize is not None:  # as JSON stores it in the record
        rewrite = json.loads(json.dumps({"shard_size": shard_size, "quantize": quantize}))
    opts = _Options(
        dry_run, delete, checksum, verify, tuple(include), tuple(exclude), concurrency, rewrite
    )
    s_opts = {**dict(storage_options or {}), **dict(src_options or {})}
    d_opts = {**dict(storage_options or {}), **dict(dst_options or {})}
    src, dst = os.fspath(src), os.fspath(dst)
    sfs, spath = resolve(src, **s_opts)
    dfs, dpath = resolve(dst, **d_opts)
    callback = callback or DEFAULT_CALLBACK
    ctx = _Context(sfs, dfs, opts, callback)
    items, (_, droot) = await _items(sfs, spath, src, dfs, dpath, opts)
    if scheduler is not None:
        rows = bulk._run_tasks(
            _chunk,
            items,
            scheduler,
            callback,
            src=src,
            dst=dst,
            s_opts=s_opts,
            d_opts=d_opts,
            opts=opts,
        )
        results = [ModelSync(**row) for row in rows]
    else:
        results = await _run_items(ctx, items)
    if delete:
        results += await _deletions(ctx, dst, droot, {i.name for i in items}, d_opts)
    results.sort(key=lambda m: m.name)
    return SyncReport(results, time.perf_counter() - started, dry_run)


async def _run_items(ctx: _Context, items: Sequence[_Item]) -> list[ModelSync]:
    """Plan every model, then send and publish the changed ones, then sweep."""
    limit = DEFAULT_MODEL_CONCURRENCY
    plans = await gather_bounded((_plan_safely(ctx, i) for i in items), limit)
    todo = [p for p in plans if p.result.action in (NEW, CHANGED)]
    ctx.callback.set_size(sum(p.result.bytes_sent for p in todo))
    results = await gather_bounded((_apply_safely(ctx, p) for p in plans), limit)
    if not ctx.opts.dry_run:
        await _sweep(ctx, [p for p, r in zip(plans, results, strict=True) if r is p.result])
    return results


async def _plan_safely(ctx: _Context, item: _Item) -> _Plan:
    try:
        return await _plan(ctx, item)
    except (TFJSError, OSError, ValueError) as exc:
        return _Plan(item, _failed(item, exc))


async def _apply_safely(ctx: _Context, plan: _Plan) -> ModelSync:
    if plan.result.action not in (NEW, CHANGED) or ctx.opts.dry_run:
        return plan.result
    try:
        await _apply(ctx, plan)
    except (TFJSError, OSError, ValueError) as exc:
        return _failed(plan.item, exc)
    return plan.result


def _failed(item: _Item, exc: BaseException) -> ModelSync:
    detail = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, TFJSError):
        detail = f"{type(exc).__name__}: {detail}"
    return ModelSync(item.name, ERROR, item.src_json, item.dst_json, error=detail)


@sync_twin(sync_models_async)
def sync_models() -> SyncReport:
    """Make every bundle under *dst* match the one under *src*, sending only changes.

    Parameters
    ----------
    src, dst : str or os.PathLike
        Prefixes (or one model folder each) on any fsspec store.
    dry_run : bool
        Plan only: read the JSON files needed to decide, write nothing.
    delete : bool
        Remove destination models absent from the source (model.json first).
    include, exclude : sequence of str
        ``fnmatch`` patterns on model names (their path under the prefix);
        excluded models are neither synced nor deleted.
    checksum : bool
        Compare shard bytes (read on both sides) instead of trusting sizes
        and the stores' identities (not for re-sharded or re-quantized copies,
        which are redone whenever the source's identities change).
    verify : bool
        Read back every shard and model.json written.
    shard_size : int, optional
        Re-shard on the way (as :func:`tfjsfs.copy_model`).
    quantize : str or mapping, optional
        Re-quantize on the way (as :func:`tfjsfs.copy_model`). With either, a
        model is rewritten whole, and only when its source changed (or these
        options did): the record lists the source shards it was made from.
    concurrency : int
        Shards in flight per model.
    callback : fsspec.callbacks.Callback, optional
        Progress in shard bytes sent (in models with *scheduler*).
    scheduler : str or distributed.Client, optional
        Plan and transfer on this Dask cluster (:mod:`tfjsfs.model.bulk`).
    storage_options, src_options, dst_options : dict, optional
        Filesystem options for both sides, or one.

    Returns
    -------
    SyncReport
        One :class:`ModelSync` per model; :meth:`SyncReport.summary` is the
        closing line.

    Examples
    --------
    >>> sync_models("s3://a/models", "gs://b/models", delete=True).summary()  # doctest: +SKIP
    '0 new, 1 changed (4.0 MiB sent), 199 unchanged, 0 deleted in 1.2 s'
    """
