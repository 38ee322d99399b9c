"""HTTP loading as TF.js does it: shard URLs relative to model.json, the query string
carried over, weight_path_prefix, weight_url_converter, request headers, and refusal of
manifest paths that leave the folder or name another host. Checked at a real server."""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.parse

import numpy as np
import pytest
from hotpath_models import RecordingServer, assert_same, save

import tfjsfs
from tfjsfs.errors import UnsafePathError


@pytest.fixture
def recording(tmp_path):
    servers = []

    def make(root=tmp_path, **behaviour):
        server = RecordingServer(root, **behaviour).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def shard_requests(server, method="GET"):
    return [s for s in server.seen if s.path.endswith(".bin") and s.method == method]


@pytest.mark.parametrize("encoded", [False, True])
def test_query_string_is_carried_onto_every_shard_url(tmp_path, recording, encoded):
    """TF.js appends model.json's query to every shard URL. fsspec normalises URLs
    (``%2F`` becomes ``/`` in a query) unless ``encoded=True``, which sends them as given."""
    expected = save(tmp_path, shard_size=3000)
    server = recording()
    url = server.url_for("m/model.json") + "?token=s3cr%2Ft&v=2"
    got = tfjsfs.load_weights(url, storage_options={"encoded": encoded})
    assert_same(got, expected)
    sent = "token=s3cr%2Ft&v=2" if encoded else "token=s3cr/t&v=2"
    json_request = next(s for s in server.seen if s.path == "/m/model.json")
    assert json_request.query == sent
    shards = shard_requests(server) + shard_requests(server, "HEAD")
    assert shards and all(s.query == sent for s in shards)


def test_query_string_carry_over_can_be_turned_off(tmp_path, recording):
    expected = save(tmp_path, shard_size=3000)
    server = recording()
    url = server.url_for("m/model.json") + "?token=abc"
    assert_same(tfjsfs.load_weights(url, carry_query=False), expected)
    assert all(s.query == "" for s in shard_requests(server))
    assert next(s for s in server.seen if s.path == "/m/model.json").query == "token=abc"


def test_query_string_also_reaches_partial_and_lazy_reads(tmp_path, recording):
    expected = save(tmp_path, shard_size=3000)
    server = recording()
    url = server.url_for("m/model.json") + "?token=abc"
    with tfjsfs.open_model(url) as m:
        server.forget()
        assert np.array_equal(m.get_slice("embed")[5:7], expected["embed"][5:7])
    gets = shard_requests(server)
    assert gets and all(s.query == "token=abc" for s in gets)


def test_weight_path_prefix_is_concatenated_verbatim(tmp_path, recording):
    expected = save(tmp_path, shard_size=3000)
    cdn = tmp_path / "cdn" / "v1"
    cdn.mkdir(parents=True)
    for shard in (tmp_path / "m").glob("*.bin"):
        shutil.move(shard, cdn / shard.name)
    server = recording()
    got = tfjsfs.load_weights(
        server.url_for("m/model.json"), weight_path_prefix=server.url_for("cdn/v1") + "/"
    )
    assert_same(got, expected)
    paths = {s.path for s in shard_requests(server)}
    assert paths and all(p.startswith("/cdn/v1/group1-shard") for p in paths)


def test_weight_path_prefix_keeps_the_query_string(tmp_path, recording):
    expected = save(tmp_path, shard_size=3000)
    server = recording()
    prefix = server.url_for("m") + "/"
    url = server.url_for("m/model.json") + "?k=1"
    assert_same(tfjsfs.load_weights(url, weight_path_prefix=prefix), expected)
    assert all(s.query == "k=1" for s in shard_requests(server))


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_weight_url_converter_presigns_each_shard(tmp_path, recording, kind):
    expected = save(tmp_path, shard_size=3000)
    server = recording()
    calls = []

    def presign(path):
        calls.append(path)
        return server.url_for(f"m/{path}") + f"?sig={len(calls)}-{path}"

    async def presign_async(path):
        await asyncio.sleep(0)
        return presign(path)

    converter = presign if kind == "sync" else presign_async
    url = server.url_for("m/model.json") + "?token=not-for-shards"
    assert_same(tfjsfs.load_weights(url, weight_url_converter=converter), expected)
    manifest = json.loads((tmp_path / "m" / "model.json").read_text())["weightsManifest"]
    assert calls == [p for g in manifest for p in g["paths"]]  # manifest order, once each
    for request in shard_requests(server):
        assert request.query.startswith("sig=")  # verbatim: no token carried over
        assert urllib.parse.unquote(request.query).endswith(request.path.rsplit("/", 1)[1])


