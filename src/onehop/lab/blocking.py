"""Censors that need no payload: IP blocklists, port blocking, throttling."""

from __future__ import annotations

from collections.abc import Iterable

from ..core.serverentry import ServerEntry
from .flows import PASS, Action, Censor, DataSeen, FlowOpened, Verdict, block


class IPBlocklist(Censor):
    """Blocks every flow to an address on its list, including flows already open (at
    their next packet) when an address is learned later.

    The list is what the censor obtained: server lists extracted from a client
    download (``learn_entries``), addresses confirmed by an active prober, ...
    """

    name = "ip-blocklist"

    def __init__(self, ips: Iterable[str] = (), action: Action = Action.DROP) -> None:
        self.blocked: set[str] = set(ips)
        self.action = action

    @classmethod
    def from_entries(cls, entries: Iterable[ServerEntry], action: Action = Action.DROP) -> IPBlocklist:
        censor = cls(action=action)
        censor.learn_entries(entries)
        return censor

    def learn(self, ips: Iterable[str]) -> None:
        self.blocked.update(ips)

    def learn_entries(self, entries: Iterable[ServerEntry]) -> None:
        self.learn(entry.ip_address for entry in entries)

    def _check(self, ip: str) -> Verdict:
        return block(self.action, f"{ip} is on the blocklist") if ip in self.blocked else PASS

    def on_open(self, event: FlowOpened) -> Verdict:
        return self._check(event.flow.server.ip)

    def on_data(self, event: DataSeen) -> Verdict:
        return self._check(event.flow.server.ip)

    def describe(self) -> str:
        return f"{self.name}({len(self.blocked)} addresses)"


class PortBlock(Censor):
    """Blocks every flow to the given destination ports (e.g. 22 for SSH)."""

    name = "port-block"

    def __init__(self, ports: Iterable[int], action: Action = Action.RESET) -> None:
        self.ports = frozenset(ports)
        self.action = action

    def on_open(self, event: FlowOpened) -> Verdict:
        port = event.flow.server.port
        return block(self.action, f"port {port} is blocked") if port in self.ports else PASS

    def describe(self) -> str:
        return f"{self.name}({','.join(map(str, sorted(self.ports)))})"


class Throttle(Censor):
    """After ``after_bytes`` in either direction, limit the flow to ``rate`` bytes/s
    (Russia 2024: throttling after the first ~16-20 KB of a connection)."""

    name = "throttle"

    def __init__(self, after_bytes: int, rate: int) -> None:
        if after_bytes < 0 or rate <= 0:
            raise ValueError("after_bytes must be >= 0 and rate > 0")
        self.after_bytes = after_bytes
        self.rate = rate

    def on_data(self, event: DataSeen) -> Verdict:
        if event.flow_bytes + len(event.data) > self.after_bytes:
            return Verdict(Action.THROTTLE, f"more than {self.after_bytes} bytes", rate=self.rate)
        return PASS

    def describe(self) -> str:
        return f"{self.name}(after {self.after_bytes} B to {self.rate} B/s)"
