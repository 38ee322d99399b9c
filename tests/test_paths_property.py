"""Shard paths cannot leave the model folder: the resolver's property, and the
escapes found on the old code, replayed through the public API at real peers.

The property: for every generated manifest path and every kind of store
(local path, memory path, S3 key, HTTP URL with a token in model.json's
query), :func:`tfjsfs.io.location.locate_shard` returns a location that an
independent check finds inside the folder, or raises ``UnsafePathError``.
With ``allow_outside`` a location outside the folder may come back, but never
with model.json's token on it. Hypothesis runs derandomized (its seed derives
from the test's name), 1,000 examples per kind of store, so a failure replays.
"""

from __future__ import annotations

import json
import posixpath
import unicodedata
import urllib.parse
import uuid

import fsspec
import numpy as np
import pytest
from hotpath_models import RecordingServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serverkit import http, server_factory

import tfjsfs
from tfjsfs.errors import UnsafePathError
from tfjsfs.io.location import locate_shard

SECRET = b"SECRET!!"
TOKEN = "token=T0KEN"

# ---------------------------------------------------------------- property

PIECES = [
    "..", ".", "/", "//", "#", "?", "&", "=", ":", "://", "@", "~", " ", ";",
    "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", "%25", "%00", "%0a", "%252e", "%252f", "%ff",
    "\\", "\x00", "\x01", "\x7f", "\n", "\r", "\t",
    "\uff0e", "\uff0f", "\uff3c", "\u2024", "\u2025", "\ufe52", "\u3002",
    "\u202e", "\u202d", "\u2066", "\u2069", "\u200e", "\u200f", "\u200b", "\ufeff",
    "\ud800", "\u0085", "\u2028",
    "a", "b.bin", "group1-shard1of1.bin", "sub", "m", "secret", "model.json", "é", "日本",
    "http", "https", "file", "s3", "C", "host", "127.0.0.1", "localhost",
]  # fmt: skip

paths = st.one_of(
    st.lists(st.sampled_from(PIECES), min_size=0, max_size=12).map("".join),
    st.text(max_size=30),
    st.text(alphabet=st.sampled_from("./%2eEfF5cC\\#?a:"), max_size=24),
)

FOLDERS = {
    "local": "/srv/store/m",
    "memory": "/store/m",
    "key": "bucket/store/m",
    "http": "http://127.0.0.1:8080/store/m",
}


def _levels(text: str) -> list[str]:
    """*text*, its percent-decodings, and the NFKC forms of each."""
    out = [text]
    for _ in range(6):
        nxt = urllib.parse.unquote(out[-1])
        if nxt == out[-1]:
            break
        out.append(nxt)
    return out + [unicodedata.normalize("NFKC", t) for t in out]


def _inside(folder: str, location: str, kind: str) -> bool:
    """Independent containment check: every decoding of the rest stays below *folder*."""
    if kind == "http":
        base = urllib.parse.urlsplit(folder + "/")
        loc = urllib.parse.urlsplit(location)
        if (loc.scheme, loc.netloc) != (base.scheme, base.netloc) or loc.fragment:
            return False
        if "#" in location:
            return False
        path, root = loc.path, base.path
    else:
        if "?" in location or "#" in location:
            return False
        path, root = location, folder + "/"
    if not path.startswith(root):
        return False
    for text in _levels(path):
        if "\\" in text or "\x00" in text:
            return False
        normal = posixpath.normpath(text)
        if normal != text or not normal.startswith(root):
            return False
    return True


def _check(kind: str, path: str, allow_outside: bool) -> None:
    folder = FOLDERS[kind]
    try:
        location = locate_shard(
            folder,
            path,
            kind=kind,
            allow_outside=allow_outside,
            query=TOKEN,
            source="m/model.json",
        )
    except UnsafePathError as exc:
        assert "m/model.json" in str(exc)  # names model.json and the path
        return
    assert isinstance(location, str)
    if not allow_outside:
        assert _inside(folder, location, kind), (path, location)
    if kind == "http" and TOKEN in location:
        assert _inside(folder, location, kind), (path, location)  # never on a foreign URL


