"""The local cache of remote bundles (issue 12 item 2): ``cache=`` on every
loader, one conditional request on a second load, only changed shards
refetched, shared by processes, never torn, managed by ``tfjsfs cache``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from manage_support import assert_same_weights, file_store, sample_artifacts, sample_weights

import tfjsfs
from tfjsfs.model.cache import cache_entries

TFJSFS = [sys.executable, "-m", "tfjsfs"]
SHARD = 100


@pytest.fixture
def served(tmp_path, http_server):
    """One converter-layout bundle (several shards) served over HTTP, and a cache folder."""
    root = tmp_path / "www"
    file_store(root).save(sample_artifacts(0), "m", shard_size=SHARD)
    server = http_server(root)
    return server, root / "m", server.url_for("/m/model.json"), tmp_path / "cache"


def _shards(folder: Path) -> list[str]:
    doc = json.loads((folder / "model.json").read_bytes())
    return [p for g in doc["weightsManifest"] for p in g["paths"]]


def _gets(server):
    return [(r.path, r.status, r.body_bytes) for r in server.stats.requests]


def test_second_load_is_one_conditional_get_and_no_shard_bytes(served):
    server, folder, url, cache = served
    first = tfjsfs.load_weights(url, cache=str(cache))
    assert_same_weights(first, sample_weights(0))
    fetched = {p for p, status, _ in _gets(server) if status == 200}
    assert fetched == {"/m/model.json", *(f"/m/{p}" for p in _shards(folder))}
    loaders = {
        "load_weights": lambda: tfjsfs.load_weights(url, cache=str(cache)),
        "load_model": lambda: tfjsfs.load_model(url, cache=str(cache)).weights,
        "open_model": lambda: _open_all(url, cache),
        "iter_weights": lambda: dict(tfjsfs.iter_weights(url, cache=str(cache))),
        "load_weights(names)": lambda: tfjsfs.load_weights(url, ["out/bias"], cache=str(cache)),
    }
    for name, load in loaders.items():
        server.reset_stats()
        got = load()
        want = sample_weights(0)
        if name == "load_weights(names)":
            want = {"out/bias": want["out/bias"]}
        assert_same_weights(got, want)
        assert _gets(server) == [("/m/model.json", 304, 0)], name
        assert server.stats.total_bytes == 0, name


def _open_all(url, cache):
    with tfjsfs.open_model(url, cache=str(cache)) as model:
        return {k: model.get_tensor(k) for k in model}


def test_changed_model_json_refetches_only_changed_shards(served):
    server, folder, url, cache = served
    tfjsfs.load_weights(url, cache=str(cache))
    shards = _shards(folder)
    # a new version: one shard's bytes change, model.json is rewritten
    changed = folder / shards[0]
    data = bytearray(changed.read_bytes())
    before = np.frombuffer(bytes(data[:4]), np.float32)[0]
    data[:4] = np.float32(before + 1).tobytes()
    changed.write_bytes(bytes(data))
    doc = json.loads((folder / "model.json").read_bytes())
    doc["generatedBy"] = "version 2"
    (folder / "model.json").write_text(json.dumps(doc))
    server.reset_stats()
    got = tfjsfs.load_weights(url, cache=str(cache))
    want = sample_weights(0)
    want["dense/kernel"].flat[0] = before + 1
    assert_same_weights(got, want)
    sent = {p: (status, n) for p, status, n in _gets(server)}
    assert sent["/m/model.json"][0] == 200
    assert sent[f"/m/{shards[0]}"] == (200, len(data))
    for path in shards[1:]:
        assert sent[f"/m/{path}"] == (304, 0), path
    assert server.stats.total_bytes == len(data) + (folder / "model.json").stat().st_size


CHILD = textwrap.dedent(
    """
    import hashlib, sys
    import tfjsfs
    weights = tfjsfs.load_weights(sys.argv[1], cache=sys.argv[2])
    digest = hashlib.sha256()
    for name, value in weights.items():
        digest.update(name.encode() + repr(value.tolist()).encode())
    print(digest.hexdigest())
    """
)


def test_processes_share_the_cache_without_corrupting_it(served):
    server, folder, url, cache = served
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, url, str(cache)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(6)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    digests = {o.strip() for o, _ in outs}
    assert len(digests) == 1
    # every byte was fetched once; the other loaders revalidated (304)
    for path in _shards(folder):
        statuses = [r.status for r in server.stats.requests_for(f"/m/{path}")]
        assert statuses == [200], (path, statuses)
    json_statuses = sorted(r.status for r in server.stats.requests_for("/m/model.json"))
    assert json_statuses == [200] + [304] * 5
    assert_same_weights(tfjsfs.load_weights(url, cache=str(cache)), sample_weights(0))


def test_a_torn_download_is_never_used(served):
    server, folder, url, cache = served
    shards = _shards(folder)
    server.drop_mid_body(f"/m/{shards[0]}", after_bytes=10, times=10)
    with pytest.raises(Exception):  # noqa: B017 - whatever the network error is
        tfjsfs.load_weights(url, cache=str(cache), retries=0)
    assert cache_entries(str(cache)) == []  # nothing published
    server.clear_faults()
    server.reset_stats()
    assert_same_weights(tfjsfs.load_weights(url, cache=str(cache)), sample_weights(0))
    assert {r.status for r in server.stats.requests} == {200}
    # a damaged cached file is noticed and refetched
    (entry,) = cache_entries(str(cache))
    victim = next(entry.path.glob(f"v-*/{shards[1]}"))
    victim.write_bytes(victim.read_bytes()[:3])
    server.reset_stats()
    assert_same_weights(tfjsfs.load_weights(url, cache=str(cache)), sample_weights(0))
    assert ("/m/" + shards[1], 200) in [(p, s) for p, s, _ in _gets(server)]


def test_default_folder_and_cache_cli(served, monkeypatch, tmp_path):
    server, folder, url, cache = served
    monkeypatch.setenv("TFJSFS_CACHE_DIR", str(cache))
    tfjsfs.load_weights(url, cache=True)
    file_store(tmp_path / "www").save(sample_artifacts(1), "n", shard_size=SHARD)
    url2 = server.url_for("/n/model.json")
    tfjsfs.load_weights(url2, cache=True)
    env = {**os.environ, "TFJSFS_CACHE_DIR": str(cache)}

    def cli(*args):
        return subprocess.run([*TFJSFS, "cache", *args], capture_output=True, text=True, env=env)

    out = cli("ls", "--json")
    assert out.returncode == 0, out.stderr
    records = json.loads(out.stdout)
    assert sorted(r["url"] for r in records) == sorted([url, url2])
    sizes = {r["url"]: r["bytes"] for r in records}
    on_disk = sum(p.stat().st_size for p in folder.iterdir())
    assert sizes[url] >= on_disk
    assert "2 model(s)" in cli("ls").stdout
    # prune keeps the most recently used
    tfjsfs.load_weights(url, cache=True)
    out = cli("prune", "--max-size", str(sizes[url] + 10))
    assert out.returncode == 0, out.stderr
    assert [r["url"] for r in json.loads(cli("ls", "--json").stdout)] == [url]
    assert cli("rm", "https://nowhere.invalid/x.json").returncode == 1
    out = cli("rm", url)
    assert out.returncode == 0 and url in out.stdout
    assert json.loads(cli("ls", "--json").stdout) == []
    assert cli("prune").returncode == 1


def test_s3_second_load_reads_no_shard(s3_server, s3_bucket, tmp_path):
    from manage_support import s3_store

    store = s3_store(s3_server, s3_bucket)
    store.save(sample_artifacts(2), "m", shard_size=SHARD)
    url = store.url("m")
    cache = str(tmp_path / "cache")
    opts = dict(store.options)
    got = tfjsfs.load_weights(url, cache=cache, storage_options=opts)
    assert_same_weights(got, sample_weights(2))
    # overwrite the bucket's shards with garbage of the same size: only a read would notice
    doc = json.loads(store.fs.cat_file(store.inner("m", "model.json")))
    paths = [p for g in doc["weightsManifest"] for p in g["paths"]]
    fs, _ = tfjsfs.io.resolve.resolve(url, **opts)
    calls = []
    original = fs._call_s3

    async def counting(method, *args, **kwargs):
        calls.append((method, kwargs.get("Key")))
        return await original(method, *args, **kwargs)

    fs._call_s3 = counting
    try:
        again = tfjsfs.load_weights(url, cache=cache, storage_options={**opts, "fs": fs})
    finally:
        fs._call_s3 = original
    assert_same_weights(again, sample_weights(2))
    # the folder is listed to find its model JSON, which is revalidated once
    assert [m for m, _ in calls] == ["list_objects_v2", "head_object"]
    keys = [k for _, k in calls if k]
    assert not [k for k in keys if k.rsplit("/", 1)[-1] in paths]  # no shard request
    assert [m for m, _ in calls if m == "get_object"] == []  # model.json unchanged: no GET


def test_the_cache_reads_through_the_loaders_bounded_http_path(served, tmp_path, http_server):
    """Filling the cache obeys the same rules as a load: no cross-origin redirect
    unless asked, and no shard body past what its manifest allows."""
    from tfjsfs.errors import RedirectError, SizeMismatch

    server, folder, url, cache = served
    first = _shards(folder)[0]
    other_root = tmp_path / "elsewhere"
    (other_root / "m").mkdir(parents=True)
    (other_root / "m" / "moved.bin").write_bytes((folder / first).read_bytes())
    other = http_server(other_root)
    server.redirect(f"/m/{first}", other.url_for("m/moved.bin"))
    with pytest.raises(RedirectError):
        tfjsfs.load_weights(url, cache=str(cache), retries=0)
    assert other.stats.count() == 0
    assert cache_entries(str(cache)) == []  # nothing published

    again = tmp_path / "www2"
    file_store(again).save(sample_artifacts(0), "m", shard_size=SHARD)
    liar = http_server(again)
    liar.lie(f"/m/{first}", "long_chunked", times=None, extra=50 << 20)
    with pytest.raises(SizeMismatch) as info:
        tfjsfs.load_weights(liar.url_for("/m/model.json"), cache=str(cache), retries=0)
    assert info.value.actual <= info.value.expected + 1  # read one byte past the bound, no more
    assert cache_entries(str(cache)) == []
