"""Anchor measurements (2026-11-22, reference/anchors.md) and the issue's targets.

Anchors are absolute figures from one earlier run on this kind of machine; they drift up
to 2x between runs, so the harness reports this run's figure over the anchor only as a
sanity check, and judges targets on ratios measured within one run.
"""

# (scenario, model, loader) -> anchor figures; MB = 10^6 bytes
ANCHORS = {
    ("local", "big", "limit"): {"mb_s": 6198, "peak_ratio": 1.00},
    ("local", "big", "converter"): {"mb_s": 960, "peak_ratio": 2.02},
    ("local", "small", "limit"): {"mb_s": 510, "peak_ratio": 1.16},
    ("local", "small", "converter"): {"mb_s": 328, "peak_ratio": 2.35},
    ("local", "small", "parse-json"): {"seconds": 0.084},
    ("http", "big", "limit"): {"mb_s": 1638, "peak_ratio": 1.11},
    ("http", "big", "sequential"): {"mb_s": 448, "peak_ratio": 2.01},
    ("http", "big", "tfjs-node"): {"mb_s": 262, "peak_ratio": 2.79},
    ("http", "small", "limit"): {"mb_s": 448, "peak_ratio": 1.23},
    ("http", "small", "tfjs-node"): {"mb_s": 145, "peak_ratio": 4.01},
    ("wan-41ms", "big", "limit"): {"mb_s": 23.1, "x_link": 0.92},
    ("wan-41ms", "big", "sequential"): {"mb_s": 19.0, "x_link": 0.76},
    ("wan-41ms", "big", "tfjs-node"): {"mb_s": 21.9, "x_link": 0.88},
    ("s3", "big", "sequential"): {"mb_s": 173, "peak_ratio": 2.07},
    ("s3", "big", "cat"): {"mb_s": 324, "peak_ratio": 2.13},
    ("one-tensor", "big", "ranges"): {
        "time_vs_full": 0.027,
        "x_tensor": 1.00,
        "text": "2.7% of full-load time, 1.00x tensor bytes",
    },
    ("one-tensor", "big", "shards"): {
        "fetched": 8 * 2**20,
        "x_tensor": 5.3,
        "text": "8 MiB fetched (5.3x)",
    },
    ("one-tensor", "big", "tfjs-node"): {
        "fetched": 256 * 2**20,
        "text": "256 MiB fetched (the whole group)",
    },
}


def anchor(scenario, model, loader):
    """The anchor figures for one row, or None."""
    return ANCHORS.get((scenario, model, loader))


# scenario prefix -> [(description, metric key, comparison, bound)]
# metric keys are computed by run.py's ``_targets`` from the rows of one scenario.
TARGETS = {
    "local": [
        ("tfjsfs / readinto limit", "tfjsfs/limit", ">=", 0.8),
        ("tfjsfs / converter read_weights", "tfjsfs/converter", ">=", 1.5),
        ("tfjsfs peak extra memory / model bytes", "tfjsfs.peak", "<=", 1.2),
    ],
    "http": [
        ("tfjsfs / raw concurrent limit", "tfjsfs/limit", ">=", 0.8),
        ("tfjsfs / TF.js in Node", "tfjsfs/tfjs-node", ">=", 1.5),
    ],
    "wan": [
        ("tfjsfs / link bandwidth", "tfjsfs.x_link", ">=", 0.8),
        ("tfjsfs / sequential fetch", "tfjsfs/sequential", ">=", 1.15),
    ],
    "s3": [
        ("tfjsfs / sequential cat_file", "tfjsfs/sequential", ">=", 1.5),
        ("tfjsfs / backend cat(list)", "tfjsfs/cat", ">=", 0.9),
    ],
    "gcs": [
        ("tfjsfs / sequential cat_file", "tfjsfs/sequential", ">=", 1.5),
        ("tfjsfs / backend cat(list)", "tfjsfs/cat", ">=", 0.9),
    ],
    "one-tensor": [
        (
            "tfjsfs shard bytes fetched - tensor bytes (max_gap bound)",
            "tfjsfs.excess_bytes",
            "<=",
            "max_gap",
        ),
        ("tfjsfs one-tensor time / tfjsfs full load", "tfjsfs.time_vs_full", "<=", 0.05),
    ],
}


def targets_for(scenario):
    """Targets for a scenario id such as ``wan-41ms``."""
    return TARGETS.get(scenario.split("-")[0] if scenario.startswith("wan") else scenario, [])
