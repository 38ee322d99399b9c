"""list/copy/move/remove between real stores: memory, local disk, S3 (moto),
GCS (fake-gcs-server) and a read-only HTTP server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import fsspec
import numpy as np
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from manage_support import (
    TOPOLOGY,
    assert_same_weights,
    file_store,
    make_store,
    sample_artifacts,
    sample_weights,
)

import tfjsfs
from tfjsfs import ModelArtifacts
from tfjsfs.errors import (
    BundleExistsError,
    FormatError,
    ManifestError,
    ModelNotFoundError,
    ShardMissingError,
    WeightDataError,
)
from tfjsfs.model.removal import remove_model_files

STORES = ["memory", "file", "s3", "gcs"]
SHARD = 300  # small shards: every sample bundle has several


@pytest.fixture
def store_factory(request, tmp_path):
    made = []

    def make(kind: str):
        store = make_store(kind, request, tmp_path / f"{kind}-{len(made)}")
        made.append(store)
        return store

    yield make
    for store in made:
        if store.kind == "memory" and store.fs.exists(store.root):
            store.fs.rm(store.root, recursive=True)


def _source(store_factory, kind, seed=0):
    """A saved sample bundle in a store of *kind*: (store, url)."""
    store = store_factory(kind)
    writer = store.extra.get("local", store)
    writer.save(sample_artifacts(seed), "models", "m", shard_size=SHARD)
    return store, store.url("models", "m")


@pytest.mark.parametrize("dst_kind", STORES)
@pytest.mark.parametrize("src_kind", [*STORES, "http"])
def test_copy_move_remove_between_stores(store_factory, src_kind, dst_kind):
    src, src_url = _source(store_factory, src_kind)
    dst = store_factory(dst_kind)
    expected = sample_weights(0)

    result = tfjsfs.copy_model(
        src_url, dst.url("copy"), src_options=src.options, dst_options=dst.options
    )
    assert result.url.endswith("copy/model.json")
    assert result.files[-1] == result.url  # model.json written last
    assert sorted(dst.files("copy")) == sorted([f.rsplit("/", 1)[-1] for f in result.files])
    assert_same_weights(dst.load("copy"), expected)
    # an as-is copy is byte for byte: model.json and every shard
    writer = src.extra.get("local", src)
    for name in dst.files("copy"):
        assert dst.fs.cat_file(dst.inner("copy", name)) == writer.fs.cat_file(
            writer.inner("models", "m", name)
        )
    listed = tfjsfs.list_models(dst.base, storage_options=dst.options)
    assert list(listed) == [dst.url("copy")]
    assert (
        listed[dst.url("copy")].weight_data_bytes == result.model_artifacts_info.weight_data_bytes
    )

    if src_kind != "http":  # HTTP is read-only: no move from it
        moved = tfjsfs.move_model(
            src_url, dst.url("moved"), src_options=src.options, dst_options=dst.options
        )
        assert moved.url.endswith("moved/model.json")
        assert_same_weights(dst.load("moved"), expected)
        assert src.files("models", "m") == []
        assert tfjsfs.list_models(src.base, storage_options=src.options) == {}

    info = tfjsfs.remove_model(dst.url("copy"), storage_options=dst.options)
    assert info.weight_data_bytes == result.model_artifacts_info.weight_data_bytes
    assert dst.files("copy") == []
    with pytest.raises(ModelNotFoundError):
        tfjsfs.load_model(dst.url("copy"), storage_options=dst.options)


def test_list_models_finds_every_layout_and_keeps_url_spelling(store_factory):
    store = store_factory("memory")
    art = sample_artifacts()
    store.save(art, "a", "m1", shard_size=SHARD)
    store.save(art, "a", "deep", "er", "m2")
    store.save(art, "b", "m3", layout="downloads", name="weird")
    store.save(art, "b", "m4", layout="tfjs-node")
    store.fs.pipe(store.inner("b", "notes", "config.json"), b'{"not": "a model"}')
    store.fs.pipe(store.inner("b", "broken", "model.json"), b"{oops")

    found = tfjsfs.list_models(store.base)
    assert sorted(found) == [
        store.url("a", "deep", "er", "m2"),
        store.url("a", "m1"),
        store.url("b", "m3", "weird.json"),
        store.url("b", "m4"),
    ]
    for info in found.values():
        assert info.weight_data_bytes == art.weight_data_bytes
        assert info.model_topology_bytes == art.info().model_topology_bytes
        assert info.weight_specs_bytes == art.info().weight_specs_bytes
    # the tfjs+ spelling is kept
    plus = tfjsfs.list_models("tfjs+" + store.url("a"))
    assert sorted(plus) == [
        "tfjs+" + store.url("a", "deep", "er", "m2"),
        "tfjs+" + store.url("a", "m1"),
    ]
    # a model folder itself, and its model.json
    assert list(tfjsfs.list_models(store.url("a", "m1"))) == [store.url("a", "m1")]
    with pytest.raises(ManifestError, match=r"broken/model\.json"):
        tfjsfs.list_models(store.url("b"), on_error="raise")
    assert tfjsfs.list_models(store.url("nothing-here")) == {}


def test_list_models_reads_only_model_json_over_http(store_factory):
    store = store_factory("http")
    local = store.extra["local"]
    for i in range(3):
        local.save(sample_artifacts(i), "models", f"m{i}", shard_size=SHARD)
    server = store.extra["server"]
    server.reset_stats()
    found = tfjsfs.list_models(store.url("models") + "/")
    assert sorted(found) == [store.url("models", f"m{i}") for i in range(3)]
    gets = [r.path for r in server.stats.requests if r.method == "GET"]
    assert not [p for p in gets if p.endswith(".bin")]  # never a shard
    assert sorted(p for p in gets if p.endswith(".json")) == [
        f"/models/m{i}/model.json" for i in range(3)
    ]


def test_list_models_one_listing_on_s3(store_factory):
    """Listing 30 bundles costs one paginated LIST, not one request per object."""
    store = store_factory("s3")
    art = sample_artifacts()
    for i in range(30):
        store.save(art, f"m{i:02d}", shard_size=SHARD)
    calls = []
    fs, _ = tfjsfs.io.resolve.resolve(store.base, **store.options)
    fs.s3  # noqa: B018 - make sure the client exists
    original = fs._call_s3

    async def counting(method, *args, **kwargs):
        calls.append(method)
        return await original(method, *args, **kwargs)

    fs._call_s3 = counting
    try:
        found = tfjsfs.list_models(store.base, storage_options={"fs": fs})
    finally:
        fs._call_s3 = original
    assert len(found) == 30
    assert calls.count("list_objects_v2") == 1
    assert calls.count("get_object") == 30  # model.json only
    assert set(calls) <= {"list_objects_v2", "get_object"}


@pytest.mark.parametrize("shard_size", [1, 97, 4096])
def test_reshard_keeps_values_and_cuts_blindly(store_factory, shard_size):
    _, url = _source(store_factory, "memory")
    dst = store_factory("file")
    result = tfjsfs.copy_model(url, dst.url("r"), shard_size=shard_size)
    doc = json.loads(dst.fs.cat_file(dst.inner("r", "model.json")))
    for g, group in enumerate(doc["weightsManifest"]):
        sizes = [dst.fs.size(dst.inner("r", p)) for p in group["paths"]]
        assert all(s == shard_size for s in sizes[:-1])
        assert 0 < sizes[-1] <= shard_size
        assert group["paths"][0] == f"group{g + 1}-shard1of{len(sizes)}.bin"
    assert_same_weights(dst.load("r"), sample_weights(0))
    assert result.model_artifacts_info.weight_data_bytes == sample_artifacts().weight_data_bytes


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float16"])
def test_quantize_on_the_way_matches_quantizing_at_save(store_factory, dtype):
    _, url = _source(store_factory, "memory")
    dst = store_factory("memory")
    tfjsfs.copy_model(url, dst.url("q"), quantize=dtype)
    direct = store_factory("memory")
    direct.save(sample_artifacts(quantize=dtype), "d", shard_size=SHARD)
    got, want = dst.load("q"), direct.load("d")
    assert list(got) == list(want)
    for name in want:
        assert got[name].tolist() == want[name].tolist(), name
    doc = json.loads(dst.fs.cat_file(dst.inner("q", "model.json")))
    quantized = {
        w["name"]: w["quantization"]["dtype"]
        for g in doc["weightsManifest"]
        for w in g["weights"]
        if "quantization" in w
    }
    floats = [n for n, v in sample_weights().items() if np.asarray(v).dtype == np.float32]
    assert quantized == dict.fromkeys(floats, dtype)
    # the source's shard size is kept when re-encoding
    sizes = [dst.fs.size(dst.inner("q", p)) for g in doc["weightsManifest"] for p in g["paths"]]
    assert max(sizes) <= SHARD


def test_requantize_patterns_and_dequantize(store_factory):
    src = store_factory("memory")
    src.save(sample_artifacts(quantize="float16"), "m", shard_size=SHARD)
    dst = store_factory("memory")
    tfjsfs.copy_model(src.url("m"), dst.url("u"), quantize={"uint8": ["dense/*"]})
    doc = json.loads(dst.fs.cat_file(dst.inner("u", "model.json")))
    kinds = {
        w["name"]: w.get("quantization", {}).get("dtype")
        for w in doc["weightsManifest"][0]["weights"] + doc["weightsManifest"][1]["weights"]
    }
    assert kinds["dense/kernel"] == kinds["dense/bias"] == "uint8"
    assert kinds["out/kernel"] == "float16"  # untouched: kept byte for byte
    tfjsfs.copy_model(src.url("m"), dst.url("f"), dequantize=True)
    back = dst.load("f")
    half = src.load("m")
    for name, value in half.items():
        assert back[name].dtype == value.dtype
        assert back[name].tolist() == value.tolist()
    doc = json.loads(dst.fs.cat_file(dst.inner("f", "model.json")))
    assert not any("quantization" in w for g in doc["weightsManifest"] for w in g["weights"])


def test_rewrite_in_place(store_factory):
    store, url = _source(store_factory, "file")
    before = store.files("models", "m")
    with pytest.raises(BundleExistsError, match="same"):
        tfjsfs.copy_model(url, url, overwrite=True)
    with pytest.raises(BundleExistsError, match="same"):
        tfjsfs.copy_model(url, url, shard_size=64)
    tfjsfs.copy_model(url, url, shard_size=64, overwrite=True)
    after = store.files("models", "m")
    assert not set(before) & set(after) - {"model.json"}  # old shards gone, no mixing
    assert_same_weights(store.load("models", "m"), sample_weights(0))
    doc = json.loads(store.fs.cat_file(store.inner("models", "m", "model.json")))
    assert (
        max(
            store.fs.size(store.inner("models", "m", p))
            for p in doc["weightsManifest"][0]["paths"]
        )
        == 64
    )


def test_copy_refuses_existing_destination_without_overwrite(store_factory):
    _, url = _source(store_factory, "memory")
    dst = store_factory("memory")
    dst.save(sample_artifacts(7), "x")
    before = {f: dst.fs.cat_file(dst.inner("x", f)) for f in dst.files("x")}
    with pytest.raises(BundleExistsError):
        tfjsfs.copy_model(url, dst.url("x"))
    assert {f: dst.fs.cat_file(dst.inner("x", f)) for f in dst.files("x")} == before
    tfjsfs.copy_model(url, dst.url("x"), overwrite=True)
    assert_same_weights(dst.load("x"), sample_weights(0))


def test_broken_source_writes_nothing(store_factory):
    src, url = _source(store_factory, "memory")
    doc = json.loads(src.fs.cat_file(src.inner("models", "m", "model.json")))
    victim = doc["weightsManifest"][1]["paths"][0]
    data = src.fs.cat_file(src.inner("models", "m", victim))
    dst = store_factory("memory")

    src.fs.pipe_file(src.inner("models", "m", victim), data[:-3])
    with pytest.raises(WeightDataError, match=r"short by 3|past the end"):
        tfjsfs.copy_model(url, dst.url("c"))
    assert dst.files("c") == []

    src.fs.rm_file(src.inner("models", "m", victim))
    with pytest.raises(ShardMissingError, match=victim):
        tfjsfs.copy_model(url, dst.url("c"))
    assert dst.files("c") == []
    with pytest.raises(ModelNotFoundError):
        tfjsfs.copy_model(src.url("nope"), dst.url("c"))


def test_copy_reports_progress_and_validates_shard_size(store_factory):
    _, url = _source(store_factory, "memory")
    dst = store_factory("memory")

    class Count(fsspec.callbacks.Callback):
        pass

    cb = Count()
    result = tfjsfs.copy_model(url, dst.url("p"), callback=cb)
    assert cb.size == cb.value == result.model_artifacts_info.weight_data_bytes
    with pytest.raises(FormatError):
        tfjsfs.copy_model(url, dst.url("z"), shard_size=0)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_move_whose_destination_fails_keeps_the_source(store_factory, tmp_path):
    src, url = _source(store_factory, "file")
    files = src.files("models", "m")
    before = {f: src.fs.cat_file(src.inner("models", "m", f)) for f in files}

    # 1. mid-way: a directory squats on the name of one shard
    dst = file_store(tmp_path / "dst")
    doc = json.loads(before["model.json"])
    squatted = doc["weightsManifest"][1]["paths"][-1]
    (tmp_path / "dst" / "m" / squatted).mkdir(parents=True)
    with pytest.raises(OSError):
        tfjsfs.move_model(url, dst.url("m"), concurrency=1)
    assert dst.files("m") == []  # the shards it did write were taken back
    # 2. the destination store is unreachable
    dead = {"key": "k", "secret": "s", "endpoint_url": f"http://127.0.0.1:{_closed_port()}"}
    dead["config_kwargs"] = {"retries": {"max_attempts": 1}}
    with pytest.raises(OSError):
        tfjsfs.move_model(url, "s3://some-bucket/m", dst_options=dead)
    # 3. the destination exists
    taken = store_factory("memory")
    taken.save(sample_artifacts(3), "taken")
    with pytest.raises(BundleExistsError):
        tfjsfs.move_model(url, taken.url("taken"))

    after = {f: src.fs.cat_file(src.inner("models", "m", f)) for f in src.files("models", "m")}
    assert after == before
    assert_same_weights(taken.load("taken"), sample_weights(3))
    assert_same_weights(src.load("models", "m"), sample_weights(0))


class RecordingMemoryFS(MemoryFileSystem):
    """The real memory filesystem, recording deletions in order."""

    log: list[str] = []

    def rm_file(self, path):
        self.log.append(path)
        return super().rm_file(path)


def test_remove_deletes_model_json_first(store_factory):
    store, url = _source(store_factory, "memory")
    files = store.files("models", "m")
    fs = RecordingMemoryFS(skip_instance_cache=True)
    RecordingMemoryFS.log = []
    planned = remove_model_files(url)
    assert planned[0].endswith("/model.json") and len(planned) == len(files)
    assert store.files("models", "m") == files  # dry run deletes nothing
    tfjsfs.remove_model(url, storage_options={"fs": fs})
    log = [p for p in RecordingMemoryFS.log if not p.endswith("/m")]
    assert log[0].endswith("/models/m/model.json")
    assert sorted(p.rsplit("/", 1)[-1] for p in log) == sorted(files)
    assert store.files("models", "m") == []
    with pytest.raises(ModelNotFoundError):
        tfjsfs.remove_model(url)


def test_remove_never_deletes_outside_the_model_folder(store_factory):
    store = store_factory("memory")
    store.save(sample_artifacts(), "m")
    doc = json.loads(store.fs.cat_file(store.inner("m", "model.json")))
    doc["weightsManifest"][1]["paths"].append("../precious.bin")
    store.fs.pipe_file(store.inner("m", "model.json"), json.dumps(doc).encode())
    store.fs.pipe_file(store.inner("precious.bin"), b"keep me")
    tfjsfs.remove_model(store.url("m"))
    assert store.fs.cat_file(store.inner("precious.bin")) == b"keep me"
    assert store.files("m") == []


def test_copy_to_an_http_upload_endpoint(store_factory, upload_receiver):
    _, url = _source(store_factory, "memory")
    result = tfjsfs.copy_model(url, upload_receiver.url + "/upload", quantize="float16")
    assert result.responses
    (upload,) = upload_receiver.wait_for(1)
    model_json = json.loads(upload.part("model.json").data)
    weights = upload.part("model.weights.bin").data
    art = ModelArtifacts.from_model_json(tfjsfs.ModelJSON.parse(model_json), weights)
    want = sample_artifacts(quantize="float16").weights
    for name, value in want.items():
        assert art.weights[name].tolist() == value.tolist(), name


# ---------------------------------------------------------- interrupted copy

WRITER = textwrap.dedent(
    """
    import sys, time, json
    import fsspec.callbacks
    import tfjsfs

    class Slow(fsspec.callbacks.Callback):
        def relative_update(self, inc=1):
            print("wrote", inc, flush=True)
            time.sleep(0.3)
            super().relative_update(inc)

    src, dst, opts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    tfjsfs.copy_model(src, dst, callback=Slow(), concurrency=1, dst_options=opts)
    print("finished", flush=True)
    """
)


@pytest.mark.parametrize("dst_kind", ["file", "s3"])
def test_killed_copy_leaves_no_visible_bundle(store_factory, tmp_path, dst_kind):
    src = file_store(tmp_path / "src")
    big = {f"w{i}": np.full(1000, i, np.float32) for i in range(12)}
    src.save(ModelArtifacts.from_weights(TOPOLOGY, big), "m", shard_size=4000)
    shards = len(src.files("m")) - 1
    dst = store_factory(dst_kind)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen(
        [sys.executable, str(script), src.url("m"), dst.url("m"), json.dumps(dst.options)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        written = 0
        while written < shards // 2:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            written += line.startswith("wrote")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    left = dst.files("m")
    assert left and "model.json" not in left  # shards were being written, no model.json
    assert tfjsfs.list_models(dst.base, storage_options=dst.options) == {}
    with pytest.raises(ModelNotFoundError):
        tfjsfs.load_model(dst.url("m"), storage_options=dst.options)
    # a later copy over the debris succeeds and is complete
    tfjsfs.copy_model(src.url("m"), dst.url("m"), dst_options=dst.options)
    got = dst.load("m")
    assert [got[k].tolist() for k in big] == [v.tolist() for v in big.values()]
