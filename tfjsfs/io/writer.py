"""Ordered, torn-free bundle writes over any async fsspec filesystem.

Shards are written first and model.json last, so a reader that sees
model.json sees a complete bundle. model.json is published atomically
(rename on local disks, a single PUT on object stores) and create-only unless
overwriting. When the folder holds a bundle, or held one within the grace
period (a retirement record of its files is still there), the new shards get
names never used before (the planned names plus a random version suffix), so
a reader holding an old model.json never gets new bytes under old names. A
first save to a fresh folder keeps the planned (converter-compatible) names.

Many writers may share one store. model.json is published with the store's
conditional write (:mod:`tfjsfs.io.conditional`): create-only when the writer
found none, compare-and-swap against the version it read when replacing. A
writer that loses raises :class:`~tfjsfs.errors.ConcurrentUpdateError` (or
:class:`~tfjsfs.errors.BundleExistsError` for a create-only save), and its
shards are removed at once (no model.json ever named them); with
``last_writer_wins`` it publishes again over the new current version instead.
A first-time writer writes its shards create-only under the planned names; if
another writer holds one of them, it writes them again under fresh names, so
two writers never share a shard key.

Replaced shards are either removed once model.json is swapped (no grace
period) or *retired*: a small record ``.tfjsfs-retired-<token>.json`` naming
them is written before model.json is published, and :func:`sweep_folder`
removes them once the grace period is over, so a load that began before the
swap completes with the old version. The sweep also removes what a crash
leaves behind: fresh-named shards no model.json names and unfinished
model.json temporaries, once they are older than the grace period; it never
removes a file the live model.json names or a pending record lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import posixpath
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fsspec.callbacks import DEFAULT_CALLBACK, Callback

from .._util.concurrency import gather_bounded
from .._util.entries import modified_time
from .._util.retry import DEFAULT_MAX_JSON_BYTES
from ..errors import (
    BundleExistsError,
    ConcurrentUpdateError,
    ManifestError,
    ModelNotFoundError,
    TransferError,
    UnsafePathError,
)
from ..format.layouts import BundlePlan, ShardPlan
from ..format.manifest import ModelJSON, WeightGroup, manifest_paths
from .conditional import (
    Snapshot,
    conditional_kind,
    create_file,
    is_local,
    put_conditional,
    remove_conditional,
    snapshot,
)
from .location import name_in_folder

__all__ = [
    "MAX_PUBLISH_ATTEMPTS",
    "RETIRED_PREFIX",
    "is_fresh_name",
    "is_local",
    "publish",
    "retire_files",
    "sweep_folder",
    "unpublish",
    "write_bundle",
]

DEFAULT_WRITE_CONCURRENCY = 8
#: File name prefix of retirement records (files kept readable until swept).
RETIRED_PREFIX = ".tfjsfs-retired-"
_FRESH = re.compile(r"-v[0-9a-f]{12}(\.bin)?$")
_PUBLISH_TMP = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")
#: Seconds after which a write checks its shards are still there before publishing.
SLOW_WRITE = 1.0
#: Publications a last-writer-wins write tries before giving up.
MAX_PUBLISH_ATTEMPTS = 8


async def _existing_manifest(fs: Any, json_path: str) -> tuple[Snapshot, list[str] | None]:
    """model.json's snapshot (bytes and store version) and the shard paths it
    names (None: absent)."""
    current = await snapshot(fs, json_path)
    if current.data is None:
        return current, None
    try:
        return current, manifest_paths(current.data, json_path)
    except ManifestError:
        return current, []  # unreadable: overwrite it, keep no old shard list


def is_fresh_name(path: str) -> bool:
    """Whether *path* carries a version suffix given by :func:`write_bundle`."""
    return bool(_FRESH.search(path))


def _fresh_names(plan: BundlePlan) -> BundlePlan:
    """*plan* with every shard renamed to a name never used before."""
    if not plan.shards:
        return plan
    token = "-v" + secrets.token_hex(6)

    def rename(path: str) -> str:
        stem, ext = posixpath.splitext(path)
        return f"{stem}{token}{ext}" if ext == ".bin" else f"{path}{token}"

    shards = tuple(ShardPlan(rename(s.path), s.group, s.start, s.end) for s in plan.shards)
    groups = tuple(
        WeightGroup(tuple(rename(p) for p in g.paths), g.weights, g.extra) for g in plan.groups
    )
    return BundlePlan(plan.json_name, groups, shards)


async def _listing(fs: Any, folder: str) -> list[dict[str, Any]]:
    """Entries of *folder*, fresh from the store (empty if it does not exist)."""
    with contextlib.suppress(Exception):
        fs.invalidate_cache(folder)
    try:
        return list(await fs._ls(folder, detail=True))
    except (FileNotFoundError, NotADirectoryError):
        return []


async def _held_a_bundle(fs: Any, folder: str) -> bool:
    """Whether *folder* held a bundle within the grace period (a retirement record is there)."""
    entries = await _listing(fs, folder)
    return any(
        posixpath.basename(e["name"].rstrip("/")).startswith(RETIRED_PREFIX) for e in entries
    )


def _safe_paths(paths: Sequence[str] | None, source: str) -> set[str]:
    """Shard *paths* of a live bundle that lie inside its folder (others are left alone)."""
    out = set()
    for path in paths or ():
        name = name_in_folder(path, source)
        if name is not None:
            out.add(name)
    return out


async def publish(
    fs: Any, path: str, data: bytes, *, overwrite: bool, base: Snapshot | None = None
) -> None:
    """Write one file (a model JSON) atomically; create-only unless *overwrite*.

    A rename on local disks, a single PUT on object stores. With *base* (what
    the writer read, see :func:`tfjsfs.io.conditional.snapshot`) the write is
    conditional: create-only if *base* found no file, compare-and-swap
    against its version otherwise.

    Raises
    ------
    BundleExistsError
        *path* exists and not *overwrite*.
    ConcurrentUpdateError
        *overwrite*, and another writer published *path* after *base* was taken.
    """
    if base is None and not overwrite:
        base = Snapshot(path, None)
    try:
        await put_conditional(fs, path, data, base)
    except BundleExistsError:
        if overwrite:
            raise ConcurrentUpdateError(
                f"{path} was created by another writer after this writer found none; "
                "nothing of this write was published",
                path,
            ) from None
        raise BundleExistsError(f"{path} already exists (pass overwrite=True)") from None


async def unpublish(
    fs: Any,
    json_path: str,
    doc: ModelJSON,
    before_remove: Callable[[], Awaitable[Any]] | None = None,
) -> None:
    """Delete a model JSON, only if it is still the version *doc* (what the caller
    read, whose shards it is about to remove): the store's conditional delete.

    Parameters
    ----------
    before_remove : async callable, optional
        Awaited once the version is checked, before model.json goes (e.g. to
        retire the shards, so a crash leaves nothing unswept).

    Raises
    ------
    ModelNotFoundError
        model.json is gone (another writer removed it).
    ConcurrentUpdateError
        Another writer replaced it after it was read; nothing is removed.
    """
    base = await snapshot(fs, json_path)
    if base.data is None:
        raise ModelNotFoundError(f"{json_path} was removed by another writer meanwhile")
    try:
        same = manifest_paths(base.data, json_path) == [
            p for g in doc.weights_manifest for p in g.paths
        ]
    except ManifestError:
        same = False
    if not same:
        raise ConcurrentUpdateError(
            f"{json_path} was replaced by another writer after it was read; not removed",
            json_path,
        )
    if before_remove is not None:
        await before_remove()
    await remove_conditional(fs, json_path, base)


async def _remove_quietly(fs: Any, paths: Sequence[str]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError, OSError):
            await fs._rm_file(path)


async def retire_files(fs: Any, folder: str, files: Sequence[str]) -> str | None:
    """Record that *files* (relative to *folder*) are to be removed after the grace period.

    Returns the record's path (None when there is nothing to retire).
    """
    if not files:
        return None
    record = posixpath.join(folder, f"{RETIRED_PREFIX}{secrets.token_hex(8)}.json")
    body = json.dumps({"retired": time.time(), "files": sorted(files)}).encode()
    await fs._pipe_file(record, body)
    return record


async def _live_paths(fs: Any, folder: str, entries: Sequence[dict[str, Any]]) -> set[str] | None:
    """Shard paths every JSON file of *folder* names (model.json or any other name);
    None when one of them cannot be read as a manifest (then nothing is sure)."""
    live: set[str] = set()
    for entry in entries:
        base = posixpath.basename(entry["name"].rstrip("/"))
        if base.endswith(".json") and not base.startswith(".") and entry.get("type") == "file":
            json_path = posixpath.join(folder, base)
            try:  # a model.json over the cap is unreadable: then nothing is sure
                data = await fs._cat_file(json_path, start=0, end=DEFAULT_MAX_JSON_BYTES + 1)
                paths = manifest_paths(data, json_path)
            except FileNotFoundError:
                continue
            except (ManifestError, UnsafePathError):
                return None
            live |= _safe_paths(paths, json_path)
    return live


async def _read_record(fs: Any, path: str) -> tuple[float, list[str]] | None:
    """``(retired time, files)`` of a record; an unreadable record retires nothing;
    None when it is gone (another process swept it meanwhile)."""
    try:
        data = await fs._cat_file(path)
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(data)
        files = [f for f in doc["files"] if isinstance(f, str)]
        return float(doc["retired"]), files
    except (ValueError, KeyError, TypeError):
        return 0.0, []


async def sweep_folder(
    fs: Any, folder: str, grace_period: float, now: float | None = None
) -> list[str]:
    """Remove what the grace period no longer protects in one bundle *folder*.

    * files listed by a retirement record older than *grace_period*, then the record;
    * fresh-named shards (see :func:`is_fresh_name`) and model.json temporaries
      older than *grace_period* that neither the live model.json names nor a
      pending record lists (left by a crash).

    A file that a JSON file of the folder (the live model.json) names is never removed.
    Several processes may sweep one folder at once (several servers on one
    store): files and records another sweep removed meanwhile are skipped.

    Returns
    -------
    list of str
        The paths removed.
    """
    folder = folder.rstrip("/")
    now = time.time() if now is None else now
    entries = await _listing(fs, folder)
    if not entries:
        return []
    live = await _live_paths(fs, folder, entries)
    if live is None:
        return []  # a JSON file that is no manifest may name anything: leave the folder
    protected = set(live)
    doomed: list[str] = []
    records: list[str] = []
    for entry in entries:
        base = posixpath.basename(entry["name"].rstrip("/"))
        if not base.startswith(RETIRED_PREFIX) or entry.get("type") != "file":
            continue
        path = posixpath.join(folder, base)
        read = await _read_record(fs, path)
        if read is None:
            continue
        retired, files = read
        rel = {posixpath.normpath(f) for f in files if _inside(f)}
        if now - retired >= grace_period:
            doomed += [posixpath.join(folder, f) for f in sorted(rel - live)]
            records.append(path)
        else:
            protected |= rel
    for entry in entries:
        base = posixpath.basename(entry["name"].rstrip("/"))
        if entry.get("type") != "file" or base in protected:
            continue
        if not (is_fresh_name(base) or _PUBLISH_TMP.match(base)):
            continue
        stamp = modified_time(entry)
        if stamp is not None and now - stamp.timestamp() >= grace_period:
            doomed.append(posixpath.join(folder, base))
    doomed = sorted(set(doomed))
    await _remove_quietly(fs, doomed)
    await _remove_quietly(fs, records)
    with contextlib.suppress(Exception):
        fs.invalidate_cache(folder)
    return doomed + records


def _rel(folder: str, path: str) -> str:
    return posixpath.relpath(path, folder)


def _inside(rel: str) -> bool:
    norm = posixpath.normpath(rel)
    return not (norm.startswith(("/", "../")) or norm in ("..", ".", ""))


async def write_bundle(
    fs: Any,
    folder: str,
    plan: BundlePlan,
    shard_bytes: Callable[[ShardPlan], Awaitable[Any]],
    render_json: Callable[[Sequence[WeightGroup], str], bytes],
    *,
    overwrite: bool = False,
    concurrency: int = DEFAULT_WRITE_CONCURRENCY,
    callback: Callback = DEFAULT_CALLBACK,
    before_publish: Callable[[Sequence[str]], Awaitable[None]] | None = None,
    grace_period: float = 0.0,
    last_writer_wins: bool = False,
    precondition: Callable[[Snapshot], None] | None = None,
) -> tuple[str, list[str]]:
    """Write a planned bundle into *folder* of the async filesystem *fs*.

    Parameters
    ----------
    fs : fsspec.asyn.AsyncFileSystem
    folder : str
        The model folder (inner path).
    plan : BundlePlan
    shard_bytes : async callable
        Returns the bytes of one shard.
    render_json : callable
        ``render_json(groups, json_path)`` returns model.json bytes for the
        final manifest groups (shard names may have been changed).
    overwrite : bool
        Replace an existing bundle; otherwise :class:`BundleExistsError`.
    concurrency : int
        Shards written at once.
    callback : fsspec.callbacks.Callback
        ``set_size`` with the total bytes, ``relative_update`` per shard written.
    before_publish : async callable, optional
        Awaited with the shard paths once every shard is written and before
        model.json is published (e.g. to read them back and verify them); if
        it raises, the shards are removed and nothing is published.
    grace_period : float
        0 removes replaced shards once model.json is swapped; more keeps them
        (a retirement record, written before model.json is published, names
        them) for :func:`sweep_folder` to remove after that many seconds.
    last_writer_wins : bool
        With *overwrite*: when another writer publishes model.json between
        this writer's read and its publication, publish again over the new
        version (the shards written stay; at most :data:`MAX_PUBLISH_ATTEMPTS`
        times) instead of raising :class:`ConcurrentUpdateError`.
    precondition : callable, optional
        Called with the snapshot of model.json the write starts from (and
        again before each retried publication); raises to refuse it (e.g. an
        HTTP ``If-Match`` that does not hold). The publication is conditional
        on that snapshot, so the check still holds when model.json is swapped.

    Returns
    -------
    (str, list of str)
        The model.json path, and every file written (model.json last).

    Raises
    ------
    BundleExistsError
        model.json exists (or another writer created it first) and not *overwrite*.
    ConcurrentUpdateError
        Another writer published model.json after this one read it (see
        *last_writer_wins*); this writer's shards are removed.
    """
    folder = folder.rstrip("/")
    json_path = posixpath.join(folder, plan.json_name)
    base, old = await _starting_version(fs, json_path, overwrite, precondition)
    fresh = old is not None or await _held_a_bundle(fs, folder)
    if fresh:
        plan = _fresh_names(plan)
    await fs._makedirs(folder, exist_ok=True)
    total = sum(s.nbytes for s in plan.shards)
    callback.set_size(total)
    written: list[str] = []
    # A first-time writer claims the planned names create-only where the store
    # can (two first-time writers must not share shard keys); where one is
    # taken it writes every shard again under fresh names.
    claim = not fresh and conditional_kind(fs) is not None
    taken: list[str] = []
    counted: dict[str, int] = {}

    async def put(shard: ShardPlan) -> None:
        data = await shard_bytes(shard)
        if isinstance(data, memoryview) and not is_local(fs):
            data = data.tobytes()  # object-store clients (botocore) refuse memoryviews
        path = posixpath.join(folder, shard.file_name)
        if claim:
            if not await create_file(fs, path, data):
                taken.append(path)
                return
        else:
            await fs._pipe_file(path, data)
        written.append(path)
        counted[path] = shard.nbytes
        callback.relative_update(shard.nbytes)

    record = None
    in_publish = False
    started = time.monotonic()
    try:
        await gather_bounded((put(s) for s in plan.shards), concurrency)
        if taken:
            callback.set_size(total + sum(counted.values()))  # the first pass counted too
            await _remove_quietly(fs, written)
            written.clear()
            plan, claim = _fresh_names(plan), False
            await gather_bounded((put(s) for s in plan.shards), concurrency)
        if before_publish is not None:
            await before_publish(list(written))
        if time.monotonic() - started > SLOW_WRITE:
            await _still_there(fs, json_path, written)
        keep = {posixpath.normpath(s.file_name) for s in plan.shards}
        data = render_json(plan.groups, json_path)
        for attempt in range(1, MAX_PUBLISH_ATTEMPTS + 1):
            stale = sorted(_safe_paths(old, json_path) - keep)
            if grace_period > 0:
                record = await retire_files(fs, folder, stale)
            in_publish = True
            try:
                await publish(fs, json_path, data, overwrite=overwrite, base=base)
                break
            except ConcurrentUpdateError:
                in_publish = False
                if record is not None:
                    await _remove_quietly(fs, [record])
                    record = None
                if not last_writer_wins or attempt == MAX_PUBLISH_ATTEMPTS:
                    raise
            base, old = await _starting_version(fs, json_path, overwrite, precondition)
    except BaseException as exc:
        unknown = not isinstance(exc, (ConcurrentUpdateError, BundleExistsError))
        if unknown and in_publish and grace_period > 0:
            # the publication may have landed: leave the shards to the sweep,
            # which never removes what a live model.json names
            with contextlib.suppress(Exception):
                await asyncio.shield(retire_files(fs, folder, [_rel(folder, p) for p in written]))
        else:
            await asyncio.shield(_remove_quietly(fs, [*written, *([record] if record else [])]))
        raise
    if grace_period <= 0:
        await _remove_quietly(fs, [posixpath.join(folder, p) for p in stale])
    fs.invalidate_cache(folder)
    return json_path, [*written, json_path]


async def _still_there(fs: Any, json_path: str, written: Sequence[str]) -> None:
    """Check, with one listing, that every shard written is still in model.json's folder.

    A sweep in another process (a server on the same store) takes unpublished
    fresh-named shards older than its grace period for a crash's leftovers; a
    writer that slow must not publish a model.json naming what it removed.
    """
    folder = posixpath.dirname(json_path)
    present = {posixpath.basename(e["name"].rstrip("/")) for e in await _listing(fs, folder)}
    mine = [p for p in written if posixpath.dirname(p) == folder]
    missing = [p for p in mine if posixpath.basename(p) not in present]
    if missing:
        raise TransferError(
            f"{json_path}: shard {missing[0]} (and "
            f"{len(missing) - 1} more) was removed before model.json was published, "
            "probably by another process's sweep (the write took longer than its grace "
            "period); nothing was published"
        )


async def _starting_version(
    fs: Any, json_path: str, overwrite: bool, precondition: Callable[[Snapshot], None] | None
) -> tuple[Snapshot, list[str] | None]:
    """The model.json version a write starts from (and the shard paths it names),
    checked against the caller's terms."""
    base, old = await _existing_manifest(fs, json_path)
    if old is not None and not overwrite:
        raise BundleExistsError(f"{json_path} already exists (pass overwrite=True)")
    if precondition is not None:
        precondition(base)
    return base, old
