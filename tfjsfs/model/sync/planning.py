"""The diff: new, changed or unchanged for each model, and where each shard goes.

Decided from the two listings and at most the model JSON files.
"""

from __future__ import annotations

import posixpath

from ..._util.entries import content_md5, entity_tag
from ...errors import ManifestError, ShardMissingError, WeightDataError
from ...format.manifest import ModelJSON
from .names import listed_size, shard_rel, shard_tag, tagged_name
from .record import live_paths_of, record_of, render
from .report import CHANGED, NEW, UNCHANGED, ModelSync
from .state import Context, Item, Move, Options, Plan
from .transfer import stale_files

__all__ = ["plan_model"]


def _unchanged(rec: dict, live_paths: set[str], item: Item, opts: Options) -> bool:
    """Whether the record proves the destination is the source's current state."""
    if (rec.get("rewrite") or None) != (opts.rewrite or None):
        return False
    src_entry = item.src_files.get(item.src_json)
    source = rec["source"]
    stamp = entity_tag(src_entry or {})
    if stamp is None or source.get("stamp") != stamp:
        return False
    if source.get("size") != listed_size(src_entry):
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
        if not isinstance(r, dict) or listed_size(src) != r.get("size") or stamp is None:
            return False
        if stamp != r.get("stamp"):
            return False
    for drel, r in shards.items():
        dst = item.dst_files.get(posixpath.join(dfolder, drel))
        if dst is None or listed_size(dst) != r.get("size"):
            return False
        if "source" in r:
            src = item.src_files.get(posixpath.join(sfolder, str(r["source"])))
            md5s = content_md5(src or {}), content_md5(dst)
            if None not in md5s and md5s[0] != md5s[1]:
                return False
    return True


async def _same_content(ctx: Context, src: str, dst: str) -> bool:
    a, b = await ctx.content_hash("src", src), await ctx.content_hash("dst", dst)
    return a == b


async def _match(ctx: Context, plan: Plan, rec: dict | None, rel: str, src: str) -> Move:
    """Where source shard *rel* goes: reused, resumed, or sent under a tagged name."""
    item, opts = plan.item, ctx.opts
    entry = item.src_files[src]
    size, stamp = int(entry["size"]), entity_tag(entry)
    dfolder = posixpath.dirname(item.dst_json)
    record = {"source": rel, "size": size, "stamp": stamp}

    def at(drel: str) -> dict | None:
        dentry = item.dst_files.get(posixpath.join(dfolder, drel))
        return dentry if listed_size(dentry) == size else None

    # a shard the destination recorded as made from this very source state
    for drel, r in ((rec or {}).get("shards") or {}).items():
        if not isinstance(r, dict) or drel not in plan.live_paths or at(drel) is None:
            continue
        if r.get("source") != rel or r.get("size") != size:
            continue
        if opts.checksum:
            if await _same_content(ctx, src, posixpath.join(dfolder, drel)):
                return Move(src, rel, size, stamp, drel, False, {**r, **record})
        elif stamp is not None and r.get("stamp") == stamp:
            return Move(src, rel, size, stamp, drel, False, dict(r))
    # the same name in a destination copied by other means: equal checksums, or bytes
    if rel in plan.live_paths and rel not in ((rec or {}).get("shards") or {}):
        dentry = at(rel)
        if dentry is not None:
            md5s = content_md5(entry), content_md5(dentry)
            same = None not in md5s and md5s[0] == md5s[1]
            if not same and opts.checksum:
                same = await _same_content(ctx, src, posixpath.join(dfolder, rel))
            if same:
                return Move(src, rel, size, stamp, rel, False, record)
    if stamp is None:  # no identity without the bytes: named when sent
        return Move(src, rel, size, stamp, None, True, record)
    target = tagged_name(rel, shard_tag(stamp, size))
    # already there: kept, or sent by an interrupted run
    there = at(target) is not None
    if there and (
        not opts.checksum or await _same_content(ctx, src, posixpath.join(dfolder, target))
    ):
        return Move(src, rel, size, stamp, target, False, record)
    return Move(src, rel, size, stamp, target, True, record)


async def plan_model(ctx: Context, item: Item) -> Plan:
    """Decide new / changed / unchanged for one model, reading at most its JSON files."""
    result = ModelSync(item.name, NEW, item.src_json, item.dst_json)
    plan = Plan(item, result)
    rec = None
    if item.dst_json in item.dst_files:
        plan.live_raw = await ctx.read_json("dst", item.dst_json)
        result.action = CHANGED
        try:
            live = ModelJSON.parse(plan.live_raw, item.dst_json, require_topology=False)
        except ManifestError:
            live = None
        plan.live_paths = live_paths_of(live, item.dst_json)
        rec = record_of(live)
        fast = not ctx.opts.checksum or ctx.opts.rewrite  # rewrites keep no source hashes
        plan.replaced = [str(r) for r in rec.get("replaced") or ()] if rec else []
        if rec is not None and fast and _unchanged(rec, plan.live_paths, item, ctx.opts):
            result.action = UNCHANGED
            result.shards = result.kept = len(rec["shards"])
            plan.stale = stale_files(plan, plan.live_paths)  # a sweep an interrupted run missed
            return plan
    plan.raw = await ctx.read_json("src", item.src_json)
    plan.doc = doc = ModelJSON.parse(plan.raw, item.src_json)
    if ctx.opts.rewrite:
        return await _plan_rewrite(ctx, plan)
    sfolder = posixpath.dirname(item.src_json)
    by_rel: dict[str, Move] = {}
    for group in doc.weights_manifest:
        moves = []
        for path in group.paths:
            rel = shard_rel(path, item.src_json)
            if rel not in by_rel:
                src = posixpath.join(sfolder, rel)
                if listed_size(item.src_files.get(src)) is None:
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
    if not sends and plan.live_raw is not None and render(plan) == plan.live_raw:
        result.action = UNCHANGED
    return plan


async def _plan_rewrite(ctx: Context, plan: Plan) -> Plan:
    """Re-sharded or re-quantized copies: rewritten whole when the source changed.

    The record lists the source shards (``sources``) apart from the shards
    written, so the next run can tell an unchanged source without reading it.
    """
    item, result = plan.item, plan.result
    sfolder = posixpath.dirname(item.src_json)
    for group in plan.doc.weights_manifest:
        for path in group.paths:
            rel = shard_rel(path, item.src_json)
            entry = item.src_files.get(posixpath.join(sfolder, rel))
            if listed_size(entry) is None:
                raise ShardMissingError(
                    f"{item.src_json}: weight shard {posixpath.join(sfolder, rel)} "
                    "is not in the source listing"
                )
            plan.sources[rel] = {"size": listed_size(entry), "stamp": entity_tag(entry)}
    result.shards = result.sent = len(plan.sources)
    result.bytes_sent = sum(r["size"] for r in plan.sources.values())  # before rewriting
    return plan
