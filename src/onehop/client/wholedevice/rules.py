"""The nftables table and the policy route of whole-device mode (Linux, root).

Everything onehop changes lives in one nftables table, ``inet onehop``, plus one
``ip rule``/``ip -6 rule`` (fwmark ``ROUTE_MARK`` looks up table ``ROUTE_TABLE``, whose
only route is ``local default dev lo``: how TPROXY gets locally sent UDP). Nothing
else on the machine is read or changed. ``ruleset`` is pure (a text for ``nft -f -``);
``install`` replaces any old copy atomically; ``remove`` is idempotent and is what a
normal exit, the next start and ``--whole-device --cleanup`` run.

What the table does:

* output, nat: every TCP connection not to a local address and not from one of the
  client's own sockets (``SO_MARK`` = ``OWN_MARK``) is redirected to the transparent
  listener (the original destination stays readable with ``SO_ORIGINAL_DST``);
* output, route: every such UDP datagram is marked ``ROUTE_MARK``, rerouted to ``lo``
  and, in prerouting, handed to the UDP relay by TPROXY (original destination intact);
* postrouting, filter (the kill switch): policy drop; only loopback, the client's own
  sockets, replies to inbound connections and IPv6 neighbour discovery leave. It sits
  in postrouting because only there is the output device the one after the redirects
  rerouted a packet; so forwarded traffic that no rule tunnels is dropped as well. A
  redirected SYN's MSS is raised to loopback's (the application computed it for its
  uplink, and 1460-byte segments on loopback cost a third of the throughput);
* with ``--share-lan IFACE``: the same redirections in prerouting for traffic from
  IFACE, and nothing from IFACE is forwarded;
* input: the listeners accept only what the rules redirected to them.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass

from ...errors import ConfigError, ConfigProblem, OnehopError

TABLE = "onehop"
FAMILY = "inet"
OWN_MARK = 0x6F68        # the client's own sockets
ROUTE_MARK = 0x6F69      # UDP on its way to the TPROXY relay
ROUTE_TABLE = 28521      # policy routing table (0x6f69)
RULE_PRIORITY = 28521
NFT_TIMEOUT = 20


class WholeDeviceError(OnehopError):
    """nft or ip failed while changing the rules."""


class WholeDeviceUnavailable(ConfigError):
    """Whole-device mode cannot run here; said in one line (``key: why; key: why``)."""

    def __str__(self) -> str:
        return "; ".join(str(p) for p in self.problems)


@dataclass(frozen=True)
class RuleSpec:
    tcp_port: int
    udp_port: int
    share_lan: str = ""
    ipv6: bool = True   # False: IPv6 is blocked (dropped), never sent directly


def _iface(name: str) -> str:
    return '"' + name + '"'


def ruleset(spec: RuleSpec) -> str:
    """The text for ``nft -f -``: create-then-delete makes the replacement atomic."""
    own, route, tcp, udp = f"0x{OWN_MARK:x}", f"0x{ROUTE_MARK:x}", spec.tcp_port, spec.udp_port
    lan = spec.share_lan
    v6_tcp = (f"meta nfproto ipv6 meta l4proto tcp redirect to :{tcp}" if spec.ipv6 else "")
    v6_udp_mark = "" if spec.ipv6 else "meta nfproto ipv6 return"
    pre_lan = ""
    nat_pre = ""
    forward = ""
    if lan:
        nat_pre = f"""
  chain lan_nat {{ type nat hook prerouting priority dstnat; policy accept;
    iifname {_iface(lan)} fib daddr type local return
    iifname {_iface(lan)} meta nfproto ipv4 meta l4proto tcp redirect to :{tcp}
    {"iifname " + _iface(lan) + " meta nfproto ipv6 meta l4proto tcp redirect to :" + str(tcp) if spec.ipv6 else ""}
  }}"""
        pre_lan = (f"iifname {_iface(lan)} fib daddr type != local meta nfproto ipv4 meta l4proto udp "
                   f"meta mark set {route} tproxy ip to :{udp}\n    ")
        if spec.ipv6:
            pre_lan += (f"iifname {_iface(lan)} fib daddr type != local meta nfproto ipv6 meta l4proto udp "
                        f"meta mark set {route} tproxy ip6 to :{udp}\n    ")
        forward = f"""
  chain lan_forward {{ type filter hook forward priority filter; policy accept;
    iifname {_iface(lan)} counter drop
  }}"""
    v6_tproxy = (f"meta nfproto ipv6 meta mark {route} meta l4proto udp tproxy ip6 to :{udp}"
                 if spec.ipv6 else "")
    return f"""table {FAMILY} {TABLE} {{}}
