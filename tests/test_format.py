"""The format layer: model.json schema, codec, quantization, artifacts info."""

from __future__ import annotations

import json
import posixpath
import re
import struct

import numpy as np
import pytest
from converter import load_converter
from hypothesis import given, settings
from hypothesis import strategies as st
from nodejs import requires_node, run_node

from tfjsfs import ModelArtifacts, ModelJSON
from tfjsfs.errors import (
    FormatError,
    ManifestError,
    QuantizationError,
    TFJSError,
    UnsafePathError,
    WeightDataError,
)
from tfjsfs.format.codec import decode_weight, encode_weight, quantization_plan, quantize
from tfjsfs.format.manifest import WeightIndex, dumps_compact, js_number, manifest_paths
from tfjsfs.io.location import locate_shard

FULL_MODEL_JSON = {
    "modelTopology": {"class_name": "Sequential", "config": {"layers": []}},
    "format": "graph-model",
    "generatedBy": "2.15.0",
    "convertedBy": "TensorFlow.js Converter v4.22.0",
    "weightsManifest": [
        {
            "paths": ["group1-shard1of1.bin"],
            "weights": [
                {"name": "w", "shape": [2], "dtype": "float32", "group": "model"},
                {
                    "name": "q",
                    "shape": [3],
                    "dtype": "float32",
                    "quantization": {
                        "dtype": "uint8",
                        "min": -1.0,
                        "scale": 0.5,
                        "original_dtype": "float32",
                        "future_key": 1,
                    },
                    "future_entry_key": "x",
                },
            ],
            "future_group_key": True,
        }
    ],
    "signature": {"inputs": {"x": {"name": "x:0", "dtype": "DT_FLOAT"}}},
    "userDefinedMetadata": {"structuredOutputKeys": ["a"]},
    "modelInitializer": {"node": []},
    "initializerSignature": {"outputs": {}},
    "trainingConfig": {"loss": "mse", "optimizer_config": {}},
    "futureTopLevelKey": [1, 2],
}


def test_every_model_json_key_round_trips_with_unknown_keys():
    doc = ModelJSON.parse(json.dumps(FULL_MODEL_JSON))
    assert doc.format == "graph-model"
    assert doc.generated_by == "2.15.0"
    assert doc.training_config == {"loss": "mse", "optimizer_config": {}}
    q = doc.weight_specs[1].quantization
    assert (q.dtype, q.min, q.scale, q.original_dtype) == ("uint8", -1.0, 0.5, "float32")
    assert doc.weight_specs[0].group == "model"
    assert json.loads(doc.dumps()) == FULL_MODEL_JSON


def test_null_keys_stay_null_and_absent_keys_stay_absent():
    text = '{"modelTopology":null,"convertedBy":null,"weightsManifest":[]}'
    doc = ModelJSON.parse(text)
    assert json.loads(doc.dumps()) == {
        "modelTopology": None,
        "convertedBy": None,
        "weightsManifest": [],
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"modelTopology": {}}', "'weightsManifest' field is missing"),
        ('{"weightsManifest": []}', "'modelTopology' field is missing"),
        ('{"modelTopology": {}, "weightsManifest": {}}', "must be a list of groups"),
    ],
)
def test_bad_model_json_documents(text, message):
    with pytest.raises(ManifestError, match=message) as info:
        ModelJSON.parse(text, "models/m/model.json")
    assert "models/m/model.json" in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, TFJSError)


def _doc(*weights, paths=("g.bin",)):
    return {
        "modelTopology": {},
        "weightsManifest": [{"paths": list(paths), "weights": list(weights)}],
    }


@pytest.mark.parametrize(
    ("entry", "error", "message"),
    [
        (
            {"name": "a", "shape": [2], "dtype": "float64"},
            ManifestError,
            "unknown dtype 'float64'",
        ),
        ({"name": "a", "shape": [-1], "dtype": "float32"}, ManifestError, "negative dimension"),
        ({"name": "a", "shape": [1.5], "dtype": "float32"}, ManifestError, "list of integers"),
        ({"name": "a", "shape": [True], "dtype": "float32"}, ManifestError, "list of integers"),
        ({"name": "a", "shape": "2", "dtype": "float32"}, ManifestError, "list of integers"),
        ({"shape": [2], "dtype": "float32"}, ManifestError, "no string 'name'"),
        (
            {"name": "a", "shape": [2], "dtype": "float32", "quantization": {"dtype": "uint8"}},
            QuantizationError,
            "needs both 'min' and 'scale'",
        ),
        (
            {
                "name": "a",
                "shape": [2],
                "dtype": "float32",
                "quantization": {"dtype": "uint8", "min": 0},
            },
            QuantizationError,
            "needs both 'min' and 'scale'",
        ),
        (
            {"name": "a", "shape": [2], "dtype": "int32", "quantization": {"dtype": "float16"}},
            QuantizationError,
            "float16 quantization only supports float32",
        ),
        (
            {"name": "a", "shape": [2], "dtype": "float32", "quantization": {"dtype": "int4"}},
            QuantizationError,
            "unknown quantization dtype",
        ),
    ],
)
def test_bad_weight_entries_name_the_weight(entry, error, message):
    with pytest.raises(error, match=message) as info:
        ModelJSON.parse(_doc(entry), "m/model.json")
    assert "m/model.json" in str(info.value)


