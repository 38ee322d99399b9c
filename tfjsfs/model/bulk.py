"""Bulk jobs over many bundles: scan, verify and copy, on Dask or local threads.

Needs the ``dask`` extra (``pandas``; ``dask[distributed]`` for clusters).

Every job starts with **one recursive listing** of the prefix on the caller's
side (:func:`tfjsfs.model.discovery.find_bundles`), which finds the bundles and the size
of every file. The bundles are then cut into chunks, and each chunk runs as one
task: on a ``dask.distributed`` cluster when ``client=`` is given (a
:class:`distributed.Client` or a scheduler address), else on local threads.
A task receives only picklable things (URLs, storage options, listed sizes)
and builds its own filesystem on the worker, so nothing assumes one machine;
the filesystems must be reachable from the workers (``memory://`` is private
to one process, so use it with local threads only). Inside a task, bundles are
processed concurrently on fsspec's event loop.

Results come back as :class:`pandas.DataFrame` objects, one row per bundle,
sorted by URL.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fsspec.asyn import get_loop, sync
from fsspec.callbacks import DEFAULT_CALLBACK, Callback

from .._util.concurrency import gather_bounded
from .._util.options import storage_options_of
from ..errors import TFJSError
from ..format.manifest import ModelJSON
from ..format.summary import weight_dtypes
from ..io.bundle import read_json_bytes
from ..io.found import FoundBundle
from ..io.resolve import resolve
from ..io.shardurls import resolve_shard_paths
from .copying import copy_model_async
from .discovery import find_bundles
from .verify import Problem, check_bundle, failures, verify_model_async

__all__ = ["SCAN_COLUMNS", "copy_all", "destination", "discover", "scan", "verify_all"]

#: columns of :func:`scan`'s data frame, in order.
SCAN_COLUMNS = [
    "url",
    "format",
    "generatedBy",
    "weights",
    "bytes",
    "dtypes",
    "quantization",
    "shards",
    "ok",
    "problems",
]
#: bundles handled at once inside one task.
TASK_CONCURRENCY = 8


def _pandas():
    try:
        import pandas
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("tfjsfs.model.bulk needs pandas: pip install 'tfjsfs[dask]'") from exc
    return pandas


# --------------------------------------------------------------- execution


@contextlib.contextmanager
def _client(client: Any) -> Iterator[Any]:
    """A distributed client for *client* (a Client, an address, or None)."""
    if client is None or not isinstance(client, str):
        yield client
        return
    from distributed import Client

    with Client(client) as made:
        yield made


#: Most items (models) in one task: what a worker holds at once does not grow
#: with the size of the job, and progress advances in small steps.
MAX_TASK_ITEMS = 32


def _chunks(items: Sequence[Any], parts: int) -> list[list[Any]]:
    """*items* in at least *parts* tasks of at most :data:`MAX_TASK_ITEMS` each."""
    parts = max(1, min(len(items), max(parts, -(-len(items) // MAX_TASK_ITEMS))))
    return [list(items[i::parts]) for i in range(parts)] if items else []


def _run_tasks(
    func: Callable[..., list[dict]],
    items: Sequence[Any],
    client: Any,
    progress: Callback,
    **kwargs: Any,
) -> list[dict]:
    """Run ``func(chunk, **kwargs)`` over chunks of *items*; rows, in any order."""
    progress.set_size(len(items))
    rows: list[dict] = []
    with _client(client) as cl:
        if cl is not None:
            from distributed import as_completed

            workers = sum(cl.nthreads().values()) or 1
            chunks = _chunks(items, workers * 4)
            futures = cl.map(func, chunks, pure=False, **kwargs)
            for future in as_completed(futures):
                part = future.result()
                rows.extend(part)
                progress.relative_update(len(part))
            return rows
        chunks = _chunks(items, (os.cpu_count() or 1) * 2)
        with ThreadPoolExecutor(max_workers=max(1, min(len(chunks), 8))) as pool:
            for part in pool.map(lambda chunk: func(chunk, **kwargs), chunks):
                rows.extend(part)
                progress.relative_update(len(part))
    return rows


def _frame(rows: list[dict], columns: list[str], key: str):
    pandas = _pandas()
    frame = pandas.DataFrame(rows, columns=columns)
    return frame.sort_values(key, kind="stable").reset_index(drop=True)


def discover(prefix: str, storage_options: Mapping[str, Any]) -> list[FoundBundle]:
    """Every bundle under *prefix* from one recursive listing (model JSON not read)."""
    fs, path = resolve(prefix, **storage_options)
    return sync(get_loop(), find_bundles, fs, path, os.fspath(prefix), read=False)


# -------------------------------------------------------------------- scan


def _summary(url: str, doc: ModelJSON | None, sizes: Mapping[str, int], json_path: str) -> dict:
    row: dict[str, Any] = {"url": url, "format": None, "generatedBy": None, "weights": None}
    row.update(bytes=None, dtypes="", quantization="", shards=None)
    if doc is None:
        return row
    specs = doc.weight_specs
    row.update(format=doc.format, generatedBy=doc.generated_by, weights=len(specs))
    dtypes, quantized = weight_dtypes(specs)
    row.update(dtypes=",".join(dtypes), quantization=",".join(quantized))
    paths = [p for g in doc.weights_manifest for p in g.paths]
    row["shards"] = len(paths)
    located = resolve_shard_paths(doc, json_path, carry_query=False, strict=False)
    listed = [sizes.get(p) if p else None for g in located for p in g]
    expected = [g.expected_bytes for g in doc.weights_manifest]
    if all(s is not None for s in listed):
        row["bytes"] = sum(listed)
    elif all(e is not None for e in expected):
        row["bytes"] = sum(expected)
    return row


async def _scan_one(fs: Any, item: tuple, values: bool, strict: bool) -> dict:
    url, json_path, sizes = item
    doc = None
    try:
        raw = await read_json_bytes(fs, json_path)
    except (OSError, TFJSError) as exc:
        problems = [Problem(json_path, f"cannot read: {exc}")]
    else:
        problems = await check_bundle(fs, json_path, raw=raw, listed=sizes, values=values)
        with contextlib.suppress(TFJSError):
            doc = ModelJSON.parse(raw, json_path, require_topology=False)
    row = _summary(url, doc, sizes, json_path)
    row["ok"] = not failures(problems, strict)
    row["problems"] = [str(p) for p in problems]
    return row


def _scan_chunk(
    chunk: list[tuple], *, prefix: str, options: dict, values: bool, strict: bool
) -> list[dict]:
    """One task: scan a chunk of bundles (runs on a worker)."""
    fs, _ = resolve(prefix, **options)

    async def run() -> list[dict]:
        return await gather_bounded(
            (_scan_one(fs, item, values, strict) for item in chunk), TASK_CONCURRENCY
        )

    return sync(get_loop(), run)


def scan(
    prefix: str,
    client: Any = None,
    *,
    values: bool = False,
    strict: bool = False,
    progress: Callback | None = None,
    storage_options: Mapping[str, Any] | None = None,
    **deprecated_options: Any,
):
    """One row per bundle under *prefix*, with its summary and its problems.

    Parameters
    ----------
    prefix : str
        Any fsspec URL or local path (see :func:`tfjsfs.list_models`).
    client : distributed.Client or str, optional
        Run on this Dask cluster (a client or a scheduler address); local
        threads when None.
    values : bool
        Also decode every weight and check float values are finite (reads
        every shard); otherwise only model.json is read, plus the shards of
        groups that hold string weights.
    strict : bool
        Warnings make a bundle fail too (``ok`` False), as in ``tfjsfs verify --strict``.
    progress : fsspec.callbacks.Callback, optional
        Counts bundles done.
    storage_options : dict, optional
        Options for the filesystem; they are pickled to the workers.
    **deprecated_options
        Storage options as loose keywords: deprecated (``DeprecationWarning``).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SCAN_COLUMNS`: ``url``, ``format``, ``generatedBy``,
        ``weights`` (count), ``bytes`` (weight bytes), ``dtypes`` and
        ``quantization`` (comma-separated), ``shards`` (count), ``ok`` (no
        failures: :func:`tfjsfs.model.verify.failures`) and ``problems``
        (list of messages, warnings included).
    """
    storage_options = storage_options_of(storage_options, deprecated_options, "scan")
    found = discover(prefix, storage_options)
    items = [(b.name, b.json_path, b.listed_sizes()) for b in found]
    rows = _run_tasks(
        _scan_chunk,
        items,
        client,
        progress or DEFAULT_CALLBACK,
        prefix=os.fspath(prefix),
        options=dict(storage_options),
        values=values,
        strict=strict,
    )
    return _frame(rows, SCAN_COLUMNS, "url")


# ------------------------------------------------------------------ verify


def _verify_chunk(chunk: list[str], *, options: dict, values: bool, strict: bool) -> list[dict]:
    async def one(url: str) -> dict:
        problems = await verify_model_async(url, values=values, storage_options=options)
        failed = failures(problems, strict)
        errors = [str(p) for p in failed]
        warnings = [str(p) for p in problems if p not in failed]
        return {"url": url, "ok": not errors, "errors": errors, "warnings": warnings}

    async def run() -> list[dict]:
        return await gather_bounded((one(u) for u in chunk), TASK_CONCURRENCY)

    return sync(get_loop(), run)


def verify_all(
    targets: str | Sequence[str],
    client: Any = None,
    *,
    values: bool = True,
    strict: bool = False,
    progress: Callback | None = None,
    storage_options: Mapping[str, Any] | None = None,
    **deprecated_options: Any,
):
    """Verify many bundles deeply (:func:`tfjsfs.model.verify.verify_model` each).

    Parameters
    ----------
    targets : str or sequence of str
        A prefix (every bundle under it) or a list of model URLs.
    client : distributed.Client or str, optional
    values : bool
        Decode every weight and report non-finite values (default True).
    strict : bool
        Warnings (non-finite values among them) fail too, as in
        ``tfjsfs verify --strict``.
    progress : fsspec.callbacks.Callback, optional
    storage_options : dict, optional
        Options for the filesystem; they are pickled to the workers.
    **deprecated_options
        Storage options as loose keywords: deprecated (``DeprecationWarning``).

    Returns
    -------
    pandas.DataFrame
        Columns ``url``, ``ok``, ``errors`` (what fails the bundle, see
        :func:`tfjsfs.model.verify.failures`), ``warnings`` (the rest).
    """
    storage_options = storage_options_of(storage_options, deprecated_options, "verify_all")
    if isinstance(targets, (str, os.PathLike)):
        urls = [b.name for b in discover(os.fspath(targets), storage_options)]
    else:
        urls = [os.fspath(t) for t in targets]
    rows = _run_tasks(
        _verify_chunk,
        urls,
        client,
        progress or DEFAULT_CALLBACK,
        options=dict(storage_options),
        values=values,
        strict=strict,
    )
    return _frame(rows, ["url", "ok", "errors", "warnings"], "url")


# -------------------------------------------------------------------- copy


def destination(src_prefix: str, dst_prefix: str, url: str) -> str:
    """Where bundle *url* found under *src_prefix* goes under *dst_prefix*."""
    src_prefix = src_prefix.rstrip("/")
    rel = url[len(src_prefix) :] if url.startswith(src_prefix) else "/" + url.rsplit("/", 1)[-1]
    return dst_prefix.rstrip("/") + rel


def _json_url(bundle: FoundBundle) -> str:
    if bundle.name.endswith(".json"):
        return bundle.name
    return bundle.name.rstrip("/") + "/" + bundle.json_path.rsplit("/", 1)[-1]


def _copy_chunk(chunk: list[tuple[str, str, str]], *, copy_options: dict) -> list[dict]:
    async def one(src: str, dst: str, json_url: str) -> dict:
        row = {"src": src, "dst": dst, "ok": False, "bytes": None, "files": None, "error": None}
        try:  # the model JSON's URL: no listing needed to find it
            result = await copy_model_async(json_url, dst, **copy_options)
        except (OSError, TFJSError, ValueError) as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"
            return row
        row.update(
            ok=True, bytes=result.model_artifacts_info.weight_data_bytes, files=len(result.files)
        )
        return row

    async def run() -> list[dict]:
        return await gather_bounded((one(*item) for item in chunk), TASK_CONCURRENCY)

    return sync(get_loop(), run)


def copy_all(
    src_prefix: str,
    dst_prefix: str,
    client: Any = None,
    *,
    overwrite: bool = False,
    shard_size: int | None = None,
    quantize: Any = None,
    verify: bool = True,
    progress: Callback | None = None,
    src_options: Mapping[str, Any] | None = None,
    dst_options: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    **deprecated_options: Any,
):
    """Copy every bundle under *src_prefix* to the same place under *dst_prefix*.

    Each bundle goes through :func:`tfjsfs.copy_model` (streamed, verified,
    shards first and model.json last). A bundle that fails (e.g. a broken
    source) is reported in its row; the others still copy.

    Parameters
    ----------
    src_prefix, dst_prefix : str
    client : distributed.Client or str, optional
    overwrite, shard_size, quantize, verify
        As for :func:`tfjsfs.copy_model`.
    progress : fsspec.callbacks.Callback, optional
        Counts bundles done.
    src_options, dst_options : dict, optional
        Options for one side (override *storage_options*).
    storage_options : dict, optional
        Options for both sides.
    **deprecated_options
        Storage options as loose keywords: deprecated (``DeprecationWarning``).

    Returns
    -------
    pandas.DataFrame
        Columns ``src``, ``dst``, ``ok``, ``bytes``, ``files``, ``error``.
    """
    storage_options = storage_options_of(storage_options, deprecated_options, "copy_all")
    s_opts = {**storage_options, **dict(src_options or {})}
    d_opts = {**storage_options, **dict(dst_options or {})}
    found = discover(src_prefix, s_opts)
    pairs = [
        (b.name, destination(os.fspath(src_prefix), dst_prefix, b.name), _json_url(b))
        for b in found
    ]
    copy_options = {
        "overwrite": overwrite,
        "shard_size": shard_size,
        "quantize": quantize,
        "verify": verify,
        "src_options": s_opts,
        "dst_options": d_opts,
    }
    rows = _run_tasks(
        _copy_chunk, pairs, client, progress or DEFAULT_CALLBACK, copy_options=copy_options
    )
    return _frame(rows, ["src", "dst", "ok", "bytes", "files", "error"], "src")
