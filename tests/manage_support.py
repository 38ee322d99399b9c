"""Shared helpers for the model-management, CLI, bulk and verify tests:
sample bundles and uniform handles on the stores they live in."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import numpy as np

import tfjsfs
from tfjsfs import ModelArtifacts

TOPOLOGY = {
    "class_name": "Sequential",
    "config": {
        "name": "sample",
        "layers": [
            {
                "class_name": "Dense",
                "config": {
                    "name": "dense",
                    "units": 16,
                    "dtype": "float32",
                    "batch_input_shape": [None, 12],
                },
            },
            {"class_name": "Dense", "config": {"name": "out", "units": 3, "dtype": "float32"}},
        ],
    },
}


def sample_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Every TF.js dtype, a string tensor in the middle of a group, odd sizes."""
    rng = np.random.default_rng(seed)
    return {
        "dense/kernel": rng.normal(size=(12, 16)).astype(np.float32),
        "dense/bias": rng.normal(size=16).astype(np.float32),
        "out/kernel": rng.normal(size=(16, 3)).astype(np.float32),
        "out/bias": np.arange(3, dtype=np.float32) + seed,
        "vocab": np.array(["alpha", "", "ß" * (seed % 5 + 1)]),
        "steps": np.arange(-5, 6, dtype=np.int32) * (seed + 1),
        "mask": np.array([True, False, True]),
        "phase": (rng.normal(size=4) + 1j * rng.normal(size=4)).astype(np.complex64),
    }


GROUPS = [
    ["dense/kernel", "dense/bias"],
    ["out/kernel", "vocab", "out/bias", "steps", "mask", "phase"],
]


def sample_artifacts(seed: int = 0, **kwargs: Any) -> ModelArtifacts:
    """A layers model with two weight groups (strings in the second)."""
    return ModelArtifacts.from_weights(
        TOPOLOGY, sample_weights(seed), groups=GROUPS, generated_by="tfjsfs tests", **kwargs
    )


def assert_same_weights(got: dict, expected: dict) -> None:
    """Exact equality of two ``{name: array}`` maps (order, shapes, values)."""
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        value = np.asarray(value)
        if value.dtype.kind == "U":
            value = np.vectorize(lambda s: s.encode(), otypes=[object])(value)
        assert got[name].shape == value.shape, name
        assert got[name].tolist() == value.tolist(), name


@dataclass
class Store:
    """One place bundles can live, addressed by URL, inspected with a sync fs.

    ``base`` is a fresh prefix in that store; ``options`` are its storage
    options; ``fs`` a synchronous fsspec filesystem; ``inner(url)`` turns a
    URL under ``base`` into ``fs``'s path.
    """

    kind: str
    base: str
    options: dict[str, Any]
    fs: Any
    root: str
    extra: dict[str, Any] = field(default_factory=dict)

    def url(self, *parts: str) -> str:
        return "/".join([self.base.rstrip("/"), *parts])

    def inner(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def files(self, *parts: str) -> list[str]:
        """Every file under the path, relative to it, sorted."""
        top = self.inner(*parts)
        self.fs.invalidate_cache()
        try:
            found = self.fs.find(top)
        except FileNotFoundError:
            return []
        return sorted(p[len(top.rstrip("/")) + 1 :] for p in found if p.rstrip("/") != top)

    def save(self, artifacts: ModelArtifacts, *parts: str, **kwargs: Any) -> str:
        """Save a bundle here; returns its URL."""
        url = self.url(*parts)
        tfjsfs.save_model(artifacts, url, storage_options=self.options, **kwargs)
        return url

    def load(self, *parts: str, **kwargs: Any) -> dict:
        return tfjsfs.load_weights(self.url(*parts), storage_options=self.options, **kwargs)


def memory_store() -> Store:
    name = f"t-{uuid.uuid4().hex[:12]}"
    return Store("memory", f"memory://{name}", {}, fsspec.filesystem("memory"), f"/{name}")


def file_store(tmp: Path, url_form: bool = False) -> Store:
    tmp.mkdir(parents=True, exist_ok=True)
    base = f"file://{tmp}" if url_form else str(tmp)
    return Store("file", base, {}, fsspec.filesystem("file"), str(tmp))


def s3_store(server: Any, bucket: str) -> Store:
    prefix = f"{bucket}/p-{uuid.uuid4().hex[:8]}"
    return Store("s3", f"s3://{prefix}", dict(server.storage_options), server.filesystem(), prefix)


def gcs_store(server: Any, bucket: str) -> Store:
    prefix = f"{bucket}/p-{uuid.uuid4().hex[:8]}"
    return Store(
        "gcs", f"gs://{prefix}", dict(server.storage_options), server.filesystem(), prefix
    )


def make_store(kind: str, request: Any, tmp: Path) -> Store:
    """A fresh store of *kind* (``memory``, ``file``, ``s3``, ``gcs``, ``http``).

    ``http`` serves a local folder read-only: save through ``.extra["local"]``
    (a file store of the same folder) and read through the HTTP URL.
    """
    if kind == "memory":
        return memory_store()
    if kind == "file":
        return file_store(tmp)
    if kind == "s3":
        return s3_store(request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket"))
    if kind == "gcs":
        server = request.getfixturevalue("gcs_server")
        return gcs_store(server, request.getfixturevalue("gcs_bucket"))
    if kind == "http":
        local = file_store(tmp)
        server = request.getfixturevalue("http_server")(tmp)
        store = Store(
            "http", server.url, {}, local.fs, str(tmp), {"local": local, "server": server}
        )
        return store
    raise ValueError(kind)
