"""Run the Node.js TF.js interop scripts in ``tests/js`` from Python tests.

The scripts use the real ``@tensorflow/tfjs`` from the repository's
``node_modules`` (``npm ci`` in the repository root). Each prints its result
as one JSON line, the last line on stdout; tensors travel as
``{shape, dtype, data_b64}`` holding the raw little-endian bytes in the TF.js
weight encoding.

Set ``TFJSFS_REQUIRE_NODE=1`` to make missing Node.js an error instead of a
skip (for CI, so interop tests cannot silently disappear).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
JS_DIR = REPO_ROOT / "tests" / "js"
TFJS_VERSION = "4.22.0"

#: Models built by ``tests/js/tfjs_models.js`` (checked against it by a test).
MODELS = ("mlp", "cnn", "rnn", "mixed")
#: Layouts written by ``tests/js/tfjs_save.js``.
LAYOUTS = ("node", "downloads")

_NUMERIC_DTYPES = {"float32": "<f4", "int32": "<i4", "complex64": "<c8"}


class NodeScriptError(RuntimeError):
    """A harness script failed or printed no JSON result."""


def missing_node_reason() -> str | None:
    """Say why the Node.js harness cannot run, or return None if it can.

    Returns
    -------
    str or None
        A human-readable reason, None when ``node`` is on PATH and
        ``node_modules/@tensorflow/tfjs`` has the expected version.
    """
    if shutil.which("node") is None:
        return "Node.js harness unavailable: no `node` binary on PATH"
    package = REPO_ROOT / "node_modules" / "@tensorflow" / "tfjs" / "package.json"
    if not package.is_file():
        return (
            "Node.js harness unavailable: @tensorflow/tfjs is not installed; "
            f"run `npm ci` in {REPO_ROOT}"
        )
    version = json.loads(package.read_text(encoding="utf-8")).get("version")
    if version != TFJS_VERSION:
        return (
            f"Node.js harness unavailable: @tensorflow/tfjs {version} installed, "
            f"{TFJS_VERSION} required; run `npm ci` in {REPO_ROOT}"
        )
    return None


def node_available() -> bool:
    """Return True if ``node`` and ``node_modules/@tensorflow/tfjs`` are present."""
    return missing_node_reason() is None


def _skip_mark() -> pytest.MarkDecorator:
    reason = missing_node_reason()
    if os.environ.get("TFJSFS_REQUIRE_NODE"):
        reason = None  # let the tests run and fail loudly
    return pytest.mark.skipif(reason is not None, reason=f"SKIPPED, NO TF.JS INTEROP: {reason}")


#: Marks for ``pytestmark``: ``pytestmark = NODE_MARKS``.
NODE_MARKS = [pytest.mark.node, _skip_mark()]


def requires_node(obj):
    """Mark a test (function or class) as needing the Node.js harness.

    It gets the ``node`` marker and is skipped, with the reason, when Node.js
    or ``node_modules`` is missing (unless ``TFJSFS_REQUIRE_NODE`` is set).
    """
    for mark in NODE_MARKS:
        obj = mark(obj)
    return obj


def parse_last_json(stdout: str) -> dict:
    """Return the last stdout line that is a JSON object.

    Parameters
    ----------
    stdout : str
        Everything a harness script printed.

    Raises
    ------
    ValueError
        If no line is a JSON object.
    """
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON object line in the script's stdout")


def run_node(script: str, *args, timeout: float = 120) -> dict:
    """Run ``node tests/js/<script> *args`` and return its JSON result.

    Parameters
    ----------
    script : str
        File name in ``tests/js``, e.g. ``"tfjs_save.js"``.
    *args
        Command-line arguments (converted with ``str``).
    timeout : float
        Seconds before the process is killed.

    Returns
    -------
    dict
        The JSON object printed as the script's last stdout line.

    Raises
    ------
    NodeScriptError
        On a non-zero exit or missing JSON; the message holds stderr.
    """
    reason = missing_node_reason()
    if reason is not None:
        raise NodeScriptError(reason)
    command = ["node", str(JS_DIR / script), *map(str, args)]
    proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise NodeScriptError(
            f"{script} {' '.join(map(str, args))} exited with {proc.returncode}:\n"
            f"{proc.stderr.strip()}"
        )
    try:
        return parse_last_json(proc.stdout)
    except ValueError as exc:
        raise NodeScriptError(
            f"{script}: {exc}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-2000:]}"
        ) from None


def _decode_strings(raw: bytes, count: int) -> np.ndarray:
    values = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        length = int.from_bytes(raw[offset : offset + 4], "little")
        values[i] = raw[offset + 4 : offset + 4 + length]
        offset += 4 + length
    if offset != len(raw):
        raise ValueError(f"string data has {len(raw)} bytes, elements use {offset}")
    return values


def decode_b64(entry: dict) -> np.ndarray:
    """Turn a ``{shape, dtype, data_b64}`` entry into a numpy array.

    Parameters
    ----------
    entry : dict
        ``dtype`` is one of float32, int32, bool, complex64 or string
        (strings become an object array of ``bytes``).

    Returns
    -------
    numpy.ndarray
        A writable array of the entry's shape.
    """
    raw = base64.b64decode(entry["data_b64"])
    shape = tuple(entry["shape"])
    dtype = entry.get("dtype", "float32")
    count = int(np.prod(shape, dtype=np.int64))
    if dtype == "string":
        return _decode_strings(raw, count).reshape(shape)
    if dtype == "bool":
        values = np.frombuffer(raw, dtype=np.uint8).astype(bool)
    elif dtype in _NUMERIC_DTYPES:
        values = np.frombuffer(raw, dtype=_NUMERIC_DTYPES[dtype]).copy()
    else:
        raise ValueError(f"unsupported dtype {dtype!r}")
    if values.size != count:
        raise ValueError(f"{values.size} values for shape {list(shape)}")
    return values.reshape(shape)


def encode_b64(array) -> dict:
    """Inverse of :func:`decode_b64` for float32, int32 and bool arrays.

    Parameters
    ----------
    array : array_like
        Values to send to a script, e.g. as a prediction input.

    Returns
    -------
    dict
        ``{shape, dtype, data_b64}``.
    """
    array = np.asarray(array)
    dtype = "bool" if array.dtype == bool else str(array.dtype)
    if dtype not in ("float32", "int32", "bool"):
        raise ValueError(f"unsupported dtype {array.dtype}")
    data = array.astype("<u1" if dtype == "bool" else "<" + array.dtype.str[1:])
    return {
        "shape": list(array.shape),
        "dtype": dtype,
        "data_b64": base64.b64encode(data.tobytes()).decode("ascii"),
    }


def weights_by_name(result: dict) -> dict[str, np.ndarray]:
    """Map weight name to decoded array for a script result's ``weights``."""
    return {w["name"]: decode_b64(w) for w in result["weights"]}


