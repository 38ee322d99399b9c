"""Conditional publication of model.json on real stores (moto S3, fake-gcs-server,
local folders, memory://), and what :func:`write_bundle` does when two writers race.

Races are made deterministic with ``before_publish``: writer A has written its
shards and, before publishing, lets writer B do a whole save.
"""

from __future__ import annotations

import asyncio
import json
import posixpath

import fsspec
import pytest
from fsspec.asyn import get_loop, sync
from fsspec.implementations.memory import MemoryFileSystem
from manage_support import GROUPS, TOPOLOGY, assert_same_weights, make_store, sample_weights

import tfjsfs
from tfjsfs.errors import (
    BundleExistsError,
    ConcurrentUpdateError,
    ManifestError,
    TransferError,
)
from tfjsfs.format.artifacts import ModelArtifacts
from tfjsfs.format.layouts import plan_bundle
from tfjsfs.io import conditional
from tfjsfs.io.conditional import (
    conditional_kind,
    put_conditional,
    remove_conditional,
    snapshot,
)
from tfjsfs.io.resolve import resolve
from tfjsfs.io.writer import SLOW_WRITE, is_fresh_name, unpublish, write_bundle
from tfjsfs.model.removal import bundle_files

KINDS = ["file", "memory", "s3", "gcs"]


def _run(coro_fn):
    return sync(get_loop(), coro_fn)


@pytest.mark.parametrize("kind", KINDS)
def test_create_only_and_compare_and_swap(kind, request, tmp_path):
    store = make_store(kind, request, tmp_path)
    fs, path = resolve(store.url("m", "model.json"), **store.options)
    assert conditional_kind(fs) == {"file": "local"}.get(kind, kind)
    if kind == "file":
        (tmp_path / "m").mkdir()

    async def steps():
        empty = await snapshot(fs, path)
        assert not empty.exists and empty.version is None
        await put_conditional(fs, path, b"one", empty)
        with pytest.raises(BundleExistsError, match="already exists"):
            await put_conditional(fs, path, b"two", empty)  # a second create-only
        first = await snapshot(fs, path)
        assert first.data == b"one" and first.version is not None
        await put_conditional(fs, path, b"two", first)
        with pytest.raises(ConcurrentUpdateError, match="replaced by another writer") as lost:
            await put_conditional(fs, path, b"three", first)  # a stale compare-and-swap
        assert lost.value.path == path
        second = await snapshot(fs, path)
        assert second.data == b"two" and second.version != first.version
        with pytest.raises(ConcurrentUpdateError):
            await remove_conditional(fs, path, first)
        assert (await snapshot(fs, path)).data == b"two"
        await remove_conditional(fs, path, second)
        assert not (await snapshot(fs, path)).exists

    _run(steps)


@pytest.mark.parametrize("kind", KINDS)
def test_a_snapshot_reads_at_most_the_model_json_cap(kind, request, tmp_path):
    store = make_store(kind, request, tmp_path)
    fs, path = resolve(store.url("m", "model.json"), **store.options)
    if kind == "file":
        (tmp_path / "m").mkdir()

    async def steps():
        await put_conditional(fs, path, b"x" * 100, await snapshot(fs, path))
        assert (await snapshot(fs, path, limit=100)).data == b"x" * 100
        with pytest.raises(ManifestError, match=r"model.json holds more than 99 bytes") as info:
            await snapshot(fs, path, limit=99)
        assert path in str(info.value)

    _run(steps)


def _artifacts(seed: int) -> ModelArtifacts:
    return ModelArtifacts.from_weights(TOPOLOGY, sample_weights(seed), groups=GROUPS)


async def _write(fs, folder, artifacts, **kwargs):
    plan = plan_bundle(artifacts, "converter", shard_size=100)
    data = memoryview(artifacts.weight_data).cast("B")

    async def shard_bytes(shard):
        return data[shard.start : shard.end]

    def render(groups, json_path):
        return artifacts.to_model_json(groups).dumps()

    return await write_bundle(fs, folder, plan, shard_bytes, render, **kwargs)


def _names(store, *parts):
    doc = json.loads(store.fs.cat_file(store.inner(*parts, "model.json")))
    return sorted(p for g in doc["weightsManifest"] for p in g["paths"])


@pytest.mark.parametrize("kind", KINDS)
def test_two_first_time_writers_never_share_a_shard_key(kind, request, tmp_path):
    """A claims the planned names; B, racing, must use fresh ones and wins;
    A loses create-only and removes only its own shards."""
    store = make_store(kind, request, tmp_path)
    fs, folder = resolve(store.url("m"), **store.options)
    a, b = _artifacts(1), _artifacts(2)

    async def b_saves_meanwhile(_paths):
        await _write(fs, folder, b)

    async def race():
        with pytest.raises(BundleExistsError):
            await _write(fs, folder, a, before_publish=b_saves_meanwhile)

    _run(race)
    names = _names(store, "m")
    assert names and all(is_fresh_name(n) for n in names)
    assert sorted(store.files("m")) == sorted([*names, "model.json"])  # none of A's left
    assert_same_weights(store.load("m"), sample_weights(2))


