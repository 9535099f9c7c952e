"""Forward policy: which destinations a tunnelled client may reach. Default deny.

A destination is allowed only if its port passes the port rules and its (resolved) IP
is a public unicast address that is not one of the server's own listening endpoints.
``allow_bogons`` lifts the address rule (loopback tests, private deployments). These are
the server-wide rules; each client's traffic rules (``core.trafficrules``) apply on top.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ..errors import ForwardReason


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: ForwardReason

    @classmethod
    def allow(cls) -> Decision:
        return cls(True, ForwardReason.ALLOWED)

    @classmethod
    def deny(cls, reason: ForwardReason) -> Decision:
        return cls(False, reason)


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Where the kernel sends a connection to 0.0.0.0 or :: (Linux: the loopback address).
_LOOPBACK = {4: ipaddress.ip_address("127.0.0.1"), 6: ipaddress.ip_address("::1")}


def canonical_ip(ip: IPAddress) -> IPAddress:
    """IPv4-mapped IPv6 addresses compare as the IPv4 address they carry."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


#: psiphond's bogon list (psiphon/common/net.go), some of which Python's ``is_global`` calls
#: global: 6to4 (the whole prefix) and its relay anycast, Teredo, TEST-NETs, discard.
PSIPHON_BOGONS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "0.0.0.0/8", "169.254.0.0/16",
    "192.0.0.0/24", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "192.88.99.0/24",
    "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32", "100.64.0.0/10",
    "::/128", "::1/128", "100::/64", "2001::/23", "2001:2::/48", "2001:db8::/32", "2001::/32",
    "fc00::/7", "fe80::/10", "ff00::/8", "2002::/16"))
#: The well-known NAT64 prefix: such an address is as reachable as the IPv4 address it
#: carries. The local-use prefix 64:ff9b:1::/48 (RFC 8215) may embed IPv4 at several
#: positions and is never global: it is a bogon outright.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"),)
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")


def is_bogon(ip: IPAddress) -> bool:
    """psiphond's bogons, and whatever else Python does not call global unicast; a NAT64
    address is judged by the IPv4 address it carries."""
    ip = canonical_ip(ip)
    if isinstance(ip, ipaddress.IPv6Address) and ip in _LOCAL_NAT64:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and any(ip in net for net in _NAT64):
        return is_bogon(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if any(ip.version == net.version and ip in net for net in PSIPHON_BOGONS):
        return True
    return (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast
            or ip.is_unspecified or ip.is_reserved or not ip.is_global)


@dataclass(frozen=True)
class ForwardPolicy:
    allow_bogons: bool = False
    allow_ports: frozenset[int] = frozenset()       # empty: every port
    disallow_ports: frozenset[int] = frozenset()
    own_endpoints: frozenset[tuple[str, int]] = frozenset()
    _wildcard_ports: frozenset[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        normalized = frozenset((str(canonical_ip(ipaddress.ip_address(ip))), port)
                               for ip, port in self.own_endpoints)
        object.__setattr__(self, "own_endpoints", normalized)
        object.__setattr__(self, "_wildcard_ports",  # listeners on every address (0.0.0.0, ::)
                           frozenset(port for ip, port in normalized if ipaddress.ip_address(ip).is_unspecified))

    def check_port(self, port: int) -> Decision:
        if not 1 <= port <= 65535:
            return Decision.deny(ForwardReason.INVALID_PORT)
        if port in self.disallow_ports:
            return Decision.deny(ForwardReason.PORT_DISALLOWED)
        if self.allow_ports and port not in self.allow_ports:
            return Decision.deny(ForwardReason.PORT_NOT_ALLOWED)
        return Decision.allow()

    def reaches_own_listener(self, ip: IPAddress, port: int) -> bool:
        """Would a connection to ``ip``:``port`` (canonical) arrive at the server's own listener?

        Only the addresses it listens on count, and the two ways to reach a listener by
        another address: a connection to 0.0.0.0 or :: goes to the loopback address, and
        a listener on every address takes connections to any loopback address. The same
        port on another address is someone else's (e.g. 127.0.0.1:P when the server
        listens on 127.0.0.2:P)."""
        if ip.is_unspecified:
            ip = _LOOPBACK[ip.version]
        return (str(ip), port) in self.own_endpoints or (port in self._wildcard_ports and ip.is_loopback)

    def check(self, ip_text: str, port: int) -> Decision:
        """A TCP destination: the port rules, then ``check_address``."""
        decision = self.check_port(port)
        if not decision.allowed:
            return decision
        return self.check_address(ip_text, port)

    def check_address(self, ip_text: str, port: int) -> Decision:
        """The address rules alone (UDP uses these; its ports are the traffic rules' job)."""
        if not 0 <= port <= 65535:
            return Decision.deny(ForwardReason.INVALID_PORT)
        try:
            ip = canonical_ip(ipaddress.ip_address(ip_text.split("%", 1)[0]))
        except ValueError:
            return Decision.deny(ForwardReason.NOT_AN_IP_ADDRESS)
        if self.reaches_own_listener(ip, port):
            return Decision.deny(ForwardReason.OWN_PORT)
        if not self.allow_bogons and is_bogon(ip):
            return Decision.deny(ForwardReason.NON_PUBLIC_DESTINATION)
        return Decision.allow()
