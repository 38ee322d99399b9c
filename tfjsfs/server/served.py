"""The weight files that recently served model.json versions named.

A weight file is served only if some model.json of its bundle named it. The
current model.json is always asked; the versions the server has handed out are
remembered here, so a reader holding an older one can finish its load while the
grace period keeps that version's files. A version not served for longer than
that is forgotten (its files are swept by then), and so is the least recently
served one past a fixed count: what a long-running server holds stays bounded.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable

__all__ = ["ServedVersions"]


class ServedVersions:
    """Weight file names of served model.json versions, per model.json path.

    Parameters
    ----------
    keep_for : float
        Seconds a version is remembered after it was last served (the
        store's grace period, or more).
    most : int
        Versions remembered at most, over all bundles (least recently served
        forgotten first).
    clock : callable
        Seconds, monotonic (tests pass their own).
    """

    def __init__(self, keep_for: float, most: int = 4096, clock=time.monotonic):
        self.keep_for = keep_for
        self.most = most
        self._clock = clock
        #: (json path, version tag) -> (names, last served), least recently served first
        self._versions: OrderedDict[tuple[str, str], tuple[frozenset[str], float]] = OrderedDict()
        self._by_path: dict[str, set[str]] = {}  # json path -> version tags

    def __len__(self) -> int:
        return len(self._versions)

    def known(self, json_path: str, tag: str) -> bool:
        """Whether this version is remembered (and mark it served now)."""
        key = (json_path, tag)
        entry = self._versions.get(key)
        if entry is None:
            return False
        self._versions[key] = (entry[0], self._clock())
        self._versions.move_to_end(key)
        return True

    def note(self, json_path: str, tag: str, names: Iterable[str]) -> None:
        """Remember that version *tag* of *json_path*, naming *names*, was served."""
        key = (json_path, tag)
        self._versions[key] = (frozenset(names), self._clock())
        self._versions.move_to_end(key)
        self._by_path.setdefault(json_path, set()).add(tag)
        self._forget()

    def named(self, json_path: str, file: str) -> bool:
        """Whether a remembered version of *json_path* names *file*."""
        for tag in self._by_path.get(json_path, ()):
            entry = self._versions.get((json_path, tag))
            if entry is not None and file in entry[0]:
                return True
        return False

    def _forget(self) -> None:
        oldest_kept = self._clock() - self.keep_for
        while self._versions:
            key, (_, served) = next(iter(self._versions.items()))
            if served >= oldest_kept and len(self._versions) <= self.most:
                break
            del self._versions[key]
            tags = self._by_path.get(key[0])
            if tags is not None:
                tags.discard(key[1])
                if not tags:
                    del self._by_path[key[0]]