def test_duplicate_weight_names_across_groups():
    doc = {
        "modelTopology": {},
        "weightsManifest": [
            {"paths": ["a.bin"], "weights": [{"name": "k", "shape": [], "dtype": "float32"}]},
            {"paths": ["b.bin"], "weights": [{"name": "k", "shape": [], "dtype": "int32"}]},
        ],
    }
    with pytest.raises(ManifestError, match="duplicate weight name 'k' \\(groups 1 and 2\\)"):
        ModelJSON.parse(doc)


def test_index_refuses_a_shape_larger_than_the_shards_before_allocating():
    huge = {"name": "big", "shape": [2**40, 2**20], "dtype": "float32"}
    doc = ModelJSON.parse(_doc(huge))
    with pytest.raises(WeightDataError) as info:
        WeightIndex(doc.weights_manifest, [[16]], "m/model.json")
    text = str(info.value)
    assert "'big'" in text and "m/model.json" in text and "g.bin (16 bytes)" in text
    assert f"expected {2**62} bytes" in text


def test_index_segments_span_shards_and_report_trailing_bytes():
    entries = [
        {"name": "a", "shape": [3], "dtype": "float32"},  # bytes 0..12
        {"name": "b", "shape": [5], "dtype": "int32"},  # bytes 12..32
    ]
    doc = ModelJSON.parse(_doc(*entries, paths=("s1", "s2", "s3")))
    index = WeightIndex(doc.weights_manifest, [[10, 10, 14]], "m.json")
    assert index["a"].segments == ((0, 0, 10), (1, 0, 2))
    assert index["b"].segments == ((1, 2, 10), (2, 0, 12))
    assert index.problems() == [
        "m.json: group 1 has 2 trailing bytes after its last weight (last shard s3)"
    ]


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("group1-shard1of1.bin", "group1-shard1of1.bin"),
        ("./model.weights.bin", "model.weights.bin"),
        ("sub/dir/x.bin", "sub/dir/x.bin"),
        ("../other/x.bin", None),
        ("/etc/passwd", None),
        ("a/../../x", None),
        ("https://elsewhere.example/x.bin", None),
        ("//elsewhere/x.bin", None),
    ],
)
def test_shard_paths_stay_inside_the_model_folder(path, ok):
    if ok is None:
        with pytest.raises(UnsafePathError, match="allow_outside"):
            locate_shard("", path, kind="key", source="m/model.json")
        assert locate_shard("", path, kind="key", allow_outside=True) in (
            path,
            posixpath.normpath(path),
            f"https:{path}",
        )
    else:
        assert locate_shard("", path, kind="key", source="m/model.json") == ok


def _roundtrip(name, value, qdtype=None):
    spec, chunks = encode_weight(name, value, qdtype)
    data = b"".join(bytes(memoryview(c).cast("B")) for c in chunks)
    return spec, data, decode_weight(spec, data)


@pytest.mark.parametrize(
    "value",
    [
        np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7,
        np.array([-(2**31), 0, 2**31 - 1], dtype=np.int32),
        np.array([[True, False], [False, True]]),
        np.array([1 + 2j, -3.5 - 0.25j], dtype=np.complex64),
        np.float32(3.5),
        np.zeros((0, 4), np.float32),
        np.zeros((3, 0), np.int32),
    ],
    ids=["float32", "int32", "bool", "complex64", "scalar", "zero-size", "zero-size-int"],
)
def test_numeric_round_trip_is_exact(value):
    spec, data, back = _roundtrip("w", value)
    expected = np.asarray(value)
    assert back.shape == expected.shape and back.dtype == expected.dtype
    assert np.array_equal(back, expected)
    assert (
        len(data)
        == spec.byte_length
        == expected.size
        * {
            "float32": 4,
            "int32": 4,
            "bool": 1,
            "complex64": 8,
        }[spec.dtype]
    )


