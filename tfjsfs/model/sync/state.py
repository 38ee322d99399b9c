"""The state one sync run carries: its options, each model's item, moves and plan,
and the context holding both filesystems."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fsspec.callbacks import Callback

from ..._util.retry import RetryPolicy, with_retries
from ...format.manifest import ModelJSON
from ...io.bundle import read_json_bytes
from ...io.transfer import digest
from ...io.writer import DEFAULT_WRITE_CONCURRENCY
from .report import ModelSync

__all__ = ["Context", "Item", "Move", "Options", "Plan"]


@dataclass
class Options:
    dry_run: bool = False
    delete: bool = False
    checksum: bool = False
    verify: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    concurrency: int = DEFAULT_WRITE_CONCURRENCY
    rewrite: dict | None = None
    grace_period: float = 0.0


@dataclass
class Item:
    """One source model and the listing entries it needs, on both sides (picklable)."""

    name: str
    src_json: str
    dst_json: str
    src_files: dict[str, dict]
    dst_files: dict[str, dict]


@dataclass
class Move:
    """One source shard and where it goes."""

    src: str
    rel: str
    size: int
    stamp: str | None
    dst_rel: str | None
    send: bool
    record: dict


@dataclass
class Plan:
    item: Item
    result: ModelSync
    doc: ModelJSON | None = None
    raw: bytes = b""
    moves: list[Move] = field(default_factory=list)
    groups: list[list[Move]] = field(default_factory=list)
    live_raw: bytes | None = None
    live_paths: set[str] = field(default_factory=set)
    stale: list[str] = field(default_factory=list)
    sources: dict[str, dict] = field(default_factory=dict)
    replaced: list[str] = field(default_factory=list)
    retired: bool = False

    def release(self) -> None:
        """Drop what only planning and sending needed (JSON bytes, parsed
        manifest, listings), keeping the result and the files to sweep."""
        self.doc, self.raw, self.live_raw = None, b"", None
        self.moves, self.groups, self.sources = [], [], {}
        self.item.src_files, self.item.dst_files = {}, {}


class Context:
    """Both filesystems and the options; one per process (rebuilt on Dask workers)."""

    def __init__(self, sfs: Any, dfs: Any, opts: Options, callback: Callback):
        self.sfs, self.dfs, self.opts, self.callback = sfs, dfs, opts, callback
        self.policy = RetryPolicy()
        self.hashes: dict[tuple[str, str], str] = {}
        #: bytes to send in the models planned so far (the progress total).
        self.planned_bytes = 0

    def fs(self, side: str) -> Any:
        return self.sfs if side == "src" else self.dfs

    async def read(self, side: str, path: str, size: int | None = None) -> bytes:
        """A file's bytes, with retries; at most ``size + 1`` when *size* is given
        (a file that grew since it was listed is caught without reading it all)."""
        fs = self.fs(side)
        end = None if size is None else size + 1

        async def attempt(_: int) -> bytes:
            return bytes(await fs._cat_file(path, start=0 if end else None, end=end))

        return await with_retries(attempt, self.policy, path, timeout=self.policy.timeout)

    async def read_json(self, side: str, path: str) -> bytes:
        """A model JSON's bytes, within the model.json size cap (as every load reads it)."""
        return await read_json_bytes(self.fs(side), path, policy=self.policy)

    async def content_hash(self, side: str, path: str) -> str:
        key = (side, path)
        if key not in self.hashes:
            self.hashes[key] = digest(await self.read(side, path)).hex()
        return self.hashes[key]
