"""Namespaces for whole-device tests: a device that knows nothing of proxies, the world
it reaches only through a onehop server, and a LAN host behind the device.

::

    lan ns               device ns (client)                world ns (server, web, DNS, echo)
    10.200.4.2 --veth-- 10.200.4.1 | 10.200.1.2 --veth-- 10.200.1.1      10.200.3.1 (lo)
                                   | fd20::2             fd20::1         fd23::1   (lo)

Every namespace is named ``ohwd-<pid>-<role>``; the fixture deletes them (and with them
the veths and the device's nftables table) even when a test fails, and first deletes
those left by test processes that no longer exist. Tests skip when not root or without
``nft``, ``ip`` or ``tcpdump``, and fail instead under ONEHOP_CI=1.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PREFIX = "ohwd-"
DEVICE_IP, SERVER_IP, WEB_IP, LAN_IP, LAN_GW = "10.200.1.2", "10.200.1.1", "10.200.3.1", "10.200.4.2", "10.200.4.1"
DEVICE_IP6, SERVER_IP6, WEB_IP6 = "fd20::2", "fd20::1", "fd23::1"
PEERS = str(Path(__file__).with_name("peers.py"))
ONEHOP = [sys.executable, "-c", "import sys; from onehop.cli import main; sys.exit(main())"]


def unavailable() -> str | None:
    if os.geteuid() != 0:
        return "not root"
    missing = [t for t in ("ip", "nft", "tcpdump") if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed (Debian: nftables, iproute2, tcpdump)"
    return None


def require() -> None:
    why = unavailable()
    if why is not None:
        if os.environ.get("ONEHOP_CI"):
            pytest.fail(f"whole-device tests cannot run on CI: {why}")
        pytest.skip(f"whole-device tests need root, nft and tcpdump: {why}")


def sh(*argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {result.stderr.strip()}")
    return result


def _remove_stale() -> None:
    out = sh("ip", "netns", "list", check=False).stdout
    for name in (line.split()[0] for line in out.splitlines() if line.strip()):
        match = re.fullmatch(re.escape(PREFIX) + r"(\d+)-\w+", name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            sh("ip", "netns", "del", name, check=False)


class Net:
    def __init__(self, tmp: Path) -> None:
        pid = os.getpid()
        self.ns = {role: f"{PREFIX}{pid}-{role}" for role in ("dev", "wld", "lan")}
        short = f"wd{pid % 100000}"
        self.uplink, self.lan_link = short + "u", short + "l"
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []

    def build(self) -> None:
        dev, wld, lan = self.ns["dev"], self.ns["wld"], self.ns["lan"]
        for name in self.ns.values():
            sh("ip", "netns", "add", name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        veth_pairs = ((self.uplink, dev, self.uplink + "w", wld), (self.lan_link, dev, self.lan_link + "h", lan))
        for a, a_ns, b, b_ns in veth_pairs:
            sh("ip", "link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns", b_ns)
        addresses = ((dev, self.uplink, DEVICE_IP, DEVICE_IP6), (wld, self.uplink + "w", SERVER_IP, SERVER_IP6))
        for ns, link, v4, v6 in addresses:
            sh("ip", "-n", ns, "addr", "add", v4 + "/24", "dev", link)
            sh("ip", "-n", ns, "addr", "add", v6 + "/64", "dev", link, "nodad")
            sh("ip", "-n", ns, "link", "set", link, "up")
        sh("ip", "-n", dev, "addr", "add", LAN_GW + "/24", "dev", self.lan_link)
        sh("ip", "-n", dev, "link", "set", self.lan_link, "up")
        sh("ip", "-n", lan, "addr", "add", LAN_IP + "/24", "dev", self.lan_link + "h")
        sh("ip", "-n", lan, "link", "set", self.lan_link + "h", "up")
        sh("ip", "-n", wld, "addr", "add", WEB_IP + "/32", "dev", "lo")
        sh("ip", "-n", wld, "addr", "add", WEB_IP6 + "/128", "dev", "lo")
        sh("ip", "-n", dev, "route", "add", "default", "via", SERVER_IP)
        sh("ip", "-n", dev, "-6", "route", "add", "default", "via", SERVER_IP6)
        sh("ip", "-n", lan, "route", "add", "default", "via", LAN_GW)
        # Routes back, so that a leak would really work (and be seen):
        sh("ip", "-n", wld, "route", "add", "10.200.4.0/24", "via", DEVICE_IP)
        sh("ip", "netns", "exec", dev, "sysctl", "-qw", "net.ipv4.ip_forward=1")

    def start(self, role: str, *argv: str, log: str) -> subprocess.Popen:
        out = open(self.tmp / log, "wb")
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns[role], *argv], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        self.procs.append(proc)
        return proc

    def run(self, role: str, *argv: str, timeout: float = 25) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.ns[role], *argv, check=False, timeout=timeout)

    def peer(self, role: str, *argv: str) -> subprocess.CompletedProcess:
        return self.run(role, sys.executable, PEERS, *argv)

    def log(self, name: str) -> str:
        path = self.tmp / name
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(5)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        for name in self.ns.values():
            sh("ip", "netns", "del", name, check=False)


@pytest.fixture
def net(tmp_path):
    require()
    _remove_stale()
    lab = Net(tmp_path)
    try:
        lab.build()
        yield lab
    finally:
        lab.close()
