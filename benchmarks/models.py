"""Benchmark models, written by the TF.js converter's own ``write_weights``.

Two shapes of model, in the converter's layout (one group, blind 4,194,304-byte cuts,
``group1-shard{i}of{n}.bin``, ``model.json`` holding ``weightsManifest`` and a minimal
``modelTopology``):

``big``
    float32 tensors of 1 KiB up to the largest size, log-uniform, about 96 of them, one
    "probe" tensor of 1.5 MiB placed so that it spans two shards (for the one-tensor
    scenario).
``small``
    many small float32 tensors (bias vectors and small kernels), long layer names.

Data are seeded ``numpy`` draws, so every run writes the same bytes. Models are cached
under a directory named by a digest of their spec; ``bench-meta.json`` is written last
and marks a complete model.
"""

import hashlib
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass

import converter
import numpy as np

KiB = 1 << 10
MiB = 1 << 20
SHARD_BYTES = 4 * MiB
META_NAME = "bench-meta.json"
PROBE_BYTES = 3 * MiB // 2

_DTYPES = {
    "float32": "<f4",
    "int32": "<i4",
    "float16": "<f2",
    "uint8": "u1",
    "uint16": "<u2",
    "bool": "?",
    "complex64": "<c8",
}


@dataclass(frozen=True)
class ModelSpec:
    """What to generate; the digest of this names the cache directory."""

    name: str
    kind: str
    total_bytes: int
    n_tensors: int
    max_tensor_bytes: int = 0
    seed: int = 20261122

    def digest(self):
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:10]


def specs(quick):
    """The ``big`` and ``small`` model specs (much smaller with ``quick``)."""
    if quick:
        return {
            "big": ModelSpec("big", "big", 32 * MiB, 96, 6 * MiB),
            "small": ModelSpec("small", "small", 6912 * KiB, 2000),
        }
    return {
        "big": ModelSpec("big", "big", 256 * MiB, 96, 48 * MiB),
        "small": ModelSpec("small", "small", 69120 * KiB, 20000),
    }


def weight_index(manifest):
    """Flatten a weights manifest.

    Returns
    -------
    list of dict
        One per group: ``paths`` and ``weights`` (``name``, ``dtype`` as a numpy
        dtype string, ``shape``, ``offset``, ``nbytes``), and ``nbytes`` (group total).
    """
    groups = []
    for group in manifest:
        offset = 0
        weights = []
        for w in group["weights"]:
            dt = np.dtype(_DTYPES[w["dtype"]])
            nbytes = math.prod(w["shape"]) * dt.itemsize
            weights.append(
                {
                    "name": w["name"],
                    "dtype": dt.str,
                    "shape": w["shape"],
                    "offset": offset,
                    "nbytes": nbytes,
                }
            )
            offset += nbytes
        groups.append({"paths": list(group["paths"]), "weights": weights, "nbytes": offset})
    return groups


def views(buffer, group):
    """Zero-copy numpy views of one group's tensors in ``buffer``."""
    out = {}
    for w in group["weights"]:
        out[w["name"]] = np.frombuffer(
            buffer, w["dtype"], math.prod(w["shape"]), w["offset"]
        ).reshape(w["shape"])
    return out


