"""Deep checks of a bundle: is it well formed, complete, and loadable by TF.js?

:func:`verify_model` reports *every* problem it finds (not just the first),
each naming the file and, where there is one, the weight:

* model.json schema: the rules of :mod:`tfjsfs.format.rules`, the very ones a
  load applies (JSON object, ``modelTopology`` and ``weightsManifest``, field
  types, weight entries, unique names, bounds on nesting, rank, dimensions,
  name and path lengths and counts);
* TF.js loadability: dtype/quantization combinations TF.js rejects (``float16``
  only for float32, ``uint8``/``uint16`` only for float32/int32 and needing
  ``min``/``scale``), unquantized ``uint8``/``uint16``/``float16`` dtypes,
  trailing bytes in a group other than the last (TF.js decodes with one running
  offset across groups, so every later weight would be misread);
* safety: shard paths that are absolute, escape the model folder or name
  another host;
* completeness: every shard present, every group's byte count equal to what
  its weights need (short groups name the first weight that overruns);
* values (``values=True``): every weight decodes; float weights holding NaN
  or infinities are reported as warnings (graph models carry deliberate
  ``-inf`` constants), saying which case it is.

Problems have a ``level``: ``"error"`` (the bundle is broken or TF.js cannot
load it) or ``"warning"`` (tolerated, e.g. trailing bytes at the very end, or
non-finite values). :func:`failures` is the one rule for "broken": errors,
plus warnings in strict mode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from fsspec.asyn import get_loop, sync

from .._util.concurrency import gather_bounded
from ..errors import (
    ModelNotFoundError,
    ShardMissingError,
    TFJSError,
    UnsafePathError,
    WeightDataError,
)
from ..format.codec import decode_weight, weight_extents
from ..format.manifest import ModelJSON, WeightIndex, parse_json
from ..format.rules import ERROR, WARNING, Findings, check_model_json
from ..io.bundle import Bundle, read_json_bytes
from ..io.fetch import locate_model_json
from ..io.found import list_folder
from ..io.location import locate_shard
from ..io.resolve import resolve
from ..io.shardurls import resolve_shard_paths

__all__ = [
    "Problem",
    "check_bundle",
    "check_manifest",
    "failures",
    "verify_model",
    "verify_model_async",
]

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


def check_manifest(
    doc: Any, file: str = "model.json", *, allow_outside: bool = False
) -> list[Problem]:
    """Schema and TF.js-loadability problems of a decoded model.json object.

    The rules are those of :mod:`tfjsfs.format.rules` (the ones a load
    applies, raising on the first), all reported here, plus the safety of
    every shard path.

    Parameters
    ----------
    doc : object
        The decoded JSON.
    file : str
        Name used in the problems.
    allow_outside : bool
        Accept shard paths outside the model folder.
    """
    report = Findings(file, collect=True)
    check_model_json(doc, report, require_topology=True)
    out = [Problem(file, f.message, f.weight, f.level) for f in report.found]
    manifest = doc.get("weightsManifest") if isinstance(doc, Mapping) else None
    for group in manifest if isinstance(manifest, list) else ():
        paths = group.get("paths") if isinstance(group, dict) else None
        for path in paths if isinstance(paths, list) else ():
            if not isinstance(path, str) or not path or "\0" in path:
                continue  # reported by the rules
            try:
                locate_shard("", path, kind="key", source=file, allow_outside=allow_outside)
            except UnsafePathError as exc:
                out.append(Problem(file, str(exc).split(": ", 1)[-1]))
    return out


# ----------------------------------------------------------------- shards


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
    fs: Any, bundle: Bundle, listed: Mapping[str, int] | None
) -> dict[str, int | None]:
    """Size of every shard (None when missing): from *listed*, one ``ls``, then ``info``."""
    wanted = {p for group in bundle.shard_paths for p in group}
    sizes: dict[str, int | None] = {}
    for path in wanted:
        if listed and path in listed:
            sizes[path] = listed[path]
    if len(sizes) < len(wanted) and listed is None:
        for name, e in (await list_folder(fs, bundle.json_path)).items():
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
            raw = await read_json_bytes(fs, json_path)
        except ModelNotFoundError:
            return [Problem(json_path, "model JSON does not exist")]
        except TFJSError as exc:
            return [Problem(json_path, str(exc).split(": ", 1)[-1])]
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
    bundle = Bundle(json_path, doc, shard_paths, fs=fs)
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
    fs: Any, bundle: Bundle, group_sizes: list[list[int]], values: bool, concurrency: int
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
    total, offsets = sum(sizes), []
    try:
        for spec, start, end in weight_extents(group.weights, buffer, size=total):
            if end > total:
                shards = ", ".join(
                    f"{p} ({s} bytes)" for p, s in zip(group.paths, sizes, strict=True)
                )
                expected = group.expected_bytes
                need = f"the group needs {expected} bytes, " if expected is not None else ""
                return [
                    Problem(
                        json_path,
                        f"needs bytes {start}..{end} of group {g + 1} but its shards hold "
                        f"only {total} ({need}short by {end - total}; shards: "
                        f"{shards or 'none'})",
                        spec.name,
                    )
                ], None
            offsets.append((start, end))
    except WeightDataError as exc:  # a string's length prefixes run past the data
        spec = group.weights[len(offsets)]
        message = str(exc).removeprefix(f"weight {spec.name!r}: ")
        return [Problem(json_path, f"group {g + 1}: {message}", spec.name)], None
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
        problem = _non_finite(json_path, spec, value)
        if problem is not None:
            out.append(problem)
    return out


#: A float tensor of at most this many elements is a "tiny constant": graph
#: models hold deliberate infinities in such (thresholds, masks, pad values).
TINY_CONSTANT = 16


def _non_finite(json_path: str, spec, value: np.ndarray) -> Problem | None:
    """A warning for a float weight holding NaN or infinities, saying which case it is."""
    if value.dtype.kind not in "fc" or not value.size:
        return None
    bad = ~np.isfinite(value)
    count = int(bad.sum())
    if not count:
        return None
    first = np.unravel_index(int(np.argmax(bad)), value.shape) if value.ndim else ()
    if np.isnan(value).any():
        case = "NaN: the values are corrupt or the training run diverged"
    elif value.size > TINY_CONSTANT:
        case = "infinities in a large tensor: the training run likely diverged"
    else:
        case = (
            "infinities in a scalar or tiny constant: usually by design "
            "(a threshold, mask or padding value)"
        )
    return Problem(
        json_path,
        f"{count} of {value.size} values are not finite "
        f"(first at index {list(map(int, first))}); {case}",
        spec.name,
        WARNING,
    )


# ------------------------------------------------------------------- API


def failures(problems: Sequence[Problem], strict: bool = False) -> list[Problem]:
    """The problems that make a bundle fail: its errors, and its warnings when *strict*.

    The one rule :func:`verify_model`, ``tfjsfs verify``, :func:`tfjsfs.bulk.scan`
    and :func:`tfjsfs.bulk.verify_all` use to call a bundle broken.
    """
    return [p for p in problems if strict or p.level == ERROR]


async def verify_model_async(
    url: Any,
    *,
    values: bool = False,
    strict: bool = False,
    allow_outside: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> list[Problem]:
    """Coroutine twin of :func:`verify_model`."""
    fs, path = resolve(url, **dict(storage_options or {}))
    try:
        json_path = await locate_model_json(fs, path)
    except TFJSError as exc:
        return [Problem(path, str(exc))]
    problems = await check_bundle(fs, json_path, values=values, allow_outside=allow_outside)
    if strict:
        problems = [dataclasses.replace(p, level=ERROR) for p in problems]
    return problems


def verify_model(
    url: Any,
    *,
    values: bool = False,
    strict: bool = False,
    allow_outside: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> list[Problem]:
    """Check a bundle deeply; return every problem found (empty when sound).

    Parameters
    ----------
    url : str or os.PathLike
        A model folder or model JSON on any fsspec store.
    values : bool
        Also read every weight: it must decode (an error if not), and float
        weights holding NaN or infinities are reported (a warning saying
        which case: NaN, infinities in a large tensor, or in a tiny constant).
    strict : bool
        Report every warning as an error (as ``tfjsfs verify --strict``).
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
        strict=strict,
        allow_outside=allow_outside,
        storage_options=storage_options,
    )


def errors(problems: Sequence[Problem]) -> list[Problem]:
    """Only the problems of level ``"error"``."""
    return [p for p in problems if p.level == ERROR]
