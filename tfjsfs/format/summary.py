"""What a model is, from its model.json alone: layers, inputs, outputs, weights.

Pure functions over a parsed :class:`~tfjsfs.format.manifest.ModelJSON` (no I/O),
used by ``tfjsfs info`` and the bulk scan. Layers models are read from their
Keras topology (TF.js's own ``model.toJSON`` and the converter's
``model_config`` form, Sequential and functional); graph models from their
GraphDef nodes and signature.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .manifest import ModelJSON, WeightSpec, stored_bytes

__all__ = ["ModelSummary", "TensorInfo", "human_size", "summarize", "weight_dtypes"]

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(nbytes: int | float | None) -> str:
    """``1536`` → ``"1.5 KiB"``; None → ``"?"``."""
    if nbytes is None:
        return "?"
    value = float(nbytes)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} {_UNITS[-1]}"  # pragma: no cover


def weight_dtypes(specs: Iterable[WeightSpec]) -> tuple[list[str], list[str]]:
    """The sorted dtypes of *specs*, and the sorted dtypes their quantizations store."""
    specs = list(specs)
    dtypes = sorted({s.dtype for s in specs})
    return dtypes, sorted({s.quantization.dtype for s in specs if s.quantization})


@dataclass
class TensorInfo:
    """A model input or output: name, shape (None for unknown dims) and dtype."""

    name: str
    shape: list[int | None] | None = None
    dtype: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form for ``tfjsfs info --json``."""
        return {"name": self.name, "shape": self.shape, "dtype": self.dtype}


@dataclass
class LayerInfo:
    """One layer (layers models) or one op kind (graph models)."""

    name: str
    kind: str
    params: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "class": self.kind, "params": self.params}


