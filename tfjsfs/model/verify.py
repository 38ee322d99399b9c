"""Deep checks of a bundle: is it well formed, complete, and loadable by TF.js?

:func:`verify_model` reports *every* problem it finds (not just the first),
each naming the file and, where there is one, the weight:

* model.json schema: JSON object, ``modelTopology`` and ``weightsManifest``,
  field types, weight entries (name, shape, dtype), unique names;
* TF.js loadability: dtype/quantization combinations TF.js rejects (``float16``
  only for float32, ``uint8``/``uint16`` only for float32/int32 and needing
  ``min``/``scale``), unquantized ``uint8``/``uint16``/``float16`` dtypes,
  trailing bytes in a group other than the last (TF.js decodes with one running
  offset across groups, so every later weight would be misread);
* safety: shard paths that are absolute, escape the model folder or name
  another host;
* completeness: every shard present, every group's byte count equal to what
  its weights need (short groups name the first weight that overruns);
* values (``values=True``): every weight decodes, and float weights are finite.

Problems have a ``level``: ``"error"`` (the bundle is broken or TF.js cannot
load it) or ``"warning"`` (tolerated, e.g. trailing bytes at the very end).
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from fsspec.asyn import get_loop, sync

from .._util.concurrency import gather_bounded
from ..errors import ShardMissingError, TFJSError, UnsafePathError, WeightDataError
from ..format.codec import decode_weight, string_byte_length
from ..format.manifest import (
    DTYPE_SIZES,
    QUANTIZED_SIZES,
    ModelJSON,
    WeightIndex,
    parse_json,
)
from ..io.fetch import locate_model_json
from ..io.location import listing_key, locate_shard
from ..io.resolve import resolve
from ..io.shardurls import resolve_shard_paths

__all__ = ["Problem", "check_bundle", "check_manifest", "verify_model", "verify_model_async"]

ERROR, WARNING = "error", "warning"
FORMATS = ("layers-model", "graph-model")
_OBJECT_KEYS = (
    "signature",
    "userDefinedMetadata",
    "modelInitializer",
    "initializerSignature",
    "trainingConfig",
)
_INFO_CONCURRENCY = 32


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a bundle.

    Attributes
    ----------
    file : str
        The file concerned (model.json or a shard).
    message : str
    weight : str or None
        The weight concerned, if any.
    level : {"error", "warning"}
    """

    file: str
    message: str
    weight: str | None = None
    level: str = ERROR

    def __str__(self) -> str:
        where = f"{self.file}: weight {self.weight!r}" if self.weight else self.file
        tag = "" if self.level == ERROR else f"{self.level}: "
        return f"{tag}{where}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        """A plain dict (for ``--json`` output and data frames)."""
        return {
            "file": self.file,
            "weight": self.weight,
            "level": self.level,
            "message": self.message,
        }


# ------------------------------------------------------------------ schema


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_quantization(q: Any, dtype: str, add) -> None:
    if not isinstance(q, dict):
        add("'quantization' must be an object")
        return
    qd = q.get("dtype")
    if qd not in QUANTIZED_SIZES:
        add(f"unknown quantization dtype {qd!r}; TF.js supports 'uint8', 'uint16' and 'float16'")
        return
    if qd == "float16":
        if dtype != "float32":
            add(
                f"is quantized with float16, which TF.js supports only for float32 "
                f"weights, not {dtype}"
            )
        return
    if dtype not in ("float32", "int32"):
        add(f"TF.js has no {qd} quantization for {dtype} weights")
    if "min" not in q or "scale" not in q:
        add(f"quantization {qd} has no 'min' and 'scale' (TF.js needs both)")
    elif not (_is_number(q["min"]) and _is_number(q["scale"])):
        add(f"quantization 'min'/'scale' must be finite numbers: {q['min']!r}, {q['scale']!r}")


def _check_weight(entry: Any, where: str, seen: dict, file: str, out: list[Problem]) -> None:
    if not isinstance(entry, dict):
        out.append(Problem(file, f"{where} is not an object"))
        return
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        out.append(Problem(file, f"{where} has no string 'name'"))
        return

    def add(message: str, level: str = ERROR) -> None:
        out.append(Problem(file, message, name, level))

    if name in seen:
        add(f"duplicate weight name (also {seen[name]})")
    seen[name] = where
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(_is_int(d) for d in shape):
        add(f"shape must be a list of integers, got {shape!r}")
    elif any(d < 0 for d in shape):
        add(f"negative dimension in shape {shape}")
    dtype = entry.get("dtype")
    quant = entry.get("quantization")
    if dtype in QUANTIZED_SIZES and quant is None:
        add(
            f"dtype {dtype} without quantization: TF.js cannot load it "
            "('Unsupported dtype'); store it as int32/float32 or quantize it"
        )
    elif dtype not in (*DTYPE_SIZES, "string"):
        add(f"unknown dtype {dtype!r}; TF.js supports {', '.join((*DTYPE_SIZES, 'string'))}")
    elif quant is not None:
        _check_quantization(quant, dtype, add)
    group = entry.get("group")
    if group is not None and group not in ("model", "optimizer"):
        add(f"'group' is {group!r}; TF.js knows 'model' and 'optimizer'", WARNING)


def _check_paths(
    paths: list, where: str, file: str, seen: dict, out: list[Problem], allow_outside: bool
) -> None:
    for p, path in enumerate(paths):
        if not isinstance(path, str) or not path:
            out.append(Problem(file, f"{where}.paths[{p}] must be a non-empty string"))
            continue
        try:
            key = locate_shard("", path, kind="key", source=file, allow_outside=allow_outside)
        except UnsafePathError as exc:
            out.append(Problem(file, str(exc).split(": ", 1)[-1]))
            key = path
        if "?" in path:
            out.append(
                Problem(
                    file,
                    f"shard path {path!r} has a query; TF.js sends it to the "
                    "server, which may not serve that name",
                    level=WARNING,
                )
            )
        if key in seen:
            out.append(Problem(file, f"shard path {path!r} is listed twice ({seen[key]})"))
        seen[key] = f"{where}.paths[{p}]"


def check_manifest(
    doc: Any, file: str = "model.json", *, allow_outside: bool = False
) -> list[Problem]:
    """Schema and TF.js-loadability problems of a decoded model.json object.

    Parameters
    ----------
    doc : object
        The decoded JSON.
    file : str
        Name used in the problems.
    allow_outside : bool
        Accept shard paths outside the model folder.
    """
    out: list[Problem] = []
    if not isinstance(doc, Mapping):
        return [Problem(file, f"model.json must be a JSON object, got {type(doc).__name__}")]
    if "modelTopology" not in doc:
        out.append(Problem(file, "the 'modelTopology' field is missing"))
    elif doc["modelTopology"] is None:
        out.append(Problem(file, "'modelTopology' is null: only weights can load", level=WARNING))
    fmt = doc.get("format")
    if fmt is not None and not isinstance(fmt, str):
        out.append(Problem(file, "'format' must be a string"))
    elif fmt is not None and fmt not in FORMATS:
        out.append(Problem(file, f"unknown format {fmt!r} (expected {FORMATS})", level=WARNING))
    for key in ("generatedBy", "convertedBy"):
        if doc.get(key) is not None and not isinstance(doc.get(key), str):
            out.append(Problem(file, f"'{key}' must be a string"))
    for key in _OBJECT_KEYS:
        if doc.get(key) is not None and not isinstance(doc.get(key), dict):
            out.append(Problem(file, f"'{key}' must be a JSON object"))
    manifest = doc.get("weightsManifest")
    if "weightsManifest" not in doc:
        out.append(Problem(file, "the 'weightsManifest' field is missing"))
        return out
    if not isinstance(manifest, list):
        out.append(
            Problem(file, f"'weightsManifest' must be a list, got {type(manifest).__name__}")
        )
        return out
    names: dict[str, str] = {}
    paths_seen: dict[str, str] = {}
    for g, group in enumerate(manifest):
        where = f"weightsManifest[{g}]"
        if not isinstance(group, dict):
            out.append(Problem(file, f"{where} is not an object"))
            continue
        paths, weights = group.get("paths"), group.get("weights", [])
        if not isinstance(paths, list):
            out.append(Problem(file, f"{where}.paths must be a list of strings"))
            paths = []
        _check_paths(paths, where, file, paths_seen, out, allow_outside)
        if not isinstance(weights, list):
            out.append(Problem(file, f"{where}.weights must be a list"))
            continue
        for w, entry in enumerate(weights):
            _check_weight(entry, f"{where}.weights[{w}]", names, file, out)
        if weights and not paths and _nonempty(weights):
            out.append(Problem(file, f"{where} has weights but no shard paths"))
    return out


def _nonempty(weights: list) -> bool:
    for w in weights:
        shape = w.get("shape") if isinstance(w, dict) else None
        if not isinstance(shape, list) or not shape or all(_is_int(d) and d != 0 for d in shape):
            return True
    return False


# ----------------------------------------------------------------- shards


@dataclass
class _Located:
    json_path: str
    doc: ModelJSON
    shard_paths: list[list[str]]

    @property
    def folder(self) -> str:
        return posixpath.dirname(self.json_path)


async def _read_shard(fs: Any, path: str, expected: int, json_path: str) -> bytes:
    try:
        data = await fs._cat_file(path)
    except FileNotFoundError:
        raise ShardMissingError(f"{json_path}: weight shard {path} does not exist") from None
    if len(data) != expected:
        raise WeightDataError(
            f"weight shard {path} changed while checking: sized {expected} bytes, read {len(data)}"
        )
    return data


async def _sizes(
    fs: Any, bundle: _Located, listed: Mapping[str, int] | None
) -> dict[str, int | None]:
    """Size of every shard (None when missing): from *listed*, one ``ls``, then ``info``."""
    wanted = {p for group in bundle.shard_paths for p in group}
    sizes: dict[str, int | None] = {}
    for path in wanted:
        if listed and path in listed:
            sizes[path] = listed[path]
    if len(sizes) < len(wanted) and listed is None:
        try:
            entries = await fs._ls(bundle.folder, detail=True)
        except (FileNotFoundError, NotImplementedError, NotADirectoryError, OSError):
            entries = []
        for e in entries:
            name = listing_key(e["name"])
            if name in wanted and e.get("type") == "file" and e.get("size") is not None:
                sizes[name] = int(e["size"])

    async def one(path: str) -> None:
        try:
            info = await fs._info(path)
        except FileNotFoundError:
            sizes[path] = None
            return
        ok = info.get("type") == "file" and info.get("size") is not None
        sizes[path] = int(info["size"]) if ok else None

    await gather_bounded((one(p) for p in wanted if p not in sizes), _INFO_CONCURRENCY)
    return sizes


def _infer_missing(doc: ModelJSON, shard_paths, sizes) -> list[list[int]] | None:
    """Shard sizes with missing ones inferred from the group totals, if possible."""
    out = []
    for group, paths in zip(doc.weights_manifest, shard_paths, strict=True):
        known = [sizes.get(p) for p in paths]
        missing = [i for i, s in enumerate(known) if s is None]
        expected = group.expected_bytes
        if missing and (expected is None or len(missing) > 1):
            return None
        if missing:
            rest = expected - sum(s for s in known if s is not None)
            if rest < 0:
                return None
            known[missing[0]] = rest
        out.append(known)
    return out


def _weights_in_shard(index: WeightIndex, g: int, i: int) -> list[str]:
    return [
        name
        for name, loc in index.locations.items()
        if loc.group == g and any(seg[0] == i for seg in loc.segments)
    ]


async def check_bundle(
    fs: Any,
    json_path: str,
    *,
    raw: bytes | None = None,
    listed: Mapping[str, int] | None = None,
    values: bool = False,
    allow_outside: bool = False,
    concurrency: int = 8,
) -> list[Problem]:
    """Every problem of the bundle whose model JSON is *json_path* on *fs*.

    Parameters
    ----------
    fs : fsspec.asyn.AsyncFileSystem
    json_path : str
        Inner path of the model JSON.
    raw : bytes, optional
        model.json bytes already read.
    listed : mapping, optional
        Known file sizes by normalised inner path (from a recursive listing);
        shards not in it are looked up with ``info``.
    values : bool
        Also decode every weight and check float values are finite.
    allow_outside : bool
        Accept shard paths outside the model folder.
    """
    if raw is None:
        try:
            raw = bytes(await fs._cat_file(json_path))
        except FileNotFoundError:
            return [Problem(json_path, "model JSON does not exist")]
    try:
        decoded = parse_json(raw, json_path)
    except TFJSError as exc:
        return [Problem(json_path, str(exc).split(": ", 1)[-1])]
    problems = check_manifest(decoded, json_path, allow_outside=allow_outside)
    if any(p.level == ERROR for p in problems):
        return problems
    try:
        doc = ModelJSON.parse(decoded, json_path)
        shard_paths = resolve_shard_paths(
            doc, json_path, allow_outside=allow_outside, carry_query=False
        )
    except TFJSError as exc:
        return [*problems, Problem(json_path, str(exc).split(": ", 1)[-1])]
    bundle = _Located(json_path, doc, shard_paths)
    sizes = await _sizes(fs, bundle, listed)
    missing = sorted(p for p, s in sizes.items() if s is None)
    if missing:
        inferred = _infer_missing(doc, shard_paths, sizes)
        index = None
        if inferred is not None:
            try:
                index = WeightIndex(doc.weights_manifest, inferred, json_path)
            except (TFJSError, ValueError):
                index = None
        for g, paths in enumerate(shard_paths):
            for i, path in enumerate(paths):
                if sizes[path] is not None:
                    continue
                names = _weights_in_shard(index, g, i) if index else []
                weights = [w.name for w in doc.weights_manifest[g].weights]
                first = names[0] if names else (weights[0] if weights else None)
                held = f"; it holds {', '.join(map(repr, names))}" if len(names) > 1 else ""
                problems.append(
                    Problem(path, f"weight shard is missing (group {g + 1}){held}", first)
                )
        return problems
    group_sizes = [[sizes[p] for p in paths] for paths in shard_paths]
    problems += await _check_bytes(fs, bundle, group_sizes, values, concurrency)
    return problems


async def _check_bytes(
    fs: Any, bundle: _Located, group_sizes: list[list[int]], values: bool, concurrency: int
) -> list[Problem]:
    """Byte counts per group (strings walked), then values, one group at a time."""
    doc, json_path = bundle.doc, bundle.json_path
    problems: list[Problem] = []
    last = len(doc.weights_manifest) - 1
    for g, group in enumerate(doc.weights_manifest):
        sizes = group_sizes[g]
        total = sum(sizes)
        has_strings = any(s.byte_length is None for s in group.weights)
        buffer = None
        if values or has_strings:
            jobs = [
                _read_shard(fs, path, size, json_path)
                for path, size in zip(bundle.shard_paths[g], sizes, strict=True)
            ]
            try:
                buffer = b"".join(await gather_bounded(jobs, concurrency))
            except (TFJSError, OSError) as exc:
                problems.append(Problem(json_path, str(exc).split(": ", 1)[-1]))
                continue
        group_problems, offsets = _walk_group(json_path, g, group, sizes, buffer)
        problems += group_problems
        if offsets is None:
            continue
        trailing = total - (offsets[-1][1] if offsets else 0)
        if trailing > 0:
            tail = bundle.shard_paths[g][-1] if bundle.shard_paths[g] else json_path
            if g == last:
                problems.append(
                    Problem(
                        tail, f"{trailing} trailing bytes after the last weight", level=WARNING
                    )
                )
            else:
                after = doc.weights_manifest[g + 1].weights
                problems.append(
                    Problem(
                        tail,
                        f"group {g + 1} has {trailing} trailing bytes; TF.js decodes all "
                        "groups with one running offset, so the weights of later groups "
                        "would be misread",
                        after[0].name if after else None,
                    )
                )
        if values and buffer is not None:
            problems += _check_values(json_path, group, buffer, offsets)
    return problems


def _walk_group(json_path, g, group, sizes, buffer):
    """(problems, [(start, end)] of each weight) for one group; offsets None if short."""
    view = memoryview(buffer) if buffer is not None else None
    total, offset, offsets = sum(sizes), 0, []
    for spec in group.weights:
        nbytes = spec.byte_length
        if nbytes is None:
            try:
                nbytes = string_byte_length(view[offset:], spec.size, where="")
            except WeightDataError as exc:
                msg = str(exc).split(": ", 1)[-1]
                return [Problem(json_path, f"group {g + 1}: {msg}", spec.name)], None
        end = offset + nbytes
        if end > total:
            shards = ", ".join(f"{p} ({s} bytes)" for p, s in zip(group.paths, sizes, strict=True))
            expected = group.expected_bytes
            need = f"the group needs {expected} bytes, " if expected is not None else ""
            return [
                Problem(
                    json_path,
                    f"needs bytes {offset}..{end} of group {g + 1} but its shards hold only "
                    f"{total} ({need}short by {end - total}; shards: {shards or 'none'})",
                    spec.name,
                )
            ], None
        offsets.append((offset, end))
        offset = end
    return [], offsets


def _check_values(json_path, group, buffer, offsets) -> list[Problem]:
    out = []
    view = memoryview(buffer)
    for spec, (start, end) in zip(group.weights, offsets, strict=True):
        try:
            value = decode_weight(spec, view[start:end])
        except TFJSError as exc:
            out.append(Problem(json_path, str(exc).split(": ", 1)[-1], spec.name))
            continue
        if value.dtype.kind in "fc" and value.size:
            bad = ~np.isfinite(value)
            count = int(bad.sum())
            if count:
                first = np.unravel_index(int(np.argmax(bad)), value.shape) if value.ndim else ()
                out.append(
                    Problem(
                        json_path,
                        f"{count} of {value.size} values are not finite "
                        f"(first at index {list(map(int, first))})",
                        spec.name,
                    )
                )
    return out


# ------------------------------------------------------------------- API


async def verify_model_async(
    url: Any,
    *,
    values: bool = False,
    allow_outside: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> list[Problem]:
    """Coroutine twin of :func:`verify_model`."""
    fs, path = resolve(url, **dict(storage_options or {}))
    try:
        json_path = await locate_model_json(fs, path)
    except TFJSError as exc:
        return [Problem(path, str(exc))]
    return await check_bundle(fs, json_path, values=values, allow_outside=allow_outside)


def verify_model(
    url: Any,
    *,
    values: bool = False,
    allow_outside: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> list[Problem]:
    """Check a bundle deeply; return every problem found (empty when sound).

    Parameters
    ----------
    url : str or os.PathLike
        A model folder or model JSON on any fsspec store.
    values : bool
        Also read every weight: it must decode, and float weights must be
        finite (no NaN or infinity).
    allow_outside : bool
        Accept shard paths outside the model folder.
    storage_options : dict, optional

    Returns
    -------
    list of Problem
        Errors (broken, or not loadable by TF.js) and warnings (tolerated).

    Examples
    --------
    >>> problems = verify_model("s3://bucket/models/mnist")  # doctest: +SKIP
    >>> ok = not [p for p in problems if p.level == "error"]  # doctest: +SKIP
    """
    return sync(
        get_loop(),
        verify_model_async,
        url,
        values=values,
        allow_outside=allow_outside,
        storage_options=storage_options,
    )


def errors(problems: Sequence[Problem]) -> list[Problem]:
    """Only the problems of level ``"error"``."""
    return [p for p in problems if p.level == ERROR]
