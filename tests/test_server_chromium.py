"""Real TF.js in headless Chromium against ``tfjsfs serve``.

A page served by the test (another origin, so CORS is exercised) builds a
model with TF.js, saves it to the server and loads it back, copies it from
``indexeddb://`` and ``localstorage://`` to the server with
``tf.io.copyModel``, saves with and without a bearer token, and saves to
``downloads://``; Playwright captures those downloads and tfjsfs loads them.
Chromium is Debian's ``chromium`` driven by playwright-core; without it the
tests are skipped with a loud reason (``TFJSFS_REQUIRE_BROWSER=1`` makes that
a failure).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from aiohttp import web
from chromium_env import JS_DIR, REPO_ROOT, TF_MIN_JS, browser_marks, require_browser
from nodejs import decode_b64, parse_last_json, weights_by_name
from peers._aioserver import ThreadedApp
from serverkit import assert_same_weights, http, server_factory

import tfjsfs

SERVER_JS = JS_DIR / "server"
TOKEN = "browser-token"
pytestmark = browser_marks("TESTS OF `tfjsfs serve`")


class PageServer(ThreadedApp):
    """Serves the test page, its script and TF.js's tf.min.js."""

    def build_app(self) -> web.Application:
        files = {
            "/": (SERVER_JS / "page.html", "text/html"),
            "/page.js": (SERVER_JS / "page.js", "text/javascript"),
            "/tf.min.js": (TF_MIN_JS, "text/javascript"),
        }

        async def serve(request: web.Request) -> web.Response:
            path, ctype = files[request.path]
            return web.Response(body=path.read_bytes(), content_type=ctype)

        async def no_icon(request: web.Request) -> web.Response:
            return web.Response(status=204)

        app = web.Application()
        for route in files:
            app.router.add_get(route, serve)
        app.router.add_get("/favicon.ico", no_icon)
        return app


@pytest.fixture
def model_server(tmp_path):
    yield from server_factory(tmp_path)


@pytest.fixture(scope="module")
def page_server():
    with PageServer() as server:
        yield server


def run_browser(page_url: str, server_url: str, guarded_url: str, download_dir: Path) -> dict:
    config = {
        "chromium": require_browser(),
        "page": page_url,
        "server": server_url,
        "guarded": guarded_url,
        "token": TOKEN,
        "downloadDir": str(download_dir),
    }
    proc = subprocess.run(
        ["node", str(SERVER_JS / "browser_run.js"), json.dumps(config)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return parse_last_json(proc.stdout)


@pytest.fixture(scope="module")
def browser_run(page_server, tmp_path_factory):
    """One Chromium session running the whole scenario (the slow part, once)."""
    root = tmp_path_factory.mktemp("chromium")
    servers = server_factory(root)
    make = next(servers)
    page_origin = (page_server.url,)  # cross-origin writes need --allow-origin
    open_server = make(str(root / "store"), allowed_origins=page_origin)
    guarded = make(str(root / "guarded"), token=TOKEN, allowed_origins=page_origin)
    downloads = root / "downloads"
    downloads.mkdir()
    try:
        out = run_browser(page_server.url + "/", open_server.url, guarded.url, downloads)
        yield out, open_server, guarded, root
    finally:
        next(servers, None)


def _weights(entries: list[dict]) -> dict:
    return weights_by_name({"weights": entries})


def test_runs_clean(browser_run):
    out, *_ = browser_run
    assert out["refused"] == []
    assert not [line for line in out["log"] if line.startswith("pageerror")]
    assert out["result"]["backend"] == "cpu"
    assert out["result"]["version"] == "4.22.0"


def test_browser_saves_to_the_server_and_loads_back(browser_run):
    out, server, _, root = browser_run
    result = out["result"]
    direct = result["direct"]
    assert direct["status"] == 201
    for key, value in direct["modelArtifactsInfo"].items():
        if key != "dateSaved":
            assert direct["body"]["modelArtifactsInfo"][key] == value, key
    want = _weights(result["weights"])
    assert_same_weights(_weights(result["reloaded"]["weights"]), want)
    prediction = decode_b64(result["prediction"])
    assert decode_b64(result["reloaded"]["prediction"]).tobytes() == prediction.tobytes()
    # the stored bundle, read by tfjsfs straight from the store
    assert_same_weights(tfjsfs.load_weights(str(root / "store" / "browser" / "direct")), want)
    listed = {m["name"] for m in http("GET", f"{server.url}/models").json()["models"]}
    assert {"browser/direct", "browser/from-indexeddb", "browser/from-localstorage"} <= listed


def test_copy_model_from_browser_storage(browser_run):
    out, _, _, root = browser_run
    result = out["result"]
    assert result["listed"] == ["indexeddb://tfjsfs-idb", "localstorage://tfjsfs-ls"]
    want = _weights(result["weights"])
    for medium, info in (
        ("indexeddb", result["copyIndexedDB"]),
        ("localstorage", result["copyLocalStorage"]),
    ):
        stored = tfjsfs.load_model(str(root / "store" / "browser" / f"from-{medium}"))
        assert_same_weights(stored.weights, want)
        assert info["weightDataBytes"] == len(stored.weight_data)
    assert decode_b64(result["copiedPrediction"]).tobytes() == (
        decode_b64(result["prediction"]).tobytes()
    )


def test_bearer_token_from_the_browser(browser_run):
    out, _, guarded, root = browser_run
    result = out["result"]
    assert "401" in result["withoutToken"]
    assert result["withToken"]["status"] == 201
    bundle = root / "guarded" / "browser" / "guarded"
    assert_same_weights(tfjsfs.load_weights(str(bundle)), _weights(result["weights"]))
    listed = http("GET", f"{guarded.url}/models").json()["models"]  # reads stay open
    assert [m["name"] for m in listed] == ["browser/guarded"]


def test_downloads_load_in_tfjsfs(browser_run, model_server):
    out, *_ = browser_run
    files = sorted(Path(p).name for p in out["downloads"])
    assert files == ["tfjsfs-dl.json", "tfjsfs-dl.weights.bin"]
    folder = Path(out["downloads"][0]).parent
    doc = json.loads((folder / "tfjsfs-dl.json").read_text())
    assert doc["weightsManifest"][0]["paths"] == ["./tfjsfs-dl.weights.bin"]
    artifacts = tfjsfs.load_model(str(folder / "tfjsfs-dl.json"))
    want = _weights(out["result"]["weights"])
    assert_same_weights(artifacts.weights, want)
    assert out["result"]["downloads"]["modelArtifactsInfo"]["weightDataBytes"] == len(
        artifacts.weight_data
    )
    # and it travels on: Python posts it to a server like the browser would
    server = model_server()
    tfjsfs.save_model(artifacts, server.model_url("from-downloads"))
    again = tfjsfs.load_weights(server.model_url("from-downloads").replace("http", "tfjs+http"))
    assert_same_weights(again, want)
