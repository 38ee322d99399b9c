"""The hot path on object stores (moto S3, fake-gcs-server): whole, partial, lazy, streamed."""

from __future__ import annotations

import numpy as np
import pytest
from hotpath_models import TOPOLOGY, assert_same, numeric_weights, save

import tfjsfs
from tfjsfs import ModelArtifacts


@pytest.fixture(params=["s3", "gcs"])
def store(request, tmp_path):
    """``(url of a saved model, storage options, expected weights)`` on a real emulator."""
    server = request.getfixturevalue(f"{request.param}_server")
    bucket = request.getfixturevalue(f"{request.param}_bucket")
    proto = "s3" if request.param == "s3" else "gs"
    url = f"{proto}://{bucket}/models/m"
    art = ModelArtifacts.from_weights(TOPOLOGY, numeric_weights(), quantize={"uint8": "quant8"})
    tfjsfs.save_model(art, url, shard_size=3000, storage_options=server.storage_options)
    expected = save(tmp_path, shard_size=3000, quantize={"uint8": "quant8"})
    return url, server.storage_options, expected


def test_whole_partial_lazy_and_streamed_loads(store):
    url, options, expected = store
    assert_same(tfjsfs.load_weights(url, storage_options=options, batch_size=3), expected)
    assert_same(
        tfjsfs.load_weights("tfjs+" + url, storage_options={"target_options": options}), expected
    )
    part = tfjsfs.load_weights(url, names=["tail", "embed"], storage_options=options)
    assert list(part) == ["tail", "embed"]
    assert np.array_equal(part["embed"], expected["embed"])
    with tfjsfs.open_model(url, storage_options=options) as m:
        assert np.array_equal(m.get_slice("quant8")[7:19], expected["quant8"][7:19])
        assert np.array_equal(m.get_tensor("counts"), expected["counts"])
    assert_same(dict(tfjsfs.iter_weights(url, storage_options=options, window=2)), expected)


def test_partial_load_asks_for_byte_ranges(store, monkeypatch):
    """The backend is asked for the weights' ranges only (one _cat_ranges call)."""
    url, options, expected = store
    from tfjsfs.paths import resolve

    fs, _ = resolve(url, **options)
    calls = []
    original = type(fs)._cat_ranges

    async def spy(self, paths, starts, ends, **kwargs):
        calls.append(sum(e - s for s, e in zip(starts, ends, strict=True)))
        return await original(self, paths, starts, ends, **kwargs)

    monkeypatch.setattr(type(fs), "_cat_ranges", spy)
    with tfjsfs.open_model(url, storage_options=options, max_gap=0) as m:
        want = m.bundle.index["embed"].nbytes + m.bundle.index["counts"].nbytes
        got = m.get_tensors(["embed", "counts"])
    assert np.array_equal(got["embed"], expected["embed"])
    assert calls == [want]
