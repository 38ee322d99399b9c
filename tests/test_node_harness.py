"""Tests of the Node.js TF.js harness itself (tests/js, tests/nodejs.py).

Every model is saved once per session in both layouts by the real
@tensorflow/tfjs and loaded back by it; values are compared as exact bytes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from nodejs import (
    LAYOUTS,
    MODELS,
    NodeScriptError,
    decode_b64,
    encode_b64,
    parse_last_json,
    requires_node,
    run_node,
    tfjs_load,
    tfjs_save,
    weights_by_name,
)

NODE_KEYS = ["modelTopology", "weightsManifest", "format", "generatedBy", "convertedBy"]
BROWSER_KEYS = ["modelTopology", "format", "generatedBy", "convertedBy", "weightsManifest"]
FILES = {
    "node": ("model.json", "weights.bin", "weights.bin"),
    "downloads": ("model.json", "model.weights.bin", "./model.weights.bin"),
}
CASES = [(m, layout) for m in MODELS for layout in LAYOUTS]


def _parallel(func, items):
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(items, pool.map(lambda item: func(*item), items), strict=True))


def _raw(entry: dict) -> bytes:
    return base64.b64decode(entry["data_b64"])


def _entries_by_name(entries: list[dict]) -> dict[str, dict]:
    return {e["name"]: e for e in entries}


@pytest.fixture(scope="session")
def saved(tmp_path_factory):
    """(model, layout) -> expected.json content (+ files) of one TF.js save."""
    root = tmp_path_factory.mktemp("tfjs-saved")
    return _parallel(lambda m, layout: tfjs_save(m, layout, root / layout / m), CASES)


@pytest.fixture(scope="session")
def loaded(saved):
    """(model, layout) -> what tfjs_load.js reads back from the saved files."""
    return _parallel(
        lambda m, layout: tfjs_load(
            saved[m, layout]["files"]["model_json"], saved[m, layout]["input"]
        ),
        CASES,
    )


@requires_node
def test_model_list_matches_js():
    models = run_node("tfjs_models.js")["models"]
    assert tuple(m["name"] for m in models) == MODELS
    for model in models:
        assert len(model["weights"]) >= 3, model["name"]
    dtypes = {w["dtype"] for m in models for w in m["weights"]}
    assert dtypes == {"float32", "int32", "bool"}


@requires_node
@pytest.mark.parametrize(("model", "layout"), CASES)
def test_saved_files(saved, model, layout):
    expected = saved[model, layout]
    json_name, bin_name, manifest_path = FILES[layout]
    outdir = Path(expected["files"]["model_json"]).parent
    assert sorted(p.name for p in outdir.iterdir()) == sorted(
        [json_name, bin_name, "expected.json"]
    )
    model_json = json.loads((outdir / json_name).read_text(encoding="utf-8"))
    assert list(model_json) == (NODE_KEYS if layout == "node" else BROWSER_KEYS)
    assert model_json["format"] == "layers-model"
    assert model_json["generatedBy"] == "TensorFlow.js tfjs-layers v4.22.0"
    assert model_json["convertedBy"] is None
    assert model_json["modelTopology"]["config"]["name"] == model
    [group] = model_json["weightsManifest"]
    assert group["paths"] == [manifest_path]
    assert group["weights"] == [
        {k: w[k] for k in ("name", "shape", "dtype")} for w in expected["weights"]
    ]
    # weights.bin is exactly the expected weights, back to back, in manifest order.
    data = (outdir / bin_name).read_bytes()
    assert data == b"".join(_raw(w) for w in expected["weights"])
    info = expected["model_artifacts_info"]
    assert info["weightDataBytes"] == len(data)
    assert info["weightSpecsBytes"] == len(
        json.dumps(group["weights"], separators=(",", ":")).encode()
    )


@requires_node
@pytest.mark.parametrize(("model", "layout"), CASES)
def test_load_roundtrip_is_exact(saved, loaded, model, layout):
    expected, got = saved[model, layout], loaded[model, layout]
    assert got["prediction"] == expected["prediction"]
    assert _entries_by_name(got["weights"]) == _entries_by_name(expected["weights"])
    prediction = decode_b64(got["prediction"])
    assert prediction.dtype == np.float32
    assert np.isfinite(prediction).all()
    assert np.ptp(prediction) > 0


@requires_node
def test_both_layouts_hold_the_same_model(saved):
    for model in MODELS:
        node, downloads = saved[model, "node"], saved[model, "downloads"]
        assert node["weights"] == downloads["weights"]
        assert node["prediction"] == downloads["prediction"]


@requires_node
def test_saving_is_deterministic(saved, tmp_path):
    again = tfjs_save("rnn", "node", tmp_path)
    first = saved["rnn", "node"]
    assert again["weights"] == first["weights"]
    assert again["prediction"] == first["prediction"]
    for key in ("model_json", "weights_bin"):
        assert Path(again["files"][key]).read_bytes() == (Path(first["files"][key]).read_bytes())


@requires_node
@pytest.mark.parametrize("model", MODELS)
def test_saved_weights_differ_from_topology_initialisers(saved, tmp_path, model):
    """Without the manifest TF.js keeps the seeded initial values; they differ."""
    bundle = json.loads(Path(saved[model, "node"]["files"]["model_json"]).read_text())
    del bundle["weightsManifest"]
    path = tmp_path / "topology-only.json"
    path.write_text(json.dumps(bundle))
    fresh = _entries_by_name(tfjs_load(path)["weights"])
    for weight in saved[model, "node"]["weights"]:
        assert _raw(fresh[weight["name"]]) != _raw(weight), weight["name"]


def _copy_bundle(saved, model, dest: Path) -> tuple[Path, dict, bytes]:
    files = saved[model, "node"]["files"]
    dest.mkdir()
    shutil.copy(files["weights_bin"], dest / "weights.bin")
    shutil.copy(files["model_json"], dest / "model.json")
    bundle = json.loads((dest / "model.json").read_text())
    return dest, bundle, (dest / "weights.bin").read_bytes()


@requires_node
def test_load_reads_the_shard_bytes(saved, tmp_path):
    dest, _, data = _copy_bundle(saved, "mlp", tmp_path / "b")
    shifted = np.frombuffer(data, "<f4") + np.float32(1)
    (dest / "weights.bin").write_bytes(shifted.astype("<f4").tobytes())
    got = weights_by_name(tfjs_load(dest / "model.json"))
    offset = 0
    for weight in saved["mlp", "node"]["weights"]:
        want = decode_b64(weight) + np.float32(1)
        np.testing.assert_array_equal(got[weight["name"]], want)
        offset += want.nbytes
    assert offset == len(data)


@requires_node
def test_local_load_follows_groups_and_shards_in_order(saved, tmp_path):
    """Two groups, three blindly cut shards, odd file names: same weights."""
    dest, bundle, data = _copy_bundle(saved, "cnn", tmp_path / "b")
    specs = bundle["weightsManifest"][0]["weights"]
    split = sum(len(_raw(w)) for w in saved["cnn", "node"]["weights"][:3])
    first, second = data[:split], data[split:]
    cut = 7  # inside the first float of the second group
    (dest / "g1.bin").write_bytes(first)
    (dest / "g2-a").write_bytes(second[:cut])
    (dest / "g2-b").write_bytes(second[cut:])
    bundle["weightsManifest"] = [
        {"paths": ["g1.bin"], "weights": specs[:3]},
        {"paths": ["./g2-a", "g2-b"], "weights": specs[3:]},
    ]
    (dest / "weights.bin").unlink()
    (dest / "renamed.json").write_text(json.dumps(bundle))
    got = tfjs_load(dest / "renamed.json", saved["cnn", "node"]["input"])
    assert got["prediction"] == saved["cnn", "node"]["prediction"]
    assert _entries_by_name(got["weights"]) == _entries_by_name(saved["cnn", "node"]["weights"])


@requires_node
def test_load_missing_shard_fails_with_stderr(saved, tmp_path):
    dest, _, _ = _copy_bundle(saved, "mlp", tmp_path / "b")
    (dest / "weights.bin").unlink()
    with pytest.raises(NodeScriptError, match=r"weights\.bin"):
        tfjs_load(dest / "model.json")


@requires_node
def test_downloads_custom_name(tmp_path):
    expected = tfjs_save("mixed", "downloads", tmp_path, name="my-net")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "expected.json",
        "my-net.json",
        "my-net.weights.bin",
    ]
    bundle = json.loads((tmp_path / "my-net.json").read_text())
    assert bundle["weightsManifest"][0]["paths"] == ["./my-net.weights.bin"]
    got = tfjs_load(tmp_path / "my-net.json", expected["input"])
    assert got["prediction"] == expected["prediction"]
    dtypes = {w["name"]: decode_b64(w).dtype for w in got["weights"]}
    assert dtypes["mixed_offset/offset"] == np.int32
    assert dtypes["mixed_offset/keep"] == np.bool_


# --- HTTP: tfjs_load.js over http, tfjs_load_weights.js, tfjs_http_save.js ---


class _Server:
    """aiohttp on 127.0.0.1 in a thread: static files + multipart uploads."""

    def __init__(self, root: Path):
        self.root = root
        self.uploads: dict[str, list[dict]] = {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _upload(self, request: web.Request) -> web.Response:
        parts = []
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            parts.append(
                {
                    "name": part.name,
                    "filename": part.filename,
                    "content_type": part.headers.get("Content-Type"),
                    "data": bytes(await part.read()),
                }
            )
        self.uploads[request.match_info["key"]] = parts
        return web.Response(text="stored " + ",".join(p["name"] for p in parts))

    async def _start(self):
        app = web.Application()
        app.router.add_post("/upload/{key}", self._upload)
        app.router.add_static("/files", self.root)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    def __enter__(self):
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="session")
def server(saved):
    root = Path(saved["mlp", "node"]["files"]["model_json"]).parents[2]
    with _Server(root) as srv:
        yield srv


def _url(server, saved, model, layout):
    path = Path(saved[model, layout]["files"]["model_json"])
    return f"{server.url}/files/{path.relative_to(server.root).as_posix()}"


@requires_node
@pytest.mark.parametrize("layout", LAYOUTS)
def test_http_load(server, saved, layout):
    expected = saved["cnn", layout]
    got = tfjs_load(_url(server, saved, "cnn", layout), expected["input"])
    assert got["prediction"] == expected["prediction"]
    assert _entries_by_name(got["weights"]) == _entries_by_name(expected["weights"])


@requires_node
@pytest.mark.parametrize("loader", ["http", "weights"])
def test_load_weights(server, saved, loader):
    expected = saved["mixed", "downloads"]
    url = _url(server, saved, "mixed", "downloads")
    got = run_node("tfjs_load_weights.js", url, f"--loader={loader}")
    assert got["weights"] == expected["weights"]


@requires_node
def test_load_weights_time(server, saved):
    expected = saved["rnn", "node"]
    got = run_node("tfjs_load_weights.js", _url(server, saved, "rnn", "node"), "--time")
    size = Path(expected["files"]["weights_bin"]).stat().st_size
    assert set(got) == {"elapsed_ms", "bytes", "shard_bytes", "weights"}
    assert (got["bytes"], got["shard_bytes"]) == (size, size)
    assert got["weights"] == len(expected["weights"])
    assert got["elapsed_ms"] > 0


@requires_node
def test_http_save_matches_downloads_layout(server, saved, tmp_path):
    dump_path = tmp_path / "dump.json"
    got = run_node("tfjs_http_save.js", "rnn", f"{server.url}/upload/rnn", dump_path)
    assert got["status"] == 200
    assert got["body"] == "stored model.json,model.weights.bin"
    json_part, bin_part = server.uploads["rnn"]
    assert (json_part["name"], json_part["filename"]) == ("model.json", "model.json")
    assert json_part["content_type"] == "application/json"
    assert (bin_part["name"], bin_part["filename"]) == (
        "model.weights.bin",
        "model.weights.bin",
    )
    assert bin_part["content_type"] == "application/octet-stream"
    # TF.js's http handler and our downloads layout write identical files.
    files = saved["rnn", "downloads"]["files"]
    assert json_part["data"] == Path(files["model_json"]).read_bytes()
    assert bin_part["data"] == Path(files["weights_bin"]).read_bytes()
    dump = json.loads(dump_path.read_text())
    expected = saved["rnn", "downloads"]
    for key in ("weights", "input", "prediction", "model_artifacts_info"):
        assert dump[key] == expected[key], key
    info = got["modelArtifactsInfo"]
    assert info["modelTopologyType"] == "JSON"
    assert info["weightDataBytes"] == len(bin_part["data"])
    topology = json.loads(json_part["data"])["modelTopology"]
    assert info["modelTopologyBytes"] == len(json.dumps(topology, separators=(",", ":")).encode())


# --- pure-Python helpers ---


def test_parse_last_json_skips_banners():
    out = 'Hi, looks like you are running TensorFlow.js\n{"a": 1}\n{"b": [2]}\n\n'
    assert parse_last_json(out) == {"b": [2]}
    with pytest.raises(ValueError, match="no JSON"):
        parse_last_json("banner only\n{not json\n")


@pytest.mark.parametrize(
    "array",
    [
        np.array([[1.5, -2.25], [0.0, 3e-8]], dtype=np.float32),
        np.array([7, -1, 2**31 - 1], dtype=np.int32),
        np.array([[True], [False]]),
    ],
)
def test_encode_decode_b64_roundtrip(array):
    entry = encode_b64(array)
    back = decode_b64(entry)
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)


def test_decode_b64_complex_and_string():
    complex_entry = {
        "shape": [2],
        "dtype": "complex64",
        "data_b64": base64.b64encode(np.array([1, 2, 3, 4], "<f4").tobytes()).decode(),
    }
    np.testing.assert_array_equal(decode_b64(complex_entry), [1 + 2j, 3 + 4j])
    raw = b"\x05\x00\x00\x00hello\x00\x00\x00\x00\x02\x00\x00\x00\xc3\xa9"
    string_entry = {"shape": [3], "dtype": "string", "data_b64": base64.b64encode(raw)}
    assert decode_b64(string_entry).tolist() == [b"hello", b"", "é".encode()]
    with pytest.raises(ValueError, match="3 values for shape"):
        decode_b64({"shape": [2], "dtype": "int32", "data_b64": "AAAAAAAAAAAAAAAA"})
