"""Flow-controlled relays between an SSH channel and a TCP transport, counting bytes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast

from asyncssh import SSHForwarder

from ..net.bulkreads import read_in_bulk
from ..net.gatherwrite import GatherWriter


@dataclass
class ByteCounter:
    """Bytes that crossed one relay; ``up`` is client-to-destination."""

    up: int = 0
    down: int = 0


class CountingForwarder(SSHForwarder):
    """asyncssh's forwarder (which already handles pause/resume both ways) plus counts.

    ``direction`` is 'up' when this side receives the client's bytes, 'down' when it
    receives the destination's.

    A side whose transport is a socket (not an SSH channel) writes once per event-loop
    turn: the packets of one SSH read (sixteen 64 KiB packets in a 1 MiB read) reach the
    socket in one system call instead of one each, which under load cost more than the
    join. Where it can (``net.gatherwrite``) that call gathers the packets' payloads where
    they lie, so neither a join nor a slice copies them.

    ``accepts_views``: ``data_received`` takes memoryviews as well as bytes (a tunnel
    channel then hands over each payload as a view of its decrypted packet).
    """

    accepts_views = True

    def __init__(self, peer: CountingForwarder | None = None, *,
                 counter: ByteCounter | None = None, direction: str = "up") -> None:
        super().__init__(peer)
        self.counter = counter if counter is not None else ByteCounter()
        self._direction = direction
        self._pending: list[bytes | memoryview] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gather: GatherWriter | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if isinstance(transport, asyncio.WriteTransport):  # an SSH channel packetizes anyway
            self._loop = asyncio.get_running_loop()
            self._gather = GatherWriter.for_transport(transport)
            read_in_bulk(transport)

    def data_received(self, data: bytes | memoryview, datatype=None) -> None:
        if self._direction == "up":
            self.counter.up += len(data)
        else:
            self.counter.down += len(data)
        super().data_received(cast(bytes, data), datatype)

    def write(self, data: bytes | memoryview) -> None:
        if self._loop is None:
            super().write(cast(bytes, data))  # asyncio's and asyncssh's transports take any bytes-like
        elif self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self._flush)
        else:
            self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and self._transport is not None and not self._transport.is_closing():
            rest = pending if self._gather is None else self._gather.write(pending)
            if rest:
                super().write(cast(bytes, rest[0] if len(rest) == 1 else b"".join(rest)))

    def write_eof(self) -> None:
        self._flush()
        self._gather = None  # the transport refuses writes after EOF; let it say so
        super().write_eof()

    def close(self) -> None:
        self._flush()
        super().close()
