"""Paths inside a TFJSFileSystem: virtual tensor files and what a path names.

Inside a :class:`tfjsfs.fs.core.TFJSFileSystem` a path is either a real file of
the inner filesystem or a *virtual tensor*,
``<model folder>/@tensors/<weight name>.npy``. :class:`ResolvedPath` says
which (HfFileSystem's resolved paths are the model).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

__all__ = [
    "TENSORS_DIR",
    "ResolvedPath",
    "decode_weight_name",
    "encode_weight_name",
    "resolve_virtual",
    "split_tensor_path",
]

#: the reserved folder holding a model's virtual tensors
TENSORS_DIR = "@tensors"


# ------------------------------------------------------------ weight names
_NAME_SAFE = "/:@=+,;~!$&'()"


def encode_weight_name(name: str) -> str:
    """The file path of weight *name* inside ``@tensors``, without ``.npy``.

    ``/`` in names makes folders; characters that fsspec's glob or the path
    rules would misread (``%``, ``*``, ``?``, ``[``, ``]``, ``#``, spaces,
    empty, ``.`` and ``..`` parts) are percent-encoded, so
    :func:`decode_weight_name` gives *name* back exactly.
    """
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        # no sensible folders: one file, every "/" encoded
        return urllib.parse.quote(name, safe=_NAME_SAFE.replace("/", "")).replace(".", "%2E")
    return urllib.parse.quote(name, safe=_NAME_SAFE)


def decode_weight_name(path: str) -> str:
    """Inverse of :func:`encode_weight_name`."""
    return urllib.parse.unquote(path)


# ----------------------------------------------------------- resolved paths
@dataclass(frozen=True)
class ResolvedPath:
    """What a path inside a TFJSFileSystem names.

    Parameters
    ----------
    path : str
        The path in the filesystem's own namespace (no protocol).
    inner : str
        The inner filesystem's path (a full URL for http/https).
    kind : {"model_dir", "model_json", "shard", "tensor_dir", "tensor", "other"}
        Virtual kinds (``tensor_dir``, ``tensor``) come from the path alone;
        the others need the model's manifest and are set by the filesystem.
    model_root : str, optional
        Inner path of the model folder.
    tensor_name : str, optional
        The weight name (``tensor``) or name prefix (``tensor_dir``, ``""``
        for ``@tensors`` itself).
    """

    path: str
    inner: str
    kind: str = "other"
    model_root: str | None = None
    tensor_name: str | None = None

    @property
    def is_virtual(self) -> bool:
        """Whether the path lies inside a model's ``@tensors`` folder."""
        return self.kind in ("tensor_dir", "tensor")

    def unresolve(self) -> str:
        """The path in the filesystem's own namespace."""
        return self.path


def split_tensor_path(inner: str) -> tuple[str, str] | None:
    """``(model folder, path below @tensors)`` for a virtual path, else None."""
    marker = "/" + TENSORS_DIR
    head, sep, tail = inner.partition(marker + "/")
    if sep and head:
        return head, tail.strip("/")
    if inner.endswith(marker) and len(inner) > len(marker):
        return inner[: -len(marker)], ""
    return None


def resolve_virtual(path: str, inner: str) -> ResolvedPath:
    """Classify *inner* syntactically: ``tensor``, ``tensor_dir`` or ``other``."""
    split = split_tensor_path(inner)
    if split is None:
        return ResolvedPath(path, inner)
    root, rest = split
    if rest.endswith(".npy"):
        return ResolvedPath(path, inner, "tensor", root, decode_weight_name(rest[:-4]))
    return ResolvedPath(path, inner, "tensor_dir", root, decode_weight_name(rest))
