"""Sample bundles for the fsspec-face tests."""

from __future__ import annotations

import numpy as np

from tfjsfs.format.artifacts import ModelArtifacts

TOPOLOGY = {"class_name": "Sequential", "config": {"name": "test", "layers": []}}


def sample_artifacts(seed: int = 0) -> ModelArtifacts:
    """A model whose weights cover every virtual-tensor path.

    ``dense/kernel`` (float32, 48x40, 7680 bytes) spans two 4000-byte shards; ``q8``
    and ``h16`` are quantized; ``flags`` is bool; ``steps`` is int32.
    """
    rng = np.random.default_rng(seed)
    weights = {
        "dense/kernel": rng.standard_normal((48, 40)).astype(np.float32),
        "dense/bias": rng.standard_normal(40).astype(np.float32),
        "steps": np.arange(seed, seed + 6, dtype=np.int32).reshape(2, 3),
        "flags": np.array([True, False, True, True]),
        "q8": rng.random(50).astype(np.float32),
        "h16": rng.standard_normal((5, 5)).astype(np.float32),
    }
    return ModelArtifacts.from_weights(
        TOPOLOGY, weights, quantize={"uint8": ["q8"], "float16": ["h16"]}
    )


SHARD_SIZE = 4000
