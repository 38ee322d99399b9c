"""A hostile model.json is refused with a ManifestError naming the field
(hardening item 2), by the parser, every loader and the verifier alike; a
manifest that declares more bytes than its shards hold is refused before
anything is allocated; the server parses uploads off its event loop."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from serverkit import make_artifacts, multipart_body, server_factory, tfjs_parts

import tfjsfs
from tfjsfs.errors import ManifestError, TFJSError, WeightDataError
from tfjsfs.format.manifest import ModelJSON
from tfjsfs.model.verify import verify_model

TIMINGS: dict[str, float] = {}


def _doc(weights=None, paths=("w.bin",), topology=None, **group):
    if weights is None:
        weights = [{"name": "w", "shape": [2], "dtype": "int32"}]
    return {
        "modelTopology": {} if topology is None else topology,
        "weightsManifest": [{"paths": list(paths), "weights": weights, **group}],
    }


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _text(doc: dict) -> str:
    return json.dumps(doc)


def _shape_text(digits: int, dims: int) -> str:
    big = "9" * digits
    shape = "[" + ",".join([big] * dims) + "]"
    return (
        '{"modelTopology":{},"weightsManifest":[{"paths":["w.bin"],"weights":'
        f'[{{"name":"w","shape":{shape},"dtype":"float32"}}]}}]}}'
    )


# (id, model.json text, words the message must contain)
HOSTILE = [
    (
        "nested-1500",
        '{"modelTopology":' + _nested(1500) + ',"weightsManifest":[]}',
        ["nested too deep"],
    ),
    (
        "nested-200",
        '{"modelTopology":' + _nested(200) + ',"weightsManifest":[]}',
        ["'modelTopology' is nested more than 128 levels deep"],
    ),
    (
        "integer-5000-digits",
        '{"modelTopology":{},"weightsManifest":[{"paths":["w.bin"],"weights":'
        '[{"name":"w","shape":[' + "7" * 5000 + '],"dtype":"int32"}]}]}',
        ["an integer of 5000 digits", "'shape'", "at most 64"],
    ),
    (
        "nul-in-path",
        _text(_doc(paths=["w\0.bin"])),
        ["weightsManifest[0].paths[0] contains a NUL character"],
    ),
    (
        "300-char-shard-name",
        _text(_doc(paths=["a" * 300 + ".bin"])),
        ["weightsManifest[0].paths[0] has a name of 304 bytes", "more than 255"],
    ),
    (
        "shape-2**62",
        _text(_doc([{"name": "w", "shape": [2**62, 2**62, 4], "dtype": "float32"}])),
        ["weight 'w'", "dimension 0 of the shape is 4611686018427387904, more than 2**53"],
    ),
    (
        "200-dims-of-4000-digits",
        _shape_text(4000, 200),
        ["an integer of 4000 digits", "'shape'"],
    ),
    (
        "group-without-weights",
        _text({"modelTopology": {}, "weightsManifest": [{"paths": ["w.bin"]}]}),
        ["weightsManifest[0] has no 'weights' list"],
    ),
    (
        "rank-300",
        _text(_doc([{"name": "w", "shape": [1] * 300, "dtype": "float32"}])),
        ["weight 'w'", "shape has 300 dimensions, more than 254"],
    ),
    (
        "2000-byte-name",
        _text(_doc([{"name": "n" * 2000, "shape": [2], "dtype": "int32"}])),
        ["weightsManifest[0].weights[0].name is 2000 bytes long", "more than 1024"],
    ),
]


def _check(exc: BaseException, source: str, words: list[str]) -> None:
    assert type(exc) is ManifestError, repr(exc)
    message = str(exc)
    assert source in message, message
    for word in words:
        assert word in message, message
    assert len(message) < 600, message  # hostile values are not echoed whole


@pytest.mark.parametrize(("text", "words"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_manifests_are_manifest_errors_naming_the_field(tmp_path, text, words):
    start = time.perf_counter()
    with pytest.raises(TFJSError) as info:
        ModelJSON.parse(text, "m/model.json")
    _check(info.value, "m/model.json", words)
    TIMINGS[words[0]] = time.perf_counter() - start

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.json").write_text(text)
    (folder / "w.bin").write_bytes(b"\0" * 8)
    for load in (tfjsfs.load_weights, tfjsfs.load_model):
        with pytest.raises(TFJSError) as info:
            load(folder)
        _check(info.value, "model.json", words)
    problems = verify_model(folder)
    assert [p.level for p in problems] == ["error"], problems
    assert any(word.split("weight 'w'")[-1] in str(problems[0]) for word in words), problems


def test_decoded_documents_follow_the_same_bounds():
    """The rules also hold for a document that was decoded elsewhere (no digit limit)."""
    doc = _doc([{"name": "w", "shape": [10**4000] * 200, "dtype": "float32"}])
    with pytest.raises(
        ManifestError, match=r"weight 'w': dimension 0 of the shape is <an integer"
    ):
        ModelJSON.parse(doc, "m/model.json")
    deep = [[]]
    for _ in range(300):
        deep = [deep]
    with pytest.raises(ManifestError, match="'signature' must be a JSON object"):
        ModelJSON.parse({**_doc(), "signature": deep})
    with pytest.raises(ManifestError, match="'extraKey' is nested more than 128"):
        ModelJSON.parse({**_doc(), "extraKey": deep})
    odd = _doc([{"name": "w", "shape": [2], "dtype": "int32", "note": deep}])
    with pytest.raises(ManifestError, match="weight 'w': key 'note' is nested more than 128"):
        ModelJSON.parse(odd)


def _declared_huge(folder, shape=(2**40,)):
    folder.mkdir(parents=True)
    doc = _doc([{"name": "w", "shape": list(shape), "dtype": "float32"}])
    (folder / "model.json").write_text(json.dumps(doc))
    (folder / "w.bin").write_bytes(b"\1" * 8)


@pytest.mark.parametrize("where", ["local", "http"])
def test_declared_terabytes_are_refused_before_allocating(tmp_path, http_server, where):
    _declared_huge(tmp_path / "site" / "m")
    url = tmp_path / "site" / "m"
    if where == "http":
        url = http_server(tmp_path / "site").url + "/m/model.json"
    for load in (tfjsfs.load_weights, tfjsfs.load_model):
        with pytest.raises(WeightDataError) as info:
            load(url)
        message = str(info.value)
        assert type(info.value) is WeightDataError, repr(info.value)
        assert "weight 'w' needs bytes 0..4398046511104" in message, message
        assert "hold only 8 bytes" in message and "expected 4398046511104 bytes" in message
    with pytest.raises(WeightDataError, match="hold only 8 bytes"):
        tfjsfs.open_model(url)


# ------------------------------------------------------------ the server


async def _ticker(stop: asyncio.Event, gaps: list[float]) -> None:
    """Sleep 5 ms at a time on the server's loop; record the longest gap."""
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.005)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


