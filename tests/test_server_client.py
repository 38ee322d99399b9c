"""The client understands a tfjsfs server: listings, ls, info, verify, cp.

A real ``tfjsfs serve`` process; the client finds its JSON listing from any
of its URLs (the listing's header, or the ``rel="tfjsfs-models"`` link of its
root page), never by guessing paths. A plain HTTP server is left to the
plain HTTP behaviour.
"""

from __future__ import annotations

import json

import fsspec
import numpy as np
import pytest
from peers.http import StaticServer
from serverkit import ServerProcess, http

import tfjsfs
from tfjsfs._util.concurrency import run_sync
from tfjsfs.cli.main import main as cli_main
from tfjsfs.format.serverlisting import LISTING_HEADER, listing_link, parse_listing
from tfjsfs.io.resolve import resolve
from tfjsfs.io.serverlisting import server_listing


def _artifacts(seed: int, graph: bool = False) -> tfjsfs.ModelArtifacts:
    rng = np.random.default_rng(seed)
    weights = {
        "d/kernel": rng.normal(size=(20 + seed, 8)).astype("f4"),
        "d/bias": np.arange(8, dtype="i4"),
    }
    if graph:
        return tfjsfs.ModelArtifacts.from_weights(
            {"node": []}, weights, format="graph-model", quantize="uint8"
        )
    return tfjsfs.ModelArtifacts.from_weights(
        {"class_name": "Sequential", "config": {"layers": []}}, weights
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("client")
    store = root / "store"
    models = {
        "team/a": _artifacts(1),
        "team/b": _artifacts(2, graph=True),
        "solo": _artifacts(3),
    }
    for name, art in models.items():
        tfjsfs.save_model(art, store / name, shard_size=200)
    server = ServerProcess(str(store))
    try:
        yield server, store, models, root
    finally:
        server.stop()


def _ls_json(url: str, capsys) -> list[dict]:
    assert cli_main(["ls", "--json", url]) == 0
    return json.loads(capsys.readouterr().out)


def test_ls_uses_the_listing(served, capsys):
    server, store, models, _ = served
    records = _ls_json(f"{server.url}/models", capsys)
    by_url = {r["url"]: r for r in records}
    assert sorted(by_url) == [f"{server.url}/models/{n}" for n in ("solo", "team/a", "team/b")]
    for name, art in models.items():
        rec = by_url[f"{server.url}/models/{name}"]
        assert rec["error"] is None
        assert rec["weights"] == 2
        assert rec["bytes"] == len(art.weight_data)
        assert rec["shards"] == len(list((store / name).glob("*.bin")))
        assert rec["format"] == art.format
    assert by_url[f"{server.url}/models/team/b"]["quantization"] == ["uint8"]
    assert cli_main(["ls", f"{server.url}/models"]) == 0
    err = capsys.readouterr().err
    total = sum(len(a.weight_data) for a in models.values())
    assert f"3 model(s), {tfjsfs.format.summary.human_size(total)} of weights" in err


def test_ls_of_a_folder_the_root_and_tfjs_urls(served, capsys):
    server, *_ = served
    team = [r["url"] for r in _ls_json(f"{server.url}/models/team/", capsys)]
    assert team == [f"{server.url}/models/team/a", f"{server.url}/models/team/b"]
    root = [r["url"] for r in _ls_json(server.url, capsys)]  # found via the root's Link
    assert len(root) == 3
    plus = [r["url"] for r in _ls_json(f"tfjs+{server.url}/models/team", capsys)]
    assert plus == [f"tfjs+{server.url}/models/team/a", f"tfjs+{server.url}/models/team/b"]


def test_list_models_matches_the_server(served):
    server, _, models, _ = served
    got = tfjsfs.list_models(f"{server.url}/models")
    listing = http("GET", f"{server.url}/models").json()["models"]
    assert sorted(got) == sorted(m["url"] for m in listing)
    for entry in listing:
        info = got[entry["url"]].to_json()
        assert info == entry["modelArtifactsInfo"]  # dateSaved included
        assert info["weightDataBytes"] == len(models[entry["name"]].weight_data)


def test_verify_and_info_on_the_server(served, capsys):
    server, _, models, _ = served
    assert cli_main(["verify", "-r", f"{server.url}/models"]) == 0
    out = capsys.readouterr().out
    assert sorted(line.split()[0] for line in out.splitlines()) == ["OK"] * 3
    assert cli_main(["info", "--json", f"{server.url}/models/team/b"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "graph-model"
    assert info["weightDataBytes"] == len(models["team/b"].weight_data)
    assert cli_main(["verify", "-r", f"{server.url}/models/nothing-here"]) != 0
    assert "no models found" in capsys.readouterr().err


def test_cp_to_the_server_reports_what_it_stored(served, capsys, tmp_path):
    server, store, *_ = served
    art = _artifacts(9)
    tfjsfs.save_model(art, tmp_path / "m", shard_size=100)
    dst = f"{server.url}/models/copied"
    try:
        assert cli_main(["cp", str(tmp_path / "m"), dst]) == 0
        line = capsys.readouterr().out
        stored = sorted(p.name for p in (store / "copied").iterdir())
        assert f"({len(stored)} files, " in line and "(0 files" not in line
        result = tfjsfs.copy_model(str(tmp_path / "m"), f"{server.url}/models/copied2")
        base = f"{server.url}/models/copied2/"
        assert sorted(result.files) == [base + name for name in stored]
        assert result.files[-1] == base + "model.json"  # shards first, model.json last
        for url in result.files:
            assert http("GET", url).status == 200
    finally:
        for name in ("copied", "copied2"):
            http("DELETE", f"{server.url}/models/{name}")


def test_listing_discovery_is_announced(served):
    server, *_ = served
    listing = http("GET", f"{server.url}/models")
    assert listing.headers[LISTING_HEADER.lower()] == "1"
    models = parse_listing(listing.headers, listing.body)
    assert len(models) == 3 and all(m["files"] for m in models)
    page = http("GET", f"{server.url}/", headers={"Accept": "text/html"})
    assert listing_link(page.headers, f"{server.url}/") == f"{server.url}/models"
    assert parse_listing(page.headers, page.body) is None


def test_a_plain_http_server_is_not_taken_for_one(tmp_path):
    tfjsfs.save_model(_artifacts(4), tmp_path / "models" / "m")
    (tmp_path / "models" / "listing.json").write_text(json.dumps({"models": []}))
    with StaticServer(tmp_path) as plain:
        fs, path = resolve(f"{plain.url}/models/")
        assert run_sync(server_listing(fs, path)) is None
        fs, path = resolve(f"{plain.url}/models/listing.json")
        assert run_sync(server_listing(fs, path)) is None  # right shape, no header
        got = tfjsfs.list_models(f"{plain.url}/models/")  # its own HTML listing, as before
        assert list(got) == [f"{plain.url}/models/m"]


def test_fsspec_listing_of_the_server(served):
    server, store, models, _ = served
    fs = fsspec.filesystem("tfjs+http", skip_instance_cache=True)
    base = fs._strip_protocol(f"tfjs+{server.url}/models")  # fsspec names, no scheme
    entries = {e["name"]: e for e in fs.ls(f"tfjs+{server.url}/models", detail=True)}
    assert sorted(entries) == [f"{base}/solo", f"{base}/team"]
    assert entries[f"{base}/team"]["type"] == "directory"
    assert "tfjs" not in entries[f"{base}/team"]  # a folder of models
    solo = entries[f"{base}/solo"]["tfjs"]
    assert solo["role"] == "model"
    assert solo["format"] == "layers-model"
    assert solo["weights"] == 2
    assert solo["weight_bytes"] == len(models["solo"].weight_data)
    assert solo["shards"] == len(list((store / "solo").glob("*.bin")))
    assert solo["dtypes"] == ["float32", "int32"]
    team = {e["name"]: e["tfjs"] for e in fs.ls(f"tfjs+{server.url}/models/team", detail=True)}
    assert team[f"{base}/team/b"]["quantized"] == ["uint8"]
    assert sorted(team) == [f"{base}/team/a", f"{base}/team/b"]
