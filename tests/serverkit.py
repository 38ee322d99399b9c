"""Helpers for the model-server tests: a threaded ``tfjsfs serve``, raw HTTP,
hand-built TF.js upload bodies and a subprocess server.

The server runs its aiohttp application on its own loop in a thread (the
test peers' :class:`peers._aioserver.ThreadedApp`), so synchronous tests,
async tests and tfjsfs's own fsspec loop can all talk to it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web
from peers._aioserver import ThreadedApp

import tfjsfs
from tfjsfs.server.app import STORE_KEY, create_app

REPO_ROOT = Path(__file__).resolve().parent.parent
TOPOLOGY = {
    "class_name": "Sequential",
    "config": {
        "name": "kit",
        "layers": [
            {"class_name": "Dense", "config": {"name": "dense_a", "units": 4}},
            {"class_name": "Dense", "config": {"name": "dense_b", "units": 2}},
        ],
    },
    "keras_version": "tfjs-layers 4.22.0",
    "backend": "tensor_flow.js",
}


class ModelServer(ThreadedApp):
    """``create_app(store, **options)`` served on 127.0.0.1 from a thread."""

    def __init__(self, store: str, **options: Any) -> None:
        super().__init__()
        self.store_url = store
        self.options = options
        self.app: web.Application | None = None

    def build_app(self) -> web.Application:
        self.app = create_app(self.store_url, **self.options)
        return self.app

    @property
    def store(self):
        """The server's :class:`tfjsfs.server.modelstore.ModelStore`."""
        return self.app[STORE_KEY]

    def model_url(self, name: str, file: str | None = None) -> str:
        url = f"{self.url}/models/{name}"
        return f"{url}/{file}" if file else url


def server_factory(tmp_path: Path) -> Iterator[Any]:
    """Body of the ``model_server`` fixture of the server tests.

    Yields ``make(store=None, **create_app_options) -> ModelServer``; the
    default store is a fresh local folder; servers stop afterwards.
    """
    servers: list[ModelServer] = []

    def make(store: str | None = None, **options: Any) -> ModelServer:
        if store is None:
            store = str(tmp_path / f"store-{len(servers)}")
        server = ModelServer(store, **options).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


# ------------------------------------------------------------------ models


def make_artifacts(seed: int = 0, units: int = 4, extra: int = 0) -> tfjsfs.ModelArtifacts:
    """A small layers-model-like bundle with float32, int32, bool and string weights.

    *extra* adds a float32 weight of that many elements (to make big bodies).
    """
    rng = np.random.default_rng(seed)
    weights: dict[str, Any] = {
        "dense_a/kernel": rng.standard_normal((3, units)).astype("f4"),
        "dense_a/bias": rng.standard_normal(units).astype("f4"),
        "dense_b/kernel": rng.standard_normal((units, 2)).astype("f4"),
        "counts": rng.integers(-9, 9, size=(2, 3)).astype("i4"),
        "mask": rng.integers(0, 2, size=5).astype(bool),
        "labels": np.array([f"label-{seed}".encode(), b"", "ünï".encode()], dtype=object),
    }
    if extra:
        weights["big"] = rng.standard_normal(extra).astype("f4")
    return tfjsfs.ModelArtifacts.from_weights(
        TOPOLOGY, weights, generated_by="tfjsfs tests", converted_by=None
    )


def assert_same_weights(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for name, value in want.items():
        assert got[name].dtype == value.dtype, name
        assert got[name].shape == value.shape, name
        assert np.array_equal(got[name], value), name


# -------------------------------------------------------------- raw bodies


@dataclass
class FormPart:
    """One part of a hand-built ``multipart/form-data`` body."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)


def multipart_body(parts: Sequence[FormPart], boundary: str | None = None) -> tuple[str, bytes]:
    """``(content_type, body)`` for *parts*, laid out as browsers do."""
    boundary = boundary or f"----tfjsfsTestBoundary{uuid.uuid4().hex}"
    out = bytearray()
    for part in parts:
        out += f"--{boundary}\r\n".encode()
        disposition = f'form-data; name="{part.name}"'
        if part.filename is not None:
            disposition += f'; filename="{part.filename}"'
        out += f"Content-Disposition: {disposition}\r\n".encode()
        if part.content_type:
            out += f"Content-Type: {part.content_type}\r\n".encode()
        for key, value in part.headers.items():
            out += f"{key}: {value}\r\n".encode()
        out += b"\r\n" + part.data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", bytes(out)


def tfjs_parts(artifacts: tfjsfs.ModelArtifacts) -> list[FormPart]:
    """The two parts TF.js sends for *artifacts* (built by tfjsfs.model.http)."""
    from tfjsfs.model.http import upload_model_json

    return [
        FormPart("model.json", upload_model_json(artifacts), "model.json", "application/json"),
        FormPart(
            "model.weights.bin",
            bytes(memoryview(artifacts.weight_data).cast("B")),
            "model.weights.bin",
            "application/octet-stream",
        ),
    ]


# ---------------------------------------------------------------- HTTP I/O


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> Reply:
    """One request with urllib; any status comes back as a :class:`Reply`."""
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as err:
        return Reply(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())


def post_parts(url: str, parts: Sequence[FormPart], **headers: str) -> Reply:
    ctype, body = multipart_body(parts)
    return http("POST", url, body, {"Content-Type": ctype, **headers})


def raw_request(port: int, head: str, body: bytes = b"", timeout: float = 30) -> Reply:
    """Send *head* (request line and headers, no blank line) and *body* verbatim.

    For paths no client library would send unchanged (``..`` segments).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\nConnection: close\r\n\r\n" + body)
        data = bytearray()
        while chunk := sock.recv(65536):
            data += chunk
    header_blob, _, payload = bytes(data).partition(b"\r\n\r\n")
    lines = header_blob.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return Reply(status, headers, payload)


# ------------------------------------------------------- subprocess server


class ServerProcess:
    """``python -m tfjsfs.server STORE --port 0`` (``tfjsfs serve``) in a subprocess.

    The base URL comes from the line the server prints once it listens.
    """

    def __init__(self, store: str, *args: str, env: Mapping[str, str] | None = None):
        command = [sys.executable, "-m", "tfjsfs.server", store, "--port", "0", *args]
        self.proc = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.stderr: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        line = self.proc.stdout.readline()
        match = re.search(r"at (http://127\.0\.0\.1:(\d+))/", line)
        if not match:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"server did not start: {line!r} {''.join(self.stderr)}")
        self.url = match.group(1)
        self.port = int(match.group(2))

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
