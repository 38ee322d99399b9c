"""``tfjsfs sync`` / :func:`tfjsfs.sync_models` on real peers: moto S3,
fake-gcs-server and local folders, with every request the stores' clients
send counted (s3fs's ``_call_s3``, gcsfs's ``_request``)."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pytest
from fsspec.asyn import get_loop, sync
from fsspec.callbacks import Callback
from manage_support import (
    GROUPS,
    TOPOLOGY,
    assert_same_weights,
    sample_artifacts,
    sample_weights,
)

import tfjsfs
from tfjsfs.cli.main import main
from tfjsfs.errors import ShardMissingError
from tfjsfs.format.manifest import ModelJSON, WeightIndex
from tfjsfs.io.resolve import resolve
from tfjsfs.io.writer import RETIRED_PREFIX, sweep_folder
from tfjsfs.model.sync import SYNC_KEY

SHARD = 256
MODELS = 50


# ------------------------------------------------------------------ helpers


class Requests:
    """Every request one s3fs or gcsfs instance sends, as ``(verb, key, body bytes)``.

    ``verb`` is ``list``, ``read``, ``write``, ``delete`` or the backend's own
    name for anything else.
    """

    def __init__(self, fs):
        self.fs, self.log = fs, []
        if hasattr(fs, "_call_s3"):
            original = fs._call_s3

            async def call_s3(method, *args, **kwargs):
                self.log.append(self._s3(method, kwargs))
                return await original(method, *args, **kwargs)

            fs._call_s3 = call_s3
        else:
            original = fs._request

            async def request(method, path, *args, data=None, **kwargs):
                self.log.append(self._gcs(method, path, args, data))
                return await original(method, path, *args, data=data, **kwargs)

            fs._request = request

    @staticmethod
    def _s3(method, kwargs):
        verbs = {
            "list_objects_v2": "list",
            "get_object": "read",
            "put_object": "write",
            "delete_object": "delete",
        }
        body = kwargs.get("Body")
        return verbs.get(method, method), kwargs.get("Key"), len(body) if body else 0

    @staticmethod
    def _gcs(method, path, args, data):
        if method == "GET" and path == "b/{}/o":
            return "list", args[0], 0
        if method == "GET" and "/download/" in path:
            return "read", path.split("/o/", 1)[1].split("?")[0].replace("%2F", "/"), 0
        if method == "POST" and "/upload/" in path:
            name = re.search(rb'"name": "([^"]+)"', bytes(data)).group(1).decode()
            return "write", name, len(data)
        if method == "DELETE":
            return "delete", args[1], 0
        return method, path, 0

    def verbs(self, verb):
        return [key for v, key, _ in self.log if v == verb]

    def clear(self):
        self.log.clear()


def sample_files(count: int = MODELS) -> dict[str, bytes]:
    """``{"m07/model.json": ..., "m07/group1-shard1of4.bin": ...}`` for *count* models."""
    mem = fsspec.filesystem("memory")
    root = f"/gen-{uuid.uuid4().hex[:8]}"
    for i in range(count):
        tfjsfs.save_model(sample_artifacts(i), f"memory://{root}/m{i:02d}", shard_size=SHARD)
    files = {p[len(root) + 1 :]: mem.cat_file(p) for p in mem.find(root)}
    mem.rm(root, recursive=True)
    return files


@pytest.fixture(scope="module")
def files50():
    return sample_files()


def write_local(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def same_models(src: str, dst: str, names, src_opts=None, dst_opts=None) -> None:
    """DST holds SRC's models: same topology and specs, exactly the same values."""
    for name in names:
        a = tfjsfs.load_model(f"{src}/{name}", storage_options=src_opts or {})
        b = tfjsfs.load_model(f"{dst}/{name}", storage_options=dst_opts or {})
        assert b.model_topology == a.model_topology, name
        assert [s.to_json() for s in b.weight_specs] == [s.to_json() for s in a.weight_specs]
        assert b.weight_data == a.weight_data, name


def holding_shards(folder: Path, weight: str) -> list[str]:
    """The shard files that hold *weight*'s bytes."""
    doc = ModelJSON.parse((folder / "model.json").read_bytes())
    sizes = [[(folder / p).stat().st_size for p in g.paths] for g in doc.weights_manifest]
    loc = WeightIndex(doc.weights_manifest, sizes).locations[weight]
    paths = doc.weights_manifest[loc.group].paths
    return [paths[i] for i, _, _ in loc.segments]


