"""A throwaway certificate authority (trustme) for HTTPS test servers.

How clients trust it:

* fsspec ``HTTPFileSystem`` (and anything passing storage options to it):
  ``storage_options=ca.fsspec_options()``, i.e.
  ``{"get_client": peers.tls.get_client, "client_kwargs": {"ca_file": ...}}``.
  Everything in it pickles (a module-level function and a string), so it
  also works for dask. The shorter ``{"ssl": ca.client_context()}`` works
  too (fsspec passes it on every request) but an ``SSLContext`` does not
  pickle.
* plain aiohttp: ``aiohttp.ClientSession(connector=aiohttp.TCPConnector(
  ssl=ca.client_context()))`` or ``session.get(url, ssl=ca.client_context())``.
* Node: environment ``NODE_EXTRA_CA_CERTS=<ca.ca_file>``.
* Setting ``SSL_CERT_FILE`` after aiohttp is imported has **no** effect:
  aiohttp builds its default context at import time.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import trustme

SERVER_NAMES = ("127.0.0.1", "::1", "localhost")


class ThrowawayCA:
    """A fresh CA plus one server certificate for 127.0.0.1, ::1 and localhost.

    Parameters
    ----------
    directory : path-like
        Where ``ca.pem`` is written (clients outside Python need a file).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self._ca = trustme.CA()
        self._cert = self._ca.issue_cert(*SERVER_NAMES)
        self.ca_file = Path(directory) / "ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_file))

    def server_context(self) -> ssl.SSLContext:
        """A server-side context presenting the 127.0.0.1 certificate."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only this CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def fsspec_options(self) -> dict[str, Any]:
        """Picklable storage options making fsspec's HTTPFileSystem trust the CA."""
        return {"get_client": get_client, "client_kwargs": {"ca_file": str(self.ca_file)}}


async def get_client(ca_file: str | None = None, **kwargs: Any) -> aiohttp.ClientSession:
    """``get_client`` for fsspec's HTTPFileSystem that trusts ``ca_file``.

    fsspec calls it as ``get_client(loop=..., **client_kwargs)``; the other
    keyword arguments go to :class:`aiohttp.ClientSession`.
    """
    if ca_file is not None:
        ctx = ssl.create_default_context(cafile=ca_file)
        kwargs["connector"] = aiohttp.TCPConnector(ssl=ctx)
    return aiohttp.ClientSession(**kwargs)
