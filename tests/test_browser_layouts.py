"""TF.js's browser storage layouts in Python (``tfjsfs.format.browser``) and the bridge's API.

No browser here: the layouts are checked against TF.js's definitions
(``local_storage.ts``, ``indexed_db.ts``) and round trips; the bridge's JSON
API runs on a real aiohttp server over memory and moto S3 stores. Real
Chromium with the real TF.js is in ``test_bridge_chromium.py``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import uuid

import aiohttp
import aiohttp_cors
import fsspec
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import tfjsfs
from tfjsfs import ModelArtifacts, ModelArtifactsInfo
from tfjsfs.errors import FormatError, ModelNotFoundError, WeightDataError
from tfjsfs.format import browser as tb
from tfjsfs.model.http import multipart_form
from tfjsfs.server.bridge import BRIDGE_KEY, setup_bridge
from tfjsfs.server.modelstore import ModelStore

SAVED = dt.datetime(2026, 11, 21, 10, 30, 15, 123000, tzinfo=dt.UTC)
#: A topology with non-ASCII text and floats that JS prints differently.
TOPOLOGY = {
    "class_name": "Sequential",
    "config": {"name": "dénse-model", "layers": [{"rate": 1.0, "eps": 1e-7, "units": 3}]},
}


def all_dtypes() -> ModelArtifacts:
    rng = np.random.default_rng(3)
    return ModelArtifacts.from_weights(
        TOPOLOGY,
        {
            "dense/kernel": rng.standard_normal((3, 4)).astype(np.float32),
            "offset": np.array([-5, 0, 7], np.int32),
            "keep": np.array([True, False, True]),
            "c": np.array([1 + 2j, -0.5j], np.complex64),
            "vocab": np.array(["a", "dé", ""], dtype=object),
        },
        generated_by="TensorFlow.js tfjs-layers v4.22.0",
        user_defined_metadata={"owner": {"team": "x"}},
        signature={"inputs": {"x": {"name": "x"}}},
        training_config={"loss": "mse"},
    )


def assert_same(a: ModelArtifacts, b: ModelArtifacts) -> None:
    assert a.model_topology == b.model_topology
    assert [s.to_json() for s in a.weight_specs] == [s.to_json() for s in b.weight_specs]
    assert bytes(a.weight_data) == bytes(b.weight_data)
    for attr in (
        "format",
        "generated_by",
        "converted_by",
        "signature",
        "user_defined_metadata",
        "model_initializer",
        "initializer_signature",
        "training_config",
    ):
        assert getattr(a, attr) == getattr(b, attr), attr
    for name, value in a.weights.items():
        assert b.weights[name].dtype == value.dtype
        assert np.array_equal(b.weights[name], value), name


# ------------------------------------------------------------ localStorage


def test_local_storage_items_follow_tfjs_layout():
    artifacts = all_dtypes()
    items = tb.to_local_storage(artifacts, "localstorage://my/model/1", date_saved=SAVED)
    prefix = "tensorflowjs_models/my/model/1/"
    assert list(items) == [
        prefix + s
        for s in ("info", "model_topology", "weight_specs", "weight_data", "model_metadata")
    ]
    topology = items[prefix + "model_topology"]
    specs = items[prefix + "weight_specs"]
    # JSON.stringify output: compact, JS number formatting, raw UTF-8 text.
    assert topology == (
        '{"class_name":"Sequential","config":{"name":"dénse-model",'
        '"layers":[{"rate":1,"eps":1e-7,"units":3}]}}'
    )
    assert json.loads(specs) == [s.to_json() for s in artifacts.weight_specs]
    assert base64.b64decode(items[prefix + "weight_data"]) == bytes(artifacts.weight_data)
    # weight_data is the only base64 value; the rest is JSON.
    for key, value in items.items():
        if not key.endswith("/weight_data"):
            json.loads(value)
    info = json.loads(items[prefix + "info"])
    assert info == {
        "dateSaved": "2026-11-21T10:30:15.123Z",
        "modelTopologyType": "JSON",
        "modelTopologyBytes": len(topology.encode("utf-8")),
        "weightSpecsBytes": len(specs.encode("utf-8")),
        "weightDataBytes": artifacts.weight_data_bytes,
    }
    assert info["modelTopologyBytes"] > len(topology)  # bytes, not characters
    assert json.loads(items[prefix + "model_metadata"]) == {
        "format": "layers-model",
        "generatedBy": "TensorFlow.js tfjs-layers v4.22.0",
        "convertedBy": None,
        "signature": {"inputs": {"x": {"name": "x"}}},
        "userDefinedMetadata": {"owner": {"team": "x"}},
        "trainingConfig": {"loss": "mse"},
    }


def test_local_storage_round_trip_every_dtype_and_quantized():
    artifacts = all_dtypes()
    back = tb.from_local_storage(tb.to_local_storage(artifacts, "m"), "m")
    assert_same(artifacts, back)
    assert back.problems == []
    quantized = ModelArtifacts.from_weights(
        TOPOLOGY, {"w": np.linspace(-1, 1, 50, dtype=np.float32)}, quantize="uint8"
    )
    items = tb.to_local_storage(quantized, "q")
    assert json.loads(items["tensorflowjs_models/q/weight_specs"])[0]["quantization"]["dtype"] == (
        "uint8"
    )
    back = tb.from_local_storage(items, "localstorage://q")
    assert_same(quantized, back)


def test_list_local_storage_finds_models_like_tfjs():
    items = {"unrelated": "1", "tensorflowjs_models/info": "{}", "tensorflowjs_models/x": "y"}
    items.update(tb.to_local_storage(all_dtypes(), "a", date_saved=SAVED))
    items.update(tb.to_local_storage(all_dtypes(), "deep/er/b"))
    listed = tb.list_local_storage(items)
    assert sorted(listed) == ["a", "deep/er/b"]
    assert listed["a"].date_saved == SAVED
    assert listed["a"].weight_data_bytes == all_dtypes().weight_data_bytes


def test_local_storage_errors_name_the_model_and_bytes():
    items = tb.to_local_storage(all_dtypes(), "m")
    with pytest.raises(
        ModelNotFoundError, match="In local storage, there is no model with name 'x'"
    ):
        tb.from_local_storage(items, "x")
    for suffix, text in [
        ("model_topology", "the topology of model 'm' is missing"),
        ("weight_specs", "the weight specs of model 'm' are missing"),
        ("weight_data", "the binary weight values of model 'm' are missing"),
    ]:
        broken = {k: v for k, v in items.items() if not k.endswith("/" + suffix)}
        with pytest.raises(FormatError, match=text):
            tb.from_local_storage(broken, "m")
    short = dict(items)
    data = base64.b64decode(items["tensorflowjs_models/m/weight_data"])
    short["tensorflowjs_models/m/weight_data"] = base64.b64encode(data[:10]).decode()
    with pytest.raises(WeightDataError, match=r"localstorage://m: .*'dense/kernel'.* 10 bytes"):
        tb.from_local_storage(short, "m")
    bad = dict(items)
    bad["tensorflowjs_models/m/weight_data"] = "not base64!"
    with pytest.raises(WeightDataError, match="not valid base64"):
        tb.from_local_storage(bad, "m")
    graph = dict(items)
    graph["tensorflowjs_models/m/info"] = json.dumps({"modelTopologyType": "GraphDef"})
    with pytest.raises(FormatError, match="only JSON model topologies"):
        tb.from_local_storage(graph, "m")
    long = dict(items)
    long["tensorflowjs_models/m/weight_data"] = base64.b64encode(data + b"xyz").decode()
    assert "3 trailing bytes ignored" in tb.from_local_storage(long, "m").problems[0]


def test_browser_layouts_refuse_what_tfjs_cannot_store():
    binary = ModelArtifacts(model_topology=b"\x08\x01", weight_specs=[], weight_data=b"")
    with pytest.raises(FormatError, match="binary"):
        tb.to_local_storage(binary, "m")
    with pytest.raises(FormatError, match="topology"):
        tb.to_indexeddb(ModelArtifacts(), "m")
    with pytest.raises(FormatError, match="non-empty"):
        tb.to_local_storage(all_dtypes(), "localstorage://")
    short = all_dtypes()
    short.weight_data = bytes(short.weight_data)[:-1]
    with pytest.raises(WeightDataError):
        tb.to_indexeddb(short, "m")


# --------------------------------------------------------------- IndexedDB


def test_indexeddb_records_follow_tfjs_layout_and_round_trip():
    artifacts = all_dtypes()
    records = tb.to_indexeddb(artifacts, "indexeddb://some/path", date_saved=SAVED)
    assert set(records) == {"models_store", "model_info_store"}
    model, info = records["models_store"], records["model_info_store"]
    assert model["modelPath"] == info["modelPath"] == "some/path"
    assert model["modelArtifactsInfo"] == info["modelArtifactsInfo"]
    assert info["modelArtifactsInfo"] == artifacts.info(SAVED).to_json()
    stored = model["modelArtifacts"]
    assert stored["weightData"] == bytes(artifacts.weight_data)
    assert stored["modelTopology"] == TOPOLOGY
    assert stored["weightSpecs"] == [s.to_json() for s in artifacts.weight_specs]
    assert stored["convertedBy"] is None and stored["format"] == "layers-model"
    # Everything but weightData is plain JSON.
    json.dumps({**stored, "weightData": None})
    assert_same(artifacts, tb.from_indexeddb(model))
    # The modelArtifacts object alone, weightData as ArrayBuffer[] or base64.
    parts = [stored["weightData"][:7], stored["weightData"][7:]]
    assert_same(artifacts, tb.from_indexeddb({**stored, "weightData": parts}))
    text = base64.b64encode(stored["weightData"]).decode()
    assert_same(artifacts, tb.from_indexeddb({**stored, "weightData": text}))
    listed = tb.list_indexeddb([info, {"junk": 1}])
    assert listed == {"some/path": ModelArtifactsInfo.from_json(info["modelArtifactsInfo"])}


def test_indexeddb_errors_name_the_model():
    model = tb.to_indexeddb(all_dtypes(), "p")["models_store"]
    broken = {**model, "modelArtifacts": {**model["modelArtifacts"], "weightSpecs": None}}
    with pytest.raises(FormatError, match="indexeddb://p: the weight specs are missing"):
        tb.from_indexeddb(broken)
    broken = {**model, "modelArtifacts": {**model["modelArtifacts"], "weightData": 42}}
    with pytest.raises(WeightDataError, match="indexeddb://p: weightData is not binary"):
        tb.from_indexeddb(broken)
    specs = model["modelArtifacts"]["weightSpecs"]
    broken = {
        **model,
        "modelArtifacts": {**model["modelArtifacts"], "weightSpecs": [*specs, specs[0]]},
    }
    with pytest.raises(FormatError, match="duplicate weight name"):
        tb.from_indexeddb(broken)


# ----------------------------------------------------------- storage_state


def pw_encode(value, ids=None):
    """Playwright's ``serializeAsCallArgument`` form (enough of it for these tests)."""
    ids = ids if ids is not None else [0]
    if value is None:
        return {"v": "null"}
    if isinstance(value, bytes):
        return {"ab": {"b": base64.b64encode(value).decode()}}
    if isinstance(value, dt.datetime):
        return {"d": value.isoformat().replace("+00:00", "Z")}
    if isinstance(value, dict):
        ids[0] += 1
        return {"o": [{"k": k, "v": pw_encode(v, ids)} for k, v in value.items()], "id": ids[0]}
    if isinstance(value, list):
        ids[0] += 1
        return {"a": [pw_encode(v, ids) for v in value], "id": ids[0]}
    return value


