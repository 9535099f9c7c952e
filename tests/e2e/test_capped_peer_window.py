"""A peer that believes a smaller window than we granted still gets window back.

Psiphon's Go SSH caps the window it believes a channel's other end granted at 4 x 32 KiB,
whatever the confirmation said. A server that returned window only after half of its own
8 MiB was consumed never sent a WINDOW_ADJUST to such a client, which stopped after 128 KiB:
every upload from Psiphon's client through onehop's server stalled (found by
bench/throughput.py's Psiphon columns; tests/interop has the live test).
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
PSIPHON_CAPPED_WINDOW = 4 * 32 * 1024


async def test_upload_beyond_a_capped_window_arrives(network):
    received = hashlib.sha256()
    count = 0
    done = asyncio.Event()
    total = 2 * 1024 * 1024

    async def sink(reader, writer):
        nonlocal count
        while count < total and (data := await reader.read(65536)):
            received.update(data)
            count += len(data)
        done.set()
        writer.close()

    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    running = await network.add()
    tunnel = await dial(running.entry, "OSSH", ClientConfig(), os.urandom(16).hex(), connect_socket)
    chan, _ = await tunnel.client.open_channel(asyncssh.SSHTCPSession, "127.0.0.1", port)
    # What Psiphon's client does on CHANNEL_OPEN_CONFIRMATION: believe at most 128 KiB.
    chan._send_window = min(chan._send_window, PSIPHON_CAPPED_WINDOW)
    payload = os.urandom(total)
    chan.write(payload)
    await asyncio.wait_for(done.wait(), 10)
    assert count == total and received.digest() == hashlib.sha256(payload).digest()
    tunnel.client.close()
    server.close()


async def test_window_is_not_returned_for_bytes_a_paused_session_has_not_taken(network):
    """A slow destination must hold the client at about one window: each resume of the
    paused relay must not return window for bytes still queued in asyncssh's buffer."""
    from onehop.tunnel.tuning import CHANNEL_WINDOW
    stop = asyncio.Event()

    async def slow_reader(reader, writer):
        while not stop.is_set():
            if not await reader.read(16384):
                break
            await asyncio.sleep(0.02)
        writer.close()

    server = await asyncio.start_server(slow_reader, "127.0.0.1", 0, limit=16384)
    port = server.sockets[0].getsockname()[1]
    running = await network.add()
    tunnel = await dial(running.entry, "OSSH", ClientConfig(), os.urandom(16).hex(), connect_socket)
    chan, _ = await tunnel.client.open_channel(asyncssh.SSHTCPSession, "127.0.0.1", port)
    total = 6 * CHANNEL_WINDOW
    chan.write(os.urandom(total))
    await asyncio.sleep(4)
    sent = total - chan.get_write_buffer_size()
    (session,) = running.server.clients
    delivered = session.counters.tcp_bytes.up
    # In flight beyond what the destination took: one window, plus socket buffers.
    assert sent - delivered <= CHANNEL_WINDOW + 8 * 1024 * 1024, (sent, delivered)
    stop.set()
    tunnel.client.close()
    server.close()
