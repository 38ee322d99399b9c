"""How close a dequantized weight must be to the float32 it was made from.

The converter's affine quantization (uint8, uint16) rounds every value to the
nearest step of ``scale = (max - min) / (2**bits - 1)`` over a range that
includes zero, so no value moves by more than half a step; float16 is a plain
cast, so it must match the cast exactly. A dequantization off by one step
fails both.
"""

from __future__ import annotations

import numpy as np

_BITS = {"uint8": 8, "uint16": 16}


def half_step(original: np.ndarray, qdtype: str) -> float:
    """Half the quantization step the converter uses for *original* in *qdtype*."""
    lo = min(float(original.min()), 0.0)
    hi = max(float(original.max()), 0.0)
    return (hi - lo) / (2 ** _BITS[qdtype] - 1) / 2


def assert_dequantized(got: np.ndarray, original: np.ndarray, qdtype: str) -> None:
    """*got* is *original* quantized to *qdtype* and back, as the converter does it."""
    original = np.asarray(original, dtype=np.float32)
    assert got.dtype == np.float32 and got.shape == original.shape
    if qdtype == "float16":
        assert np.array_equal(got, original.astype(np.float16).astype(np.float32))
        return
    error = np.abs(got.astype(np.float64) - original.astype(np.float64)).max()
    # float32 rounding of the result adds at most one ulp of the largest value
    slack = float(np.spacing(np.abs(original).max()))
    assert error <= half_step(original, qdtype) + slack, (error, half_step(original, qdtype))
