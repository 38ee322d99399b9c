"""One sync run: list both trees, plan and apply every model (here or on Dask),
delete what the source no longer has, report."""

from __future__ import annotations

import json
import os
import posixpath
import time
from collections.abc import Mapping, Sequence
from typing import Any

from fsspec.asyn import get_loop, sync
from fsspec.callbacks import DEFAULT_CALLBACK, Callback

from ..._util.concurrency import gather_bounded, sync_twin
from ...errors import TFJSError
from ...format.layouts import MODEL_JSON, check_shard_size
from ...io.resolve import resolve
from ...io.writer import DEFAULT_WRITE_CONCURRENCY
from .. import bulk
from ..discovery import find_bundles
from ..removal import remove_model_async
from .names import below, model_name, relative, selected, under
from .planning import plan_model
from .report import CHANGED, DELETED, ERROR, NEW, ModelSync, SyncReport
from .state import Context, Item, Options, Plan
from .transfer import apply_plan, sweep

__all__ = ["DEFAULT_MODEL_CONCURRENCY", "sync_models", "sync_models_async"]

#: models planned or transferred at once.
DEFAULT_MODEL_CONCURRENCY = 8


async def _listing(fs: Any, root: str) -> dict[str, dict]:
    fs.invalidate_cache(root)  # never trust a listing cached by an earlier run
    try:
        found = await fs._find(root, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {p.rstrip("/"): e for p, e in found.items() if e.get("type", "file") == "file"}


async def _items(sfs, spath, src, dfs, dpath, opts) -> tuple[list[Item], list[Any]]:
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
        if not selected(name, opts.include, opts.exclude):
            continue
        dst_json = under(droot, relative(sroot, b.json_path))
        entries = below(dst_files, dnames, posixpath.dirname(dst_json))
        if dst_json in dst_files:
            entries[dst_json] = dst_files[dst_json]
        items.append(Item(name, b.json_path, dst_json, dict(b.files), entries))
    return items, [sroot, droot]


async def _deletions(ctx: Context, dst: str, droot: str, names: set[str], d_opts) -> list:
    results = []
    for b in await find_bundles(ctx.dfs, droot, dst, read=False):
        name = model_name(droot, b.json_path)
        if name in names or not selected(name, ctx.opts.include, ctx.opts.exclude):
            continue
        result = ModelSync(name, DELETED, "", b.json_path, removed=[b.json_path])
        if not ctx.opts.dry_run:
            try:
                await remove_model_async(b.name, storage_options=d_opts)
            except (TFJSError, OSError) as exc:
                result.action, result.error = ERROR, f"cannot delete: {exc}"
        results.append(result)
    return results


def _chunk(items: list[Item], *, src, dst, s_opts, d_opts, opts) -> list[dict]:
    """One Dask task: plan and apply a chunk of models (runs on a worker)."""
    sfs, _ = resolve(src, **s_opts)
    dfs, _ = resolve(dst, **d_opts)
    ctx = Context(sfs, dfs, opts, DEFAULT_CALLBACK)

    async def run() -> list[dict]:
        return [r.to_json() for r in await run_items(ctx, items)]

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
    grace_period: float = 0.0,
    callback: Callback | None = None,
    scheduler: Any = None,
    storage_options: Mapping[str, Any] | None = None,
    src_options: Mapping[str, Any] | None = None,
    dst_options: Mapping[str, Any] | None = None,
) -> SyncReport:
    """Coroutine twin of :func:`sync_models`."""
    started = time.perf_counter()
    check_shard_size(shard_size)
    rewrite = None
    if shard_size is not None or quantize is not None:  # as JSON stores it in the record
        rewrite = json.loads(json.dumps({"shard_size": shard_size, "quantize": quantize}))
    opts = Options(
        dry_run,
        delete,
        checksum,
        verify,
        tuple(include),
        tuple(exclude),
        concurrency,
        rewrite,
        max(0.0, float(grace_period)),
    )
    s_opts = {**dict(storage_options or {}), **dict(src_options or {})}
    d_opts = {**dict(storage_options or {}), **dict(dst_options or {})}
    src, dst = os.fspath(src), os.fspath(dst)
    sfs, spath = resolve(src, **s_opts)
    dfs, dpath = resolve(dst, **d_opts)
    callback = callback or DEFAULT_CALLBACK
    ctx = Context(sfs, dfs, opts, callback)
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
        results = await run_items(ctx, items)
    if delete:
        results += await _deletions(ctx, dst, droot, {i.name for i in items}, d_opts)
    results.sort(key=lambda m: m.name)
    return SyncReport(results, time.perf_counter() - started, dry_run)


async def run_items(ctx: Context, items: Sequence[Item]) -> list[ModelSync]:
    """Plan each model and send it if it changed, a few models at once; then sweep.

    A model is sent as soon as it is planned and its JSON dropped once it is
    published, so what a run holds does not grow with the number of models
    (the overall progress total grows as models are planned).
    """
    done = await gather_bounded(
        (_plan_and_apply(ctx, i) for i in items), DEFAULT_MODEL_CONCURRENCY
    )
    if not ctx.opts.dry_run:
        await sweep(ctx, [plan for plan, result in done if result is plan.result])
    return [result for _, result in done]


async def _plan_and_apply(ctx: Context, item: Item) -> tuple[Plan, ModelSync]:
    plan = await _plan_safely(ctx, item)
    if plan.result.action in (NEW, CHANGED):
        ctx.planned_bytes += plan.result.bytes_sent
        ctx.callback.set_size(ctx.planned_bytes)
    result = await _apply_safely(ctx, plan)
    plan.release()
    return plan, result


async def _plan_safely(ctx: Context, item: Item) -> Plan:
    try:
        return await plan_model(ctx, item)
    except (TFJSError, OSError, ValueError) as exc:
        return Plan(item, _failed(item, exc))


async def _apply_safely(ctx: Context, plan: Plan) -> ModelSync:
    if plan.result.action not in (NEW, CHANGED) or ctx.opts.dry_run:
        return plan.result
    try:
        await apply_plan(ctx, plan)
    except (TFJSError, OSError, ValueError) as exc:
        return _failed(plan.item, exc)
    return plan.result


def _failed(item: Item, exc: BaseException) -> ModelSync:
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
    grace_period : float
        0 deletes the shards only replaced versions used once every model is
        published (readers holding an old model.json keep working until the
        run ends); more *retires* them (:func:`tfjsfs.io.writer.retire_files`,
        recorded before the new model.json is published) and a later run, or
        any :func:`tfjsfs.io.writer.sweep_folder` of the folder (a model
        server's sweep), removes them once that many seconds have passed.
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
