"""``tfjsfs serve`` under load: 32 concurrent uploads and downloads (local and
S3 stores), racing replacements of one name, and a large upload streamed to
the store without being held twice in memory.
"""

from __future__ import annotations

import hashlib
import http.client as httpclient
import json
import posixpath
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from serverkit import (
    FormPart,
    assert_same_weights,
    http,
    make_artifacts,
    multipart_body,
    server_factory,
)

import tfjsfs
from tfjsfs.errors import ShardMissingError
from tfjsfs.model.http import upload_model_json

CONCURRENCY = 32


@pytest.fixture
def model_server(tmp_path):
    yield from server_factory(tmp_path)


def _plus(url: str) -> str:
    return url.replace("http://", "tfjs+http://")


def _models(first_seed: int, count: int) -> list[tfjsfs.ModelArtifacts]:
    # sizes from a few hundred bytes to ~200 kB, all different
    return [
        make_artifacts(first_seed + i, units=3 + i % 7, extra=(i * 7919) % 50_000)
        for i in range(count)
    ]


@pytest.mark.parametrize("store_kind", ["local", "s3"])
def test_32_concurrent_uploads_and_downloads(model_server, store_kind, request):
    if store_kind == "s3":
        s3 = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        server = model_server(f"s3://{bucket}/store", storage_options=s3.storage_options)
    else:
        server = model_server()
    first, second = _models(100, CONCURRENCY), _models(200, CONCURRENCY)
    url = server.model_url

    def upload(item) -> int:
        name, artifacts = item
        return tfjsfs.save_model(artifacts, url(name)).responses[0].status

    def download(item) -> None:
        name, artifacts = item
        loaded = tfjsfs.load_model(_plus(url(name)))
        assert_same_weights(loaded.weights, artifacts.weights)
        raw = http("GET", url(name, "model.weights.bin"))
        assert raw.body == bytes(artifacts.weight_data)
        assert json.loads(http("GET", url(name, "model.json")).body)["weightsManifest"][0][
            "weights"
        ] == [s.to_json() for s in artifacts.weight_specs]

    batch_one = [(f"one/m{i}", a) for i, a in enumerate(first)]
    batch_two = [(f"two/m{i}", a) for i, a in enumerate(second)]
    with ThreadPoolExecutor(2 * CONCURRENCY) as pool:
        assert list(pool.map(upload, batch_one)) == [201] * CONCURRENCY
        # uploads of the second batch race downloads of the first
        uploads = [pool.submit(upload, item) for item in batch_two]
        downloads = [pool.submit(download, item) for item in batch_one]
        assert [f.result() for f in uploads] == [201] * CONCURRENCY
        for f in downloads:
            f.result()
        list(pool.map(download, batch_two))

    listed = http("GET", f"{server.url}/models").json()["models"]
    sizes = {m["name"]: m["weightBytes"] for m in listed}
    want = {n: len(a.weight_data) for n, a in batch_one + batch_two}
    assert sizes == want


@pytest.mark.parametrize("reshard", [False, 1024])
def test_racing_replacements_never_tear(model_server, reshard):
    """16 uploads to one name while 32 readers load it: every read is one
    upload's weights exactly (never a mix of two), or, for a reader holding a
    model.json that was replaced meanwhile, a clean missing-shard error; the
    survivor is one upload, intact, with no leftover files."""
    server = model_server(reshard=reshard, grace_period=0)  # replaced files go at once
    base = make_artifacts(300, extra=2000)  # ~8 kB: 9 shards when resharded
    versions = [
        tfjsfs.ModelArtifacts.from_weights(
            base.model_topology,
            {k: v + i if v.dtype.kind == "f" else v for k, v in base.weights.items()},
        )
        for i in range(16)
    ]
    url = server.model_url("same")
    tfjsfs.save_model(versions[0], url)

    def which(loaded: tfjsfs.ModelArtifacts) -> int:
        matches = [
            i
            for i, v in enumerate(versions)
            if all(np.array_equal(loaded.weights[k], v.weights[k]) for k in v.weights)
        ]
        assert len(matches) == 1, "a read mixed the weights of several uploads"
        return matches[0]

    def read(_: int) -> int | str:
        try:
            return which(tfjsfs.load_model(_plus(url)))
        except ShardMissingError:
            return "replaced under the reader"

    with ThreadPoolExecutor(CONCURRENCY + 16) as pool:
        writes = [pool.submit(tfjsfs.save_model, a, url) for a in versions]
        reads = [pool.submit(read, i) for i in range(CONCURRENCY)]
        statuses = sorted(w.result().responses[0].status for w in writes)
        outcomes = [r.result() for r in reads]
    assert statuses == [200] * 16
    assert all(isinstance(o, int) or o == "replaced under the reader" for o in outcomes)
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        after = list(pool.map(read, range(CONCURRENCY)))
    assert len(set(after)) == 1 and isinstance(after[0], int)  # one survivor, readable
    doc = json.loads(http("GET", server.model_url("same", "model.json")).body)
    live = sorted(posixpath.basename(p) for p in doc["weightsManifest"][0]["paths"])
    folder = posixpath.join(server.store.root, "same")
    files = sorted(posixpath.basename(p) for p in server.store.fs.sync_fs.ls(folder, detail=False))
    assert files == sorted(["model.json", *live])  # no leftovers


