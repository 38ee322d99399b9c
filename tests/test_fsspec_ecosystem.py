"""tfjs URLs in the rest of the ecosystem: universal-pathlib, pandas, dask."""

from __future__ import annotations

import io
import json
import warnings

import dask
import dask.bytes
import fsspec
import numpy as np
import pandas as pd
import pytest
from tfjs_samples import sample_artifacts
from upath import UPath

import tfjsfs
from tfjsfs.fs.core import TFJSFileSystem
from tfjsfs.fs.upath import TFJSPath


@pytest.fixture
def memory_root():
    root = "/tfjsfs-eco"
    tfjsfs.save_model(sample_artifacts(1), f"memory://{root}/models/m")
    mem = fsspec.filesystem("memory")
    mem.pipe(f"{root}/data/a.json", json.dumps({"x": [1, 2], "y": ["p", "q"]}).encode())
    mem.pipe(f"{root}/data/p1.csv", b"a,b\n1,2\n")
    mem.pipe(f"{root}/data/p2.csv", b"a,b\n3,4\n")
    yield root
    mem.rm(root, recursive=True)


class TestUPath:
    def test_memory_path(self, memory_root):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "falling back to default implementation"
            model = UPath(f"tfjs+memory://{memory_root}/models/m")
        assert isinstance(model, TFJSPath) and model.protocol == "tfjs+memory"
        assert isinstance(model.fs, TFJSFileSystem) and model.fs.target_protocol == "memory"
        assert sorted(p.name for p in model.iterdir()) == ["group1-shard1of1.bin", "model.json"]
        assert json.loads((model / "model.json").read_text())["format"] == "layers-model"
        kernel = model / "@tensors" / "dense" / "kernel.npy"
        with kernel.open("rb") as f:
            got = np.load(f)
        np.testing.assert_array_equal(got, sample_artifacts(1).weights["dense/kernel"])
        assert model.stat().st_size == 0 and model.is_dir()
        assert model.fs.info(model.path)["tfjs"]["weights"] == 6
        assert str(UPath(str(model))) == str(model)

    def test_s3_path_with_options(self, s3_server):
        bucket = s3_server.new_bucket()
        try:
            tfjsfs.save_model(
                sample_artifacts(2), f"s3://{bucket}/m", storage_options=s3_server.storage_options
            )
            model = UPath(f"tfjs+s3://{bucket}/m", **s3_server.storage_options)
            assert type(model.fs.fs).__name__ == "S3FileSystem"
            steps = model.joinpath("@tensors", "steps.npy").read_bytes()
            want = sample_artifacts(2).weights["steps"]
            np.testing.assert_array_equal(np.load(io.BytesIO(steps)), want)
            assert (model / "model.json").exists() and not (model / "nope.json").exists()
        finally:
            s3_server.remove_bucket(bucket)


class TestPandasAndDask:
    def test_pandas_read_json(self, memory_root):
        df = pd.read_json(f"tfjs+memory://{memory_root}/data/a.json")
        assert list(df["x"]) == [1, 2] and list(df["y"]) == ["p", "q"]

    def test_dask_read_bytes_local_threads(self, memory_root):
        _, blocks = dask.bytes.read_bytes(f"tfjs+memory://{memory_root}/data/*.csv")
        got = dask.compute(*[b for file_blocks in blocks for b in file_blocks])
        assert sorted(got) == [b"a,b\n1,2\n", b"a,b\n3,4\n"]

    def test_dask_processes_rebuild_the_filesystem(self, s3_server):
        """Worker processes unpickle the tfjs filesystem with its inner options."""
        bucket = s3_server.new_bucket()
        try:
            plain = s3_server.filesystem()
            plain.pipe(f"{bucket}/d/p1.csv", b"a\n1\n")
            plain.pipe(f"{bucket}/d/p2.csv", b"a\n2\n")
            _, blocks = dask.bytes.read_bytes(
                f"tfjs+s3://{bucket}/d/*.csv", **s3_server.storage_options
            )
            flat = [b for file_blocks in blocks for b in file_blocks]
            with dask.config.set({"multiprocessing.context": "fork"}):  # spawn: ~8 s more
                got = dask.compute(*flat, scheduler="processes", num_workers=1)
            assert sorted(got) == [b"a\n1\n", b"a\n2\n"]
        finally:
            s3_server.remove_bucket(bucket)
