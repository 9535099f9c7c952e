"""Traffic rules, Psiphon's model (``TrafficRulesFilename``): parse, select, check. Pure.

The file holds ``DefaultRules`` and an ordered list ``FilteredRules`` of
``{Filter, ExceptFilter, Rules}``. For one client the first filtered rule whose Filter
matches (and whose ExceptFilter does not) overrides the fields it sets; everything else
comes from DefaultRules and then from Psiphon's defaults (``DEFAULTS``).

Filters match on what the server knows about the client: its tunnel protocol and GeoIP
data from the start, its handshake parameters (client version, ...) once the API
handshake completed; conditions that need the handshake never match before it.

Forward checks (``EffectiveRules.permits``), in order: a disallowed port or subnet or
ASN denies; then a port in the allowed list (or any port when no list is set) allows;
then an allowed subnet or ASN allows; anything else is denied. Port lists are JSON
arrays of ports and ``[low, high]`` ranges. Counts and timeouts of 0 mean "no limit".
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, fields, replace
from collections.abc import Callable, Mapping
from typing import Any

from ..configtools import Checker
from ..errors import ConfigError, ForwardReason

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
PortList = tuple[tuple[int, int], ...]

# -- field tables: (JSON key, attribute, kind) -------------------------------------------

RATE_FIELDS = (
    ("ReadUnthrottledBytes", "read_unthrottled_bytes", "count"),
    ("ReadBytesPerSecond", "read_bytes_per_second", "count"),
    ("WriteUnthrottledBytes", "write_unthrottled_bytes", "count"),
    ("WriteBytesPerSecond", "write_bytes_per_second", "count"),
    ("CloseAfterExhausted", "close_after_exhausted", "bool"),
    ("EstablishmentReadBytesPerSecond", "establishment_read_bytes_per_second", "count"),
    ("EstablishmentWriteBytesPerSecond", "establishment_write_bytes_per_second", "count"),
    ("UnthrottleFirstTunnelOnly", "unthrottle_first_tunnel_only", "bool"),
)
RULE_FIELDS = (
    ("DialTCPPortForwardTimeoutMilliseconds", "dial_tcp_timeout_ms", "count"),
    ("IdleTCPPortForwardTimeoutMilliseconds", "idle_tcp_timeout_ms", "count"),
    ("IdleUDPPortForwardTimeoutMilliseconds", "idle_udp_timeout_ms", "count"),
    ("MaxTCPDialingPortForwardCount", "max_tcp_dialing", "count"),
    ("MaxTCPPortForwardCount", "max_tcp", "count"),
    ("MaxUDPPortForwardCount", "max_udp", "count"),
    ("AllowTCPPorts", "allow_tcp_ports", "ports"),
    ("DisallowTCPPorts", "disallow_tcp_ports", "ports"),
    ("AllowUDPPorts", "allow_udp_ports", "ports"),
    ("DisallowUDPPorts", "disallow_udp_ports", "ports"),
    ("AllowSubnets", "allow_subnets", "subnets"),
    ("DisallowSubnets", "disallow_subnets", "subnets"),
    ("AllowASNs", "allow_asns", "strings"),
    ("DisallowASNs", "disallow_asns", "strings"),
    ("DisableDiscovery", "disable_discovery", "bool"),
)
FILTER_FIELDS = (
    ("TunnelProtocols", "tunnel_protocols", "strings"),
    ("Regions", "regions", "strings"),
    ("ISPs", "isps", "strings"),
    ("ASNs", "asns", "strings"),
    ("Cities", "cities", "strings"),
    ("APIProtocol", "api_protocol", "string"),
    ("HandshakeParameters", "handshake_parameters", "param_map"),
    ("AuthorizedAccessTypes", "authorized_access_types", "strings"),
    ("ActiveAuthorizationIDs", "active_authorization_ids", "strings"),
    ("AuthorizationsRevoked", "authorizations_revoked", "bool"),
    ("ProviderIDs", "provider_ids", "strings"),
    ("MinClientVersion", "min_client_version", "count"),
    ("MaxClientVersion", "max_client_version", "count"),
)

#: Psiphon's values for fields no rule sets (trafficRules.go).
DEFAULTS = {
    "dial_tcp_timeout_ms": 10000, "idle_tcp_timeout_ms": 30000, "idle_udp_timeout_ms": 30000,
    "max_tcp_dialing": 64, "max_tcp": 512, "max_udp": 32,
}


@dataclass(frozen=True)
class RateLimits:
    """Bytes per second each way (0 = unlimited) after an unthrottled allowance. None = unset."""

    read_unthrottled_bytes: int | None = None
    read_bytes_per_second: int | None = None
    write_unthrottled_bytes: int | None = None
    write_bytes_per_second: int | None = None
    close_after_exhausted: bool | None = None
    establishment_read_bytes_per_second: int | None = None
    establishment_write_bytes_per_second: int | None = None
    unthrottle_first_tunnel_only: bool | None = None


@dataclass(frozen=True)
class Rules:
    """One ``Rules`` object of the file; None = not set here."""

    rate_limits: RateLimits = field(default_factory=RateLimits)
    dial_tcp_timeout_ms: int | None = None
    idle_tcp_timeout_ms: int | None = None
    idle_udp_timeout_ms: int | None = None
    max_tcp_dialing: int | None = None
    max_tcp: int | None = None
    max_udp: int | None = None
    allow_tcp_ports: PortList | None = None
    disallow_tcp_ports: PortList | None = None
    allow_udp_ports: PortList | None = None
    disallow_udp_ports: PortList | None = None
    allow_subnets: tuple[IPNetwork, ...] | None = None
    disallow_subnets: tuple[IPNetwork, ...] | None = None
    allow_asns: frozenset[str] | None = None
    disallow_asns: frozenset[str] | None = None
    disable_discovery: bool | None = None

    def override_with(self, other: Rules) -> Rules:
        """These rules with every field ``other`` sets taken from ``other``."""
        changes = {f.name: getattr(other, f.name) for f in fields(self)
                   if f.name != "rate_limits" and getattr(other, f.name) is not None}
        rates = {f.name: getattr(other.rate_limits, f.name) for f in fields(RateLimits)
                 if getattr(other.rate_limits, f.name) is not None}
        return replace(self, rate_limits=replace(self.rate_limits, **rates), **changes)


@dataclass(frozen=True)
class ClientFacts:
    """What the server knows about a client when it selects its rules."""

    tunnel_protocol: str
    region: str = "None"
    city: str = "None"
    isp: str = "None"
    asn: str = "None"
    handshake_completed: bool = False
    handshake_params: Mapping[str, Any] = field(default_factory=dict)
    api_protocol: str = "ssh"

    @property
    def client_version(self) -> int | None:
        text = self.handshake_params.get("client_version")
        return int(text) if isinstance(text, str) and text.isdigit() and len(text) < 19 else None


@dataclass(frozen=True)
class Filter:
    tunnel_protocols: frozenset[str] | None = None
    regions: frozenset[str] | None = None
    isps: frozenset[str] | None = None
    asns: frozenset[str] | None = None
    cities: frozenset[str] | None = None
    api_protocol: str | None = None
    handshake_parameters: tuple[tuple[str, frozenset[str]], ...] | None = None
    authorized_access_types: frozenset[str] | None = None
    active_authorization_ids: frozenset[str] | None = None
    authorizations_revoked: bool | None = None
    provider_ids: frozenset[str] | None = None
    min_client_version: int | None = None
    max_client_version: int | None = None

    def matches(self, client: ClientFacts) -> bool:
        for value, known in ((self.tunnel_protocols, client.tunnel_protocol), (self.regions, client.region),
                             (self.isps, client.isp), (self.asns, client.asn), (self.cities, client.city)):
            if value and known not in value:
                return False
        if not self._needs_handshake():
            return True
        return client.handshake_completed and self._handshake_matches(client)

    def _needs_handshake(self) -> bool:
        return any(v is not None for v in (
            self.api_protocol, self.handshake_parameters, self.authorized_access_types,
            self.active_authorization_ids, self.authorizations_revoked, self.provider_ids,
            self.min_client_version, self.max_client_version))

    def _handshake_matches(self, client: ClientFacts) -> bool:
        if self.api_protocol is not None and self.api_protocol != client.api_protocol:
            return False
        for name, allowed in self.handshake_parameters or ():
            if client.handshake_params.get(name) not in allowed:
                return False
        # onehop has no authorizations or in-proxy providers: filters on them never match,
        # except "AuthorizationsRevoked": false (no authorization was revoked).
        if self.authorized_access_types or self.active_authorization_ids or self.provider_ids \
                or self.authorizations_revoked:
            return False
        version = client.client_version
        if self.min_client_version is not None and (version is None or version < self.min_client_version):
            return False
        return self.max_client_version is None or (version is not None and version <= self.max_client_version)


@dataclass(frozen=True)
class FilteredRules:
    filter: Filter
    rules: Rules
    except_filter: Filter | None = None

    def applies_to(self, client: ClientFacts) -> bool:
        if not self.filter.matches(client):
            return False
        return self.except_filter is None or not self.except_filter.matches(client)


def port_in(ports: PortList, port: int) -> bool:
    return any(low <= port <= high for low, high in ports)


@dataclass(frozen=True)
class EffectiveRules:
    """The rules one client gets: every field resolved. Times in seconds."""

    read_unthrottled_bytes: int = 0
    read_bytes_per_second: int = 0
    write_unthrottled_bytes: int = 0
    write_bytes_per_second: int = 0
    close_after_exhausted: bool = False
    dial_tcp_timeout: float = 10.0
    idle_tcp_timeout: float = 30.0
    idle_udp_timeout: float = 30.0
    max_tcp_dialing: int = 64
    max_tcp: int = 512
    max_udp: int = 32
    allow_tcp_ports: PortList | None = None
    disallow_tcp_ports: PortList = ()
    allow_udp_ports: PortList | None = None
    disallow_udp_ports: PortList = ()
    allow_subnets: tuple[IPNetwork, ...] = ()
    disallow_subnets: tuple[IPNetwork, ...] = ()
    allow_asns: frozenset[str] = frozenset()
    disallow_asns: frozenset[str] = frozenset()
    disable_discovery: bool = False

    def permits(self, kind: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int,
                asn: str = "None") -> tuple[bool, ForwardReason]:
        """(allowed, reason) for a ``kind`` ('tcp' or 'udp') forward to ``ip``:``port``."""
        allow_ports = self.allow_tcp_ports if kind == "tcp" else self.allow_udp_ports
        disallow_ports = self.disallow_tcp_ports if kind == "tcp" else self.disallow_udp_ports
        if port_in(disallow_ports, port):
            return False, (ForwardReason.RULES_TCP_PORT_DISALLOWED if kind == "tcp"
                           else ForwardReason.RULES_UDP_PORT_DISALLOWED)
        if any(ip in net for net in self.disallow_subnets if net.version == ip.version):
            return False, ForwardReason.RULES_SUBNET_DISALLOWED
        if asn in self.disallow_asns:
            return False, ForwardReason.RULES_ASN_DISALLOWED
        if allow_ports is None or port_in(allow_ports, port):
            return True, ForwardReason.ALLOWED
        if any(ip in net for net in self.allow_subnets if net.version == ip.version) or asn in self.allow_asns:
            return True, ForwardReason.ALLOWED
        return False, (ForwardReason.RULES_TCP_PORT_NOT_ALLOWED if kind == "tcp"
                       else ForwardReason.RULES_UDP_PORT_NOT_ALLOWED)


def _seconds(ms: int) -> float:
    return ms / 1000.0


def resolve(rules: Rules, client: ClientFacts) -> EffectiveRules:
    """Fill unset fields with Psiphon's defaults; apply the establishment and first-tunnel rules."""

    def get(name: str) -> Any:
        value = getattr(rules, name)
        return DEFAULTS[name] if value is None else value
    rates = rules.rate_limits
    read_rate, write_rate = rates.read_bytes_per_second or 0, rates.write_bytes_per_second or 0
    if not client.handshake_completed:
        read_rate = rates.establishment_read_bytes_per_second or read_rate
        write_rate = rates.establishment_write_bytes_per_second or write_rate
    unthrottled = (rates.read_unthrottled_bytes or 0, rates.write_unthrottled_bytes or 0)
    if rates.unthrottle_first_tunnel_only and client.handshake_params.get("established_tunnels_count", "0") != "0":
        unthrottled = (0, 0)
    return EffectiveRules(
        read_unthrottled_bytes=unthrottled[0], read_bytes_per_second=read_rate,
        write_unthrottled_bytes=unthrottled[1], write_bytes_per_second=write_rate,
        close_after_exhausted=bool(rates.close_after_exhausted),
        dial_tcp_timeout=_seconds(get("dial_tcp_timeout_ms")),
        idle_tcp_timeout=_seconds(get("idle_tcp_timeout_ms")),
        idle_udp_timeout=_seconds(get("idle_udp_timeout_ms")),
        max_tcp_dialing=get("max_tcp_dialing"), max_tcp=get("max_tcp"), max_udp=get("max_udp"),
        allow_tcp_ports=rules.allow_tcp_ports, disallow_tcp_ports=rules.disallow_tcp_ports or (),
        allow_udp_ports=rules.allow_udp_ports, disallow_udp_ports=rules.disallow_udp_ports or (),
        allow_subnets=rules.allow_subnets or (), disallow_subnets=rules.disallow_subnets or (),
        allow_asns=rules.allow_asns or frozenset(), disallow_asns=rules.disallow_asns or frozenset(),
        disable_discovery=bool(rules.disable_discovery),
    )


