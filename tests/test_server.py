"""``tfjsfs serve`` with Python clients: round trips, listing and description,
file serving (Range, ETag, caching), replacing and deleting, CORS, tokens,
and every kind of bad upload (4xx, JSON error, nothing stored).
"""

from __future__ import annotations

import json
import posixpath

import numpy as np
import pytest
from serverkit import (
    TOPOLOGY,
    FormPart,
    assert_same_weights,
    http,
    make_artifacts,
    multipart_body,
    post_parts,
    raw_request,
    server_factory,
    tfjs_parts,
)

import tfjsfs
from tfjsfs.errors import TransferError
from tfjsfs.model.http import upload_model_json


@pytest.fixture
def model_server(tmp_path):
    yield from server_factory(tmp_path)


def stored_files(server) -> list[str]:
    """Every file in the server's store (relative paths)."""
    store = server.store
    fs = store.fs.sync_fs if hasattr(store.fs, "sync_fs") else store.fs
    if not fs.exists(store.root):
        return []
    return sorted(posixpath.relpath(p, store.root) for p in fs.find(store.root))


def plus_url(server, name: str) -> str:
    return server.model_url(name).replace("http://", "tfjs+http://")


# ------------------------------------------------------------- round trips


@pytest.mark.parametrize("store_kind", ["local", "memory", "s3", "gs"])
def test_python_round_trip(model_server, store_kind, tmp_path, request):
    options = {}
    if store_kind == "local":
        store = None
    elif store_kind == "memory":
        store = f"memory://srv-{tmp_path.name}"
    else:
        peer = request.getfixturevalue(f"{'s3' if store_kind == 's3' else 'gcs'}_server")
        bucket = request.getfixturevalue(f"{'s3' if store_kind == 's3' else 'gcs'}_bucket")
        store, options = f"{store_kind}://{bucket}/models", peer.storage_options
    server = model_server(store, storage_options=options)
    artifacts = make_artifacts(5)
    result = tfjsfs.save_model(artifacts, server.model_url("team/first"))
    reply = result.responses[0]
    assert reply.status == 201
    body = reply.json()
    assert body["name"] == "team/first"
    assert body["replaced"] is False
    assert body["files"] == ["model.weights.bin", "model.json"]
    assert body["modelUrl"] == server.model_url("team/first", "model.json")
    assert reply.headers["Location"] == server.model_url("team/first")
    want = artifacts.info().to_json()
    for key in ("modelTopologyBytes", "weightSpecsBytes", "weightDataBytes"):
        assert body["modelArtifactsInfo"][key] == want[key]
    if store_kind in ("local", "memory"):
        files = ["team/first/model.json", "team/first/model.weights.bin"]
        assert stored_files(server) == files

    for url in (
        plus_url(server, "team/first"),
        server.model_url("team/first", "model.json"),
    ):
        loaded = tfjsfs.load_model(url)
        assert loaded.model_topology == TOPOLOGY
        assert_same_weights(loaded.weights, artifacts.weights)
    # straight from the store, too
    direct = tfjsfs.load_weights(
        posixpath.join(server.store.url, "team/first"), storage_options=options
    )
    assert_same_weights(direct, artifacts.weights)
    listed = http("GET", f"{server.url}/models").json()["models"]
    assert [(m["name"], m["weightBytes"]) for m in listed] == [
        ("team/first", len(artifacts.weight_data))
    ]
    assert http("DELETE", server.model_url("team/first")).status == 200
    assert http("GET", f"{server.url}/models").json()["models"] == []