def idb_export(records: dict) -> list:
    """The ``indexedDB`` entry of one origin in a storage_state export."""
    model = records["models_store"]
    info = records["model_info_store"]

    def with_date(record):
        stamp = dt.datetime.fromisoformat(
            record["modelArtifactsInfo"]["dateSaved"].replace("Z", "+00:00")
        )
        return {
            **record,
            "modelArtifactsInfo": {**record["modelArtifactsInfo"], "dateSaved": stamp},
        }

    encoded_model = pw_encode(with_date(model))
    # TF.js leaves unset optional fields as undefined inside the record.
    encoded_model["o"][1]["v"]["o"].append({"k": "signature", "v": {"v": "undefined"}})
    return [
        {
            "name": "tensorflowjs",
            "version": 1,
            "stores": [
                {
                    "name": "models_store",
                    "keyPath": "modelPath",
                    "autoIncrement": False,
                    "indexes": [],
                    "records": [{"valueEncoded": encoded_model}],
                },
                {
                    "name": "model_info_store",
                    "keyPath": "modelPath",
                    "autoIncrement": False,
                    "indexes": [],
                    "records": [{"valueEncoded": pw_encode(with_date(info))}],
                },
            ],
        },
        {"name": "other-app", "version": 3, "stores": []},
    ]


