"""Small fakes for the server's seams (``onehop.server.seams``): a server process, a
session as its API handler and forwards see it, an SSH connection and a transport.

Each implements one Protocol with plain attributes and records what it was asked, so a
unit test can drive ``APIHandler``, ``ClientSession`` or ``PortForwards`` without
sockets or a running server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Sequence

from onehop.core.trafficrules import ClientFacts, EffectiveRules
from onehop.server.geoip import GeoIPData
from onehop.server.policy import Decision, ForwardPolicy
from onehop.server.psinet import PsinetSnapshot
from onehop.server.tunnelstate import HandshakeState, TunnelCounters

GERMANY = GeoIPData("DE", "Berlin", "Example_ISP", "64500", "Example_Org")
NOWHERE = GeoIPData()


class FakeGeo:
    """``seams.GeoLookup``: a table of addresses; anything else is unknown."""

    def __init__(self, table: dict[str, GeoIPData] | None = None) -> None:
        self.table = table or {}

    def lookup(self, ip: str) -> GeoIPData:
        return self.table.get(ip, NOWHERE)


class FakeEvents:
    """``seams.APIEvents`` and ``seams.TunnelEvents``: every event, in order."""

    def __init__(self) -> None:
        self.unique_users: list[dict] = []
        self.records: list[tuple[str, dict]] = []
        self.tunnels: list[dict] = []

    def unique_user(self, fields: dict) -> None:
        self.unique_users.append(fields)

    def client_records(self, records: list[tuple[str, dict]]) -> None:
        self.records.extend(records)

    def server_tunnel(self, fields: dict) -> None:
        self.tunnels.append(fields)


class FakeAPI:
    """``seams.APIResponder``: answers every request with its name."""

    def __init__(self) -> None:
        self.requests: list[tuple[Any, str, bytes]] = []

    async def handle(self, client: Any, name: str, payload: bytes) -> bytes | None:
        self.requests.append((client, name, payload))
        return name.encode()


@dataclass
class FakeHost:
    """``seams.SessionHost`` and ``seams.APIHost`` in one: a server process's answers."""

    ssh_credentials: tuple[str, str] = ("user", "secret")
    geoip: FakeGeo = field(default_factory=FakeGeo)
    forward_policy: Any = field(default_factory=lambda: ForwardPolicy(allow_bogons=True))
    dns_resolver: tuple[str, int] | None = ("127.0.0.53", 53)
    api: FakeAPI = field(default_factory=FakeAPI)
    events: FakeEvents = field(default_factory=FakeEvents)
    rules_for: Callable[[ClientFacts], EffectiveRules] = lambda facts: EffectiveRules()
    udpgw_address: tuple[str, int] = ("127.0.0.1", 7300)
    psinet_snapshot: PsinetSnapshot = field(default_factory=PsinetSnapshot)
    discoverable: list[str] = field(default_factory=list)
    own_entries: dict[str, str] = field(default_factory=dict)
    valid_tags: frozenset[str] = frozenset()
    facts_seen: list[ClientFacts] = field(default_factory=list)
    registered: dict[str, Callable[[], None]] = field(default_factory=dict)
    clients: set = field(default_factory=set)
    irregulars: list[tuple[str, str, str]] = field(default_factory=list)

    def select_rules(self, facts: ClientFacts) -> EffectiveRules:
        self.facts_seen.append(facts)
        return self.rules_for(facts)

    def is_udpgw_address(self, host: str, port: int) -> bool:
        return (host, port) == self.udpgw_address

    def register_session(self, session_id: str, close: Callable[[], None]) -> None:
        self.registered[session_id] = close

    def unregister_session(self, session_id: str, close: Callable[[], None]) -> None:
        if self.registered.get(session_id) == close:
            del self.registered[session_id]

    def client_opened(self, client: Any) -> None:
        self.clients.add(client)

    def client_closed(self, client: Any) -> None:
        self.clients.discard(client)

    def irregular(self, listener: str, reason: str, peer_ip: str) -> None:
        self.irregulars.append((listener, reason, peer_ip))

    def discover(self, client_ip: str) -> list[str]:
        return list(self.discoverable)

    def own_server_entry(self, tag: str) -> str | None:
        return self.own_entries.get(tag)

    def invalid_server_entry_tags(self, tags: list) -> list[str]:
        return [t for t in tags if t not in self.valid_tags]


@dataclass
class FakeAPIClient:
    """``seams.APIClient``: the session an API request came over."""

    peer_address: tuple[str, int] = ("198.51.100.7", 50123)
    tunnel_protocol: str = "OSSH"
    ossh_prefix: str | None = None
    session_id: str | None = "ab" * 16
    started: float = 1_700_000_000.0
    geoip: GeoIPData = GERMANY
    handshake: HandshakeState | None = None
    rules: EffectiveRules = field(default_factory=EffectiveRules)
    counters: TunnelCounters = field(default_factory=TunnelCounters)
    split_regions: frozenset[str] | None = None
    closed: bool = False

    def complete_handshake(self, state: HandshakeState, split_regions: frozenset[str]) -> None:
        self.handshake, self.split_regions = state, split_regions

    def admit_records(self, valid: Sequence, invalid: int, skipped: int) -> list:
        return self.counters.records.admit(valid, invalid, skipped)

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeForwardingSession:
    """``seams.UdpgwSession``: limits, a destination verdict per port, accounting."""

    rules: EffectiveRules = field(default_factory=EffectiveRules)
    counters: TunnelCounters = field(default_factory=TunnelCounters)
    closing: bool = False
    refused_ports: frozenset[int] = frozenset()
    split_ips: frozenset[str] = frozenset()
    dns_resolver: tuple[str, int] | None = None
    downstream_charged: list[int] = field(default_factory=list)
    decisions: list[tuple[str, str, int]] = field(default_factory=list)

    def forward_decision(self, kind: str, ip: str, port: int, *, dns: bool = False) -> Decision:
        self.decisions.append((kind, ip, port))
        if port in self.refused_ports:
            return Decision.deny("refused by the test")
        return Decision.allow()

    def in_split_region(self, ip: str) -> bool:
        return ip in self.split_ips

    def charge_downstream(self, n: int) -> float:
        self.downstream_charged.append(n)
        return 0.0

    downstream_limited = False

    def udpgw_closed(self, channel: Any) -> None:
        pass


class FakeConn:
    """The part of an asyncssh server connection a session uses."""

    def __init__(self, peer: tuple[str, int] = ("198.51.100.7", 50123), tunnel_protocol: str = "OSSH",
                 ossh_prefix: str | None = None) -> None:
        self.extra = {"peername": peer, "tunnel_protocol": tunnel_protocol, "ossh_prefix": ossh_prefix}
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def close(self) -> None:
        self.closed = True


class FakeTransport:
    """A TCP transport that keeps what is written and whether reading is paused."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.paused = False
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def write_eof(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default
