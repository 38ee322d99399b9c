"""The server's own pages, read by a person in real Chromium.

A ``tfjsfs serve`` process serves a store holding a layers model (float32,
int32 and quantized weights over several shards) and a graph model (with a
signature, uint8-quantized, two weight groups). Headless Chromium, confined
to 127.0.0.1, opens the index and both model pages, takes full-page
screenshots into ``test-artifacts/``, and the tests assert on what the DOM
shows: the loader call of each format, inputs and outputs, quantization,
groups and shards, bars proportional to each layer's bytes, a histogram
whose counts add up to the tensor's elements and whose range is the tensor's,
sorting and filtering, and an upload through the index page's form that
loads back with equal values. No console errors, no request to another host.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from chromium_env import JS_DIR, REPO_ROOT, browser_marks, require_browser
from nodejs import parse_last_json
from serverkit import ServerProcess, assert_same_weights

import tfjsfs
from tfjsfs.cli.main import main as cli_main
from tfjsfs.format.summary import human_size

ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"
TOKEN = "pages-token"
pytestmark = browser_marks("TESTS OF THE SERVER'S PAGES")

LAYERS_TOPOLOGY = {
    "class_name": "Sequential",
    "config": {
        "name": "pages",
        "layers": [
            {
                "class_name": "Dense",
                "config": {
                    "name": "embed",
                    "units": 40,
                    "batch_input_shape": [None, 300],
                    "dtype": "float32",
                },
            },
            {"class_name": "Dense", "config": {"name": "dense", "units": 30}},
            {"class_name": "Dense", "config": {"name": "head", "units": 3}},
        ],
    },
    "keras_version": "tfjs-layers 4.22.0",
    "backend": "tensor_flow.js",
}
GRAPH_TOPOLOGY = {
    "node": [
        {
            "name": "image",
            "op": "Placeholder",
            "attr": {
                "dtype": {"type": "DT_FLOAT"},
                "shape": {"shape": {"dim": [{"size": "-1"}, {"size": "8"}]}},
            },
        },
        {"name": "conv/weights", "op": "Const"},
        {"name": "conv/MatMul", "op": "MatMul", "input": ["image", "conv/weights"]},
        {"name": "scores", "op": "Softmax", "input": ["conv/MatMul"]},
    ],
    "versions": {"producer": 1474},
}
GRAPH_SIGNATURE = {
    "inputs": {"image:0": {"name": "image:0", "dtype": "DT_FLOAT", "tensorShape": {}}},
    "outputs": {"scores:0": {"name": "scores:0", "dtype": "DT_FLOAT", "tensorShape": {}}},
}


def layers_weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "embed/kernel": rng.normal(size=(300, 40)).astype("f4"),  # 48,000 bytes
        "embed/bias": rng.normal(size=40).astype("f4"),
        "dense/kernel": rng.normal(size=(40, 30)).astype("f4"),
        "dense/bias": np.arange(30, dtype="i4"),
        "head/kernel": rng.uniform(-2, 3, size=(30, 3)).astype("f4"),
    }


def graph_weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(8)
    return {
        "conv/weights": rng.normal(size=(8, 64)).astype("f4"),
        "conv/bias": rng.normal(size=64).astype("f4"),
        "scores/scale": rng.uniform(0, 1, size=(64, 64)).astype("f4"),
    }


@pytest.fixture(scope="module")
def pages_run(tmp_path_factory):
    """Two models in a store, a ``tfjsfs serve`` process, one Chromium session."""
    root = tmp_path_factory.mktemp("pages")
    store = root / "store"
    layers = tfjsfs.ModelArtifacts.from_weights(
        LAYERS_TOPOLOGY, layers_weights(), quantize={"uint16": "head/kernel"}
    )
    tfjsfs.save_model(layers, store / "zoo" / "layers", shard_size=16384)
    graph = tfjsfs.ModelArtifacts.from_weights(
        GRAPH_TOPOLOGY,
        graph_weights(),
        format="graph-model",
        quantize="uint8",
        groups=[["conv/weights", "conv/bias"], ["scores/scale"]],
        signature=GRAPH_SIGNATURE,
        converted_by="TensorFlow.js Converter v4.22.0",
    )
    tfjsfs.save_model(graph, store / "graph", shard_size=2048)
    # what a person picks to upload: a downloads://-style bundle in two shards
    picked = root / "picked"
    upload = tfjsfs.ModelArtifacts.from_weights(LAYERS_TOPOLOGY, layers_weights())
    tfjsfs.save_model(upload, picked, shard_size=20000)
    weight_files = sorted(str(p) for p in picked.glob("*.bin"))
    assert len(weight_files) == 3

    # tfjsfs info --html: the graph model's page as one file, for a store with no server
    standalone = root / "graph.html"
    assert cli_main(["info", "--html", str(standalone), str(store / "graph")]) == 0

    shots = ARTIFACTS_DIR / "pages"
    shots.mkdir(parents=True, exist_ok=True)
    server = ServerProcess(str(store), "--token", TOKEN)
    try:
        config = {
            "chromium": require_browser(),
            "index": server.url + "/",
            "models": [
                {"key": "layers", "url": server.url + "/models/zoo/layers"},
                {"key": "graph", "url": server.url + "/models/graph"},
            ],
            "shots": str(shots),
            "filter": "zoo",
            "standalone": [{"key": "graph", "path": str(standalone)}],
            "upload": {
                "name": "uploaded/by-form",
                "json": str(picked / "model.json"),
                "weights": weight_files[::-1],  # any order: matched by base name
                "token": TOKEN,
            },
        }
        proc = subprocess.run(
            ["node", str(JS_DIR / "server" / "pages_run.js"), json.dumps(config)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        out = parse_last_json(proc.stdout)
        yield out, server, store, {"layers": layers, "graph": graph}, shots
    finally:
        server.stop()


def _bars_proportional(bars: list[dict], want: dict[str, int]) -> None:
    assert {b["layer"]: b["bytes"] for b in bars} == want
    top = max(bars, key=lambda b: b["bytes"])
    for bar in bars:
        expected = top["width"] * bar["bytes"] / top["bytes"]
        assert bar["width"] == pytest.approx(expected, abs=1.0), bar


def test_clean_and_confined(pages_run):
    out, server, *_ = pages_run
    assert out["refused"] == []
    assert [line for line in out["log"] if not line.startswith("console.log")] == []
    hosts = {url.split("/")[2] for url in out["requests"] if url.startswith("http")}
    assert hosts == {server.url.split("/")[2]}


def test_screenshots_written(pages_run):
    *_, shots = pages_run
    for name in ("index", "model-layers", "model-graph", "index-uploaded", "info-html-graph"):
        png = shots / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert png.stat().st_size > 5000, name


def test_layers_model_page(pages_run):
    out, server, store, models, _ = pages_run
    shown = out["models"]["layers"]
    art = models["layers"]
    assert shown["loader"] == (
        f"const model = await tf.loadLayersModel('{server.url}/models/zoo/layers/model.json');"
    )
    assert shown["inputs"] == [["embed", "[?, 300]", "float32"]]
    assert shown["facts"]["format"] == "layers-model"
    assert shown["facts"]["quantization"] == "uint16 (1 of 5 weights)"
    n_shards = len(list((store / "zoo" / "layers").glob("*.bin")))
    assert n_shards > 1
    assert shown["facts"]["groups / shards"] == f"1 / {n_shards}"
    # the weight table: every weight with its bytes; sorting by bytes orders them
    by_name = {s.name: s.byte_length for s in art.weight_specs}
    assert {row[0]: int(row[6]) for row in shown["weights"]} == by_name
    assert shown["sortedByBytes"] == sorted(by_name, key=lambda n: (by_name[n], n))
    assert shown["sortedByBytesDesc"] == shown["sortedByBytes"][::-1]
    per_layer = Counter()
    for name, n in by_name.items():
        per_layer[name.rpartition("/")[0]] += n
    _bars_proportional(shown["bars"], dict(per_layer))
    # groups and shards: every shard listed with its size
    sizes = {p.name: p.stat().st_size for p in (store / "zoo" / "layers").glob("*.bin")}
    assert {row[-2]: row[-1] for row in shown["groups"]} == {
        k: human_size(v) for k, v in sizes.items()
    }


def _histogram_matches(hist: dict, values: np.ndarray) -> None:
    assert hist["state"] == "done"
    assert sum(hist["bins"]) == values.size == hist["count"]
    assert len(hist["bins"]) == 24 and max(hist["bins"]) > 0
    assert hist["min"] == pytest.approx(float(values.min()), rel=1e-5, abs=1e-6)
    assert hist["max"] == pytest.approx(float(values.max()), rel=1e-5, abs=1e-6)
    assert hist["mean"] == pytest.approx(float(values.mean()), rel=1e-4, abs=1e-5)
    flat = values.astype("f8").ravel()
    lo, hi = flat.min(), flat.max()
    width = (hi - lo) / 24
    want = np.bincount(np.minimum(23, np.floor((flat - lo) / width)).astype(int), minlength=24)
    # the page dequantizes in float64, tfjsfs in float32: a value that sits on a
    # bin edge (quantized values sit on a grid) may land in the next bin
    position = (flat - lo) / width
    on_edge = int(np.sum(np.abs(position - np.round(position)) < 1e-4))
    assert np.abs(np.array(hist["bins"]) - want).sum() <= 2 * on_edge


def test_layers_model_histograms(pages_run):
    out, _, store, *_ = pages_run
    shown = out["models"]["layers"]
    loaded = tfjsfs.load_weights(str(store / "zoo" / "layers"))
    # the first tensor (spanning two shards) and the last one chosen (uint16-quantized)
    assert shown["histogram"]["weight"] == "embed/kernel"
    _histogram_matches(shown["histogram"], loaded["embed/kernel"])
    assert shown["second"]["weight"] == "head/kernel"
    _histogram_matches(shown["second"], loaded["head/kernel"])


def test_graph_model_page(pages_run):
    out, server, store, models, _ = pages_run
    shown = out["models"]["graph"]
    assert shown["loader"] == (
        f"const model = await tf.loadGraphModel('{server.url}/models/graph/model.json');"
    )
    assert "loadLayersModel" not in shown["loader"]
    assert shown["facts"]["format"] == "graph-model"
    assert shown["facts"]["converted by"] == "TensorFlow.js Converter v4.22.0"
    assert shown["facts"]["quantization"] == "uint8 (3 of 3 weights)"
    assert shown["inputs"][0][0].startswith("image")
    assert shown["outputs"][0][0].startswith("scores")
    assert json.loads(shown["signature"]) == GRAPH_SIGNATURE
    group_numbers = [row[0] for row in shown["groups"] if len(row) == 4]
    assert group_numbers == ["1", "2"]
    shard_files = sorted(p.name for p in (store / "graph").glob("*.bin"))
    assert sorted(row[-2] for row in shown["groups"]) == shard_files
    by_name = {s.name: s.byte_length for s in models["graph"].weight_specs}
    _bars_proportional(
        shown["bars"], {"conv": by_name["conv/weights"] + by_name["conv/bias"], "scores": 4096}
    )
    loaded = tfjsfs.load_weights(str(store / "graph"))
    _histogram_matches(shown["histogram"], loaded["conv/weights"])
    _histogram_matches(shown["second"], loaded["scores/scale"])


def test_info_html_is_the_same_page_self_contained(pages_run):
    out, server, store, *_ = pages_run
    alone = out["standalone"]["graph"]
    served = out["models"]["graph"]
    want_loader = served["loader"].replace(f"{server.url}/models/graph", str(store / "graph"))
    assert alone["loader"] == want_loader
    for key in ("inputs", "outputs", "signature", "weights", "bars"):
        assert alone[key] == served[key], key
    for fact in ("format", "converted by", "quantization", "groups / shards", "weight bytes"):
        assert alone["facts"][fact] == served["facts"][fact], fact
    # histograms computed by tfjsfs, drawn without any request
    assert alone["histogram"]["weight"] == "conv/weights"
    loaded = tfjsfs.load_weights(str(store / "graph"))
    _histogram_matches(alone["histogram"], loaded["conv/weights"])


def test_index_page(pages_run):
    out, _, store, *_ = pages_run
    index = out["index"]
    names = ["graph", "zoo/layers"]
    assert sorted(row[0] for row in index["models"]) == names
    assert index["count"] == "2"
    sizes = {}
    for name in names:
        folder = store / name
        sizes[name] = sum(p.stat().st_size for p in folder.iterdir())
    assert index["totalBytes"] == sum(sizes.values())
    assert index["total"] == human_size(sum(sizes.values()))
    assert index["sortedBySize"] == sorted(names, key=sizes.get)
    assert index["sortedBySizeDesc"] == sorted(names, key=sizes.get, reverse=True)
    assert index["filtered"]["visible"] == ["zoo/layers"]
    assert index["filtered"]["count"] == "1"


def test_upload_form_stores_a_model_that_loads_equal(pages_run):
    out, server, store, *_ = pages_run
    assert out["upload"]["state"] == "done", out["upload"]["text"]
    want = layers_weights()
    nbytes = sum(v.nbytes for v in want.values())
    assert out["upload"]["text"] == f"stored uploaded/by-form: {nbytes} weight bytes"
    stored = tfjsfs.load_weights(str(store / "uploaded" / "by-form"))
    assert_same_weights(stored, want)
    assert list(stored) == list(want)  # manifest order kept
    over_http = tfjsfs.load_weights(f"tfjs+{server.url}/models/uploaded/by-form/model.json")
    assert_same_weights(over_http, want)


def test_artifacts_dir_is_ignored():
    assert "test-artifacts/" in (REPO_ROOT / ".gitignore").read_text().split()
    assert Path(ARTIFACTS_DIR).name == "test-artifacts"
