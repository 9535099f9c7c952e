"""Hand-written SOCKS5 and HTTP proxy client bytes for tests (independent of our encoders)."""

from __future__ import annotations

import asyncio
import socket
import struct


async def socks5_connect(proxy_port: int, host: str, port: int):
    """Return (reader, writer, reply_code) after a SOCKS5 CONNECT with a domain or IP."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    writer.write(b"\x05\x01\x00")
    assert await reader.readexactly(2) == b"\x05\x00"
    try:
        address = b"\x01" + socket.inet_aton(host)
    except OSError:
        address = b"\x03" + bytes([len(host)]) + host.encode()
    writer.write(b"\x05\x01\x00" + address + struct.pack(">H", port))
    head = await reader.readexactly(4)
    assert head[0] == 5
    if head[3] == 1:
        await reader.readexactly(4 + 2)
    elif head[3] == 4:
        await reader.readexactly(16 + 2)
    else:
        await reader.readexactly((await reader.readexactly(1))[0] + 2)
    return reader, writer, head[1]


async def http_get_via_socks(proxy_port: int, host: str, port: int) -> bytes:
    reader, writer, code = await socks5_connect(proxy_port, host, port)
    assert code == 0, f"SOCKS reply {code}"
    writer.write(f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    return body_of(data)


async def http_get_via_http_proxy(proxy_port: int, host: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    writer.write(f"GET http://{host}:{port}/ HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    return body_of(data)


async def connect_via_http_proxy(proxy_port: int, host: str, port: int):
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    return reader, writer, head


def body_of(response: bytes) -> bytes:
    head, sep, body = response.partition(b"\r\n\r\n")
    assert sep and head.startswith(b"HTTP/1.1 200"), head[:80]
    return body
