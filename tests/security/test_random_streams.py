"""random@psiphon.ca channels cannot make the server buffer or send beyond a client's limits.

Before: the server wrote the whole requested amount (up to 10 MiB) into asyncssh's buffer at
once, whatever the channel window, with no cap on streams and no traffic-rule charge.
"""

from __future__ import annotations

import asyncio
import os

import asyncssh
import pytest

import onehop.tunnel.server as tunnel_server
from onehop.client.config import ClientConfig
from onehop.client.dialer import dial
from onehop.net.dial import connect_socket
from tests.helpers.channels import open_random_stream, random_stream_bytes
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.e2e
TEN_MIB = 10 * 1024 * 1024


async def open_random(conn, downstream: int, window: int = 1024):
    """A stream we never read: the server's window stays at what we granted."""
    return await open_random_stream(conn, 0, downstream, window=window)


@pytest.fixture
def urandom_counter(monkeypatch):
    made = [0]
    real = os.urandom

    def counting(n: int) -> bytes:
        made[0] += n
        return real(n)
    monkeypatch.setattr(tunnel_server, "random_bytes", counting)
    return made


async def test_random_streams_follow_the_window_and_are_capped(network, urandom_counter):
    running = await network.add()
    tunnel = await dial(running.entry, "OSSH", ClientConfig(), os.urandom(16).hex(), connect_socket)
    conn = tunnel.client.conn
    chans = [await open_random(conn, TEN_MIB) for _ in range(tunnel_server.MAX_OPEN_RANDOM_STREAMS)]
    await asyncio.sleep(0.5)  # room to overrun, were the window not obeyed (no signal for "did not")
    # What a stream may make: the window we granted, asyncssh's high-water mark of unsent
    # bytes and one chunk, not 10 MiB.
    per_stream = 1024 + 64 * 1024 + tunnel_server.RANDOM_STREAM_CHUNK
    assert urandom_counter[0] <= len(chans) * per_stream, urandom_counter[0]
    with pytest.raises(asyncssh.ChannelOpenError):
        await open_random(conn, TEN_MIB)
    chans[0].close()

    async def reopened():
        try:
            return await open_random(conn, 1000, window=1 << 20)
        except asyncssh.ChannelOpenError:
            return None
    replacement = await wait_until(reopened, 5, "a free random stream slot")  # once the server saw the close
    replacement.close()
    tunnel.client.close()


async def test_random_stream_bytes_are_charged_to_traffic_rules(network):
    running = await network.add()
    tunnel = await dial(running.entry, "OSSH", ClientConfig(), os.urandom(16).hex(), connect_socket)
    assert await random_stream_bytes(tunnel.client.conn, 5000, 300000, 10) == 300000
    (session,) = running.server.clients
    assert session.write_bucket.total >= 300000
    assert session.read_bucket.total >= 5000
    tunnel.client.close()
