"""Many writers on one store (issue 15): three ``tfjsfs serve`` processes over one
moto bucket, one fake-gcs bucket and one local folder take 3 x 10 concurrent
TF.js uploads to the same 3 names; four processes ``save_model`` into one S3
prefix. Publication is conditional on every store, so create-only conflicts
answer 412, no read is ever torn, every model.json names existing shards and,
after the grace period, nothing else is left.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from peers.proxy import RecordingProxy
from serverkit import REPO_ROOT, ServerProcess, http, make_artifacts, post_parts, tfjs_parts

import tfjsfs
from tfjsfs.errors import ModelNotFoundError, ShardMissingError
from tfjsfs.io.writer import RETIRED_PREFIX

NAMES = ["alpha", "beta", "team/gamma"]
UPLOADS_PER_NAME = 10
# The servers' grace period. Sweeps by several servers are safe only while every
# upload writes its shards and publishes within it (README, "Running several
# servers"); 3 s was exceeded by a storm of 30 uploads on a busy 2-core CI machine
# (a sweep took an unpublished shard the upload then published).
GRACE = 10.0
EXTRA = 100_000  # float32 elements added to each upload (400 kB of weights)


def _same(got: dict, want: dict) -> bool:
    return list(got) == list(want) and all(
        got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]) for k in want
    )


def _upload_artifacts(seed: int) -> tfjsfs.ModelArtifacts:
    """Same shapes for every seed (only values differ); model.json names its seed."""
    artifacts = make_artifacts(seed, extra=EXTRA)
    return dataclasses.replace(artifacts, user_defined_metadata={"seed": seed})


def _load_whole(url: str, versions: dict[int, dict]) -> int | None:
    """Load a model; the seed its model.json names if its weights are that upload's
    whole (None: a mix, e.g. one writer's model.json over another's shard bytes)."""
    model = tfjsfs.load_model(url)
    seed = (model.user_defined_metadata or {}).get("seed")
    return seed if seed in versions and _same(model.weights, versions[seed]) else None


def _which(got: dict, versions: dict[int, dict]) -> int | None:
    """The seed of the version *got* equals whole, or None (a torn or foreign read)."""
    for seed, weights in versions.items():
        if _same(got, weights):
            return seed
    return None


class Reader(threading.Thread):
    """Loads every name in a loop through the servers; each load must be one whole version."""

    def __init__(self, urls: list[str], versions: dict[str, dict[int, dict]]):
        super().__init__(daemon=True)
        self.urls, self.versions = urls, versions
        self.stop = threading.Event()
        self.seen: list[tuple[str, int]] = []
        self.failures: list[str] = []

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            name = NAMES[n % len(NAMES)]
            url = self.urls[n % len(self.urls)]
            n += 1
            try:
                seed = _load_whole(f"{url}/models/{name}", self.versions[name])
            except (ModelNotFoundError, FileNotFoundError):
                continue  # not created yet
            except ShardMissingError as exc:  # a model.json older than the grace period
                self.failures.append(f"{name}: {exc}")
                continue
            except Exception as exc:
                self.failures.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            if seed is None:
                self.failures.append(f"{name}: a read matched no uploaded version (torn)")
            else:
                self.seen.append((name, seed))


def _storm(servers: list[ServerProcess]) -> tuple[dict, dict, Reader]:
    """3 x 10 concurrent uploads, create-only and replace mixed, spread over the servers."""
    jobs = []
    versions: dict[str, dict[int, dict]] = {name: {} for name in NAMES}
    for i, name in enumerate(NAMES):
        for j in range(UPLOADS_PER_NAME):
            seed = 100 * i + j
            artifacts = _upload_artifacts(seed)
            versions[name][seed] = artifacts.weights
            create_only = j % 2 == 0
            jobs.append((name, seed, create_only, servers[(i + j) % len(servers)], artifacts))
    reader = Reader([s.url for s in servers], versions)
    reader.start()

    start = threading.Barrier(len(jobs))

    def upload(job):
        name, seed, create_only, server, artifacts = job
        headers = {"If-None-Match": "*"} if create_only else {}
        start.wait(60)  # every upload at once: first-time writers really race
        reply = post_parts(f"{server.url}/models/{name}", tfjs_parts(artifacts), **headers)
        return name, seed, create_only, reply

    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(upload, jobs))
    outcomes: dict[str, list] = {name: [] for name in NAMES}
    for name, seed, create_only, reply in results:
        outcomes[name].append((seed, create_only, reply.status, reply.body))
    return outcomes, versions, reader


def _check_storm(servers, outcomes, versions, reader, list_files, read_file) -> None:
    time.sleep(0.3)  # a few more reads after the storm
    reader.stop.set()
    reader.join(60)
    assert reader.failures == [], "".join(line for srv in servers for line in srv.stderr[-40:])
    assert reader.seen, "the reader never loaded a model"
    for name in NAMES:
        created = [(s, st) for s, c, st, _ in outcomes[name] if c]
        replaced = [(s, st) for s, c, st, _ in outcomes[name] if not c]
        # create-only: exactly one may create the model, every other one gets 412
        assert {st for _, st in created} <= {201, 412}, outcomes[name]
        assert sum(st == 201 for _, st in created) <= 1
        for _, _, status, body in outcomes[name]:
            if status == 412:
                assert json.loads(body)["kind"] == "exists"
        # a replace without preconditions is last-writer-wins: it always lands
        assert {st for _, st in replaced} <= {200, 201}, outcomes[name]
        winners = {s for s, c, st, _ in outcomes[name] if st in (200, 201)}
        # what the store holds is one whole upload that succeeded
        seed = _load_whole(f"{servers[0].url}/models/{name}", versions[name])
        assert seed in winners
        doc = json.loads(read_file(name, "model.json"))
        named = sorted(posixpath.normpath(p) for g in doc["weightsManifest"] for p in g["paths"])
        assert set(named) <= set(list_files(name)), "a named shard is missing"


def _wait_clean(list_files, read_file, limit: float, servers=()) -> None:
    """Until each folder holds only model.json and the shards it names."""
    deadline = time.monotonic() + limit
    while True:
        extra = {}
        for name in NAMES:
            doc = json.loads(read_file(name, "model.json"))
            named = {posixpath.normpath(p) for g in doc["weightsManifest"] for p in g["paths"]}
            left = set(list_files(name)) - named - {"model.json"}
            if left:
                extra[name] = sorted(left)
        if not extra:
            return
        if time.monotonic() > deadline:
            logs = "".join(line for srv in servers for line in srv.stderr if "sweep" in line)
            raise AssertionError(f"left after the grace period: {extra}\n{logs}")
        time.sleep(0.25)


def _servers(store: str, *options: str) -> list[ServerProcess]:
    servers = []
    try:
        for _ in range(3):
            servers.append(ServerProcess(store, "--grace-period", str(GRACE), *options))
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def _run_storm(store: str, options: list[str], list_files, read_file) -> None:
    servers = _servers(store, *options)
    try:
        outcomes, versions, reader = _storm(servers)
        _check_storm(servers, outcomes, versions, reader, list_files, read_file)
        _wait_clean(list_files, read_file, GRACE * 3 + 10, servers)
        for name in NAMES:  # and every name still loads
            assert _load_whole(f"{servers[1].url}/models/{name}", versions[name]) is not None
    finally:
        for server in servers:
            server.stop()


def _bucket_access(fs, root: str):
    def list_files(name: str) -> list[str]:
        fs.invalidate_cache()
        folder = posixpath.join(root, name)
        return [p[len(folder) + 1 :] for p in fs.find(folder) if "/" not in p[len(folder) + 1 :]]

    def read_file(name: str, file: str) -> bytes:
        return fs.cat_file(posixpath.join(root, name, file))

    return list_files, read_file


def _options(storage_options: dict) -> list[str]:
    return [f"--storage-option={k}={v}" for k, v in storage_options.items()]


def test_three_servers_one_s3_bucket(s3_server, s3_bucket):
    proxy = RecordingProxy(s3_server.endpoint_url).start()
    try:
        opts = {**s3_server.storage_options, "endpoint_url": proxy.url}
        list_files, read_file = _bucket_access(s3_server.filesystem(), f"{s3_bucket}/store")
        _run_storm(f"s3://{s3_bucket}/store", _options(opts), list_files, read_file)
        # every model.json PUT the servers sent was conditional
        puts = [r for r in proxy.log if r.method == "PUT" and r.path.endswith("/model.json")]
        assert len(puts) >= len(NAMES) * UPLOADS_PER_NAME // 2
        for r in puts:
            assert r.headers.get("if-none-match") == "*" or r.headers.get("if-match"), r
        assert any(r.headers.get("if-match") for r in puts)  # replaces are compare-and-swap
        assert any(r.status == 412 for r in puts)  # and some lost a race
    finally:
        proxy.stop()


def test_three_servers_one_gcs_bucket(gcs_server, gcs_bucket):
    list_files, read_file = _bucket_access(gcs_server.filesystem(), f"{gcs_bucket}/store")
    _run_storm(
        f"gs://{gcs_bucket}/store", _options(gcs_server.storage_options), list_files, read_file
    )


def test_three_servers_one_local_folder(tmp_path):
    root = tmp_path / "store"

    def list_files(name: str) -> list[str]:
        folder = root / name
        return [p.name for p in folder.iterdir() if p.is_file()] if folder.exists() else []

    def read_file(name: str, file: str) -> bytes:
        return (root / name / file).read_bytes()

    _run_storm(str(root), [], list_files, read_file)
    assert not any(p.name.startswith(RETIRED_PREFIX) for p in root.rglob("*"))


def test_if_match_is_compare_and_swap_across_servers(tmp_path):
    """A client that read version A replaces it only if nobody else did (412 otherwise)."""
    servers = _servers(str(tmp_path / "store"))
    try:
        first, second = servers[:2]
        assert post_parts(f"{first.url}/models/m", tfjs_parts(make_artifacts(1))).status == 201
        tag = http("GET", f"{second.url}/models/m/model.json").headers["etag"]
        # another client replaces it through the other server
        assert post_parts(f"{first.url}/models/m", tfjs_parts(make_artifacts(2))).status == 200
        stale = post_parts(
            f"{second.url}/models/m", tfjs_parts(make_artifacts(3)), **{"If-Match": tag}
        )
        assert stale.status == 412
        assert stale.json()["kind"] == "precondition-failed"
        assert tag in stale.json()["error"]
        current = http("GET", f"{second.url}/models/m/model.json").headers["etag"]
        fresh = post_parts(
            f"{second.url}/models/m", tfjs_parts(make_artifacts(4)), **{"If-Match": current}
        )
        assert fresh.status == 200
        got = tfjsfs.load_weights(f"{first.url}/models/m")
        assert _same(got, make_artifacts(4).weights)
        missing = post_parts(
            f"{second.url}/models/none", tfjs_parts(make_artifacts(5)), **{"If-Match": "*"}
        )
        assert missing.status == 412
    finally:
        for server in servers:
            server.stop()


def test_create_only_server_never_replaces(tmp_path):
    store = str(tmp_path / "store")
    server = ServerProcess(store, "--create-only")
    try:
        assert post_parts(f"{server.url}/models/m", tfjs_parts(make_artifacts(1))).status == 201
        again = post_parts(f"{server.url}/models/m", tfjs_parts(make_artifacts(2)))
        assert again.status == 412 and "create-only" in again.json()["error"]
    finally:
        server.stop()
    assert _same(tfjsfs.load_weights(f"{store}/m"), make_artifacts(1).weights)


# ------------------------------------------------------------------ save_model

_SAVER = """
import json, sys
import tfjsfs
from tfjsfs.errors import BundleExistsError, ConcurrentUpdateError
sys.path.insert(0, {tests!r})
from serverkit import make_artifacts
url, opts, worker = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
for round in range(5):
    seed = 1000 + 10 * worker + round
    art = make_artifacts(seed)
    try:
        tfjsfs.save_model(art, url, overwrite=round > 0, storage_options=opts)
        outcome = "saved"
    except BundleExistsError:
        outcome = "exists"
    except ConcurrentUpdateError:
        outcome = "conflict"
    print(json.dumps([seed, round, outcome]), flush=True)
