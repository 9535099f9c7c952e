"""Forward policy: which destinations a tunnelled client may reach. Default deny.

A destination is allowed only if its port passes the port rules and its (resolved) IP
is a public unicast address that is not one of the server's own listening endpoints.
``allow_bogons`` lifts the address rule (loopback tests, private deployments). These are
the server-wide rules; each client's traffic rules (``core.trafficrules``) apply on top.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str

    @classmethod
    def allow(cls) -> "Decision":
        return cls(True, "allowed")

    @classmethod
    def deny(cls, reason: str) -> "Decision":
        return cls(False, reason)


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def canonical_ip(ip: IPAddress) -> IPAddress:
    """IPv4-mapped IPv6 addresses compare as the IPv4 address they carry."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_bogon(ip: IPAddress) -> bool:
    """Loopback, private, link-local, multicast, unspecified or reserved space."""
    ip = canonical_ip(ip)
    return (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast
            or ip.is_unspecified or ip.is_reserved or not ip.is_global)


@dataclass(frozen=True)
class ForwardPolicy:
    allow_bogons: bool = False
    allow_ports: frozenset[int] = frozenset()       # empty: every port
    disallow_ports: frozenset[int] = frozenset()
    own_endpoints: frozenset[tuple[str, int]] = frozenset()

    def __post_init__(self) -> None:
        normalized = frozenset((str(canonical_ip(ipaddress.ip_address(ip))), port)
                               for ip, port in self.own_endpoints)
        object.__setattr__(self, "own_endpoints", normalized)
        object.__setattr__(self, "_own_ports", frozenset(port for _, port in normalized))

    def check_port(self, port: int) -> Decision:
        if not 1 <= port <= 65535:
            return Decision.deny("invalid port")
        if port in self.disallow_ports:
            return Decision.deny("port disallowed")
        if self.allow_ports and port not in self.allow_ports:
            return Decision.deny("port not allowed")
        return Decision.allow()

    def check(self, ip_text: str, port: int) -> Decision:
        """A TCP destination: the port rules, then ``check_address``."""
        decision = self.check_port(port)
        if not decision.allowed:
            return decision
        return self.check_address(ip_text, port)

    def check_address(self, ip_text: str, port: int) -> Decision:
        """The address rules alone (UDP uses these; its ports are the traffic rules' job)."""
        if not 0 <= port <= 65535:
            return Decision.deny("invalid port")
        try:
            ip = canonical_ip(ipaddress.ip_address(ip_text.split("%", 1)[0]))
        except ValueError:
            return Decision.deny("not an IP address")
        if (str(ip), port) in self.own_endpoints:
            return Decision.deny("the server's own port")
        if port in self._own_ports and (ip.is_loopback or ip.is_unspecified):
            return Decision.deny("the server's own port")  # the listeners, by another address
        if not self.allow_bogons and is_bogon(ip):
            return Decision.deny("non-public destination")
        return Decision.allow()
