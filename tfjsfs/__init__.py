"""tfjsfs: TensorFlow.js model bundles as first-class files for Python and fsspec.

``import tfjsfs`` is cheap and has no side effects: the public names below are
loaded on first use (module ``__getattr__``), so fsspec's entry-point lookup of
``tfjs+s3`` imports only the filesystem, never the server, the command line or
Dask. The layers (``_util``, ``format``, ``io``, ``model``, ``fs``, ``server``,
``cli``) are described in README.rst, "Architecture".
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> module that defines it
_EXPORTS = {
    "TFJSError": "tfjsfs.errors",
    "ModelArtifacts": "tfjsfs.format.artifacts",
    "ModelArtifactsInfo": "tfjsfs.format.artifacts",
    "SaveResult": "tfjsfs.format.artifacts",
    "ModelJSON": "tfjsfs.format.manifest",
    "Quantization": "tfjsfs.format.manifest",
    "WeightGroup": "tfjsfs.format.manifest",
    "WeightSpec": "tfjsfs.format.manifest",
    "IOHandler": "tfjsfs.model.handlers",
    "get_load_handlers": "tfjsfs.model.handlers",
    "get_save_handlers": "tfjsfs.model.handlers",
    "register_handler": "tfjsfs.model.handlers",
    "register_io_router": "tfjsfs.model.handlers",
    "load_model": "tfjsfs.model.api",
    "load_model_async": "tfjsfs.model.api",
    "load_weights": "tfjsfs.model.api",
    "load_weights_async": "tfjsfs.model.api",
    "save_model": "tfjsfs.model.api",
    "save_model_async": "tfjsfs.model.api",
    "AsyncModel": "tfjsfs.model.lazy",
    "Model": "tfjsfs.model.lazy",
    "ModelOpening": "tfjsfs.model.lazy",
    "open_model": "tfjsfs.model.lazy",
    "open_model_async": "tfjsfs.model.lazy",
    "from_files": "tfjsfs.model.files",
    "iter_weights": "tfjsfs.model.stream",
    "iter_weights_async": "tfjsfs.model.stream",
    "copy_model": "tfjsfs.model.copying",
    "copy_model_async": "tfjsfs.model.copying",
    "list_models": "tfjsfs.model.discovery",
    "list_models_async": "tfjsfs.model.discovery",
    "move_model": "tfjsfs.model.copying",
    "move_model_async": "tfjsfs.model.copying",
    "remove_model": "tfjsfs.model.removal",
    "remove_model_async": "tfjsfs.model.removal",
    "SyncReport": "tfjsfs.model.sync",
    "sync_models": "tfjsfs.model.sync",
    "sync_models_async": "tfjsfs.model.sync",
    "TFJSFileSystem": "tfjsfs.fs.core",
    "register": "tfjsfs.fs.registry",
    "register_protocols": "tfjsfs.fs.registry",
}
#: modules that moved into a layer, still importable by their old names
_MOVED_MODULES = {"bulk": "tfjsfs.model.bulk", "browser": "tfjsfs.format.browser"}

__all__ = [
    "AsyncModel",
    "IOHandler",
    "Model",
    "ModelArtifacts",
    "ModelArtifactsInfo",
    "ModelJSON",
    "ModelOpening",
    "Quantization",
    "SaveResult",
    "SyncReport",
    "TFJSError",
    "TFJSFileSystem",
    "WeightGroup",
    "WeightSpec",
    "copy_model",
    "copy_model_async",
    "from_files",
    "get_load_handlers",
    "get_save_handlers",
    "iter_weights",
    "iter_weights_async",
    "list_models",
    "list_models_async",
    "load_model",
    "load_model_async",
    "load_weights",
    "load_weights_async",
    "move_model",
    "move_model_async",
    "open_model",
    "open_model_async",
    "register",
    "register_handler",
    "register_io_router",
    "register_protocols",
    "remove_model",
    "remove_model_async",
    "save_model",
    "save_model_async",
    "sync_models",
    "sync_models_async",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .errors import TFJSError
    from .format.artifacts import ModelArtifacts, ModelArtifactsInfo, SaveResult
    from .format.manifest import ModelJSON, Quantization, WeightGroup, WeightSpec
    from .fs.core import TFJSFileSystem
    from .fs.registry import register, register_protocols
    from .model.api import (
        load_model,
        load_model_async,
        load_weights,
        load_weights_async,
        save_model,
        save_model_async,
    )
    from .model.copying import copy_model, copy_model_async, move_model, move_model_async
    from .model.discovery import list_models, list_models_async
    from .model.files import from_files
    from .model.handlers import (
        IOHandler,
        get_load_handlers,
        get_save_handlers,
        register_handler,
        register_io_router,
    )
    from .model.lazy import AsyncModel, Model, ModelOpening, open_model, open_model_async
    from .model.removal import remove_model, remove_model_async
    from .model.stream import iter_weights, iter_weights_async
    from .model.sync import SyncReport, sync_models, sync_models_async


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tfjsfs")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    """Load a public name (or ``__version__``, or a moved module) on first use."""
    if name == "__version__":
        value: Any = _version()
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _MOVED_MODULES:
        value = importlib.import_module(_MOVED_MODULES[name])
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, "__version__"})
