"""A client that sends API requests and never reads the answers cannot grow the server's
memory: each psiphon-status asking for 16 KiB of response padding costs the client ~200
bytes, and the server queued every answer in its transport's write buffer (asyncssh
ignores pause_writing), about 80 times what the client sent, for as long as it liked.
Now the server stops reading a client whose unread answers pass the high-water mark."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from onehop.client.config import ClientConfig
from onehop.client.dialer import dial
from onehop.net.dial import connect_socket

pytestmark = pytest.mark.e2e

STATUS = json.dumps({"propagation_channel_id": "ABCDEF0123456789", "sponsor_id": "0123456789ABCDEF",
                     "client_version": "1", "client_platform": "Linux", "pad_response": "16384",
                     "statusData": {}}).encode()
REQUESTS = 2000  # ~32 MiB of answers


async def test_unread_answers_do_not_pile_up_in_the_server(network):
    running = await network.add()
    tunnel = await dial(running.entry, "OSSH", ClientConfig(), os.urandom(16).hex(), connect_socket)
    conn = tunnel.client.conn
    (session,) = running.server.clients
    conn._transport.pause_reading()  # a client that never reads what the server sends
    for i in range(REQUESTS):
        conn._send_global_request(b"psiphon-status", STATUS, want_reply=True)
        if i % 200 == 0:
            await asyncio.sleep(0)
    peak = 0
    for _ in range(40):
        await asyncio.sleep(0.1)
        transport = session.conn._transport
        if transport is None:
            break
        peak = max(peak, transport.get_write_buffer_size())
    assert peak < 4 * 1024 * 1024, f"{peak} bytes of answers queued for a client that reads nothing"
    conn._transport.resume_reading()
    tunnel.client.close()
