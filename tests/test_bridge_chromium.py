"""The browser storage bridge in real headless Chromium with the real TF.js 4.22.0.

A test server on 127.0.0.1 serves the bridge (over a store on the moto S3
server), ``tf.min.js`` from ``node_modules`` and a test page of the same
origin. ``tests/js/browser/driver.js`` drives Chromium through
playwright-core; ``tests/js/browser/page_helpers.js`` uses TF.js on the
page (save, load, predict, list). Every request to anything but 127.0.0.1
is aborted and fails the test.

Set ``TFJSFS_REQUIRE_BROWSER=1`` to turn a missing Chromium or
``node_modules`` into failures instead of skips. ``TFJSFS_CHROMIUM`` points
at another Chromium binary.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import queue
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from chromium_env import JS_DIR, REPO_ROOT, TF_MIN_JS, browser_marks, require_browser
from nodejs import decode_b64
from peers._aioserver import ThreadedApp

import tfjsfs
from tfjsfs import ModelArtifacts
from tfjsfs.format import browser as tfbrowser
from tfjsfs.server.app import create_app
from tfjsfs.server.bridge import BRIDGE_KEY, load_stored

DRIVER = JS_DIR / "browser" / "driver.js"
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"
pytestmark = browser_marks("BRIDGE TESTS")


# --------------------------------------------------------------- Chromium


class DriverError(RuntimeError):
    """The driver or a page script failed."""


class Chromium:
    """``tests/js/browser/driver.js`` as a subprocess, one JSON line per command."""

    def __init__(self, executable: str) -> None:
        self._proc = subprocess.Popen(
            ["node", str(DRIVER), executable],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._replies: queue.Queue[str | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=200)
        self._next = 0
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()
        self.version = self._reply(0, timeout=60)

    def _pump_stdout(self) -> None:
        for line in self._proc.stdout:
            if line.strip():
                self._replies.put(line)
        self._replies.put(None)

    def _pump_stderr(self) -> None:
        for line in self._proc.stderr:
            self._stderr.append(line.rstrip())

    def _reply(self, want: int, timeout: float) -> Any:
        try:
            line = self._replies.get(timeout=timeout)
        except queue.Empty:
            raise DriverError(f"no reply from the Chromium driver in {timeout} s") from None
        if line is None:
            raise DriverError("the Chromium driver exited:\n" + "\n".join(self._stderr))
        reply = json.loads(line)
        if reply.get("id") != want:
            raise DriverError(f"reply {reply.get('id')} to command {want}: {line[:500]}")
        if not reply["ok"]:
            raise DriverError(reply["error"])
        return reply.get("result")

    def call(self, op: str, timeout: float = 120, **args: Any) -> Any:
        """Run one driver command and return its result."""
        self._next += 1
        self._proc.stdin.write(json.dumps({"id": self._next, "op": op, **args}) + "\n")
        self._proc.stdin.flush()
        return self._reply(self._next, timeout)

    def close(self) -> None:
        """Quit the browser and the driver."""
        if self._proc.poll() is None:
            with contextlib.suppress(DriverError, OSError):
                self.call("quit", timeout=30)
            self._proc.stdin.close()
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(30)


class Page:
    """One tab of a :class:`Browser`."""

    def __init__(self, chromium: Chromium, name: str) -> None:
        self.chromium = chromium
        self.name = name

    def eval(self, fn: str, arg: Any = None, timeout: float = 120) -> Any:
        """``await (fn)(arg)`` in the page; *fn* is JavaScript source."""
        return self.chromium.call("eval", page=self.name, fn=fn, arg=arg, timeout=timeout)

    def start(self, fn: str, arg: Any = None) -> str:
        """Start ``(fn)(arg)`` without waiting; returns a job id for :meth:`wait`."""
        job = f"{self.name}-job-{time.monotonic_ns()}"
        self.chromium.call("start", page=self.name, fn=fn, arg=arg, job=job)
        return job

    def wait(self, job: str, timeout: float = 120) -> dict:
        """``{ok, value}`` or ``{ok: false, error}`` of a started job."""
        return self.chromium.call("wait", job=job, timeout=timeout)

    def wait_for(self, fn: str, arg: Any = None, timeout: float = 60) -> None:
        """Poll ``(fn)(arg)`` in the page until it is truthy."""
        self.chromium.call(
            "waitFor", page=self.name, fn=fn, arg=arg, timeout=timeout + 5, ms=timeout * 1000
        )

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.chromium.call("screenshot", page=self.name, path=str(path))
        return path

    def close(self) -> None:
        self.chromium.call("closePage", page=self.name)


class Browser:
    """A fresh browser context (its own localStorage and IndexedDB) on one Chromium."""

    def __init__(self, chromium: Chromium, name: str) -> None:
        self.chromium = chromium
        self.name = name
        self._pages = 0
        chromium.call("newContext", context=name)

    def open(self, url: str) -> Page:
        self._pages += 1
        name = f"{self.name}-p{self._pages}"
        self.chromium.call("newPage", context=self.name, page=name, url=url)
        return Page(self.chromium, name)

    def storage_state(self, indexed_db: bool = False) -> dict:
        return self.chromium.call("storageState", context=self.name, indexedDB=indexed_db)

    def close(self) -> None:
        self.chromium.call("closeContext", context=self.name)


@pytest.fixture(scope="module")
def chromium():
    driver = Chromium(require_browser())
    yield driver
    driver.close()


@pytest.fixture
def browser(chromium, request):
    """A fresh context; afterwards no request may have left 127.0.0.1."""
    context = Browser(chromium, f"ctx-{request.node.name}-{time.monotonic_ns()}")
    yield context
    context.close()
    log = chromium.call("log")
    assert log["refused"] == [], f"Chromium tried to reach non-loopback URLs: {log['refused']}"


def page_errors(chromium: Chromium) -> list[str]:
    return [line for line in chromium.call("log")["log"] if "pageerror" in line]


# ------------------------------------------------------------ test server


MODELS_JS_WRAPPER = """(function (require, module) {
%s
})(function (name) {
  if (name !== './harness') throw new Error('cannot require ' + name + ' in the browser');
  return {tf: window.tf, init: async () => { await window.tf.setBackend('cpu'); },
          emit() {}, run() {}};
}, window.__tfjsfsModelsModule = {exports: {}});
window.tfjsfsModels = window.__tfjsfsModelsModule.exports;
"""


class BridgeServer(ThreadedApp):
    """The model server (``tfjsfs.server.app.create_app``, bridge included) over an S3
    store, needing a bearer token for writes, plus the TF.js test page at
    ``/test/`` on the same origin.

    Weight downloads of models whose name starts with ``slow/`` stop after
    half the body until :meth:`release` (``stalled`` is set at that point).
    """

    def __init__(self, store_url: str, storage_options: dict, cors_origins: tuple) -> None:
        super().__init__()
        self.store_url = store_url
        self.store_options = storage_options
        self.cors_origins = cors_origins
        self.stalled = threading.Event()
        self._released = threading.Event()

    def release(self) -> None:
        self._released.set()

    @web.middleware
    async def _stall(self, request: web.Request, handler):
        prefix = "/bridge/api/weights/"
        if not request.path.startswith(prefix + "slow/"):
            return await handler(request)
        # the weights route streams from the store: send the same bytes by hand
        store = request.app[BRIDGE_KEY]
        _, artifacts = await load_stored(store, request.path.removeprefix(prefix))
        body = bytes(memoryview(artifacts.weight_data).cast("B"))
        stream = web.StreamResponse(
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(body))}
        )
        await stream.prepare(request)
        await stream.write(body[: len(body) // 2])
        self.stalled.set()
        deadline = time.monotonic() + 120
        while not self._released.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        with contextlib.suppress(ConnectionError):  # the page may be gone
            await stream.write(body[len(body) // 2 :])
            await stream.write_eof()
        return stream

    def build_app(self) -> web.Application:
        app = create_app(
            self.store_url,
            storage_options=self.store_options,
            token=TOKEN,
            allowed_origins=self.cors_origins,
        )
        assert any(r.resource.canonical == "/bridge" for r in app.router.routes())
        app.middlewares.append(self._stall)
        page = (JS_DIR / "browser" / "tfjs_page.html").read_text(encoding="utf-8")
        page = page.replace("__BRIDGE__", "/bridge/bridge.js")
        models_js = MODELS_JS_WRAPPER % (JS_DIR / "tfjs_models.js").read_text(encoding="utf-8")

        def text(body: str, ctype: str):
            async def handler(request: web.Request) -> web.Response:
                return web.Response(text=body, content_type=ctype)

            return handler

        async def tf_min(request: web.Request) -> web.FileResponse:
            return web.FileResponse(TF_MIN_JS)

        async def helpers(request: web.Request) -> web.FileResponse:
            return web.FileResponse(JS_DIR / "browser" / "page_helpers.js")

        app.router.add_get("/test/", text(page, "text/html"))
        app.router.add_get("/test/vendor/tf.min.js", tf_min)
        app.router.add_get("/test/tfjs_models.js", text(models_js, "text/javascript"))
        app.router.add_get("/test/page_helpers.js", helpers)
        return app


class ForeignSite(ThreadedApp):
    """Another origin whose page includes the bridge script from the bridge server."""

    def __init__(self) -> None:
        super().__init__()
        self.bridge_url = ""

    def build_app(self) -> web.Application:
        async def index(request: web.Request) -> web.Response:
            html = (
                "<!DOCTYPE html><html><head><meta charset='utf-8'><title>app</title></head>"
                f"<body><p>An app of another origin.</p>"
                f"<script src='{self.bridge_url}/bridge/bridge.js'></script></body></html>"
            )
            return web.Response(text=html, content_type="text/html")

        async def favicon(request: web.Request) -> web.Response:
            return web.Response(text="", content_type="image/x-icon")

        app = web.Application()
        app.router.add_get("/", index)
        app.router.add_get("/favicon.ico", favicon)
        return app


@pytest.fixture(scope="module")
def store(s3_server):
    """A bucket (for this module) and the bridge's store in it."""
    bucket = s3_server.new_bucket("bridge")
    fs = s3_server.filesystem()
    yield {
        "bucket": bucket,
        "root": f"{bucket}/models",
        "fs": fs,
        "url": lambda name: f"s3://{bucket}/models/{name}".rstrip("/"),
        "options": s3_server.storage_options,
    }
    s3_server.remove_bucket(bucket)


