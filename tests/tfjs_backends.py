"""Backends for the fsspec-face tests: one fixture, six real peers.

``backend`` is parametrised over ``tfjs+memory``, ``tfjs+file``, ``tfjs+s3``
(moto server), ``tfjs+gs`` (fake-gcs-server), ``tfjs+http`` and
``tfjs+https`` (aiohttp static servers on 127.0.0.1 serving a local folder).
Servers start only when a test asks for their backend.

Each :class:`Backend` knows its ``tfjs`` URLs and how to *seed* files behind
the filesystem's back (a separate, uncached plain fsspec filesystem; for
HTTP the served local folder), so tests can also play "another writer".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pytest

import tfjsfs
from tfjsfs.format.artifacts import ModelArtifacts

BACKENDS = ["memory", "file", "s3", "gs", "http", "https"]
WRITABLE = ["memory", "file", "s3", "gs"]


@dataclass
class Backend:
    """One backend of the tests: URLs, options and a seeding filesystem."""

    name: str
    protocol: str  # e.g. "tfjs+s3"
    base: str  # root of this test's files, without protocol
    options: dict[str, Any]  # inner options for the tfjs filesystem
    seed_url: str  # plain fsspec URL of the same root
    seed_options: dict[str, Any] = field(default_factory=dict)
    server: Any = None  # StaticServer for http(s)
    shared_fs: Any = None  # a tfjs filesystem kept across tests (object stores)

    @property
    def writable(self) -> bool:
        return self.server is None

    def url(self, rel: str = "") -> str:
        """``tfjs+…`` URL of *rel* below the root."""
        return f"{self.protocol}://{self.base}" + (f"/{rel}" if rel else "")

    def seed(self, rel: str = "") -> str:
        """Plain fsspec URL of *rel* below the root (for seeding)."""
        return self.seed_url + (f"/{rel}" if rel else "")

    @property
    def fs(self):
        """The tfjs filesystem for this backend (object stores: one per session,
        as every new S3/GCS client costs about half a second here)."""
        if self.shared_fs is not None:
            return self.shared_fs
        return fsspec.filesystem(self.protocol, **self.options)

    def path(self, rel: str = "") -> str:
        """The path of *rel* in the tfjs filesystem's namespace."""
        return self.fs._strip_protocol(self.url(rel))

    def seed_fs(self):
        """A plain filesystem other than the tfjs one's, and the root's path in it."""
        if "fs" in self.seed_options:
            fs = self.seed_options["fs"]
            return fs, fs._strip_protocol(self.seed_url)
        return fsspec.core.url_to_fs(self.seed_url, **self.seed_options)

    def save(self, artifacts: ModelArtifacts, rel: str, **kwargs: Any):
        """Save a bundle behind the tfjs filesystem's back."""
        fs, root = self.seed_fs()
        return tfjsfs.save_model(artifacts, f"{root}/{rel}", storage_options={"fs": fs}, **kwargs)

    def put_bytes(self, rel: str, data: bytes) -> None:
        fs, root = self.seed_fs()
        fs.pipe_file(f"{root}/{rel}", data)


def _memory(request) -> Backend:
    root = f"tfjsfs-{uuid.uuid4().hex[:12]}"
    mem = fsspec.filesystem("memory")
    request.addfinalizer(lambda: mem.exists(f"/{root}") and mem.rm(f"/{root}", recursive=True))
    return Backend("memory", "tfjs+memory", root, {}, f"memory:///{root}")


def _file(request) -> Backend:
    root = request.getfixturevalue("tmp_path") / "files"
    root.mkdir()
    opts = {"auto_mkdir": True}
    return Backend("file", "tfjs+file", str(root), opts, f"file://{root}", dict(opts))


@pytest.fixture(scope="session")
def s3_store(s3_server):
    """One bucket and one plain s3fs for every test (new clients cost ~0.3 s each)."""
    bucket = s3_server.new_bucket()
    tfjs = fsspec.filesystem("tfjs+s3", skip_instance_cache=True, **s3_server.storage_options)
    yield s3_server, bucket, s3_server.filesystem(), tfjs
    s3_server.remove_bucket(bucket)


@pytest.fixture(scope="session")
def gs_store(gcs_server):
    """One bucket and one plain gcsfs for every test."""
    bucket = gcs_server.new_bucket()
    tfjs = fsspec.filesystem("tfjs+gs", skip_instance_cache=True, **gcs_server.storage_options)
    yield gcs_server, bucket, gcs_server.filesystem(), tfjs
    gcs_server.remove_bucket(bucket)


def _store(request, fixture: str, proto: str) -> Backend:
    server, bucket, seed_fs, tfjs = request.getfixturevalue(fixture)
    base = f"{bucket}/{uuid.uuid4().hex[:12]}"
    request.addfinalizer(lambda: seed_fs.exists(base) and seed_fs.rm(base, recursive=True))
    backend = Backend(
        proto, f"tfjs+{proto}", base, dict(server.storage_options), f"{proto}://{base}"
    )
    backend.seed_options = {"fs": seed_fs}
    backend.shared_fs = tfjs
    return backend


def _http(request, fixture: str) -> Backend:
    root = request.getfixturevalue("tmp_path") / "served"
    root.mkdir()
    # http lists folders (nginx autoindex); https does not, as most static hosts
    server = request.getfixturevalue(fixture)(root, no_listing=fixture == "https_server")
    scheme, host = server.url.split("://")
    return Backend(
        scheme,
        f"tfjs+{scheme}",
        host,
        dict(server.storage_options),
        f"file://{root}",
        {"auto_mkdir": True},
        server=server,
    )


def make_backend(request, name: str) -> Backend:
    """The backend called *name*, starting its server if needed."""
    if name == "memory":
        return _memory(request)
    if name == "file":
        return _file(request)
    if name in ("s3", "gs"):
        return _store(request, f"{name}_store", name)
    return _http(request, "http_server" if name == "http" else "https_server")


@pytest.fixture(params=BACKENDS)
def backend(request) -> Backend:
    """Every backend in turn."""
    return make_backend(request, request.param)


@pytest.fixture(params=WRITABLE)
def writable_backend(request) -> Backend:
    """Every backend that can be written through (not HTTP)."""
    return make_backend(request, request.param)
