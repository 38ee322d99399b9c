"""S3 on loopback: moto's server in a thread, used through real s3fs.

The process environment must hold dummy credentials and
``AWS_EC2_METADATA_DISABLED=true`` (``tests/conftest.py`` sets them), so that
botocore never looks for credentials anywhere else.
"""

from __future__ import annotations

import logging
import urllib.request
import uuid
from typing import Any

CREDENTIALS = {"key": "testing", "secret": "testing"}


def unique_bucket_name(prefix: str = "tfjsfs") -> str:
    """A fresh valid bucket name (lower case, 3-63 characters)."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


class MotoS3:
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

    def filesystem(self, **kwargs: Any):
        """A new (uncached) :class:`s3fs.S3FileSystem` for this server."""
        import s3fs

        opts = {**self.storage_options, "skip_instance_cache": True, **kwargs}
        return s3fs.S3FileSystem(**opts)

    def new_bucket(self, prefix: str = "tfjsfs") -> str:
        """Create an empty bucket with a unique name and return the name."""
        name = unique_bucket_name(prefix)
        self.filesystem().mkdir(name)
        return name

    def remove_bucket(self, name: str) -> None:
        """Delete a bucket and everything in it."""
        fs = self.filesystem()
        if fs.exists(name):
            fs.rm(name, recursive=True)

    def reset(self) -> None:
        """Wipe all moto state (every bucket) through ``/moto-api/reset``."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()
