"""Finding a tfjsfs server's JSON listing from any of its URLs (HTTP only).

A plain HTTP folder has no listing tfjsfs can trust, but ``tfjsfs serve``
lists its models as JSON and says so (see :mod:`tfjsfs.format.serverlisting`).
:func:`server_listing` asks the URL itself for JSON; if the reply is not a
listing, it follows a ``rel="tfjsfs-models"`` link, from that reply or from
the server's root page. No path is guessed; a server that is not tfjsfs
gives None (and callers fall back to their plain HTTP behaviour).
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from ..format.serverlisting import ListedModel, listing_link, parse_listing
from .location import listing_key

__all__ = ["server_listing"]

#: Largest listing reply read (bytes); a bigger one is not taken for a listing.
MAX_LISTING_BYTES = 64 * 1024 * 1024


async def _get(fs: Any, url: str) -> tuple[dict[str, str], bytes] | None:
    session = await fs.set_session()
    kw = dict(fs.kwargs)
    headers = {**(kw.pop("headers", None) or {}), "Accept": "application/json"}
    try:
        async with session.get(fs.encode_url(url), headers=headers, **kw) as reply:
            if reply.status != 200:
                return dict(reply.headers), b""
            size = reply.content_length
            if size is not None and size > MAX_LISTING_BYTES:
                return dict(reply.headers), b""
            body = await reply.content.read(MAX_LISTING_BYTES + 1)
            return dict(reply.headers), body if len(body) <= MAX_LISTING_BYTES else b""
    except (OSError, TimeoutError):
        return None
    except Exception as exc:  # aiohttp's client errors, without importing aiohttp here
        if type(exc).__module__.partition(".")[0] == "aiohttp":
            return None
        raise


def _under(url: str, prefix: str) -> bool:
    url, prefix = listing_key(url), listing_key(prefix)
    return url == prefix or url.startswith(prefix.rstrip("/") + "/")


async def server_listing(fs: Any, url: str) -> list[ListedModel] | None:
    """The models a tfjsfs server lists at or below *url*, or None.

    Parameters
    ----------
    fs : fsspec HTTPFileSystem
        Its headers and client options are used for the requests.
    url : str
        Any URL on the server: its listing (``/models``), a folder of models
        (``/models/team``), a model, or the root.

    Returns
    -------
    list of ListedModel or None
        None when the server does not offer a tfjsfs listing.
    """
    got = await _get(fs, url)
    if got is None:
        return None
    headers, body = got
    models = parse_listing(headers, body)
    if models is not None:
        return models
    link = listing_link(headers, url)
    if link is None:
        root = urllib.parse.urljoin(url, "/")
        if listing_key(root) == listing_key(url):
            return None
        got = await _get(fs, root)
        link = listing_link(got[0], root) if got is not None else None
        if link is None:
            return None
    got = await _get(fs, link)
    if got is None:
        return None
    models = parse_listing(*got)
    if models is None:
        return None
    return [m for m in models if _under(m["url"], url) or _under(m["modelUrl"], url)]
