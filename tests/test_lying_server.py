"""A server that lies: every wrong answer the HTTP reader is meant to detect.

Each test here guards one defence of :mod:`tfjsfs.io.readers`; remove the
defence and the test fails (``tests/mutation/run.py`` plants those bugs one at
a time and checks). Values are compared exactly, so a load that "succeeds"
with the wrong bytes fails.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hotpath_models import save

import tfjsfs
from tfjsfs.errors import SizeMismatch, TransferError, WeightDataError
from tfjsfs.format.codec import decode_weight, encode_weight

SHARD = "/m/group1-shard1of1.bin"
FAST = {"retries": 2, "timeout": 10}
HALF = 400_000  # bytes of "a"; "b" follows


def weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "a": rng.normal(size=HALF // 4).astype(np.float32),
        "b": rng.normal(size=HALF // 4).astype(np.float32),
    }


@pytest.fixture
def model(tmp_path, http_server):
    """One 800,000-byte shard holding "a" then "b", served by a test server."""
    expected = save(tmp_path, weights=weights(1), shard_size=1 << 20, quantize=None)
    assert (tmp_path / SHARD.lstrip("/")).stat().st_size == 2 * HALF
    server = http_server(tmp_path)
    return server, server.url_for("m/model.json"), expected


def exact(got, expected, names=("a", "b")):
    assert list(got) == list(names)
    for name in names:
        assert np.array_equal(got[name], expected[name]), name


def shard_gets(server):
    return server.stats.requests_for(SHARD, "GET")


def test_a_short_chunked_body_is_retried_not_loaded(model):
    server, url, expected = model
    server.lie(SHARD, "short_chunked", times=1, nbytes=HALF)  # ends cleanly, half missing
    exact(tfjsfs.load_weights(url, **FAST), expected)
    assert len(shard_gets(server)) == 2


def test_a_body_that_always_ends_short_fails_naming_the_counts(model):
    server, url, _ = model
    server.lie(SHARD, "short_chunked", times=None, nbytes=1000)  # each resume: 1000 more
    with pytest.raises(TransferError) as info:
        tfjsfs.load_weights(url, **FAST)
    assert f"body ended after 3000 of {2 * HALF} bytes" in str(info.value)
    assert "gave up after 3 attempts" in str(info.value)
    assert "group1-shard1of1.bin" in str(info.value)


def test_a_206_for_another_range_is_not_taken_for_the_range_asked(model):
    server, url, expected = model
    server.lie(SHARD, "wrong_range", times=1, shift=-HALF)  # asked for "b", gets "a"
    exact(tfjsfs.load_weights(url, names=["b"], **FAST), expected, ["b"])
    ranges = [r.range for r in shard_gets(server)]
    assert ranges == [f"bytes={HALF}-{2 * HALF - 1}"] * 2


def test_a_wrong_range_reply_says_what_disagreed(model):
    server, url, _ = model
    server.lie(SHARD, "wrong_range", times=None, shift=-HALF)
    with pytest.raises(SizeMismatch) as info:
        tfjsfs.load_weights(url, names=["b"], **FAST)
    text = str(info.value)
    assert not re.search(r"should hold (\d+) bytes but holds \1\b", text), text
    assert f"asked for bytes {HALF}..{2 * HALF}" in text
    assert f"Content-Range (bytes 0-{HALF - 1}/{2 * HALF}) holds bytes 0..{HALF}" in text


def test_a_content_range_that_disagrees_with_the_body_is_caught(model):
    server, url, expected = model
    # Content-Range names the range asked for; the body starts 1000 bytes earlier
    server.lie(SHARD, "content_range_mismatch", times=1, extra=1000)
    exact(tfjsfs.load_weights(url, names=["b"], **FAST), expected, ["b"])
    assert len(shard_gets(server)) == 2


def test_a_body_shorter_than_its_content_range_is_resumed(model):
    server, url, expected = model
    server.lie(SHARD, "content_range_mismatch", times=1, extra=-1000)
    exact(tfjsfs.load_weights(url, names=["b"], **FAST), expected, ["b"])
    ranges = [r.range for r in shard_gets(server)]
    assert ranges == [f"bytes={HALF}-{2 * HALF - 1}", f"bytes={2 * HALF - 1000}-{2 * HALF - 1}"]


def test_a_file_replaced_between_a_drop_and_the_resume_is_not_stitched(tmp_path, model):
    server, url, _ = model
    newer = save(tmp_path / "v2", weights=weights(2), shard_size=1 << 20, quantize=None)
    new_bytes = (tmp_path / "v2" / SHARD.lstrip("/")).read_bytes()
    server.lie(SHARD, "change_after_drop", times=1, nbytes=300_000, new=new_bytes)
    got = tfjsfs.load_weights(url, **FAST)
    first, second = shard_gets(server)
    assert first.range is None and second.range is not None  # it did try to resume
    assert second.status == 200  # and If-Range made the server send the new file whole
    exact(got, newer)  # all new, never half old and half new


def test_a_200_with_the_whole_file_to_a_range_request_is_placed_by_file_offset(model):
    server, url, expected = model
    server.lie(SHARD, "full_to_range", times=None)
    exact(tfjsfs.load_weights(url, names=["b"], **FAST), expected, ["b"])
    assert [r.status for r in shard_gets(server)] == [200]


def test_a_body_longer_than_the_shard_is_refused(model):
    server, url, _ = model
    server.lie(SHARD, "long_chunked", times=None, extra=10)
    with pytest.raises(SizeMismatch, match=f"body holds more than the shard's {2 * HALF} bytes"):
        tfjsfs.load_weights(url, **FAST)


def test_a_body_longer_once_is_retried(model):
    server, url, expected = model
    server.lie(SHARD, "long_chunked", times=1, extra=10)
    exact(tfjsfs.load_weights(url, **FAST), expected)
    assert len(shard_gets(server)) == 2


def test_string_decoding_refuses_trailing_bytes():
    spec, chunks = encode_weight("s", np.array([b"ab", b"cde"], dtype=object))
    data = b"".join(chunks)
    assert decode_weight(spec, data).tolist() == [b"ab", b"cde"]
    with pytest.raises(WeightDataError, match=r"string data is 17 bytes but its elements take 13"):
        decode_weight(spec, data + b"junk")


def test_a_content_range_total_that_disagrees_with_the_plan_is_not_ignored(tmp_path, http_server):
    # Two shards whose sizes the manifest seems to explain (the converter's 4 MiB
    # cut) but which were cut 100 bytes earlier: only the total size each 206
    # states tells the planned offsets are wrong.
    rng = np.random.default_rng(3)
    weights = {"w": rng.normal(size=1_500_000).astype(np.float32), "b": np.arange(7.0)}
    expected = save(tmp_path, weights=weights, shard_size=4_194_304, quantize=None)
    first, second = (
        tmp_path / "m" / "group1-shard1of2.bin",
        tmp_path / "m" / "group1-shard2of2.bin",
    )
    data = first.read_bytes() + second.read_bytes()
    cut = 4_194_304 - 100
    first.write_bytes(data[:cut])
    second.write_bytes(data[cut:])
    server = http_server(tmp_path)
    got = tfjsfs.load_weights(server.url_for("m/model.json"), names=["b"], **FAST)
    exact(got, expected, ["b"])
