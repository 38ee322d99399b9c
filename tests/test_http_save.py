"""Saving over HTTP from Python: the same multipart request TF.js's
``model.save('http://…')`` sends, checked against a request captured from
real TF.js, plus the options (method, headers, timeout, TLS) and failures.
"""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
from aiohttp import web
from nodejs import MODELS, requires_node, run_node
from peers._aioserver import ThreadedApp
from peers.upload import UploadReceiver
from serverkit import make_artifacts

import tfjsfs
from tfjsfs.errors import TransferError
from tfjsfs.format.manifest import ModelJSON
from tfjsfs.model.http import HTTPRequest, browser_http_request, upload_model_json

PART_LAYOUT = [
    ("model.json", "model.json", "application/json"),
    ("model.weights.bin", "model.weights.bin", "application/octet-stream"),
]


def layout(upload) -> list[tuple]:
    return [(p.name, p.filename, p.content_type) for p in upload.parts]


def artifacts_from_upload(upload) -> tfjsfs.ModelArtifacts:
    doc = ModelJSON.parse(upload.part("model.json").data)
    return tfjsfs.ModelArtifacts.from_model_json(doc, upload.part("model.weights.bin").data)


# ------------------------------------------------------ against real TF.js


@requires_node
@pytest.mark.parametrize("model", MODELS)
def test_python_sends_what_tfjs_sends(model, upload_receiver):
    """Capture TF.js's own model.save(url), resend its artifacts from Python,
    and compare the two requests part by part and byte by byte."""
    result = run_node("tfjs_http_save.js", model, f"{upload_receiver.url}/tfjs/{model}")
    assert result["status"] == 200
    tfjs_upload = upload_receiver.wait_for(1)[0]
    assert tfjs_upload.method == "POST"
    assert tfjs_upload.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert layout(tfjs_upload) == PART_LAYOUT

    artifacts = artifacts_from_upload(tfjs_upload)
    saved = tfjsfs.save_model(artifacts, f"{upload_receiver.url}/py/{model}")
    py_upload = upload_receiver.wait_for(2)[1]

    assert py_upload.method == tfjs_upload.method
    assert py_upload.path == f"/py/{model}"
    assert py_upload.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert layout(py_upload) == layout(tfjs_upload)
    tfjs_json = tfjs_upload.part("model.json").data
    py_json = py_upload.part("model.json").data
    assert json.loads(py_json) == json.loads(tfjs_json)
    assert py_json == tfjs_json  # JSON.stringify's exact bytes
    assert py_upload.part("model.weights.bin").data == tfjs_upload.part("model.weights.bin").data
    # the ModelArtifactsInfo TF.js reported for its save, from Python
    info = saved.model_artifacts_info.to_json()
    for key in ("modelTopologyType", "modelTopologyBytes", "weightSpecsBytes", "weightDataBytes"):
        assert info[key] == result["modelArtifactsInfo"][key], key


# ---------------------------------------------------------- Python client


def test_save_model_posts_the_tfjs_form(upload_receiver):
    artifacts = make_artifacts(1)
    result = tfjsfs.save_model(artifacts, f"{upload_receiver.url}/models/a?x=1")
    upload = upload_receiver.wait_for(1)[0]
    assert upload.method == "POST"
    assert upload.path == "/models/a"
    assert upload.query == {"x": "1"}
    assert layout(upload) == PART_LAYOUT
    doc = json.loads(upload.part("model.json").data)
    assert doc["weightsManifest"] == [
        {
            "paths": ["./model.weights.bin"],
            "weights": [s.to_json() for s in artifacts.weight_specs],
        }
    ]
    assert doc["modelTopology"] == artifacts.model_topology
    assert doc["generatedBy"] == "tfjsfs tests"
    assert doc["convertedBy"] is None
    assert upload.part("model.weights.bin").data == bytes(artifacts.weight_data)
    reply = result.responses[0]
    assert reply.status == 200 and reply.ok
    assert reply.json() == {"ok": True}
    assert result.model_artifacts_info.weight_data_bytes == len(artifacts.weight_data)
    assert result.url == f"{upload_receiver.url}/models/a?x=1"