@dataclass
class ModelSummary:
    """A model.json summarised; see :func:`summarize`."""

    format: str | None
    generated_by: str | None
    converted_by: str | None
    model_class: str | None
    layers: list[LayerInfo] = field(default_factory=list)
    ops: dict[str, int] = field(default_factory=dict)
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)
    weights: list[WeightSpec] = field(default_factory=list)
    groups: int = 0
    shards: int = 0

    @property
    def weight_bytes(self) -> int | None:
        """Stored bytes of all weights (None when string weights make it unknown)."""
        return stored_bytes(self.weights)

    @property
    def parameters(self) -> int:
        """Number of weight elements."""
        return sum(s.size for s in self.weights)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for ``--json`` output."""
        return {
            "format": self.format,
            "generatedBy": self.generated_by,
            "convertedBy": self.converted_by,
            "class": self.model_class,
            "layers": [layer.to_json() for layer in self.layers],
            "ops": self.ops,
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
            "groups": self.groups,
            "shards": self.shards,
            "parameters": self.parameters,
            "weightBytes": self.weight_bytes,
            "weights": [
                {
                    "name": s.name,
                    "shape": list(s.shape),
                    "dtype": s.dtype,
                    "quantization": s.quantization.dtype if s.quantization else None,
                    "bytes": s.byte_length,
                }
                for s in self.weights
            ],
        }


def _dims(shape: Any) -> list[int | None] | None:
    if not isinstance(shape, list):
        return None
    return [d if isinstance(d, int) else None for d in shape]


def _keras_config(topology: Mapping[str, Any]) -> tuple[str | None, Any]:
    model = topology.get("model_config", topology)
    if not isinstance(model, Mapping):
        return None, None
    return model.get("class_name"), model.get("config")


def _layer_input_shape(layer: Mapping[str, Any]) -> list[int | None] | None:
    cfg = layer.get("config") or {}
    for key in ("batch_input_shape", "batch_shape"):
        if key in cfg:
            return _dims(cfg[key])
    if "input_shape" in cfg:
        dims = _dims(cfg["input_shape"])
        return None if dims is None else [None, *dims]
    return None


def _layer_name(layer: Mapping[str, Any]) -> str:
    return str((layer.get("config") or {}).get("name") or layer.get("name") or "?")


def _summarize_layers(summary: ModelSummary, topology: Mapping[str, Any]) -> None:
    class_name, config = _keras_config(topology)
    summary.model_class = class_name
    if isinstance(config, Mapping):
        layers = config.get("layers") or []
    elif isinstance(config, list):
        layers = config  # old Sequential form: the config is the layer list
        config = {}
    else:
        return
    params = Counter()
    for spec in summary.weights:
        params[spec.name.split("/", 1)[0]] += spec.size
    by_name = {}
    for layer in layers:
        if not isinstance(layer, Mapping):
            continue
        name = _layer_name(layer)
        by_name[name] = layer
        summary.layers.append(LayerInfo(name, str(layer.get("class_name", "?")), params[name]))
    dtype = None
    inputs = config.get("input_layers") if isinstance(config, Mapping) else None
    if inputs:
        for ref in inputs if isinstance(inputs[0], list) else [inputs]:
            layer = by_name.get(str(ref[0]), {})
            dtype = (layer.get("config") or {}).get("dtype")
            summary.inputs.append(TensorInfo(str(ref[0]), _layer_input_shape(layer), dtype))
    elif summary.layers:
        first = next(layer for layer in layers if isinstance(layer, Mapping))
        cfg = first.get("config") or {}
        summary.inputs.append(
            TensorInfo(_layer_name(first), _layer_input_shape(first), cfg.get("dtype"))
        )
    outputs = config.get("output_layers") if isinstance(config, Mapping) else None
    if outputs:
        for ref in outputs if isinstance(outputs[0], list) else [outputs]:
            summary.outputs.append(TensorInfo(str(ref[0])))
    elif summary.layers:
        last = summary.layers[-1]
        units = (by_name.get(last.name, {}).get("config") or {}).get("units")
        shape = [None, units] if isinstance(units, int) else None
        summary.outputs.append(TensorInfo(last.name, shape))


_DT = {"DT_FLOAT": "float32", "DT_INT32": "int32", "DT_BOOL": "bool", "DT_STRING": "string"}


def _signature_tensors(entries: Any) -> list[TensorInfo]:
    out = []
    if not isinstance(entries, Mapping):
        return out
    for key, entry in entries.items():
        if not isinstance(entry, Mapping):
            continue
        dims = (entry.get("tensorShape") or {}).get("dim")
        shape = None
        if isinstance(dims, list):
            shape = []
            for d in dims:
                size = int(d.get("size", -1)) if isinstance(d, Mapping) else -1
                shape.append(None if size < 0 else size)
        dtype = entry.get("dtype")
        out.append(TensorInfo(str(entry.get("name", key)), shape, _DT.get(dtype, dtype)))
    return out


def _summarize_graph(summary: ModelSummary, doc: ModelJSON) -> None:
    nodes = doc.model_topology.get("node") or []
    summary.model_class = "GraphModel"
    ops = Counter(str(n.get("op", "?")) for n in nodes if isinstance(n, Mapping))
    summary.ops = dict(ops.most_common())
    signature = (doc.user_defined_metadata or {}).get("signature") or doc.signature or {}
    summary.inputs = _signature_tensors(signature.get("inputs"))
    summary.outputs = _signature_tensors(signature.get("outputs"))
    if not summary.inputs:
        for node in nodes:
            if isinstance(node, Mapping) and node.get("op") == "Placeholder":
                attr = node.get("attr") or {}
                dtype = (attr.get("dtype") or {}).get("type")
                dims = ((attr.get("shape") or {}).get("shape") or {}).get("dim")
                shape = None
                if isinstance(dims, list):
                    shape = [None if int(d.get("size", -1)) < 0 else int(d["size"]) for d in dims]
                summary.inputs.append(TensorInfo(str(node.get("name")), shape, _DT.get(dtype)))


def summarize(doc: ModelJSON) -> ModelSummary:
    """Summarise a parsed model.json.

    Returns
    -------
    ModelSummary
        Format fields, the model class, layers with parameter counts (layers
        models) or op counts (graph models), inputs and outputs where the
        topology says them, and every weight spec.
    """
    summary = ModelSummary(
        doc.format,
        doc.generated_by,
        doc.converted_by,
        None,
        weights=doc.weight_specs,
        groups=len(doc.weights_manifest),
        shards=sum(len(g.paths) for g in doc.weights_manifest),
    )
    topology = doc.model_topology
    if not isinstance(topology, Mapping):
        return summary
    if doc.format == "graph-model" or "node" in topology:
        _summarize_graph(summary, doc)
    else:
        _summarize_layers(summary, topology)
    return summary
