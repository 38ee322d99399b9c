"""The attacker's checklist for ``tfjsfs serve``: every probe, against a real
server process and in-process servers on 127.0.0.1.

A server on a laptop is reachable by every web page its user opens and by
everything on the machine (or network). Each probe is what an attacker would
send; each test checks the server's exact answer and that nothing changed in
the store. Probes that passed before the hardening stay here too, so none
regresses: constant-time token comparison, read-token mode, names with
``..``/``%2e%2e``, XSS through names and metadata, Range edge cases.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hmac
import json
import posixpath
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from serverkit import (
    REPO_ROOT,
    TOPOLOGY,
    ServerProcess,
    http,
    make_artifacts,
    multipart_body,
    post_parts,
    raw_request,
    server_factory,
    tfjs_parts,
)

import tfjsfs
from tfjsfs.server.app import IN_FLIGHT_KEY, create_app

EVIL = "https://evil.example"


@pytest.fixture
def model_server(tmp_path):
    yield from server_factory(tmp_path)


def stored_files(server) -> list[str]:
    store = server.store
    fs = store.fs.sync_fs if hasattr(store.fs, "sync_fs") else store.fs
    if not fs.exists(store.root):
        return []
    return sorted(posixpath.relpath(p, store.root) for p in fs.find(store.root))


def refused(reply, status: int, *words: str) -> dict:
    assert reply.status == status, (reply.status, reply.body[:500])
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert body["status"] == status
    for word in words:
        assert word in body["error"], body["error"]
    return body


def upload_head(path: str, ctype: str, length: int, port: int, *extra: str) -> str:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Content-Type: {ctype}",
        f"Content-Length: {length}",
        *extra,
    ]
    return "\r\n".join(lines)


def open_stalled_upload(port: int, path: str = "/models/slow") -> socket.socket:
    """Headers of a 1 MB upload plus its first few bytes, then silence."""
    ctype, body = multipart_body(tfjs_parts(make_artifacts(3)))
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = upload_head(path, ctype, len(body) + 1_000_000, port)
    sock.sendall(head.encode() + b"\r\n\r\n" + body[:40])
    return sock


def read_reply(sock: socket.socket) -> tuple[int, bytes]:
    """Everything until the server closes the connection: (status, body)."""
    data = bytearray()
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def wait_until(predicate, what: str, limit: float = 30) -> None:
    deadline = time.monotonic() + limit  # a hang guard, not a timing assertion
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


# ------------------------------------------------------- a real tfjsfs serve


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``python -m tfjsfs.server`` over a store with model ``m``, no token."""
    store = tmp_path_factory.mktemp("served") / "store"
    tfjsfs.save_model(make_artifacts(1), str(store / "m"))
    server = ServerProcess(str(store))
    server.store = store
    yield server
    server.stop()


def test_process_reads_stay_open_to_every_origin(served):
    listing = http("GET", f"{served.url}/models", headers={"Origin": EVIL})
    assert listing.status == 200 and listing.headers["access-control-allow-origin"] in ("*", EVIL)
    assert [m["name"] for m in listing.json()["models"]] == ["m"]
    pre = http(
        "OPTIONS",
        f"{served.url}/models/m/model.json",
        headers={"Origin": EVIL, "Access-Control-Request-Method": "GET"},
    )
    assert pre.status == 200 and pre.headers["access-control-allow-origin"] == EVIL


def test_process_cross_origin_delete_is_refused(served):
    """Item 4: any web page could DELETE (``curl -X DELETE -H 'Origin: evil'`` was 200)."""
    url = f"{served.url}/models/m"
    body = refused(http("DELETE", url, headers={"Origin": EVIL}), 403, "--allow-origin", EVIL)
    assert body["kind"] == "origin-not-allowed"
    assert (served.store / "m" / "model.json").exists()
    pre = http("OPTIONS", url, headers={"Origin": EVIL, "Access-Control-Request-Method": "DELETE"})
    refused(pre, 403, "--allow-origin")
    assert "access-control-allow-methods" not in pre.headers


def test_process_refuses_any_content_encoding(served):
    """Item 7: ``tfjsfs serve`` never inflates a body; every encoding is a 415."""
    ctype, body = multipart_body(tfjs_parts(make_artifacts(2)))
    for encoding, data in (("gzip", gzip.compress(body)), ("br", body), ("x-new", body)):
        for path in ("/models/enc", "/bridge/api/models/enc"):
            head = upload_head(
                path, ctype, len(data), served.port, f"Content-Encoding: {encoding}"
            )
            reply = refused(raw_request(served.port, head, data), 415, encoding)
            assert reply["kind"] == "encoded-body"
    assert not (served.store / "enc").exists()


