"""Bulk jobs: scan, verify and copy hundreds of bundles, on a real Dask
``LocalCluster`` with worker processes (and on local threads)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fsspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from manage_support import TOPOLOGY

import tfjsfs
from tfjsfs import ModelArtifacts
from tfjsfs.model import bulk

distributed = pytest.importorskip("distributed")

BUNDLES = 208
CLI = [sys.executable, "-m", "tfjsfs"]


def _artifacts(i: int) -> ModelArtifacts:
    rng = np.random.default_rng(i)
    weights = {
        "dense/kernel": rng.normal(size=(8, 4 + i % 5)).astype(np.float32),
        "dense/bias": np.arange(4 + i % 5, dtype=np.float32),
        "step": np.array([i], dtype=np.int32),
    }
    if i % 7 == 0:
        weights["labels"] = np.array([f"label-{i}", "x"])
    quantize = "uint8" if i % 11 == 0 else None
    return ModelArtifacts.from_weights(TOPOLOGY, weights, quantize=quantize)


def _break(files: dict[str, bytes], kind: str) -> None:
    """Damage one bundle's files (relative names) in place."""
    doc = json.loads(files["model.json"])
    shard = doc["weightsManifest"][0]["paths"][0]
    if kind == "missing-shard":
        del files[shard]
    elif kind == "short-shard":
        files[shard] = files[shard][:-4]
    elif kind == "bad-json":
        files["model.json"] = b'{"modelTopology": {}, "weightsManifest": ['
    elif kind == "uint8-dtype":
        doc["weightsManifest"][0]["weights"][-1]["dtype"] = "uint8"
        doc["weightsManifest"][0]["weights"][-1]["shape"] = [4]
        files["model.json"] = json.dumps(doc).encode()
    elif kind == "escape":
        doc["weightsManifest"][0]["paths"] = ["../../" + shard]
        files["model.json"] = json.dumps(doc).encode()
    elif kind == "no-manifest":
        del doc["weightsManifest"]
        files["model.json"] = json.dumps(doc).encode()
    else:
        raise ValueError(kind)


BREAKS = ["missing-shard", "short-shard", "bad-json", "uint8-dtype", "escape", "no-manifest"]