"""


def test_save_model_from_four_processes_into_one_s3_prefix(s3_server, s3_bucket):
    proxy = RecordingProxy(s3_server.endpoint_url).start()
    try:
        opts = {**s3_server.storage_options, "endpoint_url": proxy.url}
        url = f"s3://{s3_bucket}/shared/model"
        code = _SAVER.format(tests=str(Path(__file__).parent))
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, url, json.dumps(opts), str(w)],
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            for w in range(4)
        ]
        rows = []
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0
            rows += [json.loads(line) for line in out.splitlines()]
        firsts = [outcome for _, round, outcome in rows if round == 0]
        assert sorted(firsts).count("saved") == 1 and set(firsts) <= {"saved", "exists"}
        saved = {seed for seed, _, outcome in rows if outcome == "saved"}
        assert {outcome for _, _, outcome in rows} <= {"saved", "exists", "conflict"}
        versions = {seed: make_artifacts(seed).weights for seed in saved}
        got = tfjsfs.load_weights(url, storage_options=s3_server.storage_options)
        assert _which(got, versions) is not None
        # model.json names only existing shards, and nothing else is left (no grace period)
        fs = s3_server.filesystem()
        fs.invalidate_cache()
        folder = f"{s3_bucket}/shared/model"
        doc = json.loads(fs.cat_file(f"{folder}/model.json"))
        named = {posixpath.normpath(p) for g in doc["weightsManifest"] for p in g["paths"]}
        assert sorted(posixpath.basename(p) for p in fs.find(folder)) == sorted(
            [*named, "model.json"]
        )
        puts = [r for r in proxy.log if r.method == "PUT" and r.path.endswith("/model.json")]
        assert puts and all(
            r.headers.get("if-none-match") == "*" or r.headers.get("if-match") for r in puts
        )
    finally:
        proxy.stop()
