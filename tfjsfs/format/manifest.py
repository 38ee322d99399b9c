"""model.json: parsing, validation, serialisation and the weight index.

Nothing here does I/O. A manifest is untrusted input: every field is checked
before anything is sized or allocated from it, and every error names the file
and the weight.
"""

from __future__ import annotations

import bisect
import functools
import json
import math
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ManifestError, WeightDataError
from .dtypes import DTYPE_SIZES, DTYPES, QUANTIZED_SIZES
from .rules import (
    MAX_DEPTH,
    MAX_INT_DIGITS,
    Findings,
    check_model_json,
    check_weight_entry,
    check_weights_manifest,
    plain_paths,
)

__all__ = [
    "DTYPES",
    "DTYPE_SIZES",
    "QUANTIZED_SIZES",
    "ModelJSON",
    "Quantization",
    "WeightGroup",
    "WeightIndex",
    "WeightSpec",
    "dumps_compact",
    "manifest_paths",
    "parse_json",
    "short_group_error",
]


# model.json keys in the order TF.js's getModelJSONForModelArtifacts writes them.
_KEYS = (
    ("modelTopology", "model_topology"),
    ("format", "format"),
    ("generatedBy", "generated_by"),
    ("convertedBy", "converted_by"),
    ("weightsManifest", "weights_manifest"),
    ("signature", "signature"),
    ("userDefinedMetadata", "user_defined_metadata"),
    ("modelInitializer", "model_initializer"),
    ("initializerSignature", "initializer_signature"),
    ("trainingConfig", "training_config"),
)


def js_number(value: float) -> str:
    """Format a float as JavaScript's ``Number.prototype.toString`` does."""
    if not math.isfinite(value):
        return "null"  # JSON.stringify turns NaN and infinities into null
    if value == 0:
        return "0"
    text = repr(abs(value))
    mantissa, _, exp = text.partition("e")
    point = mantissa.find(".")
    digits = mantissa.replace(".", "")
    n = (point if point >= 0 else len(mantissa)) + int(exp or 0)
    stripped = digits.lstrip("0")
    n -= len(digits) - len(stripped)
    digits = stripped.rstrip("0") or "0"
    k = len(digits)
    sign = "-" if value < 0 else ""
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{sign}{head}e{'+' if e > 0 else '-'}{abs(e)}"


