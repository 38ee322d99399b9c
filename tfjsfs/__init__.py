"""tfjsfs: TensorFlow.js model bundles as first-class files for Python and fsspec."""

from . import http  # noqa: F401  (registers the http(s) save router)
from .api import (
    IOHandler,
    get_load_handlers,
    get_save_handlers,
    load_model,
    load_model_async,
    load_weights,
    load_weights_async,
    register_handler,
    save_model,
    save_model_async,
)
from .artifacts import ModelArtifacts, ModelArtifactsInfo, SaveResult
from .core import TFJSFileSystem
from .errors import TFJSError
from .lazy import open_model, open_model_async
from .manage import (
    copy_model,
    copy_model_async,
    list_models,
    list_models_async,
    move_model,
    move_model_async,
    remove_model,
    remove_model_async,
)
from .manifest import ModelJSON, Quantization, WeightGroup, WeightSpec
from .registry import register
from .stream import iter_weights, iter_weights_async

__version__ = "0.1.0"

__all__ = [
    "IOHandler",
    "ModelArtifacts",
    "ModelArtifactsInfo",
    "ModelJSON",
    "Quantization",
    "SaveResult",
    "TFJSError",
    "TFJSFileSystem",
    "WeightGroup",
    "WeightSpec",
    "copy_model",
    "copy_model_async",
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
    "remove_model",
    "remove_model_async",
    "save_model",
    "save_model_async",
]