def _hostile_upload() -> tuple[str, bytes]:
    """An upload whose model.json is large, slow to parse, and wrong only at its very end."""
    parts = tfjs_parts(make_artifacts(0))
    doc = json.loads(parts[0].data)
    weights = doc["weightsManifest"][0]["weights"]
    weights += [{"name": f"w{i}", "shape": [0, 3, 3], "dtype": "float32"} for i in range(150_000)]
    weights.append({"name": "huge", "shape": [2**62, 2**62, 4], "dtype": "float32"})
    doc["modelTopology"]["padding"] = [{"k": i, "v": [i, i + 1]} for i in range(150_000)]
    parts[0].data = json.dumps(doc).encode()
    return multipart_body(parts)


async def _race(server, content_type: str, body: bytes) -> list[str]:
    """PUT the hostile upload; once all of it is sent, GET /. Replies in completion order."""
    done: list[str] = []
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    head = (
        f"PUT /models/hostile HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()  # the whole body is handed over: the server parses it next

    async def upload():
        reply = (await reader.read()).decode(errors="replace")
        writer.close()
        status, _, rest = reply.partition("\r\n\r\n")
        done.append(f"upload {status.split()[1]} {rest}")

    async def page():
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as session, session.get(server.url + "/") as reply:
            await reply.read()
            done.append(f"page {reply.status}")

    await asyncio.gather(upload(), page())
    return done


def test_server_answers_while_a_hostile_upload_is_parsed(tmp_path):
    content_type, body = _hostile_upload()
    for make in server_factory(tmp_path):
        server = make(max_upload_bytes=256 << 20)
        stop, gaps = asyncio.Event(), []
        ticker = asyncio.run_coroutine_threadsafe(_ticker(stop, gaps), server._loop)
        done = asyncio.run(_race(server, content_type, body))
        server._loop.call_soon_threadsafe(stop.set)
        ticker.result(30)
        print(f"\nlongest event-loop stall while parsing: {max(gaps) * 1000:.0f} ms")
        assert done[0] == "page 200", done
        assert done[1].startswith("upload 400"), done
        assert "weight 'huge': dimension 0 of the shape is 4611686018427387904" in done[1]
