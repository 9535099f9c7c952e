"""A week under a censor, with and without ``heal``: ``discovery simulate --week``.

An hour-by-hour model (seeded, repeatable) of one channel:

* **users** (``--users``, each from its own /24) start with the channel's build, i.e.
  its embedded servers. Once a day they fetch the remote server list (published outside
  the censored network, assumed reachable) and learn the current embedded servers;
  every ``HANDSHAKE_HOURS`` a user with a working server makes a handshake and learns the
  discovery server ``onehop.core.discovery`` hands its address (exactly as servers do).
* **the censor** has the build too, fetches the remote list daily as users do, and
  enumerates discovery with ``--attacker-ips`` addresses in distinct /24s, one
  handshake per address per hour (as ``discovery simulate`` does); it blocks every
  server it learned ``--block-delay-hours`` later.
* **heal**, when on, runs once a day: a server blocked for at least a day (the stats
  need that long to show the collapse) is replaced, at most ``--max-hosts`` per run;
  an embedded replacement goes into the remote list, a discovery replacement into the
  pool with the rest of the old one's window.

Reported per day: the share of users with a working server (mean over the day's
hours), servers launched, servers the censor knows, servers blocked.
"""

from __future__ import annotations

import base64
import ipaddress
import random
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, UTC

from ..core.discovery import Discovery, DiscoveryServer
from .simulate import attacker_addresses

HOUR = timedelta(hours=1)
HANDSHAKE_HOURS = 6


@dataclass(frozen=True)
class WeekParams:
    strategy: str = "consistent"
    heal: bool = False
    days: int = 7
    users: int = 300
    embedded: int = 4
    discovery: int = 40
    attacker_ips: int = 10
    block_delay_hours: int = 24
    max_hosts: int = 10
    seed: int = 1


@dataclass
class _Server:
    id: int
    ip: str
    embedded: bool
    start: datetime
    end: datetime | None
    learned_at: datetime | None = None
    replaced: bool = False

    def blocked(self, now: datetime, delay: timedelta) -> bool:
        return self.learned_at is not None and now >= self.learned_at + delay


@dataclass
class DayRow:
    day: int
    users_with_working_server: float
    servers_launched: int
    revealed_to_censor: int
    blocked: int


@dataclass
class WeekResult:
    params: WeekParams
    days: list[DayRow] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {**asdict(self.params), "days": [asdict(d) for d in self.days]}


class _World:
    def __init__(self, params: WeekParams, start: datetime) -> None:
        self.p, self.start, self.rng = params, start, random.Random(params.seed)
        self.key = base64.b64encode(self.rng.randbytes(32)).decode("ascii")
        self.delay = timedelta(hours=params.block_delay_hours)
        self.servers: list[_Server] = []
        self.launched = 0
        end = start + timedelta(days=params.days + 1)
        for _ in range(params.embedded):
            self._add(True, start, None)
        for _ in range(params.discovery):
            self._add(False, start, end)
        self.launched = 0  # the initial network is not counted as launched
        self.users = attacker_addresses(params.users, self.rng)
        self.censor = attacker_addresses(params.attacker_ips, self.rng)
        self.known: list[set[int]] = [{s.id for s in self.servers if s.embedded} for _ in self.users]
        self._rebuild()

    def _add(self, embedded: bool, start: datetime, end: datetime | None) -> _Server:
        n = len(self.servers)
        server = _Server(n, str(ipaddress.IPv4Address(0x0A000000 + n + 1)), embedded, start, end)
        self.servers.append(server)
        self.launched += 1
        return server

    def _rebuild(self) -> None:
        pool = [DiscoveryServer(s.ip, "", s.start, s.end) for s in self.servers
                if not s.embedded and not s.replaced and s.end is not None]
        self.by_ip = {s.ip: s for s in self.servers}
        self.discovery = Discovery(pool, self.p.strategy, self.key) if pool else None

    def _learn_censor(self, server: _Server, now: datetime) -> None:
        if server.learned_at is None:
            server.learned_at = now

    def current_embedded(self) -> list[_Server]:
        return [s for s in self.servers if s.embedded and not s.replaced]

    def heal(self, now: datetime) -> None:
        budget = self.p.max_hosts
        changed = False
        for server in list(self.servers):
            if budget <= 0:
                break
            if server.replaced or not server.blocked(now - timedelta(days=1), self.delay):
                continue
            if server.end is not None and server.end <= now:
                continue
            server.replaced, budget, changed = True, budget - 1, True
            self._add(server.embedded, now, server.end)
        if changed:
            self._rebuild()

    def hour(self, now: datetime) -> float:
        if (now - self.start) % timedelta(days=1) == timedelta(0):
            if self.p.heal and now > self.start:
                self.heal(now)
            for server in self.current_embedded():  # the censor's daily look at the remote list
                self._learn_censor(server, now)
            embedded_ids = {s.id for s in self.current_embedded()}
            for known in self.known:                 # and the users'
                known |= embedded_ids
        if self.discovery is not None:
            for address in self.censor:
                chosen = self.discovery.select(address, now)
                if chosen is not None:
                    self._learn_censor(self.by_ip[chosen.ip_address], now)
        working = 0
        handshake = (now - self.start) % timedelta(hours=HANDSHAKE_HOURS) == timedelta(0)
        for address, known in zip(self.users, self.known):
            ok = any(not self.servers[i].blocked(now, self.delay) for i in known)
            working += ok
            if ok and handshake and self.discovery is not None:
                chosen = self.discovery.select(address, now)
                if chosen is not None:
                    known.add(self.by_ip[chosen.ip_address].id)
        return working / len(self.users)

    def day_row(self, day: int, shares: list[float], now: datetime) -> DayRow:
        return DayRow(day, round(sum(shares) / len(shares), 4), self.launched,
                      sum(s.learned_at is not None for s in self.servers),
                      sum(s.blocked(now, self.delay) for s in self.servers))


def simulate_week(params: WeekParams, start: datetime | None = None) -> WeekResult:
    start = start or datetime(2025, 1, 6, tzinfo=UTC)
    world, result = _World(params, start), WeekResult(params)
    for day in range(params.days):
        shares = [world.hour(start + timedelta(days=day) + h * HOUR) for h in range(24)]
        result.days.append(world.day_row(day + 1, shares, start + timedelta(days=day + 1) - HOUR))
    return result


def plot_weeks(results: list[WeekResult], path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for result in results:
        p = result.params
        label = f"{p.strategy}, {'heal daily' if p.heal else 'no heal'}"
        days = [d.day for d in result.days]
        style = "-" if p.heal else "--"
        axes[0].plot(days, [d.users_with_working_server for d in result.days], style, marker="o", label=label)
        axes[1].plot(days, [d.servers_launched for d in result.days], style, marker="o", label=label)
        axes[2].plot(days, [d.revealed_to_censor for d in result.days], style, marker="o", label=label)
    p = results[0].params
    for ax, title in zip(axes, ("users with a working server", "servers launched (cumulative)",
                                "servers revealed to the censor")):
        ax.set_title(title)
        ax.set_xlabel("day")
        ax.grid(alpha=0.3)
    axes[0].set_ylim(0, 1.05)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{p.users} users, {p.embedded} embedded + {p.discovery} discovery servers; censor: "
                 f"{p.attacker_ips} /24s, blocks {p.block_delay_hours} h after learning")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
