"""The transparent TCP listener: connections the rules redirected, forwarded through the tunnel.

The kernel rewrote each connection's destination to this listener; the original one is
read back with ``SO_ORIGINAL_DST`` (IPv4) or ``IP6T_SO_ORIGINAL_DST`` (IPv6) and a
``direct-tcpip`` channel to it is opened through the controller, which makes the
connection wait (bounded) while no tunnel is up: nothing is ever sent directly. A
connection that cannot be forwarded is reset, as a refused connection would be.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from ...net.redirect import abort_with_reset, original_destination
from ..splice import OpenFailure, splice

log = logging.getLogger(__name__)

class TransparentConnection(asyncio.Protocol):
    def __init__(self, service) -> None:
        self._service = service
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task | None = None

    def connection_made(self, transport) -> None:
        self._transport = transport
        transport.pause_reading()
        sock = transport.get_extra_info("socket")
        try:
            host, port = original_destination(sock)
        except OSError:
            self._service.refused_connection("no original destination")
            abort_with_reset(transport)
            return
        if self._service.is_own_listener(host, port):
            self._service.refused_connection("a connection to the listener itself")
            abort_with_reset(transport)
            return
        self._task = asyncio.get_running_loop().create_task(self._forward(host, port))
        self._service.track(self._task)

    async def _forward(self, host: str, port: int) -> None:
        transport = self._transport
        assert transport is not None
        failure = await splice(transport, self._service.controller, host, port,
                               before_relay=lambda: None, counter=self._service.controller.byte_counter)
        if failure is None:
            self._service.state.tcp_connections += 1
            return
        self._service.refused_connection(failure.value, destination=f"{host}:{port}",
                                         quiet=failure is OpenFailure.NO_TUNNEL)
        abort_with_reset(transport)

    def data_received(self, data: bytes) -> None:  # paused until spliced; nothing arrives here
        pass

    def connection_lost(self, exc) -> None:
        self._transport = None


async def listen(service, port: int = 0) -> tuple[list[asyncio.AbstractServer], int]:
    """Listen on 0.0.0.0 and, when available, [::] on one port (any free one for 0)."""
    loop = asyncio.get_running_loop()

    def factory() -> asyncio.Protocol:
        return TransparentConnection(service)

    v4 = await loop.create_server(factory, "0.0.0.0", port, reuse_address=True, backlog=512)
    port = v4.sockets[0].getsockname()[1]
    servers: list[asyncio.AbstractServer] = [v4]
    if service.ipv6:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("::", port))
            servers.append(await loop.create_server(factory, sock=sock, backlog=512))
        except OSError as exc:
            sock.close()
            log.info("no IPv6 transparent listener (%s): IPv6 is blocked", exc)
            service.ipv6 = False
    return servers, port
