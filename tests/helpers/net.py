"""Loopback ports and byte-copying servers: ``free_port``, ``port_accepts``,
``tcp_socket_pair``, ``copy_stream``, ``echo`` and ``start_echo_server``."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free on ``host`` a moment ago (the kernel may hand it out again).
    Self-contained, not ``onehop.demo``'s: the benchmarks' sink imports this module, and
    importing onehop.demo loads the whole client and server."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_accepts(host: str, port: int) -> bool:
    """Whether a TCP connection to ``host``:``port`` is accepted now."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def tcp_socket_pair() -> tuple[socket.socket, socket.socket]:
    """Two ends of one loopback TCP connection, both non-blocking: (connecting, accepted).
    Unlike ``socket.socketpair`` these are TCP sockets, as relays and transports meet them."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        connecting = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
    connecting.setblocking(False)
    accepted.setblocking(False)
    return connecting, accepted


async def copy_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                chunk: Callable[[bytes], bytes | None] = lambda data: data) -> None:
    """Copy ``reader`` to ``writer`` until EOF or a reset, then close ``writer``.
    ``chunk(data)`` says what to write for each piece read (``None``: nothing)."""
    try:
        while data := await reader.read(65536):
            out = chunk(data)
            if out is not None:
                writer.write(out)
                await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A TCP echo connection handler for ``asyncio.start_server``."""
    await copy_stream(reader, writer)


async def start_echo_server(host: str = "127.0.0.1") -> tuple[asyncio.AbstractServer, int]:
    """A TCP echo server on ``host``: (server, port)."""
    server = await asyncio.start_server(echo, host, 0)
    return server, server.sockets[0].getsockname()[1]