#: The C encoder with JSON.stringify's separators and escapes.
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def dumps_compact(value: Any) -> bytes:
    """Serialise exactly like ``JSON.stringify``: compact, JS number format, UTF-8.

    The standard library's C encoder writes everything but the floats whose
    Python ``repr`` JavaScript spells differently (integral values, below
    1e-4 or from 1e16 on, NaN and the infinities); those go in as marked
    strings and are swapped for :func:`js_number`'s text afterwards.
    """
    numbers: list[str] = []
    mark = f"\x00{secrets.token_hex(8)}#"

    def to_js(item: Any) -> Any:
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            return item
        if isinstance(item, float):
            if item.is_integer() and abs(item) < 1e16:
                return int(item)
            if 1e-4 <= abs(item) < 1e16:  # repr writes these as JavaScript does
                return float(item)
            numbers.append(js_number(item))
            return f"{mark}{len(numbers) - 1}"
        if isinstance(item, int):
            return int(item)
        if isinstance(item, Mapping):
            return {str(key): to_js(v) for key, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [to_js(v) for v in item]
        raise TypeError(f"cannot serialise {kind.__name__} as JSON")

    text = _ENCODE(to_js(value))
    if numbers:
        quoted = _ENCODE(mark)[:-1]  # '"\u0000<nonce>#'
        head, *rest = text.split(quoted)
        if len(rest) != len(numbers):  # a string held the nonce: cannot happen by chance
            raise RuntimeError("dumps_compact: a string collides with the number marker")
        pieces = [head]
        for piece in rest:
            index, _, tail = piece.partition('"')
            pieces += [numbers[int(index)], tail]
        text = "".join(pieces)
    return text.encode()


class _LongInteger(ValueError):
    """A JSON integer with more than MAX_INT_DIGITS digits."""


def _bounded_int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS + 1:  # room for a sign
        raise _LongInteger(text[:20])
    return int(text)


#: Every ASCII digit to ``0``, every other byte to a space: a run of
#: ``MAX_INT_DIGITS + 1`` zeros in the translated text is the only way an
#: integer can be too long for :func:`_bounded_int`.
_DIGITS = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_LONG_RUN = b"0" * (MAX_INT_DIGITS + 1)


def _may_hold_long_integers(data: bytes) -> bool:
    """Whether *data* holds a run of digits too long for any accepted integer."""
    return _LONG_RUN in data.translate(_DIGITS)


def parse_json(data: bytes | str, source: str) -> Any:
    """Parse JSON text, raising :class:`ManifestError` that names *source*.

    Integers of more than ``MAX_INT_DIGITS`` digits and nesting the parser
    cannot follow are refused, saying where.
    """
    try:
        raw = bytes(data) if not isinstance(data, str) else data.encode("utf-8", "surrogatepass")
        if not isinstance(data, str):
            data = raw.decode("utf-8")
        if not _may_hold_long_integers(raw):  # no Python call per integer needed
            return json.loads(data)
        return json.loads(data, parse_int=_bounded_int)
    except _LongInteger:
        found = re.search(rf"-?\d{{{MAX_INT_DIGITS + 1},}}", data)
        digits = len(found.group().lstrip("-")) if found else MAX_INT_DIGITS + 1
        where = _where(data, found.start()) if found else ""
        raise ManifestError(
            f"{source}: an integer of {digits} digits{where}; at most {MAX_INT_DIGITS} are allowed"
        ) from None
    except RecursionError:
        raise ManifestError(
            f"{source}: JSON nested too deep (more than {MAX_DEPTH} levels are refused)"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{source}: not valid JSON ({exc})") from None
    except ValueError as exc:  # e.g. Python's own limit on integer digits
        raise ManifestError(f"{source}: not valid JSON ({exc})") from None


def manifest_paths(data: bytes | str, source: str) -> list[str]:
    """Every ``weightsManifest[].paths`` entry of model.json text, in order.

    Only the paths are checked (the rules' shard-path checks), not the
    weights: what writers and sweeps need to know which files a model.json
    names, at a fraction of a full parse's cost for large manifests.

    Raises
    ------
    ManifestError
        Not JSON, not an object, or a ``weightsManifest`` whose groups do not
        each hold a list of valid shard paths.
    """
    doc = parse_json(data, source)
    if not isinstance(doc, dict):
        raise ManifestError(
            f"{source}: model.json must be a JSON object, got {type(doc).__name__}"
        )
    groups = doc.get("weightsManifest")
    if groups is None:
        return []
    if type(groups) is not list or not all(
        type(g) is dict and plain_paths(g.get("paths")) for g in groups
    ):
        raise ManifestError(f"{source}: weightsManifest groups must each list valid shard paths")
    return [path for group in groups for path in group["paths"]]


_KEY_BEFORE = re.compile(r'"([^"\\]{1,64})"\s*:')


def _where(text: str, offset: int) -> str:
    """`` at line L column C (in 'key')`` for a character offset of JSON text."""
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    keys = _KEY_BEFORE.findall(text, max(0, offset - 4096), offset)
    return f" at line {line} column {column}" + (f" (in {keys[-1]!r})" if keys else "")


@dataclass(frozen=True)
class Quantization:
    """A weight's ``quantization`` entry.

    Parameters
    ----------
    dtype : {"uint8", "uint16", "float16"}
        Storage dtype of the quantized values.
    scale, min : float, optional
        Affine parameters (required for ``uint8``/``uint16``).
    original_dtype : str, optional
        Written by the Python converter; ignored by TF.js.
    extra : dict
        Unknown keys, kept for round trips.
    """

    dtype: str
    scale: float | None = None
    min: float | None = None
    original_dtype: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def itemsize(self) -> int:
        """Bytes per stored element."""
        return QUANTIZED_SIZES[self.dtype]

    def to_json(self) -> dict[str, Any]:
        """The manifest form, in the converter's key order."""
        out: dict[str, Any] = {"dtype": self.dtype}
        if self.min is not None:
            out["min"] = self.min
        if self.scale is not None:
            out["scale"] = self.scale
        if self.original_dtype is not None:
            out["original_dtype"] = self.original_dtype
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class WeightSpec:
    """One ``weightsManifest[*].weights[*]`` entry (TF.js ``WeightsManifestEntry``).

    Parameters
    ----------
    name : str
        Unique weight name, e.g. ``"dense_1/kernel"``.
    shape : tuple of int
        Tensor shape; ``()`` is a scalar.
    dtype : str
        Logical dtype after dequantization.
    group : str, optional
        TF.js ``WeightGroup`` (``"model"`` or ``"optimizer"``).
    quantization : Quantization, optional
    extra : dict
        Unknown keys, kept for round trips.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    group: str | None = None
    quantization: Quantization | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def size(self) -> int:
        """Number of elements (computed once)."""
        return math.prod(self.shape)

    @property
    def stored_itemsize(self) -> int | None:
        """Bytes per stored element, or None for strings."""
        if self.quantization is not None:
            return self.quantization.itemsize
        return DTYPE_SIZES.get(self.dtype)

    @property
    def byte_length(self) -> int | None:
        """Stored bytes, or None for a non-empty string tensor (variable)."""
        if self.dtype == "string":
            return 0 if self.size == 0 else None
        return self.size * self.stored_itemsize

    def to_json(self) -> dict[str, Any]:
        """The manifest form."""
        out: dict[str, Any] = {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
        }
        if self.group is not None:
            out["group"] = self.group
        if self.quantization is not None:
            out["quantization"] = self.quantization.to_json()
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, entry: Any, source: str, where: str) -> WeightSpec:
        """Validate one manifest entry (:mod:`tfjsfs.format.rules`); *where* locates it."""
        check_weight_entry(entry, where, Findings(source))
        return cls.from_checked(entry)

    @classmethod
    def from_checked(cls, entry: Mapping[str, Any]) -> WeightSpec:
        """Build from an entry the rules accepted (nothing is checked again)."""
        quant = entry.get("quantization")
        quantization = None
        if quant is not None:
            quantization = Quantization(
                quant["dtype"],
                quant.get("scale"),
                quant.get("min"),
                quant.get("original_dtype"),
                {k: v for k, v in quant.items() if k not in _QUANT_KEYS},
            )
        extra = {k: v for k, v in entry.items() if k not in _ENTRY_KEYS} if len(entry) > 3 else {}
        return cls(
            entry["name"],
            tuple(entry["shape"]),
            entry["dtype"],
            entry.get("group"),
            quantization,
            extra,
        )


_ENTRY_KEYS = frozenset(("name", "shape", "dtype", "group", "quantization"))
_QUANT_KEYS = frozenset(("dtype", "scale", "min", "original_dtype"))


def stored_bytes(specs: Iterable[WeightSpec]) -> int | None:
    """Total stored bytes of *specs*, or None when a string tensor makes it variable."""
    total = 0
    for spec in specs:
        if spec.byte_length is None:
            return None
        total += spec.byte_length
    return total


#: model.json's optional metadata fields, shared by ModelJSON and ModelArtifacts.
METADATA_FIELDS = (
    "format",
    "generated_by",
    "converted_by",
    "signature",
    "user_defined_metadata",
    "model_initializer",
    "initializer_signature",
    "training_config",
)


@dataclass(frozen=True)
class WeightGroup:
    """One ``weightsManifest`` group: ordered shard paths and the weights in them."""

    paths: tuple[str, ...]
    weights: tuple[WeightSpec, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def expected_bytes(self) -> int | None:
        """Total stored bytes, or None when a string tensor makes it variable."""
        return stored_bytes(self.weights)

    def to_json(self) -> dict[str, Any]:
        """The manifest form."""
        out = {
            "paths": list(self.paths),
            "weights": [w.to_json() for w in self.weights],
        }
        out.update(self.extra)
        return out


def parse_weights_manifest(manifest: Any, source: str) -> tuple[WeightGroup, ...]:
    """Validate a ``weightsManifest`` list (also the legacy weights_manifest.json).

    Raises
    ------
    ManifestError, QuantizationError
        On the first rule of :mod:`tfjsfs.format.rules` it breaks.
    """
    check_weights_manifest(manifest, Findings(source))
    return _groups(manifest)


def _groups(manifest: list) -> tuple[WeightGroup, ...]:
    """Groups from a manifest the rules accepted."""
    out = []
    for group in manifest:
        specs = tuple(WeightSpec.from_checked(entry) for entry in group["weights"])
        extra = {k: v for k, v in group.items() if k not in ("paths", "weights")}
        out.append(WeightGroup(tuple(group["paths"]), specs, extra))
    return tuple(out)


_MISSING = object()


@dataclass
class ModelJSON:
    """A parsed model.json (TF.js ``ModelJSON``), unknown keys included.

    Keys present with a JSON ``null`` stay ``null`` on a round trip; absent
    keys stay absent.
    """

    model_topology: Any = None
    weights_manifest: tuple[WeightGroup, ...] = ()
    format: str | None = None
    generated_by: str | None = None
    converted_by: str | None = None
    signature: dict | None = None
    user_defined_metadata: dict | None = None
    model_initializer: dict | None = None
    initializer_signature: dict | None = None
    training_config: dict | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    null_keys: frozenset[str] = frozenset()

    @classmethod
    def parse(
        cls,
        data: bytes | str | Mapping[str, Any],
        source: str = "model.json",
        *,
        require_topology: bool = True,
    ) -> ModelJSON:
        """Parse and validate model.json text or an already decoded object.

        Raises
        ------
        ManifestError, QuantizationError
            On the first rule of :mod:`tfjsfs.format.rules` the document
            breaks: bad or too deeply nested JSON, a non-object document, a
            missing ``weightsManifest`` (or ``modelTopology`` when
            *require_topology*), a bad or unbounded entry, shard path or count.
        """
        doc = data if isinstance(data, Mapping) else parse_json(data, source)
        check_model_json(doc, Findings(source), require_topology=require_topology)
        values: dict[str, Any] = {}
        nulls = set()
        for key, attr in _KEYS:
            value = doc.get(key)
            if key in doc and value is None:
                nulls.add(key)
            values[attr] = _groups(value) if key == "weightsManifest" else value
        known = {k for k, _ in _KEYS}
        extra = {k: v for k, v in doc.items() if k not in known}
        return cls(**values, extra=extra, null_keys=frozenset(nulls))

    def to_json(self) -> dict[str, Any]:
        """The model.json object, keys in TF.js's order, unknown keys last."""
        out: dict[str, Any] = {}
        for key, attr in _KEYS:
            value = getattr(self, attr)
            if key == "weightsManifest":
                out[key] = [g.to_json() for g in value]
            elif value is not None or key in self.null_keys:
                out[key] = value
        out.update(self.extra)
        return out

    def dumps(self) -> bytes:
        """model.json bytes, compact as TF.js writes them."""
        return dumps_compact(self.to_json())

    @property
    def weight_specs(self) -> list[WeightSpec]:
        """All groups' weights, flattened in manifest order (TF.js ``weightSpecs``)."""
        return [w for g in self.weights_manifest for w in g.weights]


@dataclass(frozen=True)
class WeightLocation:
    """Where one weight's bytes live.

    ``start``/``end`` are offsets within the group's byte stream; ``segments``
    are ``(shard_index, start, end)`` triples within the group's shards.
    """

    spec: WeightSpec
    group: int
    start: int
    end: int
    segments: tuple[tuple[int, int, int], ...]

    @property
    def nbytes(self) -> int:
        """Stored byte count."""
        return self.end - self.start


class WeightIndex:
    """Each weight's byte segments across shards, per group.

    Built from the manifest and the actual shard sizes. String tensors have a
    variable length: pass their byte lengths in *string_lengths* (found by
    walking their length prefixes, :func:`tfjsfs.format.codec.string_byte_length`);
    a weight after an unresolved string has no location yet.

    Parameters
    ----------
    groups : sequence of WeightGroup
    shard_sizes : sequence of sequence of int
        Actual byte size of every shard, per group.
    source : str
        The model.json name, for messages.
    string_lengths : mapping, optional
        Byte length of string weights, by name.

    Raises
    ------
    WeightDataError
        When a group's shards hold fewer bytes than its weights need; the
        message names the first weight that overruns, the shard and the counts.
    """

    def __init__(
        self,
        groups: Sequence[WeightGroup],
        shard_sizes: Sequence[Sequence[int]],
        source: str = "model.json",
        string_lengths: Mapping[str, int] | None = None,
    ):
        if len(groups) != len(shard_sizes):
            raise ValueError("one list of shard sizes per group is needed")
        self.groups = tuple(groups)
        self.shard_sizes = tuple(tuple(s) for s in shard_sizes)
        self.source = source
        self.locations: dict[str, WeightLocation] = {}
        self.unresolved: list[str] = []
        self.trailing: list[tuple[int, int]] = []  # (group, extra bytes)
        lengths = dict(string_lengths or {})
        for g, group in enumerate(self.groups):
            self._index_group(g, group, lengths)

    def _index_group(self, g: int, group: WeightGroup, lengths: dict) -> None:
        sizes = self.shard_sizes[g]
        if len(sizes) != len(group.paths):
            raise ValueError(f"group {g + 1}: {len(group.paths)} paths, {len(sizes)} sizes")
        bounds = [0]
        for size in sizes:
            bounds.append(bounds[-1] + size)
        total = bounds[-1]
        offset = 0
        for n, spec in enumerate(group.weights):
            nbytes = spec.byte_length
            if nbytes is None:
                nbytes = lengths.get(spec.name)
            if nbytes is None:
                self.unresolved.extend(w.name for w in group.weights[n:])
                return
            end = offset + nbytes
            if end > total:
                raise short_group_error(
                    self.source,
                    g,
                    spec.name,
                    (offset, end),
                    group.expected_bytes,
                    group.paths,
                    self.shard_sizes[g],
                )
            segments = _segments(bounds, offset, end)
            self.locations[spec.name] = WeightLocation(spec, g, offset, end, segments)
            offset = end
        if total > offset:
            self.trailing.append((g, total - offset))

    def __getitem__(self, name: str) -> WeightLocation:
        try:
            return self.locations[name]
        except KeyError:
            raise KeyError(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self.locations

    def problems(self) -> list[str]:
        """Tolerated irregularities (trailing bytes), one message each."""
        out = []
        for g, extra in self.trailing:
            last = self.groups[g].paths[-1] if self.groups[g].paths else "?"
            out.append(
                f"{self.source}: group {g + 1} has {extra} trailing bytes "
                f"after its last weight (last shard {last})"
            )
        return out


def short_group_error(
    source: str,
    g: int,
    name: str,
    span: tuple[int, int],
    expected: int | None,
    paths: Sequence[str],
    sizes: Sequence[int],
) -> WeightDataError:
    """Group *g*'s shards (*paths*, of *sizes* bytes) end before weight *name*'s
    bytes ``span`` do: the error naming the weight, the counts and every shard."""
    start, end = span
    total = sum(sizes)
    shards = ", ".join(f"{p} ({s} bytes)" for p, s in zip(paths, sizes, strict=True))
    need = f"expected {expected} bytes, " if expected is not None else ""
    return WeightDataError(
        f"{source}: weight {name!r} needs bytes {start}..{end} of group {g + 1} but its "
        f"shards hold only {total} bytes ({need}short by {end - total}; shards: {shards})"
    )


def _segments(bounds: list[int], start: int, end: int) -> tuple[tuple[int, int, int], ...]:
    """Split group range [start, end) into per-shard (index, start, end) pieces."""
    if start == end:
        return ()
    out = []
    i = bisect.bisect_right(bounds, start) - 1
    while start < end:
        stop = min(end, bounds[i + 1])
        if stop > start:
            out.append((i, start - bounds[i], stop - bounds[i]))
        start = stop
        i += 1
    return tuple(out)


def expected_group_sizes(groups: Iterable[WeightGroup]) -> list[int | None]:
    """Each group's expected byte total (None where strings make it variable)."""
    return [g.expected_bytes for g in groups]
