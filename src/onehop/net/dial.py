"""Outgoing TCP connections, directly or through an upstream proxy.

Returns a connected non-blocking socket so the caller can hand it to any asyncio
protocol (OSSH, SSH, HTTP). Proxy handshakes are driven with the sans-IO objects of
``onehop.core.upstreamproxy``. OS errors become TunnelError with a readable message.
"""

from __future__ import annotations

import asyncio
import socket

from ..errors import TunnelError

RECV_SIZE = 4096


async def connect_socket(host: str, port: int, *, timeout: float = 20.0) -> socket.socket:
    """A connected TCP socket to (host, port)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
    except (socket.gaierror, UnicodeError, asyncio.TimeoutError) as exc:
        raise TunnelError("dial", f"cannot resolve {host}: {exc}") from None
    last_error: Exception | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, address), timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except (OSError, asyncio.TimeoutError) as exc:
            sock.close()
            last_error = exc
        except BaseException:
            sock.close()
            raise
    reason = "timed out" if isinstance(last_error, asyncio.TimeoutError) else str(last_error)
    raise TunnelError("dial", f"cannot connect to {host}:{port}: {reason}")
