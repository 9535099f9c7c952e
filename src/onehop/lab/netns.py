"""The namespace topology (root only): client | censor | servers, joined by veth pairs.

::

    client ns            censor ns                        server ns
    10.66.1.1  ---veth--- 10.66.1.254 | 10.66.2.254 ---veth--- 10.66.2.1..N

The censor namespace forwards IP between the two links, and ``iptables -t nat -A
PREROUTING -i <client link> -p tcp -j REDIRECT`` hands every client TCP flow to the
middlebox listening there, which learns the destination from ``SO_ORIGINAL_DST``.

Everything runs in this one process: a socket belongs to the namespace its creating
thread was in, so sockets are created inside ``_entered(ns)`` (``setns(2)`` around the
``socket()`` call) and used from the root namespace as usual. Servers reach the
"internet" (the page server on 127.0.0.1) from the root namespace the same way.

Namespaces are named ``onehop-lab-<pid>-<n>{cli,cen,srv}``; deleting them removes the
veth pairs and iptables rules with them. ``close`` always deletes them, and a new lab
first deletes those left behind by processes that no longer exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator

from .flows import Endpoint
from .middlebox import Middlebox, original_destination
from .topology import CaptureSpec, LabError, Topology

CLONE_NEWNET = 0x40000000
PREFIX = "onehop-lab-"
CLIENT_NET, SERVER_NET = "10.66.1.", "10.66.2."
ROUTER = "254"
MIDDLEBOX_PORT = 15001
_libc = ctypes.CDLL(None, use_errno=True)
_instances = itertools.count(1)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise LabError(f"setns failed: {os.strerror(errno)}")


def _run(*argv: str) -> None:
    try:
        subprocess.run(argv, check=True, capture_output=True, text=True, timeout=20)
    except subprocess.CalledProcessError as exc:
        raise LabError(f"{' '.join(argv)}: {exc.stderr.strip() or exc.returncode}") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"{' '.join(argv)}: {exc}") from None


def netns_available() -> str | None:
    """None when namespaces can be used here, else why not."""
    if os.geteuid() != 0:
        return "not root"
    missing = [tool for tool in ("ip", "iptables") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        _run("ip", "netns", "add", probe)
        _run("ip", "netns", "del", probe)
    except LabError as exc:
        return f"ip netns does not work: {exc}"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _delete_namespaces(names: list[str]) -> None:
    for name in names:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def remove_stale_namespaces() -> list[str]:
    """Delete lab namespaces whose process is gone; return their names."""
    try:
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    removed = []
    for name in (line.split()[0] for line in out.splitlines() if line.strip()):
        match = re.fullmatch(re.escape(PREFIX) + r"(\d+)-\w+", name)
        if match and not _pid_alive(int(match.group(1))):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
            removed.append(name)
    return removed


class NetnsTopology(Topology):
    mode = "netns"
    client_ip = CLIENT_NET + "1"

    def __init__(self) -> None:
        super().__init__()
        pid, n = os.getpid(), next(_instances)
        self.names = {role: f"{PREFIX}{pid}-{n}{role}" for role in ("cli", "cen", "srv")}
        short = f"ol{pid % 100000}{n}"
        self.links = {"cli": short + "c0", "cen-cli": short + "c1", "cen-srv": short + "s1", "srv": short + "s0"}
        self._fds: dict[str, int] = {}
        self._server_ips: set[int] = set()

    # -- building and tearing down -------------------------------------------------------

    async def start(self) -> None:
        remove_stale_namespaces()
        for name in self.names.values():
            _run("ip", "netns", "add", name)
            self._fds[name] = os.open(f"/run/netns/{name}", os.O_RDONLY)
        cli, cen, srv = self.names["cli"], self.names["cen"], self.names["srv"]
        links = self.links
        pairs = ((links["cli"], cli, links["cen-cli"], cen), (links["srv"], srv, links["cen-srv"], cen))
        for a, a_ns, b, b_ns in pairs:
            _run("ip", "link", "add", a, "type", "veth", "peer", "name", b)
            _run("ip", "link", "set", a, "netns", a_ns)
            _run("ip", "link", "set", b, "netns", b_ns)
        for ns, link, address in ((cli, links["cli"], CLIENT_NET + "1"), (cen, links["cen-cli"], CLIENT_NET + ROUTER),
                                  (cen, links["cen-srv"], SERVER_NET + ROUTER)):
            _run("ip", "-n", ns, "addr", "add", address + "/24", "dev", link)
            _run("ip", "-n", ns, "link", "set", link, "up")
        _run("ip", "-n", srv, "link", "set", links["srv"], "up")
        for ns in (cli, cen, srv):
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "-n", cli, "route", "add", "default", "via", CLIENT_NET + ROUTER)
        _run("ip", "-n", srv, "route", "add", "default", "via", SERVER_NET + ROUTER, "dev", links["srv"], "onlink")
        _run("ip", "netns", "exec", cen, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        _run("ip", "netns", "exec", cen, "iptables", "-t", "nat", "-A", "PREROUTING", "-i", links["cen-cli"],
             "-p", "tcp", "-j", "REDIRECT", "--to-ports", str(MIDDLEBOX_PORT))
        await self._start_middlebox()

    async def _start_middlebox(self) -> None:
        with self._entered("cen"):
            listening = socket.socket()
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(("0.0.0.0", MIDDLEBOX_PORT))
        listening.listen(512)
        listening.setblocking(False)
        self.middlebox = Middlebox(self.censor_socket, original_destination)
        await self.middlebox.start(listening)

    async def close(self) -> None:
        try:
            if self.middlebox is not None:
                await self.middlebox.close()
        finally:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            # In one thread, so that a cancelled close still deletes every namespace.
            await asyncio.to_thread(_delete_namespaces, list(self.names.values()))

    # -- sockets in a namespace ----------------------------------------------------------

    @contextlib.contextmanager
    def _entered(self, role: str) -> Iterator[None]:
        root = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            _setns(self._fds[self.names[role]])
            try:
                yield
            finally:
                _setns(root)
        finally:
            os.close(root)

    def server_context(self):
        return self._entered("srv")

    def server_ip(self, number: int) -> str:
        if not 1 <= number <= 250:
            raise LabError(f"server number {number} out of range")
        if number not in self._server_ips:
            _run("ip", "-n", self.names["srv"], "addr", "add", f"{SERVER_NET}{number}/24", "dev", self.links["srv"])
            self._server_ips.add(number)
        return f"{SERVER_NET}{number}"

    def client_socket(self) -> socket.socket:
        with self._entered("cli"):
            sock = socket.socket()
        sock.bind((self.client_ip, 0))
        return sock

    def censor_socket(self) -> socket.socket:
        with self._entered("cen"):
            return socket.socket()

    def first_hop(self, destination: Endpoint) -> tuple[str, int]:
        return destination.ip, destination.port

    def capture_spec(self, server_ports) -> CaptureSpec:
        ports = " or ".join(f"port {p}" for p in sorted(set(server_ports))) or "portrange 1-65535"
        return CaptureSpec(self.names["cli"], self.links["cli"], f"tcp and ({ports})")
