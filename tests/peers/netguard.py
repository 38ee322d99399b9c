"""Loopback-only network guard for the test suite, built on ``sys.addaudithook``.

Once :func:`install` has run, any attempt by Python code in this process to
connect, send to, bind to or resolve an address outside ``127.0.0.0/8`` and
``::1`` raises :class:`NetworkRefused` *before* the system call, so no packet
leaves the machine. ``AF_UNIX`` and ``AF_NETLINK`` sockets are allowed.

Checked audit events: ``socket.connect`` (also ``connect_ex`` and every
asyncio/aiohttp connect), ``socket.sendto``, ``socket.sendmsg`` and
``socket.bind`` (so servers cannot listen on ``0.0.0.0`` either), plus the
name lookups ``socket.getaddrinfo``, ``socket.gethostbyname(_ex)``,
``socket.gethostbyaddr`` and ``socket.getnameinfo``. A forward lookup is
allowed for IP literals (no DNS involved; connecting is checked later) and for
``localhost``, its aliases and names listed in ``/etc/hosts``; any other name
is refused with :class:`NameRefused` before a DNS query could be sent.

Refusals are recorded (:func:`refusals`); the ``_netguard_report`` fixture fails
a test that caused one it did not expect (:func:`expect_refusals`), even if
the code under test swallowed the error.

Limits: an audit hook sees only Python's socket module. Code in C extensions
that opens its own sockets (c-ares, libuv, libcurl) and other programs (Node,
Chromium, Go servers) are not covered; ``socket.connect(("some.name", 80))``
resolves the name inside C before the hook runs (the connect is still refused).

This module uses only the standard library because ``tests/sitecustomize``
loads it into every Python subprocess the tests start.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "NameRefused",
    "NetworkRefused",
    "Refusal",
    "expect_refusals",
    "install",
    "is_installed",
    "refusals",
]

_LOOPBACK_NAMES = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "ip6-localhost",
        "ip6-loopback",
    }
)
# Addresses that mean "any interface": fine to *resolve* (servers do this
# before bind), but binding or connecting to them is checked separately.
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})
_ALLOWED_FAMILIES = frozenset(
    f
    for f in (getattr(socket, "AF_UNIX", None), getattr(socket, "AF_NETLINK", None))
    if f is not None
)
_INET_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6})
_SOCKADDR_EVENTS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg", "socket.bind"})


def _hosts_file_names(path: str = "/etc/hosts") -> frozenset[str]:
    """Names listed in the hosts file: resolving them sends no DNS query."""
    names: set[str] = set()
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                fields = line.split("#", 1)[0].split()
                names.update(f.rstrip(".").lower() for f in fields[1:])
    except OSError:
        pass
    return frozenset(names)


# Libraries look up this machine's own name (dask does); that stays local when
# the name is in /etc/hosts, as on Debian.
_LOCAL_NAMES = _LOOPBACK_NAMES | _hosts_file_names()


class NetworkRefused(PermissionError):
    """A socket operation aimed outside the loopback network was refused.

    It subclasses :class:`PermissionError` (an :class:`OSError`), so network
    libraries report it the way they report a failed connection; the message
    names the event and the address.
    """


class NameRefused(NetworkRefused, socket.gaierror):
    """A name lookup that could leave the machine was refused.

    Also a :class:`socket.gaierror`, which is what callers of
    ``getaddrinfo`` expect to handle.
    """


@dataclass(frozen=True)
class Refusal:
    """One refused operation.

    ``udp_probe`` marks a UDP ``connect``: a route lookup that sends nothing
    (dask's ``get_ip`` does one towards 8.8.8.8, then falls back). ``expected``
    marks refusals made inside :func:`expect_refusals`.
    """

    event: str
    address: object
    udp_probe: bool = False
    expected: bool = False


_lock = threading.Lock()
_log: list[Refusal] = []
_expected_depth = 0


def refusals() -> list[Refusal]:
    """Return a copy of every refusal recorded in this process so far."""
    with _lock:
        return list(_log)


@contextlib.contextmanager
def expect_refusals() -> Iterator[list[Refusal]]:
    """Collect refusals made inside the block (in any thread) into a list.

    Yields
    ------
    list of Refusal
        Filled when the block ends.
    """
    global _expected_depth
    with _lock:
        start = len(_log)
        _expected_depth += 1
    got: list[Refusal] = []
    try:
        yield got
    finally:
        with _lock:
            _expected_depth -= 1
            got.extend(_log[start:])


def _is_loopback_ip(text: str) -> bool | None:
    """True/False for an IP literal, None when ``text`` is not an IP literal."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _host_text(host: object) -> str | None:
    if host is None:
        return None
    if isinstance(host, bytes | bytearray):
        return bytes(host).decode("ascii", "replace")
    return str(host)


def _forward_allowed(host: str) -> bool:
    """Whether a forward lookup of ``host`` stays on this machine: IP literals
    and wildcards need no DNS; names must be local ones."""
    if host in _WILDCARDS or _is_loopback_ip(host) is not None:
        return True
    return host.rstrip(".").lower() in _LOCAL_NAMES


def _reverse_allowed(host: str) -> bool:
    """Whether a reverse lookup of ``host`` stays on this machine."""
    loop = _is_loopback_ip(host)
    if loop is not None:
        return loop
    return host.rstrip(".").lower() in _LOCAL_NAMES


def _refuse(event: str, address: object, *, udp_probe: bool = False) -> None:
    with _lock:
        _log.append(Refusal(event, address, udp_probe, _expected_depth > 0))
    cls = NetworkRefused if event in _SOCKADDR_EVENTS else NameRefused
    raise cls(
        f"netguard: refused {event} to {address!r}: tests may only use 127.0.0.0/8, ::1 or AF_UNIX"
    )


def _check_sockaddr(event: str, sock: socket.socket, address: object) -> None:
    family = sock.family
    if family in _ALLOWED_FAMILIES:
        return
    if family not in _INET_FAMILIES:
        _refuse(event, address)
    host = _host_text(address[0]) if isinstance(address, tuple) and address else None
    if host is None:
        _refuse(event, address)
    loop = _is_loopback_ip(host)
    if loop is None:  # a host name inside a sockaddr (already resolved by C)
        loop = host.rstrip(".").lower() in _LOOPBACK_NAMES
    if not loop:
        udp = event == "socket.connect" and sock.type == socket.SOCK_DGRAM
        _refuse(event, address, udp_probe=udp)


def _hook(event: str, args: tuple) -> None:
    if not event.startswith("socket."):
        return
    if event in _SOCKADDR_EVENTS:
        if args[1] is not None:  # sendmsg on a connected socket has none
            _check_sockaddr(event, args[0], args[1])
    elif event == "socket.getaddrinfo":
        host = _host_text(args[0])
        if host is not None and not _forward_allowed(host):
            _refuse(event, (host, args[1]))
    elif event in ("socket.gethostbyname", "socket.gethostbyname_ex"):
        host = _host_text(args[0])
        if host is not None and not _forward_allowed(host):
            _refuse(event, host)
    elif event == "socket.gethostbyaddr":
        host = _host_text(args[0])
        if host is not None and not _reverse_allowed(host):
            _refuse(event, host)
    elif event == "socket.getnameinfo":
        sockaddr = args[0]
        host = _host_text(sockaddr[0]) if isinstance(sockaddr, tuple) else None
        if host is None or not _reverse_allowed(host):
            _refuse(event, sockaddr)


def is_installed() -> bool:
    """Whether the guard is active in this process."""
    return bool(getattr(sys, "_tfjsfs_netguard_installed", False))


def install() -> None:
    """Install the audit hook once per process (audit hooks cannot be removed)."""
    if is_installed():
        return
    sys.addaudithook(_hook)
    sys._tfjsfs_netguard_installed = True  # shared by every copy of this module
    os.environ["TFJSFS_NETGUARD"] = "1"
