"""Facts from fsspec ``info``/listing entries, whatever the backend calls them.

Local files say ``mtime``, S3 ``LastModified`` and ``ETag``, GCS ``updated``
and ``md5Hash``, memory ``created``; these helpers read any of them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as _dt
from collections.abc import Mapping
from typing import Any

__all__ = ["content_md5", "entity_tag", "modified_time", "version_key"]

#: Keys holding a modification time, most specific first.
TIME_KEYS = ("LastModified", "last_modified", "updated", "mtime", "timeCreated", "created")
#: Keys holding a content tag or checksum.
TAG_KEYS = ("ETag", "etag", "md5Hash", "crc32c")


def modified_time(info: Mapping[str, Any]) -> _dt.datetime | None:
    """The entry's modification time (timezone-aware, UTC when unsaid), or None.

    Parameters
    ----------
    info : mapping
        An fsspec ``info()`` dict or ``ls(detail=True)`` entry.
    """
    for key in TIME_KEYS:
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, _dt.datetime):
            return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)
        if isinstance(value, (int, float)):
            return _dt.datetime.fromtimestamp(value, _dt.UTC)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                stamp = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
                return stamp if stamp.tzinfo else stamp.replace(tzinfo=_dt.UTC)
    return None


def entity_tag(info: Mapping[str, Any]) -> str | None:
    """A strong HTTP ETag for a file, from its fsspec info (None if nothing fits).

    The backend's own tag or checksum when it has one, else one made from
    the modification time and the size.
    """
    for key in TAG_KEYS:
        value = info.get(key)
        if isinstance(value, str) and value:
            bare = value.strip('"')
            return f'"{bare}"'
    stamp = modified_time(info)
    size = info.get("size")
    if stamp is None or size is None:
        return None
    micros = int(stamp.timestamp() * 1_000_000)
    return f'"{micros:x}-{int(size):x}"'


def content_md5(info: Mapping[str, Any]) -> str | None:
    """The MD5 of a file's bytes as hex, when its entry says it (else None).

    GCS lists ``md5Hash`` (base64); an S3 ETag of 32 hex digits is the MD5
    of a single-part upload (multipart ETags end in ``-<parts>`` and are not).
    """
    value = info.get("md5Hash")
    if isinstance(value, str) and value:
        with contextlib.suppress(ValueError, binascii.Error):
            raw = base64.b64decode(value, validate=True)
            if len(raw) == 16:
                return raw.hex()
    value = info.get("ETag")
    if isinstance(value, str):
        bare = value.strip('"').lower()
        if len(bare) == 32 and all(c in "0123456789abcdef" for c in bare):
            return bare
    return None


def version_key(info: Mapping[str, Any]) -> tuple:
    """What tells two states of one file apart: size, modification time, tag."""
    return (info.get("size"), modified_time(info), info.get("ETag") or info.get("etag"))
