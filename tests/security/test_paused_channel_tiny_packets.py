"""Attack: a full channel window of tiny packets while the destination does not read.

An authenticated client opens a forward to a destination it controls that never reads;
once the server's socket buffers are full the server's channel pauses, and the client
spends the rest of the window (8 MiB) as CHANNEL_DATA packets of 2 bytes each.
asyncssh buffered one list entry per packet: measured against a 2-worker server, 2 MB
of window sent that way grew the worker by 100 MiB (about 50 bytes per byte of window,
per channel), and resuming popped the entries from the front of the list (quadratic).
The server's channels now gather consecutive packets into one entry while paused.
"""

from __future__ import annotations

import asyncssh
from asyncssh.constants import MSG_CHANNEL_DATA
from asyncssh.packet import String, UInt32

from onehop.tunnel.asyncssh_compat import COALESCE_LIMIT
from tests.helpers.waiting import wait_until
from tests.tunnel.test_asyncssh_compat import Loopback, Policy

PACKETS = 20_000
PIECE = b"ab"


class Recording(asyncssh.SSHTCPSession):
    def __init__(self, policy: RecordingPolicy) -> None:
        self.policy = policy

    def connection_made(self, chan) -> None:
        self.policy.channels.append(chan)

    def data_received(self, data, datatype) -> None:
        self.policy.received.extend(data)
        self.policy.types.add(type(data))


class RecordingPolicy(Policy):
    def __init__(self) -> None:
        super().__init__()
        self.received = bytearray()
        self.types: set[type] = set()

    async def open_forward(self, host: str, port: int, *, no_split: bool = False):
        return Recording(self)


async def test_tiny_packets_to_a_paused_channel_are_buffered_compactly_and_intact():
    loopback = Loopback()
    loopback.policy = RecordingPolicy()
    client = await loopback.start()
    try:
        chan, _ = await client.open_channel(asyncssh.SSHTCPSession, "127.0.0.1", 9)
        await wait_until(lambda: loopback.policy.channels, 10)
        server_chan = loopback.policy.channels[0]
        server_chan.pause_reading()  # the destination stopped reading
        window = server_chan._recv_window
        for _ in range(PACKETS):
            client.conn.send_packet(MSG_CHANNEL_DATA, UInt32(chan._send_chan), String(PIECE))
        await wait_until(lambda: window - server_chan._recv_window == PACKETS * len(PIECE), 30)

        assert len(server_chan._recv_buf) <= PACKETS * len(PIECE) // COALESCE_LIMIT + 1

        server_chan.resume_reading()
        await wait_until(lambda: len(loopback.policy.received) == PACKETS * len(PIECE), 30)
        assert bytes(loopback.policy.received) == PIECE * PACKETS
        assert loopback.policy.types == {bytes}  # what was gathered reaches the session as bytes
        chan.close()
    finally:
        await loopback.close()
