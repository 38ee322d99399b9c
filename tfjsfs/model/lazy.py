"""Lazy, per-tensor access to a bundle, in the spirit of safetensors' ``safe_open``.

::

    with tfjsfs.open_model("https://host/models/m/model.json") as m:
        m.keys()                          # weight names, manifest order
        kernel = m.get_tensor("dense/kernel")
        rows = m.get_slice("embeddings")[1000:1010]   # only those rows fetched
        m.metadata, m.artifacts_info

    async with tfjsfs.open_model_async(url) as m:
        kernel = await m.get_tensor("dense/kernel")
        rows = await m.get_slice("embeddings")[1000:1010]

Opening reads model.json and sizes the shards (one listing, or nothing
over HTTP for the converter's layout); each tensor then costs only its own
byte ranges. ``get_slice`` fetches only the leading-axis rows asked for when
the weight has a fixed element size (numeric, quantized or not); other keys
are applied after fetching the covering rows, and string tensors are fetched
whole.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from fsspec.asyn import get_loop, sync
from fsspec.callbacks import DEFAULT_CALLBACK, Callback

from ..format.artifacts import ModelArtifacts, ModelArtifactsInfo
from ..format.codec import decode_weight
from ..format.dtypes import DECODED
from ..format.manifest import ModelJSON, WeightIndex, WeightSpec
from ..io.bundle import Bundle
from ..io.fetch import fetch_arrays, fetch_weight_buffer, load_index
from ..io.opening import Settings, release, settings
from .cache import open_url

__all__ = [
    "AsyncModel",
    "AsyncTensorSlice",
    "Model",
    "ModelOpening",
    "TensorSlice",
    "open_model",
    "open_model_async",
]


def _rows(shape: tuple[int, ...], key: Any) -> tuple[int, int, tuple] | None:
    """``(first row, end row, key relative to those rows)``, or None to fetch all.

    Only leading-axis integers and step slices are narrowed; anything else
    (arrays, booleans, ``None``, a leading ``...``) reads the whole tensor.
    """
    if not shape:
        return None
    key = key if isinstance(key, tuple) else (key,)
    if not key:
        return None
    first, rest = key[0], key[1:]
    n = shape[0]
    if isinstance(first, (int, np.integer)) and not isinstance(first, bool):
        i = int(first)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of bounds for axis 0 with size {n}")
        i %= n
        return i, i + 1, (0, *rest)
    if isinstance(first, slice):
        span = range(*first.indices(n))
        if not span:
            return 0, 0, (slice(0, 0), *rest)
        lo, hi = min(span[0], span[-1]), max(span[0], span[-1]) + 1
        stop = span.stop - lo
        local = slice(span.start - lo, stop if stop >= 0 else None, span.step)
        return lo, hi, (local, *rest)
    return None


class AsyncTensorSlice:
    """A weight whose parts are fetched on indexing: ``await s[10:20]``.

    Attributes
    ----------
    shape : tuple of int
    dtype : numpy.dtype
        Of the values returned (dequantized).
    """

    def __init__(self, model: AsyncModel, spec: WeightSpec):
        self._model = model
        self.spec = spec
        self.shape = spec.shape
        self.dtype = DECODED[spec.dtype]

    def get_shape(self) -> list[int]:
        """The weight's shape."""
        return list(self.shape)

    def get_dtype(self) -> str:
        """The weight's TF.js dtype (``float32``, ``int32``, ``bool``, …)."""
        return self.spec.dtype

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a scalar weight")
        return self.shape[0]

    def __getitem__(self, key: Any):
        return self.read(key)

    async def read(self, key: Any = (), *, callback: Callback = DEFAULT_CALLBACK) -> np.ndarray:
        """The values ``tensor[key]``, fetching only the rows needed where possible."""
        spec = self.spec
        plan = _rows(self.shape, key) if spec.stored_itemsize is not None else None
        if plan is None:
            values = await self._model.get_tensor(spec.name, callback=callback)
            return values if isinstance(key, tuple) and not key else values[key]
        lo, hi, local = plan
        row = math.prod(self.shape[1:]) * spec.stored_itemsize
        part = WeightSpec(
            spec.name, (hi - lo, *self.shape[1:]), spec.dtype, spec.group, spec.quantization
        )
        buffer = await self._model._fetch(spec.name, lo * row, hi * row, callback)
        return decode_weight(part, memoryview(buffer), source=self._model.bundle.json_path)[local]


