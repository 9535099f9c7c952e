"""One client's TCP port forwards, under its traffic rules.

``PortForwards.open_tcp`` waits for a dialing slot (at most MaxTCPDialingPortForwardCount
dials at once; a bounded queue behind them, full = rejected), resolves, checks the
policy, closes the least recently active forward when MaxTCPPortForwardCount is reached,
and dials within DialTCPPortForwardTimeoutMilliseconds (covering the wait and the
resolution too). ``TCPRelay`` then joins the SSH channel to the destination: bytes are
counted, the destination side stops reading while the client's downstream rate limit
is in debt, and a forward idle for IdleTCPPortForwardTimeoutMilliseconds is closed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from asyncssh.misc import ChannelOpenError

from ..tunnel.relay import CountingForwarder
from .forwarding import OPEN_CONNECT_FAILED, dial, prohibited, resolve
from .idle import IdleTimer
from .splittunnel import CHANNEL_REJECT_REASON_SPLIT_TUNNEL, split_tunnel_rejection
from .throttle import PausableReader
from .tunnelstate import ForwardCounts

if TYPE_CHECKING:
    from .seams import ForwardingSession

#: Queue length behind the dialing slots when both counts are 0 (as Psiphon).
DEFAULT_QUEUE = 1024


class RelaySide(CountingForwarder):
    """One end of a TCP relay: 'up' faces the SSH channel, 'down' the destination."""

    def __init__(self, relay: TCPRelay, peer: RelaySide | None = None, *, direction: str) -> None:
        super().__init__(peer, counter=relay.session.counters.tcp_bytes, direction=direction)
        self.relay = relay
        self.reader = PausableReader()
        self.is_destination = direction == "down"

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.reader.attach(transport)
        if self.is_destination:
            # Read nothing from the destination until the client's channel can carry it:
            # asyncssh's forwarder keeps bytes that arrive before its peer is connected in
            # a buffer nothing flushes (a server that speaks first lost its first bytes).
            self.reader.flow_pause()
            if self.relay.session.downstream_limited:
                self.reader.read_small()  # the client's downstream is rate-limited
        elif isinstance(self._peer, RelaySide):
            self._peer.reader.flow_resume()  # the channel is open: start the relay

    def data_received(self, data: bytes | memoryview, datatype=None) -> None:
        self.relay.activity(self, len(data))  # charged first: it may end the tunnel
        if not self.relay.session.closing:
            super().data_received(data, datatype)

    def pause_reading(self) -> None:
        self.reader.flow_pause()

    def resume_reading(self) -> None:
        self.reader.flow_resume()

    def close(self) -> None:
        self.reader.close()
        super().close()
        self.relay.closed()


class TCPRelay:
    """A forward's idle timer and bookkeeping; the data moves through its RelaySides."""

    __slots__ = ("_closed", "_down", "idle", "manager", "session")

    def __init__(self, manager: PortForwards) -> None:
        self.session = manager.session
        self.manager = manager
        self.idle = IdleTimer(lambda: self.session.rules.idle_tcp_timeout, self.close)
        self._down: RelaySide | None = None
        self._closed = False

    @property
    def last_activity(self) -> float:
        return self.idle.last_activity

    def start(self, down: RelaySide) -> None:
        self._down = down
        self.idle.start()

    def activity(self, side: RelaySide, n: int) -> None:
        self.idle.touch()
        if side is self._down:
            side.reader.throttle(self.session.charge_downstream(n))

    def close(self) -> None:
        if self._down is not None:
            self._down.close()  # closes both sides, which calls closed()
        else:
            self.closed()

    def closed(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.idle.cancel()
        self.manager.forget(self)


class DialGate:
    """At most ``limit`` dials at once; later ones wait in a bounded FIFO queue."""

    def __init__(self) -> None:
        self.active = 0
        self._waiters: deque[asyncio.Future] = deque()

    async def acquire(self, limit: int, queue_limit: int, timeout: float | None) -> None:
        """Take a slot; ChannelOpenError when the queue is full or the wait times out."""
        if limit <= 0 or (self.active < limit and not self._waiters):
            self.active += 1
            return
        if len(self._waiters) >= queue_limit:
            raise prohibited()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except BaseException as exc:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot arrived as we gave up: pass it on
            if isinstance(exc, asyncio.TimeoutError):
                raise ChannelOpenError(OPEN_CONNECT_FAILED, "connection timed out") from None
            raise
        # the releaser handed its slot over: ``active`` already counts us

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # hand the slot over
                return
        self.active -= 1


class PortForwards:
    """Every TCP forward of one client; counted in the session's ``counters.tcp_forwards``."""

    def __init__(self, session: ForwardingSession) -> None:
        self.session = session
        self.relays: dict[TCPRelay, None] = {}
        self.gate = DialGate()
        self.counts: ForwardCounts = session.counters.tcp_forwards

    async def open_tcp(self, host: str, port: int, *, no_split: bool = False) -> RelaySide:
        """The channel-side end of a new relay to (host, port), or ChannelOpenError (also
        Psiphon's split-tunnel answer when the destination lies in a region the client
        wants untunnelled, unless ``no_split``)."""
        try:
            return await self._open(host, port, no_split)
        except ChannelOpenError as exc:
            if exc.code != CHANNEL_REJECT_REASON_SPLIT_TUNNEL:
                self.counts.rejected += 1
            raise

    async def _open(self, host: str, port: int, no_split: bool = False) -> RelaySide:
        rules = self.session.rules
        loop = asyncio.get_running_loop()
        deadline = loop.time() + rules.dial_tcp_timeout if rules.dial_tcp_timeout > 0 else None
        remaining = lambda: None if deadline is None else max(0.001, deadline - loop.time())  # noqa: E731
        queue = rules.max_tcp + rules.max_tcp_dialing or DEFAULT_QUEUE
        await self.gate.acquire(rules.max_tcp_dialing, queue, remaining())
        try:
            ip = await asyncio.wait_for(resolve(host), remaining())
            if not self.session.forward_decision("tcp", ip, port).allowed:
                raise prohibited()
            if not no_split and self.session.in_split_region(ip):
                self.counts.split += 1
                raise split_tunnel_rejection()
            self._make_room(rules.max_tcp)
            relay = TCPRelay(self)
            down = await dial(ip, port, lambda: RelaySide(relay, direction="down"), remaining())
        except TimeoutError:
            raise ChannelOpenError(OPEN_CONNECT_FAILED, "connection timed out") from None
        finally:
            self.gate.release()
        assert isinstance(down, RelaySide)
        self.relays[relay] = None
        relay.start(down)
        self.counts.note_open(len(self.relays))
        return RelaySide(relay, down, direction="up")

    def _make_room(self, limit: int) -> None:
        """Close least recently active forwards until one more fits under ``limit``."""
        while limit > 0 and len(self.relays) >= limit:
            oldest = min(self.relays, key=lambda r: r.last_activity)
            oldest.close()
            self.relays.pop(oldest, None)

    def forget(self, relay: TCPRelay) -> None:
        self.relays.pop(relay, None)

    def close_all(self) -> None:
        for relay in list(self.relays):
            relay.close()
