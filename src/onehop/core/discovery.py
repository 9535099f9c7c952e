"""Server discovery: which one server entry a handshake hands to a client.

Psiphon servers give each connecting client at most one other server, chosen from the
servers whose discovery window ``[start, end)`` contains now, so that no single client
(or censor posing as many) can enumerate the network. Two strategies, both reproducing
Psiphon's selections exactly:

* ``classic``: an HMAC of the client IP picks one of ~sqrt(N) buckets, the hour picks
  the server inside it (the legacy ``psi_ops_discovery`` algorithm).
* ``consistent`` (Psiphon's default): a consistent-hash ring with bounded loads
  (Psiphon-Labs/consistent over xxHash64) with N partitions, each server owning exactly
  one; the client IP picks the partition. No time component.

The per-set structures (:class:`ClassicBuckets`, :class:`ConsistentRing`) are immutable
and built once per discoverable set in O(N log N); a selection is O(1) apart from the
hashes. :class:`Discovery` rebuilds them only when now crosses a window boundary.
Time is always a parameter (aware ``datetime`` or Unix seconds).
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, UTC
from enum import StrEnum

from onehop.core.serverentry import parse_ip
from onehop.core.xxhash64 import xxhash64
from onehop.errors import DiscoveryReason, LocalProtocolError, UsageReason

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Moment = datetime | int


class Strategy(StrEnum):
    CLASSIC = "classic"
    CONSISTENT = "consistent"


def to_datetime(moment: Moment) -> datetime:
    """An aware UTC datetime from an aware datetime or integer Unix seconds."""
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise LocalProtocolError(UsageReason.NAIVE_DATETIME, "discovery times must be timezone-aware")
        return moment.astimezone(UTC)
    if isinstance(moment, int) and not isinstance(moment, bool):
        try:
            return _EPOCH + timedelta(seconds=moment)
        except OverflowError:
            raise LocalProtocolError(UsageReason.BAD_ARGUMENT, f"Unix time {moment} out of range") from None
    raise LocalProtocolError(UsageReason.BAD_ARGUMENT,
                             f"expected datetime or Unix seconds, got {type(moment).__name__}")


def unix_seconds(moment: Moment) -> int:
    """Whole Unix seconds (floor), as Go's ``time.Unix()``."""
    return (to_datetime(moment) - _EPOCH) // timedelta(seconds=1)


@dataclass(frozen=True)
class DiscoveryServer:
    """One discoverable server in database order; the window is ``[start, end)``."""

    ip_address: str
    encoded_entry: str
    window_start: datetime
    window_end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "window_start", to_datetime(self.window_start))
        object.__setattr__(self, "window_end", to_datetime(self.window_end))

    def discoverable_at(self, now: Moment) -> bool:
        return self.window_start <= to_datetime(now) < self.window_end


def discoverable(servers: Sequence[DiscoveryServer], now: Moment) -> tuple[DiscoveryServer, ...]:
    """The servers whose window contains ``now``, in database order."""
    at = to_datetime(now)
    return tuple(s for s in servers if s.window_start <= at < s.window_end)


def window_boundaries(servers: Sequence[DiscoveryServer], now: Moment) -> tuple[datetime | None, datetime | None]:
    """(latest boundary <= now, earliest boundary > now): the discoverable set is constant between."""
    at = to_datetime(now)
    edges = [t for s in servers for t in (s.window_start, s.window_end)]
    before = max((t for t in edges if t <= at), default=None)
    after = min((t for t in edges if t > at), default=None)
    return before, after


# ----------------------------------------------------------------------- client IPs

