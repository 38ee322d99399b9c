"""Model management benchmarks: copy throughput across stores, and bulk-scan scaling.

Usage
-----
::

    python benchmarks/copy_scan.py [--quick] [--repeats N] [--sizes 25,50,100,200]
                                   [--cluster] [--json results.json]

Scenarios
---------
``copy``
    One model (converter layout, 4 MiB shards; 64 MiB, or 16 MiB with ``--quick``)
    in moto's S3 server, copied to fake-gcs-server, both on 127.0.0.1:

    - fsspec's generic copy of the same files (``fsspec.generic.GenericFileSystem``
      with per-protocol options: every file goes S3 → temp file → GCS, 20 at a time);
    - ``tfjsfs.copy_model(..., verify=False)`` (streamed shard by shard, at most 8 in
      flight, model.json last);
    - ``tfjsfs.copy_model(...)`` (the default: every shard and model.json read back
      from GCS and checked before and after publishing).

    Throughput is model weight bytes / median wall time (MB = 10^6 bytes) after one
    untimed warm-up; every destination is a fresh prefix, checked afterwards (file
    count and total bytes equal the source's).
``scan``
    ``tfjsfs.model.bulk.scan`` over N small bundles (1-3 shards each) in one S3 prefix, for
    each N in ``--sizes``: wall time, time per bundle, and the growth exponent ``k`` of
    ``time ~ N^k`` between the smallest and largest N (1 = linear). On local threads;
    with ``--cluster`` also on a Dask ``LocalCluster`` of 2 worker processes. The scan
    result is checked (every bundle found, none flagged).

Only loopback is used (a network guard refuses anything else). Absolute figures drift
with machine load; compare ratios within one run.
"""

from __future__ import annotations

import os

# before anything imports botocore or gcsfs
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
os.environ.setdefault("NO_GCE_CHECK", "true")

import argparse
import contextlib
import json
import math
import statistics
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import netguard  # noqa: E402
import servers  # noqa: E402

MB = 1e6


def _model(total_bytes: int, seed: int = 0):
    """Artifacts of ``total_bytes`` of float32 weights in 8 tensors."""
    import numpy as np

    from tfjsfs import ModelArtifacts

    rng = np.random.default_rng(seed)
    per = total_bytes // 4 // 8
    weights = {f"layer{i}/kernel": rng.standard_normal(per, dtype=np.float32) for i in range(8)}
    topology = {"class_name": "Sequential", "config": {"name": "bench", "layers": []}}
    return ModelArtifacts.from_weights(topology, weights)


def _timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up, untimed
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _tree(fs, path: str) -> tuple[int, int]:
    fs.invalidate_cache()
    found = fs.find(path, detail=True)
    return len(found), sum(e["size"] for e in found.values())


def bench_copy(s3: dict, gcs: dict, *, size: int, repeats: int) -> dict:
    """S3 → GCS: fsspec generic copy vs tfjsfs.copy_model (with and without verify)."""
    import fsspec.generic
    import gcsfs
    import s3fs

    import tfjsfs

    sfs = s3fs.S3FileSystem(skip_instance_cache=True, **s3["fs_options"])
    gfs = gcsfs.GCSFileSystem(skip_instance_cache=True, **gcs["fs_options"])
    src = f"s3://{s3['bucket']}/copy-src/m"
    art = _model(size)
    tfjsfs.save_model(art, src, storage_options=s3["fs_options"])
    want = _tree(sfs, src[5:])
    generic = fsspec.generic.GenericFileSystem(
        default_method="options",
        storage_options={"s3": s3["fs_options"], "gs": gcs["fs_options"]},
    )
    files = sorted(sfs.find(src[5:]))

    def dst() -> str:
        return f"{gcs['bucket']}/copy-dst/{uuid.uuid4().hex[:10]}"

    made: list[str] = []

    def run_generic():
        d = dst()
        made.append(d)
        generic.copy(
            [f"s3://{f}" for f in files], [f"gs://{d}/{f.rsplit('/', 1)[1]}" for f in files]
        )

    def run_tfjsfs(verify: bool):
        def go():
            d = dst()
            made.append(d)
            tfjsfs.copy_model(
                src,
                f"gs://{d}",
                verify=verify,
                src_options=s3["fs_options"],
                dst_options=gcs["fs_options"],
            )

        return go

    loaders = {
        "fsspec generic copy": run_generic,
        "tfjsfs copy_model, verify=False": run_tfjsfs(False),
        "tfjsfs copy_model (verified)": run_tfjsfs(True),
    }
    results = {}
    for name, fn in loaders.items():
        times = _timed(fn, repeats)
        got = _tree(gfs, made[-1])
        results[name] = {
            "median_s": statistics.median(times),
            "times_s": times,
            "mb_s": art.weight_data_bytes / statistics.median(times) / MB,
            "checked": got == want,
        }
    base = results["fsspec generic copy"]["mb_s"]
    for r in results.values():
        r["x_generic"] = r["mb_s"] / base
    with contextlib.suppress(FileNotFoundError):
        gfs.rm(f"{gcs['bucket']}/copy-dst", recursive=True)
    return {
        "model_bytes": art.weight_data_bytes,
        "shards": want[0] - 1,
        "results": results,
    }


def fsspec_memory():
    import fsspec

    return fsspec.filesystem("memory")


