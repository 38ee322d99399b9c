"""The same behaviour on every backend: tfjs+memory, file, s3, gs, http, https."""

from __future__ import annotations

import pickle

import fsspec
import numpy as np
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from tfjs_samples import SHARD_SIZE, sample_artifacts

import tfjsfs
from tfjsfs.errors import BundleExistsError, ModelNotFoundError
from tfjsfs.fs.core import TFJSFileSystem
from tfjsfs.fs.files import ReadOnlyError

pytest_plugins = ["tfjs_backends"]


def _assert_weights_equal(got, want):
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.fixture
def model(backend):
    """A saved bundle ``m1`` (plus ``m2`` and a plain folder) on *backend*."""
    art = sample_artifacts(1)
    backend.save(art, "models/m1", shard_size=SHARD_SIZE)
    backend.save(sample_artifacts(2), "models/m2")
    backend.put_bytes("models/notes/readme.txt", b"plain file")
    return art


class TestModelIO:
    def test_load_model_through_tfjs_url(self, backend, model):
        url = backend.url("models/m1")
        loaded = tfjsfs.load_model(url, storage_options=backend.options)
        _assert_weights_equal(loaded.weights, model.weights)
        assert loaded.model_topology == model.model_topology
        also = tfjsfs.load_weights(url + "/model.json", storage_options=backend.options)
        _assert_weights_equal(also, model.weights)

    def test_model_methods_of_the_filesystem(self, backend, model):
        fs = backend.fs
        _assert_weights_equal(fs.load_model(backend.path("models/m1")).weights, model.weights)
        got = fs.load_weights(backend.url("models/m1"), ["steps"])
        np.testing.assert_array_equal(got["steps"], model.weights["steps"])

    def test_missing_model(self, backend, model):
        with pytest.raises(ModelNotFoundError):
            tfjsfs.load_model(backend.url("models/notes"), storage_options=backend.options)
        with pytest.raises(ModelNotFoundError, match=r"no model\.json"):
            backend.fs.ls(backend.path("models/notes/@tensors"))
        with pytest.raises(FileNotFoundError):
            backend.fs.open(backend.path("models/nowhere/@tensors/steps.npy")).read()


