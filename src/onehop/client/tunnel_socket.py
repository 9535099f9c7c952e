"""A plain socket whose bytes travel through the active tunnel.

Downloads (remote lists, upgrades) and uploads (feedback) reuse the ordinary HTTP
client: one end of a socketpair is spliced to a direct-tcpip channel, the other end is
handed to the HTTP client, TLS included.
"""

from __future__ import annotations

import asyncio
import socket

from ..errors import TransferError
from .splice import ChannelOpener, splice


def tunnel_socket_opener(opener: ChannelOpener):
    async def open_through_tunnel(host: str, port: int) -> socket.socket:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        theirs.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_connection(asyncio.Protocol, sock=theirs)
            transport.pause_reading()
            failure = await splice(transport, opener, host, port, before_relay=lambda: None)
        except BaseException:
            ours.close()
            theirs.close()
            raise
        if failure is not None:
            transport.close()
            ours.close()
            raise TransferError(f"through the tunnel to {host}:{port}: {failure.value}")
        return ours
    return open_through_tunnel
