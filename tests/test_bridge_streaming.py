"""The bridge's weights route streams from the store; its upload is spooled and
limited like the server's own uploads."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from serverkit import (
    ServerProcess,
    http,
    make_artifacts,
    multipart_body,
    post_parts,
    server_factory,
    tfjs_parts,
)

import tfjsfs

MIB = 1024 * 1024


@pytest.fixture
def model_server(tmp_path):
    yield from server_factory(tmp_path)


def _peak_rss_mib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) // 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_four_pulls_of_a_64_mib_model_stay_small(tmp_path):
    """4 concurrent pulls of 64 MiB: the server's peak RSS grows by less than
    two copies of the model (it used to hold two copies per pull)."""
    weights = {"big": np.random.default_rng(5).standard_normal(16 * MIB).astype("f4")}
    artifacts = tfjsfs.ModelArtifacts.from_weights(make_artifacts(0).model_topology, weights)
    tfjsfs.save_model(artifacts, tmp_path / "store" / "m", shard_size=4 * MIB)
    want = bytes(memoryview(artifacts.weight_data).cast("B"))
    server = ServerProcess(str(tmp_path / "store"))
    try:
        meta = json.loads(http("GET", f"{server.url}/bridge/api/models/m").body)
        assert meta["weightDataBytes"] == len(want)
        url = server.url + meta["weightsUrl"]
        before = _peak_rss_mib(server.proc.pid)
        bodies: list[bytes] = []

        def pull() -> None:
            with urllib.request.urlopen(url, timeout=120) as reply:
                bodies.append(reply.read())

        threads = [threading.Thread(target=pull) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        growth = _peak_rss_mib(server.proc.pid) - before
    finally:
        server.stop()
    assert len(bodies) == 4 and all(b == want for b in bodies)
    assert growth < 2 * 64, f"peak RSS grew by {growth} MiB for 4 pulls of 64 MiB"


def test_weights_route_refuses_a_short_weight_file(model_server):
    server = model_server()
    kit = make_artifacts(3, extra=100)
    numeric = {k: v for k, v in kit.weights.items() if v.dtype != object}
    artifacts = tfjsfs.ModelArtifacts.from_weights(kit.model_topology, numeric)
    tfjsfs.save_model(artifacts, server.model_url("m"), layout="upload")
    shard = Path(server.store.root) / "m" / "model.weights.bin"
    shard.write_bytes(shard.read_bytes()[:-4])
    meta = json.loads(http("GET", f"{server.url}/bridge/api/models/m").body)
    reply = http("GET", server.url + meta["weightsUrl"])
    assert reply.status == 400, reply.body
    error = reply.json()
    assert error["kind"] == "SizeMismatch"
    size = len(memoryview(artifacts.weight_data).cast("B"))
    for words in ("model.weights.bin", f"hold {size - 4} bytes", f"m/model.json declares {size}"):
        assert words in error["error"], error["error"]


def test_bridge_push_honours_the_json_limit(model_server):
    server = model_server(max_json_bytes=300)
    reply = post_parts(f"{server.url}/bridge/api/models/m", tfjs_parts(make_artifacts(4)))
    assert reply.status == 413, reply.body
    assert "300 bytes" in reply.json()["error"]
    assert http("GET", server.model_url("m")).status == 404


def test_bridge_push_spools_into_the_spool_dir(model_server, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    server = model_server(spool_memory=1024, spool_dir=str(spool))
    artifacts = make_artifacts(6, extra=300_000)  # beyond one 256 KiB read
    ctype, body = multipart_body(tfjs_parts(artifacts))
    head = (
        "POST /bridge/api/models/spooled HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(head.encode() + body[:-100])
        deadline = time.monotonic() + 30
        while not any(p.name.startswith("tfjsfs-upload-") for p in spool.iterdir()):
            assert time.monotonic() < deadline, "no spool file in the spool dir"
            time.sleep(0.05)
        sock.sendall(body[-100:])
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 201"), reply[:300]
    assert list(spool.iterdir()) == []  # removed once stored
    loaded = tfjsfs.load_weights(server.model_url("spooled").replace("http://", "tfjs+http://"))
    for key, value in artifacts.weights.items():
        assert np.array_equal(loaded[key], value), key
