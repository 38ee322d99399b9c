"""The public API's shape: sync twins with their async twin's typed signature,
storage options passed one way (``storage_options=``), loose keywords still
accepted for one release with a DeprecationWarning. Against a real S3 (moto)."""

from __future__ import annotations

import inspect
import warnings

import pytest
from manage_support import make_store, sample_artifacts

import tfjsfs
from tfjsfs.model import bulk
from tfjsfs.model.removal import remove_model_files

PAIRS = sorted(
    name[: -len("_async")]
    for name in tfjsfs.__all__
    if name.endswith("_async") and name[: -len("_async")] in tfjsfs.__all__
)


def test_every_public_pair_is_listed():
    assert PAIRS == [
        "copy_model",
        "iter_weights",
        "list_models",
        "load_model",
        "load_weights",
        "move_model",
        "open_model",
        "remove_model",
        "save_model",
        "sync_models",
    ]


@pytest.mark.parametrize("name", PAIRS)
def test_sync_twin_has_the_async_twins_parameters(name):
    sync_sig = inspect.signature(getattr(tfjsfs, name))
    async_sig = inspect.signature(getattr(tfjsfs, name + "_async"))
    assert list(sync_sig.parameters.values()) == list(async_sig.parameters.values())


@pytest.mark.parametrize("name", PAIRS)
def test_sync_twin_keeps_its_own_numpydoc(name):
    func = getattr(tfjsfs, name)
    assert func.__name__ == name
    assert "Parameters\n    ----------" in func.__doc__
    assert "Coroutine twin" not in func.__doc__


@pytest.mark.parametrize(
    ("name", "typed"),
    [
        ("copy_model", ["overwrite", "shard_size", "verify", "storage_options", "dst_options"]),
        ("move_model", ["overwrite", "shard_size", "storage_options", "src_options"]),
        ("sync_models", ["dry_run", "delete", "checksum", "storage_options", "src_options"]),
        ("save_model", ["shard_size", "quantize", "overwrite", "layout", "storage_options"]),
        ("list_models", ["on_error", "storage_options"]),
        ("remove_model", ["dry_run", "storage_options"]),
        ("load_weights", ["names", "callback", "progress", "max_gap"]),
    ],
)
def test_sync_twin_shows_typed_keywords(name, typed):
    params = inspect.signature(getattr(tfjsfs, name)).parameters
    for key in typed:
        assert key in params, key
        assert params[key].annotation != inspect.Parameter.empty, key


@pytest.fixture
def s3(request, tmp_path):
    store = make_store("s3", request, tmp_path)
    store.save(sample_artifacts(0), "models", "a")
    store.save(sample_artifacts(1), "models", "b")
    return store


def test_storage_options_one_way_on_s3(s3):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the one way warns about nothing
        found = tfjsfs.list_models(s3.url("models"), storage_options=s3.options)
        assert sorted(found) == [s3.url("models", "a"), s3.url("models", "b")]
        files = remove_model_files(s3.url("models", "a"), storage_options=s3.options)
        assert files[0].endswith("/models/a/model.json") and len(files) > 1
        frame = bulk.scan(s3.url("models"), storage_options=s3.options)
        assert sorted(frame.url) == sorted(found) and frame.ok.all()
        info = tfjsfs.remove_model(s3.url("models", "a"), storage_options=s3.options)
        assert info.weight_data_bytes == found[s3.url("models", "a")].weight_data_bytes
    assert s3.files("models", "a") == []
    assert list(tfjsfs.list_models(s3.url("models"), storage_options=s3.options)) == [
        s3.url("models", "b")
    ]


def test_loose_storage_options_still_work_with_a_deprecation_warning(s3):
    prefix = s3.url("models")
    with pytest.warns(DeprecationWarning, match="list_models: passing storage options") as w:
        found = tfjsfs.list_models(prefix, **s3.options)
    assert w[0].filename == __file__  # points at the caller's line
    assert sorted(found) == [s3.url("models", "a"), s3.url("models", "b")]
    with pytest.warns(DeprecationWarning, match="remove_model_files") as w:
        files = remove_model_files(s3.url("models", "a"), **s3.options)
    assert w[0].filename == __file__
    assert files[0].endswith("/models/a/model.json")
    with pytest.warns(DeprecationWarning, match="scan"):
        frame = bulk.scan(prefix, **s3.options)
    assert sorted(frame.url) == sorted(found)
    with pytest.warns(DeprecationWarning, match="remove_model: passing storage options") as w:
        info = tfjsfs.remove_model(s3.url("models", "a"), **s3.options)
    assert w[0].filename == __file__
    assert info.weight_data_bytes == found[s3.url("models", "a")].weight_data_bytes
    assert s3.files("models", "a") == []


async def test_loose_storage_options_on_async_twins(tmp_path):
    local = make_store("file", None, tmp_path)
    local.save(sample_artifacts(0), "models", "a")
    prefix, loose = local.url("models"), {"auto_mkdir": True}
    with pytest.warns(DeprecationWarning, match="list_models: passing storage options") as w:
        found = await tfjsfs.list_models_async(prefix, **loose)
    assert w[0].filename == __file__
    assert list(found) == [local.url("models", "a")]
    assert await tfjsfs.list_models_async(prefix, storage_options=loose) == found
    with pytest.warns(DeprecationWarning, match="remove_model: passing storage options"):
        info = await tfjsfs.remove_model_async(local.url("models", "a"), **loose)
    assert info.weight_data_bytes == found[local.url("models", "a")].weight_data_bytes
    assert local.files("models", "a") == []
