"""IOHandlers and the scheme router, as in TF.js's IO layer."""

from __future__ import annotations

import numpy as np
import pytest

import tfjsfs
from tfjsfs.errors import HandlerNotFoundError
from tfjsfs.model import handlers


class DictStore:
    """A custom storage: artifacts kept in a dict, sync handlers."""

    def __init__(self):
        self.models = {}

    def router(self, url, **options):
        if isinstance(url, str) and url.startswith("dict://"):
            return DictHandler(self, url[len("dict://") :])
        return None


class DictHandler:
    def __init__(self, store, key):
        self.store, self.key = store, key

    def save(self, artifacts):
        self.store.models[self.key] = artifacts
        return tfjsfs.SaveResult(artifacts.info(), url=f"dict://{self.key}")

    def load(self):
        return self.store.models[self.key]


class AsyncHandler:
    """An IOHandler object with coroutine methods, passed directly as the URL."""

    def __init__(self):
        self.saved = None

    async def save(self, artifacts):
        self.saved = artifacts
        return tfjsfs.SaveResult(artifacts.info())

    async def load(self):
        return self.saved


@pytest.fixture
def routers():
    saved = list(handlers._routers)
    yield
    handlers._routers[:] = saved


def artifacts():
    return tfjsfs.ModelArtifacts.from_weights({"k": 1}, {"w": np.arange(3, dtype=np.float32)})


def test_registered_router_handles_its_scheme(routers, tmp_path):
    store = DictStore()
    tfjsfs.register_handler(store.router)
    result = tfjsfs.save_model(artifacts(), "dict://one")
    assert result.url == "dict://one" and result.model_artifacts_info.weight_data_bytes == 12
    assert tfjsfs.load_weights("dict://one")["w"].tolist() == [0.0, 1.0, 2.0]
    assert len(tfjsfs.get_load_handlers("dict://x")) == 1
    assert tfjsfs.get_load_handlers(str(tmp_path)) == []
    # other URLs still go to the built-in fsspec handler
    tfjsfs.save_model(artifacts(), tmp_path / "m")
    assert tfjsfs.load_weights(tmp_path / "m")["w"].tolist() == [0.0, 1.0, 2.0]


def test_async_handler_object_as_url():
    handler = AsyncHandler()
    tfjsfs.save_model(artifacts(), handler)
    assert handler.saved is not None
    assert tfjsfs.load_model(handler).weights["w"].tolist() == [0.0, 1.0, 2.0]


def test_more_than_one_matching_handler_is_an_error(routers):
    tfjsfs.register_handler(DictStore().router)
    tfjsfs.register_handler(DictStore().router)
    with pytest.raises(HandlerNotFoundError, match=r"more than one \(2\) load handlers"):
        tfjsfs.load_model("dict://x")


def test_load_only_router_does_not_save(routers, tmp_path):
    store = DictStore()
    tfjsfs.register_handler(store.router, save=False)
    assert tfjsfs.get_save_handlers("dict://x") == []
    assert len(tfjsfs.get_load_handlers("dict://x")) == 1
