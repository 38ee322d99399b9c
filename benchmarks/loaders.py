"""The loaders that are timed: baselines (limits, sequential fetches, the converter,
the storage backends' own calls) and tfjsfs itself.

Each loader takes a context dict (built by ``run.py``, see ``worker.py``) and returns
what a caller would hold afterwards: ``{"buffer": ..., "group": ...}`` for the limits
(one preallocated buffer, no per-tensor views), a ``{name: array}`` dict for whole-model
loads, or one array for the one-tensor loaders. Every whole-model loader includes
fetching and parsing ``model.json`` (stdlib ``json``).

Assumption of the limits and of the one-tensor baselines: shards follow the converter's
blind 4,194,304-byte cuts, so shard ``i`` starts at ``i * 4 MiB`` of its group; every
length received is checked against it.
"""

import asyncio
import json
import math
import os

import models
import numpy as np

SHARD = models.SHARD_BYTES


def _check_len(path, got, want):
    if got != want:
        raise OSError(f"{path}: got {got} bytes, expected {want}")


def _shard_spans(group):
    n = len(group["paths"])
    total = group["nbytes"]
    if not (n - 1) * SHARD < total <= n * SHARD:
        raise ValueError(f"{n} shards cannot hold {total} bytes in 4 MiB cuts")
    return [(p, i * SHARD, min(total, (i + 1) * SHARD)) for i, p in enumerate(group["paths"])]


def _group(model_json_bytes):
    manifest = json.loads(model_json_bytes)["weightsManifest"]
    groups = models.weight_index(manifest)
    if len(groups) != 1:
        raise ValueError("benchmark models have one weight group")
    return groups[0]


def _views_of_joined(chunks, group):
    buf = b"".join(chunks)
    _check_len("joined shards", len(buf), group["nbytes"])
    return models.views(buf, group)


# --------------------------------------------------------------------------- local


def parse_model_json_local(ctx):
    """Read and parse model.json only (stdlib json)."""
    with open(os.path.join(ctx["path"], "model.json"), "rb") as f:
        return json.loads(f.read())


def limit_local(ctx):
    """readinto every shard, in order, into one preallocated buffer."""
    with open(os.path.join(ctx["path"], "model.json"), "rb") as f:
        group = _group(f.read())
    buf = np.empty(group["nbytes"], np.uint8)
    mv = memoryview(buf)
    for path, start, end in _shard_spans(group):
        with open(os.path.join(ctx["path"], path), "rb", buffering=0) as f:
            pos = start
            while pos < end:
                n = f.readinto(mv[pos:end])
                if not n:
                    break
                pos += n
        _check_len(path, pos - start, end - start)
    return {"buffer": buf, "group": group}


def converter_prepare(ctx):
    """Import the converter's modules (not timed)."""
    import converter

    converter.load()


def converter_local(ctx):
    """The converter's ``read_weights`` (tensorflowjs 4.22)."""
    import converter

    read_weights, _ = converter.load()
    with open(os.path.join(ctx["path"], "model.json"), "rb") as f:
        manifest = json.loads(f.read())["weightsManifest"]
    groups = read_weights.read_weights(manifest, ctx["path"])
    return {e["name"]: e["data"] for g in groups for e in g}


# ---------------------------------------------------------------------------- HTTP


def _session(aiohttp, limit=0):
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit),
        auto_decompress=False,
        read_bufsize=1 << 20,
        timeout=aiohttp.ClientTimeout(total=None, sock_read=120),
    )


async def _get_into(session, url, mv, headers=None):
    async with session.get(url, headers=headers) as r:
        r.raise_for_status()
        pos = 0
        async for chunk, _ in r.content.iter_chunks():
            mv[pos : pos + len(chunk)] = chunk
            pos += len(chunk)
    _check_len(url, pos, len(mv))


async def _limit_http(base, concurrency=0):
    import aiohttp

    async with _session(aiohttp, limit=concurrency) as s:
        async with s.get(f"{base}/model.json") as r:
            r.raise_for_status()
            group = _group(await r.read())
        buf = np.empty(group["nbytes"], np.uint8)
        mv = memoryview(buf)
        await asyncio.gather(
            *(_get_into(s, f"{base}/{p}", mv[a:b]) for p, a, b in _shard_spans(group))
        )
    return {"buffer": buf, "group": group}


def limit_http(ctx):
    """Every shard at once (or ``concurrency`` at a time) with raw aiohttp, each into its
    slice of one buffer."""
    return asyncio.run(_limit_http(ctx["base_url"], ctx.get("concurrency", 0)))


async def _sequential_http(base):
    import aiohttp

    async with _session(aiohttp, limit=1) as s:
        async with s.get(f"{base}/model.json") as r:
            r.raise_for_status()
            group = _group(await r.read())
        chunks = []
        for path in group["paths"]:
            async with s.get(f"{base}/{path}") as r:
                r.raise_for_status()
                chunks.append(await r.read())
    return _views_of_joined(chunks, group)


def sequential_http(ctx):
    """One shard at a time (aiohttp, one keep-alive connection), joined, then views."""
    return asyncio.run(_sequential_http(ctx["base_url"]))


