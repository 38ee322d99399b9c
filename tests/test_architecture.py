"""The package's shape as users see it: cheap imports, old paths, public names.

The layer rules themselves are checked by import-linter in ``.ci/run``
(contracts in setup.cfg); these tests cover what a contract cannot: what a
fresh interpreter imports, and that names and paths from earlier releases
still resolve.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import fsspec
import pytest

import tfjsfs


def _fresh(code: str) -> dict:
    """Run *code* in a new interpreter; it prints one JSON object."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


_HEAVY = ("aiohttp", "aiohttp_cors", "dask", "distributed", "tfjsfs.server", "tfjsfs.cli")


@pytest.mark.parametrize(
    "statement",
    ["import tfjsfs", "import fsspec; fsspec.get_filesystem_class('tfjs+s3')"],
)
def test_imports_stay_cheap(statement):
    loaded = _fresh(
        f"{statement}\nimport json, sys\n"
        f"print(json.dumps({{m: m in sys.modules for m in {_HEAVY!r}}}))"
    )
    assert loaded == dict.fromkeys(_HEAVY, False)


def test_import_registers_no_router():
    found = _fresh(
        "import json, tfjsfs\n"
        "from tfjsfs.model import handlers\n"
        "h = tfjsfs.get_save_handlers('http://127.0.0.1:9/m')\n"
        "print(json.dumps([len(handlers._routers), [type(x).__name__ for x in h]]))"
    )
    assert found == [0, ["HTTPRequest"]]


def test_every_public_name_resolves():
    missing = [name for name in tfjsfs.__all__ if getattr(tfjsfs, name, None) is None]
    assert missing == []
    assert set(tfjsfs.__all__) <= set(dir(tfjsfs))
    with pytest.raises(AttributeError):
        tfjsfs.no_such_name  # noqa: B018


def test_version_comes_from_package_metadata():
    from importlib.metadata import version

    assert tfjsfs.__version__ == version("tfjsfs")


def test_registry_names_say_which_registry():
    assert tfjsfs.register is tfjsfs.register_protocols
    assert tfjsfs.register_handler is tfjsfs.register_io_router


def test_old_module_paths_still_import():
    from tfjsfs import browser, bulk, core, upath
    from tfjsfs.cli import main
    from tfjsfs.format import browser as new_browser
    from tfjsfs.fs import core as new_core
    from tfjsfs.model import bulk as new_bulk

    assert core.TFJSFileSystem is new_core.TFJSFileSystem
    assert core.TFJSFileSystem_s3 is new_core.TFJSFileSystem_s3
    assert bulk.scan is new_bulk.scan
    assert browser.read_storage_state is new_browser.read_storage_state
    assert upath.TFJSPath.__name__ == "TFJSPath"
    assert callable(main)


def test_pickles_naming_the_old_module_load():
    fs = fsspec.filesystem("tfjs+memory")
    data = pickle.dumps(fs, protocol=0)  # text opcodes: module names are plain lines
    assert b"tfjsfs.fs.core\n" in data
    old = data.replace(b"tfjsfs.fs.core\n", b"tfjsfs.core\n")
    assert b"tfjsfs.fs.core" not in old
    loaded = pickle.loads(old)
    assert type(loaded) is type(fs)
    assert loaded.storage_options == fs.storage_options


@pytest.mark.parametrize("module", ["tfjsfs", "tfjsfs.server"])
def test_module_entry_points_run(module):
    out = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout


def test_a_local_load_imports_no_http_client(tmp_path):
    import numpy as np

    weights = {"w": np.arange(6, dtype="float32").reshape(2, 3)}
    artifacts = tfjsfs.ModelArtifacts.from_weights({}, weights)
    tfjsfs.save_model(artifacts, str(tmp_path / "m"))
    loaded = _fresh(
        "import json, sys, tfjsfs\n"
        f"w = tfjsfs.load_weights({str(tmp_path / 'm')!r})['w']\n"
        "print(json.dumps([w.tolist(), 'aiohttp' in sys.modules]))"
    )
    assert loaded == [[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], False]
