"""Saving and loading bundles on the local disk (and memory): layouts, errors, ordering."""

from __future__ import annotations

import json
import os

import fsspec
import numpy as np
import pytest
from converter import load_converter
from fsspec.implementations.memory import MemoryFileSystem
from quantcheck import assert_dequantized

import tfjsfs
from tfjsfs import ModelArtifacts
from tfjsfs.errors import (
    BundleExistsError,
    ManifestError,
    ModelNotFoundError,
    ShardMissingError,
    UnsafePathError,
    WeightDataError,
)

TOPOLOGY = {"class_name": "Sequential", "config": {"name": "m", "layers": []}}


def every_dtype_weights():
    rng = np.random.default_rng(0)
    return {
        "dense/kernel": rng.normal(size=(37, 11)).astype(np.float32),
        "dense/bias": rng.normal(size=11).astype(np.float32),
        "flag": np.array([True, False, True]),
        "odd/int": np.arange(-7, 6, dtype=np.int32),
        "c": (rng.normal(size=5) + 1j * rng.normal(size=5)).astype(np.complex64),
        "empty_strings": np.array([], dtype=object),
        "words": np.array([["alpha", ""], ["ß", "z" * 300]]),
        "scalar": np.float32(2.5),
        "zero": np.zeros((0, 3), np.float32),
        "after_strings": rng.normal(size=(4, 4)).astype(np.float32),
    }


def assert_same(loaded, original):
    assert list(loaded) == list(original)
    for name, value in original.items():
        expected = np.asarray(value)
        if expected.dtype.kind in "UO":
            expected = (
                np.vectorize(lambda s: s.encode() if isinstance(s, str) else s, otypes=[object])(
                    expected
                )
                if expected.size
                else expected
            )
        assert loaded[name].shape == expected.shape, name
        assert loaded[name].tolist() == expected.tolist(), name


@pytest.mark.parametrize("shard_size", [4_194_304, 100, 7, 1])
def test_round_trip_every_dtype_across_shard_sizes(tmp_path, shard_size):
    weights = every_dtype_weights()
    result = tfjsfs.save_model(
        ModelArtifacts.from_weights(TOPOLOGY, weights), tmp_path / "m", shard_size=shard_size
    )
    assert_same(tfjsfs.load_weights(tmp_path / "m"), weights)
    assert result.files[-1].endswith("model.json")
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    paths = doc["weightsManifest"][0]["paths"]
    sizes = [os.path.getsize(tmp_path / "m" / p) for p in paths]
    assert all(s == shard_size for s in sizes[:-1]) and 0 < sizes[-1] <= shard_size
    assert paths == [f"group1-shard{i + 1}of{len(paths)}.bin" for i in range(len(paths))]
    assert sum(sizes) == result.model_artifacts_info.weight_data_bytes


def test_multi_group_bundle_keeps_groups(tmp_path):
    weights = every_dtype_weights()
    groups = [
        ["dense/kernel", "dense/bias"],
        ["words", "after_strings", "flag"],
        list(weights)[2:],
    ]
    groups[2] = [n for n in weights if n not in groups[0] + groups[1]]
    art = ModelArtifacts.from_weights(TOPOLOGY, weights, groups=groups)
    tfjsfs.save_model(art, tmp_path / "m", shard_size=64)
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    assert [[w["name"] for w in g["weights"]] for g in doc["weightsManifest"]] == groups
    assert doc["weightsManifest"][1]["paths"][0].startswith("group2-shard1of")
    loaded = tfjsfs.load_model(tmp_path / "m")
    assert loaded.group_lengths == (2, 3, 5)
    assert_same({k: loaded.weights[k] for k in weights}, weights)


