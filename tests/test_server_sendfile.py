"""Local folder stores are sent with the kernel's sendfile, with the same replies.

Two ``tfjsfs serve`` applications over one folder, one sending with sendfile
(the default) and one reading and writing in steps (``sendfile=False``, the
path every store took before): for model.json, a small shard (tagged by its
bytes) and a streamed shard, every GET/HEAD/Range/If-Range/If-None-Match/
If-Modified-Since reply is the same status, headers and bytes. A reader in
the middle of a download gets the whole version it started, whatever happens
to the file's name meanwhile; a file truncated in place aborts the connection.
"""

from __future__ import annotations

import email.utils
import os
import re
import socket
import time

import numpy as np
import pytest
from serverkit import http, make_artifacts, raw_request, server_factory

import tfjsfs
from tfjsfs.server.opened import SENT, OpenedFile, open_local
from tfjsfs.server.routes import ContentTags

#: 4.6 MB of float32 beside the kit's weights: above the 4 MiB read-whole size.
EXTRA = 1_150_000


@pytest.fixture
def model_server(tmp_path):
    yield from server_factory(tmp_path)


def _reply(port: int, method: str, path: str, headers: dict[str, str]):
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}"
    head += "".join(f"\r\n{k}: {v}" for k, v in headers.items())
    reply = raw_request(port, head)
    reply.headers.pop("date", None)
    return reply.status, reply.headers, reply.body


def _requests(etag: str, size: int) -> list[tuple[str, dict[str, str]]]:
    later = email.utils.formatdate(time.time() + 3600, usegmt=True)
    earlier = email.utils.formatdate(time.time() - 3600, usegmt=True)
    asked = [
        {},
        {"Range": "bytes=0-0"},
        {"Range": "bytes=5-9"},
        {"Range": "bytes=-1"},
        {"Range": f"bytes=-{size + 50}"},
        {"Range": f"bytes={size - 2}-{size + 100}"},
        {"Range": "bytes=100-"},
        {"Range": "bytes=9-5"},
        {"Range": "bytes=0-1,4-5"},
        {"Range": "items=0-1"},
        {"Range": f"bytes={size}-"},
        {"Range": "bytes=-0"},
        {"If-None-Match": etag},
        {"If-None-Match": f'"x", W/{etag}'},
        {"If-None-Match": '"other"', "If-Modified-Since": later},
        {"If-Modified-Since": later},
        {"If-Modified-Since": earlier},
        {"Range": "bytes=5-9", "If-Range": etag},
        {"Range": "bytes=5-9", "If-Range": f"W/{etag}"},
        {"Range": "bytes=5-9", "If-Range": later},
        {"Range": "bytes=5-9", "If-Range": earlier},
    ]
    return [(m, h) for h in asked for m in ("GET", "HEAD")]


def test_sendfile_replies_are_those_of_the_stepwise_path(model_server, tmp_path):
    store = str(tmp_path / "store")
    kernel = model_server(store)
    steps = model_server(store, sendfile=False)
    tfjsfs.save_model(make_artifacts(3, extra=EXTRA), kernel.model_url("big"))
    tfjsfs.save_model(make_artifacts(4), kernel.model_url("small"))
    time.sleep(2.1)  # tags are remembered for files unchanged for 2 s (ContentTags.settle)
    files = []
    for name in ("big", "small"):  # (read from the other app: the kernel's tags stay unknown)
        doc = http("GET", steps.model_url(name, "model.json")).json()
        (shard,) = doc["weightsManifest"][0]["paths"]
        files += [(name, "model.json"), (name, shard.removeprefix("./"))]
    for name, file in files:
        path = f"/models/{name}/{file}"
        before = SENT["sendfile"]
        first = _reply(kernel.port, "GET", path, {})  # small files: their bytes hashed
        size = len(first[2])
        big = size > 4 * 1024 * 1024
        assert SENT["sendfile"] - before == (1 if big else 0)
        assert first == _reply(steps.port, "GET", path, {})
        for method, headers in _requests(first[1]["etag"], size):
            before = SENT["sendfile"]
            want = _reply(steps.port, method, path, headers)
            assert SENT["sendfile"] == before, "sendfile=False sent with sendfile"
            got = _reply(kernel.port, method, path, headers)
            assert got == want, (file, method, headers)
            body_sent = method == "GET" and want[0] in (200, 206)
            # every body goes by sendfile (small files: once their tag is known)
            assert SENT["sendfile"] - before == body_sent, (file, method, headers)


def _start_download(port: int, path: str) -> tuple[socket.socket, int, bytearray]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    received = bytearray()
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    declared = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    return sock, declared, bytearray(body)


