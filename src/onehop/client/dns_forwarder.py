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
import logging
import time
from collections import OrderedDict

import asyncssh

from ..core.udpgw import MAX_PAYLOAD
from ..errors import TunnelError
from .udpgw import ChannelOpener, UdpgwClient, UdpgwFlow

log = logging.getLogger(__name__)

#: The destination written in DNS-flagged packets; the server replaces it by its resolver.
NOMINAL_RESOLVER = ("8.8.8.8", 53)
FLOW_IDLE = 30.0
MAX_FLOWS = 256
MAX_QUEUED = 64


class DnsForwarder(asyncio.DatagramProtocol):
    def __init__(self, opener: ChannelOpener, *, clock=time.monotonic) -> None:
        self._opener = opener
        self._clock = clock
        self._transport: asyncio.DatagramTransport | None = None
        self._client: UdpgwClient | None = None
        self._connecting: asyncio.Task | None = None
        self._queue: list[tuple[bytes, tuple]] = []
        self._flows: OrderedDict[tuple, tuple[UdpgwFlow, float]] = OrderedDict()
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
        client = self._client
        if client is not None and client.is_open:
            self._send(client, data, addr)
        elif len(self._queue) < MAX_QUEUED:
            self._queue.append((data, addr))
            self._connect()
        else:
            self.dropped += 1

    def _connect(self) -> None:
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.get_running_loop().create_task(self._open_channel())

    async def _open_channel(self) -> None:
        self._flows.clear()
        try:
            client = await UdpgwClient.open(self._opener)
        except (TunnelError, asyncssh.Error, OSError, asyncio.TimeoutError) as exc:
            log.info("DNS forwarder: no udpgw channel (%s); %d queries dropped", exc, len(self._queue))
            self.dropped += len(self._queue)
            self._queue.clear()
            return
        if self._transport is None:  # closed while the channel opened
            client.close()
            return
        self._client = client
        queued, self._queue = self._queue, []
        for data, addr in queued:
            self._send(client, data, addr)

    def _send(self, client: UdpgwClient, data: bytes, addr) -> None:
        now = self._clock()
        entry = self._flows.pop(addr, None)
        flow = entry[0] if entry and not entry[0].closed else None
        if flow is None:
            self._expire(now)
            flow = client.open_flow(*NOMINAL_RESOLVER, lambda reply, a=addr: self._answer(reply, a), dns=True)
        self._flows[addr] = (flow, now)
        if not flow.send(data):
            self.dropped += 1

    def _expire(self, now: float) -> None:
        """Forget idle flows, and the oldest ones beyond MAX_FLOWS - 1."""
        while self._flows:
            addr, (flow, used) = next(iter(self._flows.items()))
            if now - used < FLOW_IDLE and len(self._flows) < MAX_FLOWS and not flow.closed:
                break
            del self._flows[addr]
            flow.close()

    def _answer(self, reply: bytes, addr) -> None:
        if self._transport is not None:
            self.answers += 1
            self._transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # an application went away before its answer came

    def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self._client is not None:
            self._client.close()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def wait_closed(self) -> None:
        if self._client is not None:
            await self._client.closed.wait()


async def start_dns_forwarder(opener: ChannelOpener, host: str, port: int) -> DnsForwarder:
    """Listen for DNS queries on UDP ``host``:``port`` (0: any free port, see ``.port``)."""
    forwarder = DnsForwarder(opener)
    loop = asyncio.get_running_loop()
    try:
        await loop.create_datagram_endpoint(lambda: forwarder, local_addr=(host, port))
    except OSError as exc:
        raise TunnelError("local-proxy", f"cannot listen for DNS on {host}:{port}: {exc.strerror}") from None
    return forwarder
