"""Sending a planned model: its shards, then its model.json published last,
then (after every model) the shards only replaced versions used are swept."""

from __future__ import annotations

import posixpath
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from fsspec.callbacks import Callback

from ..._util.concurrency import gather_bounded
from ..._util.progress import part_progress
from ...errors import TransferError, WeightDataError
from ...format.layouts import MODEL_JSON
from ...format.manifest import ModelJSON
from ...io.transfer import copy_bundle, digest, open_source
from ...io.writer import publish
from .names import TAGGED, relative, shard_tag, tagged_name, untagged
from .record import make_record, render, with_record
from .state import Context, Move, Plan

__all__ = ["apply_plan", "stale_files", "sweep"]


async def _send(ctx: Context, plan: Plan, move: Move, progress: Callback) -> None:
    data = await ctx.read("src", move.src, move.size)
    if len(data) != move.size:
        raise WeightDataError(
            f"{plan.item.src_json}: weight shard {move.src} changed while syncing: "
            f"listed {move.size} bytes, read {len(data)}"
        )
    content = digest(data).hex()
    if move.dst_rel is None:
        move.dst_rel = tagged_name(move.rel, shard_tag(None, move.size, content))
    path = posixpath.join(posixpath.dirname(plan.item.dst_json), move.dst_rel)
    await _in_folder(ctx.dfs, path, lambda: ctx.dfs._pipe_file(path, data))
    move.record["hash"] = content
    if ctx.opts.verify:
        back = await ctx.read("dst", path, move.size)
        if len(back) != move.size or digest(back).hex() != content:
            raise TransferError(
                f"{path}: wrote {move.size} bytes of {move.src}, read back {len(back)} "
                "bytes that differ"
            )
    progress.relative_update(move.size)


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


async def apply_plan(ctx: Context, plan: Plan) -> None:
    """Send a planned model's shards, publish its model.json, note what it replaced.

    Progress: the model's bytes go to ``ctx.callback.branched(src, dst)``
    (one bar per model where the callback draws them) and to the whole run's.
    """
    item = plan.item
    with part_progress(
        ctx.callback, item.src_json, item.dst_json, plan.result.bytes_sent, item.name
    ) as progress:
        if ctx.opts.rewrite:
            await _apply_rewrite(ctx, plan, progress)
            return
        sends = (_send(ctx, plan, m, progress) for m in plan.moves if m.send)
        await gather_bounded(sends, ctx.opts.concurrency)
    dfs = ctx.dfs
    plan.stale = stale_files(plan, {m.dst_rel for m in plan.moves})
    dfolder = posixpath.dirname(item.dst_json)
    plan.replaced = [relative(dfolder, p) for p in plan.stale]
    raw = render(plan)
    overwrite = plan.live_raw is not None
    await _in_folder(
        dfs, item.dst_json, lambda: publish(dfs, item.dst_json, raw, overwrite=overwrite)
    )
    if ctx.opts.verify:
        back = await ctx.read("dst", item.dst_json, len(raw))
        if back != raw:
            raise TransferError(
                f"{item.dst_json} read back as {len(back)} bytes that differ from the "
                f"{len(raw)} bytes written"
            )


def stale_files(plan: Plan, keep: set[str]) -> list[str]:
    """Destination files to delete once the model's new version is published.

    The previous version's shards, the ones an earlier run recorded as replaced
    but could not delete (it was killed before its sweep), and shards named by
    this module that no version references (an interrupted run's). In a folder
    shared by several ``<name>.json`` bundles only shards of this model's names
    count.
    """
    item = plan.item
    dfolder = posixpath.dirname(item.dst_json)
    present = {relative(dfolder, p) for p in item.dst_files}
    own_folder = posixpath.basename(item.dst_json) == MODEL_JSON
    bases = {untagged(k) for k in keep}
    stale = (set(plan.live_paths) | set(plan.replaced)) - keep
    for rel in present - keep:
        if "/" not in rel and TAGGED.match(rel) and (own_folder or untagged(rel) in bases):
            stale.add(rel)
    return sorted(posixpath.join(dfolder, rel) for rel in stale & present)


async def _apply_rewrite(ctx: Context, plan: Plan, progress: Callback) -> None:
    """Re-shard or re-quantize the whole model on the way (:func:`copy_bundle`)."""
    item, rewrite = plan.item, ctx.opts.rewrite
    source = await open_source(ctx.sfs, item.src_json, policy=ctx.policy)

    def annotate(doc: ModelJSON, sizes: Mapping[str, int]) -> ModelJSON:
        return with_record(
            doc, make_record(plan, {k: {"size": n} for k, n in sizes.items()}, rewrite)
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
        callback=progress,
        annotate=annotate,
    )
    plan.result.sent = len(outcome.files) - 1
    plan.result.shards = plan.result.sent
    plan.result.bytes_sent = outcome.weight_bytes


async def sweep(ctx: Context, plans: Sequence[Plan]) -> None:
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
