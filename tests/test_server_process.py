"""``python -m tfjsfs.server`` as a real process: SIGKILL in the middle of an
upload (while receiving, and while writing to an S3 store) leaves no visible
bundle; SIGTERM finishes the upload in flight, then exits; access log.
"""

from __future__ import annotations

import posixpath
import signal
import socket
import time

import numpy as np
from serverkit import (
    ServerProcess,
    assert_same_weights,
    http,
    make_artifacts,
    multipart_body,
    tfjs_parts,
)

import tfjsfs


def _start_upload(port: int, path: str, body: bytes, ctype: str, first: int) -> socket.socket:
    """Open a connection and send the request head and the first *first* body bytes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    sock.sendall(head.encode() + body[:first])
    return sock


def _reply(sock: socket.socket) -> tuple[int, bytes]:
    data = bytearray()
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _wait_for(predicate, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def test_sigkill_while_receiving_leaves_nothing(tmp_path):
    store, spool = tmp_path / "store", tmp_path / "spool"
    spool.mkdir()
    artifacts = make_artifacts(40, extra=5_000_000)  # 20 MB of weights
    ctype, body = multipart_body(tfjs_parts(artifacts))
    server = ServerProcess(str(store), "--spool-dir", str(spool))
    try:
        sock = _start_upload(server.port, "/models/victim", body, ctype, len(body) * 2 // 3)
        # the spool file appears once the weights outgrow memory: the server is mid-upload
        _wait_for(lambda: any(spool.iterdir()), what="the upload to spool")
        server.kill()
        sock.close()
    finally:
        server.stop()
    assert [p for p in store.rglob("*") if p.is_file()] == []

    again = ServerProcess(str(store))
    try:
        assert http("GET", f"{again.url}/models").json()["models"] == []
        assert http("GET", f"{again.url}/models/victim").status == 404
        saved = tfjsfs.save_model(artifacts, f"{again.url}/models/victim")
        assert saved.responses[0].status == 201
    finally:
        again.stop()
    assert_same_weights(tfjsfs.load_weights(str(store / "victim")), artifacts.weights)


def test_sigkill_while_writing_to_s3_leaves_no_bundle(s3_server, s3_bucket):
    """Kill the server once some shards are in S3 but model.json is not: the
    store then holds no bundle, and a restarted server lists none."""
    fs = s3_server.filesystem()
    store = f"s3://{s3_bucket}/store"
    options = [f"--storage-option={k}={v}" for k, v in s3_server.storage_options.items()]
    artifacts = make_artifacts(41, extra=1_000_000)  # 4 MB in 1 KiB shards
    ctype, body = multipart_body(tfjs_parts(artifacts))

    def objects() -> list[str]:
        fs.invalidate_cache()
        return [posixpath.basename(p) for p in fs.find(f"{s3_bucket}/store")]

    caught_mid_write = False
    for attempt in range(3):
        name = f"victim{attempt}"
        server = ServerProcess(store, "--reshard", "1024", *options)
        try:
            sock = _start_upload(server.port, f"/models/{name}", body, ctype, len(body))
            _wait_for(lambda: any(p.endswith(".bin") for p in objects()), what="shards in S3")
            server.kill()
            sock.close()
        finally:
            server.stop()
        names = objects()
        if "model.json" not in names:
            caught_mid_write = True
            assert any(n.startswith("group1-shard") for n in names)
            break
        fs.rm(f"{s3_bucket}/store", recursive=True)  # too late: the upload had finished
    assert caught_mid_write, "the upload finished before the server could be killed"

    again = ServerProcess(store, *options)
    try:
        assert http("GET", f"{again.url}/models").json()["models"] == []
        assert http("GET", f"{again.url}/models/{name}").status == 404
        assert http("GET", f"{again.url}/models/{name}/model.json").status == 404
        # the name is free: a new upload over the leftovers is whole
        tfjsfs.save_model(artifacts, f"{again.url}/models/{name}")
        loaded = tfjsfs.load_weights(
            f"tfjs+s3://{s3_bucket}/store/{name}", storage_options=s3_server.storage_options
        )
        assert_same_weights(loaded, artifacts.weights)
    finally:
        again.stop()


def test_sigterm_finishes_the_upload_in_flight(tmp_path):
    store, spool = tmp_path / "store", tmp_path / "spool"
    spool.mkdir()
    artifacts = make_artifacts(42, extra=3_000_000)  # 12 MB: spooled to a file
    ctype, body = multipart_body(tfjs_parts(artifacts))
    server = ServerProcess(str(store), "--shutdown-timeout", "60", "--spool-dir", str(spool))
    try:
        assert http("GET", f"{server.url}/models").status == 200
        sock = _start_upload(server.port, "/models/late", body, ctype, len(body) * 3 // 4)
        _wait_for(lambda: any(spool.iterdir()), what="the handler to spool the upload")
        server.signal(signal.SIGTERM)
        # no new connections, but the old one is still served
        _wait_for(lambda: _refused(server.port), what="the listener to close")
        assert server.proc.poll() is None
        sock.sendall(body[len(body) * 3 // 4 :])
        status, reply = _reply(sock)
        assert status == 201, reply
        assert server.wait(60) == 0
    finally:
        server.stop()
    assert_same_weights(tfjsfs.load_weights(str(store / "late")), artifacts.weights)
    log = "".join(server.stderr)
    assert '"GET /models HTTP/1.1" 200' in log  # access log
    assert '"POST /models/late HTTP/1.1" 201' in log
    assert "shutting down" in log


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_module_runs_with_options(tmp_path):
    store = tmp_path / "store"
    server = ServerProcess(
        str(store), "--reshard", "--allow-origin", "http://127.0.0.1:5", env={"TFJSFS_TOKEN": "t"}
    )
    try:
        artifacts = tfjsfs.ModelArtifacts.from_weights(
            {"x": 1}, {"w": np.arange(2_000_000, dtype="f4")}
        )
        assert post_status(server, artifacts, None) == 401
        tfjsfs.save_model(
            artifacts, f"{server.url}/models/m", headers={"Authorization": "Bearer t"}
        )
        pre = http(
            "OPTIONS",
            f"{server.url}/models/m",
            headers={"Origin": "http://127.0.0.1:6", "Access-Control-Request-Method": "POST"},
        )
        assert pre.status == 403
    finally:
        server.stop()
    assert sorted(p.name for p in (store / "m").iterdir()) == [
        "group1-shard1of2.bin",
        "group1-shard2of2.bin",
        "model.json",
    ]


def post_status(server, artifacts, token: str | None) -> int:
    ctype, body = multipart_body(tfjs_parts(artifacts))
    headers = {"Content-Type": ctype}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return http("POST", f"{server.url}/models/m", body, headers).status
