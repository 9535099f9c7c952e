"""What one tunnel keeps about itself: the handshake record and its counters.

Plain records with no knowledge of sessions, services or the wire. Each counter has
one owner, ``TunnelCounters``, and changes only through its methods or through the
``ByteCounter``/``ForwardCounts`` objects it hands to the part that does the counting
(a relay counts bytes, a forward table counts forwards); ``stats`` only reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar
from collections.abc import Sequence

from ..tunnel.relay import ByteCounter

#: Client records (status requests) a tunnel may log over its life.
MAX_RECORDS_PER_TUNNEL = 1024

T = TypeVar("T")


@dataclass
class HandshakeState:
    """What the server keeps from a completed handshake.

    ``params``: the string parameters (traffic-rule filters match on them; never
    logged as such); ``fields``: the validated subset logged with the tunnel.
    """

    params: dict[str, Any]
    client_region: str
    completed_at: float
    fields: dict[str, Any] = field(default_factory=dict)
    connected_day: str | None = None
    connected_timestamp: str | None = None


@dataclass
class ForwardCounts:
    """Forwards of one kind over a tunnel's life, as server_tunnel reports them."""

    opened: int = 0
    rejected: int = 0
    peak: int = 0
    split: int = 0   # refused with the split-tunnel answer (the client went direct)

    def note_open(self, concurrent: int) -> None:
        self.opened += 1
        self.peak = max(self.peak, concurrent)


@dataclass
class RecordCounts:
    """Client records of one tunnel: logged, dropped (over budget or not examined), invalid."""

    logged: int = 0
    dropped: int = 0
    invalid: int = 0
    budget: int = MAX_RECORDS_PER_TUNNEL

    def admit(self, valid: Sequence[T], invalid: int, skipped: int) -> list[T]:
        """The leading part of ``valid`` the budget still allows; the rest is counted as dropped."""
        room = max(0, self.budget - self.logged)
        admitted = list(valid[:room])
        self.logged += len(admitted)
        self.dropped += skipped + len(valid) - len(admitted)
        self.invalid += invalid
        return admitted


@dataclass
class TunnelCounters:
    """Every count server_tunnel reports for one tunnel."""

    tcp_bytes: ByteCounter = field(default_factory=ByteCounter)
    udp_bytes: ByteCounter = field(default_factory=ByteCounter)
    tcp_forwards: ForwardCounts = field(default_factory=ForwardCounts)
    udp_forwards: ForwardCounts = field(default_factory=ForwardCounts)
    udpgw_channels: int = 0
    records: RecordCounts = field(default_factory=RecordCounts)

    @property
    def bytes(self) -> ByteCounter:
        """TCP and UDP together (a new object: adding to it changes nothing)."""
        tcp, udp = self.tcp_bytes, self.udp_bytes
        return ByteCounter(tcp.up + udp.up, tcp.down + udp.down)

    def note_udpgw_channel(self) -> None:
        self.udpgw_channels += 1
