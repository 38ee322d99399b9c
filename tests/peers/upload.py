"""An HTTP server that records every POST/PUT it receives.

Used to capture what TF.js sends for ``model.save("http://...")`` /
``tf.io.http`` and ``tf.io.copyModel``: headers, the raw body and, for
``multipart/form-data``, each part's name, filename, content type and bytes.
CORS (any origin) is on, so browser pages from another origin can post.
"""

from __future__ import annotations

import email.parser
import email.policy
import threading
from dataclasses import dataclass

import aiohttp_cors
from aiohttp import web

from ._aioserver import ThreadedApp, TLSConfig


@dataclass(frozen=True)
class Part:
    """One ``multipart/form-data`` part."""

    name: str | None
    filename: str | None
    content_type: str
    data: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Upload:
    """One received request. ``headers`` keys are lower-case."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    parts: list[Part]

    def part(self, name: str) -> Part:
        """The part with form field ``name``."""
        for p in self.parts:
            if p.name == name:
                return p
        names = [p.name for p in self.parts]
        raise KeyError(f"no part named {name!r}; parts: {names}")


def parse_multipart(content_type: str, body: bytes) -> list[Part]:
    """Split a ``multipart/*`` body into :class:`Part` objects (stdlib email parser).

    Returns an empty list for other content types.
    """
    if not content_type.lower().startswith("multipart/"):
        return []
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    parts = []
    for sub in msg.iter_parts():
        parts.append(
            Part(
                name=sub.get_param("name", header="content-disposition"),
                filename=sub.get_filename(),
                content_type=sub.get_content_type(),
                data=sub.get_payload(decode=True) or b"",
                headers={k.lower(): str(v) for k, v in sub.items()},
            )
        )
    return parts


class UploadReceiver(ThreadedApp):
    """Record POST and PUT requests to any path on 127.0.0.1.

    Parameters
    ----------
    status : int
        Status to answer with (default 200, JSON body ``{"ok": true}``).
    tls : peers.tls.ThrowawayCA, optional
        Serve HTTPS with a certificate from this CA.
    """

    def __init__(self, *, status: int = 200, tls: TLSConfig | None = None):
        super().__init__(tls=tls)
        self.status = status
        self._cond = threading.Condition()
        self._uploads: list[Upload] = []

    @property
    def uploads(self) -> list[Upload]:
        """Requests received so far, oldest first (a copy)."""
        with self._cond:
            return list(self._uploads)

    def clear(self) -> None:
        """Forget received requests."""
        with self._cond:
            self._uploads.clear()

    def wait_for(self, count: int = 1, timeout: float = 30) -> list[Upload]:
        """Block until ``count`` requests arrived; raise TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._uploads) >= count, timeout):
                raise TimeoutError(f"{len(self._uploads)} of {count} uploads after {timeout} s")
            return list(self._uploads)

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        resource = app.router.add_resource("/{tail:.*}")
        cors = aiohttp_cors.setup(
            app,
            defaults={"*": aiohttp_cors.ResourceOptions(expose_headers="*", allow_headers="*")},
        )
        for method in ("POST", "PUT"):
            cors.add(resource.add_route(method, self._handle))
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        upload = Upload(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            parts=parse_multipart(request.headers.get("Content-Type", ""), body),
        )
        with self._cond:
            self._uploads.append(upload)
            self._cond.notify_all()
        return web.json_response({"ok": self.status < 400}, status=self.status)
