"""Whole loads of the many-small-tensors model, this tree against another one.

Usage
-----
::

    python benchmarks/small_model.py --before OTHER_CHECKOUT [--rounds 5] [--no-orjson]

Model ``small`` of ``models.py`` (20,000 float32 tensors, 67.5 MiB, 17 shards).
Each round runs, for each tree in turn (so that a busy machine weighs on both
alike):

- ``worker.py`` of that tree with the ``tfjsfs`` loader, locally and over HTTP
  (nginx, or aiohttp's static handler, on 127.0.0.1): the peak extra memory of
  the first load in a fresh process over the weight bytes, as ``run.py``
  measures it;
- in one more fresh process, wall and CPU time (``time.process_time``, every
  thread) of the model.json part of a whole load, ``open_bundle(fs, path,
  validate=False)`` on the local folder (read, parse, validate, lay out the
  weights), and of whole loads, local and over HTTP: medians of 5 timed calls
  after one untimed. CPU time is the steadier figure on a busy machine.

The table shows the medians over the rounds. ``--no-orjson`` blocks orjson in
every child process (the standard library's parser then reads model.json).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import models
import servers

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

TIMED = """
import asyncio, gc, json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
import aiohttp
import tfjsfs, tfjsfs.fs.core
from tfjsfs.io.bundle import open_bundle
from tfjsfs.io.opening import open_store

async def open_only(path):
    fs, inner, _ = open_store(path, {})
    return await open_bundle(fs, inner, validate=False)

def run(call):
    wall, cpu = [], []
    for i in range(6):
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        call()
        if i:
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return [statistics.median(wall), statistics.median(cpu)]

out = {
    "open_bundle": run(lambda: asyncio.run(open_only(sys.argv[2]))),
    "local": run(lambda: tfjsfs.load_weights(sys.argv[2])),
    "http": run(lambda: tfjsfs.load_weights(sys.argv[3])),
}
print("RESULT " + json.dumps(out))
"""


def _result(proc):
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.strip()[-400:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def _peak(tree, env, meta, ctx):
    spec = {
        "loader": "tfjsfs",
        "ctx": ctx,
        "warmup": 1,
        "repeats": 3,
        "checks": meta["checks"],
        "nbytes": meta["nbytes"],
        "n_tensors": meta["n_tensors"],
        "parse_only": False,
    }
    worker = os.path.join(tree, "benchmarks", "worker.py")
    out = _result(
        subprocess.run(
            [sys.executable, worker, json.dumps(spec)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tree,
        )
    )
    if out.get("error") or not out.get("verified"):
        raise RuntimeError(f"{tree}: {out.get('error') or out.get('verify_error')}")
    return out["peak_extra"][0] / meta["nbytes"]


def _times(tree, env, path, url):
    proc = subprocess.run(
        [sys.executable, "-c", TIMED, tree, path, url],
        capture_output=True,
        text=True,
        env=env,
        cwd=tree,
    )
    return _result(proc)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", required=True, help="another checkout of the repository")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--no-orjson", action="store_true", help="block orjson in the children")
    p.add_argument("--data-dir", default=os.path.join(HERE, ".data"))
    args = p.parse_args(argv)
    trees = {"before": os.path.abspath(args.before), "after": REPO}
    meta = models.ensure(models.specs(False)["small"], os.path.join(args.data_dir, "models"))
    models.warm_page_cache(meta)
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(MALLOC_MMAP_THRESHOLD_="131072", PYTHONUNBUFFERED="1")
    with tempfile.TemporaryDirectory() as blocker:
        if args.no_orjson:
            with open(os.path.join(blocker, "sitecustomize.py"), "w") as f:
                f.write("import sys\nsys.modules['orjson'] = None\n")
            env["PYTHONPATH"] = blocker
        root = os.path.dirname(meta["path"])
        with servers.StaticServer(root) as srv:
            base = f"{srv.url}/{meta['dir']}"
            where = {
                "local": {"path": meta["path"], "tfjsfs_url": meta["path"]},
                "http": {"base_url": base, "tfjsfs_url": f"tfjs+{base}"},
            }
            got = {}
            for r in range(args.rounds):
                for name, tree in trees.items():
                    for kind, ctx in where.items():
                        peak = _peak(tree, env, meta, {**ctx, "tfjsfs_options": {}})
                        got.setdefault((name, kind, "peak"), []).append(peak)
                    times = _times(tree, env, meta["path"], where["http"]["tfjsfs_url"])
                    for what, (wall, cpu) in times.items():
                        got.setdefault((name, what, "wall"), []).append(wall)
                        got.setdefault((name, what, "cpu"), []).append(cpu)
                print(f"round {r + 1} of {args.rounds} done ({srv.kind})", file=sys.stderr)
    parser = "stdlib json" if args.no_orjson else "orjson if installed"
    print(f"model small, {args.rounds} interleaved rounds, {parser}; medians over rounds")
    print("| figure | before | after |")
    print("|---|---:|---:|")
    for kind, what, label, fmt in [
        ("local", "peak", "peak extra / model, local", "{:.3f}"),
        ("http", "peak", "peak extra / model, HTTP", "{:.3f}"),
        ("open_bundle", "wall", "model.json part of a load (open_bundle), ms", "{:.1f}"),
        ("open_bundle", "cpu", "the same, CPU ms (all threads)", "{:.1f}"),
        ("local", "wall", "whole load, local, ms", "{:.1f}"),
        ("local", "cpu", "the same, CPU ms", "{:.1f}"),
        ("http", "wall", "whole load, HTTP, ms", "{:.1f}"),
        ("http", "cpu", "the same, CPU ms", "{:.1f}"),
    ]:
        scale = 1 if what == "peak" else 1000
        cells = [fmt.format(statistics.median(got[(name, kind, what)]) * scale) for name in trees]
        print(f"| {label} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