@pytest.mark.parametrize("qdtype", ["uint8", "uint16", "float16"])
def test_quantized_round_trip(tmp_path, qdtype):
    weights = every_dtype_weights()
    tfjsfs.save_model(
        ModelArtifacts.from_weights(TOPOLOGY, weights),
        tmp_path / "m",
        quantize={qdtype: "dense/*"},
        shard_size=50,
    )
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    quantized = {w["name"]: w.get("quantization") for w in doc["weightsManifest"][0]["weights"]}
    assert quantized["dense/kernel"]["dtype"] == qdtype
    assert quantized["dense/kernel"]["original_dtype"] == "float32"
    assert quantized["after_strings"] is None
    loaded = tfjsfs.load_weights(tmp_path / "m")
    assert_dequantized(loaded["dense/kernel"], weights["dense/kernel"], qdtype)
    assert np.array_equal(loaded["after_strings"], weights["after_strings"])


@pytest.mark.parametrize(
    ("layout", "json_name", "paths"),
    [
        ("tfjs-node", "model.json", ["weights.bin"]),
        ("downloads", "my-model.json", ["./my-model.weights.bin"]),
        ("upload", "model.json", ["./model.weights.bin"]),
    ],
)
def test_single_file_layouts(tmp_path, layout, json_name, paths):
    weights = every_dtype_weights()
    tfjsfs.save_model(
        ModelArtifacts.from_weights(TOPOLOGY, weights),
        tmp_path / "m",
        layout=layout,
        name="my-model",
    )
    assert sorted(os.listdir(tmp_path / "m")) == sorted([json_name, paths[0].removeprefix("./")])
    doc = json.loads((tmp_path / "m" / json_name).read_text())
    assert doc["weightsManifest"][0]["paths"] == paths
    assert_same(tfjsfs.load_weights(tmp_path / "m"), weights)
    assert_same(tfjsfs.load_weights(tmp_path / "m" / json_name), weights)
    assert_same(tfjsfs.load_weights(f"file://{tmp_path}/m/{json_name}"), weights)


def test_legacy_shard_names_without_bin(tmp_path):
    weights = {"w": np.arange(10, dtype=np.float32)}
    tfjsfs.save_model(
        ModelArtifacts.from_weights(TOPOLOGY, weights), tmp_path / "m", shard_size=16
    )
    folder = tmp_path / "m"
    doc = json.loads((folder / "model.json").read_text())
    for path in doc["weightsManifest"][0]["paths"]:
        os.rename(folder / path, folder / path.removesuffix(".bin"))
    doc["weightsManifest"][0]["paths"] = [
        p.removesuffix(".bin") for p in doc["weightsManifest"][0]["paths"]
    ]
    (folder / "model.json").write_text(json.dumps(doc))
    assert tfjsfs.load_weights(folder)["w"].tolist() == list(range(10))


def test_memory_store_round_trip():
    weights = every_dtype_weights()
    tfjsfs.save_model(
        ModelArtifacts.from_weights(TOPOLOGY, weights), "memory://round/trip", shard_size=33
    )
    assert_same(tfjsfs.load_weights("memory://round/trip"), weights)
    assert tfjsfs.load_weights("memory://round/trip", names=["flag"])["flag"].tolist() == [
        True,
        False,
        True,
    ]


def test_metadata_survives_a_round_trip(tmp_path):
    art = ModelArtifacts.from_weights(
        TOPOLOGY,
        {"w": np.ones(2, np.float32)},
        format="graph-model",
        generated_by="unit test",
        converted_by="TensorFlow.js Converter v4.22.0",
        signature={"inputs": {}},
        user_defined_metadata={"a": [1, 2]},
        model_initializer={"node": []},
        initializer_signature={"outputs": {}},
        training_config={"loss": "mse"},
    )
    tfjsfs.save_model(art, tmp_path / "m")
    back = tfjsfs.load_model(tmp_path / "m")
    for field in (
        "model_topology",
        "format",
        "generated_by",
        "converted_by",
        "signature",
        "user_defined_metadata",
        "model_initializer",
        "initializer_signature",
        "training_config",
    ):
        assert getattr(back, field) == getattr(art, field), field


