"""Virtual tensor files: ``<model>/@tensors/<weight name>.npy``.

Each weight of a bundle reads as a complete ``.npy`` file (format 1.0,
C order, little-endian) that :func:`numpy.load` accepts:

* unquantized ``float32``, ``int32`` and ``complex64`` weights: the file body
  *is* the stored bytes, so reading a byte range of the file fetches exactly
  that range of the weight from its shard(s), with one inner
  ``_cat_ranges`` call (a weight may span several shards);
* quantized weights: the stored bytes are fetched once per file object and
  dequantized as TF.js does (``float32`` or ``int32`` values);
* ``bool`` weights: fetched once, stored as 0/1 (``|b1``);
* ``string`` weights: fetched once and given as fixed-width bytes ``S<n>``
  (``n`` the longest element; object arrays would need pickle). NumPy drops
  trailing NUL bytes of ``S`` elements.

The ``.npy`` header comes from the manifest and costs no request. Bytes are
fetched by the engine (:func:`tfjsfs.io.fetch.fetch_weight_bytes`), which checks
every reply (a server that ignores ``Range`` included) and names the model,
weight, shard and byte counts when something is wrong.
"""

from __future__ import annotations

import io
import posixpath
from typing import Any

import numpy as np
from fsspec.asyn import sync
from fsspec.spec import AbstractBufferedFile

from .._util.retry import RetryPolicy
from ..errors import ReadOnlyError, ShardMissingError, WeightDataError
from ..format.codec import decode_weight
from ..format.dtypes import DECODED, DIRECT
from ..format.manifest import WeightIndex, WeightSpec
from ..io.bundle import Bundle
from ..io.fetch import fetch_weight_bytes
from .paths import TENSORS_DIR, encode_weight_name

__all__ = ["ReadOnlyError", "TensorFile", "VirtualTensor", "npy_header", "tensor_entries"]

#: weights whose stored bytes are their .npy body


