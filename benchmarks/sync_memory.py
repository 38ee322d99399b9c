"""Sync on Dask: peak memory of each worker as the tree grows.

Usage
-----
::

    python benchmarks/sync_memory.py [--sizes 64 256] [--json results.json]
    python benchmarks/sync_memory.py --in-process [--sizes 256 1024] [--tensors 400]

What runs
---------
A local Dask cluster on 127.0.0.1 (2 worker processes, 2 threads each) runs
``tfjsfs.sync_models(src, dst, scheduler=client)`` from one local folder to another,
for trees of ``--sizes`` models (each 1 MiB of float32 weights in 4 shards). For each
tree the sync runs twice into an empty destination: with tasks of at most
``tfjsfs.model.bulk.MAX_TASK_ITEMS`` models (today's chunking) and with the earlier
chunking (four tasks per worker thread, whatever the tree's size).

With ``--in-process`` the sync runs without Dask, in this process, on models of
``--tensors`` small tensors each (a model.json of about 100 bytes per tensor), and the
peak extra RSS of this process is reported the same way.

Memory is read from the kernel in each worker process, as ``benchmarks/memory.py``
does for loads: the peak mark ``VmHWM`` is reset (``/proc/self/clear_refs``) right
before the sync and read right after; "peak extra" is ``VmHWM`` minus ``VmRSS`` at the
reset. Bounded memory means the peak does not grow with the number of models.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import memory  # noqa: E402

MiB = 2**20


def make_models(root: Path, count: int, tensors: int = 4) -> int:
    """*count* models of 1 MiB of float32 weights in *tensors* tensors; weight bytes."""
    import tfjsfs

    topology = {"class_name": "Sequential", "config": {"name": "bench", "layers": []}}
    per = 2**18 // tensors  # float32 values per tensor
    for i in range(count):
        rng = np.random.default_rng(i)
        w = {f"layer{j}/kernel": rng.normal(size=per).astype(np.float32) for j in range(tensors)}
        art = tfjsfs.ModelArtifacts.from_weights(topology, w)
        tfjsfs.save_model(art, str(root / f"m{i:04d}"), shard_size=256 * 1024)
    return count * tensors * per * 4


def measure_in_process(sizes: list[int], tensors: int) -> dict:
    import tfjsfs

    results: dict = {"tensors": tensors, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        warm = Path(tmp) / "warm"
        make_models(warm, 2, tensors)
        tfjsfs.sync_models(str(warm), str(Path(tmp) / "warm-dst"))
        for count in sizes:
            src = Path(tmp) / f"src{count}"
            weight_bytes = make_models(src, count, tensors)
            json_bytes = sum(p.stat().st_size for p in src.rglob("model.json"))
            before = memory.reset_peak()
            t0 = time.perf_counter()
            report = tfjsfs.sync_models(str(src), str(Path(tmp) / f"dst{count}"))
            seconds = time.perf_counter() - t0
            peak = memory.peak()
            assert report.ok and report.count("new") == count, report.summary()
            results["runs"].append(
                {
                    "models": count,
                    "weight_mib": weight_bytes / MiB,
                    "json_mib": json_bytes / MiB,
                    "seconds": seconds,
                    "peak_extra_mib": (peak - before) / MiB,
                }
            )
    return results


def print_in_process(results: dict) -> None:
    print(f"\nsync without Dask, local -> local, {results['tensors']} tensors per model")
    print(f"{'models':>7}{'weights MiB':>13}{'JSON MiB':>10}{'s':>7}  peak extra MiB")
    for r in results["runs"]:
        print(
            f"{r['models']:>7}{r['weight_mib']:>13.0f}{r['json_mib']:>10.1f}"
            f"{r['seconds']:>7.1f}  {r['peak_extra_mib']:.1f}"
        )


def measure(sizes: list[int]) -> dict:
    import cloudpickle
    from distributed import Client, LocalCluster

    import tfjsfs
    from tfjsfs.model import bulk

    for module in (sys.modules[__name__], memory):  # workers can't import us
        cloudpickle.register_pickle_by_value(module)
    capped = bulk.MAX_TASK_ITEMS
    results: dict = {"workers": 2, "threads_per_worker": 2, "runs": []}
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalCluster(
            n_workers=2,
            threads_per_worker=2,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        warm_src = Path(tmp) / "warm"
        make_models(warm_src, 2)
        tfjsfs.sync_models(str(warm_src), str(Path(tmp) / "warm-dst"), scheduler=client)
        for count in sizes:
            src = Path(tmp) / f"src{count}"
            weight_bytes = make_models(src, count)
            for label, limit in (("capped tasks", capped), ("four tasks per thread", 10**9)):
                bulk.MAX_TASK_ITEMS = limit
                try:
                    tasks = len(bulk._chunks(list(range(count)), 4 * 4))  # as _run_tasks
                    dst = Path(tmp) / f"dst{count}-{limit}"
                    before = client.run(memory.reset_peak)
                    t0 = time.perf_counter()
                    report = tfjsfs.sync_models(str(src), str(dst), scheduler=client)
                    seconds = time.perf_counter() - t0
                    peaks = client.run(memory.peak)
                finally:
                    bulk.MAX_TASK_ITEMS = capped
                assert report.ok and report.count("new") == count, report.summary()
                extra = {w: peaks[w] - before[w] for w in peaks}
                results["runs"].append(
                    {
                        "models": count,
                        "chunking": label,
                        "tasks": tasks,
                        "weight_mib": weight_bytes / MiB,
                        "seconds": seconds,
                        "peak_extra_mib": sorted(v / MiB for v in extra.values()),
                    }
                )
    return results


def print_results(results: dict) -> None:
    print(
        f"\nsync on Dask ({results['workers']} workers x {results['threads_per_worker']} "
        "threads), local -> local: peak extra RSS of each worker"
    )
    print(
        f"{'models':>7}  {'chunking':<24}{'tasks':>6}{'weights MiB':>13}{'s':>7}  peak extra MiB"
    )
    for r in results["runs"]:
        peaks = ", ".join(f"{p:.1f}" for p in r["peak_extra_mib"])
        print(
            f"{r['models']:>7}  {r['chunking']:<24}{r['tasks']:>6}{r['weight_mib']:>13.0f}"
            f"{r['seconds']:>7.1f}  {peaks}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--in-process", action="store_true", help="no Dask: this process")
    parser.add_argument("--tensors", type=int, default=400, help="per model, --in-process")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if args.in_process:
        results = measure_in_process(args.sizes, args.tensors)
        print_in_process(results)
    else:
        results = measure(args.sizes)
        print_results(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
