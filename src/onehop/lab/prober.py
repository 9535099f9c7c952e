"""An active prober (sans-IO): it sees flows, probes the servers they go to, and blocks
those whose reactions give them away.

Probe set, from Alice et al., "How China Detects and Blocks Shadowsocks" (IMC 2020):
replays of the first client data packet (R1 identical; R2 byte 0 changed; R3 bytes 0-7
and 62-63 changed; R4 byte 16 changed; R5 bytes 6 and 16 changed), plus an identical
replay of the client's whole first flight (the bytes sent before the server's first
byte), random probes in trios of lengths around 8, 12, 16, 22, 33, 41 and 49 (NR1) and
of exactly 221 bytes (NR2), and an empty connection, an HTTP GET and a TLS ClientHello.
Probing starts ``delay`` seconds after the first client packet to a server (the GFW's
replays came 0.28 s or more after the original).

A server is *confirmed* when it reacts unlike a silent server or a closed port: it
sends a byte in answer to any probe, or its reactions are not uniform (different close
kinds, or close times spread wider than ``tolerance`` -- Frolov et al., NDSS 2020).
Confirmed servers are blocked by IP (``scope="ip"``) or by IP and port.

The I/O (connecting, sending, timing) is ``probing.ProberDriver``'s: it asks ``due``
for the probes to send now and hands each ``Reaction`` back to ``record``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from collections.abc import Mapping

from .flows import PASS, Action, Censor, DataSeen, Endpoint, FlowOpened, Verdict, block

NR1_LENGTHS = (7, 8, 9, 11, 12, 13, 15, 16, 17, 21, 22, 23, 32, 33, 34, 40, 41, 42, 48, 49, 50)
NR2_LENGTH = 221
REPLAY_CHANGES = {"R2": (0,), "R3": (0, 1, 2, 3, 4, 5, 6, 7, 62, 63), "R4": (16,), "R5": (6, 16)}
HTTP_GET = b"GET / HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
TLS_CLIENT_HELLO = bytes.fromhex(
    "16030100f8010000f40303" + "00" * 32 + "20" + "11" * 32 +
    "0008130213031301c02f0100009f0000000e000c0000096578616d706c652e636f6d"
    "000b000403000102000a000c000a001d0017001e00190018002300000016000000170000"
    "000d0030002e040305030603080708080809080a080b080408050806040105010601"
    "002b0003020304002d00020101003300260024001d0020" + "22" * 32)
CLOSE_KINDS = ("fin", "rst", "timeout", "refused")


@dataclass(frozen=True)
class Probe:
    kind: str
    payload: bytes


@dataclass(frozen=True)
class Reaction:
    """How a server reacted to one probe: bytes it sent back, how and when it closed
    (``timeout``: still open at the end of the observation window)."""

    received: int
    close: str
    seconds: float

    def __post_init__(self) -> None:
        if self.close not in CLOSE_KINDS:
            raise ValueError(f"close must be one of {CLOSE_KINDS}")


@dataclass(frozen=True)
class Judgement:
    confirmed: bool
    reason: str


@dataclass(frozen=True)
class ProbeTask:
    target: Endpoint
    probe: Probe


def changed(payload: bytes, indices: tuple[int, ...]) -> bytes:
    out = bytearray(payload)
    for index in indices:
        if index < len(out):
            out[index] ^= 0xFF
    return bytes(out)


def imc2020_probes(first_packet: bytes, first_flight: bytes, rng: random.Random) -> tuple[Probe, ...]:
    probes = [Probe("R1", first_packet)]
    probes += [Probe(kind, changed(first_packet, indices)) for kind, indices in REPLAY_CHANGES.items()]
    if first_flight and first_flight != first_packet:
        probes.append(Probe("R1-flight", first_flight))
    probes += [Probe(f"NR1-{n}", rng.randbytes(n)) for n in NR1_LENGTHS]
    probes.append(Probe(f"NR2-{NR2_LENGTH}", rng.randbytes(NR2_LENGTH)))
    probes += [Probe("empty", b""), Probe("http-get", HTTP_GET), Probe("tls-client-hello", TLS_CLIENT_HELLO)]
    return tuple(probes)


def judge(reactions: Mapping[str, Reaction], tolerance: float) -> Judgement:
    """Does this server react unlike a silent server or a closed port?"""
    answered = [(kind, r) for kind, r in reactions.items() if r.received]
    if answered:
        kind, reaction = answered[0]
        return Judgement(True, f"answered probe {kind} with {reaction.received} bytes"
                         + (f" (and {len(answered) - 1} more probes)" if len(answered) > 1 else ""))
    kinds = sorted({r.close for r in reactions.values()})
    if len(kinds) > 1:
        return Judgement(True, "reactions differ by probe: " + ", ".join(
            f"{k} x{sum(r.close == k for r in reactions.values())}" for k in kinds))
    closes = [r.seconds for r in reactions.values() if r.close in ("fin", "rst")]
    if closes and max(closes) - min(closes) > tolerance:
        return Judgement(True, f"close time depends on the probe ({min(closes):.2f}-{max(closes):.2f} s)")
    kind = kinds[0] if kinds else ""
    what = {"refused": "a closed port", "timeout": "a silent server"}.get(
        kind, f"a silent server that closes ({kind or '-'})")
    return Judgement(False, f"{len(reactions)} probes, uniform: like {what}")


@dataclass
class _Target:
    flow_id: int
    first_packet: bytes
    due_at: float
    flight: bytearray
    flight_done: bool = False
    probes: tuple[Probe, ...] = ()
    reactions: dict[str, Reaction] = field(default_factory=dict)
    judgement: Judgement | None = None


class ActiveProber(Censor):
    name = "active-prober"

    def __init__(self, *, delay: float = 0.3, tolerance: float = 1.0, scope: str = "ip",
                 max_flight: int = 16384, rng: random.Random | None = None,
                 action: Action = Action.DROP) -> None:
        if scope not in ("ip", "endpoint"):
            raise ValueError("scope is 'ip' or 'endpoint'")
        self.delay = delay
        self.tolerance = tolerance
        self.scope = scope
        self.max_flight = max_flight
        self.action = action
        self._rng = rng or random.Random()
        self.targets: dict[Endpoint, _Target] = {}
        self.confirmed: dict[str, str] = {}  # ip or "ip:port" -> reason

    # -- what the censor sees --------------------------------------------------------

    def _key(self, endpoint: Endpoint) -> str:
        return endpoint.ip if self.scope == "ip" else str(endpoint)

    def _blocked(self, endpoint: Endpoint) -> Verdict:
        reason = self.confirmed.get(self._key(endpoint))
        return block(self.action, f"confirmed by probing: {reason}") if reason else PASS

    def on_open(self, event: FlowOpened) -> Verdict:
        return self._blocked(event.flow.server)

    def on_data(self, event: DataSeen) -> Verdict:
        server = event.flow.server
        target = self.targets.get(server)
        if event.from_client:
            if target is None and event.first:
                self.targets[server] = _Target(event.flow.id, event.data, event.at + self.delay,
                                               bytearray(event.data[:self.max_flight]))
            elif target is not None and target.flow_id == event.flow.id and not target.flight_done:
                target.flight += event.data[:self.max_flight - len(target.flight)]
        elif target is not None and target.flow_id == event.flow.id:
            target.flight_done = True
        return self._blocked(server)

    # -- what the driver asks ------------------------------------------------------------

    def next_due(self) -> float | None:
        times = [t.due_at for t in self.targets.values() if not t.probes]
        return min(times) if times else None

    def due(self, now: float) -> list[ProbeTask]:
        tasks = []
        for endpoint, target in self.targets.items():
            if target.probes or target.due_at > now:
                continue
            target.probes = imc2020_probes(target.first_packet, bytes(target.flight), self._rng)
            tasks += [ProbeTask(endpoint, probe) for probe in target.probes]
        return tasks

    def record(self, task: ProbeTask, reaction: Reaction) -> None:
        target = self.targets[task.target]
        target.reactions[task.probe.kind] = reaction
        if len(target.reactions) == len(target.probes) and target.judgement is None:
            target.reactions = {p.kind: target.reactions[p.kind] for p in target.probes}  # probe order
            target.judgement = judge(target.reactions, self.tolerance)
            if target.judgement.confirmed:
                self.confirmed[self._key(task.target)] = target.judgement.reason

    @property
    def pending(self) -> bool:
        """Some server seen in traffic has not been judged yet."""
        return any(t.judgement is None for t in self.targets.values())

    def describe(self) -> str:
        return f"{self.name}(IMC 2020 probes, {self.scope})"