def change_tensor(folder: Path, weight: str, value: np.ndarray) -> list[str]:
    """Write new float32 values of *weight* into its shards, in place; the shards touched."""
    doc = ModelJSON.parse((folder / "model.json").read_bytes())
    sizes = [[(folder / p).stat().st_size for p in g.paths] for g in doc.weights_manifest]
    loc = WeightIndex(doc.weights_manifest, sizes).locations[weight]
    data = value.astype(np.float32).tobytes()
    assert len(data) == loc.nbytes
    paths, done = doc.weights_manifest[loc.group].paths, 0
    for i, start, end in loc.segments:
        shard = bytearray((folder / paths[i]).read_bytes())
        shard[start:end] = data[done : done + end - start]
        done += end - start
        (folder / paths[i]).write_bytes(bytes(shard))
    return [paths[i] for i, _, _ in loc.segments]


def snapshot_local(root: Path) -> dict[str, tuple]:
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
        for p in root.rglob("*")
        if p.is_file()
    }


# ------------------------------------------------------------------ the diff


def test_second_sync_of_50_unchanged_models_s3_to_gcs_sends_no_shard(
    s3_server, s3_bucket, gcs_server, gcs_bucket, files50
):
    """One listing per tree plus one small read per model; no shard request at all."""
    s3 = s3_server.filesystem()
    s3.pipe({f"{s3_bucket}/models/{k}": v for k, v in files50.items()})
    src, dst = f"s3://{s3_bucket}/models", f"gs://{gcs_bucket}/mirror"
    first = tfjsfs.sync_models(
        src, dst, src_options=s3_server.storage_options, dst_options=gcs_server.storage_options
    )
    assert (first.count("new"), first.count("error")) == (MODELS, 0)
    shard_bytes = sum(len(v) for k, v in files50.items() if k.endswith(".bin"))
    assert first.bytes_sent == shard_bytes
    same_models(
        src, dst, ["m00", "m31", "m49"], s3_server.storage_options, gcs_server.storage_options
    )

    sfs, gfs = s3_server.filesystem(), gcs_server.filesystem()
    s_log, g_log = Requests(sfs), Requests(gfs)
    again = tfjsfs.sync_models(src, dst, src_options={"fs": sfs}, dst_options={"fs": gfs})
    assert again.count("unchanged") == MODELS
    assert again.bytes_sent == 0
    assert again.summary().startswith("0 new, 0 changed (0 B sent), 50 unchanged, 0 deleted in ")
    assert [v for v, _, _ in s_log.log] == ["list"]  # the source: one listing, nothing read
    assert g_log.verbs("list") == [gcs_bucket]
    assert sorted(g_log.verbs("read")) == [f"mirror/m{i:02d}/model.json" for i in range(MODELS)]
    assert {v for v, _, _ in g_log.log} == {"list", "read"}
    requests_per_model = (len(s_log.log) + len(g_log.log)) / MODELS
    assert requests_per_model == 1 + 2 / MODELS


def test_one_tensor_changed_in_one_of_50_local_to_s3(tmp_path, s3_server, s3_bucket, files50):
    """Exactly the shard(s) holding the tensor, plus model.json, are sent."""
    src = tmp_path / "models"
    write_local(src, files50)
    dst = f"s3://{s3_bucket}/models"
    opts = s3_server.storage_options
    assert tfjsfs.sync_models(str(src), dst, dst_options=opts).count("new") == MODELS
    new_value = sample_weights(17)["dense/kernel"] * 2 + 1
    touched = change_tensor(src / "m17", "dense/kernel", new_value)
    assert touched == holding_shards(src / "m17", "dense/kernel")
    assert (
        2
        <= len(touched)
        < len(json.loads((src / "m17/model.json").read_bytes())["weightsManifest"][0]["paths"])
    )

    fs = s3_server.filesystem()
    log = Requests(fs)
    report = tfjsfs.sync_models(str(src), dst, dst_options={"fs": fs})
    assert (report.count("changed"), report.count("unchanged")) == (1, MODELS - 1)
    (m17,) = [m for m in report.models if m.action == "changed"]
    assert m17.name == "m17" and m17.sent == len(touched)
    assert m17.bytes_sent == sum((src / "m17" / p).stat().st_size for p in touched)
    writes = log.verbs("write")
    assert writes[-1] == "models/m17/model.json"  # published last
    sent_shards = sorted(w.rsplit("/", 1)[1] for w in writes[:-1])
    stems = sorted(p[: -len(".bin")] for p in touched)
    assert [re.sub(r"\.[0-9a-f]{12}\.bin$", "", s) for s in sent_shards] == stems
    sent_bytes = sum(n for v, _, n in log.log if v == "write" and not _.endswith("model.json"))
    assert sent_bytes == m17.bytes_sent
    assert len(log.verbs("delete")) == len(touched)  # the replaced shards, after publication
    got = tfjsfs.load_weights(f"{dst}/m17", storage_options=opts)
    expected = {**sample_weights(17), "dense/kernel": new_value.astype(np.float32)}
    assert_same_weights(got, expected)
    same_models(str(src), dst, ["m16", "m17", "m18"], None, opts)