def make_state():
    a, b = all_dtypes(), ModelArtifacts.from_weights(TOPOLOGY, {"w": np.ones(5, np.float32)})
    ls = tb.to_local_storage(a, "ls/model", date_saved=SAVED)
    origin_one = {
        "origin": "http://127.0.0.1:8001",
        "localStorage": [{"name": "theme", "value": "dark"}]
        + [{"name": k, "value": v} for k, v in ls.items()],
        "indexedDB": idb_export(tb.to_indexeddb(b, "idb-model", date_saved=SAVED)),
    }
    origin_two = {"origin": "http://127.0.0.1:8002", "localStorage": []}
    return {"cookies": [], "origins": [origin_one, origin_two]}, a, b


def test_storage_state_export_yields_every_model(tmp_path):
    state, a, b = make_state()
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state), encoding="utf-8")
    for source in (state, path, str(path), json.dumps(state)):
        models = tb.read_storage_state(source)
        assert sorted(models) == ["indexeddb://idb-model", "localstorage://ls/model"]
        assert_same(a, models["localstorage://ls/model"])
        assert_same(b, models["indexeddb://idb-model"])
    listed = tb.list_storage_state(path)
    assert listed["localstorage://ls/model"].date_saved == SAVED
    assert listed["indexeddb://idb-model"].date_saved == SAVED
    assert listed["indexeddb://idb-model"].weight_data_bytes == 20
    assert tb.read_storage_state(state, origin="http://127.0.0.1:8002/") == {}