def _big_model(seed: int) -> tfjsfs.ModelArtifacts:
    rng = np.random.default_rng(seed)
    weights = {"big": rng.standard_normal(8 * 1024 * 1024).astype("f4")}  # 32 MiB
    return tfjsfs.ModelArtifacts.from_weights(make_artifacts(0).model_topology, weights)


def test_a_download_in_progress_keeps_the_version_it_started(model_server):
    """Overwritten (the old file deleted at once) and renamed over mid-download:
    the reader gets every byte of the version it started, sent by sendfile."""
    server = model_server(grace_period=0)
    old, new = _big_model(1), _big_model(2)
    old_bytes = bytes(memoryview(old.weight_data).cast("B"))
    tfjsfs.save_model(old, server.model_url("m"))
    doc = http("GET", server.model_url("m", "model.json")).json()
    (shard,) = doc["weightsManifest"][0]["paths"]
    shard = shard.removeprefix("./")
    path = os.path.join(server.store_url, "m", shard)
    before = SENT["sendfile"]
    sock, declared, body = _start_download(server.port, f"/models/m/{shard}")
    with sock:
        body += sock.recv(65536)
        assert declared == len(old_bytes) and len(body) < declared
        tfjsfs.save_model(new, server.model_url("m"), method="PUT")  # old files go at once
        assert not os.path.exists(path)
        while chunk := sock.recv(1 << 20):
            body += chunk
    assert bytes(body) == old_bytes
    assert SENT["sendfile"] == before + 1

    doc = http("GET", server.model_url("m", "model.json")).json()
    (shard,) = doc["weightsManifest"][0]["paths"]
    shard = shard.removeprefix("./")
    path = os.path.join(server.store_url, "m", shard)
    new_bytes = bytes(memoryview(new.weight_data).cast("B"))
    sock, declared, body = _start_download(server.port, f"/models/m/{shard}")
    with sock:
        body += sock.recv(65536)
        with open(path + ".tmp", "wb") as f:
            f.write(old_bytes[: len(old_bytes) // 2])
        os.replace(path + ".tmp", path)  # renamed over behind the server's back
        while chunk := sock.recv(1 << 20):
            body += chunk
    assert bytes(body) == new_bytes


def test_a_file_truncated_under_sendfile_aborts_the_connection(model_server):
    """Truncated in place while it is sent: fewer bytes than declared and the
    connection closes; it never hangs and is never padded."""
    server = model_server()
    tfjsfs.save_model(_big_model(3), server.model_url("m"))
    doc = http("GET", server.model_url("m", "model.json")).json()
    (shard,) = doc["weightsManifest"][0]["paths"]
    shard = shard.removeprefix("./")
    before = SENT["sendfile"]
    sock, declared, body = _start_download(server.port, f"/models/m/{shard}")
    with sock:
        body += sock.recv(65536)
        os.truncate(os.path.join(server.store_url, "m", shard), 1024 * 1024)
        while chunk := sock.recv(1 << 20):  # a hang raises socket.timeout here
            body += chunk
    assert declared == 32 * 1024 * 1024 and len(body) < declared
    assert SENT["sendfile"] == before + 1
    assert http("GET", server.model_url("m", "model.json")).status == 200  # still serving


def test_content_tags_of_files_changed_just_now_are_not_remembered(tmp_path):
    """A second write within the file system's time tick would keep a file's
    identity: tags are remembered only for files unchanged for ``settle`` s."""
    path = tmp_path / "w.bin"
    path.write_bytes(b"x" * 100)
    tags = ContentTags(settle=2.0)
    fd, info = open_local(str(path))
    with OpenedFile(str(path), info, fd=fd) as fresh:
        tags.put(fresh, '"fresh"')
        assert tags.get(fresh) is None
        dev, ino, size, mtime, ctime = fresh.identity
        fresh.identity = (dev, ino, size, mtime, ctime - 3_000_000_000)  # as if 3 s old
        tags.put(fresh, '"settled"')
        assert tags.get(fresh) == '"settled"'


def test_a_client_gone_mid_sendfile_is_no_error(model_server, caplog):
    """The server notices the closed connection, logs no error, and serves on."""
    server = model_server()
    artifacts = _big_model(4)
    tfjsfs.save_model(artifacts, server.model_url("m"))
    doc = http("GET", server.model_url("m", "model.json")).json()
    (shard,) = doc["weightsManifest"][0]["paths"]
    shard = shard.removeprefix("./")
    before = SENT["sendfile"]
    with caplog.at_level("INFO"):
        for _ in range(3):
            sock, _, _ = _start_download(server.port, f"/models/m/{shard}")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            sock.close()  # a reset, mid-body
        whole = http("GET", server.model_url("m", shard))
    assert whole.body == bytes(memoryview(artifacts.weight_data).cast("B"))
    assert SENT["sendfile"] == before + 4
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [], [r.getMessage() for r in errors]
