"""Readers around overwrites and deletes: never hung, never torn, never mixed.

A real ``tfjsfs serve`` process (local folder and moto S3 stores) publishes a
4.6 MB model over and over while TF.js-style readers (GET model.json, then
every shard, as ``tf.loadLayersModel`` does) and ``tfjsfs.load_weights``
readers loop: every read is exactly one whole version. Also: the grace
period, fresh names on delete-then-recreate, and sweeping a crash's leftovers.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import posixpath
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from nodejs import decode_b64, missing_node_reason, tfjs_load, tfjs_save, weights_by_name
from serverkit import ServerProcess, http, make_artifacts, server_factory

import tfjsfs
from tfjsfs.errors import ModelNotFoundError
from tfjsfs.io.writer import RETIRED_PREFIX, is_fresh_name
from tfjsfs.server.modelstore import ModelStore
from tfjsfs.server.spools import spool_prefix, sweep_spools

RAW_READERS = 8
LOAD_READERS = 2
OVERWRITES = 6
#: 4.6 MB of float32 beside the kit's small weights: one shard above the
#: server's 4 MiB read-whole threshold, so it is streamed.
EXTRA = 1_150_000


@pytest.fixture
def model_server(tmp_path):
    yield from server_factory(tmp_path)


def _versions() -> list[tfjsfs.ModelArtifacts]:
    return [make_artifacts(seed, extra=EXTRA) for seed in (61, 62)]


def _weight_bytes(artifacts: tfjsfs.ModelArtifacts) -> bytes:
    return bytes(memoryview(artifacts.weight_data).cast("B"))


async def _raw_read(session: aiohttp.ClientSession, base: str, wanted: list[bytes]) -> object:
    """One TF.js-style load: model.json, then each shard; which version it was."""
    async with session.get(f"{base}/model.json") as reply:
        if reply.status == 404:
            return "absent"  # between the delete and the re-creation
        assert reply.status == 200, (reply.status, await reply.text())
        doc = json.loads(await reply.read())
    body = bytearray()
    for group in doc["weightsManifest"]:
        for path in group["paths"]:
            async with session.get(f"{base}/{posixpath.normpath(path)}") as reply:
                assert reply.status == 200, (path, reply.status, await reply.text())
                data = await reply.read()
                assert len(data) == int(reply.headers["Content-Length"]), path
                body += data
    matches = [i for i, w in enumerate(wanted) if bytes(body) == w]
    assert len(matches) == 1, f"read {len(body)} bytes that are no one version"
    return matches[0]


def _load_read(url: str, versions: list[tfjsfs.ModelArtifacts]) -> object:
    try:
        loaded = tfjsfs.load_weights(url)
    except ModelNotFoundError:
        return "absent"
    matches = [
        i
        for i, v in enumerate(versions)
        if list(loaded) == list(v.weights)
        and all(np.array_equal(loaded[k], v.weights[k]) for k in v.weights)
    ]
    assert len(matches) == 1, "load_weights returned no one version"
    return matches[0]


async def _race(server_url: str, name: str) -> tuple[list[object], list[BaseException]]:
    """Readers loop while a writer overwrites, deletes and re-creates *name*."""
    versions = _versions()
    wanted = [_weight_bytes(v) for v in versions]
    model = f"{server_url}/models/{name}"
    await asyncio.to_thread(tfjsfs.save_model, versions[0], model)
    done = asyncio.Event()
    outcomes: list[object] = []
    failures: list[BaseException] = []

    async def raw_reader() -> None:
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                last = done.is_set()
                try:
                    outcomes.append(await _raw_read(session, model, wanted))
                except (Exception, TimeoutError) as exc:
                    failures.append(exc)
                if last:
                    return

    async def load_reader() -> None:
        url = model.replace("http://", "tfjs+http://")
        while True:
            last = done.is_set()
            try:
                outcomes.append(await asyncio.to_thread(_load_read, url, versions))
            except Exception as exc:
                failures.append(exc)
            if last:
                return

    async def writer() -> None:
        try:
            for i in range(OVERWRITES):
                await asyncio.sleep(0.2)
                await asyncio.to_thread(
                    tfjsfs.save_model, versions[(i + 1) % 2], model, method="PUT"
                )
            await asyncio.sleep(0.2)
            reply = await asyncio.to_thread(http, "DELETE", model)
            assert reply.status == 200, reply.body
            await asyncio.sleep(0.2)
            # re-created with the other version: same layout, same sizes, other values
            await asyncio.to_thread(tfjsfs.save_model, versions[(OVERWRITES + 1) % 2], model)
            await asyncio.sleep(0.2)
        finally:
            done.set()

    readers = [raw_reader() for _ in range(RAW_READERS)]
    readers += [load_reader() for _ in range(LOAD_READERS)]
    await asyncio.gather(writer(), *readers)
    return outcomes, failures


def _check(outcomes: list[object], failures: list[BaseException]) -> None:
    kinds = Counter(type(f).__name__ for f in failures)
    assert not failures, f"{len(failures)} failed reads {dict(kinds)}, e.g. {failures[0]!r}"
    assert {0, 1} <= set(outcomes), outcomes  # both versions were read whole


def test_readers_around_overwrites_and_deletes_local(tmp_path):
    server = ServerProcess(str(tmp_path / "store"))
    try:
        outcomes, failures = asyncio.run(_race(server.url, "m"))
    finally:
        server.stop()
    _check(outcomes, failures)


def test_readers_around_overwrites_and_deletes_s3(s3_server, s3_bucket):
    options = [f"--storage-option={k}={v}" for k, v in s3_server.storage_options.items()]
    server = ServerProcess(f"s3://{s3_bucket}/store", *options)
    try:
        outcomes, failures = asyncio.run(_race(server.url, "m"))
    finally:
        server.stop()
    _check(outcomes, failures)


# ------------------------------------------------------------- grace period


def _paths(doc: dict) -> list[str]:
    return [posixpath.normpath(p) for g in doc["weightsManifest"] for p in g["paths"]]


def _shards(server, doc: dict) -> bytes:
    out = b""
    for path in _paths(doc):
        reply = http("GET", server.model_url("m", path))
        assert reply.status == 200, (path, reply.body[:300])
        out += reply.body
    return out


@pytest.mark.parametrize("reshard", [False, 1024])
def test_replaced_and_deleted_files_stay_readable_and_names_are_never_reused(
    model_server, reshard
):
    server = model_server(reshard=reshard)  # the default grace period: 60 s
    first, second = make_artifacts(71, extra=600), make_artifacts(72, extra=600)
    url = server.model_url("m")
    tfjsfs.save_model(first, url)
    old = http("GET", server.model_url("m", "model.json")).json()
    tfjsfs.save_model(second, url, method="PUT")
    # a reader holding the replaced model.json still reads the old version whole
    assert _shards(server, old) == _weight_bytes(first)
    newer = http("GET", server.model_url("m", "model.json")).json()
    assert not set(_paths(newer)) & set(_paths(old))
    assert http("DELETE", url).status == 200
    assert http("GET", server.model_url("m", "model.json")).status == 404
    assert _shards(server, newer) == _weight_bytes(second)  # deleted, still readable
    # re-created with the first version's layout: names no earlier version used
    tfjsfs.save_model(first, url)
    again = http("GET", server.model_url("m", "model.json")).json()
    assert not set(_paths(again)) & (set(_paths(old)) | set(_paths(newer)))
    assert _shards(server, newer) == _weight_bytes(second)
    assert _shards(server, again) == _weight_bytes(first)
    assert [m["name"] for m in http("GET", f"{server.url}/models").json()["models"]] == ["m"]


def _stored(store: ModelStore) -> list[str]:
    fs = store.fs.sync_fs
    return sorted(posixpath.relpath(p, store.root) for p in fs.find(store.root))


def _wait_until(predicate, what: str, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.1)


def test_retired_files_are_swept_after_the_grace_period(model_server):
    server = model_server(grace_period=0.5)
    url = server.model_url("m")
    tfjsfs.save_model(make_artifacts(73), url)
    tfjsfs.save_model(make_artifacts(74), url, method="PUT")
    live = _paths(http("GET", server.model_url("m", "model.json")).json())
    want = sorted(["m/model.json", *(f"m/{p}" for p in live)])
    _wait_until(lambda: _stored(server.store) == want, "the replaced shard to be swept")
    tfjsfs.save_model(make_artifacts(75), server.model_url("gone"))
    assert http("DELETE", server.model_url("gone")).status == 200
    _wait_until(lambda: _stored(server.store) == want, "the deleted model to be swept")
    assert_loads(server, "m", make_artifacts(74))


def assert_loads(server, name: str, artifacts: tfjsfs.ModelArtifacts) -> None:
    loaded = tfjsfs.load_weights(f"{server.url}/models/{name}".replace("http://", "tfjs+http://"))
    assert list(loaded) == list(artifacts.weights)
    for key, value in artifacts.weights.items():
        assert np.array_equal(loaded[key], value), key


# ------------------------------------------------------------ write_bundle


def test_save_model_keeps_converter_names_for_a_first_save_only(tmp_path):
    folder = tmp_path / "m"
    first, second = make_artifacts(81), make_artifacts(82)
    tfjsfs.save_model(first, folder, shard_size=64)
    names = sorted(os.listdir(folder))
    assert len(names) > 2 and names[-1] == "model.json"
    assert names[:-1] == [f"group1-shard{i}of{len(names) - 1}.bin" for i in range(1, len(names))]
    tfjsfs.save_model(second, folder, shard_size=64, overwrite=True)
    doc = json.loads((folder / "model.json").read_text())
    assert all(is_fresh_name(p) for p in _paths(doc))
    assert not set(_paths(doc)) & set(names)
    # a folder whose model.json is gone but whose files were retired within the
    # grace period (a record is still there) gets fresh names too
    record = folder / f"{RETIRED_PREFIX}0123456789abcdef.json"
    record.write_text(json.dumps({"retired": time.time(), "files": _paths(doc)}))
    (folder / "model.json").unlink()
    tfjsfs.save_model(first, folder, shard_size=64)
    again = json.loads((folder / "model.json").read_text())
    assert all(is_fresh_name(p) for p in _paths(again))
    assert not set(_paths(again)) & set(_paths(doc))
    loaded = tfjsfs.load_weights(str(folder))
    for key, value in first.weights.items():
        assert np.array_equal(loaded[key], value), key


@pytest.mark.skipif(missing_node_reason() is not None, reason=str(missing_node_reason()))
def test_tfjs_loads_a_bundle_with_fresh_names(tmp_path):
    expected = tfjs_save("mlp", "node", tmp_path / "saved")
    original = tfjsfs.load_model(
        expected["files"].get("model_json") or expected["files"]["outdir"]
    )
    folder = tmp_path / "m"
    tfjsfs.save_model(original, folder, shard_size=100)
    tfjsfs.save_model(original, folder, shard_size=100, overwrite=True)
    doc = json.loads((folder / "model.json").read_text())
    assert len(_paths(doc)) > 1 and all(is_fresh_name(p) for p in _paths(doc))
    result = tfjs_load(str(folder / "model.json"), expected["input"])
    assert (
        decode_b64(result["prediction"]).tobytes() == decode_b64(expected["prediction"]).tobytes()
    )
    got = weights_by_name(result)
    for key, value in original.weights.items():
        assert got[key].tobytes() == value.tobytes(), key


# ---------------------------------------------------------- crash leftovers


def _age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_crash_s_leftovers_are_swept_at_start(tmp_path):
    store, spool = tmp_path / "store", tmp_path / "spool"
    spool.mkdir()
    live = make_artifacts(91)
    tfjsfs.save_model(live, store / "m", shard_size=64)
    tfjsfs.save_model(live, store / "m", shard_size=64, overwrite=True)  # fresh names
    folder = store / "m"
    live_names = _paths(json.loads((folder / "model.json").read_text()))
    assert all(is_fresh_name(n) for n in live_names)
    for name in live_names:
        _age(folder / name, 3600)  # old, but named by the live model.json: kept
    orphan = folder / "group1-shard1of1-v0123456789ab.bin"  # written, never published
    tmp_json = folder / ".model.json.0123456789ab.tmp"  # publication cut short
    expired = folder / "model.weights-vaaaaaaaaaaaa.bin"  # retired an hour ago
    pending = folder / "model.weights-vbbbbbbbbbbbb.bin"  # retired a moment ago
    young = folder / "group1-shard1of1-vcccccccccccc.bin"  # maybe an upload in progress
    for path in (orphan, tmp_json, expired, pending, young):
        path.write_bytes(b"x" * 8)
    for path in (orphan, tmp_json, expired, pending):
        _age(path, 3600)
    (folder / f"{RETIRED_PREFIX}1111111111111111.json").write_text(
        json.dumps({"retired": time.time() - 3600, "files": [expired.name, live_names[0]]})
    )
    (folder / f"{RETIRED_PREFIX}2222222222222222.json").write_text(
        json.dumps({"retired": time.time(), "files": [pending.name]})
    )
    # a bundle under another JSON name keeps the fresh-named shards it names
    other = store / "other"
    tfjsfs.save_model(live, other / "custom.json", shard_size=64)
    tfjsfs.save_model(live, other / "custom.json", shard_size=64, overwrite=True)
    other_files = sorted(os.listdir(other))
    assert any(is_fresh_name(n) for n in other_files)
    for name in other_files:
        _age(other / name, 3600)
    dead_spool = spool / f"tfjsfs-upload-{_dead_pid()}-abc.bin"
    own_spool = spool / f"{spool_prefix()}def.bin"
    for path in (dead_spool, own_spool):
        path.write_bytes(b"y" * 8)
        _age(path, 3600)
    server = ServerProcess(str(store), "--spool-dir", str(spool))
    try:
        assert_loads(server, "m", live)
    finally:
        server.stop()
    assert sorted(os.listdir(folder)) == sorted(
        [
            "model.json",
            *live_names,
            pending.name,
            young.name,
            f"{RETIRED_PREFIX}2222222222222222.json",
        ]
    )
    assert sorted(os.listdir(other)) == other_files
    assert sorted(os.listdir(spool)) == [own_spool.name]
    assert sweep_spools(str(spool), 0) == []  # this process's own spool is never swept


# ----------------------------------------------------------------- serving


def test_a_file_changed_under_a_response_aborts_the_connection(model_server, s3_server, s3_bucket):
    """An object replaced by a shorter one while it is sent: the client gets
    fewer bytes than declared and the connection closes; it never hangs."""
    server = model_server(f"s3://{s3_bucket}/store", storage_options=s3_server.storage_options)
    weights = {"big": np.arange(8 * 1024 * 1024, dtype="f4")}  # 32 MiB: 8 reads of 4 MiB
    artifacts = tfjsfs.ModelArtifacts.from_weights(make_artifacts(0).model_topology, weights)
    tfjsfs.save_model(artifacts, server.model_url("m"))
    doc = http("GET", server.model_url("m", "model.json")).json()
    (path,) = _paths(doc)
    head = f"GET /models/m/{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(head.encode())
        received = sock.recv(65536)
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        headers, _, body = received.partition(b"\r\n\r\n")
        declared = int(re.search(rb"Content-Length: (\d+)", headers).group(1))
        assert declared == 32 * 1024 * 1024
        # replaced behind the server's back (no grace period can protect this)
        s3_server.filesystem().pipe_file(f"{s3_bucket}/store/m/{path}", b"short")
        got = len(body)
        while chunk := sock.recv(1 << 20):  # a hang raises socket.timeout here
            got += len(chunk)
    assert got < declared


def test_conditional_and_range_requests(model_server):
    server = model_server()
    artifacts = make_artifacts(95, extra=1_100_000)  # 4.4 MB: streamed
    tfjsfs.save_model(artifacts, server.model_url("m"))
    url = server.model_url("m", "model.weights.bin")
    whole = http("GET", url)
    assert email.utils.parsedate_to_datetime(whole.headers["last-modified"]).year > 2000
    etag = whole.headers["etag"]
    later = email.utils.formatdate(time.time() + 3600, usegmt=True)
    earlier = email.utils.formatdate(time.time() - 3600, usegmt=True)
    assert http("GET", url, headers={"If-Modified-Since": later}).status == 304
    assert http("GET", url, headers={"If-Modified-Since": earlier}).status == 200
    # If-None-Match wins over If-Modified-Since
    both = http("GET", url, headers={"If-None-Match": '"other"', "If-Modified-Since": later})
    assert both.status == 200
    assert http("GET", url, headers={"If-None-Match": f'"x", W/{etag}'}).status == 304
    ranged = http("GET", url, headers={"Range": "bytes=5-9", "If-Range": later})
    assert ranged.status == 206 and ranged.body == whole.body[5:10]
    stale = http("GET", url, headers={"Range": "bytes=5-9", "If-Range": earlier})
    assert stale.status == 200 and stale.body == whole.body
    assert http("GET", url, headers={"Range": "bytes=5-9", "If-Range": etag}).status == 206
    weak = http("GET", url, headers={"Range": "bytes=5-9", "If-Range": f"W/{etag}"})
    assert weak.status == 200  # If-Range compares strongly
    assert http("GET", url, headers={"Range": "bytes=-0"}).status == 416
    for ignored in ("bytes=9-5", "items=0-5", "bytes=0-1,4-5", "bytes=x-"):
        reply = http("GET", url, headers={"Range": ignored})
        assert reply.status == 200 and reply.body == whole.body, ignored
