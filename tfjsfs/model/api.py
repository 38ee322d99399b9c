"""The model API, mirroring TF.js's IO layer: load and save.

``load_model``/``save_model`` take a URL (any fsspec URL, ``tfjs+…`` URL or
local path) or an IOHandler object; routers (:mod:`tfjsfs.model.handlers`)
pick the handler for URLs that are not plain fsspec stores.
"""

from __future__ import annotations

import dataclasses
import inspect
import posixpath
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from fsspec.callbacks import DEFAULT_CALLBACK, Callback

from .._util.concurrency import sync_twin
from .._util.progress import progress_callback
from ..errors import (
    ManifestError,
    ModelNotFoundError,
    ShardMissingError,
    WeightDataError,
)
from ..format.artifacts import ModelArtifacts, SaveResult
from ..format.codec import quantization_plan, reencode_weight
from ..format.layouts import DEFAULT_SHARD_SIZE, ShardPlan, plan_bundle
from ..format.manifest import WeightGroup
from ..io.bundle import Bundle, gc_paused, group_offsets, open_bundle
from ..io.fetch import ALIGN, arrays_from_buffer, fetch_all, fetch_arrays, index_from_buffer
from ..io.opening import open_store, release, settings
from ..io.ranges import DEFAULT_MAX_GAP
from ..io.writer import write_bundle
from .cache import open_url
from .handlers import pick_handler

__all__ = [
    "load_model",
    "load_model_async",
    "load_weights",
    "load_weights_async",
    "save_model",
    "save_model_async",
]


