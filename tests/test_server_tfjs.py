"""Real TF.js in Node against ``tfjsfs serve`` over the moto S3 server:
``model.save('http://127.0.0.1:PORT/models/x')`` stores a bundle in S3,
``tf.loadLayersModel`` from the server predicts the same values, and
``tfjsfs.load_weights("tfjs+s3://…/x")`` equals ``model.getWeights()``.
Also the other direction: Python saves to the server, TF.js loads.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from nodejs import MODELS, NODE_MARKS, decode_b64, run_node, tfjs_load, weights_by_name
from serverkit import assert_same_weights, http, server_factory

import tfjsfs

pytestmark = NODE_MARKS


@pytest.fixture
def model_server(tmp_path):
    yield from server_factory(tmp_path)


@pytest.fixture
def s3_model_server(model_server, s3_server, s3_bucket):
    def make(**options):
        server = model_server(
            f"s3://{s3_bucket}/models", storage_options=s3_server.storage_options, **options
        )
        server.s3_root = f"{s3_bucket}/models"
        return server

    return make


def _s3_weights(s3_server, s3_bucket: str, name: str) -> dict[str, np.ndarray]:
    return tfjsfs.load_weights(
        f"tfjs+s3://{s3_bucket}/models/{name}", storage_options=s3_server.storage_options
    )


@pytest.mark.parametrize("model", MODELS)
def test_tfjs_saves_into_s3_and_loads_back(model, s3_model_server, s3_server, s3_bucket, tmp_path):
    server = s3_model_server()
    dump = tmp_path / "expected.json"
    result = run_node("tfjs_http_save.js", model, server.model_url(f"node/{model}"), dump)
    expected = json.loads(dump.read_text())
    assert result["status"] == 201
    reply = json.loads(result["body"])
    assert reply["name"] == f"node/{model}"
    # the server computes the same ModelArtifactsInfo as TF.js did
    for key, value in expected["model_artifacts_info"].items():
        assert reply["modelArtifactsInfo"][key] == value, key
        assert result["modelArtifactsInfo"][key] == value, key

    # the bundle is in S3, byte for byte what model.getWeights() holds
    assert s3_server.filesystem().ls(f"{s3_bucket}/models/node/{model}", detail=False)
    stored = _s3_weights(s3_server, s3_bucket, f"node/{model}")
    assert_same_weights(stored, weights_by_name(expected))

    # tf.loadLayersModel from the server predicts exactly as the original
    loaded = tfjs_load(server.model_url(f"node/{model}", "model.json"), expected)
    assert decode_b64(loaded["prediction"]).tobytes() == (
        decode_b64(expected["prediction"]).tobytes()
    )
    assert_same_weights(weights_by_name(loaded), weights_by_name(expected))


def test_tfjs_loads_resharded_bundles(s3_model_server, s3_server, s3_bucket, tmp_path):
    server = s3_model_server(reshard=256)
    dump = tmp_path / "expected.json"
    result = run_node("tfjs_http_save.js", "cnn", server.model_url("cnn"), dump)
    assert result["status"] == 201
    expected = json.loads(dump.read_text())
    manifest = http("GET", server.model_url("cnn", "model.json")).json()["weightsManifest"]
    total = expected["model_artifacts_info"]["weightDataBytes"]
    assert len(manifest[0]["paths"]) == -(-total // 256) > 1
    loaded = tfjs_load(server.model_url("cnn", "model.json"), expected)
    assert decode_b64(loaded["prediction"]).tobytes() == (
        decode_b64(expected["prediction"]).tobytes()
    )
    assert_same_weights(_s3_weights(s3_server, s3_bucket, "cnn"), weights_by_name(expected))


def test_python_saves_tfjs_loads(s3_model_server):
    server = s3_model_server()
    rng = np.random.default_rng(50)
    kernel, bias = rng.standard_normal((3, 4)).astype("f4"), rng.standard_normal(4).astype("f4")
    plain = tfjsfs.ModelArtifacts.from_weights(
        {
            "class_name": "Sequential",
            "config": {
                "name": "py",
                "layers": [
                    {
                        "class_name": "Dense",
                        "config": {
                            "name": "dense_a",
                            "units": 4,
                            "batch_input_shape": [None, 3],
                            "dtype": "float32",
                        },
                    }
                ],
            },
            "keras_version": "tfjs-layers 4.22.0",
            "backend": "tensor_flow.js",
        },
        {"dense_a/kernel": kernel, "dense_a/bias": bias},
        generated_by="tfjsfs tests",
    )
    tfjsfs.save_model(plain, server.model_url("from-python"))
    x = np.linspace(-1, 1, 6, dtype="f4").reshape(2, 3)
    loaded = tfjs_load(
        server.model_url("from-python", "model.json"),
        {"shape": [2, 3], "dtype": "float32", "data_b64": _b64(x)},
    )
    want = x @ kernel + bias
    assert np.allclose(decode_b64(loaded["prediction"]), want, rtol=1e-6, atol=1e-6)
    assert_same_weights(weights_by_name(loaded), {"dense_a/kernel": kernel, "dense_a/bias": bias})


def _b64(array: np.ndarray) -> str:
    import base64

    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode()