# ------------------------------------------------------------------ bad input


def saved(tmp_path, shard_size=16):
    weights = {"a": np.arange(6, dtype=np.float32), "b": np.arange(5, dtype=np.int32)}
    tfjsfs.save_model(
        ModelArtifacts.from_weights(TOPOLOGY, weights), tmp_path / "m", shard_size=shard_size
    )
    return tmp_path / "m"


def test_truncated_shard_names_shard_weight_and_bytes(tmp_path):
    folder = saved(tmp_path)
    with open(folder / "group1-shard3of3.bin", "r+b") as f:
        f.truncate(3)
    with pytest.raises(WeightDataError) as info:
        tfjsfs.load_model(folder)
    text = str(info.value)
    assert "'b'" in text and "group1-shard3of3.bin (3 bytes)" in text
    assert "expected 44 bytes" in text and "short by 9" in text and "model.json" in text


def test_missing_shard(tmp_path):
    folder = saved(tmp_path)
    os.remove(folder / "group1-shard2of3.bin")
    with pytest.raises(ShardMissingError, match=r"group1-shard2of3\.bin does not exist") as info:
        tfjsfs.load_model(folder)
    assert isinstance(info.value, FileNotFoundError)


def test_trailing_bytes_are_tolerated_and_reported(tmp_path):
    folder = saved(tmp_path)
    with open(folder / "group1-shard3of3.bin", "ab") as f:
        f.write(b"\x00" * 5)
    art = tfjsfs.load_model(folder)
    assert art.weights["b"].tolist() == [0, 1, 2, 3, 4]
    assert len(art.problems) == 1 and "5 trailing bytes" in art.problems[0]


@pytest.mark.parametrize("bad", ["../outside.bin", "/etc/hostname", "http://192.0.2.1/x.bin"])
def test_escaping_shard_paths_are_refused(tmp_path, bad):
    folder = saved(tmp_path)
    doc = json.loads((folder / "model.json").read_text())
    doc["weightsManifest"][0]["paths"][0] = bad
    (folder / "model.json").write_text(json.dumps(doc))
    with pytest.raises(UnsafePathError, match="allow_outside"):
        tfjsfs.load_model(folder)


def test_outside_paths_load_when_allowed(tmp_path):
    folder = saved(tmp_path)
    doc = json.loads((folder / "model.json").read_text())
    os.rename(folder / "group1-shard1of3.bin", tmp_path / "shared.bin")
    doc["weightsManifest"][0]["paths"][0] = "../shared.bin"
    (folder / "model.json").write_text(json.dumps(doc))
    weights = tfjsfs.load_weights(folder, allow_outside=True)
    assert weights["a"].tolist() == list(range(6))


def test_missing_model_and_bad_json(tmp_path):
    with pytest.raises(ModelNotFoundError):
        tfjsfs.load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"no model\.json"):
        tfjsfs.load_model(tmp_path / "empty")
    (tmp_path / "empty" / "model.json").write_text("{oops")
    with pytest.raises(ManifestError, match=r"model\.json: not valid JSON"):
        tfjsfs.load_model(tmp_path / "empty")


# ------------------------------------------------------------ write ordering


class FailingMemoryFileSystem(MemoryFileSystem):
    """A real in-memory store whose writes fail after a set number of files."""

    protocol = "failingmem"
    root_marker = "/"

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.removeprefix("failingmem://"))

    budget = 2
    order: list[str] = []

    def pipe_file(self, path, value, mode="overwrite", **kwargs):
        if type(self).budget <= 0:
            raise OSError(f"simulated write failure at {path}")
        type(self).budget -= 1
        type(self).order.append(self._strip_protocol(path))
        return super().pipe_file(path, value, mode=mode, **kwargs)


@pytest.fixture
def failing_store():
    fsspec.register_implementation("failingmem", FailingMemoryFileSystem, clobber=True)
    FailingMemoryFileSystem.order = []
    FailingMemoryFileSystem.store = {}
    FailingMemoryFileSystem.pseudo_dirs = [""]
    yield FailingMemoryFileSystem


