"""The middlebox: terminates each client TCP flow, asks a censor about every event and
relays, throttles, blackholes or resets accordingly.

The client's side of a flow arrives on one listening socket: in namespaces it is
redirected there by iptables (the real destination comes from ``SO_ORIGINAL_DST``),
on loopback the client connected to it directly and registered its destination first.
Either way the client's source port names the *route*: which censor (``FlowTracker``)
judges the flow -- the lab runs several clients, each behind its own censor, at once.

Blocking actions: DROP blackholes the flow (nothing more is forwarded either way and
nothing is closed: the client waits for its own timeout, as behind a censor that drops
packets); RESET aborts both ends with a TCP RST. A censor that blocks when the flow
opens never lets the middlebox connect upstream.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass
from collections.abc import Callable

from ..net.redirect import abort_with_reset
from ..net.redirect import original_destination as redirected_to
from .flows import Action, Direction, Endpoint, Flow, FlowTracker, Verdict

log = logging.getLogger(__name__)

SocketFactory = Callable[[], socket.socket]
OriginalDestination = Callable[[socket.socket], Endpoint | None]
SHAPER_TICK = 0.02  # seconds between the slices of a throttled flow


def original_destination(sock: socket.socket) -> Endpoint:
    """Where the client meant to go before iptables REDIRECT."""
    return Endpoint(*redirected_to(sock))


@dataclass(frozen=True)
class Route:
    tracker: FlowTracker
    destination: Endpoint | None = None  # known on loopback; from SO_ORIGINAL_DST in namespaces


class _Side(asyncio.Protocol):
    """One TCP connection of a relayed flow; ``direction`` is that of the bytes it reads."""

    def __init__(self, relay: _Relay, direction: Direction) -> None:
        self.relay = relay
        self.direction = direction
        self.transport: asyncio.Transport | None = None
        self._pauses: set[str] = set()

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.relay.attached(self)

    def data_received(self, data: bytes) -> None:
        self.relay.received(self, data)

    def eof_received(self) -> bool:
        return self.relay.eof(self)

    def connection_lost(self, exc) -> None:
        self.relay.lost(self, exc)

    def pause_writing(self) -> None:
        self.relay.peer(self).pause("backpressure")

    def resume_writing(self) -> None:
        self.relay.peer(self).resume("backpressure")

    def pause(self, reason: str) -> None:
        self._pauses.add(reason)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume(self, reason: str) -> None:
        self._pauses.discard(reason)
        if not self._pauses and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


class _Relay:
    """One flow: the client side, the server side once connected, and the verdict."""

    def __init__(self, box: Middlebox, flow: Flow, tracker: FlowTracker) -> None:
        self.box = box
        self.flow = flow
        self.tracker = tracker
        self.client = _Side(self, Direction.FROM_CLIENT)
        self.server = _Side(self, Direction.FROM_SERVER)
        self.verdict: Verdict | None = None
        self._pending: list[bytes] = []   # client bytes before the server side is up
        self._eof: set[Direction] = set()
        self._connect: asyncio.Task | None = None
        self._closed = False
        self._shaped = {d: bytearray() for d in Direction}   # throttled bytes not yet sent
        self._shaping = {d: False for d in Direction}

    def peer(self, side: _Side) -> _Side:
        return self.server if side is self.client else self.client

    def attached(self, side: _Side) -> None:
        if side is self.server:
            for chunk in self._pending:
                side.transport.write(chunk)  # type: ignore[union-attr]
            self._pending.clear()
            if Direction.FROM_CLIENT in self._eof:
                side.transport.write_eof()  # type: ignore[union-attr]
            return
        self._act(self.tracker.open(self.flow, self.box.clock()))
        if self.verdict is None or not self.verdict.blocks:
            self._connect = asyncio.get_running_loop().create_task(self._connect_upstream())

    async def _connect_upstream(self) -> None:
        loop = asyncio.get_running_loop()
        sock = self.box.upstream_socket()
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (self.flow.server.ip, self.flow.server.port)),
                                   self.box.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.create_connection(lambda: self.server, sock=sock)
        except (TimeoutError, OSError) as exc:
            sock.close()
            log.debug("flow %d: cannot reach %s: %s", self.flow.id, self.flow.server, exc)
            abort_with_reset(self.client.transport)  # as close as a proxy gets to "refused"
        except BaseException:
            sock.close()
            raise

    def received(self, side: _Side, data: bytes) -> None:
        if self.verdict is not None and self.verdict.blocks:
            return  # blackholed: read and discard
        self._act(self.tracker.data(self.flow, side.direction, data, self.box.clock()))
        if self.verdict is not None and self.verdict.blocks:
            return
        target = self.peer(side)
        if self.verdict is not None and self.verdict.action is Action.THROTTLE:
            self._shaped[side.direction] += data
            side.pause("throttle")  # read no more until the shaper has sent this
            if not self._shaping[side.direction]:
                self._shape(side, target)
        elif target.transport is None:
            self._pending.append(data)
        else:
            target.transport.write(data)

    def _shape(self, side: _Side, target: _Side) -> None:
        """Send throttled bytes at the verdict's rate, a tick's worth at a time."""
        queue = self._shaped[side.direction]
        self._shaping[side.direction] = bool(queue)
        if not queue or self._closed or (self.verdict is not None and self.verdict.blocks):
            side.resume("throttle")
            if not queue and side.direction in self._eof:
                self._forward_eof(side)
            return
        assert self.verdict is not None
        size = max(1, int(self.verdict.rate * SHAPER_TICK))
        chunk, queue[:] = bytes(queue[:size]), queue[size:]
        if target.transport is None:
            self._pending.append(chunk)
        else:
            target.transport.write(chunk)
        asyncio.get_running_loop().call_later(SHAPER_TICK, self._shape, side, target)

    def _act(self, verdict: Verdict) -> None:
        if verdict.action is Action.PASS or verdict == self.verdict:
            return
        self.verdict = verdict
        if verdict.action is Action.RESET:
            abort_with_reset(self.client.transport)
            abort_with_reset(self.server.transport)
        elif verdict.action is Action.DROP:
            self._pending.clear()

    def eof(self, side: _Side) -> bool:
        self._eof.add(side.direction)
        if not self._shaped[side.direction]:  # else the shaper forwards it after the last byte
            self._forward_eof(side)
        return True

    def _forward_eof(self, side: _Side) -> None:
        if self.verdict is not None and self.verdict.blocks:
            return  # a blackhole forwards nothing, not even a FIN
        target = self.peer(side)
        if target.transport is not None and not target.transport.is_closing():
            target.transport.write_eof()
        if len(self._eof) == 2 and not any(self._shaped.values()):
            self.close()

    def lost(self, side: _Side, exc) -> None:
        if side is self.server and self.verdict is not None and self.verdict.blocks:
            return  # the client must not learn anything from a blackholed flow
        peer = self.peer(side)
        if exc is not None:
            abort_with_reset(peer.transport)
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._connect is not None:
            self._connect.cancel()
        for side in (self.client, self.server):
            if side.transport is not None and not side.transport.is_closing():
                side.transport.close()
        self.tracker.close(self.flow, self.box.clock())
        self.box.finished(self)


class Middlebox:
    def __init__(self, upstream_socket: SocketFactory, original_dst: OriginalDestination | None = None, *,
                 clock: Callable[[], float] = time.monotonic, connect_timeout: float = 5.0) -> None:
        self.upstream_socket = upstream_socket
        self.original_dst = original_dst
        self.clock = clock
        self.connect_timeout = connect_timeout
        self._routes: dict[int, Route] = {}
        self._relays: set[_Relay] = set()
        self._server: asyncio.AbstractServer | None = None
        self._next_id = 1

    def expect(self, client_port: int, route: Route) -> None:
        """The next flow from ``client_port`` is judged by ``route.tracker``."""
        self._routes[client_port] = route

    async def start(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accepted, sock=listening)

    def _accepted(self) -> asyncio.Protocol:
        return _Acceptor(self)

    def adopt(self, acceptor: _Acceptor, transport: asyncio.Transport) -> _Relay | None:
        sock = transport.get_extra_info("socket")
        peer = transport.get_extra_info("peername")
        route = self._routes.pop(peer[1], None)
        destination = self.original_dst(sock) if self.original_dst is not None else None
        destination = destination or (route.destination if route else None)
        if route is None or destination is None:
            log.warning("a flow from an unregistered port %s (to %s): closed", peer[1], destination)
            transport.abort()
            return None
        relay = _Relay(self, Flow(self._next_id, Endpoint(peer[0], peer[1]), destination), route.tracker)
        self._next_id += 1
        self._relays.add(relay)
        return relay

    def finished(self, relay: _Relay) -> None:
        self._relays.discard(relay)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for relay in list(self._relays):
            relay.close()
        if self._server is not None:
            await self._server.wait_closed()


class _Acceptor(asyncio.Protocol):
    """Protocol for a freshly accepted client connection: hands it to a new relay."""

    def __init__(self, box: Middlebox) -> None:
        self.box = box
        self.side: _Side | None = None

    def connection_made(self, transport) -> None:
        relay = self.box.adopt(self, transport)
        if relay is not None:
            self.side = relay.client
            relay.client.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.side is not None:
            self.side.data_received(data)

    def eof_received(self):
        return self.side.eof_received() if self.side is not None else None

    def connection_lost(self, exc) -> None:
        if self.side is not None:
            self.side.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.side is not None:
            self.side.pause_writing()

    def resume_writing(self) -> None:
        if self.side is not None:
            self.side.resume_writing()
