"""model.json read once into compact per-group columns for whole loads.

The columns must say exactly what the validating parser says (names, dtypes,
shapes, byte offsets), accept only what its rules accept, keep no object of
the parsed document alive (so that its memory goes before the weights buffer
is allocated), and come out the same with orjson and with the standard
library.
"""

from __future__ import annotations

import gc
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tfjsfs
import tfjsfs.format.columns as columns
from tfjsfs.errors import FormatError, ManifestError, WeightDataError
from tfjsfs.format.columns import parse_model_json, plain_layout
from tfjsfs.format.manifest import ModelJSON, parse_json
from tfjsfs.format.rules import MAX_INT_DIGITS, MAX_NAME_BYTES
from tfjsfs.io.fetch import weights_buffer

DTYPES = ["float32", "int32", "bool", "complex64"]
DTYPE_SIZES = {"float32": 4, "int32": 4, "bool": 1, "complex64": 8}


def _expected(doc: dict) -> list[list[tuple]]:
    """``(name, dtype, shape, start, end)`` per group, from the validating parser."""
    out = []
    for group in ModelJSON.parse(doc, "m.json").weights_manifest:
        rows, offset = [], 0
        for spec in group.weights:
            rows.append((spec.name, spec.dtype, spec.shape, offset, offset + spec.byte_length))
            offset += spec.byte_length
        out.append(rows)
    return out


def _columns(layout) -> list[list[tuple]]:
    return [list(group.weights()) for group in layout]


