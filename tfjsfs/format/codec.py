"""Weight values to bytes and back, exactly as TF.js and its converter do it.

* Numeric tensors are packed little-endian, row-major, with no padding.
* Strings are ``uint32 LE byte length`` + bytes per element; an empty string
  tensor (no elements) takes 0 bytes, as in TF.js (the Python converter's
  reader wrongly expects 4).
* Dequantization follows TF.js ``decodeWeight``: affine values are computed in
  float64 then rounded to float32, int32 results use JavaScript's
  ``Math.round`` (half towards +inf), float16 widens exactly.
* Quantization follows the converter's ``quantize_weights`` (nudged range).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import FormatError, QuantizationError, WeightDataError
from .dtypes import STORED
from .manifest import Quantization, WeightSpec

__all__ = [
    "decode_weight",
    "encode_weight",
    "normalize_array",
    "quantization_plan",
    "quantize",
    "reencode_weight",
    "string_byte_length",
    "string_lengths",
    "weight_extents",
]

_AUTO_CONVERT = {
    np.dtype("float16"): np.dtype("float32"),
    np.dtype("float64"): np.dtype("float32"),
    np.dtype("int64"): np.dtype("int32"),
    np.dtype("complex128"): np.dtype("complex64"),
}
_LENGTH = np.dtype("<u4")


def string_byte_length(buf: Any, count: int, *, where: str = "string weight") -> int:
    """Bytes taken by *count* length-prefixed strings at the start of *buf*.

    Raises
    ------
    WeightDataError
        If a length prefix or its bytes run past the end of *buf*.
    """
    view = memoryview(buf).cast("B")
    offset = 0
    for i in range(count):
        if offset + 4 > len(view):
            raise WeightDataError(
                f"{where}: length prefix of element {i} needs bytes "
                f"{offset}..{offset + 4} but only {len(view)} are available"
            )
        length = int.from_bytes(view[offset : offset + 4], "little")
        offset += 4 + length
        if offset > len(view):
            raise WeightDataError(
                f"{where}: element {i} claims {length} bytes, past the end of the "
                f"data ({offset} > {len(view)})"
            )
    return offset


def weight_extents(
    specs: Iterable[WeightSpec], buf: Any = None, *, size: int | None = None, where: str = ""
) -> Iterator[tuple[WeightSpec, int, int]]:
    """Each weight's ``(spec, start, end)`` in stored data, back to back in spec order.

    The one walk over stored weights: fixed sizes come from the specs, string
    tensors are measured by walking their length prefixes in *buf*. The walk
    stops after the first weight that ends past the data; that weight is still
    yielded, so the caller can say by how much.

    Parameters
    ----------
    specs : iterable of WeightSpec
    buf : bytes-like, optional
        The stored data; only needed when *specs* hold string weights.
    size : int, optional
        Length of the data when *buf* is not given.
    where : str
        The file, for messages.

    Raises
    ------
    WeightDataError
        A string weight's length prefixes run past the data.
    """
    view = memoryview(buf).cast("B") if buf is not None else None
    total = len(view) if view is not None else size
    offset = 0
    for spec in specs:
        nbytes = spec.byte_length
        if nbytes is None:
            label = f"{where}: weight {spec.name!r}" if where else f"weight {spec.name!r}"
            nbytes = string_byte_length(view[offset:], spec.size, where=label)
        end = offset + nbytes
        yield spec, offset, end
        if total is not None and end > total:
            return
        offset = end


def string_lengths(specs: Iterable[WeightSpec], buf: Any, *, where: str = "") -> dict[str, int]:
    """Byte lengths of the string weights among *specs*, walked in their data *buf*."""
    return {
        spec.name: end - start
        for spec, start, end in weight_extents(specs, buf, where=where)
        if spec.byte_length is None
    }


def _decode_strings(view: memoryview, spec: WeightSpec, where: str) -> np.ndarray:
    out = np.empty(spec.size, dtype=object)
    offset = 0
    for i in range(spec.size):
        length = int.from_bytes(view[offset : offset + 4], "little")
        offset += 4
        out[i] = bytes(view[offset : offset + length])
        offset += length
    if offset != len(view):
        raise WeightDataError(
            f"{where}: string data is {len(view)} bytes but its elements take {offset}"
        )
    return out.reshape(spec.shape)


def decode_weight(spec: WeightSpec, buf: Any, *, source: str = "") -> np.ndarray:
    """Decode one weight's stored bytes into a numpy array (dequantized).

    Unquantized numeric tensors are zero-copy views of *buf* when it is
    suitably aligned, and copies otherwise.

    Parameters
    ----------
    spec : WeightSpec
    buf : bytes-like
        Exactly the weight's stored bytes.
    source : str
        File name for messages.

    Raises
    ------
    WeightDataError
        When *buf* does not hold exactly the weight's bytes.
    """
    where = f"{source}: weight {spec.name!r}" if source else f"weight {spec.name!r}"
    view = memoryview(buf).cast("B")
    if spec.dtype == "string":
        if spec.size and len(view) < 4 * spec.size:
            raise WeightDataError(f"{where}: {len(view)} bytes cannot hold {spec.size} strings")
        string_byte_length(view, spec.size, where=where)
        return _decode_strings(view, spec, where)
    expected = spec.byte_length
    if len(view) != expected:
        raise WeightDataError(
            f"{where}: expected {expected} bytes ({spec.dtype}{list(spec.shape)}), got {len(view)}"
        )
    q = spec.quantization
    stored = STORED[q.dtype if q else spec.dtype]
    raw = np.frombuffer(view, dtype=stored)
    if stored.itemsize > 1 and not raw.flags.aligned:
        raw = raw.copy()
    if q is None:
        if spec.dtype == "bool":
            return (raw != 0).reshape(spec.shape)
        return raw.reshape(spec.shape)
    return _dequantize(raw, spec, q, where).reshape(spec.shape)


def _dequantize(raw: np.ndarray, spec: WeightSpec, q: Quantization, where: str):
    if q.dtype == "float16":
        return raw.astype(np.float32)
    if q.scale is None or q.min is None:
        raise QuantizationError(f"{where}: quantization {q.dtype} needs min and scale")
    values = raw * np.float64(q.scale) + np.float64(q.min)
    if spec.dtype == "int32":
        return np.floor(values + 0.5).astype(np.int32)
    if spec.dtype == "float32":
        return values.astype(np.float32)
    raise QuantizationError(f"{where}: cannot dequantize to {spec.dtype}")


def normalize_array(name: str, value: Any) -> np.ndarray:
    """Turn *value* into an array of a dtype TF.js stores, as the converter does.

    float64/float16 become float32, int64 becomes int32 (refused if a value
    does not fit), complex128 becomes complex64, str/bytes become strings.
    Unquantized uint8/uint16 are refused: TF.js cannot load them.

    Raises
    ------
    FormatError
        For dtypes TF.js cannot represent.
    """
    array = np.asarray(value)
    kind = array.dtype.kind
    if kind in "USO":
        flat = array.reshape(-1)
        out = np.empty(flat.shape, dtype=object)
        for i, item in enumerate(flat):
            if isinstance(item, str):
                out[i] = item.encode("utf-8")
            elif isinstance(item, (bytes, bytearray, memoryview)):
                out[i] = bytes(item)
            else:
                raise FormatError(
                    f"weight {name!r}: string tensors need str or bytes elements, "
                    f"got {type(item).__name__}"
                )
        return out.reshape(array.shape)
    is_int64 = array.dtype == np.int64 and array.size
    if is_int64 and (array.min() < -(2**31) or array.max() > 2**31 - 1):
        raise FormatError(f"weight {name!r}: int64 values do not fit in int32")
    if array.dtype in _AUTO_CONVERT:
        return array.astype(_AUTO_CONVERT[array.dtype])
    if array.dtype in (np.float32, np.int32, np.bool_, np.complex64):
        return array
    raise FormatError(
        f"weight {name!r}: dtype {array.dtype} is not supported by TF.js "
        "(float32, int32, bool, complex64, string)"
    )


def _tfjs_dtype(array: np.ndarray) -> str:
    if array.dtype == object:
        return "string"
    return {"f": "float32", "i": "int32", "b": "bool", "c": "complex64"}[array.dtype.kind]


def quantize(array: np.ndarray, qdtype: str) -> tuple[np.ndarray, Quantization]:
    """Quantize a float32 array like the converter's ``quantize_weights``.

    Parameters
    ----------
    array : numpy.ndarray
        float32 values.
    qdtype : {"uint8", "uint16", "float16"}

    Returns
    -------
    (numpy.ndarray, Quantization)
        Stored values and the manifest entry (with ``original_dtype``).
    """
    if array.dtype != np.float32:
        raise QuantizationError(f"only float32 weights are quantized, not {array.dtype}")
    if qdtype == "float16":
        return array.astype("<f2"), Quantization("float16", original_dtype="float32")
    if qdtype not in ("uint8", "uint16"):
        raise QuantizationError(f"unknown quantization dtype {qdtype!r}")
    target = np.dtype(qdtype)
    if array.size == 0:
        return array.astype(target), Quantization(qdtype, 1.0, 0.0, "float32")
    lo = array.min().astype(np.float64)
    hi = array.max().astype(np.float64)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise QuantizationError("cannot quantize weights with non-finite values")
    if lo == hi:
        return np.zeros(array.shape, target), Quantization(qdtype, 1.0, float(lo), "float32")
    top = np.iinfo(target).max
    scale = (hi - lo) / top
    if lo <= 0 <= hi:
        zero_point = np.round((0 - lo) / scale)
        lo = -zero_point * scale
        hi = top * scale + lo
    stored = np.round((array.clip(lo, hi) - lo) / scale).astype(target)
    return stored, Quantization(qdtype, float(scale), float(lo), "float32")


def quantization_plan(
    names: Sequence[str], quantize: str | Mapping[str, Any] | None
) -> dict[str, str]:
    """Decide each weight's quantization dtype, as the converter's flags do.

    Parameters
    ----------
    names : sequence of str
        Weight names.
    quantize : None, str or mapping
        ``None``: nothing; ``"uint8"``/``"uint16"``/``"float16"``: every weight;
        a mapping ``{dtype: pattern | [patterns] | True}``: ``fnmatch`` patterns
        per dtype, with at most one ``True`` fallthrough for the rest.

    Raises
    ------
    QuantizationError
        Two dtypes match one weight, more than one fallthrough, unknown dtype.
    """
    if quantize is None:
        return {}
    if isinstance(quantize, str):
        quantize = {quantize: True}
    plan: dict[str, str] = {}
    fallthrough = None
    for qdtype, patterns in quantize.items():
        if qdtype not in ("uint8", "uint16", "float16"):
            raise QuantizationError(f"unknown quantization dtype {qdtype!r}")
        if patterns is True:
            if fallthrough is not None:
                raise QuantizationError(
                    "more than one quantization fallthrough; exactly one is supported"
                )
            fallthrough = qdtype
            continue
        if isinstance(patterns, str):
            patterns = [patterns]
        for pattern in patterns:
            for name in fnmatch.filter(names, pattern):
                if plan.get(name, qdtype) != qdtype:
                    raise QuantizationError(
                        f"two quantization dtypes, {plan[name]} and {qdtype}, "
                        f"match weight {name!r}"
                    )
                plan[name] = qdtype
    if fallthrough is not None:
        for name in names:
            plan.setdefault(name, fallthrough)
    return plan


def encode_weight(
    name: str, value: Any, quantize_dtype: str | None = None, group: str | None = None
) -> tuple[WeightSpec, list[bytes | memoryview]]:
    """Encode one weight into its manifest entry and stored byte chunks.

    Only float32 weights are quantized (as the converter does); other dtypes
    asked to be quantized are stored unquantized.
    """
    array = normalize_array(name, value)
    dtype = _tfjs_dtype(array)
    quantization = None
    if quantize_dtype is not None and dtype == "float32":
        array, quantization = quantize(array, quantize_dtype)
    spec = WeightSpec(name, tuple(int(d) for d in array.shape), dtype, group, quantization)
    if dtype == "string":
        chunks: list[bytes | memoryview] = []
        for item in array.reshape(-1):
            chunks.append(len(item).to_bytes(4, "little"))
            chunks.append(item)
        return spec, chunks
    stored = STORED[quantization.dtype] if quantization else STORED[dtype]
    data = np.ascontiguousarray(array, dtype=stored)
    return spec, [memoryview(data.reshape(-1).view(np.uint8))]


def reencode_weight(
    spec: WeightSpec, value: Any, quantize_dtype: str | None
) -> tuple[WeightSpec, list[bytes | memoryview]]:
    """Encode *value* again for the manifest entry *spec* (quantize or dequantize it).

    Every field of *spec* except ``shape``, ``dtype`` and ``quantization`` is
    kept: ``group`` (TF.js splits optimizer weights from model weights by it)
    and unknown keys.
    """
    new, data = encode_weight(spec.name, value, quantize_dtype, spec.group)
    return dataclasses.replace(new, extra=spec.extra), data
