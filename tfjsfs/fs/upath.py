"""universal-pathlib support: ``UPath("tfjs+s3://bucket/model")``.

:class:`TFJSPath` is registered for every ``tfjs+<protocol>`` entry point
(group ``universal_pathlib.implementations``) and by :func:`tfjsfs.register`.
Its filesystem is the ``tfjs+<protocol>`` class, which knows its inner
protocol from its name, so a path never falls back to the local disk.

Examples
--------
>>> from upath import UPath
>>> model = UPath("tfjs+s3://bucket/models/mnist", key="…", secret="…")  # doctest: +SKIP
>>> (model / "model.json").read_bytes()  # doctest: +SKIP
>>> numpy.load((model / "@tensors" / "dense" / "kernel.npy").open("rb"))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import fsspec
from upath import UPath

__all__ = ["TFJSPath"]


class TFJSPath(UPath):
    """A :class:`upath.UPath` on a :class:`~tfjsfs.fs.core.TFJSFileSystem`.

    Storage options are those of the filesystem (inner options such as
    ``key=``/``endpoint_url=`` included).
    """

    __slots__ = ()

    @classmethod
    def _transform_init_args(
        cls, args: tuple[Any, ...], protocol: str, storage_options: dict[str, Any]
    ) -> tuple[tuple[Any, ...], str, dict[str, Any]]:
        if protocol:
            # import the filesystem class first, so that universal-pathlib uses
            # its path rules rather than a generic flavour
            fsspec.get_filesystem_class(protocol)
            prefix = protocol + "://"
            if args and isinstance(args[0], str) and args[0].startswith(prefix):
                # ``tfjs`` and ``tfjs+X`` are different fsspec classes, which
                # universal-pathlib's protocol check would refuse to combine
                args = (args[0][len(prefix) :] or "/", *args[1:])
        return super()._transform_init_args(args, protocol, storage_options)
