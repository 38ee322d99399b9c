"""pytest fixtures for the real test peers; ``tests/conftest.py`` loads this
module as a plugin.

Session-scoped servers start lazily, the first time a test asks for them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

from . import netguard
from .gcs import FakeGCS
from .http import StaticServer
from .s3 import MotoS3
from .tls import ThrowawayCA
from .upload import UploadReceiver

# -- hygiene ---------------------------------------------------------------


class InstanceCaches:
    """Inspect and clear fsspec's per-class instance caches (idea from fsspec's
    own ``conftest.py``)."""

    @staticmethod
    def _classes() -> Iterator[type]:
        seen: set[type] = set()
        todo = deque([fsspec.AbstractFileSystem])
        while todo:
            cls = todo.popleft()
            if cls not in seen:
                seen.add(cls)
                yield cls
                todo.extend(cls.__subclasses__())

    def clear(self) -> None:
        """Clear the instance cache of every imported filesystem class."""
        for cls in self._classes():
            cls.clear_instance_cache()

    def counts(self) -> dict[str, int]:
        """Cached instances per class name (classes with none are left out)."""
        return {
            cls.__qualname__: len(cls._cache)
            for cls in self._classes()
            if cls.__dict__.get("_cache")
        }


@pytest.fixture(autouse=True)
def fsspec_instance_caches() -> Iterator[InstanceCaches]:
    """Start and end every test with empty fsspec instance caches, so no test
    sees another's filesystem instances (and their directory listings)."""
    caches = InstanceCaches()
    caches.clear()
    yield caches
    caches.clear()


@pytest.fixture(autouse=True)
def _netguard_report() -> Iterator[None]:
    """Fail a test during which the network guard refused something it did not
    expect (UDP route probes such as dask's ``get_ip`` excepted)."""
    start = len(netguard.refusals())
    yield
    bad = [r for r in netguard.refusals()[start:] if not r.expected and not r.udp_probe]
    if bad:
        pytest.fail(
            "netguard refused network access outside loopback during this test "
            f"(use the netguard_refusals fixture if that is intended): {bad}",
            pytrace=False,
        )


@pytest.fixture
def netguard_refusals() -> Iterator[list[netguard.Refusal]]:
    """Mark refusals during the test as expected; the list fills at teardown.

    For checks inside the test use ``with netguard.expect_refusals() as got:``.
    """
    with netguard.expect_refusals() as got:
        yield got


# -- S3 --------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3]:
    """A moto S3 server on 127.0.0.1: ``.endpoint_url``, ``.storage_options``
    (for s3fs), ``.filesystem()``, ``.new_bucket()``, ``.reset()``."""
    server = MotoS3().start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: MotoS3) -> Iterator[str]:
    """Name of a fresh, empty S3 bucket; deleted after the test."""
    name = s3_server.new_bucket()
    yield name
    s3_server.remove_bucket(name)


# -- GCS -------------------------------------------------------------------


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[FakeGCS]:
    """A fake-gcs-server on 127.0.0.1 (``STORAGE_EMULATOR_HOST`` set while it
    runs): ``.endpoint_url``, ``.storage_options`` (for gcsfs),
    ``.filesystem()``, ``.new_bucket()``, ``.log_tail``."""
    server = FakeGCS().start()
    yield server
    server.stop()


@pytest.fixture
def gcs_bucket(gcs_server: FakeGCS) -> Iterator[str]:
    """Name of a fresh, empty GCS bucket; deleted after the test."""
    name = gcs_server.new_bucket()
    yield name
    gcs_server.remove_bucket(name)


# -- HTTP ------------------------------------------------------------------


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> ThrowawayCA:
    """A throwaway trustme CA with a certificate for 127.0.0.1/::1/localhost."""
    return ThrowawayCA(tmp_path_factory.mktemp("tls"))


def _server_factory(tls: ThrowawayCA | None) -> Iterator[Callable[..., StaticServer]]:
    servers: list[StaticServer] = []

    def make(root: str | Path, **behaviour: Any) -> StaticServer:
        server = StaticServer(root, tls=tls, **behaviour).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def http_server() -> Iterator[Callable[..., StaticServer]]:
    """Factory ``http_server(root_dir, **behaviour) -> StaticServer``.

    ``behaviour``: ``ignore_range``, ``no_listing``, ``cors`` (bools). The
    server has ``.url``, ``.url_for(path)``, ``.stats`` (``requests``,
    ``bytes_served``, ``count()``), ``.reset_stats()``, ``.set(...)``, the
    per-path faults ``fail_first``, ``drop_mid_body``, ``truncate`` and the
    per-path wrong answers ``lie(path, kind, ...)`` and ``redirect``. Servers
    stop after the test.
    """
    yield from _server_factory(None)


@pytest.fixture
def https_server(tls_ca: ThrowawayCA) -> Iterator[Callable[..., StaticServer]]:
    """Like ``http_server`` but HTTPS, with a certificate from ``tls_ca``.

    How clients trust it:

    * fsspec: ``fsspec.filesystem("https", **server.storage_options)``; the
      options are ``{"get_client": peers.tls.get_client, "client_kwargs":
      {"ca_file": ...}}`` and pickle. ``{"ssl": server.client_ssl_context}``
      also works but does not pickle.
    * aiohttp: ``session.get(url, ssl=server.client_ssl_context)``.
    * Node: ``NODE_EXTRA_CA_CERTS=server.ca_file``.
    * ``SSL_CERT_FILE`` set after aiohttp was imported does nothing.
    """
    yield from _server_factory(tls_ca)


@pytest.fixture
def upload_receiver() -> Iterator[UploadReceiver]:
    """A running server recording every POST/PUT (any path, CORS on).

    ``.url``, ``.uploads`` (method, path, query, headers, body, parts),
    ``.wait_for(n)``, ``.clear()``; set ``.status`` to change the reply.
    """
    receiver = UploadReceiver().start()
    yield receiver
    receiver.stop()
