"""TF.js's browser storage layouts, on the Python side.

TF.js keeps models saved to ``localstorage://<path>`` and
``indexeddb://<path>`` in the browser. This module converts
:class:`~tfjsfs.format.artifacts.ModelArtifacts` to and from those layouts, so that
tools outside the browser (tests, the bridge page's server, profile
exports) can read and write them byte for byte.

``localstorage://<path>``
    Five string items under ``tensorflowjs_models/<path>/``: ``info``
    (``ModelArtifactsInfo`` JSON), ``model_topology`` and ``weight_specs``
    (compact JSON), ``weight_data`` (base64, the only base64 value) and
    ``model_metadata`` (JSON ``{format, generatedBy, convertedBy, ...}``).
``indexeddb://<path>``
    Database ``tensorflowjs`` version 1 with two object stores keyed by
    ``modelPath``: ``models_store`` holds ``{modelPath, modelArtifacts,
    modelArtifactsInfo}`` and ``model_info_store`` holds ``{modelPath,
    modelArtifactsInfo}``. Records are given here as JSON-able dicts whose
    ``weightData`` is ``bytes`` and whose ``dateSaved`` is an ISO string.

A Playwright ``storage_state`` export (``context.storageState()``, a JSON
file) holds each origin's localStorage items, and with
``storageState({indexedDB: true})`` its IndexedDB records too;
:func:`read_storage_state` pulls every TF.js model out of it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import FormatError, ManifestError, ModelNotFoundError, WeightDataError
from .artifacts import ModelArtifacts, ModelArtifactsInfo
from .manifest import dumps_compact, parse_json, parse_weights_manifest

__all__ = [
    "DATABASE_NAME",
    "DATABASE_VERSION",
    "INFO_STORE",
    "LOCAL_STORAGE_PREFIX",
    "LOCAL_STORAGE_SUFFIXES",
    "MODEL_STORE",
    "artifacts_to_json",
    "from_indexeddb",
    "from_local_storage",
    "list_indexeddb",
    "list_local_storage",
    "list_storage_state",
    "local_storage_keys",
    "read_storage_state",
    "to_indexeddb",
    "to_local_storage",
]

LOCAL_STORAGE_PREFIX = "tensorflowjs_models"
#: Suffixes of the five localStorage keys of one model, in TF.js's write order.
LOCAL_STORAGE_SUFFIXES = (
    "info",
    "model_topology",
    "weight_specs",
    "weight_data",
    "model_metadata",
)
DATABASE_NAME = "tensorflowjs"
DATABASE_VERSION = 1
MODEL_STORE = "models_store"
INFO_STORE = "model_info_store"
LOCAL_STORAGE_SCHEME = "localstorage://"
INDEXEDDB_SCHEME = "indexeddb://"

# ModelArtifacts fields beside topology, specs and data, as TF.js names them.
_OPTIONAL = (
    ("signature", "signature"),
    ("userDefinedMetadata", "user_defined_metadata"),
    ("modelInitializer", "model_initializer"),
    ("initializerSignature", "initializer_signature"),
    ("trainingConfig", "training_config"),
)


def _check_path(path: str) -> str:
    if not isinstance(path, str) or not path:
        raise FormatError(f"a browser model path must be a non-empty string, got {path!r}")
    return path


def _strip_scheme(path: str, scheme: str) -> str:
    return path[len(scheme) :] if path.startswith(scheme) else path


def local_storage_keys(path: str) -> dict[str, str]:
    """The five localStorage keys of the model at *path*, by suffix.

    Parameters
    ----------
    path : str
        Model path, with or without ``localstorage://``; it may contain ``/``.
    """
    path = _check_path(_strip_scheme(path, LOCAL_STORAGE_SCHEME))
    return {s: f"{LOCAL_STORAGE_PREFIX}/{path}/{s}" for s in LOCAL_STORAGE_SUFFIXES}


def _metadata(artifacts: ModelArtifacts) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if artifacts.format is not None:
        out["format"] = artifacts.format
    if artifacts.generated_by is not None:
        out["generatedBy"] = artifacts.generated_by
    out["convertedBy"] = artifacts.converted_by
    for key, attr in _OPTIONAL:
        value = getattr(artifacts, attr)
        if value is not None:
            out[key] = value
    return out


def _info(artifacts: ModelArtifacts, date_saved: _dt.datetime | None) -> ModelArtifactsInfo:
    if artifacts.model_topology is None:
        raise FormatError("TF.js's browser stores need a JSON model topology; it is missing")
    if isinstance(artifacts.model_topology, (bytes, bytearray, memoryview)):
        raise FormatError(
            "TF.js's browser stores do not support a binary model topology "
            "(TF.js: 'does not support saving model topology in binary formats yet')"
        )
    artifacts.weight_offsets()  # the data must cover the specs
    return artifacts.info(date_saved)


def artifacts_to_json(artifacts: ModelArtifacts, *, weight_data: bool = True) -> dict[str, Any]:
    """TF.js's ``ModelArtifacts`` object as a dict (``weightData`` as bytes).

    Parameters
    ----------
    artifacts : ModelArtifacts
    weight_data : bool
        Include ``weightData``; without it the dict is plain JSON.
    """
    out: dict[str, Any] = {
        "modelTopology": artifacts.model_topology,
        "weightSpecs": [s.to_json() for s in artifacts.weight_specs],
    }
    out.update(_metadata(artifacts))
    if weight_data:
        out["weightData"] = bytes(memoryview(artifacts.weight_data).cast("B"))
    return out


def to_local_storage(
    artifacts: ModelArtifacts, path: str, *, date_saved: _dt.datetime | None = None
) -> dict[str, str]:
    """The five localStorage items TF.js writes for ``model.save('localstorage://path')``.

    Parameters
    ----------
    artifacts : ModelArtifacts
    path : str
        Model path (``localstorage://`` prefix optional).
    date_saved : datetime, optional
        ``info.dateSaved``; now by default.

    Returns
    -------
    dict
        Key to string value, in TF.js's write order.
    """
    keys = local_storage_keys(path)
    info = _info(artifacts, date_saved)
    data = memoryview(artifacts.weight_data).cast("B")
    values = {
        "info": json.dumps(info.to_json(), separators=(",", ":")),
        "model_topology": dumps_compact(artifacts.model_topology).decode(),
        "weight_specs": dumps_compact([s.to_json() for s in artifacts.weight_specs]).decode(),
        "weight_data": base64.b64encode(data).decode("ascii"),
        "model_metadata": dumps_compact(_metadata(artifacts)).decode(),
    }
    return {keys[s]: values[s] for s in LOCAL_STORAGE_SUFFIXES}


def _build(
    topology: Any,
    specs: Any,
    weight_data: Any,
    metadata: Mapping[str, Any],
    source: str,
) -> ModelArtifacts:
    """Validated artifacts from the parts a browser store holds."""
    if not isinstance(specs, list):
        raise ManifestError(
            f"{source}: the weight specs must be a list, got {type(specs).__name__}"
        )
    groups = parse_weights_manifest([{"paths": ["weight_data"], "weights": specs}], source)
    for key in ("format", "generatedBy", "convertedBy"):
        value = metadata.get(key)
        if value is not None and not isinstance(value, str):
            raise ManifestError(f"{source}: {key!r} must be a string, got {value!r}")
    artifacts = ModelArtifacts(
        model_topology=topology,
        weight_specs=list(groups[0].weights),
        weight_data=weight_data,
        format=metadata.get("format"),
        generated_by=metadata.get("generatedBy"),
        converted_by=metadata.get("convertedBy"),
        **{attr: metadata.get(key) for key, attr in _OPTIONAL},
    )
    try:
        offsets = artifacts.weight_offsets()
    except WeightDataError as exc:
        raise WeightDataError(f"{source}: {exc}") from None
    end = offsets[-1][1] if offsets else 0
    if end < artifacts.weight_data_bytes:
        artifacts.problems.append(
            f"{source}: weight data holds {artifacts.weight_data_bytes} bytes, the weight "
            f"specs use {end}; {artifacts.weight_data_bytes - end} trailing bytes ignored"
        )
    return artifacts


def _json_item(items: Mapping[str, str], key: str, source: str) -> Any:
    text = items.get(key)
    if text is None:
        return None
    return parse_json(text, f"{source} ({key})")


def from_local_storage(items: Mapping[str, str], path: str) -> ModelArtifacts:
    """Read the model at *path* from localStorage items, as TF.js's loader does.

    Parameters
    ----------
    items : mapping of str to str
        localStorage contents (other keys are ignored).
    path : str
        Model path (``localstorage://`` prefix optional).

    Raises
    ------
    ModelNotFoundError
        No ``info`` item for *path*.
    FormatError
        A missing or malformed item, or weight data shorter than the specs.
    """
    keys = local_storage_keys(path)
    path = _strip_scheme(path, LOCAL_STORAGE_SCHEME)
    source = f"localstorage://{path}"
    info = _json_item(items, keys["info"], source)
    if info is None:
        raise ModelNotFoundError(f"In local storage, there is no model with name '{path}'")
    if not isinstance(info, dict) or info.get("modelTopologyType") != "JSON":
        raise FormatError(
            f"{source}: only JSON model topologies are supported "
            f"(info says {info.get('modelTopologyType') if isinstance(info, dict) else info!r})"
        )
    topology = _json_item(items, keys["model_topology"], source)
    if topology is None:
        raise FormatError(f"In local storage, the topology of model '{path}' is missing.")
    specs = _json_item(items, keys["weight_specs"], source)
    if specs is None:
        raise FormatError(f"In local storage, the weight specs of model '{path}' are missing.")
    metadata = _json_item(items, keys["model_metadata"], source) or {}
    if not isinstance(metadata, dict):
        raise FormatError(f"{source}: model_metadata must be a JSON object")
    encoded = items.get(keys["weight_data"])
    if encoded is None:
        raise FormatError(
            f"In local storage, the binary weight values of model '{path}' are missing."
        )
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WeightDataError(
            f"{source}: weight_data is not valid base64 ({len(encoded)} characters): {exc}"
        ) from None
    return _build(topology, specs, data, metadata, source)


def list_local_storage(items: Mapping[str, str]) -> dict[str, ModelArtifactsInfo]:
    """``{path: ModelArtifactsInfo}`` of every model in localStorage items.

    As TF.js's ``listModels``: every key ``tensorflowjs_models/<path>/info``.
    """
    out = {}
    prefix, suffix = LOCAL_STORAGE_PREFIX + "/", "/info"
    for key in items:
        if key.startswith(prefix) and key.endswith(suffix) and key.count("/") >= 2:
            path = key[len(prefix) : -len(suffix)]
            info = parse_json(items[key], f"localstorage://{path} ({key})")
            if not isinstance(info, dict):
                raise FormatError(f"localstorage://{path}: info is not a JSON object")
            out[path] = ModelArtifactsInfo.from_json(info)
    return out


def to_indexeddb(
    artifacts: ModelArtifacts, path: str, *, date_saved: _dt.datetime | None = None
) -> dict[str, dict[str, Any]]:
    """The two IndexedDB records TF.js writes for ``model.save('indexeddb://path')``.

    Returns
    -------
    dict
        ``{"models_store": {modelPath, modelArtifacts, modelArtifactsInfo},
        "model_info_store": {modelPath, modelArtifactsInfo}}``;
        ``modelArtifacts["weightData"]`` is bytes, ``dateSaved`` an ISO string.
    """
    path = _check_path(_strip_scheme(path, INDEXEDDB_SCHEME))
    info = _info(artifacts, date_saved).to_json()
    return {
        MODEL_STORE: {
            "modelPath": path,
            "modelArtifacts": artifacts_to_json(artifacts),
            "modelArtifactsInfo": info,
        },
        INFO_STORE: {"modelPath": path, "modelArtifactsInfo": dict(info)},
    }


def _bytes_of(value: Any, source: str) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, list) and all(
        isinstance(v, (bytes, bytearray, memoryview)) for v in value
    ):
        return b"".join(bytes(v) for v in value)  # a pre-4.x ArrayBuffer[]
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            pass
    raise WeightDataError(f"{source}: weightData is not binary data ({type(value).__name__})")


def from_indexeddb(record: Mapping[str, Any], path: str | None = None) -> ModelArtifacts:
    """Artifacts from a ``models_store`` record (or its ``modelArtifacts`` object).

    Parameters
    ----------
    record : mapping
        ``{modelPath, modelArtifacts: {..., weightData}, modelArtifactsInfo}``
        or the ``modelArtifacts`` object alone. ``weightData`` may be bytes,
        a list of bytes or a base64 string.
    path : str, optional
        For error messages when the record has no ``modelPath``.
    """
    if not isinstance(record, Mapping):
        raise FormatError(f"an IndexedDB model record must be an object, got {type(record)}")
    path = record.get("modelPath", path) or "?"
    source = f"indexeddb://{path}"
    model = record.get("modelArtifacts", record)
    if not isinstance(model, Mapping):
        raise FormatError(f"{source}: modelArtifacts is not an object")
    topology = model.get("modelTopology")
    if topology is None:
        raise FormatError(f"{source}: the model topology is missing")
    if isinstance(topology, (bytes, bytearray, memoryview)):
        raise FormatError(f"{source}: binary (GraphDef) model topologies are not supported")
    specs = model.get("weightSpecs")
    if specs is None:
        raise FormatError(f"{source}: the weight specs are missing")
    raw = model.get("weightData")
    data = b"" if raw is None and not specs else _bytes_of(raw, source)
    return _build(topology, specs, data, model, source)


def list_indexeddb(info_records: Iterable[Mapping[str, Any]]) -> dict[str, ModelArtifactsInfo]:
    """``{path: ModelArtifactsInfo}`` from ``model_info_store`` (or ``models_store``) records."""
    out = {}
    for record in info_records:
        info = record.get("modelArtifactsInfo") if isinstance(record, Mapping) else None
        if isinstance(info, Mapping) and isinstance(record.get("modelPath"), str):
            out[record["modelPath"]] = ModelArtifactsInfo.from_json(info)
    return out


# ------------------------------------------------------------ storage_state

_UNDEFINED = object()


def _decode_pw(value: Any, refs: dict[int, Any]) -> Any:
    """Decode Playwright's serialised value (``valueEncoded`` in storage_state).

    The format is Playwright's ``serializeAsCallArgument``: ``{o: [{k, v}]}``
    objects, ``{a: [...]}`` arrays, ``{d: iso}`` dates, ``{ab: {b: base64}}``
    ArrayBuffers, ``{ta: {b, k}}`` typed arrays, ``{v: "undefined"|"null"|...}``
    special values and ``{ref: id}`` back references.
    """
    if not isinstance(value, dict):
        return value
    if "ref" in value:
        return refs.get(value["ref"])
    if "v" in value:
        special = {"null": None, "NaN": float("nan"), "Infinity": float("inf")}
        special.update({"-Infinity": float("-inf"), "-0": -0.0})
        return special.get(value["v"], _UNDEFINED)
    if "d" in value:
        return value["d"]
    for key in ("u", "r"):
        if key in value:
            return value[key] if key == "u" else value[key].get("p")
    if "bi" in value:
        return int(value["bi"])
    if "e" in value:
        return value["e"].get("m")
    if "ab" in value:
        return base64.b64decode(value["ab"]["b"])
    if "ta" in value:
        return base64.b64decode(value["ta"]["b"])
    if "a" in value:
        out: list[Any] = []
        refs[value.get("id")] = out
        out.extend(_decode_pw(v, refs) for v in value["a"])
        return out
    if "o" in value:
        obj: dict[str, Any] = {}
        refs[value.get("id")] = obj
        for entry in value["o"]:
            item = _decode_pw(entry["v"], refs)
            if item is not _UNDEFINED:
                obj[entry["k"]] = item
        return obj
    if "m" in value:
        return {_decode_pw(e["k"], refs): _decode_pw(e["v"], refs) for e in value["m"]}
    if "s" in value:
        return [_decode_pw(v, refs) for v in value["s"]]
    return value


def _record_value(record: Mapping[str, Any]) -> Any:
    if "valueEncoded" in record:
        return _decode_pw(record["valueEncoded"], {})
    return record.get("value")


def _load_state(state: Any) -> Mapping[str, Any]:
    if isinstance(state, Mapping):
        return state
    if isinstance(state, str) and state.lstrip().startswith("{"):
        text = state
    else:
        text = Path(os.fspath(state)).read_text(encoding="utf-8")
    doc = parse_json(text, "storage_state")
    if not isinstance(doc, Mapping):
        raise FormatError("storage_state: not a JSON object")
    return doc


def _origins(state: Any, origin: str | None) -> list[Mapping[str, Any]]:
    doc = _load_state(state)
    origins = doc.get("origins")
    if not isinstance(origins, list):
        raise FormatError("storage_state: no 'origins' list (is this a storage_state export?)")
    chosen = [o for o in origins if isinstance(o, Mapping)]
    if origin is not None:
        chosen = [o for o in chosen if o.get("origin", "").rstrip("/") == origin.rstrip("/")]
        if not chosen:
            known = ", ".join(str(o.get("origin")) for o in origins if isinstance(o, Mapping))
            raise ModelNotFoundError(
                f"storage_state has no origin {origin!r}; it has: {known or 'none'}"
            )
    return chosen


def _tfjs_stores(entry: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Records of the ``tensorflowjs`` database's stores in one origin entry."""
    stores: dict[str, list[Any]] = {}
    for db in entry.get("indexedDB") or []:
        if isinstance(db, Mapping) and db.get("name") == DATABASE_NAME:
            for store in db.get("stores") or []:
                records = [_record_value(r) for r in store.get("records") or []]
                stores[store.get("name")] = records
    return stores


def _origin_models(entry: Mapping[str, Any], load: bool) -> dict[str, Any]:
    items = {
        i["name"]: i["value"]
        for i in entry.get("localStorage") or []
        if isinstance(i, Mapping) and isinstance(i.get("name"), str)
    }
    out: dict[str, Any] = {}
    for path, info in list_local_storage(items).items():
        out[LOCAL_STORAGE_SCHEME + path] = from_local_storage(items, path) if load else info
    stores = _tfjs_stores(entry)
    if load:
        for record in stores.get(MODEL_STORE, []):
            if isinstance(record, Mapping) and isinstance(record.get("modelPath"), str):
                out[INDEXEDDB_SCHEME + record["modelPath"]] = from_indexeddb(record)
    else:
        for path, info in list_indexeddb(stores.get(INFO_STORE, [])).items():
            out[INDEXEDDB_SCHEME + path] = info
    return out


def _collect(state: Any, origin: str | None, load: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for entry in _origins(state, origin):
        for url, value in _origin_models(entry, load).items():
            where = str(entry.get("origin"))
            if url in out:
                raise FormatError(
                    f"storage_state: {url} exists in origins {seen[url]} and {where}; "
                    "pass origin= to choose one"
                )
            out[url], seen[url] = value, where
    return out


def read_storage_state(state: Any, *, origin: str | None = None) -> dict[str, ModelArtifacts]:
    """Every TF.js model in a Playwright ``storage_state`` export.

    Parameters
    ----------
    state : str, os.PathLike or mapping
        The export: a JSON file path, its text, or the parsed object.
    origin : str, optional
        Only this origin (e.g. ``"http://127.0.0.1:8080"``); by default all.

    Returns
    -------
    dict
        ``{"localstorage://<path>" or "indexeddb://<path>": ModelArtifacts}``,
        keyed like TF.js's ``tf.io.listModels()``. IndexedDB models appear
        when the export was made with ``storageState({indexedDB: true})``.

    Raises
    ------
    FormatError
        A malformed model, or the same model URL in two origins without
        *origin*.
    """
    return _collect(state, origin, load=True)


def list_storage_state(state: Any, *, origin: str | None = None) -> dict[str, ModelArtifactsInfo]:
    """``{model URL: ModelArtifactsInfo}`` of a ``storage_state`` export, without decoding.

    See :func:`read_storage_state` for the parameters.
    """
    return _collect(state, origin, load=False)
