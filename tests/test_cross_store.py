"""One bundle, every store: saved to S3, read back from S3, GCS, the local disk and HTTP,
and loaded by the real TF.js in Node from the HTTP-served copy."""

from __future__ import annotations

import numpy as np
from nodejs import NODE_MARKS, decode_b64, tfjs_load, tfjs_save

import tfjsfs

pytestmark = NODE_MARKS


def test_saved_to_s3_reads_back_everywhere_and_tfjs_predicts_the_same(
    tmp_path, s3_server, s3_bucket, gcs_server, gcs_bucket, http_server
):
    expected = tfjs_save("cnn", "node", tmp_path / "tfjs")
    original = tfjsfs.load_model(expected["files"]["model_json"])

    s3_url = f"s3://{s3_bucket}/models/cnn"
    tfjsfs.save_model(original, s3_url, shard_size=256, storage_options=s3_server.storage_options)
    s3 = s3_server.filesystem()
    files = sorted(s3.ls(f"{s3_bucket}/models/cnn", detail=False))
    assert len(files) > 2 and files[-1].endswith("model.json")

    # the very same files, copied byte for byte to GCS and to a local folder
    gcs = gcs_server.filesystem()
    local = tmp_path / "served" / "cnn"
    local.mkdir(parents=True)
    for path in files:
        data = s3.cat_file(path)
        name = path.rsplit("/", 1)[-1]
        gcs.pipe_file(f"{gcs_bucket}/models/cnn/{name}", data)
        (local / name).write_bytes(data)
    server = http_server(tmp_path / "served")

    truth = original.weights
    loaded = {
        "tfjs+s3": tfjsfs.load_weights(
            f"tfjs+s3://{s3_bucket}/models/cnn", storage_options=s3_server.storage_options
        ),
        "tfjs+gs": tfjsfs.load_weights(
            f"tfjs+gs://{gcs_bucket}/models/cnn", storage_options=gcs_server.storage_options
        ),
        "tfjs+file": tfjsfs.load_weights(f"tfjs+file://{local}"),
        "tfjs+http": tfjsfs.load_weights("tfjs+" + server.url_for("/cnn")),
    }
    for store, weights in loaded.items():
        assert list(weights) == list(truth), store
        for name, value in truth.items():
            assert weights[name].tobytes() == value.tobytes(), (store, name)

    result = tfjs_load(server.url_for("/cnn/model.json"), expected["input"])
    prediction = decode_b64(result["prediction"])
    assert np.array_equal(prediction, decode_b64(expected["prediction"]))
