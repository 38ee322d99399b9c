"""The sync record a destination model.json carries, and the model.json sync publishes.

The record (``userDefinedMetadata["tfjsfs:sync"]``) holds the identity of the
source model.json and of every source shard the copy was made from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..._util.entries import entity_tag
from ...errors import TFJSError
from ...format.manifest import ModelJSON, WeightGroup
from ...io.transfer import digest
from .names import shard_rel
from .state import Plan

__all__ = ["SYNC_KEY", "live_paths_of", "make_record", "record_of", "render", "with_record"]

#: key of the sync record in a destination model.json's ``userDefinedMetadata``.
SYNC_KEY = "tfjsfs:sync"


def record_of(doc: ModelJSON | None) -> dict | None:
    """The sync record of a destination model.json, if it has a sound one."""
    meta = doc.user_defined_metadata if doc is not None else None
    rec = meta.get(SYNC_KEY) if isinstance(meta, dict) else None
    if not isinstance(rec, dict) or rec.get("version") != 1:
        return None
    if not isinstance(rec.get("source"), dict) or not isinstance(rec.get("shards"), dict):
        return None
    return rec


def live_paths_of(doc: ModelJSON | None, json_path: str) -> set[str]:
    out = set()
    for group in doc.weights_manifest if doc else ():
        for path in group.paths:
            try:
                out.add(shard_rel(path, json_path))
            except TFJSError:
                continue
    return out


def make_record(plan: Plan, shards: Mapping[str, Any], rewrite: dict | None = None) -> dict:
    """The sync record of a destination model.json."""
    entry = plan.item.src_files.get(plan.item.src_json) or {}
    record = {
        "version": 1,
        "source": {
            "size": len(plan.raw),
            "stamp": entity_tag(entry),
            "hash": digest(plan.raw).hex(),
        },
        "shards": dict(shards),
    }
    if rewrite:
        record["rewrite"] = rewrite
        record["sources"] = plan.sources
    return record


def with_record(doc: ModelJSON, record: dict) -> ModelJSON:
    meta = dict(doc.user_defined_metadata or {})
    meta[SYNC_KEY] = record
    return dataclasses.replace(doc, user_defined_metadata=meta)


def render(plan: Plan) -> bytes:
    """The destination model.json: the source's, shard names mapped, the record added."""
    doc = plan.doc
    groups = tuple(
        WeightGroup(tuple(m.dst_rel for m in moves), g.weights, g.extra)
        for g, moves in zip(doc.weights_manifest, plan.groups, strict=True)
    )
    record = make_record(plan, {m.dst_rel: m.record for m in plan.moves})
    if plan.replaced:  # a later run finishes the sweep if this one is interrupted
        record["replaced"] = sorted(plan.replaced)
    return with_record(dataclasses.replace(doc, weights_manifest=groups), record).dumps()
