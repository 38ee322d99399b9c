"""A generated folder of many bundles, the way model collections are kept:
``<name>.json`` beside its weight files, every shard naming pattern, every
dtype and quantization, a second manifest sharing weights, and JSON files
that are not models."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from manage_support import GROUPS, TOPOLOGY, sample_weights

from tfjsfs import ModelArtifacts
from tfjsfs.format.layouts import plan_bundle
from tfjsfs.model.api import requantize

QUANTIZATIONS = (None, "uint8", "uint16", "float16")


def _one_shard(name: str, g: int, i: int, n: int) -> str:
    return f"{name}.bin"


def _weights_bin(name: str, g: int, i: int, n: int) -> str:
    return f"{name}.weights.bin"


def _stem_shards(name: str, g: int, i: int, n: int) -> str:
    return f"{name}-shard{i + 1}of{n}.bin"


def _stem_groups(name: str, g: int, i: int, n: int) -> str:
    return f"{name}_group{g + 1}-shard{i + 1}of{n}.bin"


def _legacy(name: str, g: int, i: int, n: int) -> str:
    return f"{name}-group{g + 1}-shard{i + 1}of{n}"


def _converter(name: str, g: int, i: int, n: int) -> str:
    return f"group{g + 1}-shard{i + 1}of{n}.bin"


#: (pattern, shard size or None for one file per group, grouped)
PATTERNS = (
    (_one_shard, None, False),
    (_weights_bin, None, False),
    (_stem_shards, 200, False),
    (_stem_groups, 150, True),
    (_legacy, 250, True),
)


@dataclass
class Collection:
    """What was written: ``{json file name: weights}``, and the other files."""

    bundles: dict[str, dict[str, np.ndarray]]
    others: list[str]


def bundle_files(
    artifacts: ModelArtifacts, name: str, pattern: Any, shard_size: int | None
) -> dict[str, bytes]:
    """``{file name: bytes}`` of *artifacts* saved as ``<name>.json`` with *pattern* shards."""
    size = shard_size or max(1, artifacts.weight_data_bytes)
    plan = plan_bundle(artifacts, "converter", shard_size=size)
    data = bytes(memoryview(artifacts.weight_data).cast("B"))
    counts: dict[int, int] = {}
    for shard in plan.shards:
        counts[shard.group] = counts.get(shard.group, 0) + 1
    files, renamed, seen = {}, {}, {}
    for shard in plan.shards:
        i = seen.get(shard.group, 0)
        seen[shard.group] = i + 1
        new = pattern(name, shard.group, i, counts[shard.group])
        renamed[shard.path] = new
        files[new] = data[shard.start : shard.end]
    groups = [type(g)(tuple(renamed[p] for p in g.paths), g.weights) for g in plan.groups]
    files[f"{name}.json"] = artifacts.to_model_json(groups).dumps()
    return files


def make_collection(put: Any, count: int = 40) -> Collection:
    """Write *count* bundles through ``put(name, data)`` into one folder.

    Bundle ``i`` has quantization ``QUANTIZATIONS[i % 4]`` and shard pattern
    ``PATTERNS[i % 5]``; the last two are a converter-named bundle
    (``converted.json`` + ``group1-shard1of2.bin``…) and ``m01-lite.json``, a
    second manifest of ``m01.weights.bin``. ``package.json`` and
    ``labels.json`` lie beside them.
    """
    bundles: dict[str, dict[str, np.ndarray]] = {}
    for i in range(count - 2):
        pattern, shard_size, grouped = PATTERNS[i % len(PATTERNS)]
        weights = sample_weights(i)
        artifacts = ModelArtifacts.from_weights(
            TOPOLOGY, weights, groups=GROUPS if grouped else None, generated_by="collection"
        )
        quant = QUANTIZATIONS[i % len(QUANTIZATIONS)]
        if quant is not None:
            artifacts = requantize(artifacts, quant)
        name = f"m{i:02d}"
        for file, data in bundle_files(artifacts, name, pattern, shard_size).items():
            put(file, data)
        bundles[f"{name}.json"] = artifacts.weights
    weights = sample_weights(99)
    artifacts = ModelArtifacts.from_weights(TOPOLOGY, weights, groups=GROUPS)
    for file, data in bundle_files(artifacts, "converted", _converter, 300).items():
        put(file, data)
    bundles["converted.json"] = artifacts.weights
    # m01 is one file, m01.weights.bin: a second manifest names it too
    lite = json.loads(bundle_files(_m01(), "m01", _weights_bin, None)["m01.json"])
    lite["modelTopology"]["config"]["name"] = "lite"
    put("m01-lite.json", json.dumps(lite).encode())
    bundles["m01-lite.json"] = bundles["m01.json"]
    put("package.json", b'{"name": "models", "version": "1.0.0"}')
    put("labels.json", b'["cat", "dog"]')
    return Collection(bundles, ["package.json", "labels.json"])


def _m01() -> ModelArtifacts:
    artifacts = ModelArtifacts.from_weights(TOPOLOGY, sample_weights(1), generated_by="collection")
    return requantize(artifacts, QUANTIZATIONS[1])