def test_interrupted_save_leaves_no_model_json(failing_store):
    weights = {"w": np.arange(64, dtype=np.float32)}
    failing_store.budget = 2
    with pytest.raises(OSError, match="simulated write failure"):
        tfjsfs.save_model(
            ModelArtifacts.from_weights(TOPOLOGY, weights), "failingmem://b/m", shard_size=32
        )
    assert not any(p.endswith("model.json") for p in failing_store.store)
    assert not [p for p in failing_store.store if p.startswith("/b/m/")]  # written shards removed
    failing_store.budget = 100
    tfjsfs.save_model(
        ModelArtifacts.from_weights(TOPOLOGY, weights), "failingmem://b/m", shard_size=32
    )
    assert failing_store.order[-1] == "/b/m/model.json"
    assert all("shard" in p for p in failing_store.order[2:-1])


def test_save_is_create_only_unless_overwriting(tmp_path):
    saved(tmp_path)
    with pytest.raises(BundleExistsError):
        saved(tmp_path)
    assert isinstance(BundleExistsError("x"), FileExistsError)


def test_overwrite_never_mixes_old_and_new_shards(tmp_path):
    folder = saved(tmp_path)
    old_doc = json.loads((folder / "model.json").read_text())
    new = {"a": np.full(6, 9, np.float32), "b": np.full(5, 9, np.int32)}
    tfjsfs.save_model(
        ModelArtifacts.from_weights(TOPOLOGY, new), folder, shard_size=16, overwrite=True
    )
    new_doc = json.loads((folder / "model.json").read_text())
    old_paths = set(old_doc["weightsManifest"][0]["paths"])
    new_paths = set(new_doc["weightsManifest"][0]["paths"])
    assert (
        not old_paths & new_paths
    )  # fresh names: a reader of the old model.json never gets new bytes
    assert sorted(os.listdir(folder)) == sorted([*new_paths, "model.json"])  # old shards removed
    assert tfjsfs.load_weights(folder)["a"].tolist() == [9.0] * 6
    # a third version never reuses a name of the first or the second
    tfjsfs.save_model(
        ModelArtifacts.from_weights(TOPOLOGY, new), folder, shard_size=16, overwrite=True
    )
    third = json.loads((folder / "model.json").read_text())["weightsManifest"][0]["paths"]
    assert not set(third) & (old_paths | new_paths)
    assert [p.split("-")[1] for p in third] == ["shard1of3", "shard2of3", "shard3of3"]


# ------------------------------------------------------ the Python converter


def test_converter_reads_what_we_write_including_quantized(tmp_path):
    read_weights, _, _ = load_converter()
    weights = {k: v for k, v in every_dtype_weights().items() if k != "empty_strings"}
    for quantize in (None, {"uint8": "dense/*", "float16": "after_strings"}):
        folder = tmp_path / str(quantize is None)
        tfjsfs.save_model(
            ModelArtifacts.from_weights(TOPOLOGY, weights),
            folder,
            shard_size=40,
            quantize=quantize,
        )
        manifest = json.loads((folder / "model.json").read_text())["weightsManifest"]
        theirs = {
            e["name"]: e["data"]
            for e in read_weights.read_weights(manifest, str(folder), flatten=True)
        }
        ours = tfjsfs.load_weights(folder)
        assert list(theirs) == list(ours)
        for name in ours:
            assert theirs[name].tolist() == ours[name].tolist(), name