class TestListings:
    def test_model_folder_info_carries_a_summary(self, backend, model):
        info = backend.fs.info(backend.path("models/m1"))
        assert info["type"] == "directory"
        tfjs = info["tfjs"]
        assert tfjs["role"] == "model"
        assert tfjs["format"] == "layers-model"
        assert tfjs["weights"] == len(model.weight_specs)
        assert tfjs["weight_bytes"] == model.weight_data_bytes
        assert tfjs["shards"] == -(-model.weight_data_bytes // SHARD_SIZE)
        assert tfjs["dtypes"] == sorted({s.dtype for s in model.weight_specs})
        assert backend.fs.isdir(backend.path("models/m1"))

    def test_model_folder_listing_gives_roles(self, backend, model):
        fs = backend.fs
        entries = {e["name"].rsplit("/", 1)[-1]: e for e in fs.ls(backend.path("models/m1"))}
        assert entries["model.json"]["tfjs"] == {"role": "manifest"}
        shards = [e for e in entries.values() if e["tfjs"]["role"] == "shard"]
        assert len(shards) == -(-model.weight_data_bytes // SHARD_SIZE)
        assert sum(e["size"] for e in shards) == model.weight_data_bytes
        assert {(e["tfjs"]["group"], e["tfjs"]["index"]) for e in shards} == {
            (0, i) for i in range(len(shards))
        }
        assert "@tensors" not in entries  # never listed: no double counting
        one = fs.info(shards[0]["name"])
        assert one["tfjs"]["role"] == "shard" and one["size"] == shards[0]["size"]

    def test_folder_of_models_is_marked(self, backend, model):
        if backend.server is not None:
            pytest.skip("HTTP has no listing that could mark bundles")
        entries = {e["name"].rsplit("/", 1)[-1]: e for e in backend.fs.ls(backend.path("models"))}
        assert entries["m1"]["type"] == entries["m2"]["type"] == "directory"
        assert entries["m1"]["tfjs"]["role"] == entries["m2"]["tfjs"]["role"] == "model"
        assert "tfjs" not in entries["notes"]

    def test_find_du_and_walk_count_weights_once(self, backend, model):
        fs = backend.fs
        root = backend.path("models/m1")
        found = fs.find(root)
        assert not any("@tensors" in p for p in found)
        assert fs.du(root) == model.weight_data_bytes + fs.size(root + "/model.json")
        walked = [d for d, _, _ in fs.walk(root)]
        assert walked == [root]

    def test_glob_with_wildcards_in_folders(self, backend, model):
        if backend.name == "https":
            pytest.skip("this server does not list folders, so a folder wildcard cannot match")
        fs = backend.fs
        got = fs.glob(backend.path("models/m*/model.json"))
        assert sorted(got) == [
            backend.path("models/m1/model.json"),
            backend.path("models/m2/model.json"),
        ]
        files = fsspec.open_files(backend.url("models/m1/*.bin"), **backend.options)
        assert len(files) == -(-model.weight_data_bytes // SHARD_SIZE)


class TestVirtualTensors:
    def test_tensors_listing(self, backend, model):
        fs = backend.fs
        top = fs.ls(backend.path("models/m1/@tensors"))
        names = {e["name"].rsplit("@tensors/", 1)[1]: e for e in top}
        assert set(names) == {"dense", "steps.npy", "flags.npy", "q8.npy", "h16.npy"}
        assert names["dense"]["type"] == "directory"
        assert names["steps.npy"]["shape"] == [2, 3] and names["steps.npy"]["dtype"] == "<i4"
        assert names["q8.npy"]["tfjs"]["quantization"]["dtype"] == "uint8"
        inner = fs.ls(backend.path("models/m1/@tensors/dense"), detail=False)
        assert sorted(n.rsplit("/", 1)[1] for n in inner) == ["bias.npy", "kernel.npy"]
        info = fs.info(backend.path("models/m1/@tensors/dense/kernel.npy"))
        assert info["type"] == "file" and info["shape"] == [48, 40]
        assert fs.info(backend.path("models/m1/@tensors/dense"))["type"] == "directory"

    def test_numpy_load_reads_every_weight(self, backend, model):
        want = tfjsfs.load_weights(backend.url("models/m1"), storage_options=backend.options)
        for name, value in want.items():
            url = backend.url(f"models/m1/@tensors/{name}.npy")
            with fsspec.open(url, **backend.options).open() as f:
                got = np.load(f)
                assert f.size == backend.fs.size(backend.path(f"models/m1/@tensors/{name}.npy"))
            assert got.dtype == value.dtype, name
            np.testing.assert_array_equal(got, value, err_msg=name)

    def test_cat_ranges_of_a_tensor(self, backend, model):
        fs = backend.fs
        path = backend.path("models/m1/@tensors/dense/kernel.npy")
        whole = fs.cat_file(path)
        size = len(whole)
        assert fs.cat_file(path, start=size - 100) == whole[-100:]
        got = fs.cat_ranges([path, path], [0, 5000], [10, 9000])
        assert got == [whole[:10], whole[5000:9000]]

    def test_tensors_are_read_only(self, backend, model):
        fs = backend.fs
        with pytest.raises(ReadOnlyError):
            fs.pipe_file(backend.path("models/m1/@tensors/x.npy"), b"x")
        with pytest.raises(ReadOnlyError):
            fs.open(backend.path("models/m1/@tensors/steps.npy"), "wb")
        with pytest.raises(FileNotFoundError):
            fs.info(backend.path("models/m1/@tensors/nope.npy"))

    def test_copy_a_tensor_out(self, backend, model, tmp_path):
        fs = backend.fs
        fs.get(backend.path("models/m1/@tensors/dense/bias.npy"), str(tmp_path / "b.npy"))
        np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), model.weights["dense/bias"])
        fs.get(backend.path("models/m1/@tensors"), str(tmp_path / "all"), recursive=True)
        assert (tmp_path / "all" / "dense" / "kernel.npy").exists()

    def test_bundle_rewritten_between_listing_and_reading(self, backend, model):
        fs = backend.fs
        fs.ls(backend.path("models/m1"))  # caches the manifest
        fs.info(backend.path("models/m1/@tensors/steps.npy"))
        new = sample_artifacts(7)
        backend.save(new, "models/m1", overwrite=True)  # another writer
        path = backend.path("models/m1/@tensors/steps.npy")
        with fs.open(path) as f:
            np.testing.assert_array_equal(np.load(f), new.weights["steps"])
        np.testing.assert_array_equal(
            np.load(__import__("io").BytesIO(fs.cat_file(path))), new.weights["steps"]
        )


class TestResolvedPaths:
    def test_kinds(self, backend, model):
        fs = backend.fs
        root = backend.path("models/m1")
        want = {
            "models/m1": ("model_dir", root, None),
            "models/m1/model.json": ("model_json", root, None),
            "models/m1/group1-shard2of2.bin": ("shard", root, None),
            "models/m1/@tensors": ("tensor_dir", root, ""),
            "models/m1/@tensors/dense": ("tensor_dir", root, "dense"),
            "models/m1/@tensors/dense/kernel.npy": ("tensor", root, "dense/kernel"),
            "models/notes/readme.txt": ("other", None, None),
        }
        for rel, (kind, model_root, tensor) in want.items():
            rp = fs.resolve_path(backend.path(rel))
            assert rp.kind == kind, rel
            assert rp.tensor_name == tensor, rel
            outer_root = None if rp.model_root is None else fs._strip_protocol(rp.model_root)
            assert outer_root == model_root, rel
            assert rp.unresolve() == backend.path(rel)
        with pytest.raises(FileNotFoundError):
            fs.resolve_path(backend.path("models/none.txt"))


class TestNamesAndPickling:
    def test_unstrip_protocol_round_trips(self, backend, model):
        fs = backend.fs
        path = backend.path("models/m1/model.json")
        url = fs.unstrip_protocol(path)
        assert url.startswith(backend.protocol + "://")
        fs2, path2 = fsspec.core.url_to_fs(url, **backend.options)
        assert type(fs2) is type(fs) and fs2.storage_options == fs.storage_options
        assert fs2._strip_protocol(path2) == path
        if backend.shared_fs is None:
            assert fs2 is fs  # the same cached instance
        with fsspec.open(url, **backend.options) as f:
            assert f.read() == fs.cat_file(path)

    def test_pickled_instance_reads(self, backend, model):
        fs = backend.fs
        clone = pickle.loads(pickle.dumps(fs))
        assert clone.target_protocol == fs.target_protocol
        path = backend.path("models/m1/@tensors/steps.npy")
        assert clone.cat_file(path) == fs.cat_file(path)


def _exclusive_open(fs, path):
    try:
        with fs.open(path, "xb") as f:
            f.write(b"x")
    except FileExistsError:
        return "refused"
    return fs.cat_file(path)


class TestWrites:
    def test_save_through_tfjs_url(self, writable_backend):
        backend = writable_backend
        art = sample_artifacts(3)
        url = backend.url("saved/m")
        result = tfjsfs.save_model(
            art, url, storage_options=backend.options, shard_size=SHARD_SIZE
        )
        assert result.files[-1].endswith("model.json")
        _assert_weights_equal(
            tfjsfs.load_weights(url, storage_options=backend.options), art.weights
        )
        with pytest.raises(BundleExistsError):
            tfjsfs.save_model(art, url, storage_options=backend.options)
        newer = sample_artifacts(4)
        tfjsfs.save_model(newer, url, storage_options=backend.options, overwrite=True)
        _assert_weights_equal(backend.fs.load_weights(backend.path("saved/m")), newer.weights)
        shards = [p for p in backend.fs.find(backend.path("saved/m")) if p.endswith(".bin")]
        assert len(shards) == 1  # old shards are gone, new ones never overwrote them

    def test_fs_save_model_updates_listings(self, writable_backend):
        backend = writable_backend
        fs = backend.fs
        path = backend.path("fs-saved")
        fs.save_model(sample_artifacts(5), path)
        assert fs.info(path)["tfjs"]["weights"] == 6
        fs.save_model(sample_artifacts(6), path, overwrite=True)
        got = np.load(fs.open(path + "/@tensors/steps.npy"))
        np.testing.assert_array_equal(got, sample_artifacts(6).weights["steps"])

    def test_plain_files_pass_through(self, writable_backend):
        backend = writable_backend
        fs = backend.fs
        p = backend.path("plain/a.txt")
        fs.pipe_file(p, b"hello")
        assert fs.cat_file(p) == b"hello"
        with pytest.raises(FileExistsError):
            fs.pipe_file(p, b"again", mode="create")
        # open(..., "xb") behaves exactly as on the plain backend (gcsfs calls it
        # experimental, and fake-gcs-server lets it overwrite)
        plain, root = backend.seed_fs()
        plain.pipe_file(f"{root}/plain/x.txt", b"hello")
        assert _exclusive_open(plain, f"{root}/plain/x.txt") == _exclusive_open(fs, p)
        if backend.name != "gs":
            assert fs.cat_file(p) == b"hello"
        fs.cp_file(p, backend.path("plain/b.txt"))
        assert sorted(fs.ls(backend.path("plain"), detail=False)) == [
            backend.path("plain/a.txt"),
            backend.path("plain/b.txt"),
            backend.path("plain/x.txt"),
        ]
        with fs.transaction:
            with fs.open(backend.path("plain/c.txt"), "wb") as f:
                f.write(b"later")
            assert not fs.exists(backend.path("plain/c.txt"))
        assert fs.cat_file(backend.path("plain/c.txt")) == b"later"
        fs.rm(backend.path("plain"), recursive=True)
        assert not fs.exists(backend.path("plain/a.txt"))


class RecordingMemory(MemoryFileSystem):
    """The memory filesystem, recording writes and removals in order."""

    protocol = "recordingmemory"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log: list[tuple[str, str, str]] = []

    def pipe_file(self, path, value, mode="overwrite", **kwargs):
        self.log.append(("pipe", path.rsplit("/", 1)[-1], mode))
        return super().pipe_file(path, value, mode=mode, **kwargs)

    def rm_file(self, path):
        self.log.append(("rm", path.rsplit("/", 1)[-1], ""))
        return super().rm_file(path)


def test_save_order_through_the_filesystem():
    """Shards first, model.json last and create-only; an overwrite never reuses
    the names of live shards and removes the old ones only after the swap."""
    inner = RecordingMemory(skip_instance_cache=True)
    fs = TFJSFileSystem(fs=inner)
    try:
        fs.save_model(sample_artifacts(1), "/tfjsfs-order/m", shard_size=SHARD_SIZE)
        shards = {("pipe", f"group1-shard{i}of2.bin", "overwrite") for i in (1, 2)}
        assert set(inner.log[:2]) == shards  # concurrently, in any order
        assert inner.log[2:] == [("pipe", "model.json", "create")]
        inner.log.clear()
        fs.save_model(
            sample_artifacts(2), "/tfjsfs-order/m", shard_size=SHARD_SIZE, overwrite=True
        )
        names = [name for _, name, _ in inner.log]
        swap = names.index("model.json")
        assert inner.log[swap] == ("pipe", "model.json", "overwrite")
        written = {name for op, name, _ in inner.log[:swap] if op == "pipe"}
        removed = {name for op, name, _ in inner.log[swap + 1 :] if op == "rm"}
        old = {name for _, name, _ in shards}
        assert len(written) == 2 and not written & old  # fresh names
        assert removed == old  # old shards go only after model.json points elsewhere
        got = fs.load_weights("/tfjsfs-order/m")
        np.testing.assert_array_equal(got["steps"], sample_artifacts(2).weights["steps"])
    finally:
        fsspec.filesystem("memory").rm("/tfjsfs-order", recursive=True)
