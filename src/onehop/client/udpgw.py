"""UDP through the tunnel, client side: flows multiplexed over one udpgw channel.

``UdpgwClient.open(opener)`` opens a ``direct-tcpip`` channel to the udpgw address
(127.0.0.1:7300, which servers intercept) through any object with Psiphon-style
``open_channel(session_factory, host, port)`` (the Controller). Each ``UdpgwFlow`` is
one conn_id bound to one destination; a flow with ``dns`` set asks the server to send
its datagrams to the server's own resolver. A flow's first datagram carries the rebind
flag, so a recycled conn_id never joins a stale flow on the server. The framing is
``core.udpgw``; UDP semantics hold: nothing is retried and oversize datagrams are refused.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol
from collections.abc import Callable

import asyncssh

from ..core.sansio import drain
from ..core.udpgw import (FLAG_DNS, FLAG_REBIND, MAX_PAYLOAD, PacketReceived, UdpgwParser,
                          address_bytes, encode_packet)
from ..errors import RemoteProtocolError, TunnelError

log = logging.getLogger(__name__)

UDPGW_HOST = "127.0.0.1"
UDPGW_PORT = 7300
#: Datagrams are dropped while this much waits to go up the channel.
MAX_QUEUED_UPSTREAM = 256 * 1024


class ChannelOpener(Protocol):
    async def open_channel(self, session_factory, host: str, port: int): ...


class UdpgwFlow:
    """One conn_id: datagrams to one destination and the replies that come back."""

    def __init__(self, client: UdpgwClient, conn_id: int, ip: str, port: int, dns: bool,
                 on_datagram: Callable[[bytes], None]) -> None:
        self.client = client
        self.conn_id = conn_id
        self.address = address_bytes(ip)
        self.port = port
        self.dns = dns
        self.on_datagram = on_datagram
        self._first = True
        self.closed = False

    def send(self, payload: bytes) -> bool:
        """Queue one datagram; False if it was dropped (closed, too big, channel backed up)."""
        if self.closed or len(payload) > MAX_PAYLOAD:
            return False
        flags = (FLAG_DNS if self.dns else 0) | (FLAG_REBIND if self._first else 0)
        if not self.client.write(encode_packet(self.conn_id, self.address, self.port, payload, flags)):
            return False
        self._first = False
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.client.release(self)


class UdpgwClient(asyncssh.SSHTCPSession):
    """The client end of one udpgw channel."""

    def __init__(self) -> None:
        self._parser = UdpgwParser()
        self._flows: dict[int, UdpgwFlow] = {}
        self._next_id = 0
        self._chan: asyncssh.SSHTCPChannel | None = None
        self.closed = asyncio.Event()

    @classmethod
    async def open(cls, opener: ChannelOpener, host: str = UDPGW_HOST, port: int = UDPGW_PORT) -> UdpgwClient:
        """Open the channel; raises what the opener raises (no tunnel, channel refused)."""
        client = cls()
        await opener.open_channel(lambda: client, host, port)
        return client

    @property
    def is_open(self) -> bool:
        return self._chan is not None and not self.closed.is_set()

    def connection_made(self, chan) -> None:
        self._chan = chan

    def data_received(self, data: bytes, datatype) -> None:
        self._parser.receive_data(data)
        try:
            for event in drain(self._parser):
                if not isinstance(event, PacketReceived):
                    continue
                flow = self._flows.get(event.conn_id)
                if flow is not None:
                    flow.on_datagram(event.payload)
        except RemoteProtocolError as exc:
            log.info("udpgw channel closed: the server sent %s", exc.reason)
            self.close()

    def connection_lost(self, exc) -> None:
        self._chan = None
        for flow in list(self._flows.values()):
            flow.closed = True
        self._flows.clear()
        self.closed.set()

    def open_flow(self, ip: str, port: int, on_datagram: Callable[[bytes], None], *,
                  dns: bool = False) -> UdpgwFlow:
        """A new flow to ``ip``:``port`` (an IP literal); replies go to ``on_datagram``."""
        if len(self._flows) >= 0x10000:
            raise TunnelError("udpgw", "all 65536 conn_ids are in use")
        while self._next_id in self._flows:
            self._next_id = (self._next_id + 1) & 0xFFFF
        flow = UdpgwFlow(self, self._next_id, ip, port, dns, on_datagram)
        self._flows[flow.conn_id] = flow
        self._next_id = (self._next_id + 1) & 0xFFFF
        return flow

    def write(self, message: bytes) -> bool:
        chan = self._chan
        if chan is None or chan.get_write_buffer_size() > MAX_QUEUED_UPSTREAM:
            return False
        chan.write(message)
        return True

    def release(self, flow: UdpgwFlow) -> None:
        if self._flows.get(flow.conn_id) is flow:
            del self._flows[flow.conn_id]

    @property
    def flow_count(self) -> int:
        return len(self._flows)

    def close(self) -> None:
        if self._chan is not None:
            self._chan.close()
