"""Short-lived presigned URLs of store objects, for ``tfjsfs serve --redirect-reads``.

With the option, a shard GET is answered with ``307 Temporary Redirect`` to a
URL the store signed, so the bytes flow from the bucket to the client and not
through the server; model.json is still served by the server (listings,
tokens and the served-files record keep working). s3fs signs locally
(botocore's presigner: no request is made); gcsfs signs with
``google-cloud-storage`` and needs credentials that hold a private key (a
service account). :func:`check_signing` tells at start-up whether a store can.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fsspec import AbstractFileSystem

from ..errors import CLIError
from .options import DEFAULT_REDIRECT_EXPIRY

__all__ = ["DEFAULT_REDIRECT_EXPIRY", "check_signing", "presigned_url"]


async def presigned_url(fs: Any, path: str, expires: float) -> str:
    """A GET URL of *path* in *fs* valid for *expires* seconds.

    Await it on the filesystem's loop (s3fs signs with its async client).

    Raises
    ------
    NotImplementedError
        The filesystem cannot sign URLs.
    """
    seconds = max(1, int(expires))
    url = getattr(fs, "_url", None)
    if url is not None and type(fs).__module__.startswith("s3fs"):
        return await url(path, expires=seconds)
    if type(fs).sign is AbstractFileSystem.sign:
        raise NotImplementedError(f"{type(fs).__name__} cannot sign URLs")
    return await asyncio.to_thread(fs.sign, path, expiration=seconds)


async def check_signing(fs: Any, path: str, label: str) -> None:
    """Sign *path* once, so a store that cannot sign is refused at start-up.

    Raises
    ------
    CLIError
        Naming the store and why it cannot sign.
    """
    try:
        await presigned_url(fs, path, DEFAULT_REDIRECT_EXPIRY)
    except NotImplementedError:
        raise CLIError(
            f"--redirect-reads needs a store that can presign URLs (S3 or GCS); {label} cannot"
        ) from None
    except Exception as exc:  # missing signing library, credentials without a key, ...
        raise CLIError(
            f"--redirect-reads: {label} cannot presign URLs: {type(exc).__name__}: {exc}"
        ) from None
