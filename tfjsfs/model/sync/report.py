"""What a sync did: one :class:`ModelSync` per model, gathered in a :class:`SyncReport`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ...format.summary import human_size

__all__ = ["CHANGED", "DELETED", "ERROR", "NEW", "UNCHANGED", "ModelSync", "SyncReport"]

NEW, CHANGED, UNCHANGED, DELETED, ERROR = "new", "changed", "unchanged", "deleted", "error"


@dataclass
class ModelSync:
    """What sync did (or, dry, would do) to one model.

    Attributes
    ----------
    name : str
        The model's path under both prefixes (``"."`` for the prefix itself).
    action : {"new", "changed", "unchanged", "deleted", "error"}
    src, dst : str
        Inner paths of the source and destination model JSON.
    shards : int
        Shards of the model.
    sent : int
        Shards sent (or to send).
    bytes_sent : int
        Shard bytes sent (or to send).
    kept : int
        Shards already in the destination and reused.
    resumed : int
        Of those, shards an interrupted run had sent.
    removed : list of str
        Destination files deleted (old shards, or the whole model).
    error : str or None
    """

    name: str
    action: str
    src: str = ""
    dst: str = ""
    shards: int = 0
    sent: int = 0
    bytes_sent: int = 0
    kept: int = 0
    resumed: int = 0
    removed: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclass
class SyncReport:
    """The outcome of one sync: a :class:`ModelSync` per model, and timing.

    Attributes
    ----------
    models : list of ModelSync
        Sorted by name.
    seconds : float
    dry_run : bool
    """

    models: list[ModelSync]
    seconds: float = 0.0
    dry_run: bool = False

    def count(self, action: str) -> int:
        """Models with this action."""
        return sum(1 for m in self.models if m.action == action)

    @property
    def bytes_sent(self) -> int:
        """Shard bytes sent (or, dry, to send)."""
        return sum(m.bytes_sent for m in self.models)

    @property
    def ok(self) -> bool:
        """No model failed."""
        return not self.count(ERROR)

    def summary(self) -> str:
        """One line: ``12 new, 3 changed (41.2 MiB sent), 1,200 unchanged, 2 deleted in 8.4 s``."""
        verb = "to send" if self.dry_run else "sent"
        line = (
            f"{self.count(NEW):,} new, {self.count(CHANGED):,} changed "
            f"({human_size(self.bytes_sent)} {verb}), {self.count(UNCHANGED):,} unchanged, "
            f"{self.count(DELETED):,} {'to delete' if self.dry_run else 'deleted'}"
        )
        if self.count(ERROR):
            line += f", {self.count(ERROR):,} failed"
        return f"{line} in {self.seconds:.1f} s" + (" (dry run)" if self.dry_run else "")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: counts, bytes, seconds and every model."""
        counts = {a: self.count(a) for a in (NEW, CHANGED, UNCHANGED, DELETED, ERROR)}
        return {
            **counts,
            "bytes_sent": self.bytes_sent,
            "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
            "summary": self.summary(),
            "models": [m.to_json() for m in self.models],
        }
