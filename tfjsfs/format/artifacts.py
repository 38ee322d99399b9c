"""``ModelArtifacts``, ``SaveResult`` and ``ModelArtifactsInfo``, as TF.js defines them.

A :class:`ModelArtifacts` holds what TF.js's IO layer passes around: the
topology, the flat weight specs, one buffer with every weight's stored bytes in
manifest order, and the optional model.json fields. ``weights`` decodes (and
dequantizes) that buffer into numpy arrays, zero-copy where it can.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import FormatError, WeightDataError
from .codec import decode_weight, encode_weight, quantization_plan, weight_extents
from .manifest import METADATA_FIELDS, ModelJSON, WeightGroup, WeightSpec, dumps_compact

__all__ = ["ModelArtifacts", "ModelArtifactsInfo", "SaveResult"]

LAYERS_MODEL = "layers-model"
GRAPH_MODEL = "graph-model"


@dataclass
class ModelArtifactsInfo:
    """TF.js ``ModelArtifactsInfo``: byte counts as TF.js counts them.

    ``model_topology_bytes`` and ``weight_specs_bytes`` are the UTF-8 lengths
    of ``JSON.stringify`` of the topology and of the flat weight specs;
    ``weight_data_bytes`` is the length of the weight data.
    """

    date_saved: _dt.datetime
    model_topology_type: str = "JSON"
    model_topology_bytes: int = 0
    weight_specs_bytes: int = 0
    weight_data_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        """camelCase JSON, ``dateSaved`` as an ISO string, as TF.js stores it."""
        stamp = self.date_saved.astimezone(_dt.UTC)
        return {
            "dateSaved": stamp.strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{stamp.microsecond // 1000:03d}Z",
            "modelTopologyType": self.model_topology_type,
            "modelTopologyBytes": self.model_topology_bytes,
            "weightSpecsBytes": self.weight_specs_bytes,
            "weightDataBytes": self.weight_data_bytes,
        }

    @classmethod
    def count(
        cls,
        model_topology: Any,
        weight_specs: Sequence[WeightSpec],
        weight_data_bytes: int,
        date_saved: _dt.datetime | None = None,
    ) -> ModelArtifactsInfo:
        """Count as TF.js's ``getModelArtifactsInfoForJSON`` does.

        Topology and weight-spec bytes are UTF-8 lengths of their
        ``JSON.stringify``; *date_saved* defaults to now.
        """
        specs = [s.to_json() for s in weight_specs]
        return cls(
            date_saved=date_saved or _dt.datetime.now(_dt.UTC),
            model_topology_type="JSON",
            model_topology_bytes=(
                len(dumps_compact(model_topology)) if model_topology is not None else 0
            ),
            weight_specs_bytes=len(dumps_compact(specs)) if specs else 0,
            weight_data_bytes=weight_data_bytes,
        )

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ModelArtifactsInfo:
        """Parse TF.js's stored form (``dateSaved`` ISO string or epoch ms)."""
        date = doc.get("dateSaved")
        if isinstance(date, str):
            stamp = _dt.datetime.fromisoformat(date.replace("Z", "+00:00"))
        elif isinstance(date, (int, float)):
            stamp = _dt.datetime.fromtimestamp(date / 1000, _dt.UTC)
        else:
            stamp = _dt.datetime.now(_dt.UTC)
        return cls(
            stamp,
            doc.get("modelTopologyType", "JSON"),
            int(doc.get("modelTopologyBytes") or 0),
            int(doc.get("weightSpecsBytes") or 0),
            int(doc.get("weightDataBytes") or 0),
        )


@dataclass
class SaveResult:
    """TF.js ``SaveResult``, plus where the bundle went.

    Attributes
    ----------
    model_artifacts_info : ModelArtifactsInfo
    responses : list
        HTTP responses (status, headers, body) for HTTP saves.
    errors : list
    url : str
        The model.json that was written.
    files : list of str
        Every file written, shards first, model.json last.
    """

    model_artifacts_info: ModelArtifactsInfo
    responses: list[Any] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)
    url: str | None = None
    files: list[str] = field(default_factory=list)


