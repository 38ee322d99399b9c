"""The TF.js converter's own weight I/O, imported without TensorFlow.

``tensorflowjs`` 4.22.0 is installed with ``--no-deps``; its ``__init__`` imports the
converters (h5py, TensorFlow), so the package is registered as a bare namespace and
only ``read_weights`` / ``write_weights`` are loaded. ``write_weights`` uses TensorFlow
only for ``tf.io.gfile.GFile``, which a stub maps to :func:`open` while it is imported.
"""

import importlib.util
import sys
import types


def load():
    """Return the converter's ``(read_weights, write_weights)`` modules.

    Raises
    ------
    ImportError
        If ``tensorflowjs`` is not installed.
    """
    if "tensorflowjs.write_weights" in sys.modules:
        return sys.modules["tensorflowjs.read_weights"], sys.modules["tensorflowjs.write_weights"]
    spec = importlib.util.find_spec("tensorflowjs")
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(
            "tensorflowjs is not installed (pip install --no-deps tensorflowjs==4.22.0)"
        )
    if "tensorflowjs" not in sys.modules:
        pkg = types.ModuleType("tensorflowjs")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["tensorflowjs"] = pkg
    from tensorflowjs import read_weights

    had_tf = "tensorflow" in sys.modules
    if not had_tf:
        stub = types.ModuleType("tensorflow")
        stub.io = types.SimpleNamespace(gfile=types.SimpleNamespace(GFile=open))
        sys.modules["tensorflow"] = stub
    try:
        from tensorflowjs import write_weights
    finally:
        if not had_tf:
            del sys.modules["tensorflow"]
    return read_weights, write_weights


def version():
    """Installed ``tensorflowjs`` version, or ``None``."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _version

    try:
        return _version("tensorflowjs")
    except PackageNotFoundError:
        return None
