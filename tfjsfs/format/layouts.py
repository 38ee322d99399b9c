"""File layouts of TF.js bundles: which files a save writes, and where a load looks.

=============  ==========================  ===================================
layout         model JSON                  weight files
=============  ==========================  ===================================
``converter``  ``model.json``              ``group{g}-shard{i}of{n}.bin``, cut
                                           blindly every ``shard_size`` bytes
``tfjs-node``  ``model.json``              ``weights.bin`` (one group)
``downloads``  ``<name>.json``             ``./<name>.weights.bin``
``upload``     ``model.json``              ``./model.weights.bin`` (what
                                           ``model.save('http://…')`` posts)
=============  ==========================  ===================================

Loading accepts all of these, legacy shard names without ``.bin`` included,
addressed either by the model folder or by its JSON file of any name.

Finding bundles in a listing (:func:`bundle_candidates`) needs no request: a
folder's ``model.json`` is a bundle, and so is any ``<name>.json`` that has a
weight file named after it beside it (``<name>.bin``, ``<name>.weights.bin``,
``<name>-shard1of3.bin``, ``<name>_group1-shard1of2.bin``, …). Where converter
shard names (``group1-shard1of2.bin``) sit in a folder without ``model.json``,
every ``.json`` there is a *weak* candidate, and so is ``<name>-lite.json``
beside weights of ``<name>``: only reading tells (:func:`looks_like_model`).
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import FormatError
from .artifacts import ModelArtifacts
from .manifest import WeightGroup

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "LAYOUTS",
    "BundlePlan",
    "Candidate",
    "ShardPlan",
    "bundle_candidates",
    "check_shard_size",
    "json_candidates",
    "looks_like_model",
    "plan_bundle",
    "shard_name",
]

DEFAULT_SHARD_SIZE = 4 * 1024 * 1024
LAYOUTS = ("converter", "tfjs-node", "downloads", "upload")
MODEL_JSON = "model.json"
#: a converter shard name, legacy names without ``.bin`` included
CONVERTER_SHARD = re.compile(r"^group\d+-shard\d+of\d+(\.bin)?$")
_STEM_SEPARATORS = ".-_"
_SHARD_TAIL = re.compile(r"shard\d+of\d+$")


@dataclass(frozen=True)
class ShardPlan:
    """One weight file to write: its manifest path and its byte range in ``weight_data``."""

    path: str
    group: int
    start: int
    end: int

    @property
    def file_name(self) -> str:
        """The path without a leading ``./``."""
        return self.path[2:] if self.path.startswith("./") else self.path

    @property
    def nbytes(self) -> int:
        """Bytes in the file."""
        return self.end - self.start


@dataclass(frozen=True)
class BundlePlan:
    """Every file of a bundle: shards (in write order) and the model JSON name."""

    json_name: str
    groups: tuple[WeightGroup, ...]
    shards: tuple[ShardPlan, ...]


def shard_name(group: int, index: int, count: int) -> str:
    """The converter's shard name, 1-based: ``group1-shard1of2.bin``."""
    return f"group{group + 1}-shard{index + 1}of{count}.bin"


def check_shard_size(shard_size: int | None) -> int | None:
    """*shard_size* if it is a positive integer (None: keep the source's shards).

    Raises
    ------
    FormatError
        Not an integer, or not above 0.
    """
    if shard_size is None:
        return None
    if isinstance(shard_size, bool) or not isinstance(shard_size, int):
        raise FormatError(f"shard_size must be an integer, got {shard_size!r}")
    if shard_size <= 0:
        raise FormatError(f"shard_size must be greater than 0, got {shard_size}")
    return shard_size