def generate(count: int, shard_size: int = 128) -> tuple[dict[str, bytes], dict[str, dict], dict]:
    """Files of *count* bundles under ``m000/``..., the sound ones' facts, and the broken ones."""
    mem = fsspec.filesystem("memory")
    files: dict[str, bytes] = {}
    facts, broken = {}, {}
    for i in range(count):
        name = f"set{i % 3}/m{i:03d}"
        root = f"/gen-bulk/{name}"
        art = _artifacts(i)
        tfjsfs.save_model(art, f"memory://{root}", shard_size=shard_size)
        bundle = {p[len(root) + 1 :]: mem.cat_file(p) for p in mem.find(root)}
        mem.rm(root, recursive=True)
        if i % 29 == 3:
            kind = BREAKS[(i // 29) % len(BREAKS)]
            _break(bundle, kind)
            broken[name] = kind
        else:
            facts[name] = {
                "weights": len(art.weight_specs),
                "bytes": art.weight_data_bytes,
                "shards": len(bundle) - 1,
                "dtypes": ",".join(sorted({s.dtype for s in art.weight_specs})),
                "quantization": "uint8" if i % 11 == 0 else "",
            }
        files.update({f"{name}/{rel}": data for rel, data in bundle.items()})
    return files, facts, broken


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster with two worker processes on 127.0.0.1."""
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=2,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=40,
    ) as cl:
        yield cl


@pytest.fixture
def client(cluster):
    with distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def generated():
    return generate(BUNDLES)


@pytest.fixture(scope="module")
def s3_models(s3_server, generated):
    """The generated bundles in a bucket of their own (uploaded once per module)."""
    files, facts, broken = generated
    bucket = s3_server.new_bucket()
    fs = s3_server.filesystem()
    fs.pipe({f"{bucket}/models/{k}": v for k, v in files.items()})
    yield f"s3://{bucket}/models", s3_server.storage_options, facts, broken
    s3_server.remove_bucket(bucket)


def _check_scan(frame, prefix: str, facts: dict, broken: dict) -> None:
    assert list(frame.columns) == bulk.SCAN_COLUMNS
    urls = {u[len(prefix) + 1 :] for u in frame.url}
    assert urls == set(facts) | set(broken)  # every bundle, nothing else
    assert len(frame) == len(facts) + len(broken)
    flagged = {u[len(prefix) + 1 :] for u in frame.url[~frame.ok]}
    assert flagged == set(broken)  # exactly the broken ones
    rows = frame.set_index(frame.url.str.slice(len(prefix) + 1))
    for name, fact in facts.items():
        row = rows.loc[name]
        assert row.problems == []
        assert (row.weights, row.bytes, row.shards) == (
            fact["weights"],
            fact["bytes"],
            fact["shards"],
        )
        assert (row["dtypes"], row["quantization"]) == (fact["dtypes"], fact["quantization"])
        assert row.format == "layers-model"
    for name in broken:
        assert rows.loc[name].problems, name


def test_scan_on_a_cluster_finds_every_bundle_and_flags_the_broken(client, s3_models):
    prefix, options, facts, broken = s3_models
    with distributed.get_task_stream(client) as stream:
        frame = bulk.scan(prefix, client, storage_options=options)
    _check_scan(frame, prefix, facts, broken)
    workers = {t["worker"] for t in stream.data if "_scan_chunk" in str(t["key"])}
    assert workers == set(client.scheduler_info()["workers"])  # both processes worked
    reasons = dict(zip(frame.url, frame.problems, strict=True))
    missing = [n for n, k in broken.items() if k == "missing-shard"]
    assert any("missing" in p for p in reasons[f"{prefix}/{missing[0]}"])
    bad = [n for n, k in broken.items() if k == "uint8-dtype"]
    assert any("TF.js cannot load it" in p for p in reasons[f"{prefix}/{bad[0]}"])


def test_filesystem_instances_ship_to_workers(client, s3_models, s3_server):
    prefix, _, facts, broken = s3_models
    fs = s3_server.filesystem()  # no options: the instance itself is pickled to the workers
    subset = f"{prefix}/set1"
    frame = bulk.scan(subset, client, storage_options={"fs": fs})
    names = {u[len(subset) + 1 :] for u in frame.url}
    assert names == {n[5:] for n in [*facts, *broken] if n.startswith("set1/")}
    assert {u[len(subset) + 1 :] for u in frame.url[~frame.ok]} == {
        n[5:] for n in broken if n.startswith("set1/")
    }


def test_copy_all_to_gcs_on_a_cluster_and_verify_all(client, s3_models, gcs_server, gcs_bucket):
    prefix, options, facts, broken = s3_models
    dst = f"gs://{gcs_bucket}/copies"
    frame = bulk.copy_all(
        prefix, dst, client, src_options=options, dst_options=gcs_server.storage_options
    )
    assert set(frame.columns) == {"src", "dst", "ok", "bytes", "files", "error"}
    copied = {d[len(dst) + 1 :] for d in frame.dst[frame.ok]}
    failed = {s[len(prefix) + 1 :] for s in frame.src[~frame.ok]}
    # every sound bundle is copied; broken sources are refused, with a reason
    assert copied == set(facts)
    assert failed == set(broken)
    assert all(frame.error[~frame.ok])
    for row in frame[frame.ok].itertuples():
        assert row.bytes == facts[row.src[len(prefix) + 1 :]]["bytes"]
    listed = tfjsfs.list_models(dst, storage_options=gcs_server.storage_options)
    assert {u[len(dst) + 1 :] for u in listed} == copied
    for name in sorted(facts)[:5]:  # values equal
        want = tfjsfs.load_weights(f"{prefix}/{name}", storage_options=options)
        got = tfjsfs.load_weights(f"{dst}/{name}", storage_options=gcs_server.storage_options)
        assert {k: v.tolist() for k, v in got.items()} == {k: v.tolist() for k, v in want.items()}
    checked = bulk.verify_all(dst, client, storage_options=gcs_server.storage_options)
    assert len(checked) == len(copied) and checked.ok.all()


def test_bulk_on_local_threads(tmp_path):
    files, facts, broken = generate(40, shard_size=100)
    root = tmp_path / "models"
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    counted = fsspec.callbacks.Callback()
    frame = bulk.scan(str(root), progress=counted)
    _check_scan(frame, str(root), facts, broken)
    assert counted.size == counted.value == 40
    copies = bulk.copy_all(str(root), f"file://{tmp_path}/copies", shard_size=33)
    assert {s[len(str(root)) + 1 :] for s in copies.src[copies.ok]} == set(facts)
    checked = bulk.verify_all(f"{tmp_path}/copies", values=True)
    assert checked.ok.all() and len(checked) == len(facts)
    sizes = [p.stat().st_size for p in (tmp_path / "copies").rglob("*.bin")]
    assert max(sizes) == 33


def test_cli_scan_and_recursive_copy_on_a_scheduler(cluster, s3_models, tmp_path):
    prefix, options, facts, broken = s3_models
    opts = [f"--option={k}={v}" for k, v in options.items()]
    out = subprocess.run(
        [*CLI, "scan", "--json", "--scheduler", cluster.scheduler_address, *opts, prefix],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    records = json.loads(out.stdout)
    assert {r["url"][len(prefix) + 1 :] for r in records if not r["ok"]} == set(broken)
    assert len(records) == len(facts) + len(broken)
    dst = tmp_path / "local-copies"
    subset = f"{prefix}/set0"
    facts0 = {n[5:] for n in facts if n.startswith("set0/")}
    broken0 = {n[5:] for n in broken if n.startswith("set0/")}
    out = subprocess.run(
        [*CLI, "cp", "-r", "--scheduler", cluster.scheduler_address, *opts, subset, str(dst)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1  # the broken sources fail the copy
    failed = [line for line in out.stderr.splitlines() if line.startswith("FAILED ")]
    assert {line.split()[1][len(subset) + 1 : -1] for line in failed} == broken0
    assert f"{len(facts0)} of {len(facts0) + len(broken0)} model(s) copied" in out.stderr
    copied = {str(p.parent.relative_to(dst)) for p in Path(dst).rglob("model.json")}
    assert copied == facts0


@given(st.integers(0, 2000), st.integers(1, 64))
def test_tasks_hold_every_item_once_and_at_most_max_task_items(count, parts):
    items = list(range(count))
    chunks = bulk._chunks(items, parts)
    assert sorted(i for c in chunks for i in c) == items
    assert all(0 < len(c) <= bulk.MAX_TASK_ITEMS for c in chunks)
    assert len(chunks) == (0 if count == 0 else max(min(count, parts), -(-count // 32)))
