"""A bundle found by one listing: its model JSON, its files' sizes, its manifest once read.

The one type behind :func:`tfjsfs.model.discovery.find_bundles` (``list_models``,
``tfjsfs ls``, ``sync_models``, the bulk jobs, ``remove_model``'s report) and
the model server's store (its listings, pages and descriptions). A finder
lists a tree once, gives each bundle the entries of the files in its folder
and below (:func:`files_below`), then reads the model JSON files it needs;
everything else (shard sizes, missing shards, ``ModelArtifactsInfo``) is
derived here from those two, without another request.

A *located* bundle, ready to load or copy, is :class:`tfjsfs.io.bundle.Bundle`.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import functools
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .._util.entries import modified_time
from ..format.artifacts import ModelArtifactsInfo
from ..format.manifest import ModelJSON
from .location import folder_of, listing_key, name_in_folder
from .shardurls import resolve_shard_paths

__all__ = ["FoundBundle", "files_below", "list_folder"]

T = TypeVar("T")


def files_below(files: Mapping[str, T], names: Sequence[str], folder: str) -> dict[str, T]:
    """The entries of *files* in inner *folder* and below.

    *names* is ``sorted(files)``: the paths below ``folder/`` are one
    contiguous run of it (``"0"`` sorts right after ``"/"``), found by bisection.
    """
    lo = bisect.bisect_left(names, folder + "/")
    hi = bisect.bisect_left(names, folder + "0")
    return {p: files[p] for p in names[lo:hi]}


async def list_folder(fs: Any, json_path: str) -> dict[str, Mapping[str, Any]]:
    """Entries of one listing of the folder of *json_path*, by normalised inner path.

    Empty where the store cannot list (HTTP without listings): a
    :class:`FoundBundle` then takes its weight bytes from the manifest.
    """
    try:
        entries = await fs._ls(folder_of(json_path), detail=True)
    except (OSError, NotImplementedError, ValueError):
        entries = []
    return {listing_key(e["name"]): e for e in entries}


@dataclass
class FoundBundle:
    """One bundle found by a listing.

    Attributes
    ----------
    name : str
        How the finder addresses it: the URL in the caller's spelling for
        :func:`~tfjsfs.model.discovery.find_bundles` (the folder for
        ``model.json``, else the JSON file), the model name for the server's store.
    json_path : str
        Inner path of the model JSON.
    files : dict
        Listing entries (``name``, ``size``, ...) of the files in the model
        JSON's folder and below, by inner path; the model JSON's own entry
        (size, modification time) is among them.
    raw : bytes or None
        The model JSON's bytes, once read (the server's store keeps only ``doc``).
    doc : ModelJSON or None
        The parsed model JSON, once read (None if it could not be parsed).
    error : str or None
        Why the model JSON could not be read or parsed.
    not_model : bool
        Once read: the JSON file is not a TF.js model (e.g. ``package.json``).
    json_size : int or None
        Bytes of the model JSON: as read, else as listed.
    """

    name: str
    json_path: str
    files: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    raw: bytes | None = None
    doc: ModelJSON | None = None
    error: str | None = None
    not_model: bool = False
    json_size: int | None = None

    def __post_init__(self) -> None:
        if self.json_size is None:
            size = len(self.raw) if self.raw is not None else self.entry.get("size")
            self.json_size = int(size or 0)

    # ------------------------------------------------------ the listing

    @property
    def entry(self) -> Mapping[str, Any]:
        """The listing entry of the model JSON."""
        return self.files.get(self.json_path, {})

    @property
    def saved(self) -> _dt.datetime | None:
        """The model JSON's modification time, when the listing gives one."""
        return modified_time(self.entry)

    def listed_sizes(self) -> dict[str, int]:
        """Sizes of the listed files, by normalised inner path."""
        return {
            listing_key(p): int(e["size"])
            for p, e in self.files.items()
            if e.get("size") is not None
        }

    # ---------------------------------------------------- the manifest

    def shard_names(self) -> list[str]:
        """The weight files the manifest names inside the bundle's folder (relative
        to it, in manifest order); paths that leave the folder are left out."""
        out = []
        for group in self.doc.weights_manifest if self.doc else ():
            for path in group.paths:
                name = name_in_folder(path, self.json_path)
                if name is not None:
                    out.append(name)
        return out

    @functools.cached_property
    def shard_sizes(self) -> dict[str, int | None]:
        """Each weight file of :meth:`shard_names` and its listed size (None: missing).

        Worked out once, on first use, from ``doc`` and ``files``.
        """
        listed = self.listed_sizes()
        folder = folder_of(self.json_path)
        return {
            name: listed.get(listing_key(posixpath.join(folder, name)))
            for name in self.shard_names()
        }

    @property
    def missing(self) -> list[str]:
        """Weight files the manifest names that the listing does not hold."""
        return [p for p, s in self.shard_sizes.items() if s is None]

    @property
    def weight_count(self) -> int:
        """Number of weights in the manifest."""
        return len(self.doc.weight_specs) if self.doc else 0

    @property
    def weight_bytes(self) -> int:
        """Bytes in the weight files present."""
        return sum(s for s in self.shard_sizes.values() if s is not None)

    @property
    def size(self) -> int:
        """The model JSON plus every weight file present."""
        return (self.json_size or 0) + self.weight_bytes

    @property
    def format(self) -> str | None:
        """The manifest's ``format``."""
        return self.doc.format if self.doc else None

    @property
    def info(self) -> ModelArtifactsInfo:
        """TF.js's ``ModelArtifactsInfo``, dated by the model JSON's modification time.

        Weight data bytes: each group's listed shard sizes, or what the
        manifest declares for a group with a shard the listing lacks. Only
        the date is known before the model JSON is parsed.
        """
        date = self.saved or _dt.datetime.now(_dt.UTC)
        doc = self.doc
        if doc is None:
            return ModelArtifactsInfo(date)
        sizes = self.listed_sizes()
        data_bytes = 0
        groups = resolve_shard_paths(doc, self.json_path, carry_query=False, strict=False)
        for g, paths in enumerate(groups):
            listed = [sizes.get(p) if p else None for p in paths]
            if all(s is not None for s in listed):
                data_bytes += sum(listed)
            else:
                data_bytes += doc.weights_manifest[g].expected_bytes or 0
        return ModelArtifactsInfo.count(doc.model_topology, doc.weight_specs, data_bytes, date)
