"""The vocabulary every censor model speaks: flows, flow events and verdicts.

A censor is sans-IO: the middlebox tells it what it saw (a connection opened, bytes
in one direction, the connection closed) as frozen events carrying the time, and the
censor answers with a ``Verdict``. ``FlowTracker`` is the pure bookkeeping between the
two: it numbers bytes per direction, remembers a flow's verdict (a blocked flow stays
blocked, a throttled one stays throttled) and never consults a censor again about a
flow it blocked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from collections.abc import Iterable


@dataclass(frozen=True, order=True)
class Endpoint:
    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class Flow:
    """One TCP connection as the censor sees it."""

    id: int
    client: Endpoint
    server: Endpoint


class Direction(Enum):
    FROM_CLIENT = "client->server"
    FROM_SERVER = "server->client"


@dataclass(frozen=True)
class FlowOpened:
    flow: Flow
    at: float


@dataclass(frozen=True)
class DataSeen:
    """``data`` travelled in ``direction``; ``offset`` bytes went that way before it,
    ``flow_bytes`` bytes went either way before it."""

    flow: Flow
    direction: Direction
    data: bytes
    offset: int
    flow_bytes: int
    at: float

    @property
    def first(self) -> bool:
        """The first payload in this direction (the censor's 'first packet')."""
        return self.offset == 0

    @property
    def from_client(self) -> bool:
        return self.direction is Direction.FROM_CLIENT


@dataclass(frozen=True)
class FlowClosed:
    flow: Flow
    at: float


FlowEvent = FlowOpened | DataSeen | FlowClosed


class Action(Enum):
    """What the middlebox does with a flow, least to most severe."""

    PASS = 0
    THROTTLE = 1
    DROP = 2    # blackhole: nothing more is forwarded either way, nothing is closed
    RESET = 3   # both ends get a TCP RST


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str = ""
    censor: str = ""
    rate: int = 0  # bytes per second, for THROTTLE

    @property
    def blocks(self) -> bool:
        return self.action in (Action.DROP, Action.RESET)

    def by(self, censor: str) -> Verdict:
        return Verdict(self.action, self.reason, censor, self.rate)


PASS = Verdict(Action.PASS)


def drop(reason: str) -> Verdict:
    return Verdict(Action.DROP, reason)


def reset(reason: str) -> Verdict:
    return Verdict(Action.RESET, reason)


def block(action: Action, reason: str) -> Verdict:
    if action not in (Action.DROP, Action.RESET):
        raise ValueError("a blocking action is DROP or RESET")
    return Verdict(action, reason)


class Censor:
    """Base of every censor model: override the ``on_*`` methods you need.

    ``name`` labels verdicts and reports. Censors compose with ``Chain`` or ``+``.
    """

    name = "censor"

    def observe(self, event: FlowEvent) -> Verdict:
        if isinstance(event, DataSeen):
            verdict = self.on_data(event)
        elif isinstance(event, FlowOpened):
            verdict = self.on_open(event)
        else:
            self.on_close(event)
            return PASS
        return verdict if verdict.censor or verdict.action is Action.PASS else verdict.by(self.name)

    def on_open(self, event: FlowOpened) -> Verdict:
        return PASS

    def on_data(self, event: DataSeen) -> Verdict:
        return PASS

    def on_close(self, event: FlowClosed) -> None:
        return None

    def describe(self) -> str:
        return self.name

    def __add__(self, other: Censor) -> Chain:
        return Chain(self, other)


class Chain(Censor):
    """Several censors on one link: each sees every event, the most severe verdict wins
    (the first of equally severe ones)."""

    def __init__(self, *censors: Censor) -> None:
        flat: list[Censor] = []
        for censor in censors:
            flat.extend(censor.censors if isinstance(censor, Chain) else (censor,))
        self.censors: tuple[Censor, ...] = tuple(flat)
        self.name = " + ".join(c.name for c in self.censors) or "none"

    def observe(self, event: FlowEvent) -> Verdict:
        worst = PASS
        for censor in self.censors:
            verdict = censor.observe(event)
            if verdict.action.value > worst.action.value:
                worst = verdict
        return worst

    def describe(self) -> str:
        return " + ".join(c.describe() for c in self.censors) or "none"

    def __iter__(self):
        return iter(self.censors)


class NoCensor(Censor):
    """An open network (the control)."""

    name = "none"


@dataclass
class _FlowState:
    flow: Flow
    sent: dict[Direction, int] = field(default_factory=lambda: {d: 0 for d in Direction})
    verdict: Verdict = PASS
    closed: bool = False


class FlowTracker:
    """Turns what the middlebox saw into censor events and remembers each flow's verdict."""

    def __init__(self, censor: Censor) -> None:
        self.censor = censor
        self._flows: dict[int, _FlowState] = {}
        self.decisions: list[tuple[Flow, Verdict]] = []  # every non-PASS verdict, in order

    def open(self, flow: Flow, at: float) -> Verdict:
        state = self._flows.setdefault(flow.id, _FlowState(flow))
        return self._apply(state, self.censor.observe(FlowOpened(flow, at)))

    def data(self, flow: Flow, direction: Direction, data: bytes, at: float) -> Verdict:
        state = self._flows[flow.id]
        if state.verdict.blocks or not data:
            return state.verdict
        event = DataSeen(flow, direction, bytes(data), state.sent[direction],
                         sum(state.sent.values()), at)
        state.sent[direction] += len(data)
        return self._apply(state, self.censor.observe(event))

    def close(self, flow: Flow, at: float) -> None:
        state = self._flows.get(flow.id)
        if state is None or state.closed:
            return
        state.closed = True
        self.censor.observe(FlowClosed(flow, at))

    def verdict(self, flow: Flow) -> Verdict:
        return self._flows[flow.id].verdict

    def bytes_seen(self, flow: Flow) -> dict[Direction, int]:
        return dict(self._flows[flow.id].sent)

    def flows(self) -> Iterable[Flow]:
        return (s.flow for s in self._flows.values())

    def _apply(self, state: _FlowState, verdict: Verdict) -> Verdict:
        if verdict.action.value > state.verdict.action.value or (
                verdict.action is Action.THROTTLE and state.verdict.action is Action.THROTTLE
                and verdict.rate != state.verdict.rate):
            state.verdict = verdict
            self.decisions.append((state.flow, verdict))
        return state.verdict