def test_process_cross_origin_form_post_is_refused(served):
    """Item 4: a multipart POST needs no preflight, so the server itself must refuse it."""
    reply = post_parts(f"{served.url}/models/planted", tfjs_parts(make_artifacts(2)), Origin=EVIL)
    refused(reply, 403, "--allow-origin")
    assert not (served.store / "planted").exists()


def test_process_host_must_name_the_server(served):
    """Item 4 (DNS rebinding): ``Host: evil.example`` was answered like the server's own."""
    for method in ("GET", "DELETE"):
        reply = raw_request(served.port, f"{method} /models/m HTTP/1.1\r\nHost: evil.example")
        body = refused(reply, 421, "--allow-host evil.example")
        assert body["kind"] == "bad-host"
    assert (served.store / "m" / "model.json").exists()
    for host in (f"127.0.0.1:{served.port}", f"localhost:{served.port}", "app.localhost"):
        reply = raw_request(served.port, f"GET /models HTTP/1.1\r\nHost: {host}")
        assert reply.status == 200, host


def test_process_warns_that_writes_are_open(served):
    """Item 4: the start-up log says plainly who may write."""
    wait_until(lambda: any("writes are open" in line for line in served.stderr), "the warning")
    line = next(line for line in served.stderr if "writes are open" in line)
    assert "TFJSFS_TOKEN" in line and "delete" in line


def test_process_with_a_token_does_not_warn(tmp_path):
    server = ServerProcess(str(tmp_path / "s"), env={"TFJSFS_TOKEN": "secret-w"})
    try:
        assert http("GET", f"{server.url}/models").status == 200
    finally:
        server.stop()
    time.sleep(0.2)  # let the reader thread take the last lines
    assert not any("writes are open" in line for line in server.stderr)
    assert not any("secret-w" in line for line in server.stderr)


@pytest.mark.parametrize("how", ["variable", "flag", "read-variable"])
def test_process_empty_token_is_a_startup_error(tmp_path, how):
    """Item 4 / Also found: an empty token silently meant "no token"."""
    args, env = [], {}
    if how == "flag":
        args = ["--token", ""]
    else:
        env = {"TFJSFS_TOKEN" if how == "variable" else "TFJSFS_READ_TOKEN": ""}
    command = [sys.executable, "-m", "tfjsfs.server", str(tmp_path / "s"), "--port", "0", *args]
    try:
        done = subprocess.run(
            command,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**__import__("os").environ, **env},
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("the server started with an empty token") from exc
    assert done.returncode == 2
    assert "empty" in done.stderr and "serving" not in done.stdout


def test_process_shutdown_does_not_wait_for_a_stalled_upload(tmp_path):
    """Item 5: shutdown waited up to 60 s for an upload whose body stopped."""
    server = ServerProcess(str(tmp_path / "s"))  # --shutdown-timeout stays 60 s
    sock = open_stalled_upload(server.port)
    try:
        assert http("GET", f"{server.url}/models").status == 200  # the upload is in flight
        server.signal(15)
        try:
            code = server.wait(20)
        except subprocess.TimeoutExpired as exc:
            server.kill()
            raise AssertionError("shutdown waited for the stalled upload") from exc
        assert code == 0
    finally:
        sock.close()
        server.stop()
    assert not (tmp_path / "s" / "slow").exists()


# ----------------------------------------------------------------- origins


def test_same_origin_and_allowed_origins_may_write(model_server):
    allowed = "http://127.0.0.1:5173"
    server = model_server(allowed_origins=(allowed,))
    parts = tfjs_parts(make_artifacts(4))
    assert post_parts(server.model_url("own"), parts, Origin=server.url).status == 201
    pre = http(
        "OPTIONS",
        server.model_url("own"),
        headers={"Origin": allowed, "Access-Control-Request-Method": "DELETE"},
    )
    assert pre.status == 200 and pre.headers["access-control-allow-origin"] == allowed
    assert "DELETE" in pre.headers["access-control-allow-methods"]
    deleted = http("DELETE", server.model_url("own"), headers={"Origin": allowed})
    assert deleted.status == 200 and deleted.json()["deleted"] is True
    refused(post_parts(server.model_url("x"), parts, Origin=EVIL), 403, "--allow-origin")
    # the bridge's push is a write like any other
    refused(post_parts(f"{server.url}/bridge/api/models/x", parts, Origin=EVIL), 403)
    refused(http("OPTIONS", server.model_url("x"), headers={"Origin": "null"}), 403)
    # "own" is gone (its shards stay a grace period for readers mid-load); "x" never came
    assert not [f for f in stored_files(server) if f.startswith("x/") or f.endswith("model.json")]
    assert [m["name"] for m in http("GET", f"{server.url}/models").json()["models"]] == []