def test_same_names_copied_by_other_means_compare_by_md5(
    s3_server, s3_bucket, gcs_server, gcs_bucket
):
    """A GCS copy made by copy_model: S3 ETags and GCS md5Hash agree, nothing is re-sent."""
    s3 = s3_server.filesystem()
    s3.pipe({f"{s3_bucket}/models/{k}": v for k, v in sample_files(3).items()})
    src, dst = f"s3://{s3_bucket}/models", f"gs://{gcs_bucket}/models"
    s_opts, d_opts = s3_server.storage_options, gcs_server.storage_options
    for i in range(3):
        tfjsfs.copy_model(
            f"{src}/m{i:02d}", f"{dst}/m{i:02d}", src_options=s_opts, dst_options=d_opts
        )
    report = tfjsfs.sync_models(src, dst, src_options=s_opts, dst_options=d_opts)
    assert [(m.action, m.sent, m.kept) for m in report.models] == [("changed", 0, 6)] * 3
    assert report.bytes_sent == 0
    again = tfjsfs.sync_models(src, dst, src_options=s_opts, dst_options=d_opts)
    assert again.count("unchanged") == 3
    same_models(src, dst, ["m00", "m02"], s_opts, d_opts)


def test_checksum_compares_bytes_where_the_store_has_no_hash(tmp_path):
    """Local copies carry no checksum: by default they are re-sent, with checksum=True not."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_local(src, sample_files(3))
    for i in range(3):
        tfjsfs.copy_model(str(src / f"m{i:02d}"), str(dst / f"m{i:02d}"))
    dry = tfjsfs.sync_models(str(src), str(dst), dry_run=True)
    assert [m.sent for m in dry.models] == [6, 6, 6]  # sizes alone cannot tell
    report = tfjsfs.sync_models(str(src), str(dst), checksum=True)
    assert [(m.action, m.sent, m.kept) for m in report.models] == [("changed", 0, 6)] * 3
    # a shard of the same size but other bytes is found and re-sent
    shard = dst / "m01" / "group1-shard2of4.bin"
    shard.write_bytes(bytes(255 - b for b in shard.read_bytes()))
    report = tfjsfs.sync_models(str(src), str(dst), checksum=True)
    assert [(m.name, m.sent) for m in report.models if m.action != "unchanged"] == [("m01", 1)]
    assert tfjsfs.sync_models(str(src), str(dst)).count("unchanged") == 3
    same_models(str(src), str(dst), ["m00", "m01", "m02"])


# ------------------------------------------------------------------ options


def test_delete_include_exclude_s3_to_local(tmp_path, s3_server, s3_bucket):
    s3 = s3_server.filesystem()
    files = sample_files(6)
    s3.pipe({f"{s3_bucket}/models/{k}": v for k, v in files.items()})
    src, dst, opts = f"s3://{s3_bucket}/models", tmp_path / "dst", s3_server.storage_options
    report = tfjsfs.sync_models(src, str(dst), src_options=opts, exclude=["m05"])
    assert sorted(p.name for p in dst.iterdir()) == ["m00", "m01", "m02", "m03", "m04"]
    report = tfjsfs.sync_models(src, str(dst), src_options=opts, include=["m0[0-2]", "m05"])
    assert [(m.name, m.action) for m in report.models] == [
        ("m00", "unchanged"),
        ("m01", "unchanged"),
        ("m02", "unchanged"),
        ("m05", "new"),
    ]
    s3.rm([f"{s3_bucket}/models/m01", f"{s3_bucket}/models/m04"], recursive=True)
    before = snapshot_local(dst / "m00")
    report = tfjsfs.sync_models(src, str(dst), src_options=opts, delete=True, exclude=["m04"])
    assert [(m.name, m.action) for m in report.models if m.action != "unchanged"] == [
        ("m01", "deleted")
    ]
    assert sorted(p.name for p in dst.iterdir()) == ["m00", "m02", "m03", "m04", "m05"]
    assert snapshot_local(dst / "m00") == before
    report = tfjsfs.sync_models(src, str(dst), src_options=opts, delete=True)
    assert [(m.name, m.action) for m in report.models if m.action != "unchanged"] == [
        ("m04", "deleted")
    ]
    same_models(src, str(dst), ["m00", "m02", "m03", "m05"], opts)


def test_dry_run_changes_nothing_local_to_s3(tmp_path, s3_server, s3_bucket):
    src = tmp_path / "src"
    write_local(src, sample_files(4))
    dst, opts = f"s3://{s3_bucket}/models", s3_server.storage_options
    tfjsfs.sync_models(str(src), dst, dst_options=opts)
    touched = change_tensor(src / "m01", "dense/bias", np.full(16, 7, np.float32))
    write_local(src, {f"m09/{k[4:]}": v for k, v in sample_files(1).items()})
    (src / "m03" / "model.json").unlink()
    state = {k: v["ETag"] for k, v in s3_server.filesystem().find(s3_bucket, detail=True).items()}

    fs = s3_server.filesystem()
    log = Requests(fs)
    report = tfjsfs.sync_models(str(src), dst, dst_options={"fs": fs}, dry_run=True, delete=True)
    assert [(m.name, m.action, m.sent) for m in report.models] == [
        ("m00", "unchanged", 0),
        ("m01", "changed", len(touched)),
        ("m02", "unchanged", 0),
        ("m03", "deleted", 0),
        ("m09", "new", 6),
    ]
    assert re.fullmatch(
        r"1 new, 1 changed \(1\.\d KiB to send\), 2 unchanged, 1 to delete "
        r"in \d+\.\d s \(dry run\)",
        report.summary(),
    )
    sizes = [(src / "m01" / p).stat().st_size for p in touched]
    sizes += [p.stat().st_size for p in (src / "m09").glob("*.bin")]
    assert report.bytes_sent == sum(sizes)
    assert {v for v, _, _ in log.log} <= {"list", "read"}
    after = {k: v["ETag"] for k, v in s3_server.filesystem().find(s3_bucket, detail=True).items()}
    assert after == state


def test_cli_sync_plan_summary_and_json(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_local(src, sample_files(3))
    assert main(["sync", "-q", "--dry-run", str(src), str(dst)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == [f"would add     m{i:02d} (6 shards, 1.1 KiB)" for i in range(3)]
    assert out[3].startswith("3 new, 0 changed (3.3 KiB to send), 0 unchanged, 0 to delete in ")
    assert not dst.exists()
    assert main(["sync", "-q", "--verify", str(src), str(dst)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("3 new, 0 changed (3.3 KiB sent)")
    assert main(["sync", "-q", "--json", str(src), str(dst)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["unchanged"], report["new"], report["bytes_sent"]) == (3, 0, 0)
    assert [m["name"] for m in report["models"]] == ["m00", "m01", "m02"]


class Recorder(Callback):
    """Records sizes and updates; ``branched`` hands out one child per model."""

    def __init__(self):
        super().__init__()
        self.children: dict[str, Recorder] = {}
        self.closed = False
        self.sizes: list[int] = []

    def set_size(self, size):
        super().set_size(size)
        self.sizes.append(size)

    def branched(self, path_1, path_2, **kwargs):
        child = Recorder()
        self.children[kwargs["name"]] = child
        return child

    def close(self):
        self.closed = True


def test_progress_per_model_and_overall(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = sample_files(3)
    write_local(src, {k: v for k, v in files.items() if k.startswith("m01/")})
    tfjsfs.sync_models(str(src), str(dst))  # m01 is then unchanged: no bar, no bytes
    write_local(src, {k: v for k, v in files.items() if not k.startswith("m01/")})
    whole = Recorder()
    report = tfjsfs.sync_models(str(src), str(dst), callback=whole)
    sent = {m.name: m.bytes_sent for m in report.models}
    assert sent["m01"] == 0 and sent["m00"] > 0 and sent["m02"] > 0
    assert sorted(whole.children) == ["m00", "m02"]
    for name, child in whole.children.items():
        assert (child.size, child.value, child.closed) == (sent[name], sent[name], True)
    assert whole.size == whole.value == sent["m00"] + sent["m02"]
    # the total grows as models are planned (each is sent once planned)
    total = sent["m00"] + sent["m02"]  # (models are planned concurrently: either first)
    assert whole.sizes in ([sent["m00"], total], [sent["m02"], total])


def test_cli_sync_draws_a_bar_per_model(tmp_path):
    pytest.importorskip("tqdm")
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_local(src, sample_files(3))
    run = subprocess.run(
        [sys.executable, "-m", "tfjsfs", "sync", "--progress", str(src), str(dst)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    labels = set(re.findall(r"(m0\d|sync):\s+\d+%", run.stderr))
    assert labels == {"m00", "m01", "m02", "sync"}, run.stderr
    assert "3 new, 0 changed (3.3 KiB sent)" in run.stdout


def test_a_broken_source_model_is_reported_and_never_half_written(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_local(src, sample_files(3))
    (src / "m01" / "group1-shard3of4.bin").unlink()
    short = src / "m02" / "group1-shard4of4.bin"
    short.write_bytes(short.read_bytes()[:-4])
    report = tfjsfs.sync_models(str(src), str(dst))
    assert [(m.name, m.action) for m in report.models] == [
        ("m00", "new"),
        ("m01", "error"),
        ("m02", "error"),
    ]
    errors = {m.name: m.error for m in report.models}
    assert f"{src}/m01/model.json: weight shard {src}/m01/group1-shard3of4.bin" in errors["m01"]
    assert "dense/kernel, dense/bias need 832 bytes" in errors["m02"]
    assert "group1-shard4of4.bin hold 828" in errors["m02"]
    assert sorted(p.name for p in dst.iterdir()) == ["m00"]
    assert not report.ok and "2 failed" in report.summary()
    assert main(["sync", "-q", str(src), str(dst)]) == 1
    with pytest.raises(ShardMissingError):
        tfjsfs.load_weights(str(src / "m01"))


def test_a_model_json_over_the_cap_is_refused_like_a_load_refuses_it(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_local(src, sample_files(2))
    path = src / "m01" / "model.json"
    text = path.read_bytes()
    path.write_bytes(text + b" " * ((64 << 20) + 1 - len(text)))  # still valid JSON
    report = tfjsfs.sync_models(str(src), str(dst))
    by_name = {m.name: m for m in report.models}
    assert (by_name["m00"].action, by_name["m01"].action) == ("new", "error")
    assert "model.json holds more than 67108864 bytes" in by_name["m01"].error
    assert not (dst / "m01").exists()
    same_models(str(src), str(dst), ["m00"])


def test_sync_record_names_the_source_state(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = sample_files(1)
    write_local(src, files)
    tfjsfs.sync_models(str(src), str(dst))
    doc = json.loads((dst / "m00" / "model.json").read_bytes())
    record = doc["userDefinedMetadata"][SYNC_KEY]
    assert record["source"]["size"] == len(files["m00/model.json"])
    sources = sorted(r["source"] for r in record["shards"].values())
    assert sources == sorted(k[4:] for k in files if k.endswith(".bin"))
    for name, r in record["shards"].items():
        data = (dst / "m00" / name).read_bytes()
        assert r["size"] == len(data) == len(files[f"m00/{r['source']}"])
        assert data == files[f"m00/{r['source']}"]
    paths = [p for g in doc["weightsManifest"] for p in g["paths"]]
    assert sorted(paths) == sorted(record["shards"])


# ------------------------------------------------------------------ resumable


CLI = [sys.executable, "-m", "tfjsfs"]


def _reader(url, versions, opts, stop, seen, failures):
    """Load DST models in a loop; every load must equal one whole version."""
    names = sorted(versions)
    n = 0
    while not stop.is_set():
        name = names[n % len(names)]
        n += 1
        try:
            got = tfjsfs.load_weights(
                f"{url}/{name}", storage_options={**opts, "skip_instance_cache": True}
            )
        except ShardMissingError:  # a model.json read just before its old shards went
            seen.append((name, "gone"))
            continue
        except Exception as exc:
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        for label, expected in versions[name].items():
            if _equal(got, expected):
                seen.append((name, label))
                break
        else:
            failures.append(f"{name}: a read matched no version (torn)")


def tripled(seed: int) -> dict:
    """The sample weights with every float tensor tripled."""
    return {k: (v * 3 if v.dtype.kind == "f" else v) for k, v in sample_weights(seed).items()}


def _equal(got, expected) -> bool:
    try:
        assert_same_weights(got, expected)
    except AssertionError:
        return False
    return True


def test_kill_9_midway_then_rerun_local_to_s3(tmp_path, s3_server, s3_bucket):
    """SIGKILL a sync; readers never see a mix; a second run finishes without re-sending."""
    count = 16
    old, new = tmp_path / "old", tmp_path / "new"
    write_local(old, sample_files(count))
    dst, opts = f"s3://{s3_bucket}/models", s3_server.storage_options
    assert tfjsfs.sync_models(str(old), dst, dst_options=opts).count("new") == count
    # the new version, as a re-export writes it: the same shard names and sizes, other bytes
    names = [f"m{i:02d}" for i in range(count)]
    for i, name in enumerate(names):
        art = tfjsfs.ModelArtifacts.from_weights(TOPOLOGY, tripled(i), groups=GROUPS)
        tfjsfs.save_model(art, str(new / name), shard_size=SHARD)
        assert sorted(os.listdir(new / name)) == sorted(os.listdir(old / name))
    versions = {
        name: {
            "old": sample_weights(i),
            "new": {
                k: (v * 3 if v.dtype.kind == "f" else v) for k, v in sample_weights(i).items()
            },
        }
        for i, name in enumerate(names)
    }
    total = sum(1 for p in new.rglob("*.bin"))
    old_total = sum(1 for p in old.rglob("*.bin"))
    stop, seen, failures = threading.Event(), [], []
    readers = [
        threading.Thread(target=_reader, args=(dst, versions, opts, stop, seen, failures))
        for _ in range(2)
    ]
    for r in readers:
        r.start()
    deadline = time.monotonic() + 120
    while not any(label == "old" for _, label in seen) and time.monotonic() < deadline:
        time.sleep(0.02)  # the readers read the old version before the sync starts
    fs = s3_server.filesystem()
    args = ["-o", f"endpoint_url={opts['endpoint_url']}", "-o", "key=testing"]
    args += ["-o", "secret=testing"]
    proc = subprocess.Popen(
        [*CLI, "sync", "-q", *args, str(new), dst],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    per_model, old_per_model = total // count, old_total // count
    try:
        deadline = time.monotonic() + 300  # the CLI may start slowly on a busy machine
        while time.monotonic() < deadline:
            fs.invalidate_cache()
            tagged = [p for p in fs.find(s3_bucket) if re.search(r"of\d+\.[0-9a-f]{12}\.bin$", p)]
            arrived = collections.Counter(p.split("/")[-2] for p in tagged)
            # kill once a model holds some of its new shards but not all: unpublished
            if any(0 < n - old_per_model < per_model for n in arrived.values()):
                break
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        assert proc.returncode == -signal.SIGKILL
        report = tfjsfs.sync_models(str(new), dst, dst_options=opts)
    finally:
        time.sleep(0.3)
        stop.set()
        for r in readers:
            r.join(60)
    assert report.ok, [m.error for m in report.models if m.error]
    resumed = sum(m.resumed for m in report.models)
    sent = sum(m.sent for m in report.models)
    assert resumed > 0
    assert sent + sum(m.kept for m in report.models) == total
    assert sent < total  # what arrived before the kill was not sent again
    assert not failures, failures[:5]
    assert {label for _, label in seen} >= {"old", "new"}
    same_models(str(new), dst, names, None, opts)
    fs.invalidate_cache()
    leftovers = [p for p in fs.find(s3_bucket) if p.endswith(".bin")]
    assert len(leftovers) == total  # no orphan of the killed run, no old shard


# ------------------------------------------------------------------ Dask


def test_scheduler_runs_the_diff_and_transfers_on_dask_workers(tmp_path, s3_server, s3_bucket):
    distributed = pytest.importorskip("distributed")
    s3 = s3_server.filesystem()
    s3.pipe({f"{s3_bucket}/models/{k}": v for k, v in sample_files(12).items()})
    src, dst, opts = f"s3://{s3_bucket}/models", tmp_path / "dst", s3_server.storage_options
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=2,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=40,
    ) as cluster:
        first = tfjsfs.sync_models(
            src, str(dst), src_options=opts, scheduler=cluster.scheduler_address
        )
        assert (first.count("new"), first.ok) == (12, True)
        assert first.bytes_sent == sum(p.stat().st_size for p in dst.rglob("*.bin"))
        changed = tmp_path / "m05"
        changed.mkdir()
        for path in s3.find(f"{s3_bucket}/models/m05"):
            (changed / path.rsplit("/", 1)[1]).write_bytes(s3.cat(path))
        assert change_tensor(changed, "out/kernel", np.ones((16, 3))) == ["group2-shard1of2.bin"]
        shard = (changed / "group2-shard1of2.bin").read_bytes()
        s3.pipe(f"{s3_bucket}/models/m05/group2-shard1of2.bin", shard)
        again = tfjsfs.sync_models(
            src, str(dst), src_options=opts, scheduler=cluster.scheduler_address
        )
    assert [(m.name, m.sent) for m in again.models if m.action != "unchanged"] == [("m05", 1)]
    assert tfjsfs.sync_models(src, str(dst), src_options=opts).count("unchanged") == 12
    same_models(src, str(dst), [f"m{i:02d}" for i in range(12)], opts)


# ------------------------------------------------------------------ rewriting on the way


def test_reshard_and_quantize_on_the_way_change_only_with_the_source(tmp_path):
    """The record lists the source's shards: a rewritten copy is redone only when they change."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_local(src, sample_files(3))
    first = tfjsfs.sync_models(str(src), str(dst), shard_size=300, quantize="float16")
    assert (first.count("new"), first.ok) == (3, True)
    doc = json.loads((dst / "m01" / "model.json").read_bytes())
    record = doc["userDefinedMetadata"][SYNC_KEY]
    assert record["rewrite"] == {"shard_size": 300, "quantize": "float16"}
    assert sorted(record["sources"]) == sorted(p.name for p in (src / "m01").glob("*.bin"))
    assert {
        s["dtype"] for g in doc["weightsManifest"] for s in g["weights"] if "quantization" in s
    } == {"float32"}
    sizes = [(dst / "m01" / p).stat().st_size for p in doc["weightsManifest"][0]["paths"]]
    assert sizes[:-1] == [300] * (len(sizes) - 1)
    got = tfjsfs.load_weights(str(dst / "m01"))
    np.testing.assert_allclose(got["dense/kernel"], sample_weights(1)["dense/kernel"], rtol=1e-3)
    assert_same_weights({"vocab": got["vocab"]}, {"vocab": sample_weights(1)["vocab"]})

    before = snapshot_local(dst)
    again = tfjsfs.sync_models(str(src), str(dst), shard_size=300, quantize="float16")
    assert again.count("unchanged") == 3 and snapshot_local(dst) == before
    change_tensor(src / "m02", "dense/kernel", np.zeros((12, 16)))
    report = tfjsfs.sync_models(str(src), str(dst), shard_size=300, quantize="float16")
    assert [(m.name, m.action) for m in report.models] == [
        ("m00", "unchanged"),
        ("m01", "unchanged"),
        ("m02", "changed"),
    ]
    assert not tfjsfs.load_weights(str(dst / "m02"))["dense/kernel"].any()
    other = tfjsfs.sync_models(str(src), str(dst), shard_size=500, quantize="float16")
    assert other.count("changed") == 3  # other options: every model is redone
    plain = tfjsfs.sync_models(str(src), str(dst))
    assert plain.count("changed") == 3
    same_models(str(src), str(dst), ["m00", "m01", "m02"])


