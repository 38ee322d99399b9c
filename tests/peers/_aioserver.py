"""Run an aiohttp application on 127.0.0.1 in a background thread.

The thread owns its own event loop, so the servers work the same for
synchronous tests, for async tests on pytest-asyncio's loop and for clients
running on fsspec's IO thread.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

HOST = "127.0.0.1"


class TLSConfig(Protocol):
    """What a server needs for HTTPS (``peers.tls.ThrowawayCA`` provides it)."""

    ca_file: Path

    def server_context(self) -> ssl.SSLContext: ...

    def client_context(self) -> ssl.SSLContext: ...

    def fsspec_options(self) -> dict[str, Any]: ...


class ThreadedApp:
    """Serve an :class:`aiohttp.web.Application` from a daemon thread.

    Parameters
    ----------
    tls : TLSConfig, optional
        Serve HTTPS with this CA's certificate (``peers.tls.ThrowawayCA``);
        the URL scheme becomes ``https``.

    Subclasses implement :meth:`build_app`. Use as a context manager or call
    :meth:`start` and :meth:`stop`.
    """

    def __init__(self, *, tls: TLSConfig | None = None) -> None:
        self.tls = tls
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def build_app(self) -> web.Application:
        """Return the application to serve (called on the server's loop)."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:40123``."""
        if self.port is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{HOST}:{self.port}"

    @property
    def ca_file(self) -> Path | None:
        """PEM file of the CA to trust (HTTPS only), e.g. for NODE_EXTRA_CA_CERTS."""
        return None if self.tls is None else self.tls.ca_file

    @property
    def client_ssl_context(self) -> ssl.SSLContext | None:
        """A client SSL context trusting the server (HTTPS only)."""
        return None if self.tls is None else self.tls.client_context()

    @property
    def storage_options(self) -> dict[str, Any]:
        """Options for fsspec's HTTPFileSystem to reach this server.

        Empty for HTTP; for HTTPS a picklable ``get_client``/``client_kwargs``
        pair that trusts the throwaway CA (see ``peers.tls``).
        """
        return {} if self.tls is None else self.tls.fsspec_options()

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        """Run ``coro`` on the server's loop and return its result."""
        if self._loop is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> ThreadedApp:
        """Start the loop thread and bind a free port on 127.0.0.1."""
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=loop.run_forever, name=f"{type(self).__name__}-loop", daemon=True
        )
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self.call(self._start())
        except BaseException:
            self.stop()
            raise
        return self

    async def _start(self) -> None:
        runner = web.AppRunner(self.build_app(), access_log=None)
        await runner.setup()
        ctx = None if self.tls is None else self.tls.server_context()
        site = web.TCPSite(runner, HOST, 0, ssl_context=ctx)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]

    def stop(self) -> None:
        """Shut the server down and end the loop thread (idempotent)."""
        loop, thread, runner = self._loop, self._thread, self._runner
        self._loop = self._thread = self._runner = None
        self.port = None
        if loop is None:
            return
        if runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()

    def __enter__(self) -> ThreadedApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
