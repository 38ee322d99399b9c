"""Sync benchmark: 200 models, 5 of them changed, pushed from a local folder to S3.

Usage
-----
::

    python benchmarks/sync.py [--models 200] [--changed 5] [--json results.json]

What runs (one run, one moto S3 server on 127.0.0.1)
----------------------------------------------------
Every model (``--models``, default 200) has 4 float32 tensors in 4 shards of 64 KiB
(256 KiB of weights). All of them are first copied to four S3 prefixes, one per
contender. Then one tensor of ``--changed`` models (default 5) gets new values, in
place (same shard names and sizes, as a converter re-export writes them), and each
contender brings its prefix up to date:

- ``tfjsfs sync``: :func:`tfjsfs.sync_models` (only the changed shards and their
  model.json are sent);
- ``tfjsfs sync, nothing changed``: the same again, as a second run;
- ``fsspec generic copy``: the whole tree again through
  ``fsspec.generic.GenericFileSystem.copy`` (every file);
- ``naive copy everything``: ``tfjsfs.model.bulk.copy_all(..., overwrite=True,
  verify=False)``, i.e. ``tfjsfs cp -r --overwrite --no-verify``;
- ``fsspec.generic.rsync``: fsspec's own rsync (compares sizes by default), shown
  because it is the obvious alternative; it cannot see a tensor changed in place.

Requests are counted from the S3 server's own request log (werkzeug), by method, for
the timed call only. Seconds are wall time of that call. Afterwards every prefix is
checked against the source: each changed model and 5 unchanged ones are loaded and
compared value by value ("correct").
"""

from __future__ import annotations

import os

# before anything imports botocore
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

import argparse
import collections
import json
import logging
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import netguard  # noqa: E402
import numpy as np  # noqa: E402
import servers  # noqa: E402

SHARD = 64 * 1024
_REQUEST = re.compile(r'"(GET|PUT|POST|HEAD|DELETE) (\S+) HTTP/[\d.]+" (\d{3})')


