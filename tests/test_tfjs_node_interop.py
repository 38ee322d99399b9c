"""Byte-exact interop with the real @tensorflow/tfjs 4.22.0 in Node, both ways.

TF.js saves layers models (tfjs-node and downloads layouts); tfjsfs loads them
and every weight equals ``model.getWeights()``. tfjsfs saves bundles (sharded,
multi-group, quantized and not) that TF.js loads with ``tf.loadLayersModel``;
its predictions equal the predictions of the original weights.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from nodejs import LAYOUTS, MODELS, NODE_MARKS, decode_b64, tfjs_load, tfjs_save, weights_by_name

import tfjsfs

pytestmark = NODE_MARKS


@pytest.fixture(scope="module")
def tfjs_bundles(tmp_path_factory):
    """Every harness model saved by TF.js in every layout, once per module."""
    root = tmp_path_factory.mktemp("tfjs-saved")
    return {
        (model, layout): tfjs_save(model, layout, root / f"{model}-{layout}", name="exported")
        for model in MODELS
        for layout in LAYOUTS
    }


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("model", MODELS)
def test_tfjsfs_reads_what_tfjs_saves(tfjs_bundles, model, layout):
    expected = tfjs_bundles[(model, layout)]
    loaded = tfjsfs.load_model(_source(expected))
    truth = weights_by_name(expected)
    assert [s.name for s in loaded.weight_specs] == list(truth)
    for name, value in truth.items():
        ours = loaded.weights[name]
        assert ours.dtype == value.dtype and ours.shape == value.shape, name
        assert ours.tobytes() == value.tobytes(), name
    info = loaded.info()
    reported = expected["model_artifacts_info"]
    assert info.weight_data_bytes == reported["weightDataBytes"]
    assert info.weight_specs_bytes == reported["weightSpecsBytes"]
    assert info.model_topology_bytes == reported["modelTopologyBytes"]


def _predict(path, expected):
    result = tfjs_load(str(path), expected["input"])
    return decode_b64(result["prediction"]), weights_by_name(result)


@pytest.mark.parametrize("model", MODELS)
def test_tfjs_loads_what_tfjsfs_saves_sharded_and_grouped(tfjs_bundles, tmp_path, model):
    expected = tfjs_bundles[(model, "node")]
    original = tfjsfs.load_model(_source(expected))
    names = [s.name for s in original.weight_specs]
    half = max(1, len(names) // 2)
    regrouped = tfjsfs.ModelArtifacts.from_weights(
        original.model_topology,
        original.weights,
        groups=[names[:half], names[half:]],
        generated_by=original.generated_by,
    )
    tfjsfs.save_model(regrouped, tmp_path / "m", shard_size=37)
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    assert len(doc["weightsManifest"]) == 2 and len(doc["weightsManifest"][0]["paths"]) > 1
    prediction, weights = _predict(tmp_path / "m" / "model.json", expected)
    assert prediction.tobytes() == decode_b64(expected["prediction"]).tobytes()
    for name, value in original.weights.items():
        assert weights[name].tobytes() == value.tobytes(), name


@pytest.mark.parametrize("qdtype", ["uint8", "uint16", "float16"])
def test_tfjs_dequantizes_exactly_as_tfjsfs(tfjs_bundles, tmp_path, qdtype):
    expected = tfjs_bundles[("cnn", "downloads")]
    original = tfjsfs.load_model(_source(expected))
    tfjsfs.save_model(original, tmp_path / "q", quantize=qdtype, shard_size=4096)
    quantized = tfjsfs.load_model(tmp_path / "q")
    assert all(s.quantization is not None for s in quantized.weight_specs if s.dtype == "float32")
    prediction, tfjs_weights = _predict(tmp_path / "q" / "model.json", expected)
    for name, value in quantized.weights.items():  # TF.js's dequantization == ours, bit for bit
        assert tfjs_weights[name].tobytes() == value.tobytes(), name
    # the same dequantized values saved unquantized predict identically
    plain = tfjsfs.ModelArtifacts.from_weights(original.model_topology, quantized.weights)
    tfjsfs.save_model(plain, tmp_path / "plain")
    reference, _ = _predict(tmp_path / "plain" / "model.json", expected)
    assert prediction.tobytes() == reference.tobytes()
    original_prediction = decode_b64(expected["prediction"])
    tolerance = {"uint8": 0.1, "uint16": 1e-3, "float16": 1e-2}[qdtype]
    assert np.allclose(prediction, original_prediction, atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("layout", ["tfjs-node", "downloads", "upload"])
def test_tfjs_loads_every_tfjsfs_layout(tfjs_bundles, tmp_path, layout):
    expected = tfjs_bundles[("mixed", "node")]
    original = tfjsfs.load_model(_source(expected))
    result = tfjsfs.save_model(original, tmp_path / "m", layout=layout, name="exported")
    prediction, _ = _predict(result.url, expected)
    assert prediction.tobytes() == decode_b64(expected["prediction"]).tobytes()


def _source(expected):
    files = expected["files"]
    return files.get("model_json") or files["outdir"]
