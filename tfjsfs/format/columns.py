"""model.json's weights as compact per-group columns, for whole loads.

A whole load needs four facts per weight: its name, dtype, shape and where
its bytes start in the group. :func:`plain_layout` reads them from a parsed
model.json, validating as it goes, into four columns per group
(:class:`GroupLayout`), each made in one pass at C speed: the names, the
dtypes, the shapes (one tuple per distinct shape) and an ``array`` of byte
offsets. The columns share no object with the parsed document, so the
document (several times the size of its text for tens of thousands of
weights) is freed as a whole, and its memory returned, before the weights
buffer is allocated.

Only plain manifests are read this way: every entry has exactly ``name``,
``shape`` and ``dtype`` (and optionally a string ``group``), of a fixed-size
dtype. Anything else (strings, quantization, unknown keys, a rule broken)
gives None, and callers use the validating
:class:`~tfjsfs.format.manifest.ModelJSON`, which also says what is wrong.

:func:`parse_model_json` turns the text into the document, with orjson when
it is installed, else with the standard library (same result, same bounds).
"""

from __future__ import annotations

import bisect
import itertools
import marshal
import math
import posixpath
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter, mul
from typing import Any

from ..errors import ManifestError, WeightDataError
from .dtypes import DTYPE_SIZES
from .manifest import parse_json, short_group_error
from .rules import (
    MAX_DIMENSION,
    MAX_ELEMENTS,
    MAX_GROUPS,
    MAX_NAME_BYTES,
    MAX_PATHS,
    MAX_RANK,
    MAX_WEIGHTS,
    plain_paths,
)

try:  # a faster parser for large manifests, when installed
    import orjson
except ImportError:  # pragma: no cover - optional
    orjson = None

__all__ = ["GroupLayout", "parse_model_json", "plain_layout"]

#: Group byte offsets stay below this (the validating parser places larger ones).
MAX_GROUP_BYTES = 1 << 62


def parse_model_json(data: bytes | str, source: str) -> dict:
    """model.json bytes to a dict, with orjson when available.

    Raises
    ------
    ManifestError
        Not JSON, not an object, or beyond the bounds of
        :func:`~tfjsfs.format.manifest.parse_json` (naming *source*).
    """
    if orjson is not None:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            doc = parse_json(data, source)  # NaN literals, huge ints, or a real error
    else:
        doc = parse_json(data, source)
    if not isinstance(doc, dict):
        raise ManifestError(
            f"{source}: model.json must be a JSON object, got {type(doc).__name__}"
        )
    return doc


def _ends(lengths: Iterable[int]) -> array:
    """``[0, l0, l0 + l1, ...]`` as an ``array("q")``."""
    out = array("q", [0])
    out.extend(itertools.accumulate(lengths))
    return out


@dataclass(eq=False)
class GroupLayout:
    """Every weight of one plain group, column by column.

    Weight ``i`` is ``names[i]``, of TF.js dtype ``dtypes[i]`` and shape
    ``shapes[i]``, stored at bytes ``offsets[i]:offsets[i + 1]`` of the group,
    whose shards are ``paths`` (as the manifest lists them). Names and shapes
    are objects of their own (equal shapes share one tuple), dtypes the
    interned names of :data:`~tfjsfs.format.dtypes.DTYPE_SIZES`.
    """

    names: list[str]
    dtypes: list[str]
    shapes: list[tuple[int, ...]]
    offsets: array  # typecode "q", one more entry than names
    paths: tuple[str, ...] = ()

    @property
    def nbytes(self) -> int:
        """The group's weight bytes."""
        return self.offsets[-1]

    def __len__(self) -> int:
        return len(self.names)

    def short_error(self, source: str, g: int, sizes: Sequence[int]) -> WeightDataError | None:
        """The error for shards of *sizes* bytes that end before this group's
        weights do (the weight index's own message), or None when they fit."""
        total = sum(sizes)
        if total >= self.nbytes:
            return None
        i = bisect.bisect_right(self.offsets, total) - 1  # the first weight ending past them
        span = (self.offsets[i], self.offsets[i + 1])
        return short_group_error(source, g, self.names[i], span, self.nbytes, self.paths, sizes)

    def weights(self) -> Iterator[tuple[str, str, tuple[int, ...], int, int]]:
        """``(name, dtype, shape, start, end)`` of every weight, in manifest order."""
        offsets = self.offsets
        for i, (name, dtype, shape) in enumerate(
            zip(self.names, self.dtypes, self.shapes, strict=True)
        ):
            yield name, dtype, shape, offsets[i], offsets[i + 1]