def test_reshard_stores_converter_shards(model_server):
    server = model_server(reshard=64 * 1024)
    artifacts = make_artifacts(6, extra=40_000)  # 160,000 + a few bytes of weights
    nbytes = len(artifacts.weight_data)
    tfjsfs.save_model(artifacts, server.model_url("sharded"))
    count = -(-nbytes // (64 * 1024))
    shards = [f"sharded/group1-shard{i}of{count}.bin" for i in range(1, count + 1)]
    assert stored_files(server) == sorted(["sharded/model.json", *shards])
    manifest = http("GET", server.model_url("sharded", "model.json")).json()["weightsManifest"]
    assert manifest[0]["paths"] == [posixpath.basename(s) for s in shards]
    assert_same_weights(tfjsfs.load_weights(plus_url(server, "sharded")), artifacts.weights)


def test_replace_and_create_only(model_server):
    server = model_server(grace_period=0)  # replaced files go at once
    first, second = make_artifacts(7), make_artifacts(8, units=6)
    url = server.model_url("m")
    assert tfjsfs.save_model(first, url).responses[0].status == 201
    reply = tfjsfs.save_model(second, url, method="PUT").responses[0]
    assert reply.status == 200 and reply.json()["replaced"] is True
    assert_same_weights(tfjsfs.load_weights(plus_url(server, "m")), second.weights)
    with pytest.raises(TransferError, match="412"):
        tfjsfs.save_model(first, url, headers={"If-None-Match": "*"})
    assert_same_weights(tfjsfs.load_weights(plus_url(server, "m")), second.weights)
    # the replaced shard is gone; the live one has a fresh name (readers never mix)
    paths = http("GET", server.model_url("m", "model.json")).json()["weightsManifest"][0]["paths"]
    assert stored_files(server) == sorted(["m/model.json", f"m/{posixpath.basename(paths[0])}"])


def test_listing_description_and_page(model_server):
    server = model_server()
    small, big = make_artifacts(9), make_artifacts(10, extra=1000)
    tfjsfs.save_model(small, server.model_url("a/small"))
    tfjsfs.save_model(big, server.model_url("b"))

    listing = http("GET", f"{server.url}/models").json()
    assert listing["store"] == "store-0"  # its name, never its location
    models = {m["name"]: m for m in listing["models"]}
    assert sorted(models) == ["a/small", "b"]
    for name, artifacts in (("a/small", small), ("b", big)):
        entry = models[name]
        json_size = len(http("GET", server.model_url(name, "model.json")).body)
        assert entry["weightCount"] == len(artifacts.weight_specs)
        assert entry["weightBytes"] == len(artifacts.weight_data)
        assert entry["size"] == json_size + len(artifacts.weight_data)
        assert entry["format"] == "layers-model"
        assert entry["complete"] is True
        assert entry["url"] == server.model_url(name)
        info = entry["modelArtifactsInfo"]
        assert info["weightDataBytes"] == len(artifacts.weight_data)
        assert info["modelTopologyBytes"] == artifacts.info().model_topology_bytes

    described = http("GET", server.model_url("b")).json()
    assert described["topology"]["kind"] == "layers"
    assert described["topology"]["className"] == "Sequential"
    assert [x["name"] for x in described["topology"]["layers"]] == ["dense_a", "dense_b"]
    assert [(w["name"], w["shape"], w["dtype"]) for w in described["weights"]] == [
        (s.name, list(s.shape), s.dtype) for s in big.weight_specs
    ]
    files = {f["path"]: f["size"] for f in described["files"]}
    assert files["model.weights.bin"] == len(big.weight_data)
    assert described["generatedBy"] == "tfjsfs tests"

    page = http("GET", f"{server.url}/", headers={"Accept": "text/html"})
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    text = page.body.decode()
    for name, artifacts in (("a/small", small), ("b", big)):
        assert f'href="/models/{name}"' in text
        assert f'<td class="num">{len(artifacts.weight_specs)}</td>' in text
    assert "layers-model" in text
    model_page = http("GET", server.model_url("b"), headers={"Accept": "text/html"})
    assert model_page.headers["content-type"].startswith("text/html")
    assert "dense_a/kernel" in model_page.body.decode()


def test_listing_skips_incomplete_writes(model_server):
    server = model_server()
    tfjsfs.save_model(make_artifacts(11), server.model_url("whole"))
    fs = server.store.fs.sync_fs
    fs.makedirs(posixpath.join(server.store.root, "orphan"))
    fs.pipe_file(posixpath.join(server.store.root, "orphan/group1-shard1of1.bin"), b"x" * 10)
    names = [m["name"] for m in http("GET", f"{server.url}/models").json()["models"]]
    assert names == ["whole"]
    assert http("GET", server.model_url("orphan")).status == 404


# ------------------------------------------------------------ file serving


def test_files_for_tf_load_layers_model(model_server):
    server = model_server()
    artifacts = make_artifacts(12, extra=2000)
    tfjsfs.save_model(artifacts, server.model_url("files"))
    weights = bytes(artifacts.weight_data)
    url = server.model_url("files", "model.weights.bin")

    whole = http("GET", url)
    assert whole.status == 200 and whole.body == weights
    assert whole.headers["content-length"] == str(len(weights))
    assert whole.headers["content-type"] == "application/octet-stream"
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["cache-control"] == "no-cache"
    etag = whole.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')

    part = http("GET", url, headers={"Range": "bytes=100-1099"})
    assert part.status == 206 and part.body == weights[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(weights)}"
    assert part.headers["content-length"] == "1000"
    tail = http("GET", url, headers={"Range": "bytes=-10"})
    assert tail.status == 206 and tail.body == weights[-10:]
    open_end = http("GET", url, headers={"Range": f"bytes={len(weights) - 3}-"})
    assert open_end.body == weights[-3:]
    past = http("GET", url, headers={"Range": f"bytes={len(weights)}-"})
    assert past.status == 416
    assert past.headers["content-range"] == f"bytes */{len(weights)}"
    assert past.json()["kind"] == "range-not-satisfiable"
    stale = http("GET", url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status == 200 and stale.body == weights

    cached = http("GET", url, headers={"If-None-Match": etag})
    assert cached.status == 304 and cached.body == b""
    assert cached.headers["etag"] == etag
    assert http("GET", url, headers={"If-None-Match": '"nope"'}).status == 200

    head = http("HEAD", url)
    assert head.status == 200 and head.body == b""
    assert head.headers["content-length"] == str(len(weights))

    doc = http("GET", server.model_url("files", "model.json"))
    assert doc.headers["content-type"].startswith("application/json")
    assert doc.json()["weightsManifest"][0]["paths"] == ["./model.weights.bin"]

    # a replaced bundle gets a new ETag
    tfjsfs.save_model(make_artifacts(13), server.model_url("files"))
    fresh = http("GET", server.model_url("files", "model.json"))
    assert fresh.headers["etag"] != doc.headers["etag"]


def test_only_bundle_files_are_served(model_server):
    server = model_server()
    tfjsfs.save_model(make_artifacts(14), server.model_url("m"))
    fs = server.store.fs.sync_fs
    fs.pipe_file(posixpath.join(server.store.root, "m/secret.bin"), b"not a shard")
    for file in ("secret.bin", "other.json", "group1-shard1of1.bin"):
        reply = http("GET", server.model_url("m", file))
        assert reply.status == 404, file
        assert reply.json()["kind"] == "not-found"
    assert http("GET", server.model_url("missing", "model.json")).status == 404


# ------------------------------------------------------------------ delete


def test_delete(model_server):
    server = model_server(grace_period=0)  # deleted files go at once
    tfjsfs.save_model(make_artifacts(15), server.model_url("outer"))
    inner = make_artifacts(16)
    tfjsfs.save_model(inner, server.model_url("outer/inner"))
    reply = http("DELETE", server.model_url("outer"))
    assert reply.status == 200
    assert reply.json()["deleted"] is True
    assert reply.json()["modelArtifactsInfo"]["weightDataBytes"] > 0
    assert stored_files(server) == ["outer/inner/model.json", "outer/inner/model.weights.bin"]
    assert http("GET", server.model_url("outer")).status == 404
    assert http("DELETE", server.model_url("outer")).status == 404
    assert_same_weights(tfjsfs.load_weights(plus_url(server, "outer/inner")), inner.weights)


# --------------------------------------------------------------- bad input


def expect_refused(reply, status: int, *words: str) -> dict:
    assert reply.status == status, reply.body[:500]
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert body["status"] == status
    for word in words:
        assert word in body["error"], body["error"]
    return body


def good_parts(seed: int = 20) -> list[FormPart]:
    return tfjs_parts(make_artifacts(seed))


BAD_UPLOADS = {
    "missing model.json": (lambda p: [p[1]], ["missing part 'model.json'"]),
    "missing weights": (lambda p: [p[0]], ["missing part 'model.weights.bin'", "bytes"]),
    "no parts": (lambda p: [], ["missing part 'model.json'"]),
    "wrong json field": (
        lambda p: [FormPart("model_json", p[0].data, "model.json", "application/json"), p[1]],
        ["unexpected form field 'model_json'"],
    ),
    "wrong weights field": (
        lambda p: [p[0], FormPart("weights", p[1].data, "model.weights.bin")],
        ["unexpected form field 'weights'"],
    ),
    "extra field": (lambda p: [*p, FormPart("note", b"hi")], ["unexpected form field 'note'"]),
    "duplicate part": (lambda p: [p[0], p[1], p[1]], ["appears more than once"]),
    "short weights": (
        lambda p: [p[0], FormPart("model.weights.bin", p[1].data[:-7], "model.weights.bin")],
        ["holds", "string weight 'labels'", "runs past its end"],
    ),
    "truncated weights": (
        lambda p: [p[0], FormPart("model.weights.bin", p[1].data[:40], "model.weights.bin")],
        ["holds 40 bytes", "weight 'dense_a/kernel'", "needs bytes 0..48", "short by 8"],
    ),
    "long weights": (
        lambda p: [p[0], FormPart("model.weights.bin", p[1].data + b"1234", "model.weights.bin")],
        ["4 unexpected trailing bytes", "'labels'"],
    ),
    "bad json": (
        lambda p: [FormPart("model.json", b"{nope", "model.json", "application/json"), p[1]],
        ["not valid JSON"],
    ),
    "no manifest": (
        lambda p: [
            FormPart("model.json", b'{"modelTopology": {}}', "model.json", "application/json"),
            p[1],
        ],
        ["weightsManifest"],
    ),
    "sharded manifest": (
        lambda p: [
            FormPart(
                "model.json",
                p[0].data.replace(b"./model.weights.bin", b"group1-shard1of1.bin"),
                "model.json",
            ),
            p[1],
        ],
        ["'group1-shard1of1.bin'", "one part"],
    ),
    "escaping manifest": (
        lambda p: [
            FormPart(
                "model.json",
                p[0].data.replace(b"./model.weights.bin", b"../../etc/passwd"),
                "model.json",
            ),
            p[1],
        ],
        ["'../../etc/passwd'"],
    ),
    "encoded part": (
        lambda p: [
            p[0],
            FormPart(
                "model.weights.bin",
                p[1].data,
                "model.weights.bin",
                headers={"Content-Transfer-Encoding": "base64"},
            ),
        ],
        ["Content-Transfer-Encoding"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_uploads_are_refused(model_server, case):
    server = model_server()
    build, words = BAD_UPLOADS[case]
    reply = post_parts(server.model_url("bad"), build(good_parts()))
    expect_refused(reply, 400, *words)
    assert stored_files(server) == []
    # the same server takes a good upload right after
    assert post_parts(server.model_url("bad"), good_parts()).status == 201


def test_not_multipart(model_server):
    server = model_server()
    reply = http(
        "POST",
        server.model_url("m"),
        upload_model_json(make_artifacts()),
        {"Content-Type": "application/json"},
    )
    expect_refused(reply, 400, "multipart/form-data")
    ctype, body = multipart_body(good_parts())
    broken = http("POST", server.model_url("m"), body[: len(body) // 2], {"Content-Type": ctype})
    expect_refused(broken, 400, "malformed")
    assert stored_files(server) == []


def test_oversized_upload(model_server):
    server = model_server(max_upload_bytes=2000)
    small = make_artifacts(21)
    big = make_artifacts(22, extra=1000)
    assert post_parts(server.model_url("small"), tfjs_parts(small)).status == 201
    reply = post_parts(server.model_url("big"), tfjs_parts(big))
    expect_refused(reply, 413, "limit of 2000 bytes")
    # no Content-Length: refused while streaming
    ctype, body = multipart_body(tfjs_parts(big))
    head = f"POST /models/big2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
    head += "Transfer-Encoding: chunked"
    chunked = b"".join(
        f"{len(body[i : i + 1000]):x}\r\n".encode() + body[i : i + 1000] + b"\r\n"
        for i in range(0, len(body), 1000)
    )
    expect_refused(raw_request(server.port, head, chunked + b"0\r\n\r\n"), 413, "limit")
    assert stored_files(server) == ["small/model.json", "small/model.weights.bin"]


BAD_NAMES = [
    "/models/a/../../etc",
    "/models/..",
    "/models/a/%2e%2e/%2e%2e/x",
    "/models/a%2F..%2F..%2Fx",
    "/models//abs",
    "/models/a//b",
    "/models/.hidden",
    "/models/x.json",
    "/models/a/b%5Cc",
    "/models/%00x",
    "/models/a/./b",
]


@pytest.mark.parametrize("path", BAD_NAMES)
def test_names_never_escape_the_store(model_server, path, tmp_path):
    server = model_server()
    ctype, body = multipart_body(good_parts())
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
    head += f"Content-Length: {len(body)}"
    reply = raw_request(server.port, head, body)
    assert reply.status == 400, (path, reply.body)
    assert reply.json()["kind"] == "bad-name"
    assert stored_files(server) == []
    # nothing was written anywhere near the store either
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store-0"]
    for method, suffix in (("DELETE", ""), ("GET", ""), ("GET", "/model.json")):
        other = raw_request(server.port, f"{method} {path}{suffix} HTTP/1.1\r\nHost: 127.0.0.1")
        assert other.status == 400, (method, path, suffix, other.body)


def test_tokens(model_server):
    server = model_server(token="w-token", read_token="r-token")
    url = server.model_url("guarded")
    artifacts = make_artifacts(23)
    missing = post_parts(url, tfjs_parts(artifacts))
    expect_refused(missing, 401, "bearer token")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = post_parts(url, tfjs_parts(artifacts), Authorization="Bearer nope")
    expect_refused(wrong, 401, "not valid")
    read_only = post_parts(url, tfjs_parts(artifacts), Authorization="Bearer r-token")
    expect_refused(read_only, 401, "not valid for writing")
    assert stored_files(server) == []

    tfjsfs.save_model(artifacts, url, headers={"Authorization": "Bearer w-token"})
    assert http("GET", f"{server.url}/models").status == 401
    assert http("GET", url, headers={"Authorization": "Bearer wrong"}).status == 401
    for token in ("r-token", "w-token"):
        got = http("GET", f"{server.url}/models", headers={"Authorization": f"Bearer {token}"})
        assert [m["name"] for m in got.json()["models"]] == ["guarded"]
    delete = http("DELETE", url, headers={"Authorization": "Bearer r-token"})
    assert delete.status == 401
    assert stored_files(server) == ["guarded/model.json", "guarded/model.weights.bin"]
    loaded = tfjsfs.load_weights(
        plus_url(server, "guarded"),
        storage_options={"headers": {"Authorization": "Bearer r-token"}},
    )
    assert_same_weights(loaded, artifacts.weights)


def test_read_token_leaves_the_bridge_page_open_but_not_its_data(model_server):
    server = model_server(token="w-token", read_token="r-token")
    tfjsfs.save_model(
        make_artifacts(25), server.model_url("m"), headers={"Authorization": "Bearer w-token"}
    )
    # What a browser opens by address (no Authorization header possible) is served.
    for path, ctype in (
        ("/bridge", "text/html"),
        ("/bridge/", "text/html"),
        ("/bridge/bridge.js", "text/javascript"),
    ):
        reply = http("GET", server.url + path)
        assert reply.status == 200, (path, reply.body)
        assert reply.headers["content-type"].startswith(ctype), path
        assert http("HEAD", server.url + path).status == 200, path
    page = http("GET", server.url + "/bridge").body.decode()
    assert 'src="/bridge/bridge.js"' in page
    # Every route that reads the store still needs the token.
    data_routes = [
        "/",
        "/models",
        "/models/m",
        "/models/m/model.json",
        "/bridge/api/models",
        "/bridge/api/models/m",
        "/bridge/api/weights/m",
    ]
    for path in data_routes:
        expect_refused(http("GET", server.url + path), 401, "bearer token")
    authorized = {"Authorization": "Bearer r-token"}
    listing = http("GET", server.url + "/bridge/api/models", headers=authorized)
    assert [m["name"] for m in listing.json()["models"]] == ["m"]
    meta = http("GET", server.url + "/bridge/api/models/m", headers=authorized).json()
    weights = http("GET", server.url + meta["weightsUrl"], headers=authorized)
    assert weights.body == bytes(memoryview(make_artifacts(25).weight_data).cast("B"))
    # Being public is for reading only: a push to the page's address is no write hole.
    pushed = post_parts(server.url + "/bridge", tfjs_parts(make_artifacts(26)))
    assert pushed.status in (401, 405)
    assert stored_files(server) == ["m/model.json", "m/model.weights.bin"]


def test_write_token_only_leaves_reads_open(model_server):
    server = model_server(token="w")
    assert post_parts(server.model_url("m"), good_parts()).status == 401
    assert http("GET", f"{server.url}/models").status == 200


# -------------------------------------------------------------------- CORS


def test_cors_any_origin(model_server):
    server = model_server(allowed_origins=("*",))  # writes from any page: opt-in
    origin = "http://127.0.0.1:9"
    pre = http(
        "OPTIONS",
        server.model_url("m"),
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert pre.status == 200
    assert pre.headers["access-control-allow-origin"] in ("*", origin)
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert "AUTHORIZATION" in pre.headers["access-control-allow-headers"].upper()
    reply = post_parts(server.model_url("m"), good_parts(), Origin=origin)
    assert reply.status == 201
    assert reply.headers["access-control-allow-origin"] in ("*", origin)
    shard = http("GET", server.model_url("m", "model.weights.bin"), headers={"Origin": origin})
    assert shard.headers["access-control-allow-origin"] in ("*", origin)
    assert "ETAG" in shard.headers["access-control-expose-headers"].upper()


def test_cors_restricted_origins(model_server):
    allowed, other = "http://127.0.0.1:1111", "http://127.0.0.1:2222"
    server = model_server(allowed_origins=[allowed])
    request = {"Access-Control-Request-Method": "PUT"}
    ok = http("OPTIONS", server.model_url("m"), headers={"Origin": allowed, **request})
    assert ok.status == 200
    assert ok.headers["access-control-allow-origin"] == allowed
    refused = http("OPTIONS", server.model_url("m"), headers={"Origin": other, **request})
    assert refused.status == 403
    plain = http("GET", f"{server.url}/models", headers={"Origin": other})
    assert "access-control-allow-origin" not in plain.headers


# ------------------------------------------------------------------- misc


def test_unknown_routes_and_methods_answer_json(model_server):
    server = model_server()
    expect_refused(http("GET", f"{server.url}/nothing"), 404)
    expect_refused(http("PATCH", server.model_url("m")), 405)
    assert http("GET", f"{server.url}/favicon.ico").status == 204


def test_spooled_upload_keeps_values(model_server, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    server = model_server(spool_memory=1024, spool_dir=str(spool))
    artifacts = make_artifacts(24, extra=50_000)
    tfjsfs.save_model(artifacts, server.model_url("spooled"))
    assert_same_weights(tfjsfs.load_weights(plus_url(server, "spooled")), artifacts.weights)
    assert list(spool.iterdir()) == []  # the spool file is gone


def test_store_accepts_any_dtype_mix(model_server):
    server = model_server()
    weights = {
        "c": np.array([1 + 2j, -3.5j], dtype=np.complex64),
        "empty": np.zeros((0, 3), dtype="f4"),
        "scalar": np.float32(7.25),
        "none": np.array([], dtype=object),
    }
    graph = {"node": [{"name": "x", "op": "Placeholder"}, {"name": "y", "op": "Relu"}]}
    artifacts = tfjsfs.ModelArtifacts.from_weights(graph, weights, format="graph-model")
    tfjsfs.save_model(artifacts, server.model_url("mix"))
    loaded = tfjsfs.load_model(plus_url(server, "mix"))
    assert loaded.model_topology == graph
    for name, value in weights.items():
        assert np.array_equal(loaded.weights[name], np.asarray(value)), name
    described = http("GET", server.model_url("mix")).json()
    assert described["topology"] == {
        "kind": "graph",
        "nodes": 2,
        "ops": {"Placeholder": 1, "Relu": 1},
    }
    assert described["format"] == "graph-model"
    stored = json.loads(http("GET", server.model_url("mix", "model.json")).body)
    assert stored["weightsManifest"][0]["weights"] == [s.to_json() for s in artifacts.weight_specs]
