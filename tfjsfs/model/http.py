"""Saving over HTTP exactly as TF.js's ``browserHTTPRequest`` does.

``model.save('http://host/upload')`` in TF.js sends one ``multipart/form-data``
request with two parts:

* ``model.json`` (filename ``model.json``, ``application/json``): the model
  JSON with the manifest rewritten to one group whose only path is
  ``./model.weights.bin``;
* ``model.weights.bin`` (filename ``model.weights.bin``,
  ``application/octet-stream``): every weight's bytes, concatenated.

:class:`HTTPRequest` sends the same request from Python, and is listed
among the model router's built-ins, so ``tfjsfs.save_model(artifacts, "http://…")`` (or
``https://``, ``tfjs+http(s)://``) posts the model. Loading over HTTP needs
nothing from here: it goes through fsspec's HTTP filesystem, and the same
``storage_options`` (``headers``, ``client_kwargs``, ``auth``, …) apply to
saves, so one set of options serves ``load_model``, ``save_model`` and
``copy_model`` with an ``http(s)://`` end.

aiohttp is imported when a request is built, not with this module (documented
lazy loading: the model router lists this module's router, and the fsspec
entry points that import the router must not pay for aiohttp).
"""

from __future__ import annotations

import json
import ssl as _ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp

from .._util.urls import is_http_url, split_tfjs_protocol
from ..errors import TransferError
from ..format.artifacts import ModelArtifacts, SaveResult
from ..format.manifest import WeightGroup

__all__ = [
    "JSON_FIELD",
    "WEIGHTS_FIELD",
    "WEIGHTS_PATH",
    "HTTPRequest",
    "HTTPResponse",
    "browser_http_request",
    "http_save_router",
    "multipart_form",
    "upload_model_json",
]

#: Form field (and file name) of the model JSON part.
JSON_FIELD = "model.json"
#: Form field (and file name) of the weights part.
WEIGHTS_FIELD = "model.weights.bin"
#: The single manifest path TF.js writes into an uploaded model.json.
WEIGHTS_PATH = "./model.weights.bin"
#: Bytes of the reply body kept in error messages.
ERROR_BODY_BYTES = 512

#: fsspec HTTP storage options that are aiohttp request keywords (the rest,
#: such as ``block_size``, only concern reading and are ignored here).
REQUEST_OPTIONS = (
    "headers",
    "auth",
    "cookies",
    "proxy",
    "proxy_auth",
    "proxy_headers",
    "ssl",
    "server_hostname",
    "allow_redirects",
    "max_redirects",
    "skip_auto_headers",
)


@dataclass
class HTTPResponse:
    """The server's reply to a save (TF.js puts the fetch ``Response`` in ``responses``).

    Attributes
    ----------
    url : str
    status : int
    reason : str
    headers : dict
        Header names as sent by the server.
    body : bytes
    """

    url: str
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def ok(self) -> bool:
        """True for a 2xx status, as ``Response.ok``."""
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    def text(self) -> str:
        """The body decoded as UTF-8 (invalid bytes replaced)."""
        return self.body.decode("utf-8", "replace")


def upload_model_json(artifacts: ModelArtifacts) -> bytes:
    """The model.json TF.js uploads: the manifest as one group ``./model.weights.bin``.

    Any grouping or sharding of *artifacts* is discarded, as TF.js does.
    """
    group = WeightGroup((WEIGHTS_PATH,), tuple(artifacts.weight_specs))
    return artifacts.to_model_json([group]).dumps()


def multipart_form(artifacts: ModelArtifacts) -> aiohttp.FormData:
    """The ``multipart/form-data`` body of TF.js's HTTP save for *artifacts*.

    The weights part is left out when ``weight_data`` is None, as TF.js does
    when ``weightData`` is null. The weight bytes are not copied.
    """
    import aiohttp  # lazy: see the module docstring

    form = aiohttp.FormData()
    form.add_field(
        JSON_FIELD,
        upload_model_json(artifacts),
        filename=JSON_FIELD,
        content_type="application/json",
    )
    if artifacts.weight_data is not None:
        form.add_field(
            WEIGHTS_FIELD,
            memoryview(artifacts.weight_data).cast("B"),
            filename=WEIGHTS_FIELD,
            content_type="application/octet-stream",
        )
    return form