async def _call(method: Callable[..., Any], *args: Any) -> Any:
    result = method(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


# ---------------------------------------------------------------- loading

_LOAD_OPTIONS_DOC = """
    batch_size : int, optional
        Requests in flight at once (default 32).
    allow_outside : bool
        Follow manifest paths that leave the model folder or name a host
        (refused by default).
    callback : fsspec.callbacks.Callback, optional
        Byte progress: ``set_size(total)`` then ``relative_update`` per chunk.
    progress : bool, optional
        Show a tqdm bar (default: when stderr is a terminal).
    storage_options : dict, optional
        Options for the inner filesystem.
    headers : dict, optional
        Extra HTTP request headers (model.json and shards).
    weight_path_prefix : str, optional
        Shard location prefix, concatenated verbatim with each manifest path.
    weight_url_converter : callable, optional
        ``f(manifest_path) -> url`` (plain or async), e.g. presigned URLs.
    carry_query : bool
        Over HTTP, carry model.json's query string onto shard URLs (TF.js
        does; default True).
    retries : int
        Extra attempts after transient failures (5xx, resets, short bodies).
    timeout : float or None
        Per-request timeout in seconds.
    cache : bool or path, optional
        Keep a remote bundle in a local cache (``True``: ``$TFJSFS_CACHE_DIR``
        or ``~/.cache/tfjsfs``); later loads revalidate model.json with one
        conditional request and read the shards locally
        (:mod:`tfjsfs.model.cache`).
"""


def _label(url: Any) -> str:
    text = str(url).rstrip("/")
    return text.rsplit("/", 1)[-1] or text


async def load_model_async(
    url: Any,
    *,
    callback: Callback | None = None,
    progress: bool | None = None,
    **options: Any,
) -> ModelArtifacts:
    """Coroutine twin of :func:`load_model`."""
    handler = pick_handler(url, "load", options)
    if handler is not None:
        return await _call(handler.load)
    config = settings(**options)

    async def load(fs: Any, bundle: Bundle) -> ModelArtifacts:
        with progress_callback(callback, progress, _label(url)) as reporter:
            buffer = await fetch_all(
                fs, bundle, batch_size=config.batch_size, callback=reporter, policy=config.policy
            )
        return _artifacts_from(bundle, buffer)

    return await _with_bundle(url, config, load)


async def _with_bundle(url: Any, config: Any, job: Any, *, validate: bool = True) -> Any:
    """Run ``job(fs, bundle)``; once more if the bundle was replaced meanwhile.

    A save that replaces a bundle deletes the old shards after publishing the
    new model.json, so a reader that read the old model.json may find a shard
    gone (or changed). When model.json now names other shards, the load is
    retried on the new version; otherwise the error stands.
    """
    for attempt in range(2):
        fs, bundle, owned = await open_url(url, config, validate=validate)
        try:
            return await job(fs, bundle)
        except (ShardMissingError, WeightDataError):
            if attempt or not await _replaced(fs, bundle, url, config):
                raise
        finally:
            if owned:
                await release(fs, bundle)
    raise AssertionError("unreachable")


async def _replaced(fs: Any, bundle: Bundle, url: Any, config: Any) -> bool:
    """Whether the bundle's model.json now names other shards than *bundle* did."""
    try:
        fresh = await open_bundle(
            fs, bundle.json_path, options=config.options, policy=config.policy
        )
    except (ModelNotFoundError, ManifestError):
        return False
    return fresh.shard_paths != bundle.shard_paths


def _artifacts_from(bundle: Bundle, buffer: np.ndarray) -> ModelArtifacts:
    """Artifacts whose weight data is *buffer*, compacted only if groups have gaps."""
    index = index_from_buffer(bundle, buffer)
    doc = bundle.doc
    group_starts = bundle.group_starts or group_offsets(index.shard_sizes)
    locations = [index[spec.name] for spec in doc.weight_specs]
    contiguous, cursor = True, 0
    for loc in locations:
        absolute = group_starts[loc.group] + loc.start
        contiguous &= absolute == cursor
        cursor = absolute + loc.nbytes
    if contiguous:
        data = memoryview(buffer)[:cursor]
    else:
        data = bytearray(cursor)
        cursor = 0
        for loc in locations:
            absolute = group_starts[loc.group] + loc.start
            data[cursor : cursor + loc.nbytes] = buffer[absolute : absolute + loc.nbytes]
            cursor += loc.nbytes
    artifacts = ModelArtifacts.from_model_json(doc, data)
    artifacts.problems = index.problems()
    return artifacts


@sync_twin(load_model_async)
def load_model() -> ModelArtifacts:  # docstring below: it shares the options' part
    pass


load_model.__doc__ = (
    """Load a TF.js bundle (TF.js ``loadLayersModel``'s IO half).

    Every shard is fetched concurrently straight into one buffer; weights
    are zero-copy views of it.

    Parameters
    ----------
    url : str, os.PathLike or IOHandler
        A model folder or its JSON file: local path, ``file://``, ``memory://``,
        ``s3://``, ``gs://``, ``http(s)://``, ``tfjs+…://`` or ``tfjs::…``.
    """
    + _LOAD_OPTIONS_DOC
    + """
    Returns
    -------
    ModelArtifacts
        With ``problems`` listing tolerated irregularities (trailing bytes).

    Raises
    ------
    ModelNotFoundError, ShardMissingError, ManifestError, WeightDataError, TransferError
    """
)


async def load_weights_async(
    url: Any,
    names: Sequence[str] | None = None,
    *,
    callback: Callback | None = None,
    progress: bool | None = None,
    max_gap: int = DEFAULT_MAX_GAP,
    **options: Any,
) -> dict[str, np.ndarray]:
    """Coroutine twin of :func:`load_weights`."""
    if isinstance(names, str):
        names = [names]
    handler = pick_handler(url, "load", options)
    if handler is not None:
        weights = (await _call(handler.load)).weights
        if names is None:
            return weights
        missing = [n for n in names if n not in weights]
        if missing:
            raise KeyError(f"no weights named {', '.join(map(repr, missing))}")
        return {n: weights[n] for n in names}
    config = settings(max_gap=max_gap, **options)

    async def load(fs: Any, bundle: Bundle) -> dict[str, np.ndarray]:
        with progress_callback(callback, progress, _label(url)) as reporter:
            if names is None:
                # only the layout's columns are needed from here on: model.json's
                # text goes before the weights buffer is allocated
                bundle.release_manifest()
                buffer = await fetch_all(
                    fs,
                    bundle,
                    batch_size=config.batch_size,
                    callback=reporter,
                    policy=config.policy,
                    align=ALIGN,
                )
                with gc_paused():
                    return arrays_from_buffer(bundle, buffer)
            return await fetch_arrays(
                fs,
                bundle,
                names,
                batch_size=config.batch_size,
                callback=reporter,
                policy=config.policy,
                max_gap=config.max_gap,
            )

    return await _with_bundle(url, config, load, validate=names is not None)


@sync_twin(load_weights_async)
def load_weights() -> dict[str, np.ndarray]:  # docstring below: it shares the options' part
    pass


load_weights.__doc__ = (
    """Weights of a bundle as ``{name: numpy array}`` (dequantized), in manifest order.

    Without *names* every shard is fetched into one buffer and the arrays are
    zero-copy views of it. With *names* only the byte ranges those weights
    occupy are fetched (neighbours closer than ``max_gap`` bytes merged into
    one request), as TF.js's ``loadWeights(manifest, prefix, names)`` would
    wish to.

    Parameters
    ----------
    url : str or os.PathLike
        As for :func:`load_model`.
    names : sequence of str, optional
        Only these weights; unknown names raise ``KeyError``.
    max_gap : int
        With *names*: unwanted bytes allowed between merged ranges (64,000).
    """
    + _LOAD_OPTIONS_DOC
    + """
    Returns
    -------
    dict of str to numpy.ndarray
    """
)


# ----------------------------------------------------------------- saving


async def save_model_async(
    artifacts: ModelArtifacts,
    url: Any,
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    quantize: str | Mapping[str, Any] | None = None,
    overwrite: bool = False,
    layout: str = "converter",
    name: str | None = None,
    callback: Callback = DEFAULT_CALLBACK,
    storage_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> SaveResult:
    """Coroutine twin of :func:`save_model`."""
    routed = {**options, "storage_options": storage_options} if storage_options else options
    if quantize is not None:  # for every destination, IO handlers included
        artifacts = requantize(artifacts, quantize)
    handler = pick_handler(url, "save", routed)
    if handler is not None:
        return await _call(handler.save, artifacts)
    fs, path, owned = open_store(url, dict(storage_options or {}))
    try:
        return await _save_bundle(
            fs, path, artifacts, layout, shard_size, name, overwrite, callback
        )
    finally:
        if owned:
            await release(fs)


async def _save_bundle(fs, path, artifacts, layout, shard_size, name, overwrite, callback):
    """Plan and write *artifacts* as a bundle at inner *path* of *fs*."""
    folder, json_name = path.rstrip("/"), None
    if folder.endswith(".json"):
        folder, json_name = posixpath.split(folder)
    if name is None:
        name = json_name[: -len(".json")] if json_name else "model"
    plan = plan_bundle(artifacts, layout, shard_size=shard_size, name=name)
    if json_name is not None and layout in ("converter", "tfjs-node", "upload"):
        plan = type(plan)(json_name, plan.groups, plan.shards)
    data = memoryview(artifacts.weight_data).cast("B")

    async def shard_bytes(shard: ShardPlan) -> memoryview:
        return data[shard.start : shard.end]

    def render(groups: Sequence[WeightGroup], json_path: str) -> bytes:
        return artifacts.to_model_json(groups).dumps()

    json_path, files = await write_bundle(
        fs, folder, plan, shard_bytes, render, overwrite=overwrite, callback=callback
    )
    return SaveResult(artifacts.info(), url=json_path, files=files)


@sync_twin(save_model_async)
def save_model() -> SaveResult:
    """Save a bundle (TF.js ``model.save(url)``); shards first, model.json last.

    Parameters
    ----------
    artifacts : ModelArtifacts
    url : str, os.PathLike or IOHandler
        The model folder (or its JSON file name).
    shard_size : int
        Bytes per shard (converter layout), default 4,194,304.
    quantize : None, str or mapping
        ``"uint8"``, ``"uint16"``, ``"float16"`` or ``{dtype: patterns}``
        (see :func:`tfjsfs.format.codec.quantization_plan`); already quantized
        weights are kept as they are.
    overwrite : bool
        Replace an existing bundle (never mixing old and new shards).
    layout : {"converter", "tfjs-node", "downloads", "upload"}
    name : str, optional
        File prefix for the downloads layout.
    callback : fsspec.callbacks.Callback, optional
    storage_options : dict, optional

    Returns
    -------
    SaveResult
    """


def requantize(artifacts: ModelArtifacts, quantize: str | Mapping[str, Any]) -> ModelArtifacts:
    """Artifacts with float32 weights quantized as *quantize* says.

    Weights that are already quantized are kept byte for byte.
    """
    plan = quantization_plan([s.name for s in artifacts.weight_specs], quantize)
    view = memoryview(artifacts.weight_data).cast("B")
    specs, chunks = [], []
    for spec, (start, end) in zip(artifacts.weight_specs, artifacts.weight_offsets(), strict=True):
        if spec.quantization is None and spec.name in plan:
            spec, data = reencode_weight(spec, artifacts.weights[spec.name], plan[spec.name])
        else:
            data = [view[start:end]]
        specs.append(spec)
        chunks.extend(data)
    buffer = bytearray(b"".join(memoryview(c).cast("B") for c in chunks))
    return dataclasses.replace(artifacts, weight_specs=specs, weight_data=buffer)
