"""``--redirect-reads``: weight file GETs answer 307 to a URL the store presigned.

Against moto's S3 server: the redirect target serves the same bytes, status
codes and range/ETag replies as the proxying path (a second server on the same
store without the option); model.json and HEAD are still answered by the
server; TF.js in Node follows the redirect and loads the model. Stores that
cannot sign are refused when the application is created: a local folder, and
the fake GCS server (gcsfs signs with google-cloud-storage and a service
account's private key, which the emulator's anonymous credentials do not have).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
from aiohttp import web
from chromium_env import JS_DIR, REPO_ROOT, TF_MIN_JS, missing_browser_reason, require_browser
from nodejs import decode_b64, parse_last_json, requires_node, tfjs_load, weights_by_name
from peers._aioserver import ThreadedApp
from serverkit import assert_same_weights, http, make_artifacts, server_factory

import tfjsfs
from tfjsfs.errors import CLIError, RedirectError
from tfjsfs.server.app import create_app
from tfjsfs.server.options import DEFAULT_REDIRECT_EXPIRY, add_serve_arguments, serve_options

EXTRA = 1_150_000  # a 4.6 MB weight file beside the kit's weights


@pytest.fixture
def model_server(tmp_path):
    yield from server_factory(tmp_path)


@pytest.fixture
def s3_pair(model_server, s3_server, s3_bucket):
    """Two servers on one S3 store: with ``redirect_reads=60`` and without."""
    store = f"s3://{s3_bucket}/models"
    redirecting = model_server(store, storage_options=s3_server.storage_options, redirect_reads=60)
    proxying = model_server(store, storage_options=s3_server.storage_options)
    return redirecting, proxying


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _unfollowed(url: str):
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=30) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _dense_topology(name: str) -> dict:
    dense = {"name": "dense_a", "units": 4, "batch_input_shape": [None, 3], "dtype": "float32"}
    return {
        "class_name": "Sequential",
        "config": {"name": name, "layers": [{"class_name": "Dense", "config": dense}]},
        "keras_version": "tfjs-layers 4.22.0",
        "backend": "tensor_flow.js",
    }


def _shard(server, name: str) -> str:
    doc = http("GET", server.model_url(name, "model.json")).json()
    (path,) = doc["weightsManifest"][0]["paths"]
    return path.removeprefix("./")


def test_a_weight_file_get_is_redirected_to_a_presigned_url(s3_pair, s3_server):
    redirecting, proxying = s3_pair
    artifacts = make_artifacts(41, extra=EXTRA)
    tfjsfs.save_model(artifacts, redirecting.model_url("m"))
    shard = _shard(proxying, "m")
    url = redirecting.model_url("m", shard)
    status, headers, body = _unfollowed(url)
    assert status == 307 and body == b""
    target = urllib.parse.urlsplit(headers["Location"])
    assert f"{target.scheme}://{target.netloc}" == s3_server.endpoint_url
    query = urllib.parse.parse_qs(target.query)
    if "X-Amz-Expires" in query:  # SigV4
        assert query["X-Amz-Expires"] == ["60"] and "X-Amz-Signature" in query
    else:  # SigV2 query auth: an absolute expiry time
        assert 0 < int(query["Expires"][0]) - time.time() <= 61 and "Signature" in query
    assert headers["Cache-Control"] == "no-store"
    # model.json and HEAD are answered by the server itself
    assert _unfollowed(redirecting.model_url("m", "model.json"))[0] == 200
    want = bytes(memoryview(artifacts.weight_data).cast("B"))
    head = http("HEAD", url)
    assert head.status == 200 and head.headers["content-length"] == str(len(want))

    proxied = http("GET", proxying.model_url("m", shard))
    followed = http("GET", url)  # urllib follows the 307
    assert (followed.status, followed.body) == (proxied.status, proxied.body) == (200, want)
    assert followed.headers["etag"] == proxied.headers["etag"]
    assert followed.headers["content-length"] == proxied.headers["content-length"]
    etag = proxied.headers["etag"]
    for headers_ in (
        {"Range": "bytes=5-9"},
        {"Range": "bytes=-3"},
        {"Range": f"bytes={len(want) - 2}-"},
        {"Range": "bytes=5-9", "If-Range": etag},
        {"If-None-Match": etag},
    ):
        a = http("GET", url, headers=headers_)
        b = http("GET", proxying.model_url("m", shard), headers=headers_)
        assert (a.status, a.body) == (b.status, b.body), headers_
        assert a.headers.get("content-range") == b.headers.get("content-range"), headers_
    assert http("GET", url, headers={"If-None-Match": etag}).status == 304
    # files that are not the bundle's are refused before anything is signed
    assert _unfollowed(redirecting.model_url("m", "other.bin"))[0] == 404


def test_the_tfjsfs_loader_follows_the_redirect_when_allowed(s3_pair):
    """tfjsfs refuses redirects to another origin by default (a model.json's
    shards stay on its server); ``follow_redirects="any"`` lets it load."""
    redirecting, _ = s3_pair
    artifacts = make_artifacts(44, extra=EXTRA)
    tfjsfs.save_model(artifacts, redirecting.model_url("t"))
    url = redirecting.model_url("t").replace("http://", "tfjs+http://")
    with pytest.raises(RedirectError, match="follow_redirects"):
        tfjsfs.load_weights(url)
    assert_same_weights(tfjsfs.load_weights(url, follow_redirects="any"), artifacts.weights)


@requires_node
def test_tfjs_in_node_follows_the_redirect(s3_pair):
    redirecting, _ = s3_pair
    rng = np.random.default_rng(42)
    kernel, bias = rng.standard_normal((3, 4)).astype("f4"), rng.standard_normal(4).astype("f4")
    topology = _dense_topology("redirected")
    weights = {"dense_a/kernel": kernel, "dense_a/bias": bias}
    tfjsfs.save_model(
        tfjsfs.ModelArtifacts.from_weights(topology, weights), redirecting.model_url("r")
    )
    shard = _shard(redirecting, "r")
    assert _unfollowed(redirecting.model_url("r", shard))[0] == 307
    x = np.linspace(-1, 1, 6, dtype="f4").reshape(2, 3)
    loaded = tfjs_load(
        redirecting.model_url("r", "model.json"),
        {"shape": [2, 3], "dtype": "float32", "data_b64": base64.b64encode(x.tobytes()).decode()},
    )
    assert np.allclose(decode_b64(loaded["prediction"]), x @ kernel + bias, rtol=1e-6, atol=1e-6)
    assert_same_weights(weights_by_name(loaded), weights)


def test_stores_that_cannot_sign_are_refused(tmp_path, gcs_server, gcs_bucket):
    with pytest.raises(CLIError, match="presign URLs"):
        create_app(str(tmp_path / "store"), redirect_reads=60)
    with pytest.raises(CLIError, match="presign URLs") as info:
        create_app(
            f"gs://{gcs_bucket}/models",
            storage_options=gcs_server.storage_options,
            redirect_reads=60,
        )
    assert f"gs://{gcs_bucket}/models" in str(info.value) or gcs_bucket in str(info.value)


# ------------------------------------------------------------------ Chromium


class _TFJSPage(ThreadedApp):
    """A page of its own origin with TF.js (tf.min.js), as a web app would be."""

    def build_app(self) -> web.Application:
        async def page(request: web.Request) -> web.Response:
            html = '<!doctype html><meta charset="utf-8"><script src="/tf.min.js"></script>'
            return web.Response(text=html, content_type="text/html")

        async def script(request: web.Request) -> web.Response:
            return web.Response(body=TF_MIN_JS.read_bytes(), content_type="text/javascript")

        app = web.Application()
        app.router.add_get("/", page)
        app.router.add_get("/tf.min.js", script)
        return app


@pytest.mark.browser
@pytest.mark.skipif(
    missing_browser_reason() is not None and not os.environ.get("TFJSFS_REQUIRE_BROWSER"),
    reason=f"SKIPPED, NO CHROMIUM FOR --redirect-reads: {missing_browser_reason()}",
)
def test_tfjs_in_chromium_follows_the_redirect_to_the_bucket(s3_pair, s3_server):
    """The page's origin is neither the server's nor the bucket's: the server's
    CORS reply and moto's (it answers CORS for any origin; a real bucket needs
    a CORS rule allowing GET from the app's origin) both apply."""
    redirecting, _ = s3_pair
    rng = np.random.default_rng(43)
    weights = {
        "dense_a/kernel": rng.standard_normal((3, 4)).astype("f4"),
        "dense_a/bias": rng.standard_normal(4).astype("f4"),
    }
    tfjsfs.save_model(
        tfjsfs.ModelArtifacts.from_weights(_dense_topology("chromium"), weights),
        redirecting.model_url("c"),
    )
    with _TFJSPage() as page:
        config = {
            "chromium": require_browser(),
            "page": page.url + "/",
            "model": redirecting.model_url("c", "model.json"),
        }
        proc = subprocess.run(
            ["node", str(JS_DIR / "server" / "redirect_run.js"), json.dumps(config)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=240,
        )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = parse_last_json(proc.stdout)
    assert out["refused"] == [], out["refused"]
    shard = _shard(redirecting, "c")
    hops = [r for r in out["requests"] if r["url"].split("?")[0].endswith(shard)]
    assert hops[0]["status"] == 307 and hops[0]["url"] == redirecting.model_url("c", shard)
    assert hops[-1]["status"] == 200 and hops[-1]["url"].startswith(s3_server.endpoint_url)
    loaded = {w["name"]: np.array(w["data"], "f4").reshape(w["shape"]) for w in out["weights"]}
    assert_same_weights(loaded, weights)


def test_serve_options_for_sendfile_and_redirects():
    parser = add_serve_arguments(argparse.ArgumentParser())
    default = serve_options(parser.parse_args([]), environ={})
    assert default["sendfile"] is True and default["redirect_reads"] is None
    flagged = serve_options(
        parser.parse_args(["s3://b/m", "--no-sendfile", "--redirect-reads"]), environ={}
    )
    assert flagged["sendfile"] is False and flagged["redirect_reads"] == DEFAULT_REDIRECT_EXPIRY
    timed = serve_options(parser.parse_args(["--redirect-reads", "45"]), environ={})
    assert timed["redirect_reads"] == 45.0
