"""Hardening item 6(e): a long-lived process keeps loading a model from S3 while
another writer republishes it under new shard names (and new sizes).

fsspec caches directory listings per filesystem instance; a load must never
fail, nor return the old version, because that listing is stale.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import s3fs
from hotpath_models import TOPOLOGY

import tfjsfs
from tfjsfs import ModelArtifacts


def publish(writer, folder: str, weights: dict, tag: str, scratch) -> None:
    """Write a bundle whose shard names carry *tag* (as a server that never reuses
    names does), then remove the shards of earlier versions."""
    art = ModelArtifacts.from_weights(TOPOLOGY, weights)
    local = scratch / tag
    tfjsfs.save_model(art, local, shard_size=64)
    doc = json.loads((local / "model.json").read_bytes())
    old = [p for p in writer.ls(folder, detail=False) if p.endswith(".bin")]
    for group in doc["weightsManifest"]:
        renamed = []
        for path in group["paths"]:
            fresh = f"{tag}-{path}"
            writer.pipe(f"{folder}/{fresh}", (local / path).read_bytes())
            renamed.append(fresh)
        group["paths"] = renamed
    writer.pipe(f"{folder}/model.json", json.dumps(doc).encode())
    for path in old:
        writer.rm(path)


def version(n: int) -> dict:
    """Version *n*: other values and a different number of shards each time."""
    return {
        "w": np.arange(10 + 8 * n, dtype=np.float32) * (n + 1),
        "b": np.full(3, n, dtype=np.int32),
    }


@pytest.mark.parametrize("form", ["s3://{}", "tfjs+s3://{}", "s3://{}/model.json"])
def test_loads_after_a_republish_under_new_shard_names(s3_server, s3_bucket, form, tmp_path):
    options = s3_server.storage_options
    folder = f"{s3_bucket}/live/m"
    url = form.format(folder)
    storage = {"target_options": options} if url.startswith("tfjs+") else options
    # the other writer: its own client, sharing nothing with the loader
    writer = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    writer.pipe(f"{folder}/README", b"a model lives here")
    for n in range(4):
        publish(writer, folder, version(n), f"v{n}", tmp_path)
        # the loader: one long-lived process (fsspec reuses its s3fs instance and listing)
        got = tfjsfs.load_weights(url, storage_options=storage)
        for key, value in version(n).items():
            assert np.array_equal(got[key], value), (n, key)
    # the loader's filesystem instance really was reused (its listing cached)
    cached = [fs for fs in s3fs.S3FileSystem._cache.values() if fs is not writer]
    assert len(cached) == 1 and cached[0].dircache


def test_loads_after_a_republish_under_the_same_shard_names(s3_server, s3_bucket, tmp_path):
    options = s3_server.storage_options
    folder = f"{s3_bucket}/same/m"
    url = f"s3://{folder}"
    writer = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    writer.pipe(f"{folder}/README", b"a model lives here")
    for n in range(3):  # same names, other sizes: the cached listing's sizes are wrong
        art = ModelArtifacts.from_weights(TOPOLOGY, version(n))
        tfjsfs.save_model(art, tmp_path / f"v{n}", shard_size=1 << 20)
        for path in sorted((tmp_path / f"v{n}").iterdir()):
            writer.pipe(f"{folder}/{path.name}", path.read_bytes())
        got = tfjsfs.load_weights(url, storage_options=options)
        for key, value in version(n).items():
            assert np.array_equal(got[key], value), (n, key)
