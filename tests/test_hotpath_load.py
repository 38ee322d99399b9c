"""Whole-model and partial loads: values, and the bytes a real server had to send."""

from __future__ import annotations

import json
import math
import tracemalloc

import fsspec
import numpy as np
import pytest
from fsspec.callbacks import Callback
from hotpath_models import assert_same, numeric_weights, save, shard_bytes
from quantcheck import assert_dequantized

import tfjsfs
from tfjsfs.errors import ShardMissingError, WeightDataError
from tfjsfs.io.bundle import open_bundle
from tfjsfs.io.fetch import fetch_weight_bytes, load_index
from tfjsfs.io.resolve import resolve


class Counting(Callback):
    """A callback recording set_size and the sum of updates."""

    def __init__(self):
        super().__init__()
        self.sizes = []
        self.updates = []

    def set_size(self, size):
        self.sizes.append(size)
        super().set_size(size)

    def relative_update(self, inc=1):
        self.updates.append(inc)
        super().relative_update(inc)


# ------------------------------------------------------------- whole loads


@pytest.mark.parametrize("where", ["local", "file-url", "memory", "http"])
def test_whole_load_equals_the_saved_weights(tmp_path, http_server, where):
    weights = numeric_weights()
    expected = save(tmp_path, shard_size=3000)
    if where == "local":
        url = tmp_path / "m"
    elif where == "file-url":
        url = f"file://{tmp_path}/m/model.json"
    elif where == "memory":
        fs = fsspec.filesystem("memory")
        for path in (tmp_path / "m").iterdir():
            fs.pipe(f"/hp-{id(tmp_path)}/m/{path.name}", path.read_bytes())
        url = f"memory://hp-{id(tmp_path)}/m"
    else:
        url = http_server(tmp_path).url_for("m/model.json")
    got = tfjsfs.load_weights(url)
    assert_same(got, expected)
    assert_dequantized(got["quant8"], weights["quant8"], "uint8")
    assert np.array_equal(got["embed"], weights["embed"])


def test_http_whole_load_fetches_each_shard_once_and_sizes_from_the_manifest(
    tmp_path, http_server
):
    """Converter layout (4 MiB blind cuts): shard sizes follow from the manifest, no HEAD."""
    rng = np.random.default_rng(1)
    weights = {"big": rng.normal(size=(2_600_000,)).astype(np.float32), "small": np.ones(3)}
    expected = save(tmp_path, weights=weights, shard_size=4_194_304, quantize=None)
    server = http_server(tmp_path)
    got = tfjsfs.load_weights(server.url_for("m/model.json"), batch_size=2)
    assert_same(got, expected)
    shards = sorted(p.name for p in (tmp_path / "m").glob("*.bin"))
    assert len(shards) == 3
    assert server.stats.count(method="HEAD") == 0
    for name in shards:
        assert server.stats.count(f"/m/{name}", "GET") == 1
    assert shard_bytes(server) == sum((tmp_path / "m" / n).stat().st_size for n in shards)