names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12
)
entry = st.fixed_dictionaries(
    {
        "name": names,
        "shape": st.lists(st.integers(0, 7), max_size=3),
        "dtype": st.sampled_from(DTYPES),
    },
    optional={"group": st.sampled_from(["model", "optimizer", "other"])},
)
mutation = st.sampled_from(
    [
        None,
        ("shape", [True, 2]),
        ("shape", [2.0]),
        ("shape", [-1]),
        ("shape", "3"),
        ("dtype", "uint8"),
        ("dtype", "string"),
        ("name", ""),
        ("name", 7),
        ("name", "x" * (MAX_NAME_BYTES + 1)),
        ("name", "é" * (MAX_NAME_BYTES // 2 + 1)),
        ("group", 3),
        ("quantization", {"dtype": "uint8", "min": 0, "scale": 1}),
        ("extra", 1),
    ]
)


@st.composite
def manifests(draw):
    groups = []
    for g in range(draw(st.integers(1, 3))):
        weights = draw(st.lists(entry, max_size=6, unique_by=lambda e: e["name"]))
        paths = [f"g{g}-s{i}.bin" for i in range(draw(st.integers(1, 2)))]
        groups.append({"paths": paths, "weights": weights})
    change = draw(mutation)
    if change is not None and groups[0]["weights"]:
        key, value = change
        groups[0]["weights"][-1] = {**groups[0]["weights"][-1], key: value}
    path_change = draw(st.sampled_from([None, "duplicate", "normalised duplicate", "extra key"]))
    if path_change == "duplicate":
        groups[-1]["paths"].append(groups[0]["paths"][0])
    elif path_change == "normalised duplicate":
        groups[-1]["paths"].append("./" + groups[0]["paths"][0] + "?v=2")
    elif path_change == "extra key":
        groups[0]["note"] = "x"
    return {"modelTopology": {}, "weightsManifest": groups}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifests())
def test_columns_agree_with_the_validating_parser(doc):
    """Columns exist only for manifests the rules accept, and say what ModelJSON says."""
    layout = plain_layout(doc["weightsManifest"])
    try:
        ModelJSON.parse(doc, "m.json")
    except FormatError:  # ManifestError or QuantizationError
        assert layout is None
        return
    plain = all(
        set(group) == {"paths", "weights"}
        and all(
            w["dtype"] in DTYPE_SIZES and set(w) <= {"name", "shape", "dtype", "group"}
            for w in group["weights"]
        )
        for group in doc["weightsManifest"]
    )
    if not plain:
        assert layout is None
        return
    assert layout is not None
    expected = _expected(doc)
    assert _columns(layout) == expected
    assert [g.names for g in layout] == [[row[0] for row in rows] for rows in expected]
    assert [g.nbytes for g in layout] == [rows[-1][4] if rows else 0 for rows in expected]


def test_columns_keep_nothing_of_the_parsed_document():
    """The document's dicts, lists, strings and ints can all be freed after the layout
    (small integers are the interpreter's own shared objects)."""
    doc = parse_model_json(
        json.dumps(
            {
                "modelTopology": {},
                "weightsManifest": [
                    {
                        "paths": ["a.bin"],
                        "weights": [
                            {
                                "name": f"layer_{i}/w",
                                "shape": [i + 300, 7],
                                "dtype": "float32",
                            }
                            for i in range(50)
                        ],
                    }
                ],
            }
        ).encode(),
        "m.json",
    )
    parsed = set()
    stack = [doc]
    while stack:
        item = stack.pop()
        parsed.add(id(item))
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    layout = plain_layout(doc["weightsManifest"])
    assert layout is not None and len(layout[0]) == 50
    kept = []
    stack = list(gc.get_referents(*layout))
    while stack:
        item = stack.pop()
        kept.append(item)
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    assert len([name for name in kept if isinstance(name, str) and "/" in name]) == 50
    shared = [item for item in kept if id(item) in parsed]
    assert [item for item in shared if not (type(item) is int and -5 <= item <= 256)] == []
    assert layout[0].names[49] == "layer_49/w"
    assert layout[0].shapes[49] == (349, 7)


def _bundle(tmp_path, manifest_weights, paths=("s1.bin",), data=None):
    folder = tmp_path / "m"
    folder.mkdir()
    data = data if data is not None else np.arange(6, dtype=np.float32).tobytes()
    (folder / "s1.bin").write_bytes(data)
    doc = {
        "modelTopology": {},
        "weightsManifest": [{"paths": list(paths), "weights": manifest_weights}],
    }
    (folder / "model.json").write_text(json.dumps(doc))
    return folder


def test_whole_load_refuses_a_shard_listed_twice(tmp_path):
    """As a partial load does: the same bytes would otherwise be read as two shards."""
    folder = _bundle(
        tmp_path,
        [
            {"name": "a", "shape": [3], "dtype": "float32"},
            {"name": "b", "shape": [9], "dtype": "float32"},
        ],
        paths=("s1.bin", "./s1.bin"),
    )
    with pytest.raises(ManifestError, match=r"shard path './s1.bin' is listed twice"):
        tfjsfs.load_weights(folder)
    with pytest.raises(ManifestError, match=r"shard path './s1.bin' is listed twice"):
        tfjsfs.load_weights(folder, names=["a"])


def test_whole_load_refuses_a_boolean_dimension_after_an_integer_one(tmp_path):
    """``[True, 2]`` equals ``(1, 2)`` as a tuple; the rules still refuse it."""
    folder = _bundle(
        tmp_path,
        [
            {"name": "a", "shape": [1, 2], "dtype": "float32"},
            {"name": "b", "shape": [True, 2], "dtype": "float32"},
        ],
        data=np.arange(4, dtype=np.float32).tobytes(),
    )
    with pytest.raises(ManifestError, match=r"weight 'b'.*shape must be a list of integers"):
        tfjsfs.load_weights(folder)


@pytest.mark.parametrize("with_orjson", [True, False])
def test_whole_load_is_the_same_with_and_without_orjson(tmp_path, monkeypatch, with_orjson):
    if with_orjson:
        pytest.importorskip("orjson")
        assert columns.orjson is not None
    else:
        monkeypatch.setattr(columns, "orjson", None)
    weights = [
        {"name": "ünïcode/kernel", "shape": [2, 2], "dtype": "float32"},
        {"name": "flags", "shape": [3], "dtype": "bool"},
        {"name": "ids", "shape": [1], "dtype": "int32"},
    ]
    raw = np.concatenate(
        [
            np.arange(4, dtype="<f4").view(np.uint8),
            np.array([1, 0, 1], np.uint8),
            np.array([7], "<i4").view(np.uint8),
        ]
    ).tobytes()
    got = tfjsfs.load_weights(_bundle(tmp_path, weights, data=raw))
    assert list(got) == ["ünïcode/kernel", "flags", "ids"]
    assert got["ünïcode/kernel"].tolist() == [[0.0, 1.0], [2.0, 3.0]]
    assert got["flags"].tolist() == [True, False, True]
    assert got["ids"].dtype == np.int32 and got["ids"].tolist() == [7]


@pytest.mark.parametrize(
    ("literal", "ok"),
    [
        ("1" * MAX_INT_DIGITS, True),
        ("-" + "1" * MAX_INT_DIGITS, True),
        ("1" * (MAX_INT_DIGITS + 1), True),  # room for a sign: the bound counts characters
        ("-" + "1" * (MAX_INT_DIGITS + 1), False),
        ("1" * (MAX_INT_DIGITS + 2), False),
        ("1." + "1" * 200, True),  # long digit runs outside integers are fine
    ],
)
def test_integer_bounds_are_the_same_on_the_quick_path(literal, ok):
    text = f'{{"a": [{literal}], "b": "{"9" * 70}"}}'
    if ok:
        assert parse_json(text.encode(), "m.json") == json.loads(text)
        assert parse_json(text, "m.json") == json.loads(text)
    else:
        with pytest.raises(ManifestError, match=r"m.json: an integer of \d+ digits at line 1"):
            parse_json(text.encode(), "m.json")


@pytest.mark.parametrize("cut", [1, 8, 20])
def test_short_shards_are_reported_alike_from_the_columns_and_the_index(tmp_path, cut):
    """A whole load (columns, manifest already released) and a partial load (the
    weight index) name the same weight, shards and byte counts."""
    weights = [
        {"name": "a", "shape": [3], "dtype": "float32"},
        {"name": "empty", "shape": [0], "dtype": "int32"},
        {"name": "b", "shape": [2, 2], "dtype": "float32"},
    ]
    data = np.arange(7, dtype="<f4").tobytes()
    folder = _bundle(tmp_path, weights, data=data[: len(data) - cut])
    with pytest.raises(WeightDataError) as whole:
        tfjsfs.load_weights(folder)
    with pytest.raises(WeightDataError) as partial:
        tfjsfs.load_weights(folder, names=["a"])
    assert str(whole.value) == str(partial.value)
    first = "'a'" if cut > 16 else "'b'"
    assert f"weight {first} needs bytes" in str(whole.value)
    assert f"s1.bin ({len(data) - cut} bytes)" in str(whole.value)
    assert "expected 28 bytes" in str(whole.value)


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_a_streamed_whole_load_buffer_becomes_resident_as_bytes_land():
    """One byte landing in each 2 MiB of a buffer makes a few pages resident, not the
    whole buffer (as huge pages would, with every shard of a bundle in flight)."""
    nbytes = 64 << 20
    buffer = weights_buffer(nbytes, streamed=True)
    assert buffer.dtype == np.uint8 and buffer.shape == (nbytes,) and buffer.flags.writeable
    before = _rss()
    buffer[:: 2 << 20] = 7
    grown = _rss() - before
    assert grown < 8 << 20, f"{grown} bytes became resident for 32 bytes written"
    assert int(buffer[2 << 20]) == 7 and int(buffer[1]) == 0