def _copy(value: Any) -> Any:
    """A deep copy of *value* (lists and tuples of strings and integers) made in
    one pass at C speed: every string and integer is a new object, sharing no
    memory with the parsed document (small integers are the interpreter's own)."""
    return marshal.loads(marshal.dumps(value))


def _own_shapes(shapes: list[list[int]]) -> list[tuple[int, ...]]:
    """One new tuple per distinct shape, for every shape in order."""
    keys = list(map(tuple, shapes))
    distinct = list(dict.fromkeys(keys))
    own = dict(zip(distinct, _copy(distinct), strict=True))
    return list(map(own.__getitem__, keys))


def plain_layout(manifest: Any) -> list[GroupLayout] | None:
    """The columns of every group of a plain ``weightsManifest``, or None.

    Plain: a list of at most ``MAX_GROUPS`` groups, each holding only shard
    paths the rules accept (none listed twice, at most ``MAX_PATHS`` in all)
    and a list of entries that have only ``name``, ``shape`` and ``dtype``
    (and optionally a string ``group``), with a non-empty name of at most
    ``MAX_NAME_BYTES`` UTF-8 bytes, a fixed-size dtype and a bounded shape; at
    most ``MAX_WEIGHTS`` weights in all, names unique, and shard paths
    wherever a group holds bytes. Anything else returns None (the
    validating parser then says what is wrong, or reads what is not plain).
    """
    if type(manifest) is not list or len(manifest) > MAX_GROUPS:
        return None
    every_name: list[str] = []
    every_path: set[str] = set()
    paths_total = 0
    out = []
    try:
        for group in manifest:
            weights, paths = group.get("weights"), group.get("paths")
            if type(weights) is not list or len(group) != 2 or not plain_paths(paths):
                return None
            paths_total += len(paths)
            every_path.update(posixpath.normpath(p.split("?", 1)[0]) for p in paths)
            if len(every_path) != paths_total or paths_total > MAX_PATHS:
                return None  # a shard listed twice, or too many
            if len(every_name) + len(weights) > MAX_WEIGHTS:
                return None
            layout = _plain_group(weights, paths)
            if layout is None:
                return None
            every_name += layout.names
            out.append(layout)
    except (AttributeError, KeyError, TypeError):  # not a dict, a missing key, unhashable
        return None
    if len(set(every_name)) != len(every_name):
        return None  # duplicate names: let the validating parser say which
    return out


_NAME, _SHAPE, _DTYPE = itemgetter("name"), itemgetter("shape"), itemgetter("dtype")
#: Each dtype's name (the interned constant) and bytes per element.
_KINDS = {dtype: (dtype, size) for dtype, size in DTYPE_SIZES.items()}


def _plain_group(weights: list, paths: list[str]) -> GroupLayout | None:
    """The columns of one group's plain *weights* list, stored in *paths*, or None.

    Column by column, each in one pass at C speed (``map``, ``set``,
    ``array``); every check is one of :func:`plain_layout`'s.

    Raises
    ------
    KeyError, TypeError
        An entry that is not an object or lacks a key (the caller returns None).
    """
    names = list(map(_NAME, weights))
    shapes = list(map(_SHAPE, weights))
    kinds = list(map(_KINDS.get, map(_DTYPE, weights)))
    lengths = set(map(len, weights))
    if lengths - {3} and (
        lengths - {3, 4} or not all(type(e.get("group")) is str for e in weights if len(e) == 4)
    ):
        return None  # keys other than name, shape, dtype and a string group
    if None in kinds or (weights and set(map(type, names)) != {str}) or not all(names):
        return None
    if weights and set(map(type, shapes)) != {list}:
        return None
    flat = list(itertools.chain.from_iterable(shapes))
    if flat and (set(map(type, flat)) != {int} or min(flat) < 0 or max(flat) > MAX_DIMENSION):
        return None
    if max(map(len, shapes), default=0) > MAX_RANK:
        return None
    elements = list(map(math.prod, shapes))
    if max(elements, default=0) > MAX_ELEMENTS:
        return None
    nbytes = list(map(mul, elements, map(itemgetter(1), kinds)))
    total = sum(nbytes)
    if total >= MAX_GROUP_BYTES or (total and not paths):
        return None
    if all(map(str.isascii, names)):
        longest = max(map(len, names), default=0)
    else:
        longest = max(len(n.encode("utf-8", "surrogatepass")) for n in names)
    if longest > MAX_NAME_BYTES:
        return None
    return GroupLayout(
        _copy(names),
        list(map(itemgetter(0), kinds)),
        _own_shapes(shapes),
        _ends(nbytes),
        tuple(_copy(paths)),
    )