ClientIP = str | ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse_client_ip(client_ip: ClientIP) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(client_ip, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return client_ip
    parsed = parse_ip(client_ip)
    if parsed is None:
        raise LocalProtocolError(DiscoveryReason.INVALID_CLIENT_IP, "client IP is not an IP address")
    return parsed


def client_ip_text(client_ip: ClientIP) -> str:
    """Go's ``net.IP.String()``: IPv4 (also IPv4-mapped IPv6) dotted, IPv6 per RFC 5952."""
    ip = _parse_client_ip(client_ip)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def client_ip_key(client_ip: ClientIP) -> bytes:
    """The 16-byte ``net.ParseIP`` form (IPv4 as ::ffff:a.b.c.d) that the ring hashes."""
    ip = _parse_client_ip(client_ip)
    if ip.version == 4:
        return b"\x00" * 10 + b"\xff\xff" + ip.packed
    return ip.packed


def discovery_value(hmac_key: str, client_ip: ClientIP) -> int:
    """First byte of HMAC-SHA256(key = the configured key text, msg = client IP text)."""
    mac = hmac.new(hmac_key.encode("utf-8"), client_ip_text(client_ip).encode("ascii"), hashlib.sha256)
    return mac.digest()[0]


# ----------------------------------------------------------------------- classic

def bucket_count(n: int) -> int:
    """ceil(sqrt(n)) in float64, as Go computes it."""
    return math.ceil(math.sqrt(n))


def bucketize(servers: Sequence[DiscoveryServer], count: int) -> tuple[tuple[DiscoveryServer, ...], ...]:
    """``count`` nearly equal slices; floor(x + 0.5) rounding (not banker's round())."""
    division = len(servers) / count
    bounds = [math.floor(division * i + 0.5) for i in range(count + 1)]
    return tuple(tuple(servers[bounds[i]:bounds[i + 1]]) for i in range(count))


@dataclass(frozen=True)
class ClassicBuckets:
    """The classic strategy's buckets for one discoverable set."""

    buckets: tuple[tuple[DiscoveryServer, ...], ...]

    @classmethod
    def build(cls, servers: Sequence[DiscoveryServer]) -> ClassicBuckets:
        if not servers:
            return cls(())
        return cls(bucketize(servers, bucket_count(len(servers))))

    def select(self, value: int, now: Moment) -> DiscoveryServer | None:
        """Bucket by discovery value, server by hour; None unless its window holds now."""
        if not self.buckets:
            return None
        bucket = self.buckets[value % len(self.buckets)]
        if not bucket:
            return None
        server = bucket[(unix_seconds(now) // 3600) % len(bucket)]
        return server if server.discoverable_at(now) else None


# ----------------------------------------------------------------------- consistent

class _NextFree:
    """Cyclic "next slot at or after i that is not full", union-find with path halving."""

    def __init__(self, size: int) -> None:
        self._parent = list(range(size))
        self.free = size

    def find(self, i: int) -> int:
        parent = self._parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def fill(self, i: int) -> None:
        self._parent[i] = (i + 1) % len(self._parent)
        self.free -= 1


def _ring_slots(names: Sequence[str]) -> tuple[list[int], list[int]]:
    """Sorted ring points and the member index owning each (replica 0 only)."""
    owner_of_point: dict[int, int] = {}
    points = []
    for index, name in enumerate(names):
        point = xxhash64((name + "0").encode("utf-8"))
        owner_of_point[point] = index  # on a hash collision the later member wins, as in Go
        points.append(point)
    points.sort()
    return points, [owner_of_point[p] for p in points]


def _assign_partitions(points: list[int], slot_member: list[int], members: int,
                       partitions: int, load: float) -> tuple[int, ...]:
    capacity = math.ceil(partitions / members * load)
    if capacity < 1:
        raise LocalProtocolError(DiscoveryReason.RING_FULL, "load leaves no room for any partition")
    slots_of: dict[int, list[int]] = {}
    for slot, member in enumerate(slot_member):
        slots_of.setdefault(member, []).append(slot)
    loads = [0] * members
    free = _NextFree(len(points))
    owners = []
    for partition in range(partitions):
        start = bisect.bisect_left(points, xxhash64(partition.to_bytes(8, "little")))
        if free.free == 0:
            raise LocalProtocolError(DiscoveryReason.RING_FULL, "not enough room to distribute partitions")
        member = slot_member[free.find(start % len(points))]
        owners.append(member)
        loads[member] += 1
        if loads[member] + 1 > capacity:
            for slot in slots_of[member]:
                free.fill(slot)
    return tuple(owners)


@dataclass(frozen=True)
class ConsistentRing:
    """Psiphon's consistent-hash ring for one discoverable set (ReplicationFactor 1)."""

    servers: tuple[DiscoveryServer, ...]
    owners: tuple[int, ...]  # partition id -> index into servers

    @classmethod
    def build(cls, servers: Sequence[DiscoveryServer], partition_count: int | None = None,
              load: float = 1.0) -> ConsistentRing:
        """Psiphon uses partition_count = len(servers) and load = 1."""
        servers = tuple(servers)
        names = [s.ip_address for s in servers]
        if len(set(names)) != len(names):
            raise LocalProtocolError(DiscoveryReason.DUPLICATE_SERVER,
                                     "discovery servers must have distinct IP addresses")
        if not servers:
            return cls((), ())
        partitions = len(servers) if partition_count is None else partition_count
        if partitions < 1:
            raise LocalProtocolError(UsageReason.BAD_ARGUMENT, "partition_count must be positive")
        points, slot_member = _ring_slots(names)
        return cls(servers, _assign_partitions(points, slot_member, len(servers), partitions, load))

    def partition_of(self, client_ip: ClientIP) -> int:
        return xxhash64(client_ip_key(client_ip)) % len(self.owners)

    def owner(self, partition: int) -> DiscoveryServer:
        return self.servers[self.owners[partition]]

    def select(self, client_ip: ClientIP, now: Moment) -> DiscoveryServer | None:
        """The owner of the client's partition; None if empty or outside its window."""
        if not self.owners:
            return None
        server = self.owner(self.partition_of(client_ip))
        return server if server.discoverable_at(now) else None


# ----------------------------------------------------------------------- entry points

def select_classic(servers: ClassicBuckets | Sequence[DiscoveryServer], hmac_key: str,
                   client_ip: ClientIP, now: Moment) -> DiscoveryServer | None:
    """Classic selection; a plain list is first narrowed to the set discoverable now."""
    buckets = servers if isinstance(servers, ClassicBuckets) else ClassicBuckets.build(discoverable(servers, now))
    return buckets.select(discovery_value(hmac_key, client_ip), now)


def select_consistent(servers: ConsistentRing | Sequence[DiscoveryServer], client_ip: ClientIP,
                      now: Moment) -> DiscoveryServer | None:
    """Consistent-hashing selection; a plain list is first narrowed to the set discoverable now."""
    ring = servers if isinstance(servers, ConsistentRing) else ConsistentRing.build(discoverable(servers, now))
    return ring.select(client_ip, now)


@dataclass(frozen=True)
class _Snapshot:
    valid_from: datetime | None
    valid_until: datetime | None
    selector: ClassicBuckets | ConsistentRing

    def covers(self, at: datetime) -> bool:
        return (self.valid_from is None or self.valid_from <= at) and \
            (self.valid_until is None or at < self.valid_until)


class Discovery:
    """A strategy over all candidate servers; rebuilds its structure at window edges."""

    def __init__(self, servers: Sequence[DiscoveryServer], strategy: Strategy | str = Strategy.CONSISTENT,
                 hmac_key: str | None = None) -> None:
        self.strategy = Strategy(strategy)
        if self.strategy is Strategy.CLASSIC and not hmac_key:
            raise LocalProtocolError(UsageReason.BAD_ARGUMENT, "classic discovery needs the discovery value HMAC key")
        self.servers = tuple(servers)
        self._hmac_key = hmac_key or ""
        self._snapshot: _Snapshot | None = None

    def _current(self, now: Moment) -> _Snapshot:
        at = to_datetime(now)
        snapshot = self._snapshot
        if snapshot is None or not snapshot.covers(at):
            current = discoverable(self.servers, at)
            selector: ClassicBuckets | ConsistentRing
            if self.strategy is Strategy.CLASSIC:
                selector = ClassicBuckets.build(current)
            else:
                selector = ConsistentRing.build(current)
            snapshot = _Snapshot(*window_boundaries(self.servers, at), selector)
            self._snapshot = snapshot  # one assignment: readers see old or new, never half
        return snapshot

    def select(self, client_ip: ClientIP, now: Moment) -> DiscoveryServer | None:
        """The one server to hand to ``client_ip`` at ``now``, or None."""
        selector = self._current(now).selector
        if isinstance(selector, ClassicBuckets):
            return selector.select(discovery_value(self._hmac_key, client_ip), now)
        return selector.select(client_ip, now)