@dataclass(frozen=True)
class TrafficRulesSet:
    default_rules: Rules = field(default_factory=Rules)
    filtered_rules: tuple[FilteredRules, ...] = ()

    def select(self, client: ClientFacts) -> EffectiveRules:
        rules = self.default_rules
        for filtered in self.filtered_rules:
            if filtered.applies_to(client):
                rules = rules.override_with(filtered.rules)
                break
        return resolve(rules, client)


# -- parsing ----------------------------------------------------------------------------

def _count_check(value: int) -> str | None:
    return None if value >= 0 else "must not be negative"


def _strings_check(value: list[Any]) -> str | None:
    return None if all(isinstance(v, str) for v in value) else "must be a list of strings"


def _parse_ports(value: list[Any]) -> tuple[PortList | None, str | None]:
    ranges = []
    for item in value:
        if isinstance(item, int) and not isinstance(item, bool):
            low = high = item
        elif isinstance(item, list) and len(item) == 2 and all(
                isinstance(p, int) and not isinstance(p, bool) for p in item):
            low, high = item
        else:
            return None, f"{item!r} is neither a port nor a [low, high] range"
        if not 0 <= low <= high <= 65535:
            return None, f"{item!r} is not a port or an ordered range within 0-65535"
        ranges.append((low, high))
    return tuple(sorted(ranges)), None


