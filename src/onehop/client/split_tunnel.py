"""Split tunnelling, client side: forwards the server refused with Psiphon's split-tunnel
answer are connected directly (``SplitTunnelOwnRegion``, ``SplitTunnelRegions``).

The server knows GeoIP, so it decides; the client only asks (handshake parameters, see
``dialer.handshake_params``) and, on ``CHANNEL_REJECT_REASON_SPLIT_TUNNEL``, opens the
connection itself with the same socket opener it dials servers with (direct or through
the upstream proxy; in whole-device mode such sockets are marked and skip the rules).
The result has the shape of a channel open, ``(transport, session)``, so the local
proxies and the whole-device listener relay it as they relay a channel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncssh

from .notices import UNTUNNELED

#: protocol.CHANNEL_REJECT_REASON_SPLIT_TUNNEL in psiphon-tunnel-core
CHANNEL_REJECT_REASON_SPLIT_TUNNEL = 0xFE000000
MAX_ADDRESSES_SAID = 256


def is_split_tunnel(exc: BaseException) -> bool:
    return isinstance(exc, asyncssh.ChannelOpenError) and exc.code == CHANNEL_REJECT_REASON_SPLIT_TUNNEL


class Untunnelled:
    """Direct connections for split destinations, counted, each address said once."""

    def __init__(self, open_socket: Callable[[str, int], Awaitable], notices) -> None:
        self._open_socket = open_socket
        self._notices = notices
        self._said: set[str] = set()
        self.count = 0

    async def connect(self, session_factory, host: str, port: int):
        sock = await self._open_socket(host, port)
        try:
            transport, session = await asyncio.get_running_loop().create_connection(session_factory, sock=sock)
        except BaseException:
            sock.close()
            raise
        self.count += 1
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if address not in self._said and len(self._said) < MAX_ADDRESSES_SAID:
            self._said.add(address)
            self._notices.emit(UNTUNNELED, address=address)
        return transport, session
