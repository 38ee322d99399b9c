"""Every rewrite keeps every field of every weight entry (hardening item 8a).

A trained layers model saved with its optimizer weights marks them
``"group": "optimizer"``; TF.js loads them apart from the model's variables.
Quantizing, re-sharding, copying or uploading such a bundle must keep that
field (and any unknown key): without it TF.js fails with "Provided weight
data has no target variable".
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from nodejs import NODE_MARKS, decode_b64, tfjs_load, tfjs_save, weights_by_name
from serverkit import server_factory

import tfjsfs
from tfjsfs.format.manifest import WeightSpec

pytestmark = NODE_MARKS


def _with_optimizer_weights(artifacts: tfjsfs.ModelArtifacts) -> tfjsfs.ModelArtifacts:
    """*artifacts* plus Adam-like optimizer state (group "optimizer") and unknown keys."""
    rng = np.random.default_rng(3)
    weights = dict(artifacts.weights)
    optimizer = {"iter": np.array(7, np.int32)}
    for spec in artifacts.weight_specs:
        if spec.dtype == "float32":
            optimizer[f"{spec.name}/m"] = rng.normal(size=spec.shape).astype(np.float32)
    made = tfjsfs.ModelArtifacts.from_weights(
        artifacts.model_topology,
        {**weights, **optimizer},
        generated_by=artifacts.generated_by,
        format=artifacts.format,
    )
    specs = []
    for spec in made.weight_specs:
        if spec.name in optimizer:
            spec = WeightSpec(
                spec.name, spec.shape, spec.dtype, "optimizer", spec.quantization, {"note": 1}
            )
        specs.append(spec)
    made.weight_specs = specs
    return made


def _entries(path) -> dict[str, dict]:
    doc = json.loads(path.read_text())
    return {w["name"]: w for g in doc["weightsManifest"] for w in g["weights"]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    expected = tfjs_save("mlp", "node", tmp_path_factory.mktemp("tfjs-mlp") / "m")
    original = tfjsfs.load_model(expected["files"]["model_json"])
    return expected, original, _with_optimizer_weights(original)


def _check_fields(path, source: tfjsfs.ModelArtifacts, quantized: bool) -> None:
    entries = _entries(path)
    assert list(entries) == [s.name for s in source.weight_specs]
    for spec in source.weight_specs:
        entry = entries[spec.name]
        if spec.group == "optimizer":
            assert entry["group"] == "optimizer" and entry["note"] == 1, entry
        else:
            assert "group" not in entry and "note" not in entry, entry
        if quantized and spec.dtype == "float32":
            assert entry["quantization"]["dtype"] == "uint8", entry


def test_quantized_save_keeps_group_and_tfjs_loads_it(trained, tmp_path):
    expected, original, art = trained
    tfjsfs.save_model(art, tmp_path / "q", quantize="uint8")
    _check_fields(tmp_path / "q" / "model.json", art, quantized=True)
    result = tfjs_load(str(tmp_path / "q" / "model.json"), expected["input"])
    loaded = weights_by_name(result)
    assert sorted(loaded) == sorted(s.name for s in original.weight_specs)
    ours = tfjsfs.load_weights(tmp_path / "q")
    for name, value in loaded.items():
        assert value.tobytes() == ours[name].tobytes(), name
    assert decode_b64(result["prediction"]).shape == decode_b64(expected["prediction"]).shape


@pytest.mark.parametrize(
    "options",
    [{"quantize": "uint8"}, {"shard_size": 40}, {}],
    ids=["quantize", "reshard", "copy"],
)
def test_copies_keep_every_spec_field(trained, tmp_path, options):
    _, _, art = trained
    tfjsfs.save_model(art, tmp_path / "src", shard_size=64)
    tfjsfs.copy_model(tmp_path / "src", tmp_path / "dst", **options)
    _check_fields(tmp_path / "dst" / "model.json", art, quantized="quantize" in options)
    if options:  # and back: dequantize, one shard
        tfjsfs.copy_model(tmp_path / "dst", tmp_path / "back", dequantize=True, shard_size=1 << 20)
        _check_fields(tmp_path / "back" / "model.json", art, quantized=False)


def test_server_upload_and_bridge_push_keep_every_spec_field(trained, tmp_path):
    _, _, art = trained
    for make in server_factory(tmp_path):
        server = make()
        tfjsfs.save_model(art, server.model_url("m"), quantize="uint8")
        _check_fields(tmp_path / "store-0" / "m" / "model.json", art, quantized=True)
        tfjsfs.save_model(art, server.url + "/bridge/api/models/b")
        _check_fields(tmp_path / "store-0" / "b" / "model.json", art, quantized=False)
