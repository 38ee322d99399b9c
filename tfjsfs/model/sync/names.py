"""Model names under a prefix, and the tagged shard names sync gives what it sends.

A sent shard is named after its source identity (``group1-shard1of2.<tag>.bin``),
so one name never holds two different contents.
"""

from __future__ import annotations

import bisect
import fnmatch
import hashlib
import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ...format.layouts import MODEL_JSON
from ...io.location import locate_shard

__all__ = [
    "TAGGED",
    "below",
    "listed_size",
    "model_name",
    "relative",
    "selected",
    "shard_rel",
    "shard_tag",
    "tagged_name",
    "under",
    "untagged",
]

#: a shard name this package made: ``<stem>.<12 hex>[.<ext>]``.
TAGGED = re.compile(r"^(?P<stem>.+)\.(?P<tag>[0-9a-f]{12})(?P<ext>\.[^./]+)?$")


def relative(root: str, path: str) -> str:
    """*path* relative to *root* (inner paths)."""
    root = root.rstrip("/")
    if not root:
        return path.lstrip("/")
    if path == root:
        return ""
    return path[len(root) + 1 :] if path.startswith(root + "/") else path


def under(root: str, rel: str) -> str:
    root = root.rstrip("/")
    return posixpath.join(root, rel) if root else rel


def model_name(root: str, json_path: str) -> str:
    """A model's name under *root*: its folder for model.json, else its JSON file."""
    rel = relative(root, json_path)
    if posixpath.basename(rel) == MODEL_JSON:
        return posixpath.dirname(rel) or "."
    return rel


def selected(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    if include and not any(fnmatch.fnmatchcase(name, p) for p in include):
        return False
    return not any(fnmatch.fnmatchcase(name, p) for p in exclude)


def below(files: Mapping[str, dict], names: Sequence[str], folder: str) -> dict[str, dict]:
    """Entries of *files* directly in or below *folder* (*names* sorted)."""
    if not folder:
        return dict(files)
    lo, hi = bisect.bisect_left(names, folder + "/"), bisect.bisect_left(names, folder + "0")
    return {p: files[p] for p in names[lo:hi]}


def shard_rel(path: str, source: str) -> str:
    """A manifest shard path as a clean relative name (query dropped), or UnsafePathError."""
    return locate_shard("", path, kind="key", source=source)


def shard_tag(stamp: str | None, size: int, content_hash: str | None = None) -> str:
    """12 hex digits naming one state of a source shard."""
    basis = f"{stamp}|{size}" if stamp is not None else f"hash|{content_hash}"
    return hashlib.blake2b(basis.encode(), digest_size=6).hexdigest()


def untagged(rel: str) -> str:
    """A shard name without a tag this module added."""
    folder, name = posixpath.split(rel)
    match = TAGGED.match(name)
    if match:
        name = match.group("stem") + (match.group("ext") or "")
    return posixpath.join(folder, name) if folder else name


def tagged_name(rel: str, tag: str) -> str:
    """``group1-shard1of2.bin`` → ``group1-shard1of2.<tag>.bin``."""
    folder, name = posixpath.split(untagged(rel))
    stem, ext = posixpath.splitext(name)
    name = f"{stem}.{tag}{ext}" if ext else f"{name}.{tag}"
    return posixpath.join(folder, name) if folder else name


def listed_size(entry: Mapping[str, Any] | None) -> int | None:
    if entry is None or entry.get("size") is None:
        return None
    return int(entry["size"])