def test_http_wrong_size_guess_falls_back_to_head(tmp_path, http_server):
    """3 MiB shards also fit the 4 MiB pattern's count: the reply's length exposes it."""
    weights = {"w": np.arange(5 * 1024 * 1024 // 4, dtype=np.float32)}  # 5 MiB
    expected = save(tmp_path, weights=weights, shard_size=3 * 1024 * 1024, quantize=None)
    server = http_server(tmp_path)
    assert_same(tfjsfs.load_weights(server.url_for("m/model.json")), expected)
    assert server.stats.count(method="HEAD") == 2


def test_load_model_keeps_metadata_and_zero_copy_views(tmp_path):
    save(tmp_path, shard_size=5000)
    art = tfjsfs.load_model(tmp_path / "m")
    assert art.model_topology["class_name"] == "Sequential"
    kernel = art.weights["dense/kernel"]
    assert kernel.base is not None  # a view of the loaded buffer, not a copy
    assert np.shares_memory(kernel, np.frombuffer(art.weight_data, np.uint8))


def test_progress_sums_to_the_total_bytes(tmp_path, http_server):
    save(tmp_path, shard_size=3000)
    total = sum(p.stat().st_size for p in (tmp_path / "m").glob("*.bin"))
    server = http_server(tmp_path)
    for url in (tmp_path / "m", server.url_for("m/model.json")):
        cb = Counting()
        tfjsfs.load_weights(url, callback=cb)
        assert cb.sizes == [total]
        assert sum(cb.updates) == total and cb.value == total


def test_whole_local_load_peak_memory_is_about_the_model(tmp_path):
    rng = np.random.default_rng(2)
    weights = {f"w{i}": rng.normal(size=(256, 1024)).astype(np.float32) for i in range(16)}
    save(tmp_path, weights=weights, shard_size=1 << 20, quantize=None)
    nbytes = 16 * 256 * 1024 * 4
    tracemalloc.start()
    try:
        got = tfjsfs.load_weights(tmp_path / "m")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(a.nbytes for a in got.values()) == nbytes
    assert peak < 1.2 * nbytes  # one buffer; the converter's reader needs twice this


# ----------------------------------------------------------- partial loads


def test_partial_load_fetches_only_the_named_weights_bytes(tmp_path, http_server):
    expected = save(tmp_path, shard_size=3000)
    server = http_server(tmp_path)
    url = server.url_for("m/model.json")
    index = tfjsfs.open_model(url).bundle.index
    server.reset_stats()
    got = tfjsfs.load_weights(url, names=["counts", "embed"], max_gap=0)
    assert list(got) == ["counts", "embed"]
    assert np.array_equal(got["counts"], expected["counts"])
    assert np.array_equal(got["embed"], expected["embed"])
    want = index["counts"].nbytes + index["embed"].nbytes
    assert shard_bytes(server) == want
    gets = [r for r in server.stats.requests if ".bin" in r.path and r.method == "GET"]
    segments = len(index["counts"].segments) + len(index["embed"].segments)
    assert len(gets) == segments  # one request per shard touched (max_gap=0, none adjacent)


def test_partial_load_merges_close_neighbours_within_max_gap(tmp_path, http_server):
    save(tmp_path, shard_size=1 << 20)  # one shard
    server = http_server(tmp_path)
    url = server.url_for("m/model.json")
    index = tfjsfs.open_model(url).bundle.index
    names = ["dense/kernel", "flags"]  # dense/bias (120 bytes) lies between them
    gap = index["flags"].start - index["dense/kernel"].end
    assert gap == 120
    server.reset_stats()
    tfjsfs.load_weights(url, names=names, max_gap=gap)
    assert server.stats.count(method="GET") == 2  # model.json + one merged range
    assert shard_bytes(server) == index["flags"].end - index["dense/kernel"].start
    server.reset_stats()
    tfjsfs.load_weights(url, names=names, max_gap=gap - 1)
    assert server.stats.count(method="GET") == 3
    assert shard_bytes(server) == index["flags"].nbytes + index["dense/kernel"].nbytes


def test_partial_load_of_a_weight_spanning_shards(tmp_path, http_server):
    expected = save(tmp_path, shard_size=5000)  # "embed" (48,000 bytes) spans 10+ shards
    server = http_server(tmp_path)
    url = server.url_for("m/model.json")
    with tfjsfs.open_model(url) as m:
        loc = m.bundle.index["embed"]
        assert len(loc.segments) > 9
        server.reset_stats()
        assert np.array_equal(m.get_tensor("embed"), expected["embed"])
    assert shard_bytes(server) == loc.nbytes


def test_unknown_names_raise_key_error(tmp_path):
    save(tmp_path)
    with pytest.raises(KeyError, match="'nope'"):
        tfjsfs.load_weights(tmp_path / "m", names=["dense/bias", "nope"])


def test_server_ignoring_range_is_detected_and_values_stay_right(tmp_path, http_server, caplog):
    expected = save(tmp_path, shard_size=3000)
    server = http_server(tmp_path, ignore_range=True)
    url = server.url_for("m/model.json")
    with caplog.at_level("WARNING", logger="tfjsfs.io.fetch"):
        got = tfjsfs.load_weights(url, names=["tail", "dense/bias"])
    assert np.array_equal(got["tail"], expected["tail"])
    assert np.array_equal(got["dense/bias"], expected["dense/bias"])
    assert all(r.status == 200 for r in server.stats.requests)


def test_fetch_weight_bytes_gives_exact_stored_bytes_and_sub_ranges(tmp_path, http_server):
    save(tmp_path, shard_size=3000)
    folder = tmp_path / "m"
    doc = json.loads((folder / "model.json").read_text())
    stream = b"".join((folder / p).read_bytes() for p in doc["weightsManifest"][0]["paths"])
    server = http_server(tmp_path)
    fs, path = resolve(server.url_for("m/model.json"))

    async def run():
        bundle = await open_bundle(fs, path)
        index = await load_index(fs, bundle)
        loc = index["embed"]
        whole = await fetch_weight_bytes(fs, bundle, index, "embed")
        part = await fetch_weight_bytes(fs, bundle, index, "embed", 4000, 9000)
        tail = await fetch_weight_bytes(fs, bundle, index, "embed", -10)
        empty = await fetch_weight_bytes(fs, bundle, index, "embed", 50, 50)
        return loc, whole, part, tail, empty

    loc, whole, part, tail, empty = fsspec.asyn.sync(fs.loop, run)
    assert whole == stream[loc.start : loc.end]
    assert part == whole[4000:9000]
    assert tail == whole[-10:]
    assert empty == b""


# -------------------------------------------------------------- open_model


def test_open_model_lists_and_gets_tensors(tmp_path):
    expected = save(tmp_path, shard_size=3000)
    with tfjsfs.open_model(tmp_path / "m") as m:
        assert m.keys() == list(expected)
        assert "embed" in m and "nope" not in m and len(m) == len(expected)
        for name in expected:
            assert np.array_equal(m.get_tensor(name), expected[name]), name
        assert m.metadata == {"format": "layers-model", "convertedBy": None}
        info = m.artifacts_info
        assert info.weight_data_bytes == sum(
            p.stat().st_size for p in (tmp_path / "m").glob("*.bin")
        )
        assert info.model_topology_type == "JSON"


SLICES = [
    (slice(10, 20),),
    (7,),
    (-1,),
    (slice(None, None, -3),),
    (slice(5, 60, 7), 3),
    (slice(250, 400),),
    (slice(30, 10),),
    (Ellipsis, 2),
    (np.array([3, 1, 200]),),
    (slice(2, 5), slice(None, None, 2)),
]


@pytest.mark.parametrize("key", SLICES, ids=repr)
@pytest.mark.parametrize("name", ["embed", "quant8", "quant16", "half", "counts", "flags"])
def test_get_slice_equals_numpy_slicing_of_the_full_tensor(tmp_path, http_server, name, key):
    expected = save(tmp_path, shard_size=3000)
    full = expected[name]
    try:
        want = full[key]
    except IndexError:
        pytest.skip("not a valid index for this tensor")
    server = http_server(tmp_path)
    with tfjsfs.open_model(server.url_for("m/model.json")) as m:
        got = m.get_slice(name)[key]
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want)


def test_get_slice_fetches_only_the_rows_asked_for(tmp_path, http_server):
    save(tmp_path, shard_size=3000)
    server = http_server(tmp_path)
    with tfjsfs.open_model(server.url_for("m/model.json")) as m:
        row = 40 * 4
        server.reset_stats()
        m.get_slice("embed")[100:110]
        assert shard_bytes(server) == 10 * row
        server.reset_stats()
        m.get_slice("embed")[100:110:3]  # rows 100, 103, 106, 109: their span
        assert shard_bytes(server) == 10 * row
        server.reset_stats()
        m.get_slice("quant8")[5]  # uint8-quantized: 16 bytes a row
        assert shard_bytes(server) == 16
        assert m.get_slice("embed").shape == (300, 40)
        assert m.get_slice("quant16").get_dtype() == "float32"


def test_one_tensor_costs_its_bytes_plus_at_most_max_gap(tmp_path, http_server):
    save(tmp_path, shard_size=3000)
    server = http_server(tmp_path)
    url = server.url_for("m/model.json")
    with tfjsfs.open_model(url, max_gap=64_000) as m:
        for name in m:
            server.reset_stats()
            m.get_tensor(name)
            nbytes = m.bundle.index[name].nbytes
            assert nbytes <= shard_bytes(server) <= nbytes + 64_000


def test_open_model_async_twin(tmp_path, http_server):
    import asyncio

    expected = save(tmp_path, shard_size=3000)
    url = http_server(tmp_path).url_for("m/model.json")

    async def main():
        async with tfjsfs.open_model_async(url) as m:
            whole = await m.get_tensor("embed")
            rows = await m.get_slice("embed")[3:9]
            many = await m.get_tensors(["tail", "counts"])
        m2 = await tfjsfs.open_model_async(url)
        try:
            again = await m2.get_tensor("counts")
        finally:
            await m2.close()
        return whole, rows, many, again

    for _ in range(2):  # a fresh loop each time: nothing bound to the previous one
        whole, rows, many, again = asyncio.run(main())
        assert np.array_equal(whole, expected["embed"])
        assert np.array_equal(rows, expected["embed"][3:9])
        assert np.array_equal(many["tail"], expected["tail"])
        assert np.array_equal(again, expected["counts"])


def test_async_load_functions_on_a_private_loop(tmp_path, http_server):
    import asyncio

    expected = save(tmp_path, shard_size=3000)
    url = http_server(tmp_path).url_for("m/model.json")
    for _ in range(2):
        got = asyncio.run(tfjsfs.load_weights_async(url))
        assert_same(got, expected)
        art = asyncio.run(tfjsfs.load_model_async(url))
        assert np.array_equal(art.weights["tail"], expected["tail"])


# ------------------------------------------------------------------ errors


def test_missing_shard_over_http(tmp_path, http_server):
    save(tmp_path, shard_size=3000)
    (victim,) = (tmp_path / "m").glob("group1-shard2of*.bin")
    victim.unlink()
    server = http_server(tmp_path)
    with pytest.raises(ShardMissingError, match=victim.name):
        tfjsfs.load_weights(server.url_for("m/model.json"))


def test_short_shard_over_http_names_shard_and_bytes(tmp_path, http_server):
    rng = np.random.default_rng(3)
    weights = {"a": rng.normal(size=1_200_000).astype(np.float32), "b": np.ones(9, np.float32)}
    save(tmp_path, weights=weights, shard_size=4_194_304, quantize=None)
    last = tmp_path / "m" / "group1-shard2of2.bin"
    size = last.stat().st_size
    with open(last, "r+b") as f:
        f.truncate(size - 8)
    server = http_server(tmp_path)
    with pytest.raises(WeightDataError) as info:
        tfjsfs.load_weights(server.url_for("m/model.json"))
    text = str(info.value)
    assert "'b'" in text and "group1-shard2of2.bin" in text and "short by 8" in text


def test_partial_load_reads_after_string_weights(tmp_path, http_server):
    weights = {
        "words": np.array(["alpha", "", "ß" * 40]),
        "after": np.arange(30, dtype=np.float32),
    }
    save(tmp_path, weights=weights, shard_size=16, quantize=None)
    server = http_server(tmp_path)
    got = tfjsfs.load_weights(server.url_for("m/model.json"), names=["after", "words"])
    assert got["after"].tolist() == list(range(30))
    assert got["words"].tolist() == [b"alpha", b"", "ß".encode() * 40]
    assert math.prod(got["after"].shape) == 30


def test_tensors_of_every_group_are_aligned_views(tmp_path):
    weights = {
        "odd": np.array([True, False, True]),  # 3 bytes: group 2 would start unaligned
        "kernel": np.arange(12, dtype=np.float32).reshape(3, 4),
        "phase": np.arange(4, dtype=np.complex64),
    }
    art = tfjsfs.ModelArtifacts.from_weights(
        {"x": 1}, weights, groups=[["odd"], ["kernel", "phase"]]
    )
    tfjsfs.save_model(art, tmp_path / "m")
    got = tfjsfs.load_weights(tmp_path / "m")
    for name in ("kernel", "phase"):
        assert got[name].flags.aligned and got[name].base is not None, name
        assert np.array_equal(got[name], weights[name])
    assert got["odd"].tolist() == [True, False, True]


def test_progress_of_a_partial_load_sums_to_what_is_fetched(tmp_path, http_server):
    save(tmp_path, shard_size=3000)
    server = http_server(tmp_path)
    cb = Counting()
    tfjsfs.load_weights(server.url_for("m/model.json"), names=["embed", "tail"], callback=cb)
    assert cb.sizes == [shard_bytes(server)] and cb.value == shard_bytes(server)


def test_tqdm_bar_when_asked(tmp_path, capsys):
    tqdm = pytest.importorskip("tqdm")
    save(tmp_path, shard_size=3000)
    total = sum(p.stat().st_size for p in (tmp_path / "m").glob("*.bin"))
    tfjsfs.load_weights(tmp_path / "m", progress=True)
    bar = capsys.readouterr().err
    assert f"/{tqdm.tqdm.format_sizeof(total, divisor=1024)}" in bar and "B/s" in bar
    tfjsfs.load_weights(tmp_path / "m", progress=False)
    assert capsys.readouterr().err == ""


def test_fast_manifest_path_agrees_with_the_validating_one(tmp_path):
    """Plain manifests take a quick path; odd ones (extra keys, duplicates) the full parser."""
    save(tmp_path, shard_size=3000, quantize=None)
    doc_path = tmp_path / "m" / "model.json"
    doc = json.loads(doc_path.read_text())
    expected = tfjsfs.load_weights(tmp_path / "m")
    doc["weightsManifest"][0]["weights"][1]["group"] = "optimizer"  # still plain
    doc["weightsManifest"][0]["weights"][2]["note"] = "kept"  # unknown key: full parser
    doc_path.write_text(json.dumps(doc))
    assert_same(tfjsfs.load_weights(tmp_path / "m"), expected)
    doc["weightsManifest"][0]["weights"][3]["name"] = "embed"  # a duplicate
    doc_path.write_text(json.dumps(doc))
    with pytest.raises(tfjsfs.errors.ManifestError, match="duplicate weight name 'embed'"):
        tfjsfs.load_weights(tmp_path / "m")
    doc["weightsManifest"][0]["weights"][3]["shape"] = [2, -1]
    doc["weightsManifest"][0]["weights"][3]["name"] = "flags"
    doc_path.write_text(json.dumps(doc))
    with pytest.raises(tfjsfs.errors.ManifestError, match="negative dimension"):
        tfjsfs.load_weights(tmp_path / "m")


def test_loads_without_orjson(tmp_path, monkeypatch):
    import tfjsfs.format.columns

    expected = save(tmp_path, shard_size=3000)
    monkeypatch.setattr(tfjsfs.format.columns, "orjson", None)
    assert_same(tfjsfs.load_weights(tmp_path / "m"), expected)