class HTTPRequest:
    """IOHandler that saves to a URL with TF.js's multipart request.

    The Python twin of ``tf.io.browserHTTPRequest(url, {method, headers})``.

    Parameters
    ----------
    url : str
        ``http://`` or ``https://`` (a ``tfjs+`` prefix is dropped).
    method : str
        HTTP method, ``"POST"`` by default (``"PUT"`` also common).
    headers : mapping, optional
        Extra request headers, e.g. ``{"Authorization": "Bearer …"}``. A
        ``Content-Type`` here is refused: the multipart boundary sets it.
    timeout : float, optional
        Seconds for the whole request; None waits forever.
    ssl : ssl.SSLContext or bool, optional
        Passed to aiohttp: a context trusting a private CA, or False to skip
        certificate checks.
    storage_options : mapping, optional
        fsspec HTTP filesystem options, as for loading: ``headers`` (under
        *headers*, which win), ``client_kwargs`` (for the
        ``aiohttp.ClientSession``), and the request keywords in
        :data:`REQUEST_OPTIONS` (``auth``, ``ssl``, ``proxy``, …). Other keys
        only concern reading and are ignored.
    """

    def __init__(
        self,
        url: str,
        *,
        method: str = "POST",
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        ssl: _ssl.SSLContext | bool | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ):
        if not url:
            raise ValueError("URL path for http must not be empty")
        plain = split_tfjs_protocol(url)[1]
        if not is_http_url(plain):
            raise ValueError(f"not an http(s) URL: {url!r}")
        options = dict(storage_options or {})
        self.client_kwargs = dict(options.get("client_kwargs") or {})
        self.request_options = {
            k: options[k] for k in REQUEST_OPTIONS if k in options and k not in ("headers", "ssl")
        }
        headers = {**dict(options.get("headers") or {}), **dict(headers or {})}
        for given in (headers, self.client_kwargs.get("headers") or {}):
            if any(k.lower() == "content-type" for k in given):
                raise ValueError("headers must not set Content-Type; the multipart body sets it")
        self.url = plain
        self.method = method.upper()
        self.headers = headers
        self.timeout = timeout
        self.ssl = options.get("ssl") if ssl is None else ssl

    def __repr__(self) -> str:
        return f"HTTPRequest({self.url!r}, method={self.method!r})"

    async def save(self, artifacts: ModelArtifacts) -> SaveResult:
        """Send *artifacts*; return a :class:`SaveResult` holding the reply.

        Raises
        ------
        TransferError
            For a non-2xx reply (its status and the first bytes of its body),
            a connection failure or a timeout.
        """
        import aiohttp  # lazy: see the module docstring

        info = artifacts.info()
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with (
                aiohttp.ClientSession(**{**self.client_kwargs, "timeout": timeout}) as session,
                session.request(
                    self.method,
                    self.url,
                    data=multipart_form(artifacts),
                    headers=self.headers,
                    ssl=True if self.ssl is None else self.ssl,
                    **self.request_options,
                ) as reply,
            ):
                body = await reply.read()
                response = HTTPResponse(
                    str(reply.url), reply.status, reply.reason or "", dict(reply.headers), body
                )
        except TimeoutError:
            raise TransferError(
                f"{self.method} {self.url}: no complete reply within {self.timeout} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise TransferError(f"{self.method} {self.url} failed: {exc}") from exc
        if not response.ok:
            raise TransferError(_status_message(self.method, self.url, response))
        return SaveResult(info, responses=[response], url=self.url)


def _status_message(method: str, url: str, response: HTTPResponse) -> str:
    head = response.body[:ERROR_BODY_BYTES]
    more = len(response.body) - len(head)
    text = head.decode("utf-8", "replace")
    tail = f" … ({more} more bytes)" if more > 0 else ""
    return (
        f"{method} {url} failed with HTTP status {response.status} {response.reason}: "
        f"{text!r}{tail}"
    )


def browser_http_request(url: str, **options: Any) -> HTTPRequest:
    """An :class:`HTTPRequest` (TF.js ``tf.io.browserHTTPRequest`` / ``tf.io.http``)."""
    return HTTPRequest(url, **options)


def http_save_router(url: Any, **options: Any) -> HTTPRequest | None:
    """Save router: HTTP(S) URLs get an :class:`HTTPRequest` (``storage_options`` included)."""
    if not isinstance(url, str) or not is_http_url(url):
        return None
    return HTTPRequest(url, **options)