@pytest.fixture(scope="module")
def sites():
    allowed, denied = ForeignSite().start(), ForeignSite().start()
    yield {"allowed": allowed, "denied": denied}
    allowed.stop()
    denied.stop()


@pytest.fixture(scope="module")
def server(store, sites):
    app = BridgeServer(store["url"](""), store["options"], (sites["allowed"].url,))
    app.start()
    for site in sites.values():
        site.bridge_url = app.url
    yield app
    app.release()
    app.stop()


# ---------------------------------------------------------------- helpers


def weights_of(entries: list[dict]) -> dict[str, np.ndarray]:
    return {e["name"]: decode_b64(e) for e in entries}


def assert_same_weights(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert list(got) == list(expected)
    for name, value in expected.items():
        assert got[name].dtype == value.dtype, name
        assert got[name].shape == value.shape, name
        assert got[name].tobytes() == value.tobytes(), name


def save_py(store, name: str, artifacts: ModelArtifacts, **options: Any) -> None:
    tfjsfs.save_model(
        artifacts, store["url"](name), overwrite=True, storage_options=store["options"], **options
    )


def tfjs_artifacts(page: Page, model: str) -> tuple[ModelArtifacts, dict]:
    """TF.js's own artifacts of a harness model, read through tfjsfs.format.browser."""
    raw = page.eval("(n) => tfjsfsTest.artifacts(n)", model)
    record = {"modelArtifacts": {**raw, "weightData": base64.b64decode(raw["weightData_b64"])}}
    return tfbrowser.from_indexeddb(record, model), raw


def shifted(artifacts: ModelArtifacts) -> dict[str, np.ndarray]:
    """Every weight moved away from its TF.js value, dtype kept."""
    out = {}
    for name, value in artifacts.weights.items():
        if value.dtype == np.float32:
            out[name] = (value * np.float32(-0.75) + np.float32(0.125)).astype(np.float32)
        elif value.dtype == np.int32:
            out[name] = value + np.int32(3)
        else:
            out[name] = ~value
    return out


def memory_json(artifacts: ModelArtifacts) -> dict:
    return {
        "modelTopology": artifacts.model_topology,
        "weightSpecs": [s.to_json() for s in artifacts.weight_specs],
        "weightData_b64": base64.b64encode(bytes(artifacts.weight_data)).decode(),
    }


TOKEN = "bridge-test-token"
PUSH = "(a) => tfjsfsBridge.push(a.url, a.name)"


def open_test_page(browser: Browser, server: BridgeServer) -> Page:
    """The TF.js test page, with the bridge configured with the write token."""
    page = browser.open(server.url + "/test/")
    page.eval("(t) => { tfjsfsBridge.configure({token: t}); }", TOKEN)
    return page


PULL = "(a) => tfjsfsBridge.pull(a.name, a.url, {overwrite: Boolean(a.overwrite)})"
PULL_CAUGHT = """async (a) => {
  try { await tfjsfsBridge.pull(a.name, a.url, {overwrite: Boolean(a.overwrite)}); return null; }
  catch (e) { return {message: e.message, kind: e.kind}; }
}"""


# ------------------------------------------------------------------ tests


def test_push_tfjs_saved_models_to_s3(browser, server, store):
    page = open_test_page(browser, server)
    saved = {}
    for model, url in [
        ("mixed", "localstorage://a"),
        ("mixed", "indexeddb://b"),
        ("cnn", "localstorage://a-cnn"),
        ("rnn", "indexeddb://b-rnn"),
    ]:
        saved[url] = page.eval(
            "(a) => tfjsfsTest.save(a.model, a.url)", {"model": model, "url": url}
        )
        name = "pushed/" + url.split("://")[1]
        reply = page.eval(PUSH, {"url": url, "name": name})
        assert reply["name"] == name
        saved[url]["store_name"] = name
    dtypes = set()
    for url, result in saved.items():
        source = store["url"](result["store_name"])
        got = tfjsfs.load_weights(source, storage_options=store["options"])
        expected = weights_of(result["weights"])
        assert_same_weights(got, expected)
        dtypes |= {str(v.dtype) for v in got.values()}
        info = tfjsfs.load_model(source, storage_options=store["options"]).info()
        tfjs_info = result["info"]
        assert info.weight_data_bytes == tfjs_info["weightDataBytes"], url
        assert info.weight_specs_bytes == tfjs_info["weightSpecsBytes"], url
        assert info.model_topology_bytes == tfjs_info["modelTopologyBytes"], url
    assert {"float32", "int32", "bool"} <= dtypes
    # Without the server's write token a push is refused, with a hint.
    page.eval("() => { tfjsfsBridge.configure({token: 'wrong'}); }")
    failure = page.eval(
        "async (a) => { try { await tfjsfsBridge.push(a.url, a.name); return null; }"
        " catch (e) { return {message: e.message, kind: e.kind}; } }",
        {"url": "localstorage://a", "name": "pushed/unauthorized"},
    )
    assert failure["kind"] == "unauthorized" and "bearer token" in failure["message"]
    assert not store["fs"].exists(store["root"] + "/pushed/unauthorized")
    page.eval("(t) => { tfjsfsBridge.configure({token: t}); }", TOKEN)
    # Pushing onto an existing name is refused unless asked for.
    failure = page.eval(
        "async (a) => { try { await tfjsfsBridge.push(a.url, a.name); return null; }"
        " catch (e) { return {message: e.message, kind: e.kind}; } }",
        {"url": "localstorage://a", "name": "pushed/a"},
    )
    assert failure["kind"] == "exists" and "pushed/a" in failure["message"]
    assert page_errors(browser.chromium) == []


@pytest.mark.parametrize("quantize", [None, "uint8"])
def test_pull_store_bundle_into_both_browser_stores(browser, server, store, quantize):
    page = open_test_page(browser, server)
    model = "mixed" if quantize is None else "cnn"
    original, raw = tfjs_artifacts(page, model)
    names = list(original.weights)
    ours = ModelArtifacts.from_weights(
        original.model_topology,
        shifted(original),
        quantize=quantize,
        groups=[names[: len(names) // 2], names[len(names) // 2 :]],
        format=original.format,
        generated_by=original.generated_by,
    )
    name = f"py/{model}-{quantize or 'plain'}"
    save_py(store, name, ours, shard_size=20)
    manifest = json.loads(store["fs"].cat(f"{store['root']}/{name}/model.json"))
    assert len(manifest["weightsManifest"]) == 2, "two weight groups"
    assert sum(len(g["paths"]) for g in manifest["weightsManifest"]) > 3, "several shards"
    reference = page.eval(
        "(a) => tfjsfsTest.loadFromMemory(a.artifacts, a.input)",
        {"artifacts": memory_json(ours), "input": raw["input"]},
    )
    tfjs_original = page.eval(
        "(a) => tfjsfsTest.loadFromMemory(a.artifacts, a.input)",
        {"artifacts": memory_json(original), "input": raw["input"]},
    )
    # The shifted weights really change the prediction.
    assert reference["prediction"]["data_b64"] != tfjs_original["prediction"]["data_b64"]

    targets = ("indexeddb://c", "localstorage://d")
    for target in targets:
        info = page.eval(PULL, {"name": name, "url": target})
        assert info["weightDataBytes"] == ours.weight_data_bytes
        loaded = page.eval(
            "(a) => tfjsfsTest.load(a.url, a.input)", {"url": target, "input": raw["input"]}
        )
        assert loaded["prediction"] == reference["prediction"], target
        assert_same_weights(weights_of(loaded["weights"]), ours.weights)
    listed = page.eval("() => tfjsfsTest.listModels()")
    expected = ours.info()
    for target in targets:
        assert listed[target]["modelTopologyType"] == "JSON"
        assert listed[target]["weightDataBytes"] == expected.weight_data_bytes
        assert listed[target]["weightSpecsBytes"] == expected.weight_specs_bytes
        assert listed[target]["modelTopologyBytes"] == expected.model_topology_bytes
    # What the bridge wrote reads back through tfjsfs.format.browser as well.
    state = browser.storage_state(indexed_db=True)
    models = tfbrowser.read_storage_state(state, origin=server.url)
    for target in targets:
        assert models[target].weight_data_bytes == ours.weight_data_bytes
        assert bytes(models[target].weight_data) == bytes(ours.weight_data)
    # A second pull into the same place is refused unless overwriting.
    failure = page.eval(PULL_CAUGHT, {"name": name, "url": "indexeddb://c"})
    assert failure["kind"] == "exists"
    assert page.eval(PULL, {"name": name, "url": "indexeddb://c", "overwrite": True})
    # Removing through the bridge removes the model for TF.js too.
    for target in targets:
        removed = page.eval("(u) => tfjsfsBridge.removeBrowserModel(u)", target)
        assert removed["weightDataBytes"] == ours.weight_data_bytes
    listed = page.eval("() => tfjsfsTest.listModels()")
    assert not set(targets) & set(listed)
    assert page.eval("() => tfjsfsTest.localStorageKeys('tensorflowjs_models/d/')") == []
    assert page_errors(browser.chromium) == []


def test_storage_state_export_yields_tfjs_weights(browser, server, tmp_path):
    page = open_test_page(browser, server)
    in_ls = page.eval("(a) => tfjsfsTest.save('mixed', 'localstorage://exported/one')")
    in_idb = page.eval("(a) => tfjsfsTest.save('cnn', 'indexeddb://exported-two')")
    path = tmp_path / "state.json"
    path.write_text(json.dumps(browser.storage_state()), encoding="utf-8")
    models = tfbrowser.read_storage_state(path)
    assert list(models) == ["localstorage://exported/one"]
    assert_same_weights(
        models["localstorage://exported/one"].weights, weights_of(in_ls["weights"])
    )
    listed = tfbrowser.list_storage_state(path, origin=server.url)
    assert (
        listed["localstorage://exported/one"].weight_data_bytes == in_ls["info"]["weightDataBytes"]
    )
    # With IndexedDB in the export, the indexeddb:// model comes out too.
    full = browser.storage_state(indexed_db=True)
    models = tfbrowser.read_storage_state(json.dumps(full), origin=server.url)
    assert set(models) == {"localstorage://exported/one", "indexeddb://exported-two"}
    assert_same_weights(models["indexeddb://exported-two"].weights, weights_of(in_idb["weights"]))
    listed = tfbrowser.list_storage_state(full)
    assert (
        listed["indexeddb://exported-two"].weight_specs_bytes == in_idb["info"]["weightSpecsBytes"]
    )


def test_too_large_for_localstorage_fails_cleanly(browser, server, store):
    page = open_test_page(browser, server)
    rng = np.random.default_rng(7)
    big = ModelArtifacts.from_weights(
        {"class_name": "Sequential", "config": {"name": "big", "layers": []}},
        {"big/kernel": rng.standard_normal(3_000_000).astype(np.float32)},
    )
    save_py(store, "big/model", big)
    kept = page.eval("(a) => tfjsfsTest.save('mixed', 'localstorage://keep')")
    page.eval("() => localStorage.setItem('app-setting', 'unrelated')")
    before = page.eval("() => Object.fromEntries(Object.entries(localStorage))")

    failure = page.eval(PULL_CAUGHT, {"name": "big/model", "url": "localstorage://big"})
    assert failure is not None and failure["kind"] == "quota"
    message = failure["message"]
    assert "Failed to save model 'big' to local storage" in message
    assert f"weightDataBytes={big.weight_data_bytes}" in message
    assert "Nothing was written" in message
    after = page.eval("() => Object.fromEntries(Object.entries(localStorage))")
    assert after == before
    assert not any(k.startswith("tensorflowjs_models/big/") for k in after)

    # Replacing an existing model with one that does not fit keeps the old one.
    failure = page.eval(
        PULL_CAUGHT, {"name": "big/model", "url": "localstorage://keep", "overwrite": True}
    )
    assert failure["kind"] == "quota"
    assert page.eval("() => Object.fromEntries(Object.entries(localStorage))") == before
    reloaded = page.eval("(a) => tfjsfsTest.load('localstorage://keep', a)", kept["input"])
    assert reloaded["prediction"] == kept["prediction"]
    # The same model fits IndexedDB.
    info = page.eval(PULL, {"name": "big/model", "url": "indexeddb://big"})
    assert info["weightDataBytes"] == big.weight_data_bytes


def test_interrupted_pull_leaves_no_half_model(browser, server, store):
    rng = np.random.default_rng(11)
    model = ModelArtifacts.from_weights(
        {"class_name": "Sequential", "config": {"name": "slow", "layers": []}},
        {"w": rng.standard_normal(1_000_000).astype(np.float32)},
    )
    save_py(store, "slow/model", model)
    save_py(store, "held/model", model)

    # 1. The page closes while the weights are still downloading.
    page = open_test_page(browser, server)
    server.stalled.clear()
    job = page.start(PULL, {"name": "slow/model", "url": "indexeddb://e"})
    assert server.stalled.wait(60), "the weight download never started"
    page.eval("() => 1")  # the page is alive and the pull still pending
    page.close()
    outcome = page.wait(job)
    assert not outcome["ok"] and "closed" in outcome["error"], outcome

    # 2. The page closes after both records were queued in the transaction,
    #    while the transaction is kept open by one more request chain.
    page = open_test_page(browser, server)
    job = page.start(
        """(a) => tfjsfsBridge.pull(a.name, a.url, {onQueued: (tx) => {
             window.__queued = true;
             const spin = () => { tx.objectStore('model_info_store').count().onsuccess = spin; };
             spin();
           }})""",
        {"name": "held/model", "url": "indexeddb://f"},
    )
    page.wait_for("() => window.__queued === true")
    page.close()
    outcome = page.wait(job)
    assert not outcome["ok"] and "closed" in outcome["error"], outcome

    page = open_test_page(browser, server)
    for path in ("e", "f"):
        raw = page.eval("(p) => tfjsfsTest.rawIndexedDB(p)", path)
        assert raw["model"] is False and raw["info"] is False, (path, raw)
    listed = page.eval("() => tfjsfsTest.listModels()")
    assert "indexeddb://e" not in listed and "indexeddb://f" not in listed

    # The same pulls complete when left alone.
    server.release()
    info = page.eval(PULL, {"name": "held/model", "url": "indexeddb://f"})
    raw = page.eval("(p) => tfjsfsTest.rawIndexedDB(p)", "f")
    assert raw == {
        "exists": True,
        "model": True,
        "info": True,
        "weightBytes": model.weight_data_bytes,
        "infoBytes": model.weight_data_bytes,
    }
    assert info["weightDataBytes"] == model.weight_data_bytes
    info = page.eval(PULL, {"name": "slow/model", "url": "indexeddb://e"})
    assert info["weightDataBytes"] == model.weight_data_bytes


def test_bridge_page_lists_both_sides_and_works_by_hand(browser, server, store):
    page = open_test_page(browser, server)
    shown = page.eval("() => tfjsfsTest.save('mixed', 'localstorage://shown/mixed')")
    page.eval("() => tfjsfsTest.save('cnn', 'indexeddb://shown-cnn')")
    original, _ = tfjs_artifacts(page, "rnn")
    save_py(store, "shown/rnn", original)

    ui = browser.open(server.url + "/bridge")
    ui.eval(
        """(t) => {
          const input = document.querySelector('.tfjsfs-bridge .token input');
          input.value = t;
          input.dispatchEvent(new Event('change'));
        }""",
        TOKEN,
    )
    ui.wait_for(
        "() => document.querySelectorAll('#browser-models tr[data-url]').length >= 2"
        " && document.querySelector('#store-models tr[data-name=\"shown/rnn\"]')"
    )
    # Push a browser model with the page's own controls.
    ui.eval(
        """() => {
          const url = 'localstorage://shown/mixed';
          const row = document.querySelector(`#browser-models tr[data-url="${url}"]`);
          row.querySelector('input').value = 'ui/pushed';
          row.querySelector('button').click();
        }"""
    )
    ui.wait_for("() => document.querySelector('#store-models tr[data-name=\"ui/pushed\"]')")
    pushed = tfjsfs.load_model(store["url"]("ui/pushed"), storage_options=store["options"])
    assert_same_weights(pushed.weights, weights_of(shown["weights"]))
    # Pull a store model into IndexedDB with the page's controls.
    ui.eval(
        """() => {
          const row = document.querySelector('#store-models tr[data-name="shown/rnn"]');
          const buttons = [...row.querySelectorAll('button')];
          buttons.find((b) => b.textContent.includes('IndexedDB')).click();
        }"""
    )
    ui.wait_for(
        "() => document.querySelector('#browser-models tr[data-url=\"indexeddb://shown/rnn\"]')"
    )
    status = ui.eval("() => document.querySelector('.tfjsfs-bridge .status').textContent")
    assert status.endswith("done.")
    rows = ui.eval(
        """() => ({
          browser: [...document.querySelectorAll('#browser-models tr[data-url]')].map((r) => [
            r.dataset.url, Number(r.querySelector('[data-bytes]').dataset.bytes)]),
          store: [...document.querySelectorAll('#store-models tr[data-name]')].map((r) => [
            r.dataset.name, Number(r.querySelector('[data-bytes]').dataset.bytes)]),
          error: document.querySelector('.tfjsfs-bridge .error').hidden,
        })"""
    )
    browser_rows = dict(rows["browser"])
    assert set(browser_rows) >= {
        "localstorage://shown/mixed",
        "indexeddb://shown-cnn",
        "indexeddb://shown/rnn",
    }
    assert browser_rows["indexeddb://shown/rnn"] == original.weight_data_bytes
    store_rows = dict(rows["store"])
    assert store_rows["shown/rnn"] == original.weight_data_bytes
    assert store_rows["ui/pushed"] == pushed.weight_data_bytes
    assert rows["error"] is True  # no error shown
    shot = ui.screenshot(ARTIFACTS_DIR / "bridge-page.png")
    assert shot.stat().st_size > 10_000
    assert page_errors(browser.chromium) == []


def test_bridge_script_works_from_an_allowed_origin_only(browser, server, store, sites):
    original = ModelArtifacts.from_weights(
        {"class_name": "Sequential", "config": {"name": "x", "layers": []}},
        {"k": np.arange(12, dtype=np.float32).reshape(3, 4), "n": np.array([1, -2], np.int32)},
    )
    save_py(store, "cross/source", original)
    app = browser.open(sites["allowed"].url + "/")
    app.wait_for("() => window.tfjsfsBridge")
    app.eval("(t) => { tfjsfsBridge.configure({token: t}); }", TOKEN)
    assert app.eval("() => typeof window.tf") == "undefined"  # no TF.js on this page
    names = [m["name"] for m in app.eval("() => tfjsfsBridge.listStoreModels()")]
    assert "cross/source" in names
    app.eval(PULL, {"name": "cross/source", "url": "indexeddb://x"})
    app.eval(
        "(a) => tfjsfsBridge.push(a.url, a.name)", {"url": "indexeddb://x", "name": "cross/back"}
    )
    back = tfjsfs.load_model(store["url"]("cross/back"), storage_options=store["options"])
    assert_same_weights(back.weights, original.weights)
    listed = app.eval("() => tfjsfsBridge.listBrowserModels()")
    assert listed["indexeddb://x"]["weightDataBytes"] == original.weight_data_bytes

    other = browser.open(sites["denied"].url + "/")
    other.wait_for("() => window.tfjsfsBridge")
    failure = other.eval(
        "async () => { try { await tfjsfsBridge.listStoreModels(); return null; }"
        " catch (e) { return {message: e.message, kind: e.kind}; } }"
    )
    assert failure["kind"] == "network"
    assert "cannot reach the tfjsfs server" in failure["message"]
