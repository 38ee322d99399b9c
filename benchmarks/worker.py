"""One loader, timed in a fresh process: ``python worker.py SPEC_JSON``.

The spec names the loader (a key of ``loaders.LOADERS``), its context, the number of
repeats and the model's checksums. The loader's imports run before timing; then
``warmup`` untimed runs and ``repeats`` runs timed with ``time.perf_counter``; each run's
peak extra RSS is measured (see ``memory.py``; the harness reports the first run's, made
in a fresh process). The first run's result is verified (tensor count and sizes, sha256 of
a sample of tensors, outside the timed region). The last stdout line is
``RESULT {json}``; a failure to import/prepare is reported as ``unavailable``.
"""

import gc
import hashlib
import json
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(1, REPO)  # the working tree's tfjsfs, when not installed

import memory  # noqa: E402
import netguard  # noqa: E402

netguard.install()


def _digest(array):
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def verify(result, spec):
    """Check a loader's result against the model; return an error string or None."""
    import models

    checks = spec["checks"]
    if spec.get("tensor"):
        want = checks.get(spec["tensor"])
        return None if _digest(result) == want else f"tensor {spec['tensor']}: wrong bytes"
    if isinstance(result, dict) and "buffer" in result and "group" in result:
        buf, group = result["buffer"], result["group"]
        if buf.nbytes != spec["nbytes"]:
            return f"buffer holds {buf.nbytes} bytes, model has {spec['nbytes']}"
        result = models.views(buf, group)
    if spec.get("parse_only"):
        if isinstance(result, dict):
            n = sum(len(g["weights"]) for g in result["weightsManifest"])
        else:  # tfjsfs's columns, one per group
            n = sum(map(len, result))
        return None if n == spec["n_tensors"] else f"manifest lists {n} tensors"
    if len(result) != spec["n_tensors"]:
        return f"got {len(result)} tensors, model has {spec['n_tensors']}"
    total = sum(int(a.nbytes) for a in result.values())
    if total != spec["nbytes"]:
        return f"got {total} bytes of tensors, model has {spec['nbytes']}"
    for name, want in checks.items():
        if name not in result:
            return f"missing tensor {name}"
        if _digest(result[name]) != want:
            return f"tensor {name}: wrong bytes"
    return None


def run(spec):
    import loaders

    load, prepare = loaders.LOADERS[spec["loader"]]
    ctx = spec["ctx"]
    try:
        if prepare is not None:
            prepare(ctx)
    except Exception as e:  # reported, not raised: the harness goes on
        return {"unavailable": True, "error": f"{type(e).__name__}: {e}"}
    warmup = spec.get("warmup", 0)
    warmup_times = []
    times, peaks, baselines = [], [], []
    verify_error = None
    for i in range(warmup + spec["repeats"]):
        gc.collect()
        with memory.PeakRSS() as peak:
            t0 = time.perf_counter()
            result = load(ctx)
            t1 = time.perf_counter()
        if i >= warmup:
            times.append(t1 - t0)
        else:
            warmup_times.append(t1 - t0)
        peaks.append(peak.peak_extra)
        baselines.append(peak.baseline)
        if i == 0:
            verify_error = verify(result, spec)
        del result
    return {
        "runs": warmup + spec["repeats"],
        "warmup_times": warmup_times,
        "times": times,
        "peak_extra": peaks,
        "rss_baseline": baselines,
        "memory_method": peak.method,
        "verified": verify_error is None,
        "verify_error": verify_error,
    }


def main(argv):
    spec = json.loads(argv[1])
    try:
        out = run(spec)
    except Exception as e:
        out = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=6)}
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv)