delete table {FAMILY} {TABLE}
table {FAMILY} {TABLE} {{
  chain out_nat {{ type nat hook output priority -100; policy accept;
    meta mark {own} return
    fib daddr type local return
    meta nfproto ipv4 meta l4proto tcp redirect to :{tcp}
    {v6_tcp}
  }}
  chain out_route {{ type route hook output priority mangle; policy accept;
    meta mark {own} return
    fib daddr type local return
    {v6_udp_mark}
    meta l4proto udp meta mark set {route}
  }}
  chain pre_tproxy {{ type filter hook prerouting priority mangle; policy accept;
    {pre_lan}meta nfproto ipv4 meta mark {route} meta l4proto udp tproxy ip to :{udp}
    {v6_tproxy}
  }}
  chain kill_switch {{ type filter hook postrouting priority filter; policy drop;
    oif lo tcp flags syn / syn,ack ct status dnat tcp option maxseg size set rt mtu
    meta mark {own} accept
    oif lo accept
    ct direction reply accept
    icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit }} ip6 hoplimit 255 accept
    counter comment "dropped: would have left the machine outside the tunnel"
  }}
  chain listeners {{ type filter hook input priority filter; policy accept;
    tcp dport {tcp} ct status dnat accept
    tcp dport {tcp} drop
    udp dport {udp} meta mark != {route} drop
  }}{nat_pre}{forward}
}}
"""


# -- running nft and ip ---------------------------------------------------------------------

def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=NFT_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WholeDeviceError(f"{argv[0]}: {exc}") from None


def preflight(share_lan: str = "") -> None:
    """Every reason whole-device mode cannot run here, at once, before anything changes."""
    problems = []
    if not sys_is_linux():
        problems.append(ConfigProblem("--whole-device", "needs Linux (nftables)"))
    elif os.geteuid() != 0:
        problems.append(ConfigProblem("--whole-device", "needs root (it changes the machine's firewall "
                                      "rules); run it with sudo"))
    else:
        for tool, package in (("nft", "nftables"), ("ip", "iproute2")):
            if shutil.which(tool) is None:
                problems.append(ConfigProblem("--whole-device", f"needs the `{tool}` command "
                                              f"(Debian/Ubuntu: apt-get install {package})"))
    if share_lan and not _interface_exists(share_lan):
        problems.append(ConfigProblem("--share-lan", f"no network interface named {share_lan!r} "
                                      "(see `ip link`)"))
    if problems:
        raise WholeDeviceUnavailable(problems)


def sys_is_linux() -> bool:
    import sys
    return sys.platform.startswith("linux")


def _interface_exists(name: str) -> bool:
    if not re.fullmatch(r"[A-Za-z0-9_.:@-]{1,15}", name):
        return False
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False


def ipv6_available() -> bool:
    return socket.has_ipv6 and os.path.exists("/proc/net/if_inet6")


def install(spec: RuleSpec) -> None:
    """Put the table and the policy route in place (replacing stale copies)."""
    _policy_route(add=True, ipv6=spec.ipv6)
    result = _run(["nft", "-f", "-"], ruleset(spec))
    if result.returncode != 0:
        _policy_route(add=False, ipv6=True)
        raise WholeDeviceError(f"nft refused the whole-device rules: {result.stderr.strip()}")


def table_present() -> bool:
    return _run(["nft", "list", "table", FAMILY, TABLE]).returncode == 0


def remove() -> bool:
    """Delete the table and the policy route; True if a table was there."""
    present = table_present()
    if present:
        result = _run(["nft", "delete", "table", FAMILY, TABLE])
        if result.returncode != 0 and table_present():
            raise WholeDeviceError(f"cannot delete nftables table {FAMILY} {TABLE}: {result.stderr.strip()}")
    _policy_route(add=False, ipv6=True)
    return present


def dropped_count() -> int:
    """Packets the kill switch dropped (the counter in ``kill_switch``)."""
    out = _run(["nft", "list", "chain", FAMILY, TABLE, "kill_switch"]).stdout
    match = re.search(r"counter packets (\d+)", out)
    return int(match.group(1)) if match else 0


MAX_STALE_RULES = 16


def _policy_route(*, add: bool, ipv6: bool) -> None:
    families = ["-4", "-6"] if ipv6 else ["-4"]
    for fam in families:
        if fam == "-6" and not ipv6_available():
            continue
        rule = ["ip", fam, "rule", "del", "fwmark", hex(ROUTE_MARK), "lookup", str(ROUTE_TABLE)]
        for _ in range(MAX_STALE_RULES):  # bounded: stale duplicates from crashed runs
            if _run(rule).returncode != 0:
                break
        _run(["ip", fam, "route", "flush", "table", str(ROUTE_TABLE)])
        if not add:
            continue
        default = "0.0.0.0/0" if fam == "-4" else "::/0"
        for argv in (["ip", fam, "route", "add", "local", default, "dev", "lo", "table", str(ROUTE_TABLE)],
                     ["ip", fam, "rule", "add", "fwmark", hex(ROUTE_MARK), "lookup", str(ROUTE_TABLE),
                      "priority", str(RULE_PRIORITY)]):
            result = _run(argv)
            if result.returncode != 0:
                raise WholeDeviceError(f"{' '.join(argv)}: {result.stderr.strip()}")
