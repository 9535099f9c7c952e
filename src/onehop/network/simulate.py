"""``onehop network discovery simulate``: how much of the discovery pool an adversary
enumerates, against what an ordinary user learns.

The adversary holds K addresses in distinct /24 networks and makes one handshake per
address every hour for D days; the ordinary user makes one handshake per hour from one
address. Selections use ``onehop.core.discovery`` exactly as servers do, so the counts
are what the deployed network would hand out. Classic discovery lets an address see a
new server every hour within its bucket (~sqrt(N) servers per bucket); consistent
hashing gives an address one server until the pool changes, so an adversary needs
about as many /24s as there are servers.
"""

from __future__ import annotations

import base64
import ipaddress
import random
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from ..core.discovery import Discovery, DiscoveryServer, bucket_count
from ..core.serverentry import encode_server_entry

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class SimulationResult:
    strategy: str
    pool: int
    attacker_ips: int
    days: int
    attacker_learned: int
    ordinary_user_learned: int
    buckets: int | None

    @property
    def attacker_fraction(self) -> float:
        return self.attacker_learned / self.pool if self.pool else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "attacker_fraction": round(self.attacker_fraction, 4)}


def attacker_addresses(count: int, rng: random.Random) -> list[str]:
    """``count`` addresses in distinct /24s of unicast space (1.0.0.0 - 223.255.255.255)."""
    networks = rng.sample(range(1 << 16, 224 << 16), count)
    return [str(ipaddress.IPv4Address((n << 8) | rng.randrange(1, 255))) for n in networks]


def synthetic_pool(size: int, start: datetime, days: int) -> list[DiscoveryServer]:
    """``size`` servers discoverable for the whole simulated period."""
    end = start + timedelta(days=days) + HOUR
    pool = []
    for i in range(size):
        ip = str(ipaddress.IPv4Address(0x0A000000 + i + 1))
        encoded = encode_server_entry({"ipAddress": ip})
        pool.append(DiscoveryServer(ip, encoded, start, end))
    return pool


def _learned(discovery: Discovery, addresses: list[str], start: datetime, hours: int) -> int:
    seen: set[str] = set()
    for hour in range(hours):
        at = start + hour * HOUR
        for address in addresses:
            chosen = discovery.select(address, at)
            if chosen is not None:
                seen.add(chosen.ip_address)
    return len(seen)


def simulate(pool: list[DiscoveryServer], strategy: str, hmac_key: str, attacker_ips: int, days: int,
             start: datetime, rng: random.Random) -> SimulationResult:
    discovery = Discovery(pool, strategy, hmac_key)
    hours = days * 24
    attacker = _learned(discovery, attacker_addresses(attacker_ips, rng), start, hours)
    ordinary = _learned(discovery, attacker_addresses(1, rng), start, hours)
    active = [s for s in pool if s.discoverable_at(start)]
    buckets = bucket_count(len(active)) if strategy == "classic" and active else None
    return SimulationResult(strategy, len(pool), attacker_ips, days, attacker, ordinary, buckets)


def random_hmac_key(rng: random.Random) -> str:
    return base64.b64encode(rng.randbytes(32)).decode("ascii")