def test_we_read_what_the_converter_writes_including_quantized(tmp_path):
    _, write_weights, _ = load_converter()
    weights = every_dtype_weights()
    groups = [
        [
            {"name": n, "data": np.asarray(v) if n != "words" else np.array(v, dtype=object)}
            for n, v in weights.items()
            if n != "empty_strings"
        ],
        [{"name": "g2", "data": np.arange(9, dtype=np.float32)}],
    ]
    manifest = write_weights.write_weights(
        groups,
        str(tmp_path),
        shard_size_bytes=64,
        write_manifest=False,
        quantization_dtype_map={"uint16": "dense/*", "float16": "g2"},
    )
    (tmp_path / "model.json").write_text(
        json.dumps({"modelTopology": None, "weightsManifest": manifest})
    )
    read_weights, _, _ = load_converter()
    theirs = {
        e["name"]: e["data"]
        for e in read_weights.read_weights(manifest, str(tmp_path), flatten=True)
    }
    ours = tfjsfs.load_weights(tmp_path)
    assert set(theirs) == set(ours)
    for name in ours:
        assert np.asarray(theirs[name]).tolist() == ours[name].tolist(), name
    names = [p for g in manifest for p in g["paths"]]
    assert names[0].startswith("group1-shard1of") and names[-1] == "group2-shard1of1.bin"


def test_empty_string_tensor_follows_tfjs_not_the_converter_reader(tmp_path):
    """The converter's reader expects 4 bytes for an empty string tensor (a bug):
    TF.js and the converter's writer use 0. tfjsfs follows TF.js."""
    read_weights, write_weights, _ = load_converter()
    group = [
        {"name": "empty", "data": np.array([], dtype=object)},
        {"name": "after", "data": np.arange(3, dtype=np.float32)},
    ]
    manifest = write_weights.write_weights([group], str(tmp_path), write_manifest=False)
    (tmp_path / "model.json").write_text(
        json.dumps({"modelTopology": None, "weightsManifest": manifest})
    )
    ours = tfjsfs.load_weights(tmp_path)
    assert ours["after"].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError):
        read_weights.read_weights(manifest, str(tmp_path))


def test_model_without_topology_writes_null_like_the_converter(tmp_path):
    art = ModelArtifacts.from_weights(None, {"w": np.ones(1, np.float32)})
    tfjsfs.save_model(art, tmp_path / "m")
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    assert doc["modelTopology"] is None and doc["convertedBy"] is None
    assert tfjsfs.load_model(tmp_path / "m").model_topology is None


class ReplacingMemoryFileSystem(MemoryFileSystem):
    """A real in-memory store where another writer replaces the bundle mid-load.

    The first shard read runs a complete overwriting ``save_model`` (new shards
    and model.json published, old shards deleted), as a concurrent writer would
    between our reading model.json and our reading the shards.
    """

    protocol = "replacingmem"
    root_marker = "/"
    replace_with = None  # (url, artifacts)

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.removeprefix("replacingmem://"))

    def cat_file(self, path, start=None, end=None, **kwargs):
        pending = type(self).replace_with
        if pending is not None and "shard" in path:
            type(self).replace_with = None
            url, artifacts = pending
            tfjsfs.save_model(artifacts, url, shard_size=16, overwrite=True)
        return super().cat_file(path, start, end, **kwargs)


def test_a_load_racing_a_replacement_reads_the_new_version_not_a_mix():
    fsspec.register_implementation("replacingmem", ReplacingMemoryFileSystem, clobber=True)
    old = {"a": np.zeros(6, np.float32), "b": np.zeros(5, np.int32)}
    new = {"a": np.full(6, 7, np.float32), "b": np.full(5, 7, np.int32)}
    tfjsfs.save_model(
        ModelArtifacts.from_weights(TOPOLOGY, old), "replacingmem://race/m", shard_size=16
    )
    ReplacingMemoryFileSystem.replace_with = (
        "replacingmem://race/m",
        ModelArtifacts.from_weights(TOPOLOGY, new),
    )
    loaded = tfjsfs.load_weights("replacingmem://race/m")
    assert ReplacingMemoryFileSystem.replace_with is None  # the replacement did happen mid-load
    assert loaded["a"].tolist() == [7.0] * 6 and loaded["b"].tolist() == [7] * 5