def _parse_subnets(value: list[Any]) -> tuple[tuple[IPNetwork, ...] | None, str | None]:
    nets = []
    for item in value:
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except (TypeError, ValueError):
            return None, f"{item!r} is not a subnet in CIDR notation"
    return tuple(nets), None


def _parse_param_map(value: dict[str, Any]) -> tuple[Any, str | None]:
    pairs = []
    for name, allowed in sorted(value.items()):
        if not isinstance(allowed, list) or not all(isinstance(v, str) for v in allowed):
            return None, f"{name}: allowed values must be a list of strings"
        pairs.append((name, frozenset(allowed)))
    return tuple(pairs), None


_KIND_TYPES = {"count": int, "bool": bool, "string": str, "strings": list, "ports": list,
               "subnets": list, "param_map": dict}


def _take(c: Checker, key: str, kind: str) -> Any:
    """One optional field of ``kind``; problems go to the checker, the result may be None."""
    checks: dict[str, Callable[[Any], str | None]] = {"count": _count_check, "strings": _strings_check}
    check = checks.get(kind)
    value = c.take(key, _KIND_TYPES[kind], None, check)
    if value is None:
        return None
    parsers: dict[str, Callable[[Any], tuple[Any, str | None]]] = {
        "ports": _parse_ports, "subnets": _parse_subnets, "param_map": _parse_param_map}
    parser = parsers.get(kind)
    if parser is not None:
        value, problem = parser(value)
        if problem:
            c.problem(key, problem)
        return value
    return frozenset(value) if kind == "strings" else value