@pytest.mark.parametrize("reshard", [False, True])
def test_large_upload_is_streamed_not_held_twice(model_server, tmp_path, reshard):
    size = 32 * 1024 * 1024
    weights = np.random.default_rng(7).standard_normal(size // 4).astype("f4")
    artifacts = tfjsfs.ModelArtifacts.from_weights({"class_name": "Big"}, {"big": weights})
    model_json = upload_model_json(artifacts)
    digest = hashlib.sha256(weights.tobytes()).hexdigest()
    parts = [
        FormPart("model.json", model_json, "model.json", "application/json"),
        FormPart("model.weights.bin", b"@@WEIGHTS@@", "model.weights.bin"),
    ]
    ctype, template = multipart_body(parts)
    head, tail = template.split(b"@@WEIGHTS@@")
    body_path = tmp_path / "body.bin"
    with open(body_path, "wb") as f:
        f.write(head)
        f.write(weights.tobytes())
        f.write(tail)
    del weights, artifacts
    server = model_server(reshard=reshard, spool_dir=str(tmp_path), spool_memory=1 << 20)

    tracemalloc.start()
    try:
        conn = httpclient.HTTPConnection("127.0.0.1", server.port, timeout=120)
        with open(body_path, "rb") as body:
            conn.request(
                "POST",
                "/models/big",
                body=body,
                headers={"Content-Type": ctype, "Content-Length": str(body_path.stat().st_size)},
            )
        reply = conn.getresponse()
        status, answer = reply.status, reply.read()
        conn.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 201, answer
    assert peak < size // 4, f"{peak} bytes of Python memory for a {size}-byte upload"

    fs = server.store.fs.sync_fs
    doc = json.loads(http("GET", server.model_url("big", "model.json")).body)
    stored = hashlib.sha256()
    for path in doc["weightsManifest"][0]["paths"]:
        stored.update(fs.cat_file(posixpath.join(server.store.root, "big", path)))
    assert stored.hexdigest() == digest
    assert len(doc["weightsManifest"][0]["paths"]) == (8 if reshard else 1)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("tfjsfs-upload-")] == []


@pytest.mark.parametrize("kind", ["s3", "gcs"])
def test_spooled_upload_is_put_from_the_spool_file(model_server, kind, request, tmp_path):
    """Weights spooled to disk reach object stores with ``put_file`` (streamed)."""
    peer = request.getfixturevalue(f"{kind}_server")
    bucket = request.getfixturevalue(f"{kind}_bucket")
    scheme = "s3" if kind == "s3" else "gs"
    server = model_server(
        f"{scheme}://{bucket}/models",
        storage_options=peer.storage_options,
        spool_memory=1024,
        spool_dir=str(tmp_path),
    )
    artifacts = make_artifacts(400, extra=300_000)
    tfjsfs.save_model(artifacts, server.model_url("spooled"))
    stored = peer.filesystem().cat_file(f"{bucket}/models/spooled/model.weights.bin")
    assert stored == bytes(artifacts.weight_data)
    assert_same_weights(tfjsfs.load_weights(_plus(server.model_url("spooled"))), artifacts.weights)
    assert [p for p in tmp_path.iterdir() if p.name.startswith("tfjsfs-upload-")] == []
