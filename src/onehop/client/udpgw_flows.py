"""Local datagrams onto udpgw flows: the part the DNS forwarder and the whole-device UDP
relay share.

Each key (a source, or a source and destination) is one flow on one udpgw channel. The
channel is opened at the first datagram and again after it closes (a lost tunnel);
datagrams that arrive meanwhile wait in a small queue, and when no tunnel comes they are
dropped: UDP applications retry, as on any lossy network. Flows idle for ``flow_idle``
seconds, and the oldest beyond ``max_flows``, are forgotten.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

import asyncssh

from ..errors import TunnelError
from .udpgw import ChannelOpener, UdpgwClient, UdpgwFlow

log = logging.getLogger(__name__)

#: Opens the flow for a key on the channel (its reply callback knows where answers go).
FlowOpener = Callable[[UdpgwClient], UdpgwFlow]


class UdpgwFlows:
    def __init__(self, opener: ChannelOpener, *, name: str, flow_idle: float, max_flows: int, max_queued: int,
                 dropped: Callable[[int], None], clock: Callable[[], float] = time.monotonic) -> None:
        self._opener = opener
        self._name = name
        self._flow_idle, self._max_flows, self._max_queued = flow_idle, max_flows, max_queued
        self._dropped = dropped
        self._clock = clock
        self.client: UdpgwClient | None = None
        self._connecting: asyncio.Task | None = None
        self._queue: list[tuple[Hashable, bytes, FlowOpener]] = []
        self._flows: OrderedDict[Hashable, tuple[UdpgwFlow, float]] = OrderedDict()
        self._closed = False

    def send(self, key: Hashable, data: bytes, open_flow: FlowOpener) -> None:
        """Send ``data`` on ``key``'s flow (``open_flow`` makes it where there is none)."""
        client = self.client
        if client is not None and client.is_open:
            self._send(client, key, data, open_flow)
        elif len(self._queue) < self._max_queued:
            self._queue.append((key, data, open_flow))
            self._connect()
        else:
            self._dropped(1)

    def _connect(self) -> None:
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.get_running_loop().create_task(self._open_channel())

    async def _open_channel(self) -> None:
        self._flows.clear()
        try:
            client = await UdpgwClient.open(self._opener)
        except (TimeoutError, TunnelError, asyncssh.Error, OSError) as exc:
            log.info("%s: no udpgw channel (%s); %d datagrams dropped", self._name, exc, len(self._queue))
            self._dropped(len(self._queue))
            self._queue.clear()
            return
        if self._closed:  # closed while the channel opened
            client.close()
            return
        self.client = client
        queued, self._queue = self._queue, []
        for key, data, open_flow in queued:
            self._send(client, key, data, open_flow)

    def _send(self, client: UdpgwClient, key: Hashable, data: bytes, open_flow: FlowOpener) -> None:
        now = self._clock()
        entry = self._flows.pop(key, None)
        flow = entry[0] if entry and not entry[0].closed else None
        if flow is None:
            self._expire(now)
            flow = open_flow(client)
        self._flows[key] = (flow, now)
        if not flow.send(data):
            self._dropped(1)

    def _expire(self, now: float) -> None:
        """Forget idle flows, and the oldest ones beyond ``max_flows`` - 1."""
        while self._flows:
            key, (flow, used) = next(iter(self._flows.items()))
            if now - used < self._flow_idle and len(self._flows) < self._max_flows and not flow.closed:
                break
            del self._flows[key]
            flow.close()

    def close(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        if self.client is not None:
            self.client.close()