def _section(c: Checker, key: str) -> Checker | None:
    """A nested object as its own checker (prefix ``parent.key.``), or None if absent."""
    raw = c.take(key, dict, None)
    return None if raw is None else Checker(raw, c.source, f"{c.prefix}{key}.")


def _finish(parent: Checker, child: Checker) -> None:
    child.reject_unknown()
    parent.problems.extend(child.problems)


def parse_rules(c: Checker, key: str) -> Rules:
    section = _section(c, key)
    if section is None:
        return Rules()
    values = {attr: _take(section, name, kind) for name, attr, kind in RULE_FIELDS}
    rates = RateLimits()
    rate_section = _section(section, "RateLimits")
    if rate_section is not None:
        rates = RateLimits(**{attr: _take(rate_section, name, kind) for name, attr, kind in RATE_FIELDS})
        _finish(section, rate_section)
    _finish(c, section)
    return Rules(rate_limits=rates, **values)


def parse_filter(c: Checker, key: str) -> Filter | None:
    section = _section(c, key)
    if section is None:
        return None
    found = Filter(**{attr: _take(section, name, kind) for name, attr, kind in FILTER_FIELDS})
    _finish(c, section)
    return found


def parse_traffic_rules(raw: Mapping[str, Any], source: str = "") -> TrafficRulesSet:
    """Validate a traffic rules document; ConfigError lists every problem with its key."""
    c = Checker(raw, source)
    default = parse_rules(c, "DefaultRules")
    filtered = []
    items = c.take("FilteredRules", list, [])
    for i, item in enumerate(items):
        key = f"FilteredRules[{i}]"
        if not isinstance(item, dict):
            c.problem(key, "expected an object")
            continue
        entry = Checker(item, source, f"{key}.")
        flt = parse_filter(entry, "Filter")  # absent: matches every client, as in Psiphon
        except_filter = parse_filter(entry, "ExceptFilter")
        rules = parse_rules(entry, "Rules")
        _finish(c, entry)
        filtered.append(FilteredRules(flt or Filter(), rules, except_filter))
    c.reject_unknown()
    if c.problems:
        raise ConfigError(c.problems, source)
    return TrafficRulesSet(default, tuple(filtered))
