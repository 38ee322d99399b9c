"""The one table of TF.js dtypes: logical and quantized, their sizes and numpy forms."""

from __future__ import annotations

import numpy as np

__all__ = ["DECODED", "DIRECT", "DTYPES", "DTYPE_SIZES", "QUANTIZED_SIZES", "STORED"]

#: bytes per element of each logical dtype (``string`` is variable).
DTYPE_SIZES = {"float32": 4, "int32": 4, "bool": 1, "complex64": 8}
#: bytes per element of each quantized storage dtype.
QUANTIZED_SIZES = {"uint8": 1, "uint16": 2, "float16": 2}
#: every logical dtype TF.js loads.
DTYPES = (*DTYPE_SIZES, "string")
#: the little-endian numpy dtype each fixed-size dtype is stored as.
STORED = {
    "float32": np.dtype("<f4"),
    "int32": np.dtype("<i4"),
    "bool": np.dtype("u1"),
    "complex64": np.dtype("<c8"),
    "uint8": np.dtype("u1"),
    "uint16": np.dtype("<u2"),
    "float16": np.dtype("<f2"),
}
#: the numpy dtype of each logical dtype once decoded (``string``: object arrays).
DECODED = {
    "float32": np.dtype("<f4"),
    "int32": np.dtype("<i4"),
    "bool": np.dtype("bool"),
    "complex64": np.dtype("<c8"),
    "string": np.dtype(object),
}
#: logical dtypes whose stored bytes are their decoded bytes (readable without decoding).
DIRECT = frozenset(d for d in DTYPE_SIZES if STORED[d] == DECODED[d])
