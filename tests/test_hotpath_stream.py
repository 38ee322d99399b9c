"""iter_weights: manifest order, values, bounded memory, clean early exits."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import numpy as np
import pytest
from fsspec.callbacks import Callback
from hotpath_models import assert_same, numeric_weights, save
from quantcheck import assert_dequantized

import tfjsfs


@pytest.mark.parametrize("where", ["local", "http"])
@pytest.mark.parametrize("window", [1, 3])
def test_iter_weights_yields_every_weight_in_manifest_order(tmp_path, http_server, where, window):
    expected = save(tmp_path, shard_size=3000)
    url = tmp_path / "m" if where == "local" else http_server(tmp_path).url_for("m/model.json")
    got = list(tfjsfs.iter_weights(url, window=window))
    assert [name for name, _ in got] == list(expected)
    assert_same(dict(got), expected)


def test_iter_weights_with_strings_empty_tensors_and_groups(tmp_path):
    weights = {
        "empty": np.zeros((0, 4), np.float32),
        "words": np.array(["a", "", "ccc" * 50]),
        "after": np.arange(100, dtype=np.int32),
        "none": np.array([], dtype=object),
        "last": np.ones((3, 3), np.float32),
    }
    art = tfjsfs.ModelArtifacts.from_weights(
        {"x": 1}, weights, groups=[["empty", "words"], ["after", "none", "last"]]
    )
    tfjsfs.save_model(art, tmp_path / "m", shard_size=64)
    expected = tfjsfs.load_weights(tmp_path / "m")
    got = list(tfjsfs.iter_weights(tmp_path / "m", window=2))
    assert [n for n, _ in got] == list(weights)
    for name, array in got:
        assert array.shape == expected[name].shape
        assert array.tolist() == expected[name].tolist(), name


def test_iter_weights_arrays_own_their_memory(tmp_path):
    save(tmp_path, shard_size=3000)
    for _, array in tfjsfs.iter_weights(tmp_path / "m"):
        base = array
        while isinstance(base.base, np.ndarray):
            base = base.base
        assert base.nbytes <= max(array.nbytes, 16) * 2  # not a view into a whole shard


def test_iter_weights_memory_stays_bounded_by_a_few_shards(tmp_path):
    rng = np.random.default_rng(7)
    shard = 1 << 20
    weights = {f"layer{i:02d}": rng.normal(size=(64, 1024)).astype(np.float32) for i in range(48)}
    save(tmp_path, weights=weights, shard_size=shard, quantize=None)  # 12 MiB, 12 shards
    model_bytes = 48 * 64 * 1024 * 4
    seen = 0
    gc.collect()
    tracemalloc.start()
    try:
        for _, array in tfjsfs.iter_weights(tmp_path / "m", window=2):
            seen += array.nbytes
            del array
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == model_bytes
    assert peak < 4.5 * shard  # window (2 shards) + the shard being handed over; not 12 MiB


def test_iter_weights_progress_sums_to_the_shard_bytes(tmp_path, http_server):
    save(tmp_path, shard_size=3000)
    total = sum(p.stat().st_size for p in (tmp_path / "m").glob("*.bin"))

    class Sum(Callback):
        pass

    cb = Sum()
    list(tfjsfs.iter_weights(http_server(tmp_path).url_for("m/model.json"), callback=cb))
    assert cb.size == total and cb.value == total


def test_breaking_out_early_stops_fetching(tmp_path, http_server):
    save(tmp_path, shard_size=3000)
    server = http_server(tmp_path)
    shards = len(list((tmp_path / "m").glob("*.bin")))
    for name, _ in tfjsfs.iter_weights(server.url_for("m/model.json"), window=2):
        assert name == "embed"
        break
    gets = [r for r in server.stats.requests if r.method == "GET" and r.path.endswith(".bin")]
    assert len(gets) < shards


def test_iter_weights_async(tmp_path):
    expected = save(tmp_path, shard_size=3000)

    async def main():
        return [item async for item in tfjsfs.iter_weights_async(tmp_path / "m")]

    got = asyncio.run(main())
    assert_same(dict(got), expected)


def test_iter_weights_quantized_values_match(tmp_path):
    weights = numeric_weights()
    save(tmp_path, shard_size=2000)
    got = dict(tfjsfs.iter_weights(tmp_path / "m"))
    assert_dequantized(got["quant16"], weights["quant16"], "uint16")
    assert_dequantized(got["half"], weights["half"], "float16")
