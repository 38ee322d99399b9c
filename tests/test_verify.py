"""Deep bundle checks: every problem found, each naming its file and weight;
the TF.js-loadability rules cross-checked against real TF.js in Node."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from manage_support import TOPOLOGY, file_store, memory_store, sample_artifacts
from nodejs import NodeScriptError, requires_node, run_node, weights_by_name

import tfjsfs
from tfjsfs import ModelArtifacts
from tfjsfs.model.verify import Problem, check_manifest, errors, verify_model

SHARD = 300


@pytest.fixture
def store():
    s = memory_store()
    yield s
    if s.fs.exists(s.root):
        s.fs.rm(s.root, recursive=True)


def _doc(store, *parts):
    return json.loads(store.fs.cat_file(store.inner(*parts, "model.json")))


def _put_doc(store, doc, *parts):
    store.fs.pipe_file(store.inner(*parts, "model.json"), json.dumps(doc).encode())


def test_sound_bundles_have_no_problems(store, tmp_path):
    store.save(sample_artifacts(), "m", shard_size=SHARD)
    store.save(sample_artifacts(quantize="uint8"), "q")
    store.save(sample_artifacts(), "d", layout="downloads", name="x")
    assert verify_model(store.url("m"), values=True) == []
    assert verify_model(store.url("q"), values=True) == []
    assert verify_model(store.url("d", "x.json"), values=True) == []
    local = file_store(tmp_path / "f")
    local.save(sample_artifacts(), "m", shard_size=7)
    assert verify_model(local.url("m"), values=True) == []


def test_missing_shard_names_file_and_weights(store):
    store.save(sample_artifacts(), "m", shard_size=SHARD)
    doc = _doc(store, "m")
    victim = doc["weightsManifest"][0]["paths"][1]
    store.fs.rm_file(store.inner("m", victim))
    (problem,) = verify_model(store.url("m"))
    assert problem.level == "error"
    assert problem.file == store.inner("m", victim)
    assert "missing" in problem.message
    # shard 2 of group 1 (300 bytes each) holds the kernel's bytes 300..599
    assert problem.weight == "dense/kernel"


def test_short_and_long_groups(store):
    store.save(sample_artifacts(), "m", shard_size=SHARD)
    doc = _doc(store, "m")
    first, last = doc["weightsManifest"][0]["paths"][-1], doc["weightsManifest"][1]["paths"][-1]
    data = store.fs.cat_file(store.inner("m", first))

    store.fs.pipe_file(store.inner("m", first), data[:-5])
    (problem,) = verify_model(store.url("m"))
    assert problem.weight == "dense/bias"
    assert "short by 5" in problem.message and problem.file.endswith("model.json")

    store.fs.pipe_file(store.inner("m", first), data + b"xyz")
    (problem,) = verify_model(store.url("m"))
    assert problem.level == "error" and problem.file.endswith(first)
    assert "3 trailing bytes" in problem.message and "misread" in problem.message
    assert problem.weight == doc["weightsManifest"][1]["weights"][0]["name"]

    store.fs.pipe_file(store.inner("m", first), data)
    tail = store.fs.cat_file(store.inner("m", last))
    store.fs.pipe_file(store.inner("m", last), tail + b"\0\0")
    (problem,) = verify_model(store.url("m"))
    assert problem.level == "warning" and "2 trailing bytes" in problem.message
    assert errors(verify_model(store.url("m"))) == []


def test_corrupt_string_lengths_are_found(store):
    art = ModelArtifacts.from_weights(TOPOLOGY, {"words": np.array(["ab", "cd"])})
    store.save(art, "m")
    (path,) = _doc(store, "m")["weightsManifest"][0]["paths"]
    data = bytearray(store.fs.cat_file(store.inner("m", path)))
    data[0] = 200  # first element claims 200 bytes
    store.fs.pipe_file(store.inner("m", path), bytes(data))
    (problem,) = verify_model(store.url("m"))
    assert problem.weight == "words" and "past the end" in problem.message


def test_non_finite_values_only_when_asked(store):
    kernel = np.ones((4, 5), np.float32)
    kernel[1, 2], kernel[3, 0] = np.nan, -np.inf
    art = ModelArtifacts.from_weights(TOPOLOGY, {"k": kernel, "n": np.arange(3, dtype=np.int32)})
    store.save(art, "m")
    assert verify_model(store.url("m")) == []
    (problem,) = verify_model(store.url("m"), values=True)
    assert problem.weight == "k"
    assert "2 of 20 values are not finite (first at index [1, 2])" in problem.message


def test_manifest_problems_are_all_reported():
    doc = {
        "modelTopology": {},
        "format": "layers-model",
        "weightsManifest": [
            {
                "paths": ["../escape.bin", "ok.bin", "ok.bin"],
                "weights": [
                    {"name": "u8", "shape": [2], "dtype": "uint8"},
                    {
                        "name": "f16int",
                        "shape": [2],
                        "dtype": "int32",
                        "quantization": {"dtype": "float16"},
                    },
                    {
                        "name": "nominmax",
                        "shape": [2],
                        "dtype": "float32",
                        "quantization": {"dtype": "uint8"},
                    },
                    {
                        "name": "qbool",
                        "shape": [2],
                        "dtype": "bool",
                        "quantization": {"dtype": "uint8", "min": 0, "scale": 1},
                    },
                    {"name": "i64", "shape": [2], "dtype": "int64"},
                    {"name": "neg", "shape": [-1], "dtype": "float32"},
                    {"name": "u8", "shape": [1], "dtype": "float32"},
                ],
            },
            {"paths": [], "weights": [{"name": "orphan", "shape": [3], "dtype": "float32"}]},
        ],
    }
    problems = check_manifest(doc, "m/model.json")
    by_weight = {}
    for p in problems:
        assert isinstance(p, Problem) and p.file == "m/model.json"
        by_weight.setdefault(p.weight, []).append(p.message)
    assert "TF.js cannot load it" in by_weight["u8"][0]
    assert "duplicate weight name" in by_weight["u8"][1]
    assert "float16" in by_weight["f16int"][0] and "int32" in by_weight["f16int"][0]
    assert "'min' and 'scale'" in by_weight["nominmax"][0]
    assert "uint8 quantization for bool" in by_weight["qbool"][0]
    assert "unknown dtype 'int64'" in by_weight["i64"][0]
    assert "negative dimension" in by_weight["neg"][0]
    general = by_weight[None]
    assert any("escapes the model folder" in m for m in general)
    assert any("'ok.bin' is listed twice" in m for m in general)
    assert any("weightsManifest[1] has weights but no shard paths" in m for m in general)
    assert check_manifest({"weightsManifest": "x"}, "j")[0].message.startswith(
        "the 'modelTopology'"
    )
    assert check_manifest([], "j")[0].message == "model.json must be a JSON object, got list"
    outside = check_manifest(
        {"modelTopology": None, "weightsManifest": [{"paths": ["../w.bin"], "weights": []}]},
        "j",
        allow_outside=True,
    )
    assert [p.level for p in outside] == ["warning"]  # null topology only


def test_unreadable_and_missing_models(store):
    store.fs.pipe_file(store.inner("bad", "model.json"), b"[1, 2")
    (problem,) = verify_model(store.url("bad"))
    assert "not valid JSON" in problem.message
    (problem,) = verify_model(store.url("nothing"))
    assert "no model" in problem.message


def test_verify_over_http_and_s3(tmp_path, http_server, s3_server, s3_bucket):
    local = file_store(tmp_path / "site")
    local.save(sample_artifacts(), "m", shard_size=SHARD)
    server = http_server(tmp_path / "site")
    assert verify_model(server.url + "/m", values=True) == []
    doc = json.loads((tmp_path / "site" / "m" / "model.json").read_text())
    victim = doc["weightsManifest"][1]["paths"][0]
    (tmp_path / "site" / "m" / victim).unlink()
    (problem,) = verify_model(server.url + "/m")
    assert problem.file.endswith(victim) and "missing" in problem.message

    url = f"s3://{s3_bucket}/m"
    tfjsfs.save_model(
        sample_artifacts(), url, shard_size=SHARD, storage_options=s3_server.storage_options
    )
    assert verify_model(url, values=True, storage_options=s3_server.storage_options) == []


# ------------------------------------------------------- against real TF.js


def _tfjs_weights(server, path):
    return weights_by_name(run_node("tfjs_load_weights.js", server.url + path))


@requires_node
@pytest.mark.parametrize(
    "edit",
    ["unquantized_uint8", "float16_int32", "uint8_without_scale", "uint8_bool"],
)
def test_what_verify_rejects_tfjs_rejects(tmp_path, http_server, edit):
    local = file_store(tmp_path / "site")
    art = ModelArtifacts.from_weights(
        TOPOLOGY, {"a": np.arange(4, dtype=np.float32), "b": np.arange(4, dtype=np.int32)}
    )
    local.save(art, "m")
    server = http_server(tmp_path / "site")
    assert verify_model(local.url("m")) == []
    assert sorted(_tfjs_weights(server, "/m/model.json")) == ["a", "b"]  # sound: loads

    doc = json.loads((tmp_path / "site" / "m" / "model.json").read_text())
    a, b = doc["weightsManifest"][0]["weights"]
    if edit == "unquantized_uint8":
        b["dtype"] = "uint8"  # 4 int32 = 16 bytes; as uint8, 4 bytes: sizes still fit
        a["shape"] = [7]
    elif edit == "float16_int32":
        b["quantization"] = {"dtype": "float16"}
        b["shape"] = [8]
    elif edit == "uint8_without_scale":
        a["quantization"] = {"dtype": "uint8"}
        a["shape"] = [16]
    else:
        b["dtype"] = "bool"
        b["quantization"] = {"dtype": "uint8", "min": 0, "scale": 1}
        b["shape"] = [16]
    (tmp_path / "site" / "m" / "model.json").write_text(json.dumps(doc))
    problems = errors(verify_model(local.url("m")))
    assert problems and all(p.weight in ("a", "b") for p in problems)
    with pytest.raises(NodeScriptError):
        _tfjs_weights(server, "/m/model.json")


@requires_node
def test_trailing_bytes_in_an_early_group_make_tfjs_misread(tmp_path, http_server):
    local = file_store(tmp_path / "site")
    art = ModelArtifacts.from_weights(
        TOPOLOGY,
        {"a": np.arange(4, dtype=np.float32), "b": np.arange(10, 14, dtype=np.float32)},
        groups=[["a"], ["b"]],
    )
    local.save(art, "m")
    server = http_server(tmp_path / "site")
    assert _tfjs_weights(server, "/m/model.json")["b"].tolist() == [10, 11, 12, 13]
    shard = tmp_path / "site" / "m" / "group1-shard1of1.bin"
    shard.write_bytes(shard.read_bytes() + b"\0\0\0\0")
    (problem,) = verify_model(local.url("m"))
    assert problem.level == "error" and problem.weight == "b"
    # tfjsfs decodes per group and still reads b right; TF.js reads it shifted
    assert tfjsfs.load_weights(local.url("m"))["b"].tolist() == [10, 11, 12, 13]
    assert _tfjs_weights(server, "/m/model.json")["b"].tolist() != [10, 11, 12, 13]


# ------------------------------------------- non-finite values (issue 16)


def _tfjsfs(*args):
    """Run the ``tfjsfs`` command line; (exit status, stdout)."""
    proc = subprocess.run(
        [sys.executable, "-m", "tfjsfs", *map(str, args)], capture_output=True, text=True
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout


@pytest.fixture
def non_finite(tmp_path):
    """A graph model with a scalar -inf constant and a layers model with a half-NaN kernel."""
    root = tmp_path / "zoo"
    graph = ModelArtifacts.from_weights(
        {"node": [{"name": "nms/score_threshold", "op": "Const"}]},
        {
            "nms/score_threshold": np.array(-np.inf, np.float32),
            "conv/kernel": np.ones((3, 3), np.float32),
        },
        format="graph-model",
    )
    kernel = np.ones((8, 4), np.float32)
    kernel[::2] = np.nan
    layers = ModelArtifacts.from_weights(TOPOLOGY, {"dense/kernel": kernel})
    tfjsfs.save_model(graph, root / "graph")
    tfjsfs.save_model(layers, root / "layers")
    return root


def test_non_finite_values_warn_and_fail_only_when_strict(non_finite):
    root = non_finite
    (threshold,) = verify_model(root / "graph", values=True)
    assert threshold.level == "warning" and threshold.weight == "nms/score_threshold"
    assert "1 of 1 values are not finite (first at index [])" in threshold.message
    assert "scalar or tiny constant: usually by design" in threshold.message
    (nan,) = verify_model(root / "layers", values=True)
    assert nan.level == "warning" and nan.weight == "dense/kernel"
    assert "16 of 32 values are not finite (first at index [0, 0]); NaN" in nan.message
    assert errors([threshold, nan]) == []
    strict = verify_model(root / "graph", values=True, strict=True)
    assert [p.level for p in strict] == ["error"] and strict[0].message == threshold.message

    status, out = _tfjsfs("verify", "--values", root / "graph", root / "layers")
    assert status == 0, out
    assert out.splitlines()[0] == f"OK   {root / 'graph'}"
    assert "warning: " in out.splitlines()[1] and "tiny constant" in out.splitlines()[1]
    assert out.splitlines()[2] == f"OK   {root / 'layers'}"
    for target in ("graph", "layers"):
        status, out = _tfjsfs("verify", "--values", "--strict", root / target)
        assert (status, out.split()[0]) == (1, "FAIL"), out
    status, out = _tfjsfs("verify", "--values", "--strict", "--json", "-r", root)
    assert status == 1 and [r["ok"] for r in json.loads(out)] == [False, False]


def test_bulk_and_cli_agree_on_what_fails(non_finite):
    pytest.importorskip("pandas")
    from tfjsfs import bulk

    root = str(non_finite)
    for strict in (False, True):
        checked = bulk.verify_all(root, strict=strict)
        scanned = bulk.scan(root, values=True, strict=strict)
        status, out = _tfjsfs("verify", "-r", "--values", "--json", *["--strict"] * strict, root)
        cli = {r["url"]: r["ok"] for r in json.loads(out)}
        assert status == int(strict)
        assert dict(zip(checked.url, checked.ok, strict=True)) == cli
        assert dict(zip(scanned.url, scanned.ok, strict=True)) == cli
        assert set(cli.values()) == {not strict}
        messages = [*checked.warnings.sum(), *checked.errors.sum()]
        assert len(messages) == 2 and all("not finite" in m for m in messages)
        assert sum(map(len, checked.errors)) == (2 if strict else 0)