def test_allowed_origin_does_not_survive_dns_rebinding(model_server):
    allowed = "http://app.example"
    server = model_server(allowed_origins=(allowed,), allowed_hosts=("models.example",))
    head = "DELETE /models/m HTTP/1.1\r\nHost: app.example\r\nOrigin: http://app.example"
    refused(raw_request(server.port, head), 421)
    ok = raw_request(server.port, "GET /models HTTP/1.1\r\nHost: models.example:8080")
    assert ok.status == 200


def test_links_are_never_built_from_the_host_header(model_server):
    """Also found: ``Host: evil.example`` yielded ``http://evil.example/models/...`` links."""
    server = model_server()
    tfjsfs.save_model(make_artifacts(5), server.model_url("m"))
    own = f"http://127.0.0.1:{server.port}"
    head = f"GET /models HTTP/1.1\r\nHost: localhost:{server.port}"
    entry = json.loads(raw_request(server.port, head).body)["models"][0]
    assert (entry["url"], entry["modelUrl"]) == (f"{own}/models/m", f"{own}/models/m/model.json")
    head = f"GET / HTTP/1.1\r\nHost: localhost:{server.port}\r\nAccept: text/html"
    page = raw_request(server.port, head).body.decode()
    assert f"{own}/models/my-model" in page and "localhost" not in page


# ------------------------------------------------------------------- tokens


def test_read_token_alone_never_opens_writes(model_server):
    """Item 4: with only TFJSFS_READ_TOKEN, writes and deletes were open."""
    server = model_server(read_token="r-token")
    tfjsfs.save_model(make_artifacts(6), str(Path(server.store.root) / "m"))
    before = stored_files(server)
    parts = tfjs_parts(make_artifacts(7))
    for headers in ({}, {"Authorization": "Bearer r-token"}):
        body = refused(post_parts(server.model_url("new"), parts, **headers), 403, "read token")
        assert body["kind"] == "read-only"
        refused(http("DELETE", server.model_url("m"), headers=headers), 403)
    assert stored_files(server) == before == ["m/group1-shard1of1.bin", "m/model.json"]
    assert http("GET", f"{server.url}/models").status == 401
    ok = http("GET", f"{server.url}/models", headers={"Authorization": "Bearer r-token"})
    assert [m["name"] for m in ok.json()["models"]] == ["m"]


def test_startup_warnings_say_who_may_write(tmp_path):
    from tfjsfs.server.app import startup_warnings

    def warnings(host: str, **options) -> list[str]:
        return startup_warnings(create_app(str(tmp_path / "s"), **options), host, "http://h:1")

    (local,) = warnings("127.0.0.1")
    assert local.startswith("writes are open: every program on this machine")
    (network,) = warnings("0.0.0.0")
    assert "anyone on the network" in network and "TFJSFS_TOKEN" in network
    (pages,) = warnings("127.0.0.1", token="w", allowed_origins=("*",))
    assert pages.startswith("--allow-origin '*': every web page")
    assert warnings("0.0.0.0", token="w") == warnings("::", read_token="r") == []


def test_empty_token_is_refused_by_create_app(tmp_path):
    for options in ({"token": ""}, {"read_token": "  "}):
        with pytest.raises(tfjsfs.TFJSError, match="empty"):
            create_app(str(tmp_path / "s"), **options)


def test_non_utf8_bearer_token_is_401(model_server):
    """Item 7: a bearer token that is not UTF-8 was a 500."""
    server = model_server(token="w-token")
    ctype, body = multipart_body(tfjs_parts(make_artifacts(8)))
    head = upload_head(
        "/models/m", ctype, len(body), server.port, "Authorization: Bearer \xff\xfe"
    )
    reply = raw_request(server.port, head, body)
    refused(reply, 401, "not valid")
    assert stored_files(server) == []


