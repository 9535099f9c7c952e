"""A local DNS forwarder (``--dns-port``): UDP queries answered through the tunnel.

Applications send queries to a local UDP port; each source address becomes a udpgw
flow with the DNS flag, so the server hands the query to its own resolver and the
answer comes back to that source. The udpgw channel is opened on the first query and
again after it closes (a lost tunnel); queries that arrive meanwhile wait in a small
queue, and when no tunnel comes they are dropped: the application's resolver retries,
as it would on any lossy network. Flows idle for ``FLOW_IDLE`` seconds are forgotten.
"""

from __future__ import annotations

import asyncio
import time

from ..core.udpgw import MAX_PAYLOAD
from ..errors import TunnelError
from .udpgw import ChannelOpener
from .udpgw_flows import UdpgwFlows

#: The destination written in DNS-flagged packets; the server replaces it by its resolver.
NOMINAL_RESOLVER = ("8.8.8.8", 53)
FLOW_IDLE = 30.0
MAX_FLOWS = 256
MAX_QUEUED = 64


class DnsForwarder(asyncio.DatagramProtocol):
    def __init__(self, opener: ChannelOpener, *, clock=time.monotonic) -> None:
        self._transport: asyncio.DatagramTransport | None = None
        self._flows = UdpgwFlows(opener, name="DNS forwarder", flow_idle=FLOW_IDLE, max_flows=MAX_FLOWS,
                                 max_queued=MAX_QUEUED, dropped=self._count_dropped, clock=clock)
        self.queries = 0
        self.answers = 0
        self.dropped = 0

    @property
    def port(self) -> int:
        assert self._transport is not None
        return self._transport.get_extra_info("sockname")[1]

    def connection_made(self, transport) -> None:
        self._transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        if not data or len(data) > MAX_PAYLOAD:
            self.dropped += 1
            return
        self.queries += 1
        self._flows.send(addr, data, lambda client: client.open_flow(
            *NOMINAL_RESOLVER, lambda reply: self._answer(reply, addr), dns=True))

    def _count_dropped(self, count: int) -> None:
        self.dropped += count

    def _answer(self, reply: bytes, addr) -> None:
        if self._transport is not None:
            self.answers += 1
            self._transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # an application went away before its answer came

    def close(self) -> None:
        self._flows.close()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def wait_closed(self) -> None:
        if self._flows.client is not None:
            await self._flows.client.closed.wait()


async def start_dns_forwarder(opener: ChannelOpener, host: str, port: int) -> DnsForwarder:
    """Listen for DNS queries on UDP ``host``:``port`` (0: any free port, see ``.port``)."""
    forwarder = DnsForwarder(opener)
    loop = asyncio.get_running_loop()
    try:
        await loop.create_datagram_endpoint(lambda: forwarder, local_addr=(host, port))
    except OSError as exc:
        raise TunnelError("local-proxy", f"cannot listen for DNS on {host}:{port}: {exc.strerror}") from None
    return forwarder
