"""tfjsfs: TensorFlow.js model bundles as first-class files for Python and fsspec."""

from .api import (
    IOHandler,
    get_load_handlers,
    get_save_handlers,
    load_model,
    load_model_async,
    load_weights,
    register_handler,
    save_model,
    save_model_async,
)
from .artifacts import ModelArtifacts, ModelArtifactsInfo, SaveResult
from .errors import TFJSError
from .manifest import ModelJSON, Quantization, WeightGroup, WeightSpec

__version__ = "0.1.0"

__all__ = [
    "IOHandler",
    "ModelArtifacts",
    "ModelArtifactsInfo",
    "ModelJSON",
    "Quantization",
    "SaveResult",
    "TFJSError",
    "WeightGroup",
    "WeightSpec",
    "get_load_handlers",
    "get_save_handlers",
    "load_model",
    "load_model_async",
    "load_weights",
    "register_handler",
    "save_model",
    "save_model_async",
]
