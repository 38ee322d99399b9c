"""The rules of a well-formed model.json, written once.

:meth:`tfjsfs.format.manifest.ModelJSON.parse` applies them and raises on the
first error (a load); :func:`tfjsfs.model.verify.check_manifest` applies the
same rules and reports every problem, warnings included (a verify). So the two
cannot drift.

A model.json is untrusted input. Besides its types, the rules bound everything
that is later sized, allocated, recursed into or used as a file name: nesting
depth, rank, dimensions, element counts, name and path lengths, and the numbers
of groups, weights and paths. Every check is linear in the size of the
document, so a hostile model.json is refused as fast as it is read.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import FormatError, ManifestError, QuantizationError
from .dtypes import DTYPES, QUANTIZED_SIZES

__all__ = [
    "ERROR",
    "MAX_DEPTH",
    "MAX_DIMENSION",
    "MAX_ELEMENTS",
    "MAX_GROUPS",
    "MAX_INT_DIGITS",
    "MAX_NAME_BYTES",
    "MAX_PATHS",
    "MAX_PATH_BYTES",
    "MAX_RANK",
    "MAX_SEGMENT_BYTES",
    "MAX_WEIGHTS",
    "WARNING",
    "Finding",
    "Findings",
    "check_model_json",
    "check_weight_entry",
    "check_weights_manifest",
    "plain_name",
    "plain_paths",
    "shape_elements",
    "too_deep",
]

ERROR, WARNING = "error", "warning"

#: JSON nesting levels (Keras topologies use about 15; nested models a few more).
MAX_DEPTH = 128
#: Digits of one JSON integer (JavaScript cannot even hold more than 16 exactly).
MAX_INT_DIGITS = 64
#: Dimensions of a shape (TensorFlow's own limit).
MAX_RANK = 254
#: Largest dimension: JavaScript's largest exact integer.
MAX_DIMENSION = 2**53
#: Elements of one weight: more cannot exist in any address space.
MAX_ELEMENTS = 2**64
#: UTF-8 bytes of a weight name.
MAX_NAME_BYTES = 1024
#: UTF-8 bytes of one segment of a shard path (the usual file-name limit).
MAX_SEGMENT_BYTES = 255
#: UTF-8 bytes of a whole shard path, query included.
MAX_PATH_BYTES = 8192
#: Groups, weights and shard paths in one manifest.
MAX_GROUPS = 100_000
MAX_WEIGHTS = 1_000_000
MAX_PATHS = 1_000_000

FORMATS = ("layers-model", "graph-model")
WEIGHT_GROUPS = ("model", "optimizer")
_STRING_KEYS = ("format", "generatedBy", "convertedBy")
_OBJECT_KEYS = (
    "signature",
    "userDefinedMetadata",
    "modelInitializer",
    "initializerSignature",
    "trainingConfig",
)
_ENTRY_KEYS = frozenset(("name", "shape", "dtype", "group", "quantization"))
_QUANT_KEYS = frozenset(("dtype", "scale", "min", "original_dtype"))


@dataclass(frozen=True)
class Finding:
    """One broken rule: a message, the weight it concerns, and its level."""

    message: str
    weight: str | None = None
    level: str = ERROR


class Findings:
    """Where the rules report: raise on the first error, or collect everything.

    Parameters
    ----------
    source : str
        The file, for messages.
    collect : bool
        Collect every finding (warnings too) in :attr:`found` instead of
        raising the first error.
    """

    def __init__(self, source: str, *, collect: bool = False):
        self.source = source
        self.collect = collect
        self.found: list[Finding] = []

    def error(
        self, message: str, weight: str | None = None, kind: type[FormatError] = ManifestError
    ) -> None:
        """Report a broken rule; raises *kind* unless collecting."""
        if not self.collect:
            where = self.source if weight is None else f"{self.source}: weight {weight!r}"
            raise kind(f"{where}: {message}")
        self.found.append(Finding(message, weight))

    def warning(self, message: str, weight: str | None = None) -> None:
        """Report something tolerated (kept only when collecting)."""
        if self.collect:
            self.found.append(Finding(message, weight, WARNING))


# ------------------------------------------------------------------ helpers


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and value - value == 0  # finite


def _preview(value: Any, limit: int = 80) -> str:
    """A short repr of an untrusted value (huge integers are not converted)."""
    if type(value) is int and value.bit_length() > 200:
        return f"<an integer of about {int(value.bit_length() * 0.30103) + 1} digits>"
    if isinstance(value, list):
        items = [_preview(v, limit) for v in value[:8]]
        text = "[" + ", ".join(items) + (", …" if len(value) > 8 else "") + "]"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def too_deep(value: Any, limit: int) -> bool:
    """True if *value* nests lists and objects more than *limit* levels deep."""
    if type(value) is not dict and type(value) is not list:
        return False
    stack = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        if depth > limit:
            return True
        for child in item.values() if type(item) is dict else item:
            if type(child) is dict or type(child) is list:
                push((child, depth + 1))
    return False


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def shape_elements(shape: Any) -> int | None:
    """Elements of *shape*, or None unless it is a list of bounded non-negative integers."""
    if type(shape) is not list or len(shape) > MAX_RANK:
        return None
    for d in shape:
        if type(d) is not int or d < 0 or d > MAX_DIMENSION:
            return None
    if 0 in shape:
        return 0
    size = 1
    for d in shape:
        size *= d
        if size > MAX_ELEMENTS:
            return None
    return size


def plain_name(name: Any) -> bool:
    """A weight name the rules accept: a non-empty string of bounded length."""
    return type(name) is str and len(name) > 0 and _utf8_len(name) <= MAX_NAME_BYTES


def _path_problem(path: Any) -> str | None:
    if type(path) is not str or not path:
        return "must be a non-empty string"
    if "\0" in path:
        return "contains a NUL character"
    size = _utf8_len(path)
    if size > MAX_PATH_BYTES:
        return f"is {size} bytes long, more than {MAX_PATH_BYTES}"
    bare = path.split("?", 1)[0].split("#", 1)[0]
    for segment in bare.split("/"):
        size = _utf8_len(segment)
        if size > MAX_SEGMENT_BYTES:
            return (
                f"has a name of {size} bytes ({_preview(segment, 40)}), more than "
                f"{MAX_SEGMENT_BYTES}"
            )
    return None


def plain_paths(paths: Any) -> bool:
    """A list of shard paths the rules accept (duplicates aside)."""
    return (
        type(paths) is list
        and len(paths) <= MAX_PATHS
        and all(_path_problem(p) is None for p in paths)
    )


# -------------------------------------------------------------------- rules


def _check_shape(shape: Any, name: str, report: Findings) -> int | None:
    """Elements of a valid shape, else report why and return None."""
    size = shape_elements(shape)
    if size is not None:
        return size
    if type(shape) is not list or any(type(d) is not int for d in shape):
        report.error(f"shape must be a list of integers, got {_preview(shape)}", name)
    elif any(d < 0 for d in shape):
        report.error(f"negative dimension in shape {_preview(shape)}", name)
    elif len(shape) > MAX_RANK:
        report.error(f"shape has {len(shape)} dimensions, more than {MAX_RANK}", name)
    elif any(d > MAX_DIMENSION for d in shape):
        i = next(i for i, d in enumerate(shape) if d > MAX_DIMENSION)
        report.error(f"dimension {i} of the shape is {_preview(shape[i])}, more than 2**53", name)
    else:
        report.error(f"shape {_preview(shape)} has more than 2**64 elements", name)
    return None


def _check_quantization(quant: Any, dtype: str, name: str, report: Findings) -> None:
    def fail(message: str) -> None:
        report.error(message, name, QuantizationError)

    if type(quant) is not dict:
        fail("'quantization' must be an object")
        return
    qdtype = quant.get("dtype")
    if type(qdtype) is not str or qdtype not in QUANTIZED_SIZES:
        fail(
            f"unknown quantization dtype {_preview(qdtype)}; "
            "TF.js supports 'uint8', 'uint16' and 'float16'"
        )
        return
    if qdtype == "float16":
        if dtype != "float32":
            fail(
                f"float16 quantization only supports float32 weights, not {dtype} "
                "(TF.js rejects it)"
            )
    else:
        if dtype not in ("float32", "int32"):
            fail(f"TF.js has no {qdtype} quantization for {dtype} weights")
        if "min" not in quant or "scale" not in quant:
            fail(f"quantization {qdtype} needs both 'min' and 'scale'")
        elif not (_is_number(quant["min"]) and _is_number(quant["scale"])):
            fail(
                "quantization 'min'/'scale' must be finite numbers, got "
                f"min={_preview(quant['min'])} scale={_preview(quant['scale'])}"
            )
    for key, value in quant.items():
        if key not in _QUANT_KEYS and too_deep(value, MAX_DEPTH - 6):
            fail(f"quantization key {_preview(key)} is nested more than {MAX_DEPTH} levels deep")


def check_weight_entry(entry: Any, where: str, report: Findings) -> str | None:
    """Check one ``weightsManifest[*].weights[*]`` entry; its name, if it has a usable one.

    Returns None when the entry has no usable name (nothing else is checked then).
    """
    if type(entry) is not dict:
        report.error(f"{where} is not an object")
        return None
    name = entry.get("name")
    if not plain_name(name):
        if type(name) is str and name:
            report.error(
                f"{where}.name is {_utf8_len(name)} bytes long ({_preview(name, 40)}), "
                f"more than {MAX_NAME_BYTES}"
            )
        else:
            report.error(f"{where} has no string 'name'")
        return None
    _check_shape(entry.get("shape"), name, report)
    dtype = entry.get("dtype")
    quant = entry.get("quantization")
    if type(dtype) is str and dtype in QUANTIZED_SIZES and quant is None:
        report.error(
            f"dtype {dtype} without quantization: TF.js cannot load it "
            "('Unsupported dtype'); store it as int32/float32 or quantize it",
            name,
        )
    elif type(dtype) is not str or dtype not in DTYPES:
        report.error(f"unknown dtype {_preview(dtype)}; TF.js supports {', '.join(DTYPES)}", name)
    elif quant is not None:
        _check_quantization(quant, dtype, name, report)
    group = entry.get("group")
    if group is not None:
        if type(group) is not str:
            report.error("'group' must be a string", name)
        elif group not in WEIGHT_GROUPS:
            report.warning(
                f"'group' is {_preview(group)}; TF.js knows 'model' and 'optimizer'", name
            )
    if len(entry) > 3:
        for key, value in entry.items():
            if key not in _ENTRY_KEYS and too_deep(value, MAX_DEPTH - 5):
                report.error(
                    f"key {_preview(key)} is nested more than {MAX_DEPTH} levels deep", name
                )
    return name


def _nonempty(entry: Any) -> bool:
    """Whether an entry needs bytes (entries that are not understood count as needing them)."""
    if type(entry) is not dict:
        return True
    size = shape_elements(entry.get("shape"))
    return size is None or size > 0


def check_weights_manifest(manifest: Any, report: Findings) -> None:
    """Check a ``weightsManifest`` list (also a legacy weights_manifest.json)."""
    if type(manifest) is not list:
        report.error(f"'weightsManifest' must be a list of groups, got {type(manifest).__name__}")
        return
    if len(manifest) > MAX_GROUPS:
        report.error(f"'weightsManifest' has {len(manifest)} groups, more than {MAX_GROUPS}")
        return
    names: dict[str, int] = {}
    paths_seen: dict[str, str] = {}
    weights_total = paths_total = 0
    for g, group in enumerate(manifest):
        where = f"weightsManifest[{g}]"
        if type(group) is not dict:
            report.error(f"{where} is not an object")
            continue
        paths = group.get("paths")
        if type(paths) is not list:
            report.error(f"{where}.paths must be a list of strings")
            paths = []
        paths_total += len(paths)
        if paths_total > MAX_PATHS:
            report.error(f"{where}.paths: more than {MAX_PATHS} shard paths in the manifest")
            return
        for p, path in enumerate(paths):
            problem = _path_problem(path)
            if problem is not None:
                report.error(f"{where}.paths[{p}] {problem}")
                continue
            if "?" in path or "#" in path:
                report.warning(
                    f"shard path {path!r} has a query or fragment; TF.js sends it to the "
                    "server, which may not serve that name"
                )
            key = posixpath.normpath(path.split("?", 1)[0])
            if key in paths_seen:
                report.error(f"shard path {path!r} is listed twice ({paths_seen[key]})")
            paths_seen[key] = f"{where}.paths[{p}]"
        weights = group.get("weights")
        if type(weights) is not list:
            report.error(
                f"{where} has no 'weights' list"
                if weights is None
                else f"{where}.weights must be a list"
            )
            continue
        weights_total += len(weights)
        if weights_total > MAX_WEIGHTS:
            report.error(f"{where}.weights: more than {MAX_WEIGHTS} weights in the manifest")
            return
        nonempty = False
        for w, entry in enumerate(weights):
            name = check_weight_entry(entry, f"{where}.weights[{w}]", report)
            nonempty = nonempty or _nonempty(entry)
            if name is None:
                continue
            if name in names:
                report.error(
                    f"duplicate weight name {name!r} (groups {names[name] + 1} and {g + 1})", name
                )
            names[name] = g
        if nonempty and not paths:
            report.error(f"{where} has weights but no shard paths")
        for key, value in group.items():
            if key not in ("paths", "weights") and too_deep(value, MAX_DEPTH - 3):
                report.error(
                    f"{where} key {_preview(key)} is nested more than {MAX_DEPTH} levels deep"
                )


def check_model_json(doc: Any, report: Findings, *, require_topology: bool = True) -> None:
    """Check a decoded model.json object against every rule.

    Parameters
    ----------
    doc : object
        The decoded JSON.
    report : Findings
        Raises on the first error, or collects every finding.
    require_topology : bool
        A missing ``modelTopology`` is an error (else tolerated).
    """
    if not isinstance(doc, Mapping):
        report.error(f"model.json must be a JSON object, got {type(doc).__name__}")
        return
    if "modelTopology" not in doc:
        if require_topology:
            report.error("the 'modelTopology' field is missing")
    elif doc["modelTopology"] is None:
        report.warning("'modelTopology' is null: only weights can load")
    fmt = doc.get("format")
    for key in _STRING_KEYS:
        value = doc.get(key)
        if value is not None and type(value) is not str:
            report.error(f"'{key}' must be a string")
    if type(fmt) is str and fmt not in FORMATS:
        report.warning(f"unknown format {_preview(fmt)} (expected {FORMATS})")
    for key in _OBJECT_KEYS:
        value = doc.get(key)
        if value is not None and type(value) is not dict:
            report.error(f"'{key}' must be a JSON object")
    for key, value in doc.items():
        if key != "weightsManifest" and too_deep(value, MAX_DEPTH - 1):
            report.error(f"{_preview(key, 60)} is nested more than {MAX_DEPTH} levels deep")
    if "weightsManifest" not in doc:
        report.error("the 'weightsManifest' field is missing")
        return
    check_weights_manifest(doc["weightsManifest"], report)
