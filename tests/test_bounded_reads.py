"""Bounded, honest reads against a real loopback server that misbehaves on purpose.

Hardening items 3 (bodies never buffered past the declared bytes, a model.json
cap), 7 (redirects of shards) and 8(b)/(c) (one logged retry policy for every
shard size).
"""

from __future__ import annotations

import logging
import shutil
import tracemalloc

import numpy as np
import pytest
from hotpath_models import save

import tfjsfs
from tfjsfs.errors import ManifestError, RedirectError, SizeMismatch

SHARD = "/m/group1-shard1of1.bin"
HUGE = 200 << 20  # what the lying server claims an 8-byte shard holds


def tiny(tmp_path):
    """A model whose only shard is declared as 8 bytes."""
    return save(tmp_path, weights={"w": np.array([7, -3], dtype=np.int32)}, quantize=None)


def peak_of(call):
    """Run *call*; return its result (or exception) and the peak traced allocation."""
    tracemalloc.start()
    try:
        try:
            result = call()
        except Exception as exc:
            result = exc
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


# ------------------------------------------------------------ item 3: bodies


def test_a_shard_served_far_longer_than_declared_is_refused_without_reading_it(
    tmp_path, http_server
):
    tiny(tmp_path)
    server = http_server(tmp_path)
    server.lie(SHARD, "resize", times=None, size=HUGE)
    error, peak = peak_of(lambda: tfjsfs.load_weights(server.url_for("m/model.json"), retries=1))
    assert isinstance(error, SizeMismatch), error
    text = str(error)
    assert "group1-shard1of1.bin" in text and "declares 8" in text and str(HUGE) in text
    assert error.expected == 8 and error.actual == HUGE
    assert peak < 16 << 20  # nothing close to the 200 MiB the server offered


def test_a_head_without_length_never_leads_to_reading_a_whole_body(tmp_path, http_server):
    tiny(tmp_path)
    server = http_server(tmp_path, ignore_range=True)
    server.lie(SHARD, "head_without_length", times=None)
    server.lie(SHARD, "resize", times=None, size=HUGE)
    error, peak = peak_of(lambda: tfjsfs.load_weights(server.url_for("m/model.json"), retries=1))
    assert isinstance(error, SizeMismatch), error
    assert "group1-shard1of1.bin" in str(error) and "declares 8" in str(error)
    assert peak < 16 << 20
    # the size was found by a ranged GET the server ignored: counted, not kept
    assert [r.range for r in server.stats.requests_for(SHARD, "GET")][-1] == "bytes=0-0"


def test_a_chunked_body_longer_than_the_shard_is_refused(tmp_path, http_server):
    tiny(tmp_path)
    server = http_server(tmp_path)
    server.lie(SHARD, "long_chunked", times=None, extra=HUGE)
    error, peak = peak_of(lambda: tfjsfs.load_weights(server.url_for("m/model.json"), retries=1))
    assert isinstance(error, SizeMismatch), error
    assert "more than the shard's 8 bytes" in str(error)
    assert peak < 16 << 20


def test_a_gzip_bomb_is_decompressed_only_up_to_the_declared_bytes(tmp_path, http_server):
    tiny(tmp_path)
    server = http_server(tmp_path)
    server.lie(SHARD, "gzip", times=None, extra=400 << 20)  # ~400 KB on the wire
    error, peak = peak_of(lambda: tfjsfs.load_weights(server.url_for("m/model.json"), retries=1))
    assert isinstance(error, SizeMismatch), error
    assert "more than the shard's 8 bytes" in str(error)
    assert peak < 16 << 20


def test_a_gzip_encoded_shard_still_loads_exactly(tmp_path, http_server):
    expected = tiny(tmp_path)
    server = http_server(tmp_path)
    server.lie(SHARD, "gzip", times=None, extra=0)  # compressed although identity was asked
    got = tfjsfs.load_weights(server.url_for("m/model.json"))
    assert got["w"].tolist() == expected["w"].tolist() == [7, -3]
    shard_gets = server.stats.requests_for(SHARD, "GET")
    assert len(shard_gets) == 1


def test_model_json_larger_than_the_default_cap_is_refused(tmp_path):
    tiny(tmp_path)
    path = tmp_path / "m" / "model.json"
    text = path.read_bytes()
    path.write_bytes(text + b" " * ((64 << 20) + 1 - len(text)))  # still valid JSON
    with pytest.raises(ManifestError) as info:
        tfjsfs.load_weights(tmp_path / "m")
    assert "model.json holds more than 67108864 bytes" in str(info.value)
    assert "max_json_bytes" in str(info.value)
    # the cap is an option
    assert tfjsfs.load_weights(tmp_path / "m", max_json_bytes=65 << 20)["w"].tolist() == [7, -3]