class RequestLog(logging.Handler):
    """Counts the S3 server's requests by method, from werkzeug's access log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: collections.Counter = collections.Counter()
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        match = _REQUEST.search(record.getMessage())
        if match:
            with self._lock2:
                self.counts[match.group(1)] += 1

    def take(self) -> dict[str, int]:
        with self._lock2:
            out = dict(self.counts)
            self.counts.clear()
        return out


def make_models(root: Path, count: int) -> dict[str, dict[str, np.ndarray]]:
    import tfjsfs

    topology = {"class_name": "Sequential", "config": {"name": "bench", "layers": []}}
    weights = {}
    for i in range(count):
        rng = np.random.default_rng(i)
        w = {f"layer{j}/kernel": rng.normal(size=(128, 128)).astype(np.float32) for j in range(4)}
        art = tfjsfs.ModelArtifacts.from_weights(topology, w)
        tfjsfs.save_model(art, str(root / f"m{i:03d}"), shard_size=SHARD)
        weights[f"m{i:03d}"] = w
    return weights


def change_models(root: Path, weights: dict, names: list[str]) -> None:
    """Rewrite ``layer1/kernel`` (the second shard) of each model in place."""
    for name in names:
        value = (weights[name]["layer1/kernel"] + 1).astype(np.float32)
        weights[name]["layer1/kernel"] = value
        (root / name / "group1-shard2of4.bin").write_bytes(value.tobytes())


def correct(url: str, weights: dict, names: list[str], opts: dict) -> bool:
    import tfjsfs

    for name in names:
        got = tfjsfs.load_weights(f"{url}/{name}", storage_options=opts)
        if sorted(got) != sorted(weights[name]):
            return False
        if not all(np.array_equal(got[k], v) for k, v in weights[name].items()):
            return False
    return True


def measure(models: int = 200, changed: int = 5) -> dict:
    import fsspec
    import fsspec.generic
    import s3fs

    import tfjsfs
    from tfjsfs.model import bulk

    netguard.install()
    log = RequestLog()
    werkzeug = logging.getLogger("werkzeug")
    results: dict = {"models": models, "changed": changed, "contenders": {}}
    with tempfile.TemporaryDirectory() as tmp, servers.moto_s3([]) as s3:
        werkzeug.setLevel(logging.INFO)
        werkzeug.handlers[:] = [log]  # counted, not printed
        werkzeug.propagate = False
        src = Path(tmp) / "models"
        weights = make_models(src, models)
        opts, bucket = s3["fs_options"], s3["bucket"]
        files = sorted(str(p.relative_to(src)) for p in src.rglob("*") if p.is_file())
        results["files"] = len(files)
        results["weight_bytes"] = sum(p.stat().st_size for p in src.rglob("*.bin"))
        generic = fsspec.generic.GenericFileSystem(
            default_method="options", storage_options={"s3": opts, "file": {}}
        )
        urls = {k: f"s3://{bucket}/{k}" for k in ("sync", "generic", "naive", "rsync")}

        def generic_copy(dst: str) -> None:
            generic.copy([f"file://{src}/{f}" for f in files], [f"{dst}/{f}" for f in files])

        def naive(dst: str) -> None:
            frame = bulk.copy_all(str(src), dst, overwrite=True, verify=False, dst_options=opts)
            assert frame.ok.all(), frame[~frame.ok]

        def rsync(dst: str) -> None:
            fsspec.generic.rsync(str(src), dst, fs=generic)

        def sync(dst: str) -> None:
            report = tfjsfs.sync_models(str(src), dst, dst_options=opts)
            assert report.ok, report.summary()
            results.setdefault("sync_summaries", []).append(report.summary())

        t0 = time.perf_counter()
        sync(urls["sync"])
        results["first_sync_s"] = time.perf_counter() - t0
        results["first_sync_requests"] = log.take()
        generic_copy(urls["generic"])
        naive(urls["naive"])
        generic_copy(urls["rsync"])
        log.take()
        names = sorted(weights)
        step = max(1, len(names) // changed)
        picked = names[::step][:changed]
        change_models(src, weights, picked)
        check = picked + [n for n in names if n not in picked][:5]
        runs = [
            ("tfjsfs sync", lambda: sync(urls["sync"]), "sync"),
            ("tfjsfs sync, nothing changed", lambda: sync(urls["sync"]), "sync"),
            ("fsspec generic copy (whole tree)", lambda: generic_copy(urls["generic"]), "generic"),
            ("naive copy everything (cp -r --overwrite)", lambda: naive(urls["naive"]), "naive"),
            ("fsspec.generic.rsync (sizes)", lambda: rsync(urls["rsync"]), "rsync"),
        ]
        for label, run, key in runs:
            s3fs.S3FileSystem.clear_instance_cache()
            log.take()
            t0 = time.perf_counter()
            run()
            seconds = time.perf_counter() - t0
            time.sleep(0.2)  # the last log lines
            counts = log.take()
            results["contenders"][label] = {
                "seconds": seconds,
                "requests": sum(counts.values()),
                "by_method": counts,
                "correct": correct(urls[key], weights, check, opts),
            }
        werkzeug.removeHandler(log)
    return results


def print_results(results: dict) -> None:
    mib = results["weight_bytes"] / 2**20
    print(
        f"\nsync local -> S3 (moto): {results['models']} models ({results['files']} files, "
        f"{mib:.1f} MiB of weights), {results['changed']} changed"
    )
    print(f"first sync (everything new): {results['first_sync_s']:.1f} s")
    print(f"{'contender':<44}{'seconds':>9}{'requests':>10}  {'by method':<34}correct")
    for label, r in results["contenders"].items():
        methods = ", ".join(f"{k} {v}" for k, v in sorted(r["by_method"].items()))
        print(
            f"{label:<44}{r['seconds']:>9.2f}{r['requests']:>10}  {methods:<34}"
            f"{'yes' if r['correct'] else 'NO'}"
        )
    for line in results.get("sync_summaries", []):
        print(f"  tfjsfs: {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--changed", type=int, default=5)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    results = measure(args.models, args.changed)
    print_results(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