async def _tensor_http(base, name, whole_shards):
    import aiohttp

    async with _session(aiohttp) as s:
        async with s.get(f"{base}/model.json") as r:
            r.raise_for_status()
            group = _group(await r.read())
        w = next(w for w in group["weights"] if w["name"] == name)
        lo, hi = w["offset"], w["offset"] + w["nbytes"]
        if whole_shards:
            spans = [(p, a, b) for p, a, b in _shard_spans(group) if a < hi and b > lo]
            buf = np.empty(spans[-1][2] - spans[0][1], np.uint8)
            mv = memoryview(buf)
            base_off = spans[0][1]
            await asyncio.gather(
                *(
                    _get_into(s, f"{base}/{p}", mv[a - base_off : b - base_off])
                    for p, a, b in spans
                )
            )
            data = buf[lo - base_off : hi - base_off]
        else:
            data = np.empty(w["nbytes"], np.uint8)
            mv = memoryview(data)
            jobs = []
            for p, a, b in _shard_spans(group):
                s_lo, s_hi = max(lo, a), min(hi, b)
                if s_lo < s_hi:
                    rng = {"Range": f"bytes={s_lo - a}-{s_hi - a - 1}"}
                    jobs.append(_get_into(s, f"{base}/{p}", mv[s_lo - lo : s_hi - lo], rng))
            await asyncio.gather(*jobs)
    return np.frombuffer(data, w["dtype"], math.prod(w["shape"])).reshape(w["shape"])


def tensor_ranges_http(ctx):
    """One tensor by exact Range GETs (one per shard it spans), concurrently."""
    return asyncio.run(_tensor_http(ctx["base_url"], ctx["tensor"], whole_shards=False))


def tensor_shards_http(ctx):
    """One tensor by fetching the whole shards that hold it."""
    return asyncio.run(_tensor_http(ctx["base_url"], ctx["tensor"], whole_shards=True))


# ------------------------------------------------------------------- fsspec (S3/GCS)


def _fs(ctx):
    import fsspec

    return fsspec.filesystem(ctx["fs_protocol"], **ctx["fs_options"])


def fsspec_prepare(ctx):
    """Import the fsspec backend (not timed, not counted in memory)."""
    import fsspec

    fsspec.get_filesystem_class(ctx["fs_protocol"])


def http_prepare(ctx):
    """Import aiohttp (not timed, not counted in memory)."""
    import aiohttp  # noqa: F401


def sequential_fsspec(ctx):
    """``cat_file`` per shard, one after another, joined, then views."""
    fs = _fs(ctx)
    root = ctx["fs_root"]
    group = _group(fs.cat_file(f"{root}/model.json"))
    chunks = [fs.cat_file(f"{root}/{p}") for p in group["paths"]]
    return _views_of_joined(chunks, group)


def cat_fsspec(ctx):
    """The backend's own concurrent ``cat(list_of_shards)``, joined, then views."""
    fs = _fs(ctx)
    root = ctx["fs_root"]
    group = _group(fs.cat_file(f"{root}/model.json"))
    paths = [f"{root}/{p}" for p in group["paths"]]
    got = fs.cat(paths)
    return _views_of_joined([got[p] for p in paths], group)


# -------------------------------------------------------------------------- tfjsfs


def tfjsfs_prepare(ctx, attr="load_weights"):
    """Import tfjsfs and check the API used here exists (raises if not)."""
    import tfjsfs
    import tfjsfs.fs.core  # the fsspec class behind tfjs+ URLs, imported untimed

    if not callable(getattr(tfjsfs, attr, None)):
        raise AttributeError(f"tfjsfs has no {attr}()")
    if ctx.get("fs_protocol"):
        fsspec_prepare(ctx)
    if ctx.get("base_url"):
        http_prepare(ctx)
    return tfjsfs


def tfjsfs_parse(ctx):
    """model.json read, parsed and validated into the columns a whole load uses."""
    from tfjsfs.format.columns import parse_model_json, plain_layout

    path = os.path.join(ctx["path"], "model.json")
    with open(path, "rb") as f:
        doc = parse_model_json(f.read(), path)
    layout = plain_layout(doc.get("weightsManifest"))
    if layout is None:
        raise ValueError(f"{path}: not a plain manifest")
    return layout


def tfjsfs_load(ctx):
    """``tfjsfs.load_weights(url, **options)``."""
    import tfjsfs

    return tfjsfs.load_weights(ctx["tfjsfs_url"], **ctx["tfjsfs_options"])


def tfjsfs_tensor(ctx):
    """``tfjsfs.open_model(url, **options).get_tensor(name)``."""
    import tfjsfs

    with tfjsfs.open_model(ctx["tfjsfs_url"], **ctx["tfjsfs_options"]) as m:
        return np.asarray(m.get_tensor(ctx["tensor"]))


LOADERS = {
    "parse-json": (parse_model_json_local, None),
    "limit-local": (limit_local, None),
    "converter": (converter_local, converter_prepare),
    "limit-http": (limit_http, http_prepare),
    "sequential-http": (sequential_http, http_prepare),
    "tensor-ranges": (tensor_ranges_http, http_prepare),
    "tensor-shards": (tensor_shards_http, http_prepare),
    "sequential-fsspec": (sequential_fsspec, fsspec_prepare),
    "cat-fsspec": (cat_fsspec, fsspec_prepare),
    "tfjsfs": (tfjsfs_load, tfjsfs_prepare),
    "tfjsfs-parse": (tfjsfs_parse, tfjsfs_prepare),
    "tfjsfs-tensor": (tfjsfs_tensor, lambda ctx: tfjsfs_prepare(ctx, "open_model")),
}
"""Loader id -> (load function, prepare function run once before timing or None)."""