def bench_scan(s3: dict, *, sizes: list[int], repeats: int, cluster: bool) -> dict:
    """bulk.scan time for growing numbers of bundles (local threads, optionally Dask)."""
    import s3fs

    from tfjsfs.model import bulk

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3["fs_options"])
    modes = {"local threads": None}
    stack = contextlib.ExitStack()
    if cluster:
        from distributed import Client, LocalCluster

        lc = stack.enter_context(
            LocalCluster(
                n_workers=2,
                threads_per_worker=2,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=40,
            )
        )
        modes["dask LocalCluster (2 processes)"] = stack.enter_context(Client(lc))
    out: dict = {"sizes": sizes, "modes": {}}
    with stack:
        uploaded = 0
        prefix = "scan"
        rows: dict[str, list] = {m: [] for m in modes}
        for n in sizes:
            _upload_bundles_range(fs, s3["bucket"], prefix, uploaded, n)
            uploaded = n
            for mode, client in modes.items():
                url = f"s3://{s3['bucket']}/{prefix}"

                def once(client=client, url=url, n=n):
                    frame = bulk.scan(url, client, storage_options=s3["fs_options"])
                    if len(frame) != n or not frame.ok.all():
                        raise RuntimeError(f"scan found {len(frame)} bundles, expected {n}")

                times = _timed(once, repeats)
                med = statistics.median(times)
                rows[mode].append({"bundles": n, "median_s": med, "ms_per_bundle": med / n * 1e3})
        for mode, entries in rows.items():
            first, last = entries[0], entries[-1]
            k = None
            if last["bundles"] > first["bundles"]:
                k = math.log(last["median_s"] / first["median_s"]) / math.log(
                    last["bundles"] / first["bundles"]
                )
            out["modes"][mode] = {"points": entries, "growth_exponent": k}
    return out


def _upload_bundles_range(fs, bucket: str, prefix: str, start: int, stop: int) -> None:
    """Add bundles ``start..stop-1`` (so each size reuses the smaller sizes' bundles)."""
    import numpy as np

    from tfjsfs import ModelArtifacts, save_model

    mem = fsspec_memory()
    files = {}
    for i in range(start, stop):
        root = f"/bench-scan/{uuid.uuid4().hex}"
        weights = {"k": np.arange(100 + 37 * (i % 7), dtype=np.float32), "b": np.ones(8, np.int32)}
        topology = {"class_name": "Sequential", "config": {"name": f"m{i}", "layers": []}}
        save_model(
            ModelArtifacts.from_weights(topology, weights), f"memory://{root}", shard_size=256
        )
        for path in mem.find(root):
            files[f"{bucket}/{prefix}/m{i:04d}/{path[len(root) + 1 :]}"] = mem.cat_file(path)
        mem.rm(root, recursive=True)
    if files:
        fs.pipe(files)


def print_results(results: dict) -> None:
    """Print the tables of :func:`measure`'s results."""
    if "copy" in results:
        c = results["copy"]
        print(f"\ncopy S3 -> GCS: {c['model_bytes'] / MB:.1f} MB in {c['shards']} shards")
        print(f"{'copier':<34}{'MB/s':>8}{'x generic':>11}{'median s':>10}  checked")
        for name, r in c["results"].items():
            print(
                f"{name:<34}{r['mb_s']:>8.1f}{r['x_generic']:>11.2f}{r['median_s']:>10.2f}"
                f"  {'yes' if r['checked'] else 'NO'}"
            )
    if "scan" in results:
        for mode, m in results["scan"]["modes"].items():
            print(f"\nbulk.scan on {mode}")
            print(f"{'bundles':>8}{'median s':>10}{'ms/bundle':>11}")
            for p in m["points"]:
                print(f"{p['bundles']:>8}{p['median_s']:>10.2f}{p['ms_per_bundle']:>11.1f}")
            if m["growth_exponent"] is not None:
                print(f"time ~ N^{m['growth_exponent']:.2f}")


def measure(
    *,
    quick: bool = False,
    repeats: int | None = None,
    sizes: list[int] | None = None,
    cluster: bool = False,
    only: tuple[str, ...] = ("copy", "scan"),
) -> dict:
    """Run the scenarios; returns a JSON-friendly dict (for ``benchmarks/run.py``)."""
    netguard.install()
    repeats = repeats or (2 if quick else 3)
    sizes = sizes or ([25, 50, 100] if quick else [25, 50, 100, 200])
    size = (16 if quick else 64) * 1024 * 1024
    results: dict = {"quick": quick, "repeats": repeats}
    with servers.moto_s3([]) as s3:
        if "copy" in only:
            with servers.fake_gcs([]) as gcs:
                results["copy"] = bench_copy(s3, gcs, size=size, repeats=repeats)
                results["copy"]["servers"] = [s3["version"], gcs["version"]]
        if "scan" in only:
            results["scan"] = bench_scan(s3, sizes=sizes, repeats=repeats, cluster=cluster)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller model, fewer sizes")
    parser.add_argument("--repeats", type=int, help="timed repeats per figure")
    parser.add_argument("--sizes", help="bundle counts for the scan, e.g. 25,50,100,200")
    parser.add_argument("--cluster", action="store_true", help="also scan on a LocalCluster")
    parser.add_argument("--only", nargs="+", choices=("copy", "scan"), default=("copy", "scan"))
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else None
    results = measure(
        quick=args.quick,
        repeats=args.repeats,
        sizes=sizes,
        cluster=args.cluster,
        only=tuple(args.only),
    )
    print_results(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
