"""TF.js's ``tf.io.browserFiles``: a model from files a program already holds.

::

    handler = tfjsfs.from_files(request.files["model"], request.files.getlist("weights"))
    artifacts = tfjsfs.load_model(handler)
    tfjsfs.copy_model(handler, "s3://bucket/models/uploaded")

A file may be anything a web framework, a notebook widget or an archive
hands over: bytes, a binary file object (``.read()``, named by ``.filename``
or ``.name``), an upload object with a ``.file`` (Starlette, FastAPI), an
ipywidgets ``FileUpload`` value (``{"name": …, "content": …}``), a
``(name, data)`` pair, or a path. Weight files may also be given as a
mapping ``{name: data}``.

Weight files are matched to the manifest's paths by base name, with
TF.js's rules and errors: every manifest path's base name must be provided,
no base name may appear twice in the manifest, and no extra file may be
given. The weight data is the files' bytes in manifest order.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..errors import FormatError, ManifestError, ShardMissingError, WeightDataError
from ..format.artifacts import ModelArtifacts
from ..format.manifest import ModelJSON
from ..io.bundle import Bundle, group_offsets, parse_model_json
from ..io.fetch import index_from_buffer
from .api import _artifacts_from

__all__ = ["FilesHandler", "from_files"]


def _content(data: Any, what: str) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode()
    raise FormatError(f"{what}: expected bytes, got {type(data).__name__}")


def read_file(item: Any, what: str) -> tuple[str | None, bytes]:
    """``(name or None, bytes)`` of one file in any of the accepted forms."""
    if isinstance(item, tuple) and len(item) == 2:
        name, data = item
        if not isinstance(name, str):
            raise FormatError(f"{what}: a (name, data) pair needs a str name, got {name!r}")
        return name, read_file(data, what)[1]
    if isinstance(item, (bytes, bytearray, memoryview)):
        return None, bytes(item)
    if isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        with open(path, "rb") as fh:
            return os.path.basename(path), fh.read()
    if isinstance(item, Mapping) and "content" in item:  # ipywidgets FileUpload value
        return item.get("name"), _content(item["content"], what)
    inner = getattr(item, "file", None)  # Starlette/FastAPI UploadFile
    reader = inner if inner is not None and hasattr(inner, "read") else item
    if not hasattr(reader, "read"):
        raise FormatError(
            f"{what}: expected bytes, a file object, a (name, data) pair or a path, "
            f"got {type(item).__name__}"
        )
    name = getattr(item, "filename", None) or getattr(item, "name", None)
    data = reader.read()
    return (
        posixpath.basename(os.fspath(name)) if isinstance(name, (str, os.PathLike)) else None
    ), _content(data, what)


class FilesHandler:
    """An IOHandler over a model JSON and its weight files held in memory.

    Made by :func:`from_files`; its :meth:`load` may be called any number
    of times (the files are read once).
    """

    def __init__(self, json_file: Any, weight_files: Any = ()):
        self._json_file = json_file
        self._weight_files = weight_files
        self._read: tuple[str, bytes, list[tuple[str | None, bytes]]] | None = None

    def _files(self) -> tuple[str, bytes, list[tuple[str | None, bytes]]]:
        if self._read is None:
            name, text = read_file(self._json_file, "the model JSON file")
            items: Iterable[Any]
            if isinstance(self._weight_files, Mapping):
                items = list(self._weight_files.items())
            elif isinstance(self._weight_files, (bytes, bytearray, memoryview, str, os.PathLike)):
                items = [self._weight_files]
            else:
                items = list(self._weight_files or ())
            weights = [read_file(f, f"weight file {i + 1}") for i, f in enumerate(items)]
            self._read = (name or "model.json", text, weights)
        return self._read

    def load(self) -> ModelArtifacts:
        """The model's artifacts (TF.js ``BrowserFiles.load``).

        Raises
        ------
        ManifestError
            The JSON is not a model, or a base name appears twice in its manifest.
        ShardMissingError
            A manifest path's base name is not among the weight files.
        WeightDataError
            Extra weight files, a file without a name, or files whose byte
            counts do not fit the manifest's weights.
        """
        json_name, text, weights = self._files()
        raw = parse_model_json(text, json_name)
        doc = ModelJSON.parse(raw, json_name)
        by_name: dict[str, bytes] = {}
        for i, (name, data) in enumerate(weights):
            if name is None:
                raise WeightDataError(
                    f"{json_name}: weight file {i + 1} ({len(data)} bytes) has no name to match "
                    "against the manifest's paths; pass (name, data) or a mapping"
                )
            by_name.setdefault(posixpath.basename(name), data)
        groups: list[list[str]] = []
        seen: set[str] = set()
        for g, group in enumerate(doc.weights_manifest):
            names = []
            for path in group.paths:
                base = posixpath.basename(path.split("?", 1)[0])
                if base in seen:
                    raise ManifestError(
                        f"{json_name}: duplicate file basename found in weights manifest: "
                        f"{base!r} (weightsManifest[{g}])"
                    )
                seen.add(base)
                if base not in by_name:
                    given = ", ".join(sorted(by_name)) or "none"
                    raise ShardMissingError(
                        f"{json_name}: weight file with basename {base!r} is not provided "
                        f"(weightsManifest[{g}]; given: {given})"
                    )
                names.append(base)
            groups.append(names)
        extra = [n for n in (name for name, _ in weights) if posixpath.basename(n) not in seen]
        if extra or len(weights) != len(seen):
            detail = f": {', '.join(map(repr, extra))} not named in it" if extra else ""
            raise WeightDataError(
                f"{json_name}: mismatch in the number of files in weights manifest ({len(seen)}) "
                f"and the number of weight files provided ({len(weights)}){detail}"
            )
        return _assemble(json_name, raw, groups, by_name)

    def __repr__(self) -> str:
        return f"FilesHandler({self._json_file!r})"


def _assemble(
    json_name: str, raw: dict, groups: list[list[str]], by_name: Mapping[str, bytes]
) -> ModelArtifacts:
    """Artifacts from the matched files, checked as a load checks shards."""
    bundle = Bundle(json_name, raw=raw)
    bundle.shard_paths = groups
    bundle.sizes = [[len(by_name[n]) for n in names] for names in groups]
    bundle.group_starts = group_offsets(bundle.sizes)
    buffer = np.frombuffer(b"".join(by_name[n] for names in groups for n in names), np.uint8)
    index_from_buffer(bundle, buffer)
    return _artifacts_from(bundle, buffer)


def from_files(json_file: Any, weight_files: Any = ()) -> FilesHandler:
    """An IOHandler over a model JSON file and its weight files (TF.js ``browserFiles``).

    Usable wherever a URL is: :func:`tfjsfs.load_model`,
    :func:`tfjsfs.load_weights`, and as the source of :func:`tfjsfs.copy_model`.

    Parameters
    ----------
    json_file
        The model JSON: bytes, a binary file object, an upload object, a
        ``(name, data)`` pair, an ipywidgets upload value or a path.
    weight_files : iterable or mapping
        The weight files in any of those forms (each must carry a name), or
        ``{name: data}``. Matched to the manifest's paths by base name.

    Returns
    -------
    FilesHandler

    Examples
    --------
    >>> files = [("group1-shard1of1.bin", data)]
    >>> handler = from_files(("model.json", json_bytes), files)  # doctest: +SKIP
    >>> tfjsfs.load_weights(handler)  # doctest: +SKIP
    """
    return FilesHandler(json_file, weight_files)