@pytest.mark.parametrize("kind", KINDS)
def test_a_stale_replace_loses_and_leaves_the_winner_whole(kind, request, tmp_path):
    store = make_store(kind, request, tmp_path)
    store.save(_artifacts(0), "m", shard_size=100)
    fs, folder = resolve(store.url("m"), **store.options)

    async def b_replaces_meanwhile(_paths):
        await _write(fs, folder, _artifacts(2), overwrite=True)

    async def race():
        with pytest.raises(ConcurrentUpdateError, match=r"model\.json"):
            await _write(
                fs, folder, _artifacts(1), overwrite=True, before_publish=b_replaces_meanwhile
            )

    _run(race)
    assert_same_weights(store.load("m"), sample_weights(2))
    assert sorted(store.files("m")) == sorted([*_names(store, "m"), "model.json"])


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_last_writer_wins_publishes_over_the_new_version(kind, request, tmp_path):
    store = make_store(kind, request, tmp_path)
    store.save(_artifacts(0), "m", shard_size=100)
    fs, folder = resolve(store.url("m"), **store.options)

    async def b_replaces_meanwhile(_paths):
        await _write(fs, folder, _artifacts(2), overwrite=True)

    async def race():
        return await _write(
            fs,
            folder,
            _artifacts(1),
            overwrite=True,
            last_writer_wins=True,
            before_publish=b_replaces_meanwhile,
        )

    _, files = _run(race)
    assert_same_weights(store.load("m"), sample_weights(1))
    names = _names(store, "m")
    assert sorted(posixpath.basename(f) for f in files[:-1]) == names
    # B's shards, replaced in turn, are gone (no grace period): only A's remain
    assert sorted(store.files("m")) == sorted([*names, "model.json"])


def test_save_model_create_only_loses_to_a_racing_first_writer(tmp_path):
    """Through the public API: the loser gets BundleExistsError, the winner's bytes stay."""
    url = str(tmp_path / "m")
    tfjsfs.save_model(_artifacts(3), url)
    with pytest.raises(BundleExistsError):
        tfjsfs.save_model(_artifacts(4), url)
    assert_same_weights(tfjsfs.load_weights(url), sample_weights(3))


@pytest.mark.parametrize("kind", ["file", "s3", "gcs"])
def test_removing_a_model_replaced_after_it_was_read_removes_nothing(kind, request, tmp_path):
    """remove_model (and move_model's removal of its source) deletes model.json only
    if it is still the version whose shards it is about to delete."""
    store = make_store(kind, request, tmp_path)
    store.save(_artifacts(0), "m", shard_size=100)
    fs, path = resolve(store.url("m"), **store.options)

    async def read():
        return await bundle_files(fs, path)

    json_path, _, doc = _run(read)
    store.save(_artifacts(1), "m", shard_size=100, overwrite=True)  # another writer

    async def remove():
        await unpublish(fs, json_path, doc)

    with pytest.raises(ConcurrentUpdateError, match="replaced by another writer"):
        _run(remove)
    assert_same_weights(store.load("m"), sample_weights(1))
    tfjsfs.remove_model(store.url("m"), storage_options=store.options)
    assert store.files("m") == []


class PlainMemoryFileSystem(MemoryFileSystem):
    """An in-memory store under a protocol tfjsfs knows no conditional write for."""

    protocol = "plainmem"
    root_marker = "/"

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.removeprefix("plainmem://"))


def test_a_store_without_conditional_writes_is_declared_once(recwarn):
    fsspec.register_implementation("plainmem", PlainMemoryFileSystem, clobber=True)
    PlainMemoryFileSystem.store, PlainMemoryFileSystem.pseudo_dirs = {}, [""]
    conditional._warned.discard("plainmem")
    assert conditional_kind(resolve("plainmem://b/m")[0]) is None
    tfjsfs.save_model(_artifacts(1), "plainmem://b/m")
    tfjsfs.save_model(_artifacts(2), "plainmem://b/m", overwrite=True)
    tfjsfs.save_model(_artifacts(3), "plainmem://b/n")
    said = [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert len(said) == 1
    assert "plainmem store offers no conditional write" in str(said[0].message)
    assert_same_weights(tfjsfs.load_weights("plainmem://b/m"), sample_weights(2))


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_a_slow_writer_never_publishes_shards_a_sweep_removed(kind, request, tmp_path):
    """Another process's sweep took one of a slow writer's unpublished shards for a
    crash's leftover: the writer publishes nothing instead of a model.json naming it."""
    store = make_store(kind, request, tmp_path)
    store.save(_artifacts(0), "m", shard_size=100)
    fs, folder = resolve(store.url("m"), **store.options)

    async def slow_and_swept(paths):
        await asyncio.sleep(SLOW_WRITE + 0.1)
        await fs._rm_file(paths[0])  # what a sweep elsewhere would do

    async def write():
        await _write(fs, folder, _artifacts(1), overwrite=True, before_publish=slow_and_swept)

    with pytest.raises(TransferError, match=r"was removed before model\.json was published"):
        _run(write)
    assert_same_weights(store.load("m"), sample_weights(0))
    assert sorted(store.files("m")) == sorted([*_names(store, "m"), "model.json"])
