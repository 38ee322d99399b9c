"""Who may talk to the model server: Host names, web page origins and bearer tokens.

A server on a laptop is reachable by every web page its user opens, so the
defaults are closed where it matters:

* **Host** (DNS rebinding): the ``Host`` header must name the server: its
  bound address, a loopback address, ``localhost`` (or ``*.localhost``), any
  IP address when it listens on all interfaces, or a name given with
  ``--allow-host``. Anything else gets 421.
* **Origin** (cross-site writes): a browser sends ``Origin`` with every
  ``POST``/``PUT``/``DELETE``. Writes are accepted without one (scripts,
  ``curl``), from the server's own pages, and from origins given with
  ``--allow-origin``; any other web page gets 403 telling the flag, and so
  does its CORS preflight. Reads stay open to every origin unless
  ``--allow-origin`` lists the ones allowed.
* **Tokens**: *token* guards writes, *read_token* (or *token*) reads. A read
  token alone never opens writes: then writing is disabled. Tokens are
  compared in constant time; an empty token is refused at start-up.

:class:`AccessPolicy` holds the rules; :func:`access_middleware` and
:func:`auth_middleware` apply them.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from aiohttp import hdrs, web

from ..errors import CLIError
from .middleware import is_public, json_error

__all__ = [
    "ANY_ORIGIN",
    "READ_METHODS",
    "WRITE_METHODS",
    "AccessPolicy",
    "access_middleware",
    "auth_middleware",
    "check_token",
    "host_name",
    "is_loopback_name",
    "server_origin",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Methods that change the store.
WRITE_METHODS = frozenset({hdrs.METH_POST, hdrs.METH_PUT, hdrs.METH_PATCH, hdrs.METH_DELETE})
#: Methods that only read.
READ_METHODS = frozenset({hdrs.METH_GET, hdrs.METH_HEAD})
#: ``--allow-origin '*'``: every web page may write (opt-in, warned about).
ANY_ORIGIN = "*"
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


def check_token(token: str | None, what: str) -> str | None:
    """*token*, or None when unset; an empty or blank token is an error.

    Raises
    ------
    CLIError
        For ``""`` or whitespace: an empty token would mean "no token" and
        silently leave the server open.
    """
    if token is None:
        return None
    if not token.strip():
        raise CLIError(f"the {what} is empty; give a real token, or unset it to run without one")
    return token


def host_name(value: str) -> str:
    """The host part of a ``Host`` header: no port, no brackets, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    name, colon, port = value.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        value = name
    return value.rstrip(".")


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name.partition("%")[0])
    except ValueError:
        return None


