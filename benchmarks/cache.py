"""A cached load against a local-disk load of the same model.

Usage
-----
::

    python benchmarks/cache.py [--quick] [--repeats N]

Model ``big`` of ``run.py`` (256 MiB float32, 64 shards; ``--quick``: 32 MiB),
served by nginx on 127.0.0.1 (aiohttp's static handler if nginx is missing).
Rows, each the median of N timed runs after one untimed warm-up:

``local disk``
    ``tfjsfs.load_weights(folder)`` (page cache warm).
``http, no cache``
    ``tfjsfs.load_weights(url)``.
``http, cache cold``
    ``load_weights(url, cache=fresh_folder)``: fetch everything into the cache.
``http, cache warm``
    ``load_weights(url, cache=folder)`` again: one conditional GET of
    model.json (304), shards read from the cache folder.

Requests and body bytes of the warm row come from nginx's access log.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import models  # noqa: E402
import servers  # noqa: E402

import tfjsfs  # noqa: E402


def _time(func, repeats: int) -> float:
    func()  # warm-up
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def _log_lines(path: str) -> list[str]:
    with open(path) as f:
        return f.read().splitlines()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    meta = models.ensure(models.specs(args.quick)["big"], os.path.join(HERE, ".data"))
    folder = meta["path"]
    nbytes = meta["nbytes"]
    tmp = tempfile.mkdtemp(prefix="tfjsfs-bench-cache-")
    rows = []
    try:
        with servers.StaticServer(os.path.dirname(folder)) as http:
            url = f"{http.url}/{os.path.basename(folder)}/model.json"
            rows.append(("local disk", _time(lambda: tfjsfs.load_weights(folder), args.repeats)))
            rows.append(("http, no cache", _time(lambda: tfjsfs.load_weights(url), args.repeats)))

            def cold() -> None:
                shutil.rmtree(os.path.join(tmp, "cold"), ignore_errors=True)
                tfjsfs.load_weights(url, cache=os.path.join(tmp, "cold"))

            rows.append(("http, cache cold", _time(cold, args.repeats)))
            warm = os.path.join(tmp, "warm")
            tfjsfs.load_weights(url, cache=warm)
            before = len(_log_lines(http.log_path)) if http.kind == "nginx" else None
            seconds = _time(lambda: tfjsfs.load_weights(url, cache=warm), args.repeats)
            rows.append(("http, cache warm", seconds))
            if before is not None:
                time.sleep(0.2)  # nginx writes its log after the response
                lines = _log_lines(http.log_path)[before:]
                print(f"warm loads: {len(lines)} requests for {args.repeats + 1} loads:")
                for line in sorted(set(lines))[:3]:
                    print(f"  {line}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    local = rows[0][1]
    print(f"model: {nbytes / 1e6:.1f} MB, {meta['n_shards']} shards, {meta['n_tensors']} tensors")
    print(f"{'loader':<20}{'seconds':>10}{'MB/s':>10}{'x local':>10}")
    for name, seconds in rows:
        print(f"{name:<20}{seconds:>10.3f}{nbytes / 1e6 / seconds:>10.0f}{seconds / local:>10.2f}")


if __name__ == "__main__":
    main()
