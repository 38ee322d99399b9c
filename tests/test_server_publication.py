"""Readers around overwrites and deletes: never hung, never torn, never mixed.

A real ``tfjsfs serve`` process (local folder and moto S3 stores) publishes a
4.6 MB model over and over while TF.js-style readers (GET model.json, then
every shard, as ``tf.loadLayersModel`` does) and ``tfjsfs.load_weights``
readers loop: every read is exactly one whole version. Also: the grace
period, fresh names on delete-then-recreate, and sweeping a crash's leftovers.
"""

from __future__ import annotations

import asyncio
import json
import os
import posixpath
import time
from collections import Counter
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from serverkit import ModelServer, ServerProcess, http, make_artifacts, post_parts, tfjs_parts

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