def npy_header(dtype: Any, shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` (format 1.0) header of a C-order array."""
    buf = io.BytesIO()
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
        "fortran_order": False,
        "shape": tuple(shape),
    }
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def npy_dtype(spec: WeightSpec) -> np.dtype | None:
    """The ``.npy`` dtype of a weight (None for strings: width depends on data)."""
    if spec.dtype == "string":
        return None
    return DECODED[spec.dtype]


def npy_size(spec: WeightSpec) -> int | None:
    """Size of a weight's ``.npy`` file (None for non-empty strings)."""
    dtype = npy_dtype(spec)
    if dtype is None:
        return None
    return len(npy_header(dtype, spec.shape)) + spec.size * dtype.itemsize


def _fixed_width(array: np.ndarray) -> np.ndarray:
    flat = list(array.reshape(-1))
    width = max((len(x) for x in flat), default=0) or 1
    return np.array(flat, dtype=f"S{width}").reshape(array.shape)


def tensor_entry(root: str, spec: WeightSpec, group: int, size: int | None) -> dict[str, Any]:
    """The listing entry of one virtual tensor file (*root*: outer model folder)."""
    dtype = npy_dtype(spec)
    return {
        "name": f"{root}/{TENSORS_DIR}/{encode_weight_name(spec.name)}.npy",
        "size": size,
        "type": "file",
        "shape": list(spec.shape),
        "dtype": dtype.str if dtype is not None else "S",
        "tfjs": {
            "role": "tensor",
            "weight": spec.name,
            "dtype": spec.dtype,
            "group": group,
            "quantization": spec.quantization.to_json() if spec.quantization else None,
        },
    }


def tensor_entries(bundle: Bundle, root: str, below: str) -> list[dict[str, Any]]:
    """Entries directly inside ``<root>/@tensors/<below>`` (*below* encoded, may be "").

    Raises
    ------
    FileNotFoundError
        When no weight lies below that folder.
    """
    prefix = f"{below}/" if below else ""
    base = f"{root}/{TENSORS_DIR}" + (f"/{below}" if below else "")
    files, dirs = [], {}
    for g, group in enumerate(bundle.doc.weights_manifest):
        for spec in group.weights:
            encoded = encode_weight_name(spec.name)
            if not encoded.startswith(prefix):
                continue
            head, sep, _ = encoded[len(prefix) :].partition("/")
            if sep:
                name = f"{base}/{head}"
                dirs[name] = {"name": name, "size": 0, "type": "directory"}
            else:
                files.append(tensor_entry(root, spec, g, npy_size(spec)))
    if below and not files and not dirs:
        raise FileNotFoundError(f"{base}: no weights of {bundle.json_path} below {below!r}")
    return [*dirs.values(), *files]


class VirtualTensor:
    """One weight of a bundle as the bytes of a ``.npy`` file.

    Parameters
    ----------
    fs : fsspec.asyn.AsyncFileSystem
        The inner filesystem.
    bundle : tfjsfs.io.bundle.Bundle
    index : WeightIndex
        The bundle's index (from :func:`tfjsfs.io.fetch.load_index`).
    name : str
        The weight name.
    policy : RetryPolicy, optional
        Retries and timeouts of the reads.

    Raises
    ------
    FileNotFoundError
        When the bundle has no weight *name*.
    """

    def __init__(
        self,
        fs: Any,
        bundle: Bundle,
        index: WeightIndex,
        name: str,
        policy: RetryPolicy | None = None,
    ):
        if name not in index:
            raise FileNotFoundError(f"{bundle.json_path} has no weight named {name!r}")
        self.fs = fs
        self.bundle = bundle
        self.index = index
        self.name = name
        self.policy = policy
        self.spec = index[name].spec
        self.direct = self.spec.quantization is None and self.spec.dtype in DIRECT
        dtype = npy_dtype(self.spec)
        self.header = None if dtype is None else npy_header(dtype, self.spec.shape)
        self._body: bytes | None = None

    @property
    def json_path(self) -> str:
        return self.bundle.json_path

    @property
    def body_size(self) -> int:
        if self._body is not None:
            return len(self._body)
        if self.direct:
            return self.index[self.name].nbytes
        return self.spec.size * npy_dtype(self.spec).itemsize

    @property
    def size(self) -> int:
        """Size of the ``.npy`` file (string tensors: after :meth:`prepare`)."""
        if self.header is None:
            raise RuntimeError("string tensor: call prepare() first")
        return len(self.header) + self.body_size

    async def prepare(self) -> VirtualTensor:
        """Fetch what the size depends on (string tensors only)."""
        if self.header is None:
            await self._materialize()
        return self

    async def read(self, start: int | None = None, end: int | None = None) -> bytes:
        """Bytes ``[start, end)`` of the ``.npy`` file (Python slice semantics)."""
        await self.prepare()
        start, end, _ = slice(start, end).indices(self.size)
        if end <= start:
            return b""
        head = len(self.header)
        out = [self.header[start:end]] if start < head else []
        lo, hi = max(start, head) - head, end - head
        if hi > lo:
            if self.direct:
                out.append(await self._stored(lo, hi))
            else:
                out.append((await self._materialize())[lo:hi])
        return b"".join(out)

    async def _stored(self, lo: int | None = None, hi: int | None = None) -> bytes:
        data = await fetch_weight_bytes(
            self.fs, self.bundle, self.index, self.name, lo, hi, policy=self.policy
        )
        self.index = self.bundle.index or self.index  # re-sized after a wrong guess
        return data

    async def _materialize(self) -> bytes:
        if self._body is None:
            array = decode_weight(self.spec, await self._stored(), source=self.json_path)
            if self.spec.dtype == "string":
                array = _fixed_width(array)
            elif self.spec.dtype == "bool":
                array = array.astype(np.bool_)
            self._body = np.ascontiguousarray(array).tobytes()
            if self.header is None:
                self.header = npy_header(array.dtype, array.shape)
        return self._body


class TensorFile(AbstractBufferedFile):
    """A read-only file object over a :class:`VirtualTensor`.

    Reads go through fsspec's block cache (``readahead`` by default), so a
    sequential reader such as :func:`numpy.load` fetches each byte once.
    """

    def __init__(
        self,
        fs: Any,
        path: str,
        tensor: VirtualTensor,
        mode: str = "rb",
        block_size: Any = "default",
        cache_type: str = "readahead",
        cache_options: dict | None = None,
        **kwargs: Any,
    ):
        if mode != "rb":
            raise ReadOnlyError(f"{path} is a virtual tensor file; it can only be read")
        self.tensor = tensor
        super().__init__(
            fs,
            path,
            mode="rb",
            block_size=block_size,
            cache_type=cache_type,
            cache_options=cache_options,
            size=tensor.size,
            **kwargs,
        )

    def _fetch_range(self, start: int, end: int) -> bytes:
        try:
            return sync(self.fs.loop, self.tensor.read, start, end)
        except (ShardMissingError, WeightDataError) as exc:
            model = posixpath.dirname(self.tensor.json_path)
            raise WeightDataError(
                f"{self.path}: {exc} (did the bundle in {model} change while the file "
                "was open? reopen it)"
            ) from exc
