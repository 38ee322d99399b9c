"""The real test peers work with real clients: netguard, moto S3, fake-gcs-server,
the static HTTP(S) server with its faults and counters, and the upload receiver."""

from __future__ import annotations

import os
import pickle
import re
import socket
import subprocess
import sys
import textwrap

import aiohttp
import fsspec
import pytest
from peers import netguard
from peers.upload import parse_multipart

# -- netguard ----------------------------------------------------------------


def _unbound(sock: socket.socket) -> bool:
    """True while the kernel never auto-bound the socket, i.e. no connect() or
    sendto() system call happened on it."""
    return sock.getsockname()[1] == 0


@pytest.mark.parametrize("address", [("10.255.255.1", 80), ("192.0.2.1", 443)])
def test_netguard_refuses_tcp_connect_before_the_syscall(address):
    with netguard.expect_refusals() as got, socket.socket() as sock:
        with pytest.raises(netguard.NetworkRefused, match=re.escape(repr(address))):
            sock.connect(address)
        assert _unbound(sock)
    assert [(r.event, r.address) for r in got] == [("socket.connect", address)]


def test_netguard_refuses_connect_ex_and_udp_sendto():
    with netguard.expect_refusals() as got:
        with socket.socket() as tcp, pytest.raises(netguard.NetworkRefused):
            tcp.connect_ex(("192.0.2.1", 80))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            with pytest.raises(netguard.NetworkRefused, match=r"sendto to \('192\.0\.2\.1'"):
                udp.sendto(b"x", ("192.0.2.1", 53))
            assert _unbound(udp)
            with pytest.raises(netguard.NetworkRefused):
                udp.connect(("8.8.8.8", 80))
    assert [r.event for r in got] == ["socket.connect", "socket.sendto", "socket.connect"]
    assert [r.udp_probe for r in got] == [False, False, True]


def test_netguard_refuses_name_lookups_and_wildcard_bind():
    with netguard.expect_refusals() as got:
        with pytest.raises(socket.gaierror, match=r"example\.invalid"):
            socket.getaddrinfo("example.invalid", 80)
        with pytest.raises(netguard.NameRefused):
            socket.gethostbyname("example.com")
        with pytest.raises(netguard.NameRefused, match=r"192\.0\.2\.9"):
            socket.gethostbyaddr("192.0.2.9")  # a reverse lookup queries DNS
        with socket.socket() as sock, pytest.raises(netguard.NetworkRefused):
            sock.bind(("0.0.0.0", 0))
        # Resolving an IP literal sends nothing; connecting to it is refused.
        assert socket.getaddrinfo("10.1.2.3", 80)[0][4][:2] == ("10.1.2.3", 80)
    assert [r.event for r in got] == [
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "socket.bind",
    ]


def test_netguard_allows_loopback():
    assert {ai[4][0] for ai in socket.getaddrinfo("localhost", 80)} <= {"127.0.0.1", "::1"}
    before = len(netguard.refusals())
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            conn, _ = server.accept()
            with conn:
                client.sendall(b"ping")
                assert conn.recv(4) == b"ping"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(b"x", ("127.5.6.7", 9))  # all of 127.0.0.0/8 is loopback
    assert len(netguard.refusals()) == before


def test_netguard_allows_ipv6_loopback():
    try:
        server = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with server, socket.create_connection(("::1", server.getsockname()[1])):
        conn, _ = server.accept()
        conn.close()


async def test_netguard_surfaces_through_aiohttp(netguard_refusals):
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorError) as info:
            await session.get("http://10.255.255.1:81/model.json")
    assert isinstance(info.value.os_error, netguard.NetworkRefused)
    assert "10.255.255.1" in str(info.value.os_error)