def is_loopback_name(host: str) -> bool:
    """Whether *host* (a ``Host`` value or an address) names this machine only:
    ``localhost``, ``*.localhost`` or a loopback address."""
    name = host_name(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    ip = _ip(name)
    return ip is not None and ip.is_loopback


@dataclass(frozen=True)
class AccessPolicy:
    """Which Host names and which web page origins the server accepts.

    Parameters
    ----------
    origins : tuple of str or None
        Origins allowed to call the server, for reads and writes
        (``"*"``: every origin). None (the default) lets every origin read
        and none write; an empty tuple sends no CORS headers at all.
    hosts : tuple of str
        Extra names accepted in ``Host`` (``--allow-host``).
    bind : str or None
        The address the server listens on (accepted in ``Host``; a wildcard
        address accepts every IP address).
    """

    origins: tuple[str, ...] | None = None
    hosts: tuple[str, ...] = ()
    bind: str | None = None

    @classmethod
    def build(
        cls,
        origins: Sequence[str] | None = None,
        hosts: Iterable[str] = (),
        bind: str | None = None,
    ) -> AccessPolicy:
        """A policy with normalised names (origins without a trailing ``/``)."""
        return cls(
            None if origins is None else tuple(o.rstrip("/") for o in origins),
            tuple(host_name(h) for h in hosts),
            bind,
        )

    @property
    def any_origin_writes(self) -> bool:
        """Whether every web page may write (``--allow-origin '*'``)."""
        return self.origins is not None and ANY_ORIGIN in self.origins

    def host_allowed(self, host: str) -> bool:
        """Whether the ``Host`` header value *host* names this server."""
        name = host_name(host)
        if is_loopback_name(name) or name in self.hosts:
            return True
        ip = _ip(name)
        bind = host_name(self.bind) if self.bind is not None else None
        if ip is not None and bind in _WILDCARD_HOSTS:
            return True
        if bind is None or bind in _WILDCARD_HOSTS:
            return False
        bound_ip = _ip(bind)
        return name == bind or (ip is not None and ip == bound_ip)

    def origin_may_write(self, origin: str, request: web.Request) -> bool:
        """Whether a page of *origin* may write (same origin, or allowed)."""
        origin = origin.strip().rstrip("/")
        if origin.lower() == f"{request.scheme}://{request.host}".lower():
            return True
        return self.origins is not None and (ANY_ORIGIN in self.origins or origin in self.origins)


ACCESS_KEY = web.AppKey("tfjsfs_access", AccessPolicy)


def server_origin(request: web.Request) -> str:
    """``http://<address>:<port>`` of the socket *request* arrived on.

    Links the server hands out are built from this, never from the ``Host``
    header (which a client chooses); "" when the address is unknown (links
    are then relative).
    """
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if not isinstance(sockname, (tuple, list)) or len(sockname) < 2:
        return ""
    address, port = str(sockname[0]), int(sockname[1])
    shown = f"[{address}]" if ":" in address else address
    return f"{request.scheme}://{shown}:{port}"


def _origin_refused(origin: str) -> web.Response:
    return json_error(
        403,
        f"writes from the web page origin {origin} are refused: this server accepts "
        f"uploads and deletes only from its own pages, from scripts, and from origins "
        f"allowed with --allow-origin (restart it with --allow-origin {origin} to let "
        f"that page save and delete models)",
        "origin-not-allowed",
    )


def _write_intent(request: web.Request) -> bool:
    if request.method == hdrs.METH_OPTIONS:
        wanted = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_METHOD, "")
        return wanted.strip().upper() in WRITE_METHODS
    return request.method in WRITE_METHODS


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse requests whose ``Host`` does not name the server (421) and writes
    (and their preflights) from web page origins not allowed (403).

    The policy is ``request.app[ACCESS_KEY]``.
    """
    policy = request.app[ACCESS_KEY]
    host = request.headers.get(hdrs.HOST)
    if host is None:
        if request.version >= (1, 1):
            return json_error(400, "the request has no Host header", "bad-host")
    elif not policy.host_allowed(host):
        return json_error(
            421,
            f"Host {host_name(host)!r} does not name this server; if it should, "
            f"restart it with --allow-host {host_name(host)}",
            "bad-host",
        )
    origin = request.headers.get(hdrs.ORIGIN)
    writing = origin is not None and _write_intent(request)
    if writing and not policy.origin_may_write(origin, request):
        return _origin_refused(origin)
    return await handler(request)


# ------------------------------------------------------------------- tokens


def _bearer(request: web.Request) -> bytes | None:
    scheme, _, value = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return None
    # header bytes that are not UTF-8 arrive as surrogates: they match no token
    return value.encode("utf-8", "surrogateescape")


def _unauthorized(text: str, error: str | None = None) -> web.HTTPUnauthorized:
    challenge = 'Bearer realm="tfjsfs"' + (f', error="{error}"' if error else "")
    return web.HTTPUnauthorized(text=text, headers={hdrs.WWW_AUTHENTICATE: challenge})


def auth_middleware(token: str | None, read_token: str | None):
    """Bearer-token checks: *token* for writes, *read_token* (or *token*) for reads.

    ``OPTIONS`` (CORS preflights) and :func:`~tfjsfs.server.middleware.public`
    handlers need no token. With a read token and no write token, writing
    is disabled (403): a read token never opens writes.
    """
    token = check_token(token, "write token")
    read_token = check_token(read_token, "read token")
    write_tokens = [token.encode()] if token else []
    read_tokens = [t.encode() for t in (read_token, token) if t] if read_token else []

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == hdrs.METH_OPTIONS or is_public(request):
            return await handler(request)
        write = request.method not in READ_METHODS
        if write and read_token and not token:
            return json_error(
                403,
                "this server has a read token but no write token, so writing is disabled; "
                "start it with a write token to allow uploads and deletes",
                "read-only",
            )
        wanted = write_tokens if write else read_tokens
        if wanted:
            given = _bearer(request)
            what = "writing" if write else "reading"
            if given is None:
                raise _unauthorized(f"{what} needs a bearer token (Authorization: Bearer …)")
            matches = [hmac.compare_digest(given, t) for t in wanted]  # every one: no shortcut
            if not any(matches):
                raise _unauthorized(f"the bearer token is not valid for {what}", "invalid_token")
        return await handler(request)

    return check
