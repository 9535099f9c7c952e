"""Attack: open and close tunnels, each with a fresh client session ID, and watch memory.

Found while closing connections with malformed packets in a loop: a worker grew by about
23 KB per tunnel, malformed or not. The session registry (one live connection per
session ID) was given ``session.close`` at login and ``session.close`` again at the end,
and compared the two with ``is``: two bound methods of one session are never the same
object, so no session was ever removed, and each kept its whole ClientSession alive.
Now the registry forgets a session when its connection ends.
"""

from __future__ import annotations

import os

from onehop.client.config import ClientConfig
from onehop.client.dialer import _dial_target
from onehop.core import api
from onehop.net.dial import connect_socket
from onehop.tunnel.client import open_tunnel
from tests.helpers.waiting import wait_until

TUNNELS = 5


async def test_the_session_registry_forgets_every_closed_tunnel(network):
    running = await network.add()
    for _ in range(TUNNELS):
        payload = api.SSHPasswordPayload(os.urandom(16).hex(), running.entry.ssh_password)
        target = _dial_target(running.entry, "OSSH", api.encode_ssh_password(payload), ClientConfig())
        tunnel = await open_tunnel(target, connect_socket)
        await wait_until(lambda: len(running.server.sessions) == 1, 10, "the tunnel registered")
        tunnel.close()
        await tunnel.wait_closed()
        await wait_until(lambda: not running.server.clients, 10, "the server saw the tunnel end")
        assert len(running.server.sessions) == 0