class AsyncModel:
    """A bundle opened for per-tensor reads (asyncio API).

    Make one with :func:`open_model_async`. A mapping-like view of the
    weights: ``keys()``, ``in``, ``len()``, iteration in manifest order.
    """

    def __init__(self, fs: Any, bundle: Bundle, index: WeightIndex, config: Settings, owned: bool):
        self.fs = fs
        self.bundle = bundle
        self.index = index
        self._config = config
        self._owned = owned
        self._names = [spec.name for spec in bundle.doc.weight_specs]
        self.closed = False

    @classmethod
    async def open(cls, url: Any, **options: Any) -> AsyncModel:
        """Read model.json and size the shards; see :func:`open_model`."""
        config = settings(**options)
        fs, bundle, owned = await open_url(url, config)
        try:
            index = await load_index(
                fs, bundle, policy=config.policy, batch_size=config.batch_size
            )
        except BaseException:
            if owned:
                await release(fs, bundle)
            raise
        return cls(fs, bundle, index, config, owned)

    # --------------------------------------------------------- the mapping

    def keys(self) -> list[str]:
        """Weight names in manifest order."""
        return list(self._names)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self.index

    def spec(self, name: str) -> WeightSpec:
        """The manifest entry of weight *name*."""
        return self.index[name].spec

    @property
    def model_json(self) -> ModelJSON:
        """The parsed model.json."""
        return self.bundle.doc

    @property
    def metadata(self) -> dict[str, Any]:
        """model.json's fields other than the topology and the weights manifest.

        Keys as in model.json: ``format``, ``generatedBy``, ``convertedBy``,
        ``signature``, ``userDefinedMetadata``, … (only those present).
        """
        doc = self.bundle.doc.to_json()
        return {k: v for k, v in doc.items() if k not in ("modelTopology", "weightsManifest")}

    @property
    def artifacts_info(self) -> ModelArtifactsInfo:
        """TF.js ``ModelArtifactsInfo`` of the model (weight bytes = shard bytes)."""
        info = ModelArtifacts.from_model_json(self.bundle.doc).info(_dt.datetime.now(_dt.UTC))
        info.weight_data_bytes = sum(sum(g) for g in self.index.shard_sizes)
        return info

    # ------------------------------------------------------------- reading

    async def _fetch(self, name: str, start: int, end: int, callback: Callback) -> np.ndarray:
        self._check_open()
        out = await fetch_weight_buffer(
            self.fs,
            self.bundle,
            name,
            start,
            end,
            index=self.index,
            callback=callback,
            policy=self._config.policy,
            max_gap=self._config.max_gap,
        )
        self.index = self.bundle.index or self.index
        return out

    async def get_tensor(self, name: str, *, callback: Callback = DEFAULT_CALLBACK) -> np.ndarray:
        """Weight *name* as a numpy array (dequantized), fetching only its bytes."""
        return (await self.get_tensors([name], callback=callback))[name]

    async def get_tensors(
        self, names: Sequence[str], *, callback: Callback = DEFAULT_CALLBACK
    ) -> dict[str, np.ndarray]:
        """Several weights, neighbouring ranges merged into few requests."""
        self._check_open()
        out = await fetch_arrays(
            self.fs,
            self.bundle,
            names,
            index=self.index,
            batch_size=self._config.batch_size,
            callback=callback,
            policy=self._config.policy,
            max_gap=self._config.max_gap,
        )
        self.index = self.bundle.index or self.index
        return out

    def get_slice(self, name: str) -> AsyncTensorSlice:
        """A lazily indexed view of weight *name*: ``await m.get_slice(name)[a:b]``."""
        return AsyncTensorSlice(self, self.spec(name))

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"{self.bundle.json_path}: the model is closed")

    async def close(self) -> None:
        """Release the connections made for this model (if it owns them)."""
        if not self.closed:
            self.closed = True
            if self._owned:
                await release(self.fs, self.bundle)

    async def __aenter__(self) -> AsyncModel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<AsyncModel {self.bundle.json_path!r}: {len(self)} weights>"