def test_read_token_mode(model_server):
    server = model_server(token="w-token", read_token="r-token")
    url = f"{server.url}/models"
    assert http("GET", url).status == 401
    assert http("GET", url, headers={"Authorization": "Bearer r-token"}).status == 200
    assert http("GET", url, headers={"Authorization": "Bearer w-token"}).status == 200
    assert http("GET", url, headers={"Authorization": "Bearer r-tokeX"}).status == 401
    parts = tfjs_parts(make_artifacts(9))
    reply = post_parts(server.model_url("m"), parts, Authorization="Bearer r-token")
    refused(reply, 401, "not valid for writing")
    assert post_parts(server.model_url("m"), parts, Authorization="Bearer w-token").status == 201


def test_token_comparison_is_constant_time(model_server, monkeypatch):
    """Every token check goes through ``hmac.compare_digest``, for every candidate."""
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((bytes(a), bytes(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    server = model_server(token="w-token", read_token="r-token")
    for given in ("w-tokeX", "r", "w-token-and-more"):
        reply = http("GET", f"{server.url}/models", headers={"Authorization": f"Bearer {given}"})
        assert reply.status == 401
    assert {(a, b) for a, b in calls} == {
        (given.encode(), want)
        for given in ("w-tokeX", "r", "w-token-and-more")
        for want in (b"r-token", b"w-token")
    }


# -------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "path",
    [
        "/models/..%2fsecret",
        "/models/%2e%2e/secret",
        "/models/a/%2e%2e/%2e%2e/x",
        "/models/a/../../x",
        "/models/%2e%2e",
    ],
)
def test_names_with_dot_dot_never_escape(model_server, path, tmp_path):
    server = model_server()
    ctype, body = multipart_body(tfjs_parts(make_artifacts(10)))
    reply = raw_request(server.port, upload_head(path, ctype, len(body), server.port), body)
    assert reply.status in (400, 404), reply.body
    for method in ("GET", "DELETE"):
        other = raw_request(server.port, f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1")
        assert other.status in (400, 404), (method, other.body)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store-0"]
    assert stored_files(server) == []


def test_name_length_is_counted_in_utf8_bytes(model_server):
    """Item 7: 200 times 'é' passed the 255-character check, then the store failed (502)
    with its absolute path in the reply."""
    server = model_server()
    parts = tfjs_parts(make_artifacts(11))
    root = server.store.root
    for name in ("é" * 200, "é" * 128, "a/" + "é" * 200):
        reply = post_parts(server.model_url(urllib.parse.quote(name)), parts)
        body = refused(reply, 400, "bytes")
        assert body["kind"] == "bad-name" and root not in reply.body.decode()
    fits = "é" * 127  # 254 bytes
    assert post_parts(server.model_url(urllib.parse.quote(fits)), parts).status == 201
    assert stored_files(server) == [f"{fits}/model.json", f"{fits}/model.weights.bin"]


@pytest.mark.parametrize("char", ["\u202e", "\u202d", "\u2066", "\u2069", "\u200f", "\u061c"])
def test_names_with_bidi_controls_are_refused(model_server, char):
    """Item 7: ``report\u202efdp.exe`` displays as another name."""
    server = model_server()
    name = urllib.parse.quote(f"report{char}nib.json-x")
    reply = post_parts(server.model_url(name), tfjs_parts(make_artifacts(12)))
    body = refused(reply, 400, f"U+{ord(char):04X}")
    assert body["kind"] == "bad-name"
    assert stored_files(server) == []


# ---------------------------------------------------------- store location


def test_store_location_never_reaches_a_client(model_server, tmp_path):
    """Item 7 / Also found: ``/``, ``GET /models``, errors and the bridge's push
    reply showed the store's absolute location."""
    server = model_server()
    root = server.store.root
    tfjsfs.save_model(make_artifacts(13), server.model_url("m"))
    replies = {
        "index": http("GET", f"{server.url}/", headers={"Accept": "text/html"}),
        "listing": http("GET", f"{server.url}/models"),
        "model page": http("GET", server.model_url("m"), headers={"Accept": "text/html"}),
        "description": http("GET", server.model_url("m")),
        "bridge listing": http("GET", f"{server.url}/bridge/api/models"),
        "bridge page": http("GET", f"{server.url}/bridge"),
        "bridge missing": http("GET", f"{server.url}/bridge/api/models/nothing"),
        "missing": http("GET", server.model_url("nothing")),
        "missing file": http("GET", server.model_url("nothing", "model.json")),
        "bridge push": post_parts(
            f"{server.url}/bridge/api/models/pushed", tfjs_parts(make_artifacts(14))
        ),
        "bridge exists": post_parts(
            f"{server.url}/bridge/api/models/pushed", tfjs_parts(make_artifacts(14))
        ),
    }
    assert [r.status for r in replies.values()] == [200] * 6 + [404] * 3 + [201, 409]
    for what, reply in replies.items():
        text = reply.body.decode()
        assert root not in text and str(tmp_path) not in text, what
    assert replies["listing"].json()["store"] == "store-0"
    assert replies["bridge listing"].json()["store"] == "store-0"
    assert sorted(replies["bridge push"].json()["files"]) == ["model.json", "model.weights.bin"]
    assert "<store>" in replies["bridge missing"].json()["error"]


# ------------------------------------------------------------------ headers


def test_nosniff_everywhere_and_a_csp_on_pages(model_server):
    """Item 4: pages could be framed and files sniffed."""
    server = model_server()
    tfjsfs.save_model(make_artifacts(15), server.model_url("m"))
    replies = {
        "index": http("GET", f"{server.url}/", headers={"Accept": "text/html"}),
        "model page": http("GET", server.model_url("m"), headers={"Accept": "text/html"}),
        "bridge page": http("GET", f"{server.url}/bridge"),
        "listing": http("GET", f"{server.url}/models"),
        "model.json": http("GET", server.model_url("m", "model.json")),
        "shard": http("GET", server.model_url("m", "model.weights.bin")),
        "script": http("GET", f"{server.url}/bridge/bridge.js"),
        "error": http("GET", server.model_url("none")),
    }
    for what, reply in replies.items():
        assert reply.headers["x-content-type-options"] == "nosniff", what
    for what in ("index", "model page", "bridge page"):
        csp = replies[what].headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["frame-ancestors"] == "'none'", what
        assert directives["default-src"] == "'none'"
        for value in directives.values():
            assert "http" not in value and "*" not in value, csp
    assert "content-security-policy" not in replies["shard"].headers


def test_xss_through_names_and_metadata_is_escaped(model_server):
    server = model_server()
    name = "<img src=x onerror=alert(1)>"
    topology = json.loads(json.dumps(TOPOLOGY))
    topology["config"]["layers"][0]["config"]["name"] = "<script>alert(2)</script>"
    artifacts = tfjsfs.ModelArtifacts.from_weights(
        topology,
        {"<b>w</b>": make_artifacts(16).weights["dense_a/bias"]},
        generated_by="<script>alert(3)</script>",
    )
    tfjsfs.save_model(artifacts, str(Path(server.store.root) / name))
    index = http("GET", f"{server.url}/", headers={"Accept": "text/html"}).body.decode()
    quoted = urllib.parse.quote(name)
    page = http("GET", server.model_url(quoted), headers={"Accept": "text/html"})
    assert page.status == 200
    text = page.body.decode()
    for raw in ("<img src=x", "<script>alert", "<b>w</b>"):
        assert raw not in index and raw not in text, raw
    assert "&lt;img src=x onerror=alert(1)&gt;" in index
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in text
    assert "&lt;b&gt;w&lt;/b&gt;" in text


# -------------------------------------------------------------------- Range


def test_range_edge_cases(model_server):
    server = model_server()
    artifacts = make_artifacts(17)
    tfjsfs.save_model(artifacts, server.model_url("m"))
    data = bytes(memoryview(artifacts.weight_data).cast("B"))
    size = len(data)
    url = server.model_url("m", "model.weights.bin")

    def get(value: str):
        return http("GET", url, headers={"Range": value})

    cases = {
        "bytes=0-0": (206, data[:1], f"bytes 0-0/{size}"),
        "bytes=-1": (206, data[-1:], f"bytes {size - 1}-{size - 1}/{size}"),
        f"bytes=-{size + 50}": (206, data, f"bytes 0-{size - 1}/{size}"),
        f"bytes={size - 2}-{size + 100}": (206, data[-2:], f"bytes {size - 2}-{size - 1}/{size}"),
        "bytes=5-2": (200, data, None),
        "bytes=0-1,4-5": (200, data, None),
        "items=0-1": (200, data, None),
        "bytes=x-y": (200, data, None),
    }
    for value, (status, body, content_range) in cases.items():
        reply = get(value)
        assert (reply.status, reply.body) == (status, body), value
        assert reply.headers.get("content-range") == content_range, value
    for value in (f"bytes={size}-", "bytes=-0", f"bytes={size + 10}-{size + 20}"):
        reply = get(value)
        refused(reply, 416)
        assert reply.headers["content-range"] == f"bytes */{size}"


# ----------------------------------------------------------------- uploads


def test_encoded_uploads_are_refused_with_415(model_server):
    """Item 7: gzip uploads were inflated before the size limit; bad gzip was a 500."""
    server = model_server(max_upload_bytes=1 << 20)
    ctype, body = multipart_body(tfjs_parts(make_artifacts(18)))
    bodies = {
        "gzip": gzip.compress(body),
        "bad gzip": b"\x1f\x8b\x08\x00not gzip at all",
        "bomb": gzip.compress(b"\0" * (32 << 20)),
    }
    for path in ("/models/m", "/bridge/api/models/m"):
        for what, data in bodies.items():
            head = upload_head(path, ctype, len(data), server.port, "Content-Encoding: gzip")
            body_ = refused(raw_request(server.port, head, data), 415, "Content-Encoding")
            assert body_["kind"] == "encoded-body", what
    assert stored_files(server) == []
    head = upload_head("/models/m", ctype, len(body), server.port, "Content-Encoding: identity")
    assert raw_request(server.port, head, body).status == 201


def test_a_stalled_upload_is_cut_after_its_idle_timeout(model_server, tmp_path):
    """Item 5: headers and a few bytes, then silence, held the connection for good."""
    spool = tmp_path / "spool"
    spool.mkdir()
    server = model_server(upload_idle_timeout=1, spool_dir=str(spool))
    sock = open_stalled_upload(server.port)
    with sock:
        try:
            status, body = read_reply(sock)  # the server answers and closes
        except TimeoutError as exc:
            raise AssertionError("the stalled upload's connection stayed open") from exc
    assert status == 408
    assert json.loads(body)["kind"] == "timeout"
    assert stored_files(server) == [] and list(spool.iterdir()) == []
    # and the server goes on serving
    assert post_parts(server.model_url("after"), tfjs_parts(make_artifacts(19))).status == 201


def test_concurrent_uploads_are_capped(model_server):
    """Item 5: there was no cap on uploads held open at once."""
    server = model_server(max_uploads=2)
    socks = [open_stalled_upload(server.port, f"/models/slow{i}") for i in range(2)]
    try:
        wait_until(lambda: server.app[IN_FLIGHT_KEY].count == 2, "two uploads in flight")
        reply = post_parts(server.model_url("third"), tfjs_parts(make_artifacts(20)))
        body = refused(reply, 503, "retry")
        assert body["kind"] == "busy" and int(reply.headers["retry-after"]) > 0
        assert http("GET", f"{server.url}/models").status == 200  # reads are not capped
    finally:
        for sock in socks:
            sock.close()
    wait_until(lambda: server.app[IN_FLIGHT_KEY].count == 0, "the stalled uploads to end")
    assert post_parts(server.model_url("third"), tfjs_parts(make_artifacts(20))).status == 201
    assert stored_files(server) == ["third/model.json", "third/model.weights.bin"]


# ------------------------------------------------------- one error wrapper


async def test_bridge_errors_are_json_in_any_application(tmp_path):
    """Item 5 of the brief: the bridge uses the middleware's error wrapper, so an
    application without the server's middlewares answers JSON too."""
    from tfjsfs.server.bridge import setup_bridge

    def refuse(request):
        raise web.HTTPUnauthorized(text="no pushes from here")

    app = web.Application()
    setup_bridge(app, str(tmp_path / "s"), authorize=refuse)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        ctype, body = multipart_body(tfjs_parts(make_artifacts(21)))
        reply = await client.post(
            "/bridge/api/models/m", data=body, headers={"Content-Type": ctype}
        )
        assert reply.status == 401
        assert await reply.json() == {
            "error": "no pushes from here",
            "kind": "HTTPUnauthorized",
            "status": 401,
        }
        missing = await client.get("/bridge/api/models/nothing")
        assert missing.status == 404 and (await missing.json())["kind"] == "not-found"
    finally:
        await client.close()
    with contextlib.suppress(FileNotFoundError):
        assert list((tmp_path / "s").iterdir()) == []
    await asyncio.sleep(0)
