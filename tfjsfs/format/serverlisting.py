"""The model server's JSON listing, as a client recognises it (no I/O).

``tfjsfs serve`` answers ``GET /models`` (``Accept: application/json``) with
``{"store", "models": [...]}`` and the header :data:`LISTING_HEADER`; its
pages and listing carry ``Link: </models>; rel="tfjsfs-models"``
(:data:`LISTING_REL`), so a client holding any URL of the server finds the
listing without guessing paths. :func:`parse_listing` checks a reply and
returns its models.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Mapping

__all__ = [
    "LISTING_HEADER",
    "LISTING_REL",
    "LISTING_VERSION",
    "ListedModel",
    "listing_link",
    "parse_listing",
]

#: Response header marking a tfjsfs server's model listing (value: format version).
LISTING_HEADER = "X-Tfjsfs-Listing"
LISTING_VERSION = "1"
#: ``Link`` relation of the listing, on the server's pages and listing.
LISTING_REL = "tfjsfs-models"

_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")


class ListedModel(dict):
    """One model of a listing: ``name``, ``url`` (the bundle), ``modelUrl``
    (its model.json), ``files`` (``{url: size}`` of its weight files) and
    the entry as the server sent it (``entry``)."""


def listing_link(headers: Mapping[str, str], base: str) -> str | None:
    """The absolute URL of the ``rel="tfjsfs-models"`` link in *headers*, or None."""
    for key, value in headers.items():
        if key.lower() != "link":
            continue
        for match in _LINK.finditer(value):
            params = match.group(2).lower().replace(" ", "")
            if f'rel="{LISTING_REL}"' in params or f"rel={LISTING_REL}" in params:
                return urllib.parse.urljoin(base, match.group(1))
    return None


def parse_listing(headers: Mapping[str, str], body: bytes) -> list[ListedModel] | None:
    """The models of a tfjsfs server's listing reply, or None when it is not one.

    A reply is a listing when it carries :data:`LISTING_HEADER` and its body
    is ``{"models": [{"name", "url", "modelUrl", ...}, ...]}``; entries
    without those string fields are left out.
    """
    if not any(k.lower() == LISTING_HEADER.lower() for k in headers):
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    models = doc.get("models") if isinstance(doc, dict) else None
    if not isinstance(models, list):
        return None
    out = []
    for entry in models:
        if not isinstance(entry, dict):
            continue
        fields = [entry.get(k) for k in ("name", "url", "modelUrl")]
        if not all(isinstance(f, str) for f in fields):
            continue
        files = {
            f["url"]: f.get("size")
            for f in entry.get("files") or []
            if isinstance(f, dict) and isinstance(f.get("url"), str)
        }
        out.append(
            ListedModel(
                name=fields[0], url=fields[1], modelUrl=fields[2], files=files, entry=entry
            )
        )
    return out