class ModelOpening:
    """What :func:`open_model_async` returns: awaitable, and an async context manager.

    ``await open_model_async(url)`` gives an :class:`AsyncModel` (close it with
    ``await m.close()``); ``async with open_model_async(url) as m`` closes it on exit.
    """

    def __init__(self, url: Any, options: dict[str, Any]):
        self._url = url
        self._options = options
        self._model: AsyncModel | None = None

    def __await__(self):
        return AsyncModel.open(self._url, **self._options).__await__()

    async def __aenter__(self) -> AsyncModel:
        self._model = await AsyncModel.open(self._url, **self._options)
        return self._model

    async def __aexit__(self, *exc: object) -> None:
        if self._model is not None:
            await self._model.close()


def open_model_async(url: Any, **options: Any) -> ModelOpening:
    """Open a bundle for per-tensor reads from asyncio code.

    ``async with open_model_async(url) as m`` or ``m = await
    open_model_async(url)`` (then ``await m.close()``). Options as for
    :func:`open_model`.
    """
    return ModelOpening(url, options)


class TensorSlice:
    """A weight whose parts are fetched on indexing: ``m.get_slice(name)[10:20]``."""

    def __init__(self, inner: AsyncTensorSlice, loop: Any):
        self._inner = inner
        self._loop = loop
        self.spec = inner.spec
        self.shape = inner.shape
        self.dtype = inner.dtype

    def get_shape(self) -> list[int]:
        """The weight's shape."""
        return self._inner.get_shape()

    def get_dtype(self) -> str:
        """The weight's TF.js dtype."""
        return self._inner.get_dtype()

    def __len__(self) -> int:
        return len(self._inner)

    def __getitem__(self, key: Any) -> np.ndarray:
        return sync(self._loop, self._inner.read, key)


class Model:
    """A bundle opened for per-tensor reads; see :func:`open_model`."""

    def __init__(self, inner: AsyncModel, loop: Any):
        self._inner = inner
        self._loop = loop

    @property
    def bundle(self) -> Bundle:
        """The located bundle."""
        return self._inner.bundle

    def keys(self) -> list[str]:
        """Weight names in manifest order."""
        return self._inner.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self._inner)

    def __len__(self) -> int:
        return len(self._inner)

    def __contains__(self, name: object) -> bool:
        return name in self._inner

    def spec(self, name: str) -> WeightSpec:
        """The manifest entry of weight *name*."""
        return self._inner.spec(name)

    @property
    def model_json(self) -> ModelJSON:
        """The parsed model.json."""
        return self._inner.model_json

    @property
    def metadata(self) -> dict[str, Any]:
        """model.json's fields other than the topology and the weights manifest."""
        return self._inner.metadata

    @property
    def artifacts_info(self) -> ModelArtifactsInfo:
        """TF.js ``ModelArtifactsInfo`` of the model."""
        return self._inner.artifacts_info

    def get_tensor(self, name: str, *, callback: Callback = DEFAULT_CALLBACK) -> np.ndarray:
        """Weight *name* as a numpy array (dequantized), fetching only its bytes."""
        return sync(self._loop, self._inner.get_tensor, name, callback=callback)

    def get_tensors(
        self, names: Sequence[str], *, callback: Callback = DEFAULT_CALLBACK
    ) -> dict[str, np.ndarray]:
        """Several weights, neighbouring ranges merged into few requests."""
        return sync(self._loop, self._inner.get_tensors, names, callback=callback)

    def get_slice(self, name: str) -> TensorSlice:
        """A lazily indexed view of weight *name*: ``m.get_slice(name)[a:b]``."""
        return TensorSlice(self._inner.get_slice(name), self._loop)

    def close(self) -> None:
        """Release the model's connections (if it owns them)."""
        sync(self._loop, self._inner.close)

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Model {self.bundle.json_path!r}: {len(self)} weights>"


def open_model(url: Any, **options: Any) -> Model:
    """Open a bundle for per-tensor reads (``with tfjsfs.open_model(url) as m``).

    Reads model.json and the shard sizes; each ``get_tensor``/``get_slice``
    then fetches only the byte ranges it needs.

    Parameters
    ----------
    url : str or os.PathLike
        A model folder or its JSON file, any URL :func:`tfjsfs.load_model` takes.
    **options
        As for :func:`tfjsfs.load_model` (``storage_options``, ``headers``,
        ``weight_path_prefix``, ``weight_url_converter``, ``carry_query``,
        ``allow_outside``, ``retries``, ``timeout``, ``batch_size``), and
        ``max_gap`` (bytes allowed between merged ranges, 64,000).

    Returns
    -------
    Model
    """
    loop = get_loop()
    return Model(sync(loop, AsyncModel.open, url, **options), loop)
