"""One found-bundle type: ``list_models`` (``find_bundles``) and the model server's
store describe the bundles of one listing alike, on real stores (memory, local
disk, S3 on moto)."""

from __future__ import annotations

import asyncio

import pytest
from manage_support import make_store, sample_artifacts

import tfjsfs
from tfjsfs.server.modelstore import ModelStore

SHARD = 300  # small shards: every sample bundle has several


@pytest.mark.parametrize("kind", ["memory", "file", "s3"])
def test_server_store_and_list_models_agree_on_every_bundle(request, tmp_path, kind):
    store = make_store(kind, request, tmp_path / kind)
    art = sample_artifacts()
    for name in ("whole", "torn"):
        store.save(art, "models", name, shard_size=SHARD)
    shards = sorted(f for f in store.files("models", "torn") if f != "model.json")
    gone = shards[1]
    gone_size = store.fs.size(store.inner("models", "torn", gone))
    store.fs.rm(store.inner("models", "torn", gone))
    store.fs.invalidate_cache()

    listed = tfjsfs.list_models(store.url("models"), storage_options=store.options)
    served = asyncio.run(ModelStore(store.url("models"), store.options).list())

    assert sorted(listed) == [store.url("models", "torn"), store.url("models", "whole")]
    assert [s.name for s in served] == ["torn", "whole"]
    by_name = {s.name: s for s in served}
    for name in ("whole", "torn"):
        ours, theirs = by_name[name].info, listed[store.url("models", name)]
        # the manifest's weight data, even with a weight file missing
        assert ours.weight_data_bytes == theirs.weight_data_bytes == art.weight_data_bytes
        assert ours.weight_specs_bytes == theirs.weight_specs_bytes
        assert ours.model_topology_bytes == theirs.model_topology_bytes
    whole, torn = by_name["whole"], by_name["torn"]
    assert whole.missing == [] and torn.missing == [gone]
    assert whole.weight_bytes == art.weight_data_bytes
    assert torn.weight_bytes == art.weight_data_bytes - gone_size
    assert sorted(whole.shard_sizes) == shards
    assert torn.shard_sizes[gone] is None
    assert whole.size == whole.json_size + art.weight_data_bytes
