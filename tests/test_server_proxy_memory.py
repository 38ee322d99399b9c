"""Without ``--redirect-reads``, object store files are proxied with bounded memory.

A client that reads slowly does not make the server read the whole object:
it reads ``STREAM_CHUNK`` bytes at a time, one read ahead of what the socket
takes, and the client still gets every byte. Meanwhile another client is
served in full (one slow reader stalls no one).
"""

from __future__ import annotations

import re
import socket
import time

import numpy as np
import pytest
from serverkit import http, make_artifacts, server_factory

import tfjsfs
from tfjsfs.server.routes import STREAM_CHUNK


@pytest.fixture
def model_server(tmp_path):
    yield from server_factory(tmp_path)


def test_a_slow_reader_of_a_proxied_file_holds_a_bounded_amount(
    model_server, s3_server, s3_bucket
):
    server = model_server(f"s3://{s3_bucket}/store", storage_options=s3_server.storage_options)
    rng = np.random.default_rng(5)
    weights = {"big": rng.standard_normal(12 * 1024 * 1024).astype("f4")}  # 48 MiB
    artifacts = tfjsfs.ModelArtifacts.from_weights(make_artifacts(0).model_topology, weights)
    want = bytes(memoryview(artifacts.weight_data).cast("B"))
    tfjsfs.save_model(artifacts, server.model_url("m"))
    doc = http("GET", server.model_url("m", "model.json")).json()
    path = doc["weightsManifest"][0]["paths"][0].removeprefix("./")

    store = server.store
    requested = []
    read = store.read

    async def counting_read(p, start, end):
        requested.append((end or 0) - (start or 0))
        return await read(p, start, end)

    store.read = counting_read  # the store's own reads, counted
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    with sock:
        sock.sendall(f"GET /models/m/{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        received = bytearray()
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        head, _, body = bytes(received).partition(b"\r\n\r\n")
        assert int(re.search(rb"Content-Length: (\d+)", head).group(1)) == len(want)
        # the reader stalls; wait until the server stops reading ahead
        last, steady = -1, 0
        while steady < 5:
            time.sleep(0.2)
            now = sum(requested)
            steady = steady + 1 if now == last else 0
            last = now
        # socket buffers hold a few MiB; the server holds its chunk and one read ahead
        assert STREAM_CHUNK <= last <= 4 * STREAM_CHUNK < len(want), f"read {last} bytes"
        # another client is served in full meanwhile
        assert http("GET", server.model_url("m", path)).body == want
        body = bytearray(body)
        while len(body) < len(want):
            chunk = sock.recv(1 << 20)
            assert chunk, f"connection closed after {len(body)} of {len(want)} bytes"
            body += chunk
    assert bytes(body) == want
