"""A network guard: refuse any connection outside loopback and the WAN test link.

Installed as a Python audit hook in the harness and in every worker, so that a loader
that ignores its endpoint (e.g. falls back to a cloud default host) fails at once with
a clear error instead of reaching another address. Allowed: 127.0.0.0/8, ::1,
``localhost``, and the private point-to-point addresses of the WAN namespaces.
"""

import ipaddress
import sys

ALLOWED = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
    ipaddress.ip_network("10.233.0.0/30"),  # wan.SERVER_ADDR / wan.CLIENT_ADDR
)


class ForeignAddressError(PermissionError):
    """A connection or name lookup outside the allowed addresses was attempted."""


def allowed(host):
    """Whether ``host`` (an address or name) may be contacted."""
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host in ("localhost", ""):
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return any(ip in net for net in ALLOWED)


def _hook(event, args):
    if event == "socket.getaddrinfo":
        host = args[0]
    elif event == "socket.connect":
        address = args[1]
        if not isinstance(address, tuple):
            return  # AF_UNIX and the like
        host = address[0]
    else:
        return
    if not allowed(host):
        raise ForeignAddressError(
            f"network guard: refused {event} to {host!r} "
            "(the benchmark only talks to 127.0.0.1 and its WAN test link)"
        )


_installed = []


def install():
    """Install the guard once in this process."""
    if not _installed:
        sys.addaudithook(_hook)
        _installed.append(True)