def test_a_gzip_bombed_model_json_is_read_only_up_to_the_cap(tmp_path, http_server):
    tiny(tmp_path)
    server = http_server(tmp_path)
    server.lie("/m/model.json", "gzip", times=None, extra=300 << 20)
    url = server.url_for("m/model.json")
    error, peak = peak_of(lambda: tfjsfs.load_weights(url, max_json_bytes=1 << 20, retries=0))
    assert isinstance(error, ManifestError), error
    assert f"{url}: model.json holds more than 1048576 bytes" in str(error)
    assert peak < 16 << 20


def test_load_options_are_checked():
    with pytest.raises(ValueError, match="follow_redirects"):
        tfjsfs.load_weights("memory://nothing", follow_redirects="sometimes")
    with pytest.raises(ValueError, match="max_json_bytes"):
        tfjsfs.load_weights("memory://nothing", max_json_bytes=0)


# -------------------------------------------------------- item 7: redirects


@pytest.fixture
def elsewhere(tmp_path, http_server):
    """A model whose shard redirects to the same file on another origin."""
    expected = tiny(tmp_path / "a")
    (tmp_path / "b" / "m").mkdir(parents=True)
    shutil.copy(tmp_path / "a" / SHARD.lstrip("/"), tmp_path / "b" / "m" / "moved.bin")
    home, other = http_server(tmp_path / "a"), http_server(tmp_path / "b")
    home.redirect(SHARD, other.url_for("m/moved.bin"))
    return expected, home, other


def test_a_cross_origin_redirect_of_a_shard_is_refused_by_default(elsewhere):
    _, home, other = elsewhere
    with pytest.raises(RedirectError) as info:
        tfjsfs.load_weights(home.url_for("m/model.json"))
    text = str(info.value)
    assert home.url_for(SHARD) in text  # the shard
    assert f"redirects to {other.url}" in text  # the target origin (scheme://host:port)
    assert "follow_redirects='any'" in text
    assert info.value.target == other.url_for("m/moved.bin")
    assert other.stats.count() == 0  # never asked


def test_a_cross_origin_redirect_is_followed_when_asked(elsewhere):
    expected, home, other = elsewhere
    got = tfjsfs.load_weights(home.url_for("m/model.json"), follow_redirects="any")
    assert got["w"].tolist() == expected["w"].tolist()
    assert other.stats.count("/m/moved.bin", "GET") == 1


def test_same_origin_redirects_are_followed_unless_never(tmp_path, http_server):
    expected = tiny(tmp_path)
    shutil.copy(tmp_path / SHARD.lstrip("/"), tmp_path / "m" / "moved.bin")
    server = http_server(tmp_path)
    server.redirect(SHARD, "/m/moved.bin")
    url = server.url_for("m/model.json")
    assert tfjsfs.load_weights(url)["w"].tolist() == expected["w"].tolist()
    with pytest.raises(RedirectError, match="follow_redirects='never' refuses"):
        tfjsfs.load_weights(url, follow_redirects="never")


# ------------------------------------------------------ items 8(b) and 8(c)


def test_a_content_length_disagreeing_with_the_manifest_is_retried_for_tiny_shards(
    tmp_path, http_server
):
    weights = {f"w{i}": np.arange(i, i + 25, dtype=np.float32) for i in range(40)}
    save(tmp_path, weights=weights, shard_size=100, quantize=None)  # 40 shards of 100 bytes
    server = http_server(tmp_path)
    shards = sorted(p.name for p in (tmp_path / "m").glob("*.bin"))
    assert len(shards) == 40
    for name in shards:  # one wrong reply each (HEAD stays honest)
        server.lie(f"/m/{name}", "resize", times=1, size=90, head=False)
    got = tfjsfs.load_weights(server.url_for("m/model.json"), retries=2, timeout=10)
    for key, value in weights.items():
        assert np.array_equal(got[key], value), key
    assert all(server.stats.count(f"/m/{n}", "GET") == 2 for n in shards)


def test_every_retry_is_logged_with_url_attempt_and_reason(tmp_path, http_server, caplog):
    expected = tiny(tmp_path)
    server = http_server(tmp_path)
    server.fail_first(SHARD, 2, status=503, methods=("GET",))
    with caplog.at_level(logging.INFO, logger="tfjsfs"):
        got = tfjsfs.load_weights(server.url_for("m/model.json"), retries=3, timeout=10)
    assert got["w"].tolist() == expected["w"].tolist()
    retries = [r for r in caplog.records if r.name == "tfjsfs" and "retrying" in r.message]
    assert len(retries) == 2
    for record, attempt in zip(retries, (2, 3), strict=True):
        assert server.url_for(SHARD) in record.message
        assert f"attempt {attempt} of 4" in record.message
        assert "HTTP 503" in record.message
    assert server.stats.count(SHARD, "GET") == 3