def test_complex64_is_interleaved_real_imag():
    _, data, _ = _roundtrip("c", np.array([1 + 2j], np.complex64))
    assert np.frombuffer(data, "<f4").tolist() == [1.0, 2.0]


def test_strings_use_uint32_le_prefixes_and_empty_tensors_take_no_bytes():
    spec, data, back = _roundtrip("s", np.array([["héllo", ""], ["x", "yz"]]))
    assert spec.dtype == "string" and spec.shape == (2, 2)
    assert (
        data
        == b"\x06\x00\x00\x00h\xc3\xa9llo" + b"\x00" * 4 + b"\x01\x00\x00\x00x\x02\x00\x00\x00yz"
    )
    assert back.tolist() == [[b"h\xc3\xa9llo", b""], [b"x", b"yz"]]
    spec, data, back = _roundtrip("e", np.array([], dtype=object))
    assert data == b"" and spec.byte_length == 0 and back.shape == (0,)


def test_auto_conversion_like_the_converter():
    assert _roundtrip("a", np.array([1.5], np.float64))[0].dtype == "float32"
    assert _roundtrip("b", np.array([7], np.int64))[2].dtype == np.int32
    with pytest.raises(FormatError, match="do not fit in int32"):
        encode_weight("b", np.array([2**40], np.int64))
    with pytest.raises(FormatError, match="uint8 is not supported"):
        encode_weight("u", np.array([1], np.uint8))


def test_decode_checks_the_byte_count():
    spec, _ = encode_weight("w", np.zeros(4, np.float32))
    with pytest.raises(
        WeightDataError, match=r"weight 'w': expected 16 bytes \(float32\[4\]\), got 15"
    ):
        decode_weight(spec, b"\x00" * 15)
    spec, _ = encode_weight("s", np.array(["abc"]))
    with pytest.raises(WeightDataError, match="claims 100 bytes"):
        decode_weight(spec, (100).to_bytes(4, "little") + b"abc")


def test_quantization_matches_the_converter_byte_for_byte():
    _, _, quantization = load_converter()
    rng = np.random.default_rng(7)
    for data in (
        rng.normal(size=1000).astype(np.float32),
        rng.uniform(2, 5, size=100).astype(np.float32),  # 0 outside the range
        np.full(10, 3.25, np.float32),  # constant
    ):
        for qdtype, np_dtype in (
            ("uint8", np.uint8),
            ("uint16", np.uint16),
            ("float16", np.float16),
        ):
            ours, meta = quantize(data, qdtype)
            theirs, their_meta = quantization.quantize_weights(data, np_dtype)
            assert ours.tobytes() == theirs.tobytes()
            if qdtype != "float16":
                assert meta.min == float(their_meta["min"])
                assert meta.scale == float(their_meta["scale"])
                back = quantization.dequantize_weights(theirs, their_meta, np.float32)
                spec, chunks = encode_weight("w", data, qdtype)
                decoded = decode_weight(spec, b"".join(bytes(c) for c in chunks))
                assert np.array_equal(decoded, back)


def test_int32_dequantization_rounds_half_up_like_javascript():
    doc = ModelJSON.parse(
        _doc(
            {
                "name": "i",
                "shape": [4],
                "dtype": "int32",
                "quantization": {"dtype": "uint8", "min": 0.5, "scale": 1.0},
            }
        )
    )
    values = decode_weight(doc.weight_specs[0], bytes([0, 1, 2, 3]))
    # Math.round(0.5)=1, Math.round(1.5)=2, Math.round(2.5)=3 (numpy's round would give 0, 2, 2)
    assert values.tolist() == [1, 2, 3, 4]


def test_quantization_plan_patterns_and_fallthrough():
    names = ["conv/kernel", "conv/bias", "dense/kernel", "dense/bias"]
    assert quantization_plan(names, {"uint8": "*/kernel", "float16": True}) == {
        "conv/kernel": "uint8",
        "dense/kernel": "uint8",
        "conv/bias": "float16",
        "dense/bias": "float16",
    }
    with pytest.raises(QuantizationError, match="match weight 'conv/kernel'"):
        quantization_plan(names, {"uint8": "conv/*", "uint16": "*/kernel"})
    with pytest.raises(QuantizationError, match="more than one quantization fallthrough"):
        quantization_plan(names, {"uint8": True, "uint16": True})


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (0.1, "0.1"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (1e21, "1e+21"),
        (2.5e20, "250000000000000000000"),
        (-0.00001, "-0.00001"),
        (123.456, "123.456"),
    ],
)
def test_numbers_are_written_as_javascript_writes_them(value, text):
    assert js_number(value) == text


