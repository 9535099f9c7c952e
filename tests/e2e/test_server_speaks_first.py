"""A destination that sends before the client's channel is connected loses nothing.

asyncssh's forwarder keeps bytes that arrive before its peer is connected in a buffer that
nothing flushes; the server read from a destination as soon as it was dialled, so a
destination that speaks first (an SMTP or SSH banner, or a fast download) lost its first
bytes (found with bench/throughput.py's Psiphon columns: 128,000 bytes of 256 MiB).
"""

from __future__ import annotations

import asyncio
import hashlib
import os

import asyncssh
import pytest

from onehop.client.config import ClientConfig
from onehop.client.dialer import dial
from onehop.net.dial import connect_socket

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("size", [20, 4 * 1024 * 1024])
async def test_first_bytes_of_a_destination_that_speaks_first_arrive(network, size):
    payload = os.urandom(size)

    async def speaker(reader, writer):
        writer.write(payload)  # at once, before the client can have sent anything
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    server = await asyncio.start_server(speaker, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    running = await network.add()
    tunnel = await dial(running.entry, "OSSH", ClientConfig(), os.urandom(16).hex(), connect_socket)
    received = bytearray()
    eof = asyncio.Event()

    class Collect(asyncssh.SSHTCPSession):
        def data_received(self, data, datatype):
            received.extend(data)

        def eof_received(self):
            eof.set()
            return True

    chan, _ = await tunnel.client.open_channel(Collect, "127.0.0.1", port)
    await asyncio.wait_for(eof.wait(), 20)
    assert len(received) == size and hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
    chan.close()
    tunnel.client.close()
    server.close()
