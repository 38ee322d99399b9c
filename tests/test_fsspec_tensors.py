"""Virtual tensors: bytes fetched, odd dtypes and names, bad manifests and servers."""

from __future__ import annotations

import io
import json

import fsspec
import numpy as np
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from peers import netguard
from tfjs_samples import SHARD_SIZE, TOPOLOGY, sample_artifacts

import tfjsfs
from tfjsfs.errors import ModelNotFoundError, TFJSError, UnsafePathError, WeightDataError
from tfjsfs.format.artifacts import ModelArtifacts
from tfjsfs.fs.core import TFJSFileSystem
from tfjsfs.fs.files import ReadOnlyError


class CountingMemory(MemoryFileSystem):
    """The memory filesystem, counting the bytes every read returns."""

    protocol = "countingmemory"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reads: list[tuple[str, int | None, int | None, int]] = []

    def cat_file(self, path, start=None, end=None, **kwargs):
        data = super().cat_file(path, start=start, end=end, **kwargs)
        self.reads.append((path, start, end, len(data)))
        return data

    def shard_bytes(self) -> int:
        return sum(n for p, _, _, n in self.reads if p.endswith(".bin"))


@pytest.fixture
def served(tmp_path, http_server):
    """A bundle with shards of 4000 bytes, served over HTTP."""
    art = sample_artifacts(1)
    tfjsfs.save_model(art, str(tmp_path / "m"), shard_size=SHARD_SIZE)
    server = http_server(tmp_path)
    return art, server


def _kernel_segments(art):
    """Byte offset and size of ``dense/kernel`` in the weight data."""
    start, end = art.weight_offsets()[[s.name for s in art.weight_specs].index("dense/kernel")]
    return start, end


class TestBytesFetched:
    def test_http_fetches_exactly_the_tensor(self, served):
        art, server = served
        fs = fsspec.filesystem("tfjs+http")
        host = server.url.split("://")[1]
        start, end = _kernel_segments(art)
        assert start // SHARD_SIZE != (end - 1) // SHARD_SIZE  # spans two shards
        server.reset_stats()
        with fs.open(f"{host}/m/@tensors/dense/kernel.npy") as f:
            got = np.load(f)
        np.testing.assert_array_equal(got, art.weights["dense/kernel"])
        shard_bytes = {p: n for p, n in server.stats.bytes_served.items() if p.endswith(".bin")}
        assert sum(shard_bytes.values()) == end - start  # no slack for one tensor
        assert len(shard_bytes) == 2
        gets = [r for r in server.stats.requests if r.method == "GET" and r.path.endswith(".bin")]
        assert len(gets) == 2  # one request per shard segment

    def test_counting_backend_sees_only_the_tensor(self):
        art = sample_artifacts(2)
        tfjsfs.save_model(art, "memory://tfjsfs-count/m", shard_size=SHARD_SIZE)
        try:
            inner = CountingMemory(skip_instance_cache=True)
            fs = TFJSFileSystem(fs=inner)
            for name in ("dense/kernel", "steps", "q8"):
                inner.reads.clear()
                with fs.open(f"/tfjsfs-count/m/@tensors/{name}.npy") as f:
                    got = np.load(f)
                np.testing.assert_array_equal(got, art.weights[name])
                spec = next(s for s in art.weight_specs if s.name == name)
                assert inner.shard_bytes() == spec.size * spec.stored_itemsize, name
            inner.reads.clear()
            fs.cat_file("/tfjsfs-count/m/@tensors/dense/kernel.npy", start=128, end=1128)
            assert inner.shard_bytes() == 1128 - 128 - 0  # header (128 bytes) costs nothing
        finally:
            fsspec.filesystem("memory").rm("/tfjsfs-count", recursive=True)

    def test_server_ignoring_range_is_checked_not_trusted(self, tmp_path, http_server):
        art = sample_artifacts(3)
        tfjsfs.save_model(art, str(tmp_path / "m"), shard_size=SHARD_SIZE)
        server = http_server(tmp_path, ignore_range=True)
        host = server.url.split("://")[1]
        fs = fsspec.filesystem("tfjs+http")
        for name in ("dense/kernel", "steps"):
            data = fs.cat_file(f"{host}/m/@tensors/{name}.npy")
            np.testing.assert_array_equal(np.load(io.BytesIO(data)), art.weights[name])
        served = sum(n for p, n in server.stats.bytes_served.items() if p.endswith(".bin"))
        assert served > art.weights["dense/kernel"].nbytes  # whole shards came back

    def test_failing_shard_is_an_error_naming_it(self, served):
        _, server = served
        host = server.url.split("://")[1]
        server.fail_first("/m/group1-shard1of2.bin", 10, status=503, methods=("GET",))
        fs = fsspec.filesystem("tfjs+http", retries=1, skip_instance_cache=True)
        with pytest.raises(TFJSError, match=r"group1-shard1of2\.bin"):
            fs.cat_file(f"{host}/m/@tensors/dense/kernel.npy", end=4000)
        assert server.stats.count("/m/group1-shard1of2.bin", "GET") == 2  # 1 + 1 retry