def test_the_next_run_finishes_a_sweep_a_killed_run_missed(tmp_path):
    """Killed after publishing but before deleting: the old shards and orphans go next time."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_local(src, sample_files(2))
    tfjsfs.sync_models(str(src), str(dst))
    old_files = {p.name: p.read_bytes() for p in (dst / "m00").glob("*.bin")}
    art = tfjsfs.ModelArtifacts.from_weights(TOPOLOGY, tripled(0), groups=GROUPS)
    tfjsfs.save_model(art, str(src / "m00"), shard_size=100, overwrite=True)
    report = tfjsfs.sync_models(str(src), str(dst))
    (m00,) = [m for m in report.models if m.action == "changed"]
    assert sorted(Path(p).name for p in m00.removed) == sorted(old_files)
    # the state a run killed between publishing and deleting leaves, plus an orphan
    for name, data in old_files.items():
        (dst / "m00" / name).write_bytes(data)
    (dst / "m00" / "group1-shard1of9.0123456789ab.bin").write_bytes(b"orphan")
    (dst / "m00" / "notes.txt").write_bytes(b"not ours")
    again = tfjsfs.sync_models(str(src), str(dst))
    assert [(m.name, m.action) for m in again.models] == [
        ("m00", "unchanged"),
        ("m01", "unchanged"),
    ]
    doc = json.loads((dst / "m00" / "model.json").read_bytes())
    live = sorted(p for g in doc["weightsManifest"] for p in g["paths"])
    assert sorted(p.name for p in (dst / "m00").iterdir()) == sorted(
        [*live, "model.json", "notes.txt"]
    )
    assert_same_weights(tfjsfs.load_weights(str(dst / "m00")), tripled(0))


# ------------------------------------------------------------------ grace period


def test_grace_period_keeps_replaced_shards_for_readers_of_the_old_model_json(
    tmp_path, s3_server, s3_bucket
):
    """With a grace period, a reader holding the previous model.json still loads
    every shard it names after the sync; the sweep removes them only once the
    grace period is over (issue 13's gap: they used to go at the end of the run)."""
    src = tmp_path / "src"
    write_local(src, sample_files(1))
    dst = f"s3://{s3_bucket}/mirror"
    opts = s3_server.storage_options
    tfjsfs.sync_models(str(src), dst, dst_options=opts, grace_period=60)
    fs = s3_server.filesystem()
    folder = f"{s3_bucket}/mirror/m00"
    old_json = fs.cat_file(f"{folder}/model.json")
    old_doc = json.loads(old_json)
    old_paths = [p for g in old_doc["weightsManifest"] for p in g["paths"]]
    old_bytes = {p: fs.cat_file(f"{folder}/{p}") for p in old_paths}

    art = tfjsfs.ModelArtifacts.from_weights(TOPOLOGY, tripled(0), groups=GROUPS)
    tfjsfs.save_model(art, str(src / "m00"), shard_size=SHARD, overwrite=True)
    dst_flags = [f"--dst-option={k}={v}" for k, v in opts.items()]
    assert main(["sync", "-q", "--grace-period", "60", *dst_flags, str(src), dst]) == 0
    fs.invalidate_cache()
    # the reader holding the old model.json gets every byte it names
    assert {p: fs.cat_file(f"{folder}/{p}") for p in old_paths} == old_bytes
    records = [
        p for p in fs.ls(folder, detail=False) if p.split("/")[-1].startswith(RETIRED_PREFIX)
    ]
    assert len(records) == 1
    assert_same_weights(tfjsfs.load_weights(f"{dst}/m00", storage_options=opts), tripled(0))
    new_doc = json.loads(fs.cat_file(f"{folder}/model.json"))
    new_paths = {p for g in new_doc["weightsManifest"] for p in g["paths"]}
    stale = sorted(set(old_paths) - new_paths)
    assert stale

    async def sweep(now):
        afs, _ = resolve(f"s3://{folder}", **opts)
        return await sweep_folder(afs, folder, 60, now=now)

    assert sync(get_loop(), sweep, time.time()) == []  # within the grace period
    removed = sync(get_loop(), sweep, time.time() + 61)
    assert sorted(removed) == sorted([*(f"{folder}/{p}" for p in stale), *records])
    fs.invalidate_cache()
    assert sorted(p.split("/")[-1] for p in fs.ls(folder, detail=False)) == sorted(
        [*new_paths, "model.json"]
    )
    assert_same_weights(tfjsfs.load_weights(f"{dst}/m00", storage_options=opts), tripled(0))