def test_netguard_is_active_in_python_subprocesses():
    code = textwrap.dedent(
        """
        import os, socket
        print(os.environ.get("TFJSFS_NETGUARD"))
        try:
            socket.create_connection(("10.255.255.1", 80), timeout=30)
        except OSError as exc:
            print(type(exc).__name__, exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout.splitlines()
    assert out[0] == "1"
    assert out[1].startswith("NetworkRefused netguard: refused socket.connect")
    assert "'10.255.255.1', 80" in out[1]


def test_netguard_report_fails_a_test_with_an_unexpected_refusal(tmp_path):
    """A refusal swallowed by the code under test still fails the test."""
    (tmp_path / "test_swallow.py").write_text(
        textwrap.dedent(
            """
            import socket

            def test_swallowed():
                try:
                    socket.create_connection(("192.0.2.7", 80))
                except OSError:
                    pass
            """
        )
    )
    args = ["-q", "-p", "peers.fixtures", "-p", "no:cacheprovider", "--rootdir", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *args, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "netguard refused network access" in proc.stdout
    assert "192.0.2.7" in proc.stdout


# -- S3 (moto) -------------------------------------------------------------------


def test_s3_pipe_cat_range_and_create_mode(s3_server, s3_bucket):
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server.storage_options)
    data = os.urandom(300_000)
    path = f"{s3_bucket}/dir/shard1.bin"
    fs.pipe_file(path, data)
    assert fs.cat_file(path) == data
    assert fs.cat_file(path, start=1000, end=70_000) == data[1000:70_000]
    assert fs.cat_ranges([path, path], [0, 299_990], [5, None]) == [data[:5], data[-10:]]
    assert fs.info(path)["size"] == len(data)
    with pytest.raises(FileExistsError):
        fs.pipe_file(path, b"other", mode="create")
    assert fs.cat_file(path) == data
    assert fs.ls(s3_bucket, detail=False) == [f"{s3_bucket}/dir"]


def test_s3_buckets_are_fresh_and_unique(s3_server, s3_bucket):
    other = s3_server.new_bucket()
    fs = s3_server.filesystem()
    assert other != s3_bucket
    assert fs.ls(s3_bucket) == [] and fs.ls(other) == []
    s3_server.remove_bucket(other)
    fs.invalidate_cache()
    assert not fs.exists(other)


async def test_s3_async_client_on_the_test_loop(s3_server, s3_bucket):
    import s3fs

    fs = s3fs.S3FileSystem(asynchronous=True, **s3_server.storage_options)
    session = await fs.set_session()
    try:
        await fs._pipe_file(f"{s3_bucket}/a", b"0123456789")
        assert await fs._cat_file(f"{s3_bucket}/a", start=3, end=6) == b"345"
    finally:
        await session.close()


def test_instance_caches_start_empty(s3_server, fsspec_instance_caches):
    import s3fs

    assert fsspec_instance_caches.counts() == {}
    s3fs.S3FileSystem(**s3_server.storage_options)
    assert fsspec_instance_caches.counts() == {"S3FileSystem": 1}


def test_instance_caches_are_cleared_between_tests(fsspec_instance_caches):
    assert fsspec_instance_caches.counts() == {}


# -- GCS (fake-gcs-server) ----------------------------------------------------------


def test_gcs_pipe_cat_range_and_create_mode(gcs_server, gcs_bucket):
    import gcsfs

    assert os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] == "false"
    assert os.environ["STORAGE_EMULATOR_HOST"] == gcs_server.endpoint_url
    fs = gcsfs.GCSFileSystem(**gcs_server.storage_options)
    data = os.urandom(300_000)
    path = f"{gcs_bucket}/dir/shard1.bin"
    fs.pipe_file(path, data)
    assert fs.cat_file(path) == data
    assert fs.cat_file(path, start=1000, end=70_000) == data[1000:70_000]
    assert fs.info(path)["size"] == len(data)
    with pytest.raises(FileExistsError):
        fs.pipe_file(path, b"other", mode="create")
    assert fs.cat_file(path) == data
    assert fs.ls(gcs_bucket, detail=False) == [f"{gcs_bucket}/dir"]


def test_gcs_server_log_is_drained(gcs_server, gcs_bucket):
    """More than the 64 KiB pipe buffer of log must not stall the server."""
    fs = gcs_server.filesystem()
    fs.pipe_file(f"{gcs_bucket}/x", b"abc")
    start = gcs_server.log_bytes
    while gcs_server.log_bytes - start < 80 * 1024:
        fs.invalidate_cache()
        assert fs.info(f"{gcs_bucket}/x")["size"] == 3
    assert fs.cat_file(f"{gcs_bucket}/x") == b"abc"
    assert "/storage/v1/b/" in gcs_server.log_tail


# -- HTTP static server ---------------------------------------------------------------


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    (root / "models" / "m1").mkdir(parents=True)
    data = os.urandom(200_000)
    (root / "models" / "m1" / "shard.bin").write_bytes(data)
    (root / "models" / "m1" / "model.json").write_text('{"format": "layers-model"}')
    (root / "models" / "a b.txt").write_text("spaces")
    return root, data


async def test_http_range_head_etag(http_server, site):
    root, data = site
    srv = http_server(root)
    url = srv.url_for("models/m1/shard.bin")
    async with aiohttp.ClientSession() as s:
        async with s.get(url, headers={"Range": "bytes=10-19"}) as r:
            assert r.status == 206
            assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
            assert await r.read() == data[10:20]
        async with s.get(url, headers={"Range": "bytes=-7"}) as r:
            assert r.status == 206 and await r.read() == data[-7:]
        async with s.get(url, headers={"Range": "bytes=199990-300000"}) as r:
            assert r.headers["Content-Range"] == "bytes 199990-199999/200000"
            assert await r.read() == data[199_990:]
        async with s.get(url, headers={"Range": f"bytes={len(data)}-"}) as r:
            assert r.status == 416
            assert r.headers["Content-Range"] == f"bytes */{len(data)}"
        async with s.head(url) as r:
            assert r.status == 200
            assert int(r.headers["Content-Length"]) == len(data)
            assert r.headers["Accept-Ranges"] == "bytes"
            etag = r.headers["ETag"]
        async with s.get(url, headers={"If-None-Match": etag}) as r:
            assert r.status == 304
        async with s.get(srv.url_for("models/m1/model.json")) as r:
            assert r.content_type == "application/json"
            assert await r.json() == {"format": "layers-model"}
        async with s.get(srv.url_for("models/m1/missing.bin")) as r:
            assert r.status == 404


async def test_http_ignore_range_switch(http_server, site):
    root, data = site
    srv = http_server(root, ignore_range=True)
    url = srv.url_for("models/m1/shard.bin")
    async with aiohttp.ClientSession() as s:
        async with s.get(url, headers={"Range": "bytes=0-9"}) as r:
            assert r.status == 200 and "Accept-Ranges" not in r.headers
            assert await r.read() == data
        srv.set(ignore_range=False)
        async with s.get(url, headers={"Range": "bytes=0-9"}) as r:
            assert r.status == 206 and await r.read() == data[:10]


async def test_http_fail_first(http_server, site):
    root, data = site
    srv = http_server(root)
    srv.fail_first("models/m1/shard.bin", 2, status=503)
    srv.fail_first("/models/m1/model.json", 1, status=500, methods=("GET",))
    url = srv.url_for("models/m1/shard.bin")
    async with aiohttp.ClientSession() as s:
        statuses = []
        for _ in range(3):
            async with s.get(url) as r:
                statuses.append(r.status)
                body = await r.read()
        assert statuses == [503, 503, 200] and body == data
        async with s.head(srv.url_for("models/m1/model.json")) as r:
            assert r.status == 200  # HEAD does not use up the GET failure
        async with s.get(srv.url_for("models/m1/model.json")) as r:
            assert r.status == 500
        async with s.get(srv.url_for("models/m1/model.json")) as r:
            assert r.status == 200
    assert [r.status for r in srv.stats.requests_for("models/m1/shard.bin")] == [503, 503, 200]


async def test_http_drop_mid_body(http_server, site):
    root, data = site
    srv = http_server(root)
    srv.drop_mid_body("models/m1/shard.bin", after_bytes=70_000, times=1)
    url = srv.url_for("models/m1/shard.bin")
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as r:
            assert r.status == 200 and r.content_length == len(data)
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
        assert srv.stats.bytes_served["/models/m1/shard.bin"] == 70_000
        async with s.get(url) as r:  # times=1: the next request is whole
            assert await r.read() == data
    assert srv.stats.bytes_served["/models/m1/shard.bin"] == 70_000 + len(data)


async def test_http_drop_mid_body_of_a_range(http_server, site):
    root, data = site
    srv = http_server(root)
    srv.drop_mid_body("/models/m1/shard.bin", after_bytes=100, times=2)
    url = srv.url_for("models/m1/shard.bin")
    async with aiohttp.ClientSession() as s:
        for _ in range(2):
            async with s.get(url, headers={"Range": "bytes=1000-1999"}) as r:
                assert r.status == 206 and r.content_length == 1000
                with pytest.raises(aiohttp.ClientPayloadError):
                    await r.read()
        async with s.get(url, headers={"Range": "bytes=1000-1999"}) as r:
            assert await r.read() == data[1000:2000]
    assert [r.body_bytes for r in srv.stats.requests] == [100, 100, 1000]


async def test_http_truncate(http_server, site):
    root, _ = site
    srv = http_server(root)
    srv.truncate("models/m1/model.json", 5)
    url = srv.url_for("models/m1/model.json")
    async with aiohttp.ClientSession() as s:
        for _ in range(2):  # stays truncated
            async with s.get(url) as r:
                assert r.content_length == len('{"format": "layers-model"}')
                with pytest.raises(aiohttp.ClientPayloadError):
                    await r.read()
    assert srv.stats.bytes_served == {"/models/m1/model.json": 10}
    srv.clear_faults()
    assert fsspec.filesystem("http").cat_file(url) == b'{"format": "layers-model"}'


def test_http_counters_with_fsspec(http_server, site):
    root, data = site
    srv = http_server(root)
    fs = fsspec.filesystem("http")
    url = srv.url_for("models/m1/shard.bin")
    assert fs.cat_file(url, start=100, end=1100) == data[100:1100]
    assert fs.cat_ranges([url, url], [0, 5000], [10, 5020]) == [data[:10], data[5000:5020]]
    gets = srv.stats.requests_for("/models/m1/shard.bin", "GET")
    assert sorted(r.range for r in gets) == ["bytes=0-9", "bytes=100-1099", "bytes=5000-5019"]
    assert srv.stats.bytes_served["/models/m1/shard.bin"] == 1000 + 10 + 20
    assert srv.stats.total_bytes == 1030
    srv.reset_stats()
    assert srv.stats.requests == [] and srv.stats.total_bytes == 0
    assert fs.cat_file(url) == data
    assert srv.stats.count("/models/m1/shard.bin", "GET") == 1


def test_http_listing_redirect_and_no_listing(http_server, site):
    root, _ = site
    srv = http_server(root)
    fs = fsspec.filesystem("http")
    listed = fs.ls(srv.url_for("models/"), detail=False)
    assert sorted(listed) == [srv.url_for("models/a b.txt"), srv.url_for("models/m1/")]
    assert fs.cat_file(srv.url_for("models/a b.txt")) == b"spaces"
    assert fs.cat_file(srv.url + "/models/m1").startswith(b"<html>")  # 301 followed
    assert srv.stats.requests_for("/models/m1")[0].status == 301
    srv.set(no_listing=True)
    with pytest.raises(aiohttp.ClientResponseError, match="403"):
        fs.cat_file(srv.url_for("models/"))


async def test_cors_switch_and_receiver_preflight(http_server, upload_receiver, site):
    root, _ = site
    origin = {"Origin": "http://127.0.0.1:1"}
    preflight = {**origin, "Access-Control-Request-Method": "POST"}
    plain, cors = http_server(root), http_server(root, cors=True)
    async with aiohttp.ClientSession() as s:
        async with s.get(plain.url_for("models/m1/model.json"), headers=origin) as r:
            assert "Access-Control-Allow-Origin" not in r.headers
        async with s.get(cors.url_for("models/m1/model.json"), headers=origin) as r:
            assert r.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:1"
        async with s.options(upload_receiver.url + "/upload", headers=preflight) as r:
            assert r.status == 200
            assert "POST" in r.headers["Access-Control-Allow-Methods"]


# -- HTTPS (trustme) --------------------------------------------------------------


def test_https_with_fsspec(https_server, site):
    root, data = site
    srv = https_server(root)
    url = srv.url_for("models/m1/shard.bin")
    assert url.startswith("https://127.0.0.1:")
    fs = fsspec.filesystem("https", **srv.storage_options)
    assert fs.cat_file(url, start=5, end=50) == data[5:50]
    clone = pickle.loads(pickle.dumps(fs))
    assert clone.cat_file(url, start=0, end=3) == data[:3]
    fs2 = fsspec.filesystem("https", ssl=srv.client_ssl_context, skip_instance_cache=True)
    assert fs2.info(url)["size"] == len(data)
    assert srv.ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_https_is_untrusted_without_the_ca(https_server, site):
    root, _ = site
    srv = https_server(root)
    fs = fsspec.filesystem("https", skip_instance_cache=True)
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        fs.cat_file(srv.url_for("models/m1/model.json"))


# -- upload receiver ------------------------------------------------------------------


async def test_upload_receiver_records_multipart_and_put(upload_receiver):
    weights = os.urandom(4096) + b"\r\n--\r\n" + os.urandom(100)
    form = aiohttp.FormData()
    form.add_field(
        "model.json", b'{"a": 1}', filename="model.json", content_type="application/json"
    )
    form.add_field(
        "model.weights.bin",
        weights,
        filename="model.weights.bin",
        content_type="application/octet-stream",
    )
    async with aiohttp.ClientSession() as s:
        async with s.post(upload_receiver.url + "/upload?x=1", data=form) as r:
            assert r.status == 200 and await r.json() == {"ok": True}
        upload_receiver.status = 500
        async with s.put(upload_receiver.url + "/raw", data=b"abc") as r:
            assert r.status == 500
    post, put = upload_receiver.wait_for(2, timeout=10)
    assert (post.method, post.path, post.query) == ("POST", "/upload", {"x": "1"})
    assert post.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert [(p.name, p.filename, p.content_type) for p in post.parts] == [
        ("model.json", "model.json", "application/json"),
        ("model.weights.bin", "model.weights.bin", "application/octet-stream"),
    ]
    assert post.part("model.json").data == b'{"a": 1}'
    assert post.part("model.weights.bin").data == weights
    assert weights in post.body
    assert (put.method, put.path, put.body, put.parts) == ("PUT", "/raw", b"abc", [])


def test_parse_multipart_ignores_other_types():
    assert parse_multipart("application/json", b"{}") == []