def test_groups_and_shards_collapse_to_one_weights_part(upload_receiver):
    one = make_artifacts(2)
    names = [s.name for s in one.weight_specs]
    grouped = tfjsfs.ModelArtifacts.from_weights(
        one.model_topology, one.weights, groups=[names[:2], names[2:]]
    )
    assert grouped.group_lengths == (2, len(names) - 2)
    tfjsfs.save_model(grouped, f"{upload_receiver.url}/g")
    upload = upload_receiver.wait_for(1)[0]
    manifest = json.loads(upload.part("model.json").data)["weightsManifest"]
    assert len(manifest) == 1
    assert [w["name"] for w in manifest[0]["weights"]] == names
    loaded = artifacts_from_upload(upload)
    for name, value in one.weights.items():
        assert np.array_equal(loaded.weights[name], value)


def test_method_headers_and_handler_objects(upload_receiver):
    artifacts = make_artifacts(3)
    tfjsfs.save_model(
        artifacts,
        f"{upload_receiver.url}/put",
        method="PUT",
        headers={"Authorization": "Bearer s3cret", "X-Model": "three"},
        timeout=30,
    )
    tfjsfs.save_model(artifacts, HTTPRequest(f"{upload_receiver.url}/obj", method="put"))
    tfjsfs.save_model(artifacts, browser_http_request(f"{upload_receiver.url}/alias"))
    plus = upload_receiver.url.replace("http://", "tfjs+http://")
    tfjsfs.save_model(artifacts, f"{plus}/plus")
    first, second, third, fourth = upload_receiver.wait_for(4)
    assert (first.method, first.path) == ("PUT", "/put")
    assert first.headers["authorization"] == "Bearer s3cret"
    assert first.headers["x-model"] == "three"
    assert (second.method, second.path) == ("PUT", "/obj")
    assert (third.method, third.path) == ("POST", "/alias")
    assert (fourth.method, fourth.path) == ("POST", "/plus")
    for upload in (first, second, third, fourth):
        assert layout(upload) == PART_LAYOUT
        assert upload.part("model.weights.bin").data == bytes(artifacts.weight_data)


def test_storage_options_headers_reach_the_upload(upload_receiver, tmp_path):
    """The fsspec HTTP options that authorise loads authorise saves and copies too."""
    artifacts = make_artifacts(5)
    tfjsfs.save_model(
        artifacts,
        f"{upload_receiver.url}/saved",
        storage_options={
            "headers": {"Authorization": "Bearer from-options", "X-Trace": "opts"},
            "client_kwargs": {"headers": {"X-Session": "kept"}},
            "block_size": 0,  # a read-side option: ignored by the upload
        },
        headers={"X-Trace": "explicit"},
    )
    source = tmp_path / "source"
    tfjsfs.save_model(artifacts, str(source), shard_size=64)
    tfjsfs.copy_model(
        str(source),
        f"{upload_receiver.url}/copied",
        storage_options={"headers": {"Authorization": "Bearer shared"}},
    )
    tfjsfs.copy_model(
        str(source),
        f"{upload_receiver.url}/copied-dst",
        dst_options={"headers": {"Authorization": "Bearer dst-only"}},
    )
    saved, copied, copied_dst = upload_receiver.wait_for(3)
    assert saved.path == "/saved"
    assert saved.headers["authorization"] == "Bearer from-options"
    assert saved.headers["x-trace"] == "explicit"  # explicit headers win
    assert saved.headers["x-session"] == "kept"
    assert (copied.path, copied.headers["authorization"]) == ("/copied", "Bearer shared")
    assert (copied_dst.path, copied_dst.headers["authorization"]) == (
        "/copied-dst",
        "Bearer dst-only",
    )
    for upload in (saved, copied, copied_dst):
        assert upload.headers["content-type"].startswith("multipart/form-data; boundary=")
        assert layout(upload) == PART_LAYOUT
        assert upload.part("model.weights.bin").data == bytes(artifacts.weight_data)


