"""Names and URLs: entry points, tfjs:: chains, register(), inner options,
unstrip_protocol, pickling, async use, and URLs with no inner protocol."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap

import fsspec
import numpy as np
import pytest
from fsspec.implementations.http import HTTPFileSystem
from fsspec.implementations.local import LocalFileSystem
from fsspec.registry import known_implementations
from tfjs_samples import sample_artifacts

import tfjsfs
from tfjsfs.errors import MissingProtocolError
from tfjsfs.fs.core import TFJSFileSystem
from tfjsfs.fs.registry import alias_name, alias_protocol


@pytest.fixture
def memory_model():
    root = "/tfjsfs-urls"
    tfjsfs.save_model(sample_artifacts(1), f"memory://{root}/m")
    yield root
    fsspec.filesystem("memory").rm(root, recursive=True)


class TestNoInnerProtocol:
    @pytest.mark.parametrize(
        "make",
        [
            lambda: fsspec.filesystem("tfjs"),
            lambda: fsspec.core.url_to_fs("tfjs://bucket/model"),
            lambda: fsspec.open("tfjs://bucket/model/model.json").open(),
            lambda: tfjsfs.load_model("tfjs://bucket/model"),
            lambda: TFJSFileSystem(target_protocol="tfjs+s3"),
        ],
    )
    def test_is_an_error_never_the_local_disk(self, make, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        (tmp_path / "bucket" / "model").mkdir(parents=True)
        (tmp_path / "bucket" / "model" / "model.json").write_text("{}")
        with pytest.raises(MissingProtocolError, match="inner protocol"):
            make()

    def test_unknown_inner_protocol(self):
        with pytest.raises(MissingProtocolError, match="nosuchproto"):
            fsspec.filesystem("tfjs", target_protocol="nosuchproto")


class TestInnerBackends:
    def test_names_pick_their_backend(self, s3_server):
        s3 = fsspec.filesystem("tfjs+s3", **s3_server.storage_options)
        assert type(s3.fs).__name__ == "S3FileSystem"
        assert s3.fs.client_kwargs.get("endpoint_url") == s3_server.endpoint_url or (
            s3.fs.endpoint_url == s3_server.endpoint_url
        )
        fs, path = fsspec.core.url_to_fs("tfjs+gcs://bucket/m", token="anon")
        assert type(fs.fs).__name__ == "GCSFileSystem" and path == "bucket/m"
        assert isinstance(fsspec.filesystem("tfjs+https").fs, HTTPFileSystem)
        assert isinstance(fsspec.filesystem("tfjs+file").fs.sync_fs, LocalFileSystem)

    def test_chained_form_with_inner_options(self, memory_model):
        url = f"tfjs::memory://{memory_model}/m/@tensors/steps.npy"
        with fsspec.open(url) as f:
            got = np.load(f)
        np.testing.assert_array_equal(got, sample_artifacts(1).weights["steps"])
        fs, path = fsspec.core.url_to_fs(
            "tfjs::file:///tmp/x", file={"auto_mkdir": True}, mark_models=False
        )
        assert fs.fs.sync_fs.auto_mkdir is True and fs.mark_models is False
        assert path == "/tmp/x"
        assert "fo" not in fs.storage_options  # one instance serves every path

    def test_outer_chain(self, memory_model):
        url = f"simplecache::tfjs+memory://{memory_model}/m/model.json"
        with fsspec.open(url) as f:
            assert json.load(f)["format"] == "layers-model"

    def test_config_under_tfjs_applies(self, monkeypatch):
        monkeypatch.setitem(fsspec.config.conf, "tfjs", {"mark_models": False})
        assert fsspec.filesystem("tfjs+memory", skip_instance_cache=True).mark_models is False
        monkeypatch.setitem(fsspec.config.conf, "tfjs+file", {"mark_models": False})
        monkeypatch.delitem(fsspec.config.conf, "tfjs")
        assert fsspec.filesystem("tfjs+memory", skip_instance_cache=True).mark_models is True

    def test_fs_argument_and_target_options_exclude_each_other(self):
        inner = fsspec.filesystem("memory")
        assert TFJSFileSystem(fs=inner).target_protocol == "memory"
        with pytest.raises(ValueError, match="either fs="):
            TFJSFileSystem(fs=inner, target_options={"x": 1})


class TestNames:
    def test_unstrip_protocol_keeps_https(self):
        fs = fsspec.filesystem("tfjs+https")
        assert fs.unstrip_protocol("127.0.0.1:8443/m/model.json") == (
            "tfjs+https://127.0.0.1:8443/m/model.json"
        )
        assert fs.inner_path("tfjs+https://127.0.0.1:8443/m") == "https://127.0.0.1:8443/m"
        chained = fsspec.core.url_to_fs("tfjs::https://127.0.0.1:8443/m")
        assert chained[0].unstrip_protocol(chained[1]) == "tfjs+https://127.0.0.1:8443/m"

    def test_unstrip_protocol_memory_and_local(self, tmp_path):
        mem = fsspec.filesystem("tfjs+memory")
        for url in ("tfjs+memory://b/m", "tfjs+memory:///b/m"):
            fs, path = fsspec.core.url_to_fs(url)
            assert fs.unstrip_protocol(path) == "tfjs+memory:///b/m"
        assert mem._strip_protocol("tfjs+memory://b/m/") == "/b/m"
        local = fsspec.filesystem("tfjs+file")
        assert local.unstrip_protocol(str(tmp_path)) == f"tfjs+file://{tmp_path}"

    def test_unregistered_inner_unstrips_to_a_chain(self):
        fs = fsspec.filesystem(
            "tfjs",
            target_protocol="dir",
            target_options={"target_protocol": "memory", "path": "/base"},
        )
        assert fs.unstrip_protocol("x/y").startswith("tfjs::dir://")

    def test_alias_names_round_trip(self):
        for proto in ("s3", "arrow_hdfs", "webdav+https", "a-b.c"):
            assert alias_protocol(alias_name(proto)) == proto
        assert alias_protocol("TFJSFileSystem") is None

    def test_glob_prefix_hint_is_ignored(self, memory_model):
        fs = fsspec.filesystem("tfjs+memory")
        full = fsspec.asyn.sync(fs.loop, fs._ls, f"{memory_model}/m", detail=False)
        hinted = fsspec.asyn.sync(fs.loop, fs._ls, f"{memory_model}/m", False, prefix="model")
        assert hinted == full and len(full) == 2  # a shard too, though not "model*"
        assert fs.glob(f"{memory_model}/*/model.json") == [f"{memory_model}/m/model.json"]
        detail = fs.glob(f"{memory_model}/m/*", detail=True)
        assert sorted(detail) == full and detail[full[-1]]["type"] == "file"
        files = fs.glob(f"{memory_model}/**", withdirs=False)
        assert files == full and not any("@tensors" in p for p in files)


class TestRegister:
    def test_register_adds_string_entries(self):
        fsspec.register_implementation(
            "tfjstestmem", "fsspec.implementations.memory.MemoryFileSystem", clobber=True
        )
        try:
            assert tfjsfs.register(["tfjstestmem"]) == ["tfjs+tfjstestmem"]
            known = known_implementations["tfjs+tfjstestmem"]
            assert known["class"] == "tfjsfs.fs.core.TFJSFileSystem_tfjstestmem"
            assert tfjsfs.register(["tfjstestmem"]) == []  # already there: kept
            tfjsfs.save_model(sample_artifacts(2), "memory://tfjsfs-reg/m")
            url = "simplecache::tfjs+tfjstestmem://tfjsfs-reg/m/model.json"  # needs P3
            with fsspec.open(url) as f:
                assert json.load(f)["weightsManifest"]
            fs = fsspec.filesystem("tfjs+tfjstestmem")
            assert fs.unstrip_protocol("/tfjsfs-reg/m") == "tfjs+tfjstestmem:///tfjsfs-reg/m"
            assert pickle.loads(pickle.dumps(fs)).target_protocol == "tfjstestmem"
        finally:
            known_implementations.pop("tfjs+tfjstestmem", None)
            known_implementations.pop("tfjstestmem", None)

            if fsspec.filesystem("memory").exists("/tfjsfs-reg"):
                fsspec.filesystem("memory").rm("/tfjsfs-reg", recursive=True)

    def test_register_everything_keeps_entry_points(self):
        before = dict(known_implementations)
        try:
            added = tfjsfs.register()
            assert "tfjs+s3" not in added and "tfjs+memory" not in added
            assert "tfjs+ftp" in added and "tfjs+tfjs" not in added
            assert not any(n.startswith("tfjs+tfjs+") for n in added)
            assert known_implementations["tfjs+s3"] == before["tfjs+s3"]
        finally:
            for name in list(known_implementations):
                if name not in before:
                    del known_implementations[name]


class TestPickleAndAsync:
    def test_pickles_with_inner_options(self):
        fs = TFJSFileSystem(target_protocol="file", target_options={"auto_mkdir": True})
        clone = pickle.loads(pickle.dumps(fs))
        assert clone.target_protocol == "file" and clone.fs.sync_fs.auto_mkdir is True
        again = fsspec.AbstractFileSystem.from_json(fs.to_json())
        assert again.target_protocol == "file"

    async def test_asynchronous_instance(self, memory_model):
        fs = TFJSFileSystem(target_protocol="memory", asynchronous=True, skip_instance_cache=True)
        assert fs.fs.asynchronous
        names = await fs._ls(f"{memory_model}/m/@tensors", detail=False)
        assert f"{memory_model}/m/@tensors/steps.npy" in names
        data = await fs._cat_file(f"{memory_model}/m/@tensors/steps.npy")
        want = sample_artifacts(1).weights["steps"]
        np.testing.assert_array_equal(np.load(__import__("io").BytesIO(data)), want)
        got = await fs._load_weights(f"{memory_model}/m", ["steps"])
        np.testing.assert_array_equal(got["steps"], want)


def test_fresh_interpreter_opens_without_importing(s3_server):
    """Entry points alone make tfjs+s3 work: no ``import tfjsfs`` anywhere."""
    bucket = s3_server.new_bucket()
    try:
        tfjsfs.save_model(
            sample_artifacts(3), f"s3://{bucket}/m", storage_options=s3_server.storage_options
        )
        script = textwrap.dedent(
            f"""
            import json, sys
            import fsspec
            assert "tfjsfs" not in sys.modules
            opts = {s3_server.storage_options!r}
            with fsspec.open("tfjs+s3://{bucket}/m/model.json", **opts) as f:
                doc = json.load(f)
            fs = fsspec.filesystem("tfjs+s3", **opts)
            url_fs, path = fsspec.core.url_to_fs("tfjs+s3://{bucket}/m", **opts)
            print(json.dumps({{
                "format": doc["format"],
                "inner": type(fs.fs).__name__,
                "url_inner": type(url_fs.fs).__name__,
                "path": path,
                "unstrip": url_fs.unstrip_protocol(path),
                "model": url_fs.info(path)["tfjs"]["role"],
            }}))
            """
        )
        env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert got == {
            "format": "layers-model",
            "inner": "S3FileSystem",
            "url_inner": "S3FileSystem",
            "path": f"{bucket}/m",
            "unstrip": f"tfjs+s3://{bucket}/m",
            "model": "model",
        }
    finally:
        s3_server.remove_bucket(bucket)
