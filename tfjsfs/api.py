"""The model API, mirroring TF.js's IO layer: load, save, and the handler router.

``load_model``/``save_model`` take a URL (any fsspec URL, ``tfjs+…`` URL or
local path) or an IOHandler object. Custom storage plugs in through
:func:`register_handler`, as with TF.js's ``registerLoadRouter`` /
``registerSaveRouter``.
"""

from __future__ import annotations

import dataclasses
import inspect
import posixpath
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from fsspec.asyn import get_loop, sync
from fsspec.callbacks import DEFAULT_CALLBACK, Callback

from .artifacts import ModelArtifacts, SaveResult
from .codec import encode_weight, quantization_plan
from .errors import HandlerNotFoundError
from .fetch import fetch_bundle, open_bundle
from .layouts import DEFAULT_SHARD_SIZE, ShardPlan, plan_bundle
from .manifest import WeightGroup, WeightIndex
from .paths import resolve
from .writer import write_bundle

__all__ = [
    "IOHandler",
    "get_load_handlers",
    "get_save_handlers",
    "load_model",
    "load_model_async",
    "load_weights",
    "register_handler",
    "save_model",
    "save_model_async",
]


@runtime_checkable
class IOHandler(Protocol):
    """TF.js ``IOHandler``: an object with ``load()`` and/or ``save(artifacts)``.

    Either method may be a plain function or a coroutine function.
    """

    def load(self) -> ModelArtifacts: ...

    def save(self, artifacts: ModelArtifacts) -> SaveResult: ...


Router = Callable[..., Any]
_routers: list[tuple[Router, bool, bool]] = []


def register_handler(router: Router, *, load: bool = True, save: bool = True) -> Router:
    """Register a router: ``router(url, **options)`` returns an IOHandler or None.

    Routers are asked in registration order before the built-in fsspec
    handler; more than one match is an error, as in TF.js. Usable as a
    decorator.
    """
    _routers.append((router, load, save))
    return router


def _handlers(url: Any, kind: str, options: Mapping[str, Any]) -> list[Any]:
    out = []
    for router, load, save in _routers:
        if (kind == "load" and load) or (kind == "save" and save):
            handler = router(url, **options)
            if handler is not None:
                out.append(handler)
    return out


def get_load_handlers(url: Any, **options: Any) -> list[Any]:
    """Handlers of registered routers that can load *url* (TF.js ``getLoadHandlers``)."""
    return _handlers(url, "load", options)


def get_save_handlers(url: Any, **options: Any) -> list[Any]:
    """Handlers of registered routers that can save to *url* (TF.js ``getSaveHandlers``)."""
    return _handlers(url, "save", options)


def _pick(url: Any, kind: str, options: Mapping[str, Any]) -> Any | None:
    if hasattr(url, kind) and not isinstance(url, (str, bytes)):
        return url
    found = _handlers(url, kind, options)
    if len(found) > 1:
        raise HandlerNotFoundError(
            f"found more than one ({len(found)}) {kind} handlers for URL {url!r}"
        )
    return found[0] if found else None


async def _call(method: Callable[..., Any], *args: Any) -> Any:
    result = method(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


def _run(coro: Any) -> Any:
    return sync(get_loop(), lambda: coro)


# ---------------------------------------------------------------- loading


async def load_model_async(
    url: Any,
    *,
    batch_size: int | None = None,
    allow_outside: bool = False,
    callback: Callback = DEFAULT_CALLBACK,
    storage_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> ModelArtifacts:
    """Coroutine twin of :func:`load_model`."""
    handler = _pick(url, "load", options)
    if handler is not None:
        return await _call(handler.load)
    fs, path = resolve(url, **dict(storage_options or {}))
    bundle = await open_bundle(fs, path, allow_outside=allow_outside)
    buffer, index = await fetch_bundle(fs, bundle, batch_size=batch_size, callback=callback)
    return _artifacts_from(bundle.doc, buffer, index)


def _artifacts_from(doc, buffer: np.ndarray, index: WeightIndex) -> ModelArtifacts:
    """Artifacts whose weight data is *buffer*, compacted only if groups have gaps."""
    group_starts, offset = [], 0
    for sizes in index.shard_sizes:
        group_starts.append(offset)
        offset += sum(sizes)
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


def load_model(url: Any, **options: Any) -> ModelArtifacts:
    """Load a TF.js bundle (TF.js ``loadLayersModel``'s IO half).

    Parameters
    ----------
    url : str, os.PathLike or IOHandler
        A model folder or its JSON file: local path, ``file://``, ``memory://``,
        ``s3://``, ``gs://``, ``http(s)://``, ``tfjs+…://`` or ``tfjs::…``.
    batch_size : int, optional
        Shards fetched at once.
    allow_outside : bool
        Follow manifest paths that leave the model folder (refused by default).
    callback : fsspec.callbacks.Callback, optional
        Byte progress.
    storage_options : dict, optional
        Options for the inner filesystem.

    Returns
    -------
    ModelArtifacts
        With ``problems`` listing tolerated irregularities (trailing bytes).
    """
    return _run(load_model_async(url, **options))


def load_weights(
    url: Any, names: Sequence[str] | None = None, **options: Any
) -> dict[str, np.ndarray]:
    """Weights of a bundle as ``{name: numpy array}`` (dequantized).

    Parameters
    ----------
    url : str or os.PathLike
        As for :func:`load_model`.
    names : sequence of str, optional
        Only these weights; unknown names raise ``KeyError``.
    """
    weights = load_model(url, **options).weights
    if names is None:
        return weights
    missing = [n for n in names if n not in weights]
    if missing:
        raise KeyError(f"no weights named {', '.join(map(repr, missing))}")
    return {n: weights[n] for n in names}


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
    handler = _pick(url, "save", options)
    if handler is not None:
        return await _call(handler.save, artifacts)
    if quantize is not None:
        artifacts = requantize(artifacts, quantize)
    fs, path = resolve(url, **dict(storage_options or {}))
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


def save_model(artifacts: ModelArtifacts, url: Any, **options: Any) -> SaveResult:
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
        (see :func:`tfjsfs.codec.quantization_plan`); already quantized
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
    return _run(save_model_async(artifacts, url, **options))


def requantize(artifacts: ModelArtifacts, quantize: str | Mapping[str, Any]) -> ModelArtifacts:
    """Artifacts with float32 weights quantized as *quantize* says.

    Weights that are already quantized are kept byte for byte.
    """
    plan = quantization_plan([s.name for s in artifacts.weight_specs], quantize)
    view = memoryview(artifacts.weight_data).cast("B")
    specs, chunks = [], []
    for spec, (start, end) in zip(artifacts.weight_specs, artifacts.weight_offsets(), strict=True):
        if spec.quantization is None and spec.name in plan:
            spec, data = encode_weight(spec.name, artifacts.weights[spec.name], plan[spec.name])
        else:
            data = [view[start:end]]
        specs.append(spec)
        chunks.extend(data)
    buffer = bytearray(b"".join(memoryview(c).cast("B") for c in chunks))
    return dataclasses.replace(artifacts, weight_specs=specs, weight_data=buffer)
