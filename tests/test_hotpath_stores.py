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
    from tfjsfs.io.resolve import resolve

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


def test_whole_load_holds_a_bounded_number_of_shards_in_transit(s3_server, s3_bucket, monkeypatch):
    """Backends that hand over whole ``bytes`` objects get at most ``max_inflight`` bytes
    asked for at once (moto runs in this process, so memory is counted by requests)."""
    from fsspec.asyn import sync

    from tfjsfs.io.bundle import open_bundle
    from tfjsfs.io.fetch import arrays_from_buffer, fetch_all
    from tfjsfs.io.resolve import resolve

    rng = np.random.default_rng(11)
    weights = {f"w{i}": rng.normal(size=(256, 256)).astype(np.float32) for i in range(48)}
    url = f"s3://{s3_bucket}/big"
    options = s3_server.storage_options
    art = ModelArtifacts.from_weights(TOPOLOGY, weights)
    tfjsfs.save_model(art, url, shard_size=1 << 20, storage_options=options)  # 12 shards
    fs, path = resolve(url, **options)
    state = {"now": 0, "most": 0, "calls": 0, "ranged": 0}
    original = type(fs)._cat_file

    async def counting(self, *args, **kwargs):
        state["now"] += 1
        state["calls"] += 1
        state["ranged"] += kwargs.get("start") is not None or len(args) > 1
        state["most"] = max(state["most"], state["now"])
        try:
            return await original(self, *args, **kwargs)
        finally:
            state["now"] -= 1

    async def load():
        bundle = await open_bundle(fs, path)
        monkeypatch.setattr(type(fs), "_cat_file", counting)
        buffer = await fetch_all(fs, bundle, max_inflight=2 << 20)  # two shards at a time
        return arrays_from_buffer(bundle, buffer)

    got = sync(fs.loop, load)
    assert all(np.array_equal(got[k], v) for k, v in weights.items())
    assert state["calls"] == 12 and state["most"] == 2
    assert state["ranged"] == 0  # whole objects, each copied into place as it arrives


def test_upath_objects_carry_their_storage_options(s3_server, s3_bucket, tmp_path):
    upath = pytest.importorskip("upath")
    expected = save(tmp_path, shard_size=3000, quantize=None)
    art = ModelArtifacts.from_weights(TOPOLOGY, numeric_weights())
    url = f"s3://{s3_bucket}/up/m"
    tfjsfs.save_model(art, url, shard_size=3000, storage_options=s3_server.storage_options)
    path = upath.UPath(url, **s3_server.storage_options)
    assert_same(tfjsfs.load_weights(path), expected)
    assert_same(tfjsfs.load_weights(upath.UPath(tmp_path / "m")), expected)


async def test_save_and_load_on_s3_from_the_callers_own_event_loop(s3_server, s3_bucket):
    """Async twins on a loop other than fsspec's get private S3 clients, closed after."""
    import numpy as np

    import tfjsfs

    weights = {"w": np.arange(10, dtype=np.float32), "b": np.array([True, False])}
    art = tfjsfs.ModelArtifacts.from_weights({}, weights)
    url = f"s3://{s3_bucket}/own-loop/m"
    options = {"storage_options": s3_server.storage_options}
    await tfjsfs.save_model_async(art, url, shard_size=16, **options)
    await tfjsfs.save_model_async(art, url, shard_size=16, overwrite=True, **options)
    back = await tfjsfs.load_weights_async(url, **options)
    assert back["w"].tolist() == list(range(10)) and back["b"].tolist() == [True, False]
    # the synchronous API (fsspec's IO loop) still works with the same options afterwards
    assert tfjsfs.load_weights(url, **options)["w"].tolist() == list(range(10))
