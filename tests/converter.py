"""The Python TF.js converter's own weight reader and writer, imported without TensorFlow.

``tensorflowjs`` 4.22.0 is installed with ``--no-deps``. Its ``__init__``
imports the converters (h5py, TensorFlow), so the package is registered by
hand and only ``read_weights``, ``write_weights`` and ``quantization`` are
imported; ``write_weights`` needs ``tf.io.gfile.GFile``, given as ``open``.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest


def load_converter():
    """``(read_weights, write_weights, quantization)`` modules, or skip the test."""
    if "tensorflowjs.write_weights" not in sys.modules:
        spec = importlib.util.find_spec("tensorflowjs")
        if spec is None:
            pytest.skip(
                "tensorflowjs 4.22.0 is not installed (pip install --no-deps tensorflowjs)"
            )
        package = sys.modules.get("tensorflowjs")
        if package is None or not hasattr(package, "__path__"):
            package = types.ModuleType("tensorflowjs")
            package.__path__ = list(spec.submodule_search_locations)
            sys.modules["tensorflowjs"] = package
        saved = sys.modules.get("tensorflow")
        stub = types.ModuleType("tensorflow")
        stub.io = types.SimpleNamespace(gfile=types.SimpleNamespace(GFile=open))
        sys.modules["tensorflow"] = stub
        try:
            importlib.import_module("tensorflowjs.write_weights")
        finally:
            if saved is None:
                del sys.modules["tensorflow"]
            else:
                sys.modules["tensorflow"] = saved
    from tensorflowjs import quantization, read_weights, write_weights

    return read_weights, write_weights, quantization