def plan_bundle(
    artifacts: ModelArtifacts,
    layout: str = "converter",
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    name: str = "model",
) -> BundlePlan:
    """Plan the files of *artifacts* saved in *layout*.

    Parameters
    ----------
    artifacts : ModelArtifacts
    layout : {"converter", "tfjs-node", "downloads", "upload"}
    shard_size : int
        Bytes per shard for the converter layout (blind cuts).
    name : str
        File name prefix for the downloads layout.
    """
    if layout not in LAYOUTS:
        raise FormatError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    offsets = artifacts.weight_offsets()
    specs = artifacts.weight_specs
    total = offsets[-1][1] if offsets else 0
    if layout != "converter":
        path = {
            "tfjs-node": "weights.bin",
            "downloads": f"./{name}.weights.bin",
            "upload": "./model.weights.bin",
        }[layout]
        json_name = f"{name}.json" if layout == "downloads" else MODEL_JSON
        paths = (path,) if specs else ()
        shards = (ShardPlan(path, 0, 0, total),) if specs else ()
        return BundlePlan(json_name, (WeightGroup(paths, tuple(specs)),), shards)
    check_shard_size(shard_size)
    groups, shards = [], []
    for g, (first, last) in enumerate(artifacts.group_slices()):
        start = offsets[first][0] if last > first else 0
        end = offsets[last - 1][1] if last > first else 0
        count = math.ceil((end - start) / shard_size)
        paths = []
        for i in range(count):
            path = shard_name(g, i, count)
            cut = start + i * shard_size
            shards.append(ShardPlan(path, g, cut, min(end, cut + shard_size)))
            paths.append(path)
        groups.append(WeightGroup(tuple(paths), tuple(specs[first:last])))
    return BundlePlan(MODEL_JSON, tuple(groups), tuple(shards))


@dataclass(frozen=True)
class Candidate:
    """A file of a listing that may be a bundle's model JSON.

    Attributes
    ----------
    path : str
        The JSON file, as listed.
    strong : bool
        ``model.json``, or a weight file named after it lies beside it; a
        weak candidate (beside converter shards only) must be read to tell.
    """

    path: str
    strong: bool


def _is_weight_file(name: str) -> bool:
    return name.endswith(".bin") or bool(_SHARD_TAIL.search(name))


def _stems(name: str) -> set[str]:
    """Every ``<stem>`` such that *name* is ``<stem>`` + separator + rest."""
    return {name[:i] for i, ch in enumerate(name) if i and ch in _STEM_SEPARATORS}


def bundle_candidates(names: Sequence[str]) -> list[Candidate]:
    """The model JSON files among the file *names* of one folder, sorted by path.

    No request is needed: ``model.json``, and any ``<name>.json`` beside a
    weight file named after it (``<name>.bin``, ``<name>.weights.bin``,
    ``<name>-shard1of3.bin``…), are strong candidates. Weak candidates, which
    only reading tells (:func:`looks_like_model`): ``<name>-<more>.json``
    beside weights of ``<name>`` (a second manifest sharing them), and, in a
    folder without ``model.json`` that holds converter shard names, every
    other ``.json``.

    Parameters
    ----------
    names : sequence of str
        Paths (or base names) of the files of one folder.
    """
    base = {posixpath.basename(n.rstrip("/")): n.rstrip("/") for n in names}
    stems: set[str] = set()
    converter = False
    for name in base:
        if name.endswith(".json") or not _is_weight_file(name):
            continue
        converter |= bool(CONVERTER_SHARD.match(name))
        stems |= _stems(name)
    out = []
    for name, path in base.items():
        if not name.endswith(".json"):
            continue
        stem = name[: -len(".json")]
        strong = name == MODEL_JSON or stem in stems
        # ``<name>-lite.json`` beside ``<name>.bin``: maybe a second manifest of those weights
        sharing = bool(_stems(stem) & stems)
        if strong or sharing or (converter and MODEL_JSON not in base):
            out.append(Candidate(path, strong))
    return sorted(out, key=lambda c: c.path)


def looks_like_model(doc: object) -> bool:
    """Whether parsed JSON is a TF.js model: an object with ``modelTopology``
    and/or ``weightsManifest`` (``package.json`` or a labels file is not)."""
    return isinstance(doc, Mapping) and ("modelTopology" in doc or "weightsManifest" in doc)


def json_candidates(names: Sequence[str]) -> list[str]:
    """Which files in a folder listing may be a bundle's model JSON, best first.

    ``model.json`` wins; otherwise the ``<name>.json`` files with weight files
    named after them; otherwise any ``*.json`` (a downloads-layout bundle whose
    weights are named otherwise).
    """
    base = {posixpath.basename(n.rstrip("/")): n for n in names}
    if MODEL_JSON in base:
        return [base[MODEL_JSON]]
    strong = [c.path for c in bundle_candidates(list(base.values())) if c.strong]
    if strong:
        return [base[posixpath.basename(p)] for p in strong]
    return sorted(n for b, n in base.items() if b.endswith(".json"))
