"""model.json's weights as compact per-group columns, for whole loads.

A whole load needs four facts per weight: its name, dtype, shape and where
its bytes start in the group. :func:`plain_layout` reads them from a parsed
model.json in one pass, validating as it goes, into a few flat columns per
group (:class:`GroupLayout`): one string holding every name, and ``array``
columns of name ends, dimensions and byte offsets. The columns share no
object with the parsed document, so the document (several times the size of
its text for tens of thousands of weights) can be dropped as a whole and its
memory returned before the weights buffer is allocated.

Only plain manifests are read this way: every entry has exactly ``name``,
``shape`` and ``dtype`` (and optionally a string ``group``), of a fixed-size
dtype. Anything else (strings, quantization, unknown keys, a rule broken)
gives None, and callers use the validating
:class:`~tfjsfs.format.manifest.ModelJSON`, which also says what is wrong.

:func:`parse_model_json` turns the text into the document, with orjson when
it is installed, else with the standard library (same result, same bounds).
"""

from __future__ import annotations

import itertools
import posixpath
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import ManifestError
from .dtypes import DTYPE_SIZES
from .manifest import parse_json
from .rules import (
    MAX_GROUPS,
    MAX_NAME_BYTES,
    MAX_PATHS,
    MAX_WEIGHTS,
    plain_paths,
    shape_elements,
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


def _ends(lengths: Iterator[int]) -> array:
    """``[0, l0, l0 + l1, ...]`` as an ``array("q")``."""
    out = array("q", [0])
    out.extend(itertools.accumulate(lengths))
    return out


@dataclass(eq=False)
class GroupLayout:
    """Every weight of one plain group, column by column.

    Weight ``i`` is named ``names_text[name_ends[i]:name_ends[i + 1]]``, has
    TF.js dtype ``dtypes[i]`` and the dimensions
    ``dims[dim_ends[i]:dim_ends[i + 1]]``, and is stored at bytes
    ``offsets[i]:offsets[i + 1]`` of the group. Every ``array`` column holds
    one more entry than there are weights, starting at 0.
    """

    names_text: str
    name_ends: array
    dtypes: list[str]
    dims: array
    dim_ends: array
    offsets: array

    @property
    def nbytes(self) -> int:
        """The group's weight bytes."""
        return self.offsets[-1]

    def __len__(self) -> int:
        return len(self.dtypes)

    def name(self, i: int) -> str:
        """The name of weight *i*."""
        return self.names_text[self.name_ends[i] : self.name_ends[i + 1]]

    @property
    def names(self) -> list[str]:
        """Every weight's name, in manifest order (made on each call)."""
        text, ends = self.names_text, self.name_ends
        return [text[ends[i] : ends[i + 1]] for i in range(len(self.dtypes))]

    def shape(self, i: int) -> tuple[int, ...]:
        """The shape of weight *i*."""
        return tuple(self.dims[self.dim_ends[i] : self.dim_ends[i + 1]])

    def weights(self) -> Iterator[tuple[str, str, tuple[int, ...], int, int]]:
        """``(name, dtype, shape, start, end)`` of every weight, in manifest order."""
        text, ends, dtypes = self.names_text, self.name_ends, self.dtypes
        dims, dim_ends, offsets = self.dims, self.dim_ends, self.offsets
        for i in range(len(dtypes)):
            yield (
                text[ends[i] : ends[i + 1]],
                dtypes[i],
                tuple(dims[dim_ends[i] : dim_ends[i + 1]]),
                offsets[i],
                offsets[i + 1],
            )


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
    sizes = {dtype: (dtype, size) for dtype, size in DTYPE_SIZES.items()}  # interned names
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
            names: list[str] = []
            dtypes: list[str] = []
            dims = array("q")
            dim_ends = array("q", [0])
            offsets = array("q", [0])
            offset = 0
            for entry in weights:
                name, kind, shape = entry["name"], sizes.get(entry["dtype"]), entry["shape"]
                if (
                    kind is None
                    or type(name) is not str
                    or not name
                    or type(shape) is not list
                    or (
                        len(entry) != 3
                        and (len(entry) != 4 or type(entry.get("group")) is not str)
                    )
                ):
                    return None
                size = shape_elements(shape)  # bounded, as the rules bound it
                if size is None:
                    return None
                names.append(name)
                dtypes.append(kind[0])
                dims.extend(shape)
                dim_ends.append(len(dims))
                offset += size * kind[1]
                if offset >= MAX_GROUP_BYTES:
                    return None
                offsets.append(offset)
            if names and offset and not paths:
                return None
            text = "".join(names)  # new memory, unless the group has one weight
            if text.isascii():
                longest = max(map(len, names), default=0)
            else:
                longest = max(len(n.encode("utf-8", "surrogatepass")) for n in names)
            if longest > MAX_NAME_BYTES:
                return None
            every_name += names
            out.append(GroupLayout(text, _ends(map(len, names)), dtypes, dims, dim_ends, offsets))
    except (AttributeError, KeyError, TypeError):  # not a dict, a missing key, unhashable
        return None
    if len(set(every_name)) != len(every_name):
        return None  # duplicate names: let the validating parser say which
    return out
