"""A WAN-like link between two network namespaces, via the shared ``wanlink.py`` tool.

This kernel has no ``netem`` qdisc; ``wanlink.py`` forwards IP packets between one TUN
device in each of two namespaces with netem's ``delay D rate R limit L`` semantics, in
both directions (RTT = 2 D plus serialisation). :class:`WanLink` creates two namespaces
with unique names, starts the tool, addresses the point-to-point devices
(``10.233.0.1`` server side, ``10.233.0.2`` client side; these addresses exist only
inside the two private namespaces, which have no other interface), and removes
everything on exit. The forwarder runs at ``nice -10``: the link is not under test, and
on a busy 2-core machine it would otherwise slow down with the loaders it carries.
Needs root (``CAP_NET_ADMIN``) and ``/dev/net/tun``.
"""

import contextlib
import os
import re
import subprocess
import sys
import threading
import time

SERVER_ADDR = "10.233.0.1"
CLIENT_ADDR = "10.233.0.2"
DEV = "wan0"


def drop_share(stats):
    """Share of server-to-client packets the link dropped, from the tool's final stats."""
    m = re.search(r"sent=\[(\d+), (\d+)\] dropped=\[(\d+), (\d+)\]", stats or "")
    if not m:
        return None
    sent, dropped = int(m.group(1)), int(m.group(3))
    return dropped / (sent + dropped) if sent + dropped else 0.0


class WanUnavailable(RuntimeError):
    """The link cannot be built here (not root, no netns, no TUN, no tool)."""


def default_tool_path():
    """``../shared/tools/wanlink.py`` next to the repository, or ``$TFJSFS_WANLINK``."""
    env = os.environ.get("TFJSFS_WANLINK")
    if env:
        return env
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(os.path.dirname(repo), "shared", "tools", "wanlink.py")


LINK_NICE = -10


def _raise_priority():
    """The emulated link is not under test: give its forwarder a head start on the CPU."""
    with contextlib.suppress(OSError):
        os.nice(LINK_NICE)


def _ip(*args):
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise WanUnavailable(f"ip {' '.join(args)}: {r.stderr.strip() or r.returncode}")


class WanLink:
    """Context manager for one emulated link.

    Parameters
    ----------
    delay_ms : float
        One-way delay added in each direction.
    rate_mbit : float
        Link rate in each direction, Mbit/s (10^6 bit/s).
    limit : int
        Queue length in packets per direction (netem's ``limit``).
    tag : str
        Short tag making the namespace names unique within this run.
    tool : str, optional
        Path of ``wanlink.py``.

    Attributes
    ----------
    client_prefix : list of str
        Command prefix that runs a program on the client side.
    stats : str
        The tool's final packet counters (after exit).
    """

    def __init__(self, delay_ms, rate_mbit, limit=1000, tag="0", tool=None):
        self.delay_ms = delay_ms
        self.rate_mbit = rate_mbit
        self.limit = limit
        self.tool = tool or default_tool_path()
        base = f"tfjsb{os.getpid()}{tag}"
        self.ns_server = base + "s"
        self.ns_client = base + "c"
        self.proc = None
        self.stats = ""
        self._err = []
        self._made = []

    @property
    def client_prefix(self):
        return ["ip", "netns", "exec", self.ns_client]

    @property
    def link_mb_s(self):
        """The link's rate in MB/s (10^6 bytes)."""
        return self.rate_mbit / 8.0

    def __enter__(self):
        if not os.path.exists(self.tool):
            raise WanUnavailable(f"wanlink tool not found at {self.tool} (set TFJSFS_WANLINK)")
        if os.geteuid() != 0:
            raise WanUnavailable("needs root to create network namespaces")
        if not os.path.exists("/dev/net/tun"):
            raise WanUnavailable("no /dev/net/tun")
        try:
            for ns in (self.ns_server, self.ns_client):
                _ip("netns", "add", ns)
                self._made.append(ns)
            cmd = [
                sys.executable,
                self.tool,
                self.ns_server,
                DEV,
                self.ns_client,
                DEV,
                str(self.delay_ms),
                str(self.rate_mbit),
                str(self.limit),
            ]
            self.proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                preexec_fn=_raise_priority,
            )
            threading.Thread(target=self._drain, daemon=True).start()
            line = self.proc.stdout.readline()
            if line.strip() != "ready":
                time.sleep(0.2)
                raise WanUnavailable(
                    f"wanlink did not start: {line.strip()} {''.join(self._err)[-500:]}"
                )
            for ns, local, peer in (
                (self.ns_server, SERVER_ADDR, CLIENT_ADDR),
                (self.ns_client, CLIENT_ADDR, SERVER_ADDR),
            ):
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "addr", "add", local, "peer", peer, "dev", DEV)
                _ip("-n", ns, "link", "set", DEV, "up")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _drain(self):
        for line in self.proc.stderr:
            self._err.append(line)

    def __exit__(self, *exc):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            time.sleep(0.05)
            self.stats = "".join(line for line in self._err if line.startswith("stats")).strip()
            self.proc = None
        while self._made:
            ns = self._made.pop()
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        return False

    def rtt_ms(self, port, samples=5):
        """Median TCP connect time from the client side to ``SERVER_ADDR:port``, in ms."""
        code = (
            "import socket,statistics,time\n"
            "t=[]\n"
            f"for _ in range({samples}):\n"
            "    a=time.perf_counter()\n"
            f"    s=socket.create_connection(({SERVER_ADDR!r},{port}),timeout=5)\n"
            "    t.append(time.perf_counter()-a); s.close()\n"
            "print(statistics.median(t)*1000)"
        )
        r = subprocess.run(
            [*self.client_prefix, sys.executable, "-c", code], capture_output=True, text=True
        )
        return float(r.stdout.strip()) if r.returncode == 0 else None
