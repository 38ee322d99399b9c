"""S3 on loopback: moto's server in a thread, used through real s3fs.

The process environment must hold dummy credentials and
``AWS_EC2_METADATA_DISABLED=true`` (``tests/conftest.py`` sets them), so that
botocore never looks for credentials anywhere else.
"""

from __future__ import annotations

import logging
import urllib.request
from typing import Any

from .buckets import BucketServer

CREDENTIALS = {"key": "testing", "secret": "testing"}


class MotoS3(BucketServer):
    """A moto S3 server on 127.0.0.1 with a free port.

    Attributes
    ----------
    endpoint_url : str
        ``http://127.0.0.1:<port>``.
    storage_options : dict
        Keyword arguments for :class:`s3fs.S3FileSystem` (``key``, ``secret``,
        ``endpoint_url``). No region: with ``us-east-1`` s3fs sends a
        LocationConstraint that moto rejects.
    """

    client = "s3fs:S3FileSystem"

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer  # slow import: only when used

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint_url: str | None = None

    def start(self) -> MotoS3:
        """Start the server (werkzeug request logging is silenced)."""
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        """Stop the server."""
        self._server.stop()

    @property
    def storage_options(self) -> dict[str, Any]:
        return {**CREDENTIALS, "endpoint_url": self.endpoint_url}

    def reset(self) -> None:
        """Wipe all moto state (every bucket) through ``/moto-api/reset``."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()