def test_storage_options_may_not_set_the_content_type():
    with pytest.raises(ValueError, match="Content-Type"):
        HTTPRequest(
            "http://127.0.0.1:9/m", storage_options={"headers": {"Content-Type": "text/plain"}}
        )
    with pytest.raises(ValueError, match="Content-Type"):
        HTTPRequest(
            "http://127.0.0.1:9/m",
            storage_options={"client_kwargs": {"headers": {"content-type": "text/plain"}}},
        )


def test_no_weight_data_sends_only_the_json_part(upload_receiver):
    artifacts = tfjsfs.ModelArtifacts(model_topology={"a": 1}, weight_data=None)
    tfjsfs.save_model(artifacts, f"{upload_receiver.url}/bare")
    upload = upload_receiver.wait_for(1)[0]
    assert layout(upload) == PART_LAYOUT[:1]
    assert upload.part("model.json").data == upload_model_json(artifacts)


def test_router_answers_http_saves_only():
    for url in ("http://127.0.0.1:9/m", "https://127.0.0.1:9/m", "tfjs+https://127.0.0.1:9/m"):
        handlers = tfjsfs.get_save_handlers(url)
        assert [type(h) for h in handlers] == [HTTPRequest], url
        assert tfjsfs.get_load_handlers(url) == [], url
    assert tfjsfs.get_save_handlers("s3://bucket/m") == []
    assert tfjsfs.get_save_handlers("/tmp/m") == []
    handler = tfjsfs.get_save_handlers("tfjs+http://127.0.0.1:9/m", method="PUT")[0]
    assert (handler.url, handler.method) == ("http://127.0.0.1:9/m", "PUT")


def test_content_type_header_is_refused():
    with pytest.raises(ValueError, match="Content-Type"):
        HTTPRequest("http://127.0.0.1:9/m", headers={"content-type": "text/plain"})
    with pytest.raises(ValueError, match="not an http"):
        HTTPRequest("ftp://127.0.0.1/m")


# ----------------------------------------------------------------- failures


def test_error_status_raises_with_status_and_body(upload_receiver):
    upload_receiver.status = 503
    with pytest.raises(TransferError) as info:
        tfjsfs.save_model(make_artifacts(), f"{upload_receiver.url}/down")
    message = str(info.value)
    assert "503" in message
    assert '{"ok": false}' in message
    assert f"POST {upload_receiver.url}/down" in message
    assert isinstance(info.value, OSError)


class _Chatty(ThreadedApp):
    """Answers every POST with 500 and a long body."""

    body = "E" * 100 + "x" * 5000

    def build_app(self) -> web.Application:
        async def fail(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(status=500, text=self.body)

        app = web.Application(client_max_size=1 << 24)
        app.router.add_post("/{tail:.*}", fail)
        return app


def test_error_message_keeps_only_the_first_bytes():
    with _Chatty() as server, pytest.raises(TransferError) as info:
        tfjsfs.save_model(make_artifacts(), f"{server.url}/x")
    message = str(info.value)
    assert "500" in message
    assert "E" * 100 in message
    assert "more bytes" in message
    assert len(message) < 1000


def test_timeout_raises_transfer_error():
    with socket.socket() as silent:  # accepts (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        with pytest.raises(TransferError, match=r"within 0\.5 s"):
            tfjsfs.save_model(make_artifacts(), f"http://127.0.0.1:{port}/m", timeout=0.5)


def test_refused_connection_raises_transfer_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransferError, match=f"127.0.0.1:{port}"):
        tfjsfs.save_model(make_artifacts(), f"http://127.0.0.1:{port}/m", timeout=10)


def test_https_with_a_private_ca(tls_ca):
    with UploadReceiver(tls=tls_ca) as receiver:
        assert receiver.url.startswith("https://127.0.0.1:")
        with pytest.raises(TransferError, match="certificate"):
            tfjsfs.save_model(make_artifacts(), f"{receiver.url}/m", timeout=30)
        artifacts = make_artifacts(4)
        result = tfjsfs.save_model(
            artifacts, f"{receiver.url}/m", ssl=tls_ca.client_context(), timeout=30
        )
        assert result.responses[0].status == 200
        (upload,) = receiver.uploads
        assert layout(upload) == PART_LAYOUT
        assert upload.part("model.weights.bin").data == bytes(artifacts.weight_data)
