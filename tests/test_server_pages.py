"""The server's pages and model description, read over HTTP (no browser).

The Chromium tests (test_server_pages_chromium.py) check what a person sees;
these check what the server sends: the loader call of each format, the byte
ranges the histogram fetches, the pages' script and policy, and
``tfjsfs info --html``.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from serverkit import http, make_artifacts, server_factory

import tfjsfs
from tfjsfs.cli.main import main as cli_main
from tfjsfs.format.layout_view import histogram, layer_of, loader_call

GRAPH = {"node": [{"name": "x", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"}}}]}


@pytest.fixture
def model_server(tmp_path):
    yield from server_factory(tmp_path)


def _graph(seed: int = 3) -> tfjsfs.ModelArtifacts:
    rng = np.random.default_rng(seed)
    return tfjsfs.ModelArtifacts.from_weights(
        GRAPH,
        {
            "conv/w": rng.normal(size=(40, 30)).astype("f4"),
            "conv/b": np.arange(30, dtype="i4"),
            "head/w": rng.normal(size=(30, 5)).astype("f4"),
        },
        format="graph-model",
        quantize={"uint8": "head/w"},
        groups=[["conv/w"], ["conv/b", "head/w"]],
        signature={"inputs": {"x:0": {"name": "x:0", "dtype": "DT_FLOAT"}}},
    )


def _page(url: str) -> str:
    reply = http("GET", url, headers={"Accept": "text/html"})
    assert reply.status == 200
    return reply.body.decode()


def _loader(text: str) -> str:
    return re.search(r"<pre id='loader'>(.*?)</pre>", text).group(1)


def test_loader_call_follows_the_format(model_server, tmp_path):
    server = model_server()
    store = server.store.root
    tfjsfs.save_model(_graph(), f"{store}/g", shard_size=1000)
    tfjsfs.save_model(make_artifacts(1), server.model_url("l"))
    graph_page = _page(server.model_url("g"))
    assert _loader(graph_page) == (
        f"const model = await tf.loadGraphModel(&#x27;{server.model_url('g')}/model.json&#x27;);"
    )
    assert "loadLayersModel" not in graph_page
    assert _loader(_page(server.model_url("l"))) == (
        f"const model = await tf.loadLayersModel(&#x27;{server.model_url('l')}/model.json&#x27;);"
    )
    assert loader_call("graph-model", "u") == "const model = await tf.loadGraphModel('u');"
    assert loader_call(None, "u") == "const model = await tf.loadLayersModel('u');"


def test_description_ranges_hold_each_weights_bytes(model_server):
    server = model_server()
    art = _graph()
    tfjsfs.save_model(art, f"{server.store.root}/g", shard_size=1000)
    described = http("GET", server.model_url("g")).json()
    assert [g["weights"] for g in described["groups"]] == [1, 2]
    assert [len(g["files"]) for g in described["groups"]] == [5, 1]
    assert described["summary"]["inputs"][0]["name"].startswith("x")
    assert described["signature"] == {"inputs": {"x:0": {"name": "x:0", "dtype": "DT_FLOAT"}}}
    data = art.weight_data
    offset = 0
    for spec, item in zip(art.weight_specs, described["weights"], strict=True):
        assert item["name"] == spec.name
        got = b""
        for url, start, end in item["ranges"]:
            reply = http("GET", url, headers={"Range": f"bytes={start}-{end - 1}"})
            assert reply.status == 206
            got += reply.body
        assert got == bytes(data[offset : offset + spec.byte_length]), spec.name
        offset += spec.byte_length
    assert len(described["weights"][0]["ranges"]) == 5  # 4800 bytes over 1000-byte shards


def test_description_without_shards_has_no_ranges(model_server):
    server = model_server()
    tfjsfs.save_model(_graph(), f"{server.store.root}/g", shard_size=1000)
    fs = server.store.fs.sync_fs
    fs.rm(f"{server.store.root}/g/group2-shard1of1.bin")
    described = http("GET", server.model_url("g")).json()
    assert [w["ranges"] for w in described["weights"]][1:] == [None, None]
    text = _page(server.model_url("g"))
    assert '<option value="0">conv/w</option>' in text and "head/w</option>" not in text


def test_pages_script_and_policy(model_server):
    server = model_server(token="t0ken")
    tfjsfs.save_model(make_artifacts(2), f"{server.store.root}/m")
    reply = http("GET", f"{server.url}/pages.js")  # public, like the pages
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/javascript")
    assert b"tfjsfs server's pages" in reply.body
    page = http("GET", f"{server.url}/", headers={"Accept": "text/html"})
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    text = page.body.decode()
    assert '<script src="/pages.js"></script>' in text
    scripts = re.findall(r"<script([^>]*)>", text)
    assert scripts == [' src="/pages.js"']  # nothing inline that the policy would block
    assert re.findall(r"(?:src|href)=['\"](https?:)?//", text) == []


def test_index_total_and_upload_form(model_server):
    server = model_server()
    tfjsfs.save_model(make_artifacts(4), server.model_url("a"))
    tfjsfs.save_model(make_artifacts(5, extra=500), server.model_url("b/c"))
    listed = http("GET", f"{server.url}/models").json()["models"]
    total = sum(m["size"] for m in listed)
    text = _page(f"{server.url}/")
    assert f"<span id='total' data-bytes='{total}'>" in text
    assert '<form id="upload"' in text
    assert '<tr data-name="b/c">' in text


def test_histogram_bins_match_numpy():
    values = np.random.default_rng(1).normal(size=1000).astype("f4")
    hist = histogram(values)
    assert sum(hist["bins"]) == hist["count"] == 1000
    assert hist["min"] == float(values.min()) and hist["max"] == float(values.max())
    want, _ = np.histogram(values.astype("f8"), bins=24, range=(hist["min"], hist["max"]))
    assert np.abs(np.array(hist["bins"]) - want).sum() <= 2
    assert histogram(np.array([b"a"], dtype=object)) is None
    assert histogram(np.array([np.nan, 1.0]))["bins"][0] == 1
    assert layer_of("dense/kernel") == "dense" and layer_of("bias") == "bias"


def test_info_html_writes_the_page(tmp_path, capsys):
    art = _graph()
    tfjsfs.save_model(art, tmp_path / "g", shard_size=1000)
    out = tmp_path / "page.html"
    assert cli_main(["info", "--html", str(out), str(tmp_path / "g")]) == 0
    assert "wrote" in capsys.readouterr().out
    text = out.read_text()
    assert _loader(text) == loader_call("graph-model", f"{tmp_path / 'g'}/model.json").replace(
        "'", "&#x27;"
    )
    assert '<script src="/pages.js">' not in text and "tfjsfs server's pages" in text
    data = json.loads(
        re.search(r'id="weights-data">(.*?)</script>', text).group(1).replace("<\\/", "</")
    )
    loaded = tfjsfs.load_weights(str(tmp_path / "g"))
    for item in data:
        assert item["histogram"] == histogram(loaded[item["name"]]), item["name"]
        assert item["histogram"]["count"] == loaded[item["name"]].size


def test_info_html_of_a_missing_model_writes_nothing(tmp_path, capsys):
    out = tmp_path / "page.html"
    assert cli_main(["info", "--html", str(out), str(tmp_path / "nothing")]) != 0
    assert "nothing" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
