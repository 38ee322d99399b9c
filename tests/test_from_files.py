"""``tfjsfs.from_files`` (issue 12 item 5): TF.js's ``browserFiles`` over files
a program holds: uploads received by a real web server, archive members,
notebook widget values, bytes; TF.js's matching rule and its errors."""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.request
import zipfile
from pathlib import Path

import pytest
from aiohttp import web
from manage_support import assert_same_weights, file_store, sample_artifacts, sample_weights
from peers._aioserver import ThreadedApp
from serverkit import FormPart, multipart_body

import tfjsfs
from tfjsfs.errors import ManifestError, ShardMissingError, WeightDataError

SHARD = 120


@pytest.fixture
def bundle(tmp_path) -> tuple[Path, list[Path]]:
    """A converter-layout bundle of two groups and several shards: (model.json, shards)."""
    file_store(tmp_path).save(sample_artifacts(3), "m", shard_size=SHARD)
    folder = tmp_path / "m"
    doc = json.loads((folder / "model.json").read_bytes())
    shards = [folder / p for g in doc["weightsManifest"] for p in g["paths"]]
    assert len(shards) > 2
    return folder / "model.json", shards


def test_every_form_of_file_loads_the_same_weights(bundle, tmp_path):
    with contextlib.ExitStack() as stack:
        _every_form(bundle, tmp_path, stack)


def _every_form(bundle, tmp_path, stack):
    json_file, shards = bundle
    want = sample_weights(3)
    forms = {
        "pairs": (
            ("model.json", json_file.read_bytes()),
            [(p.name, p.read_bytes()) for p in shards],
        ),
        "mapping": (json_file.read_bytes(), {p.name: p.read_bytes() for p in reversed(shards)}),
        "paths": (json_file, shards),
        "file objects": (
            stack.enter_context(open(json_file, "rb")),  # noqa: SIM115
            [stack.enter_context(open(p, "rb")) for p in shards],  # noqa: SIM115
        ),
        "widget values": (
            {"name": "model.json", "content": memoryview(json_file.read_bytes())},
            [{"name": p.name, "content": memoryview(p.read_bytes())} for p in shards],
        ),
    }
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(json_file, "export/model.json")
        for p in shards:
            zf.write(p, f"export/weights/{p.name}")
    zf = stack.enter_context(zipfile.ZipFile(archive))
    forms["zip members"] = (
        zf.open("export/model.json"),
        [zf.open(f"export/weights/{p.name}") for p in reversed(shards)],
    )
    for form, (json_part, weight_parts) in forms.items():
        handler = tfjsfs.from_files(json_part, weight_parts)
        artifacts = tfjsfs.load_model(handler)
        assert_same_weights(artifacts.weights, want)
        # the handler can be used again: files are read once
        assert_same_weights(tfjsfs.load_weights(handler), want)
        got = tfjsfs.load_weights(handler, ["out/bias", "vocab"])
        assert list(got) == ["out/bias", "vocab"], form


def test_copy_model_takes_it_as_source(bundle, tmp_path):
    json_file, shards = bundle
    handler = tfjsfs.from_files(json_file, shards)
    result = tfjsfs.copy_model(handler, str(tmp_path / "copy"))
    assert Path(result.url).name == "model.json"
    assert_same_weights(tfjsfs.load_weights(str(tmp_path / "copy")), sample_weights(3))
    q = tfjsfs.copy_model(handler, str(tmp_path / "q"), quantize="float16", shard_size=64)
    doc = json.loads((tmp_path / "q" / "model.json").read_bytes())
    assert {
        w.get("quantization", {}).get("dtype")
        for g in doc["weightsManifest"]
        for w in g["weights"]
    } >= {"float16"}
    assert q.model_artifacts_info.weight_data_bytes < result.model_artifacts_info.weight_data_bytes


class UploadServer(ThreadedApp):
    """A real aiohttp app that loads the TF.js multipart upload it receives with from_files."""

    def __init__(self):
        super().__init__()
        self.got = {}
        self.lock = threading.Lock()

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 24)

        async def upload(request: web.Request) -> web.Response:
            form = await request.post()
            handler = tfjsfs.from_files(form["model.json"], form.getall("model.weights.bin"))
            try:
                artifacts = await tfjsfs.load_model_async(handler)
            except tfjsfs.TFJSError as exc:
                return web.json_response({"error": str(exc)}, status=400)
            with self.lock:
                self.got = artifacts.weights
            return web.json_response({"weights": len(artifacts.weights)})

        app.router.add_post("/upload", upload)
        return app


def test_uploads_received_by_a_web_server(bundle):
    json_file, shards = bundle
    # TF.js's own multipart form: model.json, then one part per weight file
    parts = [FormPart("model.json", json_file.read_bytes(), "model.json", "application/json")]
    parts += [
        FormPart("model.weights.bin", p.read_bytes(), p.name, "application/octet-stream")
        for p in shards
    ]
    content_type, body = multipart_body(parts)
    server = UploadServer().start()
    try:
        req = urllib.request.Request(
            server.url + "/upload", data=body, headers={"Content-Type": content_type}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            reply = json.loads(resp.read())
    finally:
        server.stop()
    assert reply == {"weights": len(sample_weights(3))}
    assert_same_weights(server.got, sample_weights(3))


def test_tfjs_matching_errors_name_the_file(bundle):
    json_file, shards = bundle
    files = [(p.name, p.read_bytes()) for p in shards]
    with pytest.raises(ShardMissingError, match=rf"basename '{shards[1].name}' is not provided"):
        tfjsfs.load_model(tfjsfs.from_files(json_file, files[:1] + files[2:]))
    with pytest.raises(
        WeightDataError,
        match=r"\(\d+\) and the number of weight files provided .*'notes\.bin' not named",
    ):
        tfjsfs.load_model(tfjsfs.from_files(json_file, [*files, ("notes.bin", b"xx")]))
    with pytest.raises(WeightDataError, match=r"weight file 1 \(\d+ bytes\) has no name"):
        tfjsfs.load_model(tfjsfs.from_files(json_file, [shards[0].read_bytes()]))
    short = [(n, d[:-3]) if n == shards[0].name else (n, d) for n, d in files]
    with pytest.raises(WeightDataError, match=shards[0].name) as info:
        tfjsfs.load_model(tfjsfs.from_files(json_file, short))
    assert "dense/" in str(info.value)
    doc = json.loads(json_file.read_bytes())
    doc["weightsManifest"][1]["paths"][0] = "sub/" + doc["weightsManifest"][0]["paths"][0]
    with pytest.raises(ManifestError, match="duplicate file basename"):
        tfjsfs.load_model(tfjsfs.from_files(("model.json", json.dumps(doc).encode()), files))
    with pytest.raises(tfjsfs.TFJSError, match="expected bytes, a file object"):
        tfjsfs.load_model(tfjsfs.from_files(json_file, [42]))
    with pytest.raises(ManifestError, match=r"my\.json"):
        tfjsfs.load_model(tfjsfs.from_files(("my.json", b"{nope"), files))
