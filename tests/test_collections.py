"""Folders of ``<name>.json`` bundles (issue 12 item 1): every layout found by
``list_models``, ``tfjsfs ls``, ``verify -r``, ``bulk.scan`` and ``copy_all``,
marked by ``ls`` and summarised by ``info``, on local disk and moto S3."""

from __future__ import annotations

import json
import subprocess
import sys

import fsspec
import pytest
from collection_support import make_collection
from manage_support import assert_same_weights, make_store

import tfjsfs

TFJSFS = [sys.executable, "-m", "tfjsfs"]


@pytest.fixture(params=["file", "s3"])
def collection(request, tmp_path):
    store = make_store(request.param, request, tmp_path / "store")
    folder = store.inner("models")
    if store.kind == "file":
        store.fs.makedirs(folder, exist_ok=True)

    def put(name, data):
        store.fs.pipe_file(f"{folder}/{name}", data)

    made = make_collection(put)
    store.fs.invalidate_cache()
    return store, made


def _cli(store, *args):
    env_opts = []
    for key, value in store.options.items():
        env_opts += ["-o", f"{key}={json.dumps(value)}"]
    return subprocess.run([*TFJSFS, *args, *env_opts], capture_output=True, text=True, timeout=300)


def test_list_models_finds_every_bundle_of_a_folder(collection):
    store, made = collection
    found = tfjsfs.list_models(store.url("models"), storage_options=store.options)
    assert sorted(found) == sorted(store.url("models", name) for name in made.bundles)
    assert len(found) == 40
    for name, want in made.bundles.items():
        got = tfjsfs.load_weights(store.url("models", name), storage_options=store.options)
        assert_same_weights(got, want)
        info = found[store.url("models", name)]
        assert info.weight_data_bytes == sum(
            store.fs.size(store.inner("models", p))
            for g in json.loads(store.fs.cat_file(store.inner("models", name)))["weightsManifest"]
            for p in g["paths"]
        )
    # nothing that is not a model, even beside converter shards
    assert not [u for u in found if u.endswith(("package.json", "labels.json"))]


def test_bulk_scan_and_copy_all_find_every_bundle(collection, tmp_path):
    store, made = collection
    frame = tfjsfs.bulk.scan(store.url("models"), storage_options=store.options)
    assert sorted(frame["url"]) == sorted(store.url("models", n) for n in made.bundles)
    assert frame["ok"].all(), frame[~frame["ok"]]["problems"].tolist()
    quantized = {q for q in frame["quantization"] if q}
    assert quantized == {"uint8", "uint16", "float16"}
    dst = tmp_path / "copy"
    result = tfjsfs.bulk.copy_all(store.url("models"), str(dst), src_options=store.options)
    assert result["ok"].all(), result[~result["ok"]]["error"].tolist()
    assert len(result) == 40
    for name, want in made.bundles.items():
        assert_same_weights(tfjsfs.load_weights(str(dst / name)), want)
    # the shared weight file was copied once, and both manifests still load from it
    assert (dst / "m01.weights.bin").is_file()
    assert not (dst / "package.json").exists()


def test_cli_ls_and_verify_recursive_find_every_bundle(collection):
    store, made = collection
    out = _cli(store, "ls", "--json", store.url("models"))
    assert out.returncode == 0, out.stderr
    urls = sorted(r["url"] for r in json.loads(out.stdout))
    assert urls == sorted(store.url("models", n) for n in made.bundles)
    out = _cli(store, "verify", "-r", store.url("models"))
    assert out.returncode == 0, out.stdout + out.stderr
    ok = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("OK")]
    assert sorted(ok) == urls


def test_verify_recursive_without_models_fails_clearly(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "package.json").write_text('{"name": "x"}')
    (tmp_path / "empty" / "data.bin").write_bytes(b"1234")
    out = subprocess.run(
        [*TFJSFS, "verify", "-r", str(tmp_path / "empty")], capture_output=True, text=True
    )
    assert out.returncode == 1
    assert "no models found" in out.stderr
    assert str(tmp_path / "empty") in out.stderr and "<name>.json" in out.stderr


def test_ls_marks_candidates_without_reading_and_info_confirms(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    made = make_collection(lambda name, data: (folder / name).write_bytes(data), count=12)
    fs = fsspec.filesystem("tfjs+file")
    reads = []
    original = fs.fs._cat_file

    async def counting(path, *args, **kwargs):
        reads.append(path)
        return await original(path, *args, **kwargs)

    fs.fs._cat_file = counting
    try:
        entries = {e["name"].rsplit("/", 1)[-1]: e for e in fs.ls(str(folder))}
        assert reads == []  # marking costs no read
        marked = sorted(n for n, e in entries.items() if e.get("tfjs", {}).get("candidate"))
        # the stem-named bundles; the converter-named and the shared manifest need a read
        assert marked == sorted(set(made.bundles) - {"converted.json", "m01-lite.json"})
        assert all(entries[n]["tfjs"]["role"] == "manifest" for n in marked)
        assert "tfjs" not in entries["package.json"] and "tfjs" not in entries["labels.json"]
        for name in made.bundles:
            tfjs = fs.info(str(folder / name))["tfjs"]
            assert tfjs["role"] == "manifest"
            assert tfjs["weights"] == len(made.bundles[name])
            assert tfjs["format"] == "layers-model"
        assert "tfjs" not in fs.info(str(folder / "package.json"))
        assert "tfjs" not in fs.info(str(folder / "labels.json"))
        # once read, a listing carries the summary and the shards' roles
        entries = {e["name"].rsplit("/", 1)[-1]: e for e in fs.ls(str(folder))}
        assert entries["m02.json"]["tfjs"]["weights"] == len(made.bundles["m02.json"])
        paths = json.loads((folder / "m02.json").read_bytes())["weightsManifest"][0]["paths"]
        assert len(paths) > 1
        for i, path in enumerate(paths):
            assert entries[path]["tfjs"] == {"role": "shard", "group": 0, "index": i}
    finally:
        fs.fs._cat_file = original


def test_bundle_candidates_rules():
    from tfjsfs.format.layouts import bundle_candidates

    names = [
        "a.json",
        "a.bin",
        "b.json",
        "b.weights.bin",
        "c.json",
        "c-shard1of2.bin",
        "c-shard2of2.bin",
        "d.json",
        "d_group1-shard1of1.bin",
        "enc-lite.json",
        "package.json",
        "labels.json",
    ]
    got = {c.path: c.strong for c in bundle_candidates(names)}
    assert got == {"a.json": True, "b.json": True, "c.json": True, "d.json": True}
    beside = {
        c.path: c.strong
        for c in bundle_candidates(["x.json", "labels.json", "group1-shard1of1.bin"])
    }
    assert beside == {"x.json": False, "labels.json": False}
    teachable = {c.path for c in bundle_candidates(["model.json", "metadata.json", "weights.bin"])}
    assert teachable == {"model.json"}