@dataclass(eq=False)
class ModelArtifacts:
    """A TF.js model in memory (TF.js ``ModelArtifacts``).

    Parameters
    ----------
    model_topology : dict or None
        Keras-style JSON for layers models, GraphDef JSON for graph models.
    weight_specs : list of WeightSpec
        Flat, in manifest order.
    weight_data : bytes-like
        Every weight's stored bytes, concatenated in ``weight_specs`` order.
    format, generated_by, converted_by : str, optional
    signature, user_defined_metadata, model_initializer, initializer_signature,
    training_config : dict, optional
    group_lengths : tuple of int, optional
        Number of weights in each manifest group (to keep groups on a round
        trip); None means one group.
    extra : dict
        Unknown model.json keys, kept for round trips.
    null_keys : frozenset of str
        model.json keys that were present with a ``null`` value.
    problems : list of str
        Tolerated irregularities found while loading (e.g. trailing bytes).
    """

    model_topology: Any = None
    weight_specs: list[WeightSpec] = field(default_factory=list)
    weight_data: Any = b""
    format: str | None = None
    generated_by: str | None = None
    converted_by: str | None = None
    signature: dict | None = None
    user_defined_metadata: dict | None = None
    model_initializer: dict | None = None
    initializer_signature: dict | None = None
    training_config: dict | None = None
    group_lengths: tuple[int, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    null_keys: frozenset[str] = frozenset()
    problems: list[str] = field(default_factory=list)
    _weights: dict[str, np.ndarray] | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_weights(
        cls,
        model_topology: Any,
        weights: Mapping[str, Any] | Sequence[tuple[str, Any]],
        *,
        quantize: str | Mapping[str, Any] | None = None,
        groups: Sequence[Sequence[str]] | None = None,
        format: str | None = LAYERS_MODEL,
        generated_by: str | None = None,
        converted_by: str | None = None,
        **metadata: Any,
    ) -> ModelArtifacts:
        """Build artifacts from a topology and named numpy arrays.

        Parameters
        ----------
        model_topology : dict or None
        weights : mapping or sequence of (name, array)
            Order is kept; it is the manifest order.
        quantize : None, str or mapping
            See :func:`tfjsfs.format.codec.quantization_plan`.
        groups : sequence of sequence of str, optional
            Split the weights into manifest groups (each name exactly once).
        format, generated_by, converted_by : str, optional
        **metadata
            ``signature``, ``user_defined_metadata``, ``model_initializer``,
            ``initializer_signature``, ``training_config``.
        """
        items = list(weights.items()) if isinstance(weights, Mapping) else list(weights)
        names = [name for name, _ in items]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise FormatError(f"duplicate weight name {dup!r}")
        group_lengths = None
        if groups is not None:
            flat = [n for g in groups for n in g]
            if sorted(flat) != sorted(names):
                raise FormatError("groups must name every weight exactly once")
            order = {n: i for i, n in enumerate(flat)}
            items.sort(key=lambda item: order[item[0]])
            group_lengths = tuple(len(g) for g in groups)
        plan = quantization_plan(names, quantize)
        specs, chunks = [], []
        for name, value in items:
            spec, data = encode_weight(name, value, plan.get(name))
            specs.append(spec)
            chunks.extend(data)
        buffer = bytearray(sum(memoryview(c).nbytes for c in chunks))
        offset = 0
        for chunk in chunks:
            view = memoryview(chunk).cast("B")
            buffer[offset : offset + view.nbytes] = view
            offset += view.nbytes
        return cls(
            model_topology=model_topology,
            weight_specs=specs,
            weight_data=buffer,
            format=format,
            generated_by=generated_by,
            converted_by=converted_by,
            group_lengths=group_lengths,
            **metadata,
        )

    @classmethod
    def from_model_json(
        cls,
        doc: ModelJSON,
        weight_data: Any = b"",
        weight_specs: Sequence[WeightSpec] | None = None,
    ) -> ModelArtifacts:
        """Artifacts from a parsed model.json and its weight bytes."""
        specs = list(doc.weight_specs if weight_specs is None else weight_specs)
        lengths = tuple(len(g.weights) for g in doc.weights_manifest)
        return cls(
            model_topology=doc.model_topology,
            weight_specs=specs,
            weight_data=weight_data,
            **{name: getattr(doc, name) for name in METADATA_FIELDS},
            group_lengths=lengths if len(lengths) > 1 else None,
            extra=dict(doc.extra),
            null_keys=doc.null_keys,
        )

    def to_model_json(self, groups: Sequence[WeightGroup]) -> ModelJSON:
        """model.json for these artifacts, with the given manifest groups."""
        return ModelJSON(
            model_topology=self.model_topology,
            weights_manifest=tuple(groups),
            **{name: getattr(self, name) for name in METADATA_FIELDS},
            extra=dict(self.extra),
            # TF.js always writes modelTopology and convertedBy, null when unset
            null_keys=self.null_keys | {"modelTopology", "convertedBy"},
        )

    @property
    def weight_data_bytes(self) -> int:
        """Length of ``weight_data``."""
        return memoryview(self.weight_data).nbytes if self.weight_data is not None else 0

    def weight_offsets(self) -> list[tuple[int, int]]:
        """``(start, end)`` of every weight in ``weight_data``, in spec order.

        Raises
        ------
        WeightDataError
            If the data is shorter than the specs need.
        """
        view = memoryview(self.weight_data).cast("B")
        out = []
        for spec, start, end in weight_extents(self.weight_specs, view):
            if end > len(view):
                raise WeightDataError(
                    f"weight {spec.name!r} needs bytes {start}..{end} but the weight "
                    f"data holds {len(view)} bytes (short by {end - len(view)})"
                )
            out.append((start, end))
        return out

    @property
    def weights(self) -> dict[str, np.ndarray]:
        """Every weight as a numpy array (dequantized), by name, in manifest order."""
        if self._weights is None:
            view = memoryview(self.weight_data).cast("B")
            self._weights = {
                spec.name: decode_weight(spec, view[start:end])
                for spec, (start, end) in zip(
                    self.weight_specs, self.weight_offsets(), strict=True
                )
            }
        return self._weights

    def group_slices(self) -> list[tuple[int, int]]:
        """``(first spec, end spec)`` index ranges of each manifest group."""
        lengths = self.group_lengths or (len(self.weight_specs),)
        if sum(lengths) != len(self.weight_specs):
            raise FormatError("group_lengths do not add up to the number of weights")
        out, start = [], 0
        for n in lengths:
            out.append((start, start + n))
            start += n
        return out

    def info(self, date_saved: _dt.datetime | None = None) -> ModelArtifactsInfo:
        """The ``ModelArtifactsInfo`` TF.js would compute for these artifacts."""
        return ModelArtifactsInfo.count(
            self.model_topology, self.weight_specs, self.weight_data_bytes, date_saved
        )