def _round_to(value, unit):
    return max(unit, int(value) // unit * unit)


def _big_layout(spec, rng):
    lo, hi, unit = KiB, spec.max_tensor_bytes, KiB
    k = spec.n_tensors - 3
    rest = spec.total_bytes - hi - lo - PROBE_BYTES
    raw = np.exp(rng.uniform(math.log(lo), math.log(hi), k))
    sizes = [_round_to(s, unit) for s in raw * (rest / raw.sum())]
    sizes = [min(s, hi) for s in sizes]
    sizes[int(np.argmax(sizes))] += rest - sum(sizes)
    if not all(lo <= s <= hi for s in sizes):
        raise ValueError(f"cannot lay out {spec}: tensor sizes out of range")
    sizes = [hi, *sizes, lo]
    order = rng.permutation(len(sizes))
    sizes = [sizes[i] for i in order]
    # place the probe where it spans two shards most evenly
    best, best_cost, offset = 0, None, 0
    for i in range(len(sizes) + 1):
        start = offset % SHARD_BYTES
        if start + PROBE_BYTES > SHARD_BYTES:
            cost = abs(start - (SHARD_BYTES - PROBE_BYTES // 2))
            if best_cost is None or cost < best_cost:
                best, best_cost = i, cost
        if i < len(sizes):
            offset += sizes[i]
    sizes.insert(best, PROBE_BYTES)
    layout = []
    for i, nbytes in enumerate(sizes):
        n = nbytes // 4
        if i == best:
            name, shape = "encoder/probe_attention/value/kernel", [384, 1024]
        else:
            leaf = (
                "embeddings" if nbytes >= 16 * MiB else ("bias" if nbytes <= 4 * KiB else "kernel")
            )
            name = f"encoder/layer_{i:03d}/dense/{leaf}"
            shape = [n // 256, 256] if n >= 512 else [n]
        layout.append((name, shape))
    return layout, best


def _small_layout(spec, rng):
    k = spec.n_tensors
    elems_total = spec.total_bytes // 4
    raw = np.exp(rng.uniform(0.0, math.log(16384), k))
    elems = [max(1, int(e)) for e in raw * (elems_total / raw.sum())]
    elems[int(np.argmax(elems))] += elems_total - sum(elems)
    layout = []
    parts = ("query", "key", "value", "output", "intermediate", "layer_norm")
    for i, n in enumerate(elems):
        block, layer = divmod(i, 40)
        part = parts[layer % len(parts)]
        leaf = "kernel" if i % 2 == 0 else "bias"
        name = f"model/transformer/encoder/block_{block:04d}/layer_{layer:02d}/{part}/dense/{leaf}"
        shape = [n // 16, 16] if (leaf == "kernel" and n % 16 == 0 and n >= 32) else [n]
        layout.append((name, shape))
    return layout, None


def _write(spec, out_dir):
    _, write_weights = converter.load()
    rng = np.random.default_rng(spec.seed)
    layout, probe = (_big_layout if spec.kind == "big" else _small_layout)(spec, rng)
    flat = rng.standard_normal(spec.total_bytes // 4, dtype=np.float32)
    entries, start = [], 0
    for name, shape in layout:
        n = math.prod(shape)
        entries.append({"name": name, "data": flat[start : start + n].reshape(shape)})
        start += n
    assert start * 4 == spec.total_bytes, (start, spec)
    manifest = write_weights.write_weights(
        [entries], out_dir, shard_size_bytes=SHARD_BYTES, write_manifest=False
    )
    model_json = {
        "format": "graph-model",
        "generatedBy": "tfjsfs benchmarks (synthetic weights)",
        "convertedBy": f"TensorFlow.js Converter v{converter.version()}",
        "modelTopology": {"node": [], "library": {}, "versions": {}},
        "weightsManifest": manifest,
    }
    with open(os.path.join(out_dir, "model.json"), "w") as f:
        json.dump(model_json, f)
    group = weight_index(manifest)[0]
    picks = {0, len(entries) - 1, int(np.argmax([w["nbytes"] for w in group["weights"]]))}
    picks.update(int(i) for i in rng.choice(len(entries), 5, replace=False))
    if probe is not None:
        picks.add(probe)
    checks = {}
    for i in sorted(picks):
        e = entries[i]
        checks[e["name"]] = hashlib.sha256(np.ascontiguousarray(e["data"]).tobytes()).hexdigest()
    meta = {
        "spec": asdict(spec),
        "dir": os.path.basename(out_dir),
        "nbytes": spec.total_bytes,
        "n_tensors": len(entries),
        "n_shards": len(group["paths"]),
        "paths": group["paths"],
        "model_json_bytes": os.path.getsize(os.path.join(out_dir, "model.json")),
        "checks": checks,
        "probe": _probe_info(group, entries[probe]["name"]) if probe is not None else None,
    }
    with open(os.path.join(out_dir, META_NAME), "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def _probe_info(group, name):
    w = next(w for w in group["weights"] if w["name"] == name)
    first = w["offset"] // SHARD_BYTES
    last = (w["offset"] + w["nbytes"] - 1) // SHARD_BYTES
    segments = []
    for shard in range(first, last + 1):
        lo = max(w["offset"], shard * SHARD_BYTES)
        hi = min(w["offset"] + w["nbytes"], (shard + 1) * SHARD_BYTES)
        segments.append(
            {
                "path": group["paths"][shard],
                "start": lo - shard * SHARD_BYTES,
                "end": hi - shard * SHARD_BYTES,
            }
        )
    return {"name": name, "nbytes": w["nbytes"], "shape": w["shape"], "segments": segments}


def ensure(spec, root, log=print):
    """Generate ``spec`` under ``root`` unless a complete copy is cached.

    Returns
    -------
    dict
        The model's metadata, plus ``path`` (absolute model directory).
    """
    out_dir = os.path.join(root, f"{spec.name}-{spec.digest()}")
    meta_path = os.path.join(out_dir, META_NAME)
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
    else:
        size = f"{spec.total_bytes / MiB:.1f} MiB, {spec.n_tensors} tensors"
        log(f"generating model {spec.name!r} ({size}) ...")
        shutil.rmtree(out_dir, ignore_errors=True)
        os.makedirs(out_dir)
        meta = _write(spec, out_dir)
    meta["path"] = os.path.abspath(out_dir)
    return meta


def warm_page_cache(meta):
    """Read every file of the model once so that local loads hit the page cache."""
    buf = bytearray(SHARD_BYTES)
    for name in [*meta["paths"], "model.json"]:
        with open(os.path.join(meta["path"], name), "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
