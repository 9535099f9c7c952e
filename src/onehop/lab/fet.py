"""The GFW's fully-encrypted-traffic rule (Wu et al., USENIX Security 2023, Algorithm 1).

Only the first data packet from client to server is inspected. The flow is exempt if
any of these holds (printable = 0x20..0x7e):

* Ex1: the average number of set bits per byte is <= 3.4 or >= 4.6;
* Ex2: the first 6 bytes are printable;
* Ex3: more than 50% of the bytes are printable;
* Ex4: a run of more than 20 contiguous printable bytes;
* Ex5: a TLS (``[\\x16\\x17]\\x03[\\x00-\\x09]``) or HTTP (``GET ``, ``PUT ``, ``POST ``,
  ``HEAD ``, case-sensitive) fingerprint.

Otherwise the flow is blocked with probability ``block_probability`` (about 0.26 on the
real GFW; 1.0 by default here, so that the lab is deterministic), and subsequent flows
on the same (client IP, server IP, server port) are dropped for ``residual_seconds``
(120 or 180 s observed).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .flows import PASS, Action, Censor, DataSeen, FlowOpened, Verdict, block

PRINTABLE = frozenset(range(0x20, 0x7F))
HTTP_FINGERPRINTS = (b"GET ", b"PUT ", b"POST ", b"HEAD ")
TLS_FIRST_BYTES = (0x16, 0x17)
TLS_MAX_MINOR = 0x09


@dataclass(frozen=True)
class FETAnalysis:
    """Algorithm 1's statistics of one first packet and the first exemption that holds."""

    popcount_per_byte: float
    leading_printable: int
    printable_fraction: float
    longest_printable_run: int
    fingerprint: str
    exemption: str | None   # "Ex1".."Ex5", or None: the packet looks fully encrypted

    @property
    def exempt(self) -> bool:
        return self.exemption is not None


def _leading_printable(data: bytes) -> int:
    for index, byte in enumerate(data):
        if byte not in PRINTABLE:
            return index
    return len(data)


def _longest_printable_run(data: bytes) -> int:
    longest = run = 0
    for byte in data:
        run = run + 1 if byte in PRINTABLE else 0
        longest = max(longest, run)
    return longest


def protocol_fingerprint(data: bytes) -> str:
    if len(data) >= 3 and data[0] in TLS_FIRST_BYTES and data[1] == 0x03 and data[2] <= TLS_MAX_MINOR:
        return "TLS"
    return "HTTP" if data.startswith(HTTP_FINGERPRINTS) else ""


def analyze_first_packet(data: bytes) -> FETAnalysis:
    if not data:
        raise ValueError("the first data packet is never empty")
    popcount = sum(bin(b).count("1") for b in data) / len(data)
    leading = _leading_printable(data)
    fraction = sum(b in PRINTABLE for b in data) / len(data)
    run = _longest_printable_run(data)
    fingerprint = protocol_fingerprint(data)
    checks = (("Ex1", popcount <= 3.4 or popcount >= 4.6), ("Ex2", leading >= 6),
              ("Ex3", fraction > 0.5), ("Ex4", run > 20), ("Ex5", bool(fingerprint)))
    exemption = next((name for name, holds in checks if holds), None)
    return FETAnalysis(popcount, leading, fraction, run, fingerprint, exemption)


class FullyEncryptedTrafficRule(Censor):
    name = "fet"

    def __init__(self, *, block_probability: float = 1.0, residual_seconds: float = 180.0,
                 rng: random.Random | None = None, action: Action = Action.DROP) -> None:
        if not 0.0 <= block_probability <= 1.0:
            raise ValueError("block_probability must be within [0, 1]")
        self.block_probability = block_probability
        self.residual_seconds = residual_seconds
        self.action = action
        self._rng = rng or random.Random()
        self._residual: dict[tuple[str, str, int], float] = {}  # 3-tuple -> until
        self.analyses: list[tuple[int, FETAnalysis]] = []       # (flow id, analysis)

    @staticmethod
    def _three_tuple(flow) -> tuple[str, str, int]:
        return flow.client.ip, flow.server.ip, flow.server.port

    def on_open(self, event: FlowOpened) -> Verdict:
        until = self._residual.get(self._three_tuple(event.flow))
        if until is not None and event.at < until:
            return block(self.action, "residual censorship of a recently blocked 3-tuple")
        return PASS

    def on_data(self, event: DataSeen) -> Verdict:
        if not (event.first and event.from_client):
            return PASS
        analysis = analyze_first_packet(event.data)
        self.analyses.append((event.flow.id, analysis))
        if analysis.exempt:
            return PASS
        if self.block_probability < 1.0 and self._rng.random() >= self.block_probability:
            return PASS
        if self.residual_seconds > 0:
            self._residual[self._three_tuple(event.flow)] = event.at + self.residual_seconds
        return block(self.action, f"fully encrypted first packet (popcount "
                     f"{analysis.popcount_per_byte:.2f}/byte, no exemption)")

    def describe(self) -> str:
        return f"{self.name}(p={self.block_probability:g})"
