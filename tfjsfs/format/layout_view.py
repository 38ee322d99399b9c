"""A model's layout as a page shows it: inputs, outputs, groups, shards, byte ranges.

Pure functions over a parsed :class:`~tfjsfs.format.manifest.ModelJSON` and
the sizes of its shard files (no I/O): the server's model description and
``tfjsfs info --html`` both use :func:`describe_layout`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import TFJSError
from .manifest import ModelJSON, WeightIndex
from .summary import summarize

__all__ = ["HISTOGRAM_BINS", "describe_layout", "histogram", "layer_of", "loader_call"]

#: Bins of a tensor's histogram on the model page (``static/pages.js`` uses the same).
HISTOGRAM_BINS = 24


def loader_call(format_: str | None, model_url: str) -> str:
    """The TF.js call that loads a model of this *format* from *model_url*.

    ``tf.loadGraphModel`` for ``graph-model`` bundles, ``tf.loadLayersModel``
    otherwise (TF.js's own default for a model.json with a Keras topology).
    """
    fn = "tf.loadGraphModel" if format_ == "graph-model" else "tf.loadLayersModel"
    return f"const model = await {fn}('{model_url}');"


def layer_of(weight_name: str) -> str:
    """The layer a weight belongs to: its name up to the last ``/``."""
    head, sep, _ = weight_name.rpartition("/")
    return head if sep else weight_name


def describe_layout(doc: ModelJSON, shard_files: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Inputs, outputs, signature, weight groups and each weight's byte ranges.

    Parameters
    ----------
    doc : ModelJSON
    shard_files : sequence of mapping
        The bundle's weight files in manifest order, each with ``path``,
        ``size`` (None when missing) and ``url``.

    Returns
    -------
    dict
        ``summary`` (class, inputs, outputs, parameters), ``signature``,
        ``groups`` (each with its ``files``, weight count and bytes) and
        ``weights`` in manifest order (name, shape, dtype, bytes, group,
        quantization) with ``ranges``: the ``[url, start, end)`` byte ranges
        that hold it, or None when shards are missing or short.
    """
    summary = summarize(doc).to_json()
    for key in ("weights", "layers", "ops"):
        summary.pop(key, None)
    groups: list[dict[str, Any]] = []
    at = 0
    for g, group in enumerate(doc.weights_manifest):
        files = list(shard_files[at : at + len(group.paths)])
        at += len(group.paths)
        groups.append(
            {
                "index": g,
                "files": files,
                "weights": len(group.weights),
                "bytes": group.expected_bytes,
            }
        )
    weights = []
    for spec, ranges in zip(doc.weight_specs, _ranges(doc, groups), strict=True):
        item: dict[str, Any] = {
            "name": spec.name,
            "shape": list(spec.shape),
            "dtype": spec.dtype,
            "bytes": spec.byte_length,
        }
        if spec.group is not None:
            item["group"] = spec.group
        if spec.quantization is not None:
            item["quantization"] = spec.quantization.to_json()
        item["ranges"] = ranges
        weights.append(item)
    return {
        "summary": summary,
        "signature": doc.signature,
        "groups": groups,
        "weights": weights,
    }


def _ranges(doc: ModelJSON, groups: list[dict[str, Any]]) -> list[Any]:
    """Byte ranges per weight, group by group (a group with a missing or short
    shard gives None for its weights; the others still have theirs)."""
    found: dict[int, list[Any]] = {}
    for g, (group, view) in enumerate(zip(doc.weights_manifest, groups, strict=True)):
        files = view["files"]
        sizes = [f.get("size") for f in files]
        if len(sizes) != len(group.paths) or not all(isinstance(n, int) for n in sizes):
            continue
        try:
            index = WeightIndex([group], [sizes])
        except (TFJSError, ValueError):
            continue
        found[g] = [
            None
            if (loc := index.locations.get(spec.name)) is None
            else [[files[i]["url"], start, end] for i, start, end in loc.segments]
            for spec in group.weights
        ]
    out: list[Any] = []
    for g, group in enumerate(doc.weights_manifest):
        out.extend(found.get(g) or [None] * len(group.weights))
    return out


def histogram(values: np.ndarray, bins: int = HISTOGRAM_BINS) -> dict[str, Any] | None:
    """A tensor's values binned as the model page draws them.

    Equal-width bins from the smallest to the largest finite value (the last
    bin closed); non-finite values are counted in ``count`` only. None for
    tensors that are not numbers (strings).

    Returns
    -------
    dict or None
        ``bins`` (counts), ``count``, ``min``, ``max``, ``mean``.
    """
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        return None
    flat = arr.astype(np.float64).ravel()
    finite = flat[np.isfinite(flat)]
    if finite.size == 0:
        return {"bins": [0] * bins, "count": int(flat.size), "min": None, "max": None, "mean": 0}
    lo, hi = float(finite.min()), float(finite.max())
    width = (hi - lo) / bins if hi > lo else 1.0
    index = np.minimum(bins - 1, np.floor((finite - lo) / width)).astype(np.int64)
    return {
        "bins": np.bincount(index, minlength=bins).tolist(),
        "count": int(flat.size),
        "min": lo,
        "max": hi,
        "mean": float(finite.mean()),
    }