def tfjs_save(model: str, layout: str, outdir, name: str | None = None) -> dict:
    """Save a harness model with TF.js and return the parsed expected.json.

    Parameters
    ----------
    model : str
        One of :data:`MODELS`.
    layout : str
        One of :data:`LAYOUTS`.
    outdir : path-like
        Directory to write to (created if missing).
    name : str, optional
        File name prefix for the ``downloads`` layout (default ``model``).

    Returns
    -------
    dict
        expected.json's content plus ``files``: the paths the script printed.
    """
    args = [model, layout, outdir] + ([name] if name else [])
    files = run_node("tfjs_save.js", *args)
    expected = json.loads(Path(files["expected"]).read_text(encoding="utf-8"))
    expected["files"] = files
    return expected


def tfjs_load(source, model_input: dict | None = None) -> dict:
    """Load a layers model with TF.js from a URL or local JSON path.

    Parameters
    ----------
    source : str or path-like
        ``http://127.0.0.1:...`` URL of a model.json, or a local JSON path.
    model_input : dict, optional
        ``{shape, dtype, data_b64}`` to predict on.

    Returns
    -------
    dict
        ``{weights: [...], prediction: {...}}`` as printed by tfjs_load.js.
    """
    args = [source] + ([json.dumps(model_input)] if model_input else [])
    return run_node("tfjs_load.js", *args)