class TestDtypesAndNames:
    def test_strings_bools_and_escaped_names(self):
        weights = {
            "vocab": np.array([b"alpha", b"", "\u00e9t\u00e9".encode()], dtype=object),
            "w[0]*?": np.arange(4, dtype=np.float32),
            "mask": np.array([[True, False], [False, True]]),
            "after/strings": np.arange(3, dtype=np.int32),
        }
        art = ModelArtifacts.from_weights(TOPOLOGY, weights)
        tfjsfs.save_model(art, "memory://tfjsfs-dtypes/m", shard_size=16)
        try:
            fs = fsspec.filesystem("tfjs+memory")
            names = fs.ls("/tfjsfs-dtypes/m/@tensors", detail=False)
            assert "/tfjsfs-dtypes/m/@tensors/w%5B0%5D%2A%3F.npy" in names
            vocab = np.load(fs.open("/tfjsfs-dtypes/m/@tensors/vocab.npy"))
            assert vocab.dtype == np.dtype("S5") and list(vocab) == [
                b"alpha",
                b"",
                b"\xc3\xa9t\xc3\xa9",
            ]
            assert fs.info("/tfjsfs-dtypes/m/@tensors/vocab.npy")["size"] == len(
                fs.cat_file("/tfjsfs-dtypes/m/@tensors/vocab.npy")
            )
            for name in ("w[0]*?", "mask", "after/strings"):
                path = fs.ls("/tfjsfs-dtypes/m/@tensors", detail=True)
                entry = next(
                    e
                    for e in fs.find("/tfjsfs-dtypes/m/@tensors", detail=True).values()
                    if e["tfjs"]["weight"] == name
                )
                got = np.load(fs.open(entry["name"]))
                np.testing.assert_array_equal(got, weights[name])
                assert got.dtype == weights[name].dtype and path
        finally:
            fsspec.filesystem("memory").rm("/tfjsfs-dtypes", recursive=True)


class TestBadInput:
    def _bundle_with_paths(self, tmp_path, paths):
        art = sample_artifacts(1)
        tfjsfs.save_model(art, str(tmp_path / "m"))
        doc = json.loads((tmp_path / "m" / "model.json").read_text())
        doc["weightsManifest"][0]["paths"] = paths
        (tmp_path / "m" / "model.json").write_text(json.dumps(doc))
        return art

    @pytest.mark.parametrize("bad", ["../outside.bin", "http://203.0.113.9/x.bin", "/etc/x.bin"])
    def test_shard_outside_the_folder_is_refused(self, tmp_path, bad, http_server):
        self._bundle_with_paths(tmp_path, [bad])
        server = http_server(tmp_path)
        for url in (f"tfjs+file://{tmp_path}/m", f"tfjs+http://{server.url[7:]}/m"):
            fs, path = fsspec.core.url_to_fs(url)
            with netguard.expect_refusals() as refused:
                with pytest.raises(UnsafePathError, match="allow_outside"):
                    fs.cat_file(path + "/@tensors/steps.npy")
                info = fs.info(path)
            assert refused == []  # nothing was even attempted
            assert info["type"] == "directory" and "allow_outside" in info["tfjs"]["error"]

    def test_missing_shard_and_missing_model(self, tmp_path):
        self._bundle_with_paths(tmp_path, ["gone.bin"])
        fs = fsspec.filesystem("tfjs+file")
        with pytest.raises(FileNotFoundError, match=r"gone\.bin"):
            fs.cat_file(f"{tmp_path}/m/@tensors/steps.npy")
        with pytest.raises(ModelNotFoundError):
            fs.ls(f"{tmp_path}/@tensors")
        with pytest.raises(ModelNotFoundError):
            fs.load_model(str(tmp_path))

    def test_bundle_changed_while_a_file_is_open(self):
        tfjsfs.save_model(sample_artifacts(1), "memory://tfjsfs-open/m")
        try:
            fs = fsspec.filesystem("tfjs+memory")
            f = fs.open("/tfjsfs-open/m/@tensors/dense/kernel.npy", cache_type="none")
            header = f.read(10)
            assert header.startswith(b"\x93NUMPY")
            tfjsfs.save_model(sample_artifacts(9), "memory://tfjsfs-open/m", overwrite=True)
            with pytest.raises(WeightDataError, match="reopen"):
                f.read()
            fresh = np.load(fs.open("/tfjsfs-open/m/@tensors/dense/kernel.npy"))
            np.testing.assert_array_equal(fresh, sample_artifacts(9).weights["dense/kernel"])
            with pytest.raises(ReadOnlyError):
                fs.rm("/tfjsfs-open/m/@tensors/dense/kernel.npy")
        finally:
            fsspec.filesystem("memory").rm("/tfjsfs-open", recursive=True)