def test_artifacts_info_counts_like_tfjs():
    topology = {"class_name": "Sequential", "config": {"name": "ü"}}
    art = ModelArtifacts.from_weights(topology, {"a": np.zeros(3, np.float32)})
    info = art.info()
    assert info.model_topology_bytes == len(
        '{"class_name":"Sequential","config":{"name":"ü"}}'.encode()
    )
    assert info.weight_specs_bytes == len(b'[{"name":"a","shape":[3],"dtype":"float32"}]')
    assert info.weight_data_bytes == 12
    stored = info.to_json()
    assert stored["dateSaved"].endswith("Z") and stored["modelTopologyType"] == "JSON"
    assert dumps_compact([1.0, "x"]) == b'[1,"x"]'


def test_artifacts_groups_and_weights_view():
    weights = {
        "a": np.ones(2, np.float32),
        "b": np.array(["s"]),
        "c": np.arange(3, dtype=np.int32),
    }
    art = ModelArtifacts.from_weights({}, weights, groups=[["c"], ["a", "b"]])
    assert [s.name for s in art.weight_specs] == ["c", "a", "b"]
    assert art.group_lengths == (1, 2)
    assert {k: v.tolist() for k, v in art.weights.items()} == {
        "c": [0, 1, 2],
        "a": [1.0, 1.0],
        "b": [b"s"],
    }
    with pytest.raises(FormatError, match="every weight exactly once"):
        ModelArtifacts.from_weights({}, weights, groups=[["a"]])


def _for_node(value):
    """*value* with every float as its exact bytes (see tests/js/json_stringify.js)."""
    if isinstance(value, float):
        return {"$f": struct.pack(">d", value).hex()}
    if isinstance(value, dict):
        return {k: _for_node(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_for_node(v) for v in value]
    return value


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats()
    | st.sampled_from([1e-4, 9.999e-5, 1e16, 1e16 - 2, 1e21, 5e-324, -0.0, 0.1 + 0.2])
    | _TEXT,
    lambda inner: (
        st.lists(inner, max_size=4)
        # JavaScript objects put integer-like keys first: not a serialiser's choice
        | st.dictionaries(
            _TEXT.filter(lambda k: not re.fullmatch(r"0|[1-9]\d*|\$f", k)), inner, max_size=4
        )
    ),
    max_leaves=12,
)


@requires_node
@settings(max_examples=50, deadline=None)
@given(st.lists(_JSON_VALUES, min_size=40, max_size=40))
def test_dumps_compact_writes_what_json_stringify_writes(tmp_path_factory, values):
    path = tmp_path_factory.mktemp("json") / "values.json"
    path.write_text(json.dumps([_for_node(v) for v in values]))
    texts = run_node("json_stringify.js", path)["texts"]
    assert [dumps_compact(v).decode() for v in values] == texts


_PATHS = st.lists(
    st.one_of(
        st.from_regex(r"[a-z0-9_./-]{1,20}", fullmatch=True),
        st.sampled_from(["", "../x.bin", "/abs.bin", "a\x00b", "%2e%2e/x", 7, None]),
    ),
    max_size=4,
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.fixed_dictionaries({"paths": _PATHS}), max_size=4), st.booleans())
def test_manifest_paths_are_the_paths_a_full_parse_reads(groups, as_text):
    """Writers and sweeps read only the paths; they are exactly what ModelJSON reads."""
    doc = {
        "format": "graph-model",
        "modelTopology": {},
        "weightsManifest": [{**g, "weights": []} for g in groups],
    }
    text = json.dumps(doc).encode()
    try:
        full = ModelJSON.parse(text, "m/model.json", require_topology=False)
    except ManifestError as exc:
        full = exc
    try:
        quick = manifest_paths(text.decode() if as_text else text, "m/model.json")
    except ManifestError as exc:
        quick = exc
    if isinstance(full, ModelJSON):
        assert quick == [p for g in full.weights_manifest for p in g.paths]
    elif isinstance(quick, list):  # refused for something other than its paths
        assert "path" not in str(full).lower() or "twice" in str(full), (quick, str(full))
