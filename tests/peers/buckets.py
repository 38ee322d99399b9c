"""What the S3 and GCS peers share: an uncached client and throwaway buckets."""

from __future__ import annotations

import importlib
import uuid
from typing import Any


def unique_bucket_name(prefix: str = "tfjsfs") -> str:
    """A bucket name no other test uses (3-63 lowercase characters)."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


class BucketServer:
    """Base of the object-store peers; subclasses set ``client`` and ``storage_options``.

    ``client`` is ``"module:Class"`` of the fsspec filesystem for this server.
    """

    client = ""

    @property
    def storage_options(self) -> dict[str, Any]:  # pragma: no cover - overridden
        raise NotImplementedError

    def filesystem(self, **kwargs: Any):
        """A new (uncached) filesystem for this server."""
        module, name = self.client.split(":")
        cls = getattr(importlib.import_module(module), name)
        return cls(**{**self.storage_options, "skip_instance_cache": True, **kwargs})

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