def test_storage_state_problems_are_explained():
    state, _, _ = make_state()
    with pytest.raises(ModelNotFoundError, match=r"no origin 'http://x'.*127\.0\.0\.1:8001"):
        tb.read_storage_state(state, origin="http://x")
    twice = {"origins": [state["origins"][0], {**state["origins"][0], "origin": "http://o"}]}
    with pytest.raises(FormatError, match=r"exists in origins .* pass origin="):
        tb.read_storage_state(twice)
    assert set(tb.read_storage_state(twice, origin="http://o")) == {
        "localstorage://ls/model",
        "indexeddb://idb-model",
    }
    with pytest.raises(FormatError, match="no 'origins' list"):
        tb.read_storage_state({"cookies": []})


# ------------------------------------------------------------- bridge API


def unique_root() -> str:
    return f"memory://bridge-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["url", "model-store"])
def memory_store(request):
    """A fresh memory store given either as a URL or as a ModelStore."""
    url = unique_root()
    store = url if request.param == "url" else ModelStore(url)
    yield url, store
    fs = fsspec.filesystem("memory")
    if fs.exists(url):
        fs.rm(url, recursive=True)


async def client_for(store, **options) -> TestClient:
    app = web.Application()
    setup_bridge(app, store, **options)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


def sample(scale: float = 1.0) -> ModelArtifacts:
    return ModelArtifacts.from_weights(
        TOPOLOGY,
        {
            "k": (np.arange(12, dtype=np.float32) * np.float32(scale)).reshape(3, 4),
            "n": np.array([1, -2, 3], np.int32),
            "m": np.array([True, False]),
        },
        generated_by="test",
    )


async def test_bridge_lists_serves_and_receives_models(memory_store):
    url, store = memory_store
    model = sample()
    await tfjsfs.save_model_async(model, url + "/team/first", shard_size=16)
    client = await client_for(store)
    try:
        listing = await (await client.get("/bridge/api/models")).json()
        assert [m["name"] for m in listing["models"]] == ["team/first"]
        info = listing["models"][0]["modelArtifactsInfo"]
        expected = model.info()
        assert info["weightDataBytes"] == expected.weight_data_bytes
        assert info["weightSpecsBytes"] == expected.weight_specs_bytes
        assert info["modelTopologyBytes"] == expected.model_topology_bytes

        reply = await client.get("/bridge/api/models/team/first")
        meta = await reply.json()
        assert meta["modelArtifacts"]["weightSpecs"] == [s.to_json() for s in model.weight_specs]
        assert meta["modelArtifacts"]["modelTopology"] == TOPOLOGY
        assert "weightData" not in meta["modelArtifacts"]
        assert meta["weightDataBytes"] == model.weight_data_bytes
        weights = await client.get(meta["weightsUrl"])
        assert weights.headers["Content-Type"] == "application/octet-stream"
        assert await weights.read() == bytes(model.weight_data)

        # Push (TF.js's upload form), then refuse a second push unless overwriting.
        reply = await client.post("/bridge/api/models/pushed/one", data=multipart_form(model))
        assert reply.status == 201, await reply.text()
        assert (await reply.json())["modelArtifactsInfo"][
            "weightDataBytes"
        ] == model.weight_data_bytes
        back = await tfjsfs.load_model_async(url + "/pushed/one")
        assert_same(model, back)
        reply = await client.post("/bridge/api/models/pushed/one", data=multipart_form(sample(2)))
        assert reply.status == 409
        assert (await reply.json())["kind"] == "exists"
        reply = await client.post(
            "/bridge/api/models/pushed/one?overwrite=1", data=multipart_form(sample(2))
        )
        assert reply.status == 201
        back = await tfjsfs.load_model_async(url + "/pushed/one")
        assert np.array_equal(back.weights["k"], sample(2).weights["k"])
    finally:
        await client.close()


