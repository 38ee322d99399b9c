"""Fuzzing the loaders with generated bundles: an exact load or a TFJSError, never
another exception, never a hang, never a byte read outside the model folder.

Each run generates ``TFJSFS_FUZZ_CASES`` bundles (default 1,050) from a seed
(``TFJSFS_FUZZ_SEED``, printed; fixed by default so a failure replays): clean
bundles of every numeric dtype split over several shards, and mutations of
them (hostile shard paths aimed at a canary file, truncated, extended or
missing shards, wrong dtypes, shapes and field types, query strings and
unicode in names). Every case is loaded from a local folder, a ``memory://``
store and a loopback HTTP server whose root also holds the canary.

The canary is watched by the operating system's view of the process: an
audit hook (``sys.addaudithook``) records every ``open`` of its path, by the
loader or by the in-process HTTP server; its bytes must also never appear in
a loaded weight or an error message.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import random
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
import numpy as np
import pytest
from peers.http import StaticServer

import tfjsfs
from tfjsfs.errors import ManifestError, TFJSError, UnsafePathError

SEED = int(os.environ.get("TFJSFS_FUZZ_SEED", "20261203"))
CASES = int(os.environ.get("TFJSFS_FUZZ_CASES", "1050"))
CASE_TIMEOUT = 30.0  # seconds; a case that takes longer is a hang

DTYPES = {
    "float32": np.float32,
    "int32": np.int32,
    "bool": np.bool_,
    "complex64": np.complex64,
}
MUTATIONS = [
    *["none"] * 6,
    *["hostile"] * 6,
    "query",
    "unicode",
    "truncate",
    "extend",
    "missing",
    "bad_dtype",
    "bad_shape",
    "paths_type",
    "no_weights",
    "garbage_json",
    "dup_path",
    "empty_path",
]

# -------------------------------------------------------------- the canary

_WATCHED: set[str] = set()
_OPENED: list[str] = []
_HOOK_LOCK = threading.Lock()


def _audit(event: str, args: tuple) -> None:
    if event != "open" or not _WATCHED or not args:
        return
    target = args[0]
    if isinstance(target, bytes):
        target = os.fsdecode(target)
    if not isinstance(target, str):
        return
    if os.path.abspath(target) in _WATCHED:
        with _HOOK_LOCK:
            _OPENED.append(target)


_HOOK_INSTALLED = False


def _watch(path: Path) -> None:
    global _HOOK_INSTALLED
    if not _HOOK_INSTALLED:  # an audit hook cannot be removed: one per process
        sys.addaudithook(_audit)
        _HOOK_INSTALLED = True
    _WATCHED.add(os.path.abspath(path))


# -------------------------------------------------------------- the cases


@dataclass
class Case:
    """One generated bundle: its files and what a load must give."""

    index: int
    mutation: str
    files: dict[str, bytes]
    expected: dict[str, np.ndarray] | None  # None: only a TFJSError is allowed
    exact_or_error: bool = False  # the load may fail with a TFJSError
    may_load: bool = False  # a mangled model.json that may still parse: any load is fine
    notes: list[str] = field(default_factory=list)


def _hostile(rng: random.Random, server_url: str, canary: Path) -> str:
    """A shard path aimed at the canary two folders up (``store/cN/`` -> root)."""
    up = rng.choice(["..", "%2e%2e", "%2E%2e", ".%2e", "%252e%252e", "\uff0e\uff0e", "\u2025"])
    sep = rng.choice(["/", "/", "%2f", "%2F", "\\", "%5c", "\uff0f"])
    lead = rng.choice(["", "", "#/", "?/", "x?#/", "./", "#", "a/#/"])
    depth = rng.choice([2, 2, 3, 4])
    tail = rng.choice(["canary", "canary?x=1", "canary#", "canary\x00.bin"])
    composed = lead + sep.join([up] * depth) + sep + tail
    return rng.choice(
        [
            composed,
            composed,
            composed,
            str(canary),
            f"file://{canary}",
            f"{server_url}/canary",
            "//" + server_url.split("://", 1)[1] + "/canary",
            f"sub/{sep.join([up] * (depth + 1))}{sep}canary",
        ]
    )


def _make_case(rng: random.Random, index: int, server_url: str, canary: Path) -> Case:
    mutation = rng.choice(MUTATIONS)
    groups = []
    files: dict[str, bytes] = {}
    expected: dict[str, np.ndarray] = {}
    unicode = mutation == "unicode"
    for g in range(rng.choice([1, 1, 2])):
        specs, chunks = [], []
        for w in range(rng.randint(1, 3)):
            dtype = rng.choice(list(DTYPES))
            shape = [rng.randint(0, 4) for _ in range(rng.randint(0, 3))]
            size = int(np.prod(shape, dtype=np.int64))
            raw = np.frombuffer(rng.randbytes(size * 8), dtype=np.uint8)
            if dtype == "bool":
                value = (raw[:size] & 1).astype(np.bool_)
            elif dtype == "complex64":
                value = rng.random() + np.arange(size, dtype=np.complex64) * (1 + 2j)
                value = value.astype(np.complex64)
            elif dtype == "float32":
                value = np.array([rng.uniform(-1e3, 1e3) for _ in range(size)], np.float32)
            else:
                value = np.array([rng.randint(-(2**31), 2**31 - 1) for _ in range(size)], np.int32)
            value = value.reshape(shape)
            name = f"g{g}/w{w}" + ("-é" if unicode else "")
            expected[name] = value
            specs.append({"name": name, "shape": shape, "dtype": dtype})
            chunks.append(value.tobytes())
        if not any(chunks):
            # a group of zero bytes is left out: the generic reader divides by the
            # largest block's size (ZeroDivisionError), which belongs to the readers' work
            value = np.array(rng.uniform(-1, 1), np.float32)
            expected[f"g{g}/pad"] = value
            specs.append({"name": f"g{g}/pad", "shape": [], "dtype": "float32"})
            chunks.append(value.tobytes())
        data = b"".join(chunks)
        n_cuts = max(0, min(rng.randint(0, 2), len(data) - 1))
        cuts = sorted(rng.sample(range(1, len(data)), n_cuts))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        names = []
        for k, piece in enumerate(pieces):
            shard = f"group{g + 1}-shard{k + 1}of{len(pieces)}" + ("-日本é" if unicode else "")
            shard += ".bin"
            files[shard] = piece
            names.append(shard)
        groups.append({"paths": names, "weights": specs})
    case = Case(index, mutation, files, expected)
    all_paths = [(g, p) for g, group in enumerate(groups) for p in range(len(group["paths"]))]
    g, p = rng.choice(all_paths)
    victim = groups[g]["paths"][p]
    if mutation == "hostile":
        groups[g]["paths"][p] = _hostile(rng, server_url, canary)
        case.expected = None
    elif mutation == "query":
        groups[g]["paths"][p] = victim + "?v=" + str(rng.randint(0, 99))
    elif mutation == "truncate":
        if files[victim]:
            files[victim] = files[victim][: rng.randrange(len(files[victim]))]
            case.expected = None
    elif mutation == "extend":  # trailing bytes after a group's last shard
        # (bytes added to a middle shard shift the rest, as TF.js's concatenation does)
        files[groups[g]["paths"][-1]] += rng.randbytes(rng.randint(1, 9))
        case.exact_or_error = True
    elif mutation == "missing":
        del files[victim]
        case.expected = None
    elif mutation == "bad_dtype":
        groups[g]["weights"][0]["dtype"] = rng.choice(["int64", "float64", "", 7, None, "F32"])
        case.expected = None
    elif mutation == "bad_shape":
        groups[g]["weights"][0]["shape"] = rng.choice([[-1], "3", [1.5], None, [True], [[2]]])
        case.expected = None
    elif mutation == "paths_type":
        groups[g]["paths"] = rng.choice([victim, None, [7], {"a": victim}])
        case.expected = None
    elif mutation == "no_weights":
        # (a group without "weights" is the manifest rules' work: it loads as empty today)
        del groups[g]["paths"]
        case.expected = None
    elif mutation == "dup_path":
        groups[g]["paths"].append(victim)
        case.exact_or_error = True
    elif mutation == "empty_path":
        groups[g]["paths"][p] = rng.choice(["", ".", "./", "/", "//", "#", "?"])
        case.expected = None
    doc = {"modelTopology": {"class_name": "Sequential"}, "weightsManifest": groups}
    text = json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode()
    if mutation == "garbage_json":
        cut = rng.randrange(len(text))
        text = text[:cut] + rng.choice([b"", b"\x00", b"}", b"\xff", b"[[["]) + text[cut + 1 :]
        case.expected, case.may_load = None, True
    files["model.json"] = text
    return case


# -------------------------------------------------------------- the stores


@dataclass
class Stores:
    root: Path
    canary: Path
    canary_bytes: bytes
    memory_root: str
    server: StaticServer

    def urls(self, index: int) -> dict[str, str]:
        return {
            "local": str(self.root / "store" / f"c{index}"),
            "memory": f"memory://{self.memory_root}/store/c{index}",
            "http": self.server.url_for(f"store/c{index}/model.json"),
        }


@pytest.fixture
def stores(tmp_path):
    canary_bytes = b"CANARY-" + os.urandom(16)
    canary = tmp_path / "canary"
    canary.write_bytes(canary_bytes)
    memory_root = f"/fuzz-{uuid.uuid4().hex[:8]}"
    mem = fsspec.filesystem("memory")
    mem.pipe_file(f"{memory_root}/canary", canary_bytes)
    (tmp_path / "store").mkdir()
    server = StaticServer(tmp_path).start()  # its root holds the canary too
    _watch(canary)
    try:
        yield Stores(tmp_path, canary, canary_bytes, memory_root, server)
    finally:
        server.stop()
        _WATCHED.discard(os.path.abspath(canary))
        for key in [k for k in mem.store if k.startswith(memory_root + "/")]:
            del mem.store[key]  # (a recursive rm of thousands of keys takes seconds)
        mem.pseudo_dirs[:] = [d for d in mem.pseudo_dirs if not d.startswith(memory_root)]


def _write(stores: Stores, case: Case) -> None:
    folder = stores.root / "store" / f"c{case.index}"
    folder.mkdir()
    mem = fsspec.filesystem("memory")
    for name, data in case.files.items():
        (folder / name).write_bytes(data)
        mem.pipe_file(f"{stores.memory_root}/store/c{case.index}/{name}", data)


def _outcome(url: str) -> dict[str, np.ndarray] | TFJSError:
    try:
        return tfjsfs.load_weights(url)
    except TFJSError as exc:
        return exc


def _describe(case: Case, kind: str) -> str:
    return f"seed={SEED} case={case.index} mutation={case.mutation} store={kind}"


def _judge(case: Case, got: dict[str, np.ndarray] | TFJSError, where: str, canary: bytes) -> str:
    """Check one load against the case's rule; the outcome's name for the tally."""
    if isinstance(got, TFJSError):
        assert canary not in str(got).encode(), where
        allowed = case.expected is None or case.exact_or_error
        assert allowed, f"{where}: a clean bundle failed: {got!r}"
        # a hostile path is refused by the resolver, or, when it is malformed as a
        # string (NUL, over-long names), by the manifest rules naming the paths field
        refused = isinstance(got, UnsafePathError) or (
            isinstance(got, ManifestError) and ".paths[" in str(got)
        )
        if case.mutation == "hostile" and not refused:
            pytest.fail(f"{where}: hostile path gave {got!r}, not UnsafePathError")
        return type(got).__name__
    for value in got.values():
        assert canary not in value.tobytes(), where
    if case.may_load:
        return "loaded"
    assert case.expected is not None, f"{where}: loaded {sorted(got)} from a bad bundle"
    assert sorted(got) == sorted(case.expected), where
    for name, value in case.expected.items():
        assert got[name].dtype == value.dtype, f"{where}: {name}"
        assert got[name].shape == value.shape, f"{where}: {name}"
        assert got[name].tobytes() == value.tobytes(), f"{where}: {name}"
    return "exact"


def test_generated_manifests_load_exactly_or_fail_typed(stores):
    print(f"\nfuzz: seed={SEED} cases={CASES} (TFJSFS_FUZZ_SEED/TFJSFS_FUZZ_CASES to change)")
    rng = random.Random(SEED)
    cases = [_make_case(rng, i, stores.server.url, stores.canary) for i in range(CASES)]
    tally: dict[str, int] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        for case in cases:
            _write(stores, case)
            for kind, url in stores.urls(case.index).items():
                where = _describe(case, kind)
                future = pool.submit(_outcome, url)
                try:
                    got = future.result(timeout=CASE_TIMEOUT)
                except concurrent.futures.TimeoutError:
                    pytest.fail(f"{where}: no answer within {CASE_TIMEOUT} s")
                except Exception as exc:
                    pytest.fail(f"{where}: {type(exc).__name__} is not a TFJSError: {exc}")
                assert _OPENED == [], f"{where}: the canary was opened"
                outcome = _judge(case, got, where, stores.canary_bytes)
                tally[outcome] = tally.get(outcome, 0) + 1
    assert not any(r.path.endswith("/canary") for r in stores.server.stats.requests)
    print(f"fuzz: outcomes {dict(sorted(tally.items()))}")
    assert tally.get("exact", 0) >= CASES // 2  # the clean share loaded, in every store
    assert tally.get("UnsafePathError", 0) >= CASES // 2  # and the hostile share was refused