@pytest.mark.parametrize("kind", list(FOLDERS))
@settings(
    max_examples=1000,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(path=paths, allow_outside=st.booleans())
def test_every_resolved_path_is_inside_the_folder(kind, path, allow_outside):
    _check(kind, path, allow_outside)


KNOWN_ESCAPES = [
    "#/../../../secret",
    "#/../..",
    "?/../../secret",
    "x?#/../../secret",
    "%2e%2e/secret",
    "%2E%2e/secret",
    "..%2fsecret",
    "a%2f..%2f..%2fsecret",
    "%252e%252e/secret",
    "a\\..\\..\\secret",
    "..\\secret",
    "/etc/passwd",
    "//evil.example/x.bin",
    "http://evil.example/x.bin",
    "file:///etc/passwd",
    "C:\\secret",
    "\uff0e\uff0e/secret",
    "\u2025/secret",
    "a\x00.bin",
    "\u202eflow.bin",
    "a//b.bin",
    "sub/",
    ".",
    "./",
    "",
]


@pytest.mark.parametrize("kind", list(FOLDERS))
@pytest.mark.parametrize("path", KNOWN_ESCAPES)
def test_known_escapes_are_refused_in_every_store(kind, path):
    with pytest.raises(UnsafePathError, match=r"m/model\.json"):
        locate_shard(FOLDERS[kind], path, kind=kind, source="m/model.json")


@pytest.mark.parametrize(
    ("kind", "path", "expected"),
    [
        ("local", "./group1-shard1of1.bin", "/srv/store/m/group1-shard1of1.bin"),
        ("local", "sub/x.bin?v=2", "/srv/store/m/sub/x.bin"),
        ("memory", "x.bin", "/store/m/x.bin"),
        ("key", "a%20b.bin", "bucket/store/m/a%20b.bin"),
        ("http", "x.bin", f"http://127.0.0.1:8080/store/m/x.bin?{TOKEN}"),
        ("http", "x.bin?v=2", f"http://127.0.0.1:8080/store/m/x.bin?v=2&{TOKEN}"),
        ("http", "sub/%C3%A9.bin", f"http://127.0.0.1:8080/store/m/sub/%C3%A9.bin?{TOKEN}"),
    ],
)
def test_ordinary_paths_resolve_as_tfjs_does(kind, path, expected):
    assert locate_shard(FOLDERS[kind], path, kind=kind, query=TOKEN) == expected


def test_allowed_outside_locations_never_carry_the_token():
    folder = FOLDERS["http"]
    up = locate_shard(folder, "../shared/x.bin", kind="http", allow_outside=True, query=TOKEN)
    assert up == "http://127.0.0.1:8080/store/shared/x.bin"
    other = locate_shard(
        folder, "//cdn.example/x.bin", kind="http", allow_outside=True, query=TOKEN
    )
    assert other == "http://cdn.example/x.bin"


# ------------------------------------------------------------- regressions


def _bad_bundle(paths: list[str]) -> bytes:
    doc = {
        "modelTopology": {},
        "weightsManifest": [
            {"paths": paths, "weights": [{"name": "w", "shape": [2], "dtype": "int32"}]}
        ],
    }
    return json.dumps(doc).encode()


def test_hash_escape_on_a_local_folder_is_refused(tmp_path):
    (tmp_path / "s" / "m").mkdir(parents=True)
    (tmp_path / "secret").write_bytes(SECRET)
    (tmp_path / "s" / "m" / "model.json").write_bytes(_bad_bundle(["#/../../../secret"]))
    with pytest.raises(UnsafePathError, match=r"model\.json.*#/\.\./\.\./\.\./secret") as caught:
        got = tfjsfs.load_weights(tmp_path / "s" / "m")
        assert got["w"].tobytes() != SECRET
    assert "#" in str(caught.value)


def test_hash_escape_on_memory_reads_no_other_key():
    root = f"/paths-{uuid.uuid4().hex[:8]}"
    fs = fsspec.filesystem("memory")
    fs.pipe_file(f"{root}/secret", SECRET)
    fs.pipe_file(f"{root}/s/m/model.json", _bad_bundle(["#/../../../secret"]))
    try:
        with pytest.raises(UnsafePathError, match=r"model\.json"):
            got = tfjsfs.load_weights(f"memory://{root}/s/m")
            assert got["w"].tobytes() != SECRET
    finally:
        fs.rm(root, recursive=True)


def test_hash_escape_on_s3_reads_no_other_key(s3_server, s3_bucket):
    fs = s3_server.filesystem()
    fs.pipe_file(f"{s3_bucket}/secret", SECRET)
    fs.pipe_file(f"{s3_bucket}/s/m/model.json", _bad_bundle(["#/../../../secret"]))
    with pytest.raises(UnsafePathError, match=r"model\.json"):
        got = tfjsfs.load_weights(
            f"s3://{s3_bucket}/s/m", storage_options=s3_server.storage_options
        )
        assert got["w"].tobytes() != SECRET


def _outside(server, folder="/m/"):
    return [
        s
        for s in server.seen
        if not posixpath.normpath(urllib.parse.unquote(s.path)).startswith(folder)
        or ".." in urllib.parse.unquote(s.path)
    ]


@pytest.mark.parametrize("path", ["#/../../secret", "%2e%2e/secret", "..%2fsecret"])
def test_http_escapes_send_no_request_outside_the_folder(tmp_path, path):
    (tmp_path / "m").mkdir()
    (tmp_path / "secret").write_bytes(SECRET)
    (tmp_path / "m" / "model.json").write_bytes(_bad_bundle([path]))
    server = RecordingServer(tmp_path).start()
    try:
        with pytest.raises(UnsafePathError, match=r"model\.json"):
            got = tfjsfs.load_weights(server.url_for("m/model.json"))
            assert got["w"].tobytes() != SECRET
        assert [s.path for s in server.seen] == ["/m/model.json"]
        assert _outside(server) == []
    finally:
        server.stop()


def test_carry_query_never_sends_the_token_outside_the_folder(tmp_path):
    """model.json's token reaches the shards in its folder, and no other path."""
    (tmp_path / "m").mkdir()
    (tmp_path / "shared").mkdir()
    (tmp_path / "m" / "a.bin").write_bytes(np.arange(2, dtype=np.int32).tobytes())
    (tmp_path / "shared" / "b.bin").write_bytes(np.arange(2, 4, dtype=np.int32).tobytes())
    cdn_root = tmp_path / "cdn"
    cdn_root.mkdir()
    (cdn_root / "c.bin").write_bytes(np.arange(4, 6, dtype=np.int32).tobytes())
    server = RecordingServer(tmp_path).start()
    cdn = RecordingServer(cdn_root).start()
    try:
        weights = [{"name": n, "shape": [2], "dtype": "int32"} for n in "abc"]
        doc = {
            "modelTopology": {},
            "weightsManifest": [
                {"paths": ["a.bin"], "weights": weights[:1]},
                {"paths": ["../shared/b.bin"], "weights": weights[1:2]},
                {"paths": [cdn.url_for("c.bin")], "weights": weights[2:]},
            ],
        }
        (tmp_path / "m" / "model.json").write_text(json.dumps(doc))
        url = server.url_for("m/model.json") + "?" + TOKEN
        got = tfjsfs.load_weights(url, allow_outside=True)
        assert {k: v.tolist() for k, v in got.items()} == {"a": [0, 1], "b": [2, 3], "c": [4, 5]}
        inside = [s for s in server.seen if s.path.startswith("/m/")]
        assert inside and all(s.query == TOKEN for s in inside)
        shared = [s for s in server.seen if s.path.startswith("/shared/")]
        assert shared and all("T0KEN" not in s.query for s in shared)
        assert cdn.seen and all("T0KEN" not in s.query for s in cdn.seen)
    finally:
        server.stop()
        cdn.stop()


# -------------------------------------------------- the server and writers


@pytest.fixture
def model_server(tmp_path):
    yield from server_factory(tmp_path)


def _plant(store, victim_bytes=SECRET):
    """Bundle ``m`` whose manifest reaches ``other/keep.bin`` through ``#``."""
    store.mkdir(parents=True, exist_ok=True)
    tfjsfs.save_model(tfjsfs.ModelArtifacts.from_weights({}, {"w": np.arange(2)}), store / "m")
    (store / "other").mkdir()
    victim = store / "other" / "keep.bin"
    victim.write_bytes(victim_bytes + b"-and-more")
    doc = json.loads((store / "m" / "model.json").read_text())
    doc["weightsManifest"][0]["paths"].append("#/../../other/keep.bin")
    (store / "m" / "model.json").write_text(json.dumps(doc))
    return victim


def test_server_description_and_delete_stay_in_the_model_folder(tmp_path, model_server):
    store = tmp_path / "store"
    victim = _plant(store)
    server = model_server(str(store))
    pulled = http("GET", f"{server.url}/bridge/api/weights/m")  # the bridge's weights route
    assert pulled.status >= 400 and SECRET not in pulled.body
    described = http("GET", server.model_url("m"), headers={"Accept": "application/json"})
    assert described.status == 200
    assert str(victim.stat().st_size) not in json.dumps(
        [f for f in described.json().get("files", []) if "keep" in json.dumps(f)]
    )
    assert "keep.bin" not in described.body.decode()  # no size oracle for the outside file
    deleted = http("DELETE", server.model_url("m"))
    assert deleted.status == 200
    assert victim.read_bytes() == SECRET + b"-and-more"  # the other file is untouched


def test_overwrite_cleanup_and_remove_stay_in_the_model_folder(tmp_path):
    store = tmp_path / "store"
    victim = _plant(store)
    art = tfjsfs.ModelArtifacts.from_weights({}, {"w": np.arange(3)})
    tfjsfs.save_model(art, store / "m", overwrite=True)  # stale-shard clean-up
    assert victim.read_bytes() == SECRET + b"-and-more"
    assert tfjsfs.load_weights(store / "m")["w"].tolist() == [0, 1, 2]
    _plant_again = json.loads((store / "m" / "model.json").read_text())
    _plant_again["weightsManifest"][0]["paths"].append("#/../../other/keep.bin")
    (store / "m" / "model.json").write_text(json.dumps(_plant_again))
    tfjsfs.remove_model(store / "m")
    assert victim.read_bytes() == SECRET + b"-and-more"
    assert not (store / "m" / "model.json").exists()
