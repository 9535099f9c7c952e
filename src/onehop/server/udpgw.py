"""UDP through the tunnel: the server end of a udpgw channel.

A client's ``direct-tcpip`` to ``UDPInterceptUdpgwServerAddress`` (127.0.0.1:7300 by
default) is not dialled: it becomes a ``UdpgwChannel`` speaking the udpgw framing of
``core.udpgw``. Each conn_id is a UDP flow with its own connected socket; a packet with
the DNS flag goes to the server's resolver (``DNSResolverIPAddress``) whatever its
destination. As in Psiphon there are no error messages: packets the policy refuses,
packets for a flow bound elsewhere, and replies that do not fit are dropped. A client
has at most one udpgw channel (a new one replaces the old), at most MaxUDPPortForwardCount
flows (the least recently active one makes room) and a flow idle for
IdleUDPPortForwardTimeoutMilliseconds is closed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import TYPE_CHECKING

import asyncssh

from ..core.sansio import drain
from ..core.udpgw import MAX_PAYLOAD, PacketReceived, UdpgwParser, encode_packet
from ..errors import RemoteProtocolError
from .idle import IdleTimer
from .throttle import PausableReader

if TYPE_CHECKING:
    from .seams import UdpgwSession

log = logging.getLogger(__name__)

#: Replies are dropped while this much is queued towards the client (UDP may drop).
MAX_QUEUED_DOWNSTREAM = 256 * 1024
#: Datagrams kept for a flow whose socket is still being set up.
MAX_PENDING = 16


def first_nameserver(path: str = "/etc/resolv.conf") -> tuple[str, int] | None:
    """The first ``nameserver`` of resolv.conf as (ip, 53); None if there is none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                ipaddress.ip_address(parts[1].split("%", 1)[0])
            except ValueError:
                continue
            return parts[1], 53  # a link-local address keeps its %scope
    return None


class UdpFlow(asyncio.DatagramProtocol):
    """One conn_id: a connected UDP socket to its destination (or the resolver)."""

    def __init__(self, channel: UdpgwChannel, packet: PacketReceived, dial: tuple[str, int]) -> None:
        self.channel = channel
        self.conn_id = packet.conn_id
        self.address = packet.address  # replies carry the address the client asked for
        self.port = packet.port
        self.dial = dial
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: list[bytes] = []
        self.reader = PausableReader()
        self.idle = IdleTimer(lambda: channel.session.rules.idle_udp_timeout, self.close)
        self._task: asyncio.Task | None = None
        self.closed = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._open())
        self.idle.start()

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_datagram_endpoint(lambda: self, remote_addr=self.dial)
        except OSError as exc:
            log.debug("udp flow socket failed: %s", exc.strerror)
            self.close()

    def connection_made(self, transport) -> None:
        if self.closed:
            transport.close()
            return
        self.transport = transport
        self.reader.attach(transport)
        for payload in self.pending:
            transport.sendto(payload)
        self.pending = []

    def send(self, payload: bytes) -> None:
        self.idle.touch()
        if self.transport is not None:
            self.transport.sendto(payload)
        elif len(self.pending) < MAX_PENDING:
            self.pending.append(payload)

    def datagram_received(self, data: bytes, addr) -> None:
        self.idle.touch()
        self.channel.deliver(self, data)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors: UDP has no way to say so, and udpgw neither

    def connection_lost(self, exc) -> None:
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.idle.cancel()
        self.reader.close()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self.transport is not None:
            self.transport.close()
        self.channel.forget(self)


class UdpgwChannel(asyncssh.SSHTCPSession):
    """The server end of one client's udpgw channel."""

    def __init__(self, session: UdpgwSession) -> None:
        self.session = session
        self.parser = UdpgwParser()
        self.flows: dict[int, UdpFlow] = {}
        self.chan: asyncssh.SSHTCPChannel | None = None
        self.counts = session.counters.udp_forwards
        self._bytes = session.counters.udp_bytes

    def connection_made(self, chan) -> None:
        self.chan = chan

    def data_received(self, data: bytes, datatype) -> None:
        self.parser.receive_data(data)
        try:
            for event in drain(self.parser):
                if isinstance(event, PacketReceived):
                    self._packet(event)
        except RemoteProtocolError as exc:
            log.debug("udpgw channel closed: %s", exc.reason)
            self.close()

    def _packet(self, packet: PacketReceived) -> None:
        flow = self.flows.get(packet.conn_id)
        if flow is not None and packet.discard_existing:
            flow.close()
            flow = None
        if flow is not None and (flow.address, flow.port) != (packet.address, packet.port):
            return  # the flow is bound to another destination: drop, as Psiphon
        if flow is None:
            flow = self._new_flow(packet)
            if flow is None:
                return
        self._bytes.up += len(packet.payload)
        flow.send(packet.payload)

    def _new_flow(self, packet: PacketReceived) -> UdpFlow | None:
        session = self.session
        if packet.forward_dns:
            resolver = session.dns_resolver
            if resolver is None or not session.forward_decision("udp", resolver[0], 53, dns=True).allowed:
                self.counts.rejected += 1
                return None
            dial = resolver
        else:
            if not session.forward_decision("udp", packet.ip, packet.port).allowed:
                self.counts.rejected += 1
                return None
            dial = (packet.ip, packet.port)
        self._make_room(session.rules.max_udp)
        flow = UdpFlow(self, packet, dial)
        self.flows[packet.conn_id] = flow
        flow.start()
        self.counts.note_open(len(self.flows))
        return flow

    def _make_room(self, limit: int) -> None:
        while limit > 0 and len(self.flows) >= limit:
            min(self.flows.values(), key=lambda f: f.idle.last_activity).close()

    def deliver(self, flow: UdpFlow, data: bytes) -> None:
        """A reply from ``flow``'s destination, framed towards the client."""
        chan = self.chan
        if chan is None or len(data) > MAX_PAYLOAD or chan.get_write_buffer_size() > MAX_QUEUED_DOWNSTREAM:
            return
        flow.reader.throttle(self.session.charge_downstream(len(data)))  # may end the tunnel
        if self.session.closing:
            return
        chan.write(encode_packet(flow.conn_id, flow.address, flow.port, data))
        self._bytes.down += len(data)

    def forget(self, flow: UdpFlow) -> None:
        if self.flows.get(flow.conn_id) is flow:
            del self.flows[flow.conn_id]

    def connection_lost(self, exc) -> None:
        for flow in list(self.flows.values()):
            flow.close()
        self.chan = None
        self.session.udpgw_closed(self)

    def close(self) -> None:
        if self.chan is not None:
            self.chan.close()
        else:
            for flow in list(self.flows.values()):
                flow.close()
