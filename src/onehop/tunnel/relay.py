"""Flow-controlled relays between an SSH channel and a TCP transport, counting bytes."""

from __future__ import annotations

from dataclasses import dataclass

from asyncssh import SSHForwarder


@dataclass
class ByteCounter:
    """Bytes that crossed one relay; ``up`` is client-to-destination."""

    up: int = 0
    down: int = 0


class CountingForwarder(SSHForwarder):
    """asyncssh's forwarder (which already handles pause/resume both ways) plus counts.

    ``direction`` is 'up' when this side receives the client's bytes, 'down' when it
    receives the destination's.
    """

    def __init__(self, peer: "CountingForwarder | None" = None, *,
                 counter: ByteCounter | None = None, direction: str = "up") -> None:
        super().__init__(peer)
        self.counter = counter if counter is not None else ByteCounter()
        self._direction = direction

    def data_received(self, data: bytes, datatype=None) -> None:
        if self._direction == "up":
            self.counter.up += len(data)
        else:
            self.counter.down += len(data)
        super().data_received(data, datatype)