def test_headers_reach_model_json_and_every_shard(tmp_path, recording):
    expected = save(tmp_path, shard_size=3000)
    server = recording()
    headers = {"Authorization": "Bearer t0ken", "X-Tenant": "blue"}
    url = server.url_for("m/model.json")
    assert_same(tfjsfs.load_weights(url, headers=headers), expected)
    with tfjsfs.open_model(url, headers=headers) as m:
        m.get_tensor("tail")
    for streamed in tfjsfs.iter_weights(url, headers=headers):
        del streamed
    assert len(server.seen) > 10
    for request in server.seen:
        assert request.headers.get("Authorization") == "Bearer t0ken", request
        assert request.headers.get("X-Tenant") == "blue", request


def test_headers_are_for_http_only(tmp_path):
    save(tmp_path)
    with pytest.raises(ValueError, match="HTTP"):
        tfjsfs.load_weights(tmp_path / "m", headers={"Authorization": "x"})


@pytest.mark.parametrize(
    "bad",
    ["../other/group1-shard1of1.bin", "/abs/x.bin", "http://192.0.2.7/x.bin", "//192.0.2.7/x.bin"],
)
def test_manifest_paths_leaving_the_folder_or_host_are_refused(tmp_path, recording, bad):
    save(tmp_path, shard_size=3000)
    doc_path = tmp_path / "m" / "model.json"
    doc = json.loads(doc_path.read_text())
    doc["weightsManifest"][0]["paths"][0] = bad
    doc_path.write_text(json.dumps(doc))
    server = recording()
    with pytest.raises(UnsafePathError, match="allow_outside"):
        tfjsfs.load_weights(server.url_for("m/model.json"))
    assert not shard_requests(server) and not shard_requests(server, "HEAD")


def test_outside_paths_are_followed_when_allowed(tmp_path, recording):
    expected = save(tmp_path, shard_size=3000)
    doc_path = tmp_path / "m" / "model.json"
    doc = json.loads(doc_path.read_text())
    first = doc["weightsManifest"][0]["paths"][0]
    (tmp_path / "shared").mkdir()
    shutil.move(tmp_path / "m" / first, tmp_path / "shared" / first)
    server = recording()
    doc["weightsManifest"][0]["paths"][0] = f"../shared/{first}"
    doc["weightsManifest"][0]["paths"][1] = server.url_for(
        "m/" + doc["weightsManifest"][0]["paths"][1]
    )
    doc_path.write_text(json.dumps(doc))
    got = tfjsfs.load_weights(server.url_for("m/model.json"), allow_outside=True)
    assert_same(got, expected)
    assert any(s.path == f"/shared/{first}" for s in shard_requests(server))


def test_folder_url_means_its_model_json(tmp_path, recording):
    expected = save(tmp_path, shard_size=3000)
    server = recording(no_listing=True)
    assert_same(tfjsfs.load_weights(server.url_for("m") + "/"), expected)
    assert_same(tfjsfs.load_weights(server.url_for("m")), expected)


def test_https_with_a_throwaway_ca(tmp_path, https_server):
    expected = save(tmp_path, shard_size=3000)
    server = https_server(tmp_path)
    url = server.url_for("m/model.json")
    assert url.startswith("https://")
    got = tfjsfs.load_weights(url, storage_options=server.storage_options)
    assert_same(got, expected)
    with tfjsfs.open_model(url, storage_options=server.storage_options) as m:
        assert np.array_equal(m.get_tensor("counts"), expected["counts"])


def test_tfjs_http_urls_load_the_same(tmp_path, recording):
    expected = save(tmp_path, shard_size=3000)
    server = recording()
    url = server.url_for("m/model.json")
    assert_same(tfjsfs.load_weights("tfjs+" + url), expected)
    assert_same(tfjsfs.load_weights("tfjs::" + url + "?q=1"), expected)
    assert all(s.query == "q=1" for s in shard_requests(server) if s.query)
