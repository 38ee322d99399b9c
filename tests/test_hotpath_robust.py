"""Robustness on the hot path against a real server that fails on purpose."""

from __future__ import annotations

import numpy as np
import pytest
from hotpath_models import StallingServer, assert_same, save

import tfjsfs
from tfjsfs.errors import ShardMissingError, TransferError

FAST = {"retries": 3, "timeout": 10}  # retries with short backoff (0.2 s doubling)


def big_model(tmp_path):
    """Two shards in the converter's layout (4 MiB cuts: sizes come from the manifest)."""
    rng = np.random.default_rng(5)
    weights = {"w": rng.normal(size=1_500_000).astype(np.float32), "b": np.arange(7.0)}
    expected = save(tmp_path, weights=weights, shard_size=4_194_304, quantize=None)
    return expected, "/m/group1-shard1of2.bin", "/m/group1-shard2of2.bin"


def test_retries_recover_from_503s(tmp_path, http_server):
    expected, first, second = big_model(tmp_path)
    server = http_server(tmp_path)
    server.fail_first(first, 2, status=503)
    server.fail_first(second, 1, status=502)
    assert_same(tfjsfs.load_weights(server.url_for("m/model.json"), **FAST), expected)
    assert server.stats.count(first, "GET") == 3
    assert server.stats.count(second, "GET") == 2


def test_retries_recover_from_a_connection_dropped_mid_shard(tmp_path, http_server):
    expected, first, _ = big_model(tmp_path)
    server = http_server(tmp_path)
    server.drop_mid_body(first, after_bytes=1_000_000, times=2)
    assert_same(tfjsfs.load_weights(server.url_for("m/model.json"), **FAST), expected)
    requests = server.stats.requests_for(first, "GET")
    assert len(requests) == 3
    # the later attempts resume where the body stopped instead of starting over
    assert requests[0].range is None
    assert requests[1].range is not None and requests[1].range != "bytes=0-4194303"


def test_truncated_body_is_detected_and_retried(tmp_path, http_server):
    expected, _, second = big_model(tmp_path)
    server = http_server(tmp_path)
    server.truncate(second, 100, times=2)
    assert_same(tfjsfs.load_weights(server.url_for("m/model.json"), **FAST), expected)
    assert server.stats.count(second, "GET") >= 2


def test_truncated_body_is_reported_with_shard_weight_and_bytes(tmp_path, http_server):
    _, _, second = big_model(tmp_path)
    size = (tmp_path / second.lstrip("/")).stat().st_size
    server = http_server(tmp_path)
    server.truncate(second, 0)  # every attempt: headers, then the connection closes
    with pytest.raises(TransferError) as info:
        tfjsfs.load_weights(server.url_for("m/model.json"), retries=2, timeout=10)
    text = str(info.value)
    assert "group1-shard2of2.bin" in text
    assert "'b'" in text  # the weight whose bytes are in that shard
    assert f"after 0 of {size} bytes" in text
    assert "3 attempts" in text
    assert server.stats.count(second, "GET") == 3


def test_partial_load_retries_too(tmp_path, http_server):
    expected, first, _ = big_model(tmp_path)
    server = http_server(tmp_path)
    server.fail_first(first, 1, status=503, methods=("GET",))
    got = tfjsfs.load_weights(server.url_for("m/model.json"), names=["w"], **FAST)
    assert np.array_equal(got["w"], expected["w"])


def test_client_errors_are_not_retried(tmp_path, http_server):
    _, first, _ = big_model(tmp_path)
    server = http_server(tmp_path)
    server.fail_first(first, 5, status=403)
    with pytest.raises(TransferError, match="403"):
        tfjsfs.load_weights(server.url_for("m/model.json"), **FAST)
    assert server.stats.count(first, "GET") == 1


def test_missing_shard_found_by_get(tmp_path, http_server):
    _, _, second = big_model(tmp_path)
    (tmp_path / second.lstrip("/")).unlink()
    server = http_server(tmp_path)
    with pytest.raises(ShardMissingError, match=r"group1-shard2of2\.bin does not exist"):
        tfjsfs.load_weights(server.url_for("m/model.json"), **FAST)


def test_model_json_503_is_retried_and_404_is_model_not_found(tmp_path, http_server):
    expected, _, _ = big_model(tmp_path)
    server = http_server(tmp_path)
    server.fail_first("/m/model.json", 2)
    assert_same(tfjsfs.load_weights(server.url_for("m/model.json"), **FAST), expected)
    with pytest.raises(tfjsfs.errors.ModelNotFoundError, match="model JSON"):
        tfjsfs.load_weights(server.url_for("nowhere/model.json"), **FAST)


def test_iter_weights_and_open_model_retry(tmp_path, http_server):
    expected, first, second = big_model(tmp_path)
    server = http_server(tmp_path)
    url = server.url_for("m/model.json")
    server.drop_mid_body(first, after_bytes=500_000)
    assert_same(dict(tfjsfs.iter_weights(url, **FAST)), expected)
    with tfjsfs.open_model(url, **FAST) as m:
        server.fail_first(second, 2, methods=("GET",))
        assert np.array_equal(m.get_tensor("b"), expected["b"])


def test_a_stalled_request_times_out_and_is_retried(tmp_path):
    expected, first, _ = big_model(tmp_path)
    server = StallingServer(tmp_path).start()
    try:
        server.stall(first, 4)  # far longer than the timeout: only a retry can finish in time
        got = tfjsfs.load_weights(server.url_for("m/model.json"), retries=2, timeout=0.5)
        assert_same(got, expected)
        assert server.arrivals[first] == 2  # the stalled request, then the retry
    finally:
        server.stop()


def test_a_group_of_empty_shards_loads_from_a_generic_store():
    """A weight of zero elements in an empty shard: no division by a zero-byte shard."""
    import json

    import fsspec

    fs = fsspec.filesystem("memory")
    doc = {
        "modelTopology": {},
        "weightsManifest": [
            {"paths": ["a.bin"], "weights": [{"name": "e", "shape": [0, 3], "dtype": "float32"}]}
        ],
    }
    fs.pipe("/empty-group/m/model.json", json.dumps(doc).encode())
    fs.pipe("/empty-group/m/a.bin", b"")
    weights = tfjsfs.load_weights("memory://empty-group/m")
    assert list(weights) == ["e"]
    assert weights["e"].shape == (0, 3) and weights["e"].dtype == "float32"
