"""Outgoing TCP connections, directly or through an upstream proxy.

Returns a connected non-blocking socket so the caller can hand it to any asyncio
protocol (OSSH, SSH, HTTP). Proxy handshakes are driven with the sans-IO objects of
``onehop.core.upstreamproxy``. OS errors become TunnelError with a readable message.
"""

from __future__ import annotations

import asyncio
import socket

from ..core.upstreamproxy import ProxyConnected, ProxySpec, handshake_for
from ..errors import ProtocolError, TunnelError, UpstreamProxyError

RECV_SIZE = 4096
SO_MARK = 36
_socket_mark = 0  # whole-device mode: the client's own sockets skip its packet rules


def set_socket_mark(mark: int) -> None:
    """Mark every socket opened from now on with ``SO_MARK`` (0: no mark)."""
    global _socket_mark
    _socket_mark = mark


async def connect_socket(host: str, port: int, *, timeout: float = 20.0) -> socket.socket:
    """A connected TCP socket to (host, port)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
    except (TimeoutError, socket.gaierror, UnicodeError) as exc:
        raise TunnelError("dial", f"cannot resolve {host}: {exc}") from None
    last_error: Exception | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            if _socket_mark:
                sock.setsockopt(socket.SOL_SOCKET, SO_MARK, _socket_mark)
            await asyncio.wait_for(loop.sock_connect(sock, address), timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except (TimeoutError, OSError) as exc:
            sock.close()
            last_error = exc
        except BaseException:
            sock.close()
            raise
    reason = "timed out" if isinstance(last_error, asyncio.TimeoutError) else str(last_error)
    raise TunnelError("dial", f"cannot connect to {host}:{port}: {reason}")


async def connect_via_proxy(spec: ProxySpec, host: str, port: int, *, timeout: float = 20.0) -> socket.socket:
    """A socket to (host, port) tunnelled through the upstream proxy ``spec``."""
    try:
        sock = await connect_socket(spec.host, spec.port, timeout=timeout)
    except TunnelError as exc:
        raise UpstreamProxyError(f"upstream proxy {spec.host}:{spec.port} unreachable: {exc.message}") from None
    loop = asyncio.get_running_loop()
    handshake = handshake_for(spec, host, port)
    try:
        async with asyncio.timeout(timeout):
            while True:
                event = handshake.next_event()
                out = handshake.data_to_send()
                if out:
                    await loop.sock_sendall(sock, out)
                if isinstance(event, ProxyConnected):
                    break
                data = await loop.sock_recv(sock, RECV_SIZE)
                if data:
                    handshake.receive_data(data)
                else:
                    handshake.receive_eof()
    except ProtocolError as exc:
        sock.close()
        raise UpstreamProxyError(f"upstream proxy refused {host}:{port}: {exc}") from None
    except (OSError, TimeoutError) as exc:
        sock.close()
        raise UpstreamProxyError(f"upstream proxy failed: {exc or 'timed out'}") from None
    except BaseException:
        sock.close()
        raise
    if handshake.trailing_data():
        sock.close()
        raise UpstreamProxyError("upstream proxy sent data before the connection was ours")
    return sock


def socket_opener(upstream_proxy: ProxySpec | None, timeout: float = 20.0):
    """An ``open(host, port) -> socket`` coroutine function, direct or via the proxy."""
    if upstream_proxy is None:
        async def open_direct(host: str, port: int) -> socket.socket:
            return await connect_socket(host, port, timeout=timeout)
        return open_direct

    async def open_proxied(host: str, port: int) -> socket.socket:
        return await connect_via_proxy(upstream_proxy, host, port, timeout=timeout)
    return open_proxied