async def test_bridge_refuses_a_model_changed_during_a_pull(memory_store):
    url, store = memory_store
    await tfjsfs.save_model_async(sample(), url + "/m")
    client = await client_for(store)
    try:
        meta = await (await client.get("/bridge/api/models/m")).json()
        await tfjsfs.save_model_async(sample(3), url + "/m", overwrite=True)
        reply = await client.get(meta["weightsUrl"])
        assert reply.status == 409
        body = await reply.json()
        assert body["kind"] == "changed" and "pull again" in body["error"]
    finally:
        await client.close()


async def test_bridge_errors_are_json_the_page_can_show(memory_store):
    url, store = memory_store
    await tfjsfs.save_model_async(sample(), url + "/m")
    client = await client_for(store, max_upload_bytes=2000)
    try:
        reply = await client.get("/bridge/api/models/missing")
        assert reply.status == 404 and (await reply.json())["kind"] == "not-found"
        reply = await client.get("/bridge/api/models/a/.hidden")
        assert reply.status == 400 and (await reply.json())["kind"] == "bad-name"
        reply = await client.post("/bridge/api/models/big", data=multipart_form(big_model()))
        assert reply.status == 413 and "2000" in (await reply.json())["error"]
        form = aiohttp.FormData()
        doc = (
            sample()
            .to_model_json(
                [tfjsfs.WeightGroup(("./model.weights.bin",), tuple(sample().weight_specs))]
            )
            .dumps()
        )
        form.add_field("model.json", doc, filename="model.json", content_type="application/json")
        form.add_field(
            "model.weights.bin",
            b"\x00" * 10,
            filename="model.weights.bin",
            content_type="application/octet-stream",
        )
        reply = await client.post("/bridge/api/models/short", data=form)
        body = await reply.json()
        assert reply.status == 400, body
        assert "10" in body["error"] and "'k'" in body["error"]
        reply = await client.post("/bridge/api/models/x", data=b"{}")
        assert reply.status == 400 and "multipart/form-data" in (await reply.json())["error"]
    finally:
        await client.close()


def big_model() -> ModelArtifacts:
    return ModelArtifacts.from_weights(TOPOLOGY, {"w": np.zeros(1000, np.float32)})


async def test_bridge_read_only_and_authorize(memory_store):
    url, store = memory_store
    client = await client_for(store, read_only=True)
    try:
        reply = await client.post("/bridge/api/models/m", data=multipart_form(sample()))
        assert reply.status == 405 and (await reply.json())["kind"] == "read-only"
    finally:
        await client.close()

    def authorize(request: web.Request) -> None:
        if request.headers.get("Authorization") != "Bearer s3cret":
            raise web.HTTPUnauthorized(text="a bearer token is needed to push")

    client = await client_for(store, authorize=authorize)
    try:
        reply = await client.post("/bridge/api/models/m", data=multipart_form(sample()))
        assert reply.status == 401
        assert not fsspec.filesystem("memory").exists(url + "/m/model.json")
        reply = await client.post(
            "/bridge/api/models/m",
            data=multipart_form(sample()),
            headers={"Authorization": "Bearer s3cret"},
        )
        assert reply.status == 201
    finally:
        await client.close()


async def test_bridge_page_script_and_prefix():
    client = await client_for(unique_root(), prefix="/tools/bridge/")
    try:
        page = await client.get("/tools/bridge")
        html = await page.text()
        assert page.status == 200 and 'src="/tools/bridge/bridge.js"' in html
        script = await client.get("/tools/bridge/bridge.js")
        assert script.headers["Content-Type"].startswith("text/javascript")
        text = await script.text()
        assert "window.tfjsfsBridge" in text and "tensorflowjs_models" in text
        assert "cdn" not in text.lower() and "https://" not in text
        assert isinstance(client.server.app[BRIDGE_KEY], ModelStore)
    finally:
        await client.close()


