"""fsspec's caching chains in front of HTTP: every loader finds the shards.

Shard locations of a chained URL (``simplecache::http://…``) keep the
scheme's ``//``; before, they were collapsed to ``http:/host/…`` and every
load failed with ``weight shard http:/… does not exist``. Checked at a real
loopback server, with the cache proven used: the cache folder fills, and with
``simplecache`` a second load sends no shard request.
"""

from __future__ import annotations

import numpy as np
import pytest
from hotpath_models import assert_same, save

import tfjsfs

CHAINS = ["simplecache", "filecache"]


def _shard_gets(server):
    return [r for r in server.stats.requests if r.path.endswith(".bin") and r.method == "GET"]


def _load(loader, url, options):
    if loader == "load_weights":
        return tfjsfs.load_weights(url, storage_options=options)
    if loader == "load_model":
        return dict(tfjsfs.load_model(url, storage_options=options).weights)
    if loader == "open_model":
        with tfjsfs.open_model(url, storage_options=options) as model:
            return {name: model.get_tensor(name) for name in model}
    return {
        name: np.array(value) for name, value in tfjsfs.iter_weights(url, storage_options=options)
    }


@pytest.mark.parametrize("chain", CHAINS)
@pytest.mark.parametrize("loader", ["load_weights", "load_model", "open_model", "iter_weights"])
def test_cached_http_chains_load_exactly(tmp_path, http_server, chain, loader):
    expected = save(tmp_path / "site", shard_size=3000)
    server = http_server(tmp_path / "site")
    url = f"{chain}::{server.url_for('m/model.json')}"
    options = {chain: {"cache_storage": str(tmp_path / "cache")}}
    got = _load(loader, url, options)
    assert_same(dict(sorted(got.items())), dict(sorted(expected.items())))
    first = _shard_gets(server)
    assert first and all(r.path.startswith("/m/group1-shard") for r in first)
    assert any((tmp_path / "cache").iterdir())  # the shards went through the cache
    server.reset_stats()
    again = _load(loader, url, options)
    assert_same(dict(sorted(again.items())), dict(sorted(expected.items())))
    if chain == "simplecache":  # filecache revalidates (its metadata is per instance)
        assert _shard_gets(server) == []  # served from the cache