def test_bridge_store_is_a_url_or_a_model_store():
    app = web.Application()
    with pytest.raises(TypeError, match="a URL or a ModelStore"):
        setup_bridge(app, (fsspec.filesystem("memory"), "/bridge-x"))
    with pytest.raises(ValueError, match="store URLs"):
        setup_bridge(app, ModelStore(unique_root()), storage_options={"anon": True})
    # The bridge keeps the model server's name rules, on reads and pushes alike.
    store = setup_bridge(app, unique_root(), reshard=64)
    assert store.shard_size == 64
    with pytest.raises(tfjsfs.errors.UnsafePathError):
        store.model_url("a/../b")


async def test_bridge_refuses_names_the_server_refuses(memory_store):
    url, store = memory_store
    client = await client_for(store)
    try:
        for name in ("x/.tmp", "m/model.json", "a//b", "w.bin"):
            reply = await client.post(f"/bridge/api/models/{name}", data=multipart_form(sample()))
            assert reply.status == 400, name
            assert (await reply.json())["kind"] == "bad-name", name
        assert not fsspec.filesystem("memory").exists(url)
    finally:
        await client.close()


async def test_bridge_routes_get_the_servers_cors_policy():
    app = web.Application()
    options = aiohttp_cors.ResourceOptions(allow_headers="*", allow_methods="*")
    aiohttp_cors.setup(app, defaults={"http://127.0.0.1:9999": options})
    setup_bridge(app, unique_root())
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        allowed = await client.get(
            "/bridge/api/models", headers={"Origin": "http://127.0.0.1:9999"}
        )
        assert allowed.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:9999"
        preflight = await client.options(
            "/bridge/api/models/a",
            headers={
                "Origin": "http://127.0.0.1:9999",
                "Access-Control-Request-Method": "POST",
            },
        )
        assert preflight.status == 200
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        other = await client.get("/bridge/api/models", headers={"Origin": "http://127.0.0.1:1"})
        assert "Access-Control-Allow-Origin" not in other.headers
    finally:
        await client.close()


async def test_bridge_over_moto_s3(s3_server, s3_bucket):
    url = f"s3://{s3_bucket}/models"
    options = s3_server.storage_options
    model = sample()
    # The sync API: it runs on fsspec's loop, where the store's s3fs lives too.
    await asyncio.to_thread(
        tfjsfs.save_model, model, url + "/one", storage_options=options, shard_size=20
    )
    app = web.Application()
    setup_bridge(app, url, storage_options=options)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        listing = await (await client.get("/bridge/api/models")).json()
        assert listing["store"] == "models" and [m["name"] for m in listing["models"]] == ["one"]
        meta = await (await client.get("/bridge/api/models/one")).json()
        assert await (await client.get(meta["weightsUrl"])).read() == bytes(model.weight_data)
        reply = await client.post("/bridge/api/models/two", data=multipart_form(sample(5)))
        assert reply.status == 201, await reply.text()
    finally:
        await client.close()
    back = await asyncio.to_thread(tfjsfs.load_model, url + "/two", storage_options=options)
    assert_same(sample(5), back)


async def test_model_server_serves_the_bridge_under_its_own_rules():
    from tfjsfs.server.app import STORE_KEY, create_app

    url = unique_root()
    app = create_app(url, token="w-token", allowed_origins=("http://127.0.0.1:9999",))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        assert (await client.get("/bridge")).status == 200
        store = app[BRIDGE_KEY]
        assert store is app[STORE_KEY] and store.label == url
        # The server's write token guards pushes, with its JSON errors.
        reply = await client.post("/bridge/api/models/m", data=multipart_form(sample()))
        assert reply.status == 401 and "bearer token" in (await reply.json())["error"]
        reply = await client.post(
            "/bridge/api/models/m",
            data=multipart_form(sample()),
            headers={"Authorization": "Bearer w-token", "Origin": "http://127.0.0.1:9999"},
        )
        assert reply.status == 201
        assert reply.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:9999"
        # What the bridge pushed, the server serves to tf.loadLayersModel.
        served = await client.get("/models/m/model.json")
        assert served.status == 200
        listing = await (await client.get("/bridge/api/models")).json()
        assert [m["name"] for m in listing["models"]] == ["m"]
        back = await tfjsfs.load_model_async(url + "/m")
        assert_same(sample(), back)
    finally:
        await client.close()
        fsspec.filesystem("memory").rm(url, recursive=True)
